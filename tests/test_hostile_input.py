"""Hostile input: every bound checked before any work, validate refuses what simulate would, overload in
bounded memory, unservable classes named, linear checks with bounded messages."""

import copy
import dataclasses
import gc
import json
import math
import sys

import pytest
import yaml

from planner.cli import main
from planner.run import render_table, scenario_jobs, simulate_scenario
from planner.scenario import load_scenario
from profiles.errors import ScenarioError, TraceError
from sim import limits
from sim.api import prepare, simulate
from sim.metrics import summarise
from sim.replica import engine_replicas

BASE = {
    "name": "hostile", "horizon_s": 20, "seed": 3,
    "traffic": {"arrivals": {"kind": "poisson", "rate_rps": 2},
                "classes": [{"name": "doc", "images": {"count": 1, "width_px": 800, "height_px": 600},
                             "text_tokens": 50, "output_tokens": 40}]},
    "slo": {"e2e_s": 10},
    "deployments": [{"name": "small", "stages": [{"name": "vlm", "kind": "model", "model": "smolvlm-256m",
                                                  "gpu": "l4"}]}],
}



def assert_same_outcomes(counted, kept) -> None:
    """A run that counts hopeless requests gives the metrics and per-class results of one that keeps them all,
    to the last bit (its wall time and the count itself aside)."""
    for result in (counted, kept):
        result.metrics.pop("sim_wall_s")
        result.metrics.pop("unfinished_beyond_end")
        result.metrics.pop("stopped_because", None)  # simulate's (a run summarised by hand has none)
    assert counted.metrics == kept.metrics
    assert counted.per_class == kept.per_class

