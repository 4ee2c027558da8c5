"""A bounded fuzz run in CI: mutated scenarios through `validate` and `simulate` under a 3 GB cap.

The mutations, the capped runs and the contract checked are those of benchmarks/fuzz_scenarios.py
(which runs thousands of inputs; README "Limits"): each input ends in exit 0 with every request
accounted for, or exit 2 with messages naming the file, `validate` agreeing with `simulate`; never
a traceback, an out-of-memory death or a hang. Hypothesis picks the mutation seeds.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_scenarios.py"
spec = importlib.util.spec_from_file_location("fuzz_scenarios", BENCHMARK)
fuzz = importlib.util.module_from_spec(spec)
sys.modules["fuzz_scenarios"] = fuzz
spec.loader.exec_module(fuzz)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="forks a capped child (POSIX)")
CI_TIME_LIMIT_S = 60.0


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_mutated_scenarios_run_or_are_refused_cleanly(tmp_path, seed):
    outcome, failure, mutations = fuzz.fuzz_one(seed, tmp_path, CI_TIME_LIMIT_S)
    assert failure is None, f"seed {seed} ({'; '.join(mutations)}): {failure}"
    assert outcome in ("ran", "refused", "long")


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


def test_a_child_over_the_memory_cap_is_caught(tmp_path):
    """The cap works: a child asked for more than the cap fails inside its own process, not the test's."""
    run = fuzz.run_capped(["simulate", str(tmp_path / "missing.yaml")], memory_bytes=50_000_000)
    assert run.code != 0
