"""Validate the whole simulator (engine + performance model) against published serving measurements.

Each point is a scenario file under ``benchmarks/scenarios/`` that rebuilds a
published setup (FACTS.md section 5); the simulator replays it and the
measured quantity is read from the result. Nothing is tuned to these points.

MLPerf's LoadGen times a sample's TPOT as (latency - first-token latency) /
(tokens - 1) and reports the mean and percentiles over samples
(mlcommons/inference, loadgen/logging.cc and results.cc): vlmplan's per-request
``tpot_mean_s`` / ``tpot_p99_s`` are the same quantities.

Run: ``python benchmarks/validate_sim.py`` (``--markdown`` for the README table;
``--load-sweep`` replays the MLPerf server scenario at higher arrival rates, and both server scenarios
with every step slower).
"""

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from planner.run import scenario_jobs, simulate_scenario
from planner.scenario import load_scenario
from profiles.catalog import load_catalog
from profiles.perf import perf_model
from sim.api import SimulationResult, simulate
from sim.deployment import ModelStage

SCENARIOS = Path(__file__).parent / "scenarios"


class SimPoint(NamedTuple):
    """A published measurement and how to read the same quantity from a simulation result."""

    name: str
    scenario: str
    deployment: str
    unit: str
    measured: float
    read: Callable[[SimulationResult], float]


def _metric(key: str, scale: float = 1.0) -> Callable[[SimulationResult], float]:
    """Read ``metrics[key] * scale`` from a result."""
    return lambda result: result.metrics[key] * scale