def scenario_file(tmp_path, edit=None, name="s.yaml"):
    """BASE after ``edit(copy)``, written to ``tmp_path/name``."""
    data = copy.deepcopy(BASE)
    if edit:
        edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def refusal(path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return str(caught.value)


def stage(**fields):
    return lambda d: d["deployments"][0]["stages"][0].update(fields)


def arrivals(**fields):
    return lambda d: d["traffic"].update(arrivals=fields)


def doc(**fields):
    return lambda d: d["traffic"]["classes"][0].update(fields)


@pytest.mark.parametrize(("edit", "expected"), [
    (stage(replicas=2_147_483_648), "deployments.0.stages.0.replicas: Input should be less than or equal to 10000"),
    (stage(cpu_workers=10**9), "deployments.0.stages.0.cpu_workers: Input should be less than or equal to 1024"),
    (stage(tensor_parallel=10**6), "deployments.0.stages.0.tensor_parallel"),
    (doc(images={"count": 1e18, "width_px": 800, "height_px": 600}),
     "traffic.classes.0.images.count: can be 1e+12 images, more than the 100 images allowed per request"),
    (doc(images={"count": {"kind": "lognormal", "median": 2, "sigma": 1}, "width_px": 800, "height_px": 600}),
     "a lognormal without `max` can draw any value: give max <= 100"),
    (arrivals(kind="closed_loop", users=1_000_001),
     "traffic.arrivals.users: Input should be less than or equal to 1000000"),
    (arrivals(kind="offline", requests=10**7),  # took minutes: all arrive before the first progress check
     "traffic.arrivals.requests: Input should be less than or equal to 1000000"),
    (lambda d: (d.update(horizon_s=60), arrivals(kind="poisson", rate_rps=1e6)(d)),
     "traffic.arrivals: about 60,000,000 requests (1,000,000 req/s for 60 s), more than the 30,000,000 one simulation "
     "may run; shorten the horizon or lower the rate"),
    (lambda d: d.update(horizon_s=2_000_000, traffic={**d["traffic"], "arrivals": {"kind": "poisson",
                                                                                  "rate_rps": 100}}),
     "more than the 30,000,000 one simulation may run"),
    (arrivals(kind="poisson", rate_rps=2, bursts={"kind": "onoff", "burst_multiplier": 2, "mean_burst_s": 1e-300,
                                                  "mean_gap_s": 10}),
     "traffic.arrivals.bursts.mean_burst_s: Input should be greater than or equal to 0.001"),
    (lambda d: d.update(horizon_s=2_000_000, traffic={**d["traffic"], "arrivals": {
        "kind": "poisson", "rate_rps": 1, "bursts": {"kind": "mmpp", "states": [
            {"rate_multiplier": 1, "mean_sojourn_s": 0.01}, {"rate_multiplier": 2, "mean_sojourn_s": 0.01}]}}}),
     "traffic.arrivals.bursts: 2,000,000 s of periods as short as 0.01 s"),
    (stage(usd_per_gpu_hour=float("inf")), "deployments.0.stages.0.usd_per_gpu_hour"),
    (lambda d: d.update(seed=2**70), "seed: Input should be less than or equal to"),
])
def test_each_hostile_input_is_refused_before_any_work_naming_file_and_field(tmp_path, edit, expected):
    message = refusal(scenario_file(tmp_path, edit))
    assert message.startswith(f"{tmp_path / 's.yaml'}: ")
    assert expected in message


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``vlmplan ARGS`` in this process: (exit status, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["vlmplan", *args]
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("args", "expected"), [
    (["simulate", "--horizon", "1e12"], "--horizon': 1000000000000.0 is not in the range 0<x<=2678400.0"),
    (["simulate", "--horizon", "nan"], "--horizon': 'nan' is not a finite number"),
    (["simulate", "--horizon", "inf"], "--horizon': inf is not in the range"),
    (["simulate", "--seed", str(2**64)], "--seed'"),
    (["plan", "--autoscale-window", "nan"], "--autoscale-window': 'nan' is not a finite number"),
    (["plan", "--workers", "1000000000"], "--workers'"),
    (["plan", "--benchmark", "NOPE"], "--benchmark: unknown benchmark 'NOPE'; the catalog scores"),
])
def test_command_line_overrides_are_bounded_like_the_schema(tmp_path, capsys, args, expected):
    command, *options = args
    code, out, err = run_main(capsys, command, str(scenario_file(tmp_path)), *options)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert err.count("\n") == 1, err
    assert expected in err


def test_a_tiny_autoscale_window_is_refused_before_any_work(tmp_path, capsys):
    path = scenario_file(tmp_path, arrivals(kind="diurnal", requests_per_day=10_000, peak_to_trough=2))
    code, out, err = run_main(capsys, "plan", str(path), "--autoscale-window", "1e-9")
    assert (code, out) == (2, "")
    assert "--autoscale-window: 1e-09 s must divide a day (86,400 s) into 2 to 288 windows" in err


def test_a_horizon_override_is_checked_against_the_run_volume(tmp_path, capsys):
    path = scenario_file(tmp_path, arrivals(kind="poisson", rate_rps=20))
    code, _, err = run_main(capsys, "simulate", str(path), "--horizon", "2000000")
    assert code == 2
    assert f"error: {path}: traffic.arrivals: about 40,000,000 requests (20 req/s for 2,000,000 s)" in err


@pytest.mark.parametrize(("edit", "expected"), [
    (stage(model="qwen2.5-vl-72b"),
     "deployments.0.stages.0: deployment 'small', stage 'vlm': qwen2.5-vl-72b bf16 needs 151.5 GB per GPU"),
    (stage(model="qwen2.5-7b"),
     "deployments.0.stages.0: deployment 'small', stage 'vlm', class 'doc': model 'qwen2.5-7b' has no vision "
     "encoder: it cannot take images"),
    (doc(audio_s=30),
     "deployments.0.stages.0: deployment 'small', stage 'vlm', class 'doc': model 'smolvlm-256m' has no audio "
     "encoder: it cannot take audio"),
    (lambda d: (stage(model="qwen2.5-vl-7b", gpu="h100-sxm")(d),
                doc(images={"count": 1, "width_px": 30000, "height_px": 100})(d)),
     "class 'doc': image 30000x100 px: aspect ratio above 200 is rejected by Qwen2-VL"),
    (lambda d: d["deployments"].append(copy.deepcopy(d["deployments"][0])),
     "deployments: Value error, deployment names must be unique, repeated: ['small']"),
    (lambda d: d["deployments"][0]["stages"].append(copy.deepcopy(d["deployments"][0]["stages"][0])),
     "deployments.0: Value error, stage names must be unique, repeated: ['vlm']"),
    (lambda d: d.update(router_missing=1), "router_missing: Extra inputs are not permitted"),
])
def test_validate_refuses_what_simulate_would_naming_file_deployment_and_stage(tmp_path, capsys, edit, expected):
    path = scenario_file(tmp_path, edit)
    assert expected in refusal(path)
    for command in ("validate", "simulate"):  # the same one message from both commands
        code, out, err = run_main(capsys, command, str(path))
        assert (code, out) == (2, "")
        assert err.startswith(f"error: {path}: ")
        assert expected in err


def overloaded_job(tmp_path):
    """A replica offered about ten times what it can serve, with long answers: most requests never start."""
    path = scenario_file(tmp_path, lambda d: (arrivals(kind="poisson", rate_rps=300)(d),
                                              doc(output_tokens=2000, images=None)(d),
                                              stage(max_batch_size=8)(d)))
    return scenario_jobs(load_scenario(path))[0]


def simulate_keeping_everything(job):
    """``simulate(job)`` with no end set on replicas and stages: every request queued, every visit scheduled."""
    run = prepare(job)
    for holder in [*engine_replicas(run.stages), *run.stages]:
        holder.serve_until_s = math.inf
    run.driver.start()
    span_s = run.driver.run(None, None)
    return summarise(job.deployment.name, run.recorder, run.stages, job.slo, job.horizon_s, span_s, run.busy, 0.0,
                     job.seed)


def test_an_overloaded_replica_counts_what_it_can_never_start_with_the_same_results(tmp_path):
    job = dataclasses.replace(overloaded_job(tmp_path), stop_when_overloaded=False)
    counted = simulate(job)
    queued = simulate_keeping_everything(job)
    metrics = counted.metrics
    assert metrics["overloaded"]
    assert metrics["unfinished_beyond_end"] > 0.8 * metrics["requests"]
    assert queued.metrics["unfinished_beyond_end"] == 0
    assert_same_outcomes(counted, queued)
    assert counted.per_stage == queued.per_stage


def test_an_overload_beyond_doubt_stops_the_run_early_and_says_so(tmp_path):
    """Once the counted requests are over 1 % of those arrived, on a stage every class crosses, the run stops at
    the next progress check: the figures cover the arrivals until then, every request accounted for."""
    job = overloaded_job(tmp_path)
    stopped = simulate(job)
    full = simulate(dataclasses.replace(job, stop_when_overloaded=False))
    metrics = stopped.metrics
    assert full.metrics["stopped_early_s"] is None
    assert 0 < metrics["stopped_early_s"] < job.horizon_s
    assert metrics["overloaded"]
    assert full.metrics["overloaded"]
    assert metrics["requests"] < full.metrics["requests"]
    assert metrics["requests"] == metrics["completed"] + metrics["rejected"] + metrics["unfinished"]
    assert metrics["unfinished_beyond_end"] > 0.01 * metrics["requests"]
    assert metrics["offered_rps"] == pytest.approx(full.metrics["offered_rps"], rel=0.2)  # over the arrivals run
    assert metrics["completed"] <= full.metrics["completed"]
    report_line = render_table(simulate_scenario(load_scenario(tmp_path / "s.yaml")))
    assert f"STOPPED small: overloaded beyond doubt at {metrics['stopped_early_s']:,.0f} s of 20 s" in report_line


def test_a_stage_with_a_long_backlog_upstream_has_the_requests_it_cannot_serve_by_the_end_counted(
        tmp_path, monkeypatch):
    """Past ``LONG_STAGE_QUEUE`` requests bound for a stage (queued at it or still upstream on their route), those
    beyond twice the rate it has served since the backlog was first seen at a check, until the end, count as
    unservable; the router keeps each stage's count of requests still to pass it."""
    import sim.api

    # Every request is labelled quickly by a first stage, then waits for a slow one (long answers, 8 at a time).
    path = scenario_file(tmp_path, lambda d: (
        arrivals(kind="closed_loop", users=3_000, think_time_s=1.0)(d), doc(output_tokens=2000, images=None)(d),
        d["deployments"][0].update(stages=[
            {"name": "label", "kind": "model", "model": "smolvlm-256m", "gpu": "l4", "output_tokens": 1,
             "max_batch_size": 1},
            {"name": "vlm", "kind": "model", "model": "smolvlm-256m", "gpu": "l4", "max_batch_size": 8}],
            routes=[{"classes": ["*"], "path": ["label", "vlm"]}])))
    run = prepare(dataclasses.replace(scenario_jobs(load_scenario(path))[0], stop_when_overloaded=False))
    label, vlm = run.stages
    watch = sim.api.OverloadWatch(run.stages, run.recorder, run.driver.router, ["doc"])
    run.driver.start()
    run.env.run(until=2.0)
    in_flight = run.recorder.in_flight
    at_vlm = sum(replica.outstanding for replica in engine_replicas([vlm]))
    assert (vlm.pending, label.pending) == (in_flight, in_flight - at_vlm)  # every one has vlm still to pass
    assert label.pending > 0
    assert at_vlm > 0
    assert watch.unservable(vlm, 2.0) == 0  # a short backlog: only what was counted (nothing)
    monkeypatch.setattr(sim.api, "LONG_STAGE_QUEUE", 1_000)
    served_then = len(vlm.sojourn_s)
    assert watch.unservable(vlm, 2.0) == 0  # the backlog is seen: no rate to judge by yet
    run.env.run(until=6.0)
    servable = 2 * (len(vlm.sojourn_s) - served_then) / 4.0 * (vlm.serve_until_s - 6.0)
    assert vlm.pending > sum(replica.outstanding for replica in engine_replicas([vlm]))  # some still upstream
    assert vlm.pending - servable > 0.5 * vlm.pending  # twice its rate serves under half of them by the end
    assert watch.unservable(vlm, 6.0) == int(vlm.pending - servable) > sim.api.counted_beyond_end(vlm)
    assert watch.unservable(vlm, 6.0, judge_rates=False) == sim.api.counted_beyond_end(vlm)
    assert watch.beyond_doubt(6.0)


def test_a_closed_loop_of_many_users_into_a_small_deployment_stops_at_an_arrivals_check(tmp_path, capsys):
    """All users send within the client's first millisecond: the run stops at the check after the first
    ``ARRIVALS_PER_CHECK`` arrivals, not after every user's first request at the first progress check."""
    from sim.driver import ARRIVALS_PER_CHECK

    path = scenario_file(tmp_path, lambda d: (arrivals(kind="closed_loop", users=30_000, think_time_s=1.0)(d),
                                              doc(output_tokens=2000, images=None)(d), stage(max_batch_size=8)(d)))
    job = scenario_jobs(load_scenario(path))[0]
    gc.collect()
    metrics = simulate(job).metrics
    # The 10,000 requests queued were freed as the run ended, not left to a full collection (some 50,000 objects).
    assert gc.collect() < 1_000
    assert metrics["requests"] == ARRIVALS_PER_CHECK  # of 30,000 users (before: all 30,000, stopped at 0.8 s)
    assert 0 < metrics["stopped_early_s"] < 1e-3
    assert metrics["stopped_because"] == "overload"
    assert metrics["overloaded"]
    assert metrics["unfinished_beyond_end"] > 0.01 * metrics["requests"]
    assert metrics["requests"] == metrics["completed"] + metrics["rejected"] + metrics["unfinished"]
    code, out, _ = run_main(capsys, "simulate", str(path))
    assert code == 0
    assert f"STOPPED small: overloaded beyond doubt at {metrics['stopped_early_s']:.2g} s of 20 s (10,000 of " in out
    assert "nan" not in out.lower()
    code, out, _ = run_main(capsys, "simulate", str(path), "--json")
    assert code == 0
    stopped = json.loads(out)["deployments"][0]  # strict JSON: no NaN
    assert stopped["verdict"] == "overloaded"
    assert stopped["metrics"]["stopped_early_s"] == metrics["stopped_early_s"]


def test_an_offline_batch_into_a_small_deployment_stops_at_time_zero_after_the_first_check(tmp_path):
    """Every request of an offline batch arrives at time 0, before the first progress check: the check after the
    first ``ARRIVALS_PER_CHECK`` arrivals stops the run there (before: all 50,000 drawn and queued or counted)."""
    from sim.driver import ARRIVALS_PER_CHECK

    path = scenario_file(tmp_path, lambda d: (arrivals(kind="offline", requests=50_000)(d),
                                              doc(output_tokens=2000, images=None)(d), stage(max_batch_size=8)(d)))
    metrics = simulate(scenario_jobs(load_scenario(path))[0]).metrics
    assert (metrics["requests"], metrics["stopped_early_s"], metrics["stopped_because"]) == (
        ARRIVALS_PER_CHECK, 0.0, "overload")
    assert metrics["unfinished_beyond_end"] > 0.01 * metrics["requests"]
    assert isinstance(metrics["stopped_early_s"], float)


def test_a_closed_loop_that_keeps_up_is_checked_on_arrivals_and_never_stopped(tmp_path, monkeypatch):
    import sim.api
    import sim.driver

    monkeypatch.setattr(sim.driver, "ARRIVALS_PER_CHECK", 20)  # a check every 20 arrivals
    asked = []
    judge = sim.api.OverloadWatch.beyond_doubt
    monkeypatch.setattr(sim.api.OverloadWatch, "beyond_doubt",
                        lambda watch, t_s, judge_rates=True: asked.append(judge_rates) or judge(watch, t_s, judge_rates))
    job = scenario_jobs(load_scenario(scenario_file(tmp_path, arrivals(kind="closed_loop", users=8,
                                                                         think_time_s=0.5))))[0]
    checked, unchecked = simulate(job), simulate(dataclasses.replace(job, stop_when_overloaded=False))
    assert checked.metrics["stopped_early_s"] is None
    assert checked.metrics["requests"] > 100
    assert asked.count(False) == checked.metrics["requests"] // 20  # one check every 20 arrivals
    assert_same_outcomes(checked, unchecked)
    assert checked.per_stage == unchecked.per_stage


def test_a_run_that_keeps_up_is_the_same_with_or_without_the_overload_stop(tmp_path):
    job = scenario_jobs(load_scenario(scenario_file(tmp_path, arrivals(kind="poisson", rate_rps=20))))[0]
    checked, unchecked = simulate(job), simulate(dataclasses.replace(job, stop_when_overloaded=False))
    assert checked.metrics["stopped_early_s"] is None
    assert checked.metrics["requests"] > 300
    assert_same_outcomes(checked, unchecked)
    assert checked.per_stage == unchecked.per_stage


def test_a_class_no_replica_can_ever_hold_is_reported_as_such(tmp_path):
    path = scenario_file(tmp_path, lambda d: d["traffic"]["classes"].append(
        {"name": "book", "share": 0.5, "text_tokens": 10**9, "output_tokens": 10}))
    report = simulate_scenario(load_scenario(path))
    per_class = report.results[0].per_class
    assert "cannot_be_served" not in per_class["doc"]
    assert per_class["book"]["cannot_be_served"] == (
        "cannot be served by stage 'vlm': needs 1,000,000,001 KV tokens, a replica holds 851,968")
    assert "CANNOT SERVE small: class book cannot be served by stage 'vlm'" in render_table(report)
    assert "book cannot be served by stage 'vlm'" in report.to_contract_dict()["deployments"][0]["reason"]


def test_twenty_thousand_classes_check_with_a_bounded_message(tmp_path):
    classes = [{"name": f"c{i}", "text_tokens": 10, "output_tokens": 5} for i in range(20_000)]
    path = scenario_file(tmp_path, lambda d: (d["traffic"].update(classes=classes),
                                              d["deployments"][0].update(routes=[{"classes": ["c0"],
                                                                                  "path": ["vlm"]}])))
    message = refusal(path)
    assert message.count("\n") == limits.MAX_NAMES_LISTED  # one line per missing route, the first 20
    assert "no route for class 'c1'" in message
    assert message.endswith("and 19,979 more problems")


def test_a_30000_column_trace_header_error_lists_a_bounded_number_of_names(tmp_path):
    from planner.traces import load_trace

    trace = tmp_path / "t.csv"
    trace.write_text(",".join(f"column{i}" for i in range(30_000)) + "\n0,1\n", encoding="utf-8")
    with pytest.raises(TraceError) as caught:
        load_trace(str(trace), "vlmplan")
    message = str(caught.value)
    assert "and 29,980 more" in message or "missing columns" in message
    assert len(message) < 2_000


def test_a_stage_listing_gpus_passes_when_one_of_them_holds_the_model(tmp_path):
    fits_second = scenario_file(tmp_path, stage(model="qwen2.5-vl-72b", gpu=["l4", "h200"], tensor_parallel=2))
    assert load_scenario(fits_second).deployments[0].stages[0].gpu == ["l4", "h200"]
    fits_none = scenario_file(tmp_path, stage(model="qwen2.5-vl-72b", gpu=["l4", "a10g"], tensor_parallel=2),
                              name="none.yaml")
    assert "deployments.0.stages.0: deployment 'small', stage 'vlm': qwen2.5-vl-72b" in refusal(fits_none)


def test_an_overloaded_synthetic_queue_schedules_nothing_past_the_end_with_the_same_results(tmp_path):
    path = scenario_file(tmp_path, lambda d: (arrivals(kind="poisson", rate_rps=50)(d), d.update(deployments=[
        {"name": "q", "stages": [{"name": "q", "kind": "synthetic", "servers": 2,
                                  "service": {"distribution": "exponential", "mean_s": 0.5}}]}])))
    job = dataclasses.replace(scenario_jobs(load_scenario(path))[0], stop_when_overloaded=False)
    counted = simulate(job)
    scheduled = simulate_keeping_everything(job)
    assert counted.metrics["unfinished_beyond_end"] > 0.5 * counted.metrics["requests"]
    assert scheduled.metrics["unfinished_beyond_end"] == 0
    assert_same_outcomes(counted, scheduled)


def test_a_run_makes_no_reference_cycles_and_holds_off_only_full_collections(tmp_path):
    """A run frees each request by reference counting alone, so ``simulate`` may hold off the cyclic collector's
    full passes (each over every object alive: half the CPU time of a million users queued at once); the
    young collections go on and the thresholds come back after."""
    import sim.api

    path = scenario_file(tmp_path, lambda d: (arrivals(kind="poisson", rate_rps=20)(d), d["traffic"]["classes"].extend([
        {"name": "talk", "share": 0.3, "text_tokens": 30, "output_tokens": 20, "system_prompt_tokens": 100,
         "session": {"turns": 3, "think_time_s": 1.0}},
        {"name": "task", "share": 0.3, "text_tokens": 30, "output_tokens": 20,
         "session": {"turns": 2, "think_time_s": 0.5, "success_probability": 0.5, "max_retries": 2}},
        # Its second turn (2,000 + 20 + 2,000 tokens) is over max_seq_len: a conversation that ends rejected.
        {"name": "long", "share": 0.1, "text_tokens": 2000, "output_tokens": 20,
         "session": {"turns": 2, "think_time_s": 0.5}}]), stage(max_seq_len=4000)(d)))
    job = scenario_jobs(load_scenario(path))[0]
    before = gc.get_threshold()
    found: list[tuple[tuple[int, int, int], int]] = []
    gc.collect()
    gc.disable()
    try:
        result = simulate(job, progress=lambda _: found.append((gc.get_threshold(), gc.collect())))
    finally:
        gc.enable()
    assert result.metrics["completed"] > 300
    assert result.per_stage["vlm"]["rejected_over_max_seq_len"] > 10
    assert gc.get_threshold() == before
    assert {thresholds for thresholds, _ in found} == {(before[0], before[1], sim.api.NO_FULL_COLLECTIONS)}
    assert [garbage for _, garbage in found[1:]] == [0] * (len(found) - 1)  # none after the first chunk


def test_a_closed_loop_that_sends_the_request_limit_stops_there_with_a_result(tmp_path, capsys, monkeypatch):
    """A closed loop's volume depends on the deployment's speed: no check before the run can know it, so
    ``validate`` accepts and ``simulate`` stops at the limit with the figures until then (before: exit 2 after
    ``validate`` said ok)."""
    import sim.driver

    monkeypatch.setattr(sim.driver, "MAX_RUN_REQUESTS", 100)
    path = scenario_file(tmp_path, arrivals(kind="closed_loop", users=8, think_time_s=0.5))
    metrics = simulate(scenario_jobs(load_scenario(path))[0]).metrics
    assert (metrics["requests"], metrics["stopped_because"]) == (100, "request_limit")
    assert 0 < metrics["stopped_early_s"] < 20
    assert not metrics["overloaded"]
    assert metrics["requests"] == metrics["completed"] + metrics["rejected"] + metrics["unfinished"]
    assert run_main(capsys, "validate", str(path))[0] == 0
    code, out, _ = run_main(capsys, "simulate", str(path))
    assert code == 0
    assert (f"STOPPED small: the closed loop sent 100 requests, as many as one simulation may run, by "
            f"{metrics['stopped_early_s']:.2g} s of 20 s") in out
