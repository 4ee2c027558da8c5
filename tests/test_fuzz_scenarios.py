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
