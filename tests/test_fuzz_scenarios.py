"""A bounded fuzz run in CI: mutated scenarios through `validate` and `simulate` under a 3 GB cap.

The script benchmarks/fuzz_scenarios.py (which runs thousands of inputs; README "Limits and hostile
input") on a dozen: each input ends in exit 0 with every request accounted for, or exit 2 with
messages naming the file, `validate` agreeing with `simulate`; never a traceback, an out-of-memory
death or a hang. Its judge is tested here too.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_scenarios.py"
spec = importlib.util.spec_from_file_location("fuzz_scenarios", BENCHMARK)
fuzz = importlib.util.module_from_spec(spec)
sys.modules["fuzz_scenarios"] = fuzz
spec.loader.exec_module(fuzz)

CI_INPUTS = 12


@pytest.mark.skipif(sys.platform == "win32", reason="forks capped children (POSIX)")
def test_mutated_scenarios_run_or_are_refused_cleanly(tmp_path):
    """The script in its own lean process: forking this one (Qt, torch, an address space already near the
    cap) would test pytest's memory, not vlmplan's."""
    done = subprocess.run([sys.executable, str(BENCHMARK), "--inputs", str(CI_INPUTS), "--seed", "1",
                           "--keep", str(tmp_path), "--time-limit", "60"],
                          capture_output=True, text=True, timeout=900)
    assert "FAIL" not in done.stdout, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"total {CI_INPUTS} inputs" in done.stdout
    assert ", 0 failed;" in done.stdout


def test_the_judge_catches_a_traceback_an_unnamed_message_and_lost_requests(tmp_path):
    path = tmp_path / "s.yaml"
    ok = fuzz.Run(0, '{"deployments": []}', "", 1.0)
    refused = fuzz.Run(2, "", f"error: {path}: deployments: bad\n", 1.0)
    assert fuzz.judge(path, ok, ok) is None
    assert fuzz.judge(path, refused, refused) is None
    assert "traceback" in fuzz.judge(path, ok, fuzz.Run(1, "", "Traceback (most recent call last):\n", 1.0))
    assert "does not name the file" in fuzz.judge(path, refused, fuzz.Run(2, "", "error: bad\n", 1.0))
    assert "validate exit 0 but simulate exit 2" in fuzz.judge(path, ok, refused)
    lost = ('{"deployments": [{"name": "d", "metrics": {"requests": 5, "completed": 3, "rejected": 0, '
            '"unfinished": 1}, "per_class": {}}]}')
    assert "requests 5 != completed + rejected + unfinished" in fuzz.judge(path, ok, fuzz.Run(0, lost, "", 1.0))


def test_a_runs_time_limit_is_a_minute_plus_its_volume_at_the_stated_engine_rate(tmp_path):
    # A month at 3 req/s (7,776,000 requests) is allowed its volume's time on top of the minute, so a run
    # that keeps up ends inside its limit; a small run gets the minute and little more. Before, any run
    # still going at 60 s was forgiven as "long" when it was to simulate over 500,000 requests.
    def limit_s(base: dict, **changes: object) -> float:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**base, **changes}), encoding="utf-8")
        return fuzz.simulation_time_limit_s(path)

    vlm, closed = fuzz.BASES[0], fuzz.BASES[4]
    assert limit_s(vlm) == pytest.approx(60 + 90 / fuzz.ENGINE_RATE_RPS)  # 3 req/s for 30 s
    assert limit_s(vlm, horizon_s=30 * 86_400) == pytest.approx(60 + 7_776_000 / fuzz.ENGINE_RATE_RPS)
    # 16 users, each sending again after 0.5 s of thought and half a millisecond of client overhead
    assert limit_s(closed) == pytest.approx(60 + 16 * 30 / 0.5005 / fuzz.ENGINE_RATE_RPS)
    assert "still running after its limit of 1,234 s" in fuzz.judge(
        tmp_path / "s.yaml", fuzz.Run(0, "", "", 1.0), fuzz.Run("timeout", "", "", 1.0, 1234.0))


def test_every_base_scenario_is_valid_before_mutation(tmp_path):
    # A base that validate refuses tests nothing past the schema: the closed loop's SLO named a class it
    # does not have, so every closed-loop input was refused before it ran.
    from planner.scenario import check_scenario, load_scenario

    for base in fuzz.BASES:
        path = tmp_path / f"{base['name']}.yaml"
        path.write_text(yaml.safe_dump(base), encoding="utf-8")
        check_scenario(load_scenario(path), str(path))
