"""Background runs of a scenario, in one QThread: what the worker does is one of the tasks below.

The worker owns no widgets. It reports overall progress (0..1) and sends
back one immutable ``RunOutcome`` through typed signals; between chunks of
simulated time every simulation asks the ``cancel`` callback, which reads a
``threading.Event`` the GUI thread sets, so a cancel stops the run within one
chunk (1/100 of a deployment's simulated span). The tasks:

- ``run_scenario``: what Run does: every deployment as written, one after
  another (``simulate_all``), unless a stage says ``replicas: auto``: then the
  planner's capacity search sizes those stages (``search_sizes``), so an
  ``auto`` stage is never run at a size nobody chose;
- ``search_sizes``: the planner's capacity search (``planner.plan.plan_scenario``:
  the cheapest replicas (USD/day) of every ``auto`` stage, or of every model stage, that
  meet the SLO), its simulations heard chunk by chunk (``SearchProgress``);
- ``sensitivity_of``: a finished run's deployments again under changed
  traffic (``planner.sensitivity``).

The planner's simulations run on one helper thread, which can ask ``cancel``
(worker processes could not).
"""

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property

from PySide6.QtCore import QObject, Signal, Slot

from planner.capacity import auto_bounds
from planner.compare import Comparison
from planner.plan import PlanReport, plan_as_written, plan_scenario, with_sensitivity_runs
from planner.run import ScenarioReport, scenario_jobs
from planner.scenario import Scenario
from profiles.errors import VlmplanError
from sim.api import SimulationCancelled, simulate
from sim.deployment import DeploymentSpec

Progress = Callable[[float, str], None]  # overall fraction 0..1, what is being done
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: the scenario as run (with the horizon used), its metrics, and the plan view of them."""

    scenario: Scenario
    report: ScenarioReport
    plan: PlanReport  # feasibility, quality, Pareto flags, assumptions, sensitivity (what Export writes)

    @cached_property
    def comparison(self) -> Comparison:
        """The plan's comparison (``planner.compare``): what the table and every plot show."""
        return self.plan.comparison()


Task = Callable[[Progress, Cancel], RunOutcome]


class SimulationWorker(QObject):
    """Runs its task when ``run`` is invoked (in the thread it was moved to)."""

    progress = Signal(float, str)  # overall fraction 0..1, what is being done
    finished = Signal(object)  # RunOutcome
    failed = Signal(str)  # a message for the user
    cancelled = Signal()

    def __init__(self, task: Task, cancel_flag: threading.Event) -> None:
        super().__init__()
        self._task = task
        self._cancel_flag = cancel_flag

    @Slot()
    def run(self) -> None:
        """Run the task; emit exactly one of finished, failed or cancelled."""
        try:
            outcome = self._task(self.progress.emit, self._cancel_flag.is_set)
        except SimulationCancelled:
            self.cancelled.emit()
        except VlmplanError as error:
            self.failed.emit(str(error))
        except Exception:  # noqa: BLE001 - a worker thread has no caller: show the bug instead of hanging
            self.failed.emit(f"internal error (please report):\n{traceback.format_exc()}")
        else:
            self.finished.emit(outcome)


def has_auto_stages(scenario: Scenario) -> bool:
    """Whether some stage of ``scenario`` says ``replicas: auto`` (a size only the capacity search gives)."""
    return any(auto_bounds(deployment) for deployment in scenario.deployments)


def run_scenario(scenario: Scenario, progress: Progress, cancel: Cancel) -> RunOutcome:
    """Every deployment as written; the capacity search sizes its ``replicas: auto`` stages when it has any."""
    if has_auto_stages(scenario):
        return search_sizes(False, scenario, progress, cancel)
    return simulate_all(scenario, progress, cancel)