POINTS = (
    SimPoint("vLLM CI latency llama-3-8b, H200 TP1, batch 8, 32 in/128 out", "vllm_ci_latency.yaml",
             "llama-3-8b-tp1", "ms", 833.4, _metric("e2e_mean_s", 1e3)),
    SimPoint("vLLM CI latency llama-3-70b, H200 TP4", "vllm_ci_latency.yaml",
             "llama-3-70b-tp4", "ms", 2077.5, _metric("e2e_mean_s", 1e3)),
    SimPoint("vLLM CI latency mixtral-8x7b, H200 TP2", "vllm_ci_latency.yaml",
             "mixtral-8x7b-tp2", "ms", 1917.4, _metric("e2e_mean_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b offline, 8x H100 (TP2x4, fp8): samples/s", "mlperf_llama2_70b_offline.yaml",
             "dgx-h100-tp2x4-fp8", "samples/s", 84.48, _metric("throughput_rps")),
    SimPoint("MLPerf v4.1 llama2-70b server @75 QPS: samples/s", "mlperf_llama2_70b_server.yaml",
             "dgx-h100-tp2x4-fp8", "samples/s", 74.42, _metric("throughput_rps")),
    SimPoint("MLPerf v4.1 llama2-70b server @75 QPS: TTFT mean", "mlperf_llama2_70b_server.yaml",
             "dgx-h100-tp2x4-fp8", "ms", 275.9, _metric("ttft_mean_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server @75 QPS: TTFT p50", "mlperf_llama2_70b_server.yaml",
             "dgx-h100-tp2x4-fp8", "ms", 273.0, _metric("ttft_p50_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server @75 QPS: TTFT p99", "mlperf_llama2_70b_server.yaml",
             "dgx-h100-tp2x4-fp8", "ms", 461.0, _metric("ttft_p99_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server @75 QPS: TPOT mean", "mlperf_llama2_70b_server.yaml",
             "dgx-h100-tp2x4-fp8", "ms", 155.0, _metric("tpot_mean_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server @75 QPS: TPOT p99", "mlperf_llama2_70b_server.yaml",
             "dgx-h100-tp2x4-fp8", "ms", 175.0, _metric("tpot_p99_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b offline, 8x H200 (TP1x8, fp8): samples/s", "mlperf_llama2_70b_offline_h200.yaml",
             "h200x8-tp1-fp8", "samples/s", 107.477, _metric("throughput_rps")),
    SimPoint("MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: samples/s", "mlperf_llama2_70b_server_h200.yaml",
             "h200x8-tp1-fp8", "samples/s", 100.35, _metric("throughput_rps")),
    SimPoint("MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: TTFT mean", "mlperf_llama2_70b_server_h200.yaml",
             "h200x8-tp1-fp8", "ms", 198.3, _metric("ttft_mean_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: TTFT p99", "mlperf_llama2_70b_server_h200.yaml",
             "h200x8-tp1-fp8", "ms", 452.7, _metric("ttft_p99_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: TPOT mean", "mlperf_llama2_70b_server_h200.yaml",
             "h200x8-tp1-fp8", "ms", 123.3, _metric("tpot_mean_s", 1e3)),
    SimPoint("MLPerf v4.1 llama2-70b server, 8x H200 @101 QPS: TPOT p99", "mlperf_llama2_70b_server_h200.yaml",
             "h200x8-tp1-fp8", "ms", 146.0, _metric("tpot_p99_s", 1e3)),
)


def simulated_values() -> list[tuple[SimPoint, float]]:
    """Run each scenario once and read every point's predicted value."""
    results: dict[str, dict[str, SimulationResult]] = {}
    for scenario_file in dict.fromkeys(point.scenario for point in POINTS):
        report = simulate_scenario(load_scenario(SCENARIOS / scenario_file))
        results[scenario_file] = {result.deployment: result for result in report.results}
    return [(point, point.read(results[point.scenario][point.deployment])) for point in POINTS]


SERVER_SCENARIO = "mlperf_llama2_70b_server.yaml"
H200_SERVER_SCENARIO = "mlperf_llama2_70b_server_h200.yaml"
SWEEP_RATES_RPS = (75.0, 80.0, 85.0, 90.0)


def load_sweep(rates_rps: tuple[float, ...] = SWEEP_RATES_RPS) -> list[tuple[float, dict[str, float]]]:
    """The MLPerf server scenario replayed at each Poisson arrival rate: (rate, metrics).

    Near saturation a replica's batch is set by a fixed point (sequences in flight = arrival rate x
    output length x step time, and the step grows with the sequences and the prompts it carries),
    so the latencies move much faster than the load: this shows how fast.
    """
    scenario = load_scenario(SCENARIOS / SERVER_SCENARIO)
    rows = []
    for rate in rates_rps:
        arrivals = scenario.traffic.arrivals.model_copy(update={"rate_rps": rate})
        traffic = scenario.traffic.model_copy(update={"arrivals": arrivals})
        report = simulate_scenario(scenario.model_copy(update={"traffic": traffic}))
        rows.append((rate, report.results[0].metrics))
    return rows


STEP_SCALES = (1.0, 1.05, 1.1, 1.15, 1.2)


def step_sweep(scenario_file: str, scales: tuple[float, ...] = STEP_SCALES) -> list[tuple[float, dict[str, float]]]:
    """A server scenario replayed at its own rate with every GPU step ``scale`` times slower: (scale, metrics).

    The same fixed point read the other way: how much slower vlmplan's steps would have to be for its
    latencies to meet the measured ones (``SimulationJob.step_time_scale``, what ``vlmplan plan
    --sensitivity`` uses at 1.25).
    """
    job = scenario_jobs(load_scenario(SCENARIOS / scenario_file))[0]
    return [(scale, simulate(replace(job, step_time_scale=scale)).metrics) for scale in scales]


class OperatingPoint(NamedTuple):
    """A measured MLPerf server run, per replica, from LoadGen's summary (FACTS.md 5a)."""

    scenario: str
    target_qps: float
    completed_qps: float
    mean_latency_s: float
    tpot_mean_ms: float

    def replicas(self) -> int:
        """Replicas of the scenario's one model stage."""
        stage = _only_stage(self.scenario)
        assert isinstance(stage.replicas, int)
        return stage.replicas

    def sequences(self) -> int:
        """Sequences in flight on a replica, by Little's law (completed rate x mean latency)."""
        return round(self.completed_qps / self.replicas() * self.mean_latency_s)

    def prompts_per_step(self) -> float:
        """Prompts arriving at a replica during one step (the mean TPOT): each step admits them whole."""
        return self.target_qps / self.replicas() * self.tpot_mean_ms / 1e3


OPERATING_POINTS = (
    OperatingPoint(SERVER_SCENARIO, 75.0, 74.42, 44.955, 155.0),  # 836 sequences, 2.9 prompts a step
    OperatingPoint(H200_SERVER_SCENARIO, 101.0, 100.35, 35.855, 123.3),  # 450 sequences, 1.6 prompts
)
PROMPT_TOKENS = 290  # the scenarios' mean prompt (unverified, FACTS.md 5a)
KV_TOKENS_PER_SEQUENCE = (450, 600)  # prompt + half the mean output, or + its length-biased half


def _only_stage(scenario_file: str) -> ModelStage:
    """The one model stage of a validation scenario's first deployment."""
    stage = load_scenario(SCENARIOS / scenario_file).deployments[0].stages[0]
    assert isinstance(stage, ModelStage)
    return stage


def operating_point_steps(point: OperatingPoint) -> list[tuple[str, float]]:
    """vlmplan's step time at a measured server operating point: decode-only, and with the prompts a step
    carries (a fractional count as the mean of the two whole counts around it), at each KV length."""
    stage = _only_stage(point.scenario)
    assert isinstance(stage.model, str)
    assert isinstance(stage.gpu, str)
    catalog = load_catalog()
    perf = perf_model(catalog.resolved[stage.model], catalog.gpu(stage.gpu), stage.tensor_parallel,
                      precision=stage.precision, engine=stage.engine)
    sequences, prompts = point.sequences(), point.prompts_per_step()
    whole = int(prompts)
    rows = []
    for kv_per_sequence in KV_TOKENS_PER_SEQUENCE:
        kv = sequences * kv_per_sequence
        fewer, more = (perf.iteration_s(((PROMPT_TOKENS, 0),) * n, sequences, kv) for n in (whole, whole + 1))
        rows.append((f"{sequences} decodes at {kv_per_sequence} KV tokens", perf.iteration_s((), sequences, kv)))
        rows.append((f"  + {prompts:.1f} prompts of {PROMPT_TOKENS} ({kv_per_sequence} KV)",
                     fewer + (prompts - whole) * (more - fewer)))
    return rows


def print_load_sweep() -> None:
    """Print vlmplan's step at each measured server operating point, then the H100 sweep, one rate a line."""
    for point in OPERATING_POINTS:
        print(f"{point.scenario}: measured at {point.target_qps:g} QPS: mean TPOT {point.tpot_mean_ms:g} ms; "
              f"vlmplan's step at the measured operating point (per replica):")
        for label, seconds in operating_point_steps(point):
            print(f"  {label:44s} {seconds * 1e3:6.1f} ms")
    print(f"{SERVER_SCENARIO}: measured {_measured(SERVER_SCENARIO)}; vlmplan's replay at higher arrival rates:")
    for rate, m in load_sweep():
        print(f"  {rate:5.1f} QPS: {_latencies(m)}")
    for scenario_file in (SERVER_SCENARIO, H200_SERVER_SCENARIO):
        print(f"{scenario_file}: measured {_measured(scenario_file)}; vlmplan's replay at the measured rate, "
              "every step slower:")
        for scale, m in step_sweep(scenario_file):
            print(f"  steps x{scale:<4g}: {_latencies(m)}")


def _measured(scenario_file: str) -> str:
    """The published figures of one scenario's points (``POINTS``), one line: "TTFT mean 275.9 ms, ..."."""
    figures = []
    for point in POINTS:
        if point.scenario == scenario_file:
            what = point.name.rsplit(": ", 1)[-1]  # "TTFT mean"; a throughput point's is its unit
            figures.append(f"{'' if what == point.unit else what + ' '}{point.measured:,.1f} {point.unit}")
    return ", ".join(figures)


def _latencies(m: dict[str, float]) -> str:
    """A server replay's throughput, TTFT and TPOT, one line."""
    return (f"{m['throughput_rps']:6.2f} samples/s  TTFT mean {m['ttft_mean_s'] * 1e3:6.1f} ms  "
            f"p50 {m['ttft_p50_s'] * 1e3:6.1f}  p99 {m['ttft_p99_s'] * 1e3:6.1f}  "
            f"TPOT mean {m['tpot_mean_s'] * 1e3:6.1f} ms  p99 {m['tpot_p99_s'] * 1e3:6.1f}  "
            f"preemptions {m['preemptions']}")


def error_pct(measured: float, predicted: float) -> float:
    """(predicted - measured) / measured, percent."""
    return 100.0 * (predicted - measured) / measured


def main() -> None:
    """Print the validation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="Print a Markdown table.")
    parser.add_argument("--load-sweep", action="store_true",
                        help="Replay the MLPerf server scenario at several arrival rates instead.")
    args = parser.parse_args()
    if args.load_sweep:
        print_load_sweep()
        return
    markdown = args.markdown
    rows = simulated_values()
    if markdown:
        print("| point | measured | simulated | error % |\n|---|---|---|---|")
    for point, predicted in rows:
        error = error_pct(point.measured, predicted)
        if markdown:
            print(f"| {point.name} | {point.measured:,.1f} {point.unit} | {predicted:,.1f} {point.unit} | {error:+.1f} |")
        else:
            print(f"{point.name:75s} measured {point.measured:9,.1f} {point.unit:9s} "
                  f"simulated {predicted:9,.1f}  error {error:+6.1f} %")


if __name__ == "__main__":
    main()
