"""Background runs of a scenario, in one QThread: what the worker does is one of the tasks below.

The worker owns no widgets. It reports overall progress (0..1) and sends
back one immutable ``RunOutcome`` through typed signals; between chunks of
simulated time every simulation asks the ``cancel`` callback, which reads a
``threading.Event`` the GUI thread sets, so a cancel stops the run within one
chunk (1/100 of a deployment's simulated span). The tasks:

- ``simulate_all``: every deployment as written, one after another;
- ``search_sizes``: the planner's capacity search (``planner.plan.plan_scenario``:
  the cheapest replicas (USD/day) of every ``auto`` stage, or of every model stage, that
  meet the SLO);
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

from planner.compare import Comparison
from planner.plan import PlanReport, plan_as_written, plan_scenario, with_sensitivity_runs
from planner.run import ScenarioReport, scenario_jobs
from planner.scenario import Scenario
from profiles.errors import VlmplanError
from sim.api import SimulationCancelled, simulate

Progress = Callable[[float, str], None]  # overall fraction 0..1, what is being simulated
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

    progress = Signal(float, str)  # overall fraction 0..1, what is being simulated
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


def simulate_all(scenario: Scenario, progress: Progress, cancel: Cancel) -> RunOutcome:
    """Every deployment as written; raises SimulationCancelled when ``cancel()`` turns true."""
    jobs = scenario_jobs(scenario)
    results = []
    for index, job in enumerate(jobs):
        if cancel():
            raise SimulationCancelled("cancelled before the next deployment")
        results.append(simulate(job, progress=_share(progress, index, len(jobs), job.deployment.name),
                                cancel=cancel))
    catalog = jobs[0].catalog
    assert catalog is not None  # scenario_jobs gives every job the scenario's catalog
    plan = plan_as_written(scenario, catalog, scenario.seed, scenario.horizon_s, results)
    return RunOutcome(scenario=scenario, report=_report(scenario, results), plan=plan)


def search_sizes(every_stage: bool, scenario: Scenario, progress: Progress, cancel: Cancel) -> RunOutcome:
    """The capacity search of every deployment (``every_stage``: of all model stages, not only ``auto``
    ones); its chosen sizes' results are the run's."""
    with ThreadPoolExecutor(1) as executor:
        plan = plan_scenario(scenario, executor, size_all=every_stage, cancel=cancel,
                             progress=lambda fraction: progress(fraction, "sizing replicas"))
    return RunOutcome(scenario=scenario, report=_report(scenario, [p.result for p in plan.plans]), plan=plan)


def sensitivity_of(outcome: RunOutcome, progress: Progress, cancel: Cancel) -> RunOutcome:
    """``outcome`` with its deployments (at the sizes it ran) simulated again under changed traffic."""
    job = scenario_jobs(outcome.scenario)[0]
    with ThreadPoolExecutor(1) as executor:
        plan = with_sensitivity_runs(outcome.plan, job, executor, cancel=cancel,
                                     progress=lambda fraction: progress(fraction, "sensitivity runs"))
    return replace(outcome, plan=plan)


def _report(scenario: Scenario, results: list) -> ScenarioReport:
    return ScenarioReport(scenario=scenario.name, seed=scenario.seed, horizon_s=scenario.horizon_s,
                          slo_attainment_target=scenario.slo.attainment, results=tuple(results), slo=scenario.slo,
                          deployments=tuple(scenario.deployments))


def _share(progress: Progress, index: int, count: int, name: str) -> Callable[[float], None]:
    """A ``simulate`` progress callback mapping job ``index``'s fraction into the whole run's."""
    def report(fraction: float) -> None:
        progress((index + fraction) / count, name)
    return report