def simulate_all(scenario: Scenario, progress: Progress, cancel: Cancel) -> RunOutcome:
    """Every deployment as written; raises SimulationCancelled when ``cancel()`` turns true."""
    jobs = scenario_jobs(scenario)
    results = []
    for index, job in enumerate(jobs):
        if cancel():
            raise SimulationCancelled("cancelled before the next deployment")
        results.append(simulate(job, progress=_share(progress, index, len(jobs), f"simulating {job.deployment.name}"),
                                cancel=cancel))
    catalog = jobs[0].catalog
    assert catalog is not None  # scenario_jobs gives every job the scenario's catalog
    plan = plan_as_written(scenario, catalog, scenario.seed, scenario.horizon_s, results)
    return RunOutcome(scenario=scenario, report=_report(scenario, results), plan=plan)


def search_sizes(every_stage: bool, scenario: Scenario, progress: Progress, cancel: Cancel) -> RunOutcome:
    """The capacity search of every deployment (``every_stage``: of all model stages, not only ``auto``
    ones); its chosen sizes' results are the run's."""
    heard = SearchProgress(scenario, every_stage, progress)
    with ThreadPoolExecutor(1) as executor:
        plan = plan_scenario(scenario, executor, size_all=every_stage, cancel=cancel,
                             progress=heard.sized, simulation_progress=heard.simulating)
    return RunOutcome(scenario=scenario, report=_report(scenario, [p.result for p in plan.plans]), plan=plan)


def sensitivity_of(outcome: RunOutcome, progress: Progress, cancel: Cancel) -> RunOutcome:
    """``outcome`` with its deployments (at the sizes it ran) simulated again under changed traffic."""
    job = scenario_jobs(outcome.scenario)[0]
    with ThreadPoolExecutor(1) as executor:
        plan = with_sensitivity_runs(outcome.plan, job, executor, cancel=cancel,
                                     simulation_progress=lambda run, runs, fraction: progress(
                                         (run + fraction) / runs, f"simulating under changed traffic: run {run + 1} of {runs}"))
    return replace(outcome, plan=plan)


class SearchProgress:
    """The whole search's progress (0..1), moving with each simulation's own chunks.

    How many simulations a search takes is known only when it ends, so a
    searched deployment is credited half of what remains with each
    simulation it runs (1 - 0.5 ** simulations, counting the running one's
    fraction); one with nothing to size runs once and is credited that run's
    fraction. The planner's count of sized deployments is a floor. The
    reported fraction never goes back.
    """

    def __init__(self, scenario: Scenario, every_stage: bool, report: Progress) -> None:
        self._report = report
        self._searched = {d.name: every_stage or bool(auto_bounds(d)) for d in scenario.deployments}
        self._finished = dict.fromkeys(self._searched, 0)  # simulations run to the end, per deployment
        self._running = dict.fromkeys(self._searched, 0.0)  # the fraction of the one running
        self._floor = 0.0
        self._shown = 0.0

    def simulating(self, deployment: DeploymentSpec, fraction: float) -> None:
        """A chunk of one of the search's simulations of ``deployment`` ran (``fraction`` of that run)."""
        name = deployment.name
        if fraction < self._running[name]:  # fractions only grow within a run: this is the next one
            self._finished[name] += 1
        self._running[name] = fraction
        self._emit(f"sizing {name}: simulation {self._finished[name] + 1}")

    def sized(self, fraction: float) -> None:
        """The planner's share of deployments whose search has ended."""
        self._floor = fraction
        self._emit("sizing replicas")

    def _credit(self, name: str) -> float:
        runs = self._finished[name] + self._running[name]
        return 1.0 - 0.5 ** runs if self._searched[name] else min(runs, 1.0)

    def _emit(self, what: str) -> None:
        estimate = sum(self._credit(name) for name in self._searched) / max(len(self._searched), 1)
        self._shown = max(self._shown, self._floor, estimate)
        self._report(self._shown, what)


def _report(scenario: Scenario, results: list) -> ScenarioReport:
    return ScenarioReport(scenario=scenario.name, seed=scenario.seed, horizon_s=scenario.horizon_s,
                          slo_attainment_target=scenario.slo.attainment, results=tuple(results), slo=scenario.slo,
                          deployments=tuple(scenario.deployments))


def _share(progress: Progress, index: int, count: int, name: str) -> Callable[[float], None]:
    """A ``simulate`` progress callback mapping job ``index``'s fraction into the whole run's."""
    def report(fraction: float) -> None:
        progress((index + fraction) / count, name)
    return report
