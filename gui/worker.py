"""The background run: every deployment of a scenario through ``sim.api.simulate``, in one QThread.

The worker owns no widgets. It reports overall progress (0..1) and sends
back one immutable ``RunOutcome`` through typed signals; between chunks of
simulated time ``simulate`` asks its ``cancel`` callback, which reads a
``threading.Event`` the GUI thread sets. Deployments run one after another
in this thread, so a cancel stops the run within one chunk (1/100 of a
deployment's simulated span). With ``size_auto`` the run is the planner's
capacity search instead (``planner.plan.plan_scenario``: the fewest replicas
of every ``auto`` stage that meet the SLO), its simulations on one helper
thread that asks the same ``cancel``.
"""

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal, Slot

from planner.plan import PlanReport, plan_as_written, plan_scenario
from planner.run import ScenarioReport, scenario_jobs
from planner.scenario import Scenario
from profiles.errors import VlmplanError
from sim.api import SimulationCancelled, simulate


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: the scenario as run (with the horizon used), its metrics, and the plan view of them."""

    scenario: Scenario
    report: ScenarioReport
    plan: PlanReport  # feasibility, quality, Pareto flags, assumptions (what Export writes)


class SimulationWorker(QObject):
    """Runs the scenario's deployments when ``run`` is invoked (in the thread it was moved to)."""

    progress = Signal(float, str)  # overall fraction 0..1, deployment being simulated
    finished = Signal(object)  # RunOutcome
    failed = Signal(str)  # a message for the user
    cancelled = Signal()

    def __init__(self, scenario: Scenario, horizon_s: float, cancel_flag: threading.Event,
                 size_auto: bool = False) -> None:
        super().__init__()
        self._scenario = scenario.model_copy(update={"horizon_s": horizon_s})
        self._cancel_flag = cancel_flag
        self._size_auto = size_auto

    @Slot()
    def run(self) -> None:
        """Simulate every deployment; emit exactly one of finished, failed or cancelled."""
        try:
            outcome = self._size_all() if self._size_auto else self._simulate_all()
        except SimulationCancelled:
            self.cancelled.emit()
        except VlmplanError as error:
            self.failed.emit(str(error))
        except Exception:  # noqa: BLE001 - a worker thread has no caller: show the bug instead of hanging
            self.failed.emit(f"internal error (please report):\n{traceback.format_exc()}")
        else:
            self.finished.emit(outcome)

    def _simulate_all(self) -> RunOutcome:
        """The run itself; raises SimulationCancelled when the flag is set between chunks."""
        scenario = self._scenario
        jobs = scenario_jobs(scenario)
        results = []
        for index, job in enumerate(jobs):
            name = job.deployment.name
            self._check_cancel()
            results.append(simulate(job, progress=self._progress_of(index, len(jobs), name),
                                    cancel=self._cancel_flag.is_set))
        report = ScenarioReport(scenario=scenario.name, seed=scenario.seed, horizon_s=scenario.horizon_s,
                                slo_attainment_target=scenario.slo.attainment, results=tuple(results))
        plan = plan_as_written(scenario, jobs[0].catalog, scenario.seed, scenario.horizon_s, results)
        return RunOutcome(scenario=scenario, report=report, plan=plan)

    def _size_all(self) -> RunOutcome:
        """The capacity search of every deployment; its chosen sizes' results are the run's."""
        scenario = self._scenario
        with ThreadPoolExecutor(1) as executor:
            plan = plan_scenario(scenario, executor, cancel=self._cancel_flag.is_set,
                                 progress=lambda fraction: self.progress.emit(fraction, "sizing auto stages"))
        report = ScenarioReport(scenario=scenario.name, seed=scenario.seed, horizon_s=scenario.horizon_s,
                                slo_attainment_target=scenario.slo.attainment,
                                results=tuple(p.result for p in plan.plans))
        return RunOutcome(scenario=scenario, report=report, plan=plan)

    def _progress_of(self, index: int, count: int, name: str) -> Callable[[float], None]:
        """A ``simulate`` progress callback mapping one job's fraction into the whole run's."""
        def report(fraction: float) -> None:
            self.progress.emit((index + fraction) / count, name)
        return report

    def _check_cancel(self) -> None:
        if self._cancel_flag.is_set():
            raise SimulationCancelled("cancelled before the next deployment")
