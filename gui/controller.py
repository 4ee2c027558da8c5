"""The run controller: owns the background thread and worker of a scenario run; widgets only listen.

Public signals, all delivered in the GUI thread: ``started``,
``progress(fraction 0..1, what is being done)``, ``finished(RunOutcome)``,
``failed(message)`` and ``cancelled``. One run at a time.
"""

import threading
from functools import partial

from PySide6.QtCore import QObject, QThread, Signal, Slot

from gui.worker import (
    RunOutcome,
    SimulationWorker,
    Task,
    run_scenario,
    search_sizes,
    sensitivity_of,
)
from planner.scenario import Scenario

# How a run sizes the replicas (the window's choices, in order). No choice runs a `replicas: auto`
# stage at a size nobody chose: as written, those stages are sized by the capacity search.
AS_WRITTEN_AUTO_SIZED = "as written, auto stages sized"
SEARCH_EVERY_STAGE = "search every model stage"
SIZINGS = (AS_WRITTEN_AUTO_SIZED, SEARCH_EVERY_STAGE)


class RunController(QObject):
    """Starts, cancels and tears down scenario runs; re-emits the worker's signals."""

    started = Signal()
    progress = Signal(float, str)
    finished = Signal(object)  # RunOutcome
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: SimulationWorker | None = None
        self._cancel_flag = threading.Event()

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._thread is not None

    def start(self, scenario: Scenario, horizon_s: float, sizing: str = AS_WRITTEN_AUTO_SIZED) -> None:
        """Run every deployment of ``scenario`` for ``horizon_s`` simulated seconds in the background;
        ``sizing`` (one of ``SIZINGS``): replicas as written with ``auto`` stages searched, or every model
        stage searched."""
        scenario = scenario.model_copy(update={"horizon_s": horizon_s})
        if sizing == SEARCH_EVERY_STAGE:
            self._launch(partial(search_sizes, True, scenario))
        else:
            self._launch(partial(run_scenario, scenario))

    def start_sensitivity(self, outcome: RunOutcome) -> None:
        """Simulate ``outcome``'s deployments again under more and less load and longer answers."""
        self._launch(partial(sensitivity_of, outcome))

    def _launch(self, task: Task) -> None:
        if self.running:
            raise RuntimeError("a run is already in progress; cancel it first")
        self._cancel_flag = threading.Event()
        thread = QThread()
        worker = SimulationWorker(task, self._cancel_flag)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._thread, self._worker = thread, worker
        thread.start()
        self.started.emit()

    def cancel(self) -> None:
        """Ask the running simulation to stop at its next chunk (``cancelled`` follows)."""
        self._cancel_flag.set()

    def shutdown(self) -> None:
        """Cancel any run and wait for its thread to end (call before the window closes)."""
        if self._thread is None:
            return
        self._cancel_flag.set()
        self._thread.quit()
        self._thread.wait()
        self._release()

    @Slot(float, str)
    def _on_progress(self, fraction: float, doing: str) -> None:
        self.progress.emit(fraction, doing)

    @Slot(object)
    def _on_finished(self, outcome: RunOutcome) -> None:
        self._end_thread()
        self.finished.emit(outcome)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._end_thread()
        self.failed.emit(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self._end_thread()
        self.cancelled.emit()

    def _end_thread(self) -> None:
        """The worker has emitted its last signal: stop its thread's event loop and let both go."""
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
        self._release()

    def _release(self) -> None:
        if self._worker is not None:
            self._worker.deleteLater()
        if self._thread is not None:
            self._thread.deleteLater()
        self._thread, self._worker = None, None
