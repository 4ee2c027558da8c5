"""The main window: the scenario on the left (a form for the common edits above its YAML), results on the right.

Toolbar: Open, Save as, Validate, horizon (simulated seconds), replicas
(as written or searched), Run, Cancel, Sensitivity, Export. Validation parses
the editor's text (``planner.scenario.parse_scenario``) and lists every
problem with its field path, also at the form's field. The YAML is the
scenario: a form edit is written into it (``gui.yamledit``) and validated as
typed; a YAML edit refills the form. Run validates, then hands the scenario
to the ``RunController``; the window only listens to its signals.
"""

import re
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QFontDatabase, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from gui.controller import SIZINGS, RunController
from gui.form import ScenarioForm, problems_by_field
from gui.report import export_filter, export_plan, with_export_suffix
from gui.results import ResultsView
from gui.worker import RunOutcome
from gui.yamledit import FieldPath, YamlEditError, load_yaml, set_field
from planner.scenario import (
    MAX_HORIZON_S,
    Scenario,
    default_scenario_path,
    parse_scenario,
    scenario_catalog,
)
from planner.sensitivity import changes
from profiles.errors import VlmplanError
from profiles.files import read_text

YAML_POSITION = re.compile(r":(\d+):(\d+): invalid YAML")
ERROR_STYLE = "color: #a00000;"
OK_STYLE = "color: #006000;"
EDITOR_COLUMNS = 112  # the YAML pane fits this many characters (99% of the bundled scenarios' lines)
FORM_SYNC_MS = 300  # after typing in the YAML pauses this long, the form follows
WINDOW_SIZE = (1920, 1080)


class MainWindow(QMainWindow):
    """Open/edit/validate a scenario, run it in the background, compare the deployments, export."""

    def __init__(self, scenario_path: Path | None = None) -> None:
        super().__init__()
        self.controller = RunController(self)
        self.scenario_path = scenario_path or default_scenario_path()
        self.outcome: RunOutcome | None = None
        self._build_editor()
        self.results = ResultsView()
        self._build_toolbar()
        self._build_status()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.editor_panel)
        splitter.addWidget(self.results)
        splitter.setStretchFactor(1, 1)
        editor_px = self.editor_panel.sizeHint().width()
        splitter.setSizes([editor_px, WINDOW_SIZE[0] - editor_px])
        self.setCentralWidget(splitter)
        self._connect_controller()
        self.resize(*WINDOW_SIZE)
        self.open_scenario(self.scenario_path)

    # ------------------------------------------------------------ construction

    def _build_editor(self) -> None:
        self.path_label = QLabel()
        self.path_label.setWordWrap(True)
        self.editor = QPlainTextEdit()
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.editor.modificationChanged.connect(self._update_title)
        # wide enough for the scenario's lines: EDITOR_COLUMNS characters, the frame and a scroll bar
        columns_px = self.editor.fontMetrics().horizontalAdvance("x" * EDITOR_COLUMNS)
        self.editor.setMinimumWidth(columns_px + 2 * self.editor.frameWidth()
                                    + self.editor.verticalScrollBar().sizeHint().width() + 8)
        self.messages = QPlainTextEdit()
        self.messages.setReadOnly(True)
        self.messages.setMaximumHeight(90)
        self.messages.setPlaceholderText("Validate or Run to check the scenario; problems appear here "
                                         "with their field paths.")
        self.form = ScenarioForm()
        self.form.edited.connect(self.apply_form_edit)
        self._form_writing = False  # the form is writing into the YAML: do not refill the form from it
        self._form_sync = QTimer(self)
        self._form_sync.setSingleShot(True)
        self._form_sync.setInterval(FORM_SYNC_MS)
        self._form_sync.timeout.connect(self._yaml_edited)
        self.editor.textChanged.connect(self._on_text_changed)
        self.editor_panel = QWidget()
        layout = QVBoxLayout(self.editor_panel)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.path_label)
        panes = QSplitter(Qt.Orientation.Vertical)
        panes.addWidget(self.form)
        panes.addWidget(self.editor)
        panes.setStretchFactor(1, 1)
        panes.setSizes([380, 560])
        layout.addWidget(panes, 1)
        layout.addWidget(self.messages)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Scenario")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.open_action = self._action(bar, "Open…", self._choose_scenario, QKeySequence.StandardKey.Open)
        self.save_action = self._action(bar, "Save as…", self._choose_save_path, QKeySequence.StandardKey.SaveAs)
        bar.addSeparator()
        self.validate_action = self._action(bar, "Validate", self.validate, None)
        bar.addWidget(QLabel(" Horizon: "))
        self.horizon = QDoubleSpinBox()
        self.horizon.setRange(1.0, MAX_HORIZON_S)
        self.horizon.setDecimals(0)
        self.horizon.setSingleStep(60.0)
        self.horizon.setSuffix(" s simulated")
        self.horizon.setToolTip("Simulated seconds (overrides the scenario's horizon_s; 86400 = a day)")
        self.horizon.valueChanged.connect(self.form.show_horizon)
        bar.addWidget(self.horizon)
        bar.addWidget(QLabel(" Replicas: "))
        self.sizing = QComboBox()
        self.sizing.addItems(SIZINGS)
        self.sizing.setToolTip("As written: simulate the replicas the scenario writes; a `replicas: auto` stage is "
                               "sized by the capacity search (the cheapest replicas, $/day, that meet the SLO; several "
                               "simulations each). Search every model stage: that search for every model stage, as "
                               "`vlmplan plan --size-all` does.")
        bar.addWidget(self.sizing)
        self.run_action = self._action(bar, "Run", self.run, QKeySequence("Ctrl+R"))
        self.cancel_action = self._action(bar, "Cancel", self.controller.cancel, None)
        self.sensitivity_action = self._action(bar, "Sensitivity", self.run_sensitivity, None)
        self.sensitivity_action.setToolTip(f"Simulate the last run's deployments again with {changes()}")
        bar.addSeparator()
        self.export_action = self._action(bar, "Export…", self._choose_export_path, QKeySequence("Ctrl+E"))
        self.cancel_action.setEnabled(False)
        self.export_action.setEnabled(False)
        self.sensitivity_action.setEnabled(False)

    def _action(self, bar: QToolBar, text: str, slot: Callable[[], object],
                shortcut: QKeySequence | QKeySequence.StandardKey | None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        bar.addAction(action)
        return action

    def _build_status(self) -> None:
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(320)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)

    def _connect_controller(self) -> None:
        self.controller.started.connect(self._on_started)
        self.controller.progress.connect(self._on_progress)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.cancelled.connect(self._on_cancelled)

    # ------------------------------------------------------------ scenario file

    def open_scenario(self, path: Path) -> None:
        """Load the file at ``path`` into the editor and take its horizon; problems go to the message pane."""
        try:  # the CLI's reader: a FIFO or device is refused before it is opened, never read
            text = read_text(path, "scenario")
        except VlmplanError as error:
            self._show_problem(str(error))
            return
        self.scenario_path = path
        self.editor.setPlainText(text)
        self.editor.document().setModified(False)
        self.path_label.setText(f"<b>{path.name}</b> &nbsp; <small>{path.parent}</small>")
        self._update_title()
        self._fill_form()
        scenario = self.validate()
        if scenario is not None:
            self.horizon.setValue(scenario.horizon_s)

    def save_scenario(self, path: Path) -> None:
        """Write the editor's text to ``path`` (atomically) and make it the current file."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(self.editor.toPlainText(), encoding="utf-8")
            tmp.replace(path)
        except OSError as error:
            self._show_problem(f"{path}: cannot write: {error.strerror or error}")
            return
        self.scenario_path = path
        self.editor.document().setModified(False)
        self.path_label.setText(f"<b>{path.name}</b> &nbsp; <small>{path.parent}</small>")
        self.statusBar().showMessage(f"saved {path}", 5000)

    def validate(self) -> Scenario | None:
        """Check the editor's text; show 'ok' or every problem with its field path (also at the form's fields).
        None when invalid."""
        if self._form_sync.isActive():  # the YAML was typed in: the form follows first
            self._form_sync.stop()
            self._fill_form()
        return self._check()

    def _check(self) -> Scenario | None:
        where = self.scenario_path.name
        try:
            scenario = parse_scenario(self.editor.toPlainText(), where, self.scenario_path.parent)
            catalog = scenario_catalog(scenario, where)
        except VlmplanError as error:
            self._show_problem(str(error))
            self.form.show_errors(problems_by_field(str(error), where))
            return None
        self.form.show_errors([])
        self.form.show_scenario(scenario, catalog, self.horizon.value())
        self.messages.setStyleSheet(OK_STYLE)
        self.messages.setPlainText(f"ok: {scenario.name}: {len(scenario.deployments)} deployments, "
                                   f"{len(scenario.class_names)} request classes")
        return scenario

    # ------------------------------------------------------------ the form and the YAML

    def apply_form_edit(self, path: FieldPath, value: str | None) -> None:
        """Write a form edit into the YAML (only the changed characters: undo, scroll and comments stay),
        then validate it."""
        try:
            new_text = set_field(self.editor.toPlainText(), path, value)
        except YamlEditError as error:
            self._show_problem(f"{self.scenario_path.name}: {'.'.join(map(str, path))}: {error}")
            return
        self._replace_changed_text(new_text)
        self._check()

    def _replace_changed_text(self, new_text: str) -> None:
        old_text = self.editor.toPlainText()
        start = 0
        limit = min(len(old_text), len(new_text))
        while start < limit and old_text[start] == new_text[start]:
            start += 1
        end_old, end_new = len(old_text), len(new_text)
        while end_old > start and end_new > start and old_text[end_old - 1] == new_text[end_new - 1]:
            end_old, end_new = end_old - 1, end_new - 1
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(start)
        cursor.setPosition(end_old, QTextCursor.MoveMode.KeepAnchor)
        self._form_writing = True
        try:
            cursor.insertText(new_text[start:end_new])
        finally:
            self._form_writing = False

    def _on_text_changed(self) -> None:
        if not self._form_writing:
            self._form_sync.start()  # the form follows once typing in the YAML pauses

    def _yaml_edited(self) -> None:
        self._fill_form()
        self._check()

    def _fill_form(self) -> None:
        """Refill the form from the YAML's values (left as it is while the YAML does not parse)."""
        try:
            data = load_yaml(self.editor.toPlainText())
        except YamlEditError:
            return
        if isinstance(data, dict):
            self.form.show_data(data)

    def _show_problem(self, message: str) -> None:
        self.messages.setStyleSheet(ERROR_STYLE)
        self.messages.setPlainText(message)
        position = YAML_POSITION.search(message)
        if position is not None:  # a YAML syntax error: put the cursor on it
            block = self.editor.document().findBlockByNumber(int(position.group(1)) - 1)
            cursor = QTextCursor(block)
            cursor.movePosition(QTextCursor.MoveOperation.Right, n=int(position.group(2)) - 1)
            self.editor.setTextCursor(cursor)

    # ------------------------------------------------------------ run and results

    def run(self) -> None:
        """Validate the editor's scenario and simulate it in the background for the chosen horizon."""
        if self.controller.running:
            return
        scenario = self.validate()
        if scenario is not None:
            self.controller.start(scenario, self.horizon.value(), self.sizing.currentText())

    def run_sensitivity(self) -> None:
        """Simulate the last run's deployments, at the sizes they ran, under changed traffic."""
        if self.controller.running or self.outcome is None:
            return
        self.controller.start_sensitivity(self.outcome)

    def export_to(self, path: Path) -> None:
        """Write the last run's comparison to ``path``: xlsx, csv or json by its suffix."""
        if self.outcome is None:
            return
        try:
            written = export_plan(self.outcome.plan, path)
        except VlmplanError as error:
            self._show_problem(str(error))
            return
        self.statusBar().showMessage(f"exported {written}", 8000)

    def _on_started(self) -> None:
        self._set_running(True)
        self.progress.setValue(0)
        self.statusBar().showMessage("simulating…")

    def _on_progress(self, fraction: float, doing: str) -> None:
        self.progress.setValue(round(fraction * 1000))
        self.statusBar().showMessage(f"{doing}… {fraction:.1%}")

    def _on_finished(self, outcome: RunOutcome) -> None:
        self.outcome = outcome
        self._set_running(False)
        self.results.show_outcome(outcome)
        rows = outcome.plan.sensitivity
        wall_s = sum(result.metrics.get("sim_wall_s", 0.0) for result in outcome.report.results)
        wall_s += sum(o.result.metrics.get("sim_wall_s", 0.0) for row in rows for o in row.outcomes)
        done = f"sensitivity of {len(rows)} deployments" if rows else f"{len(outcome.report.results)} deployments"
        self.statusBar().showMessage(f"done: {done}, {wall_s:.1f} s of simulation", 8000)

    def _on_failed(self, message: str) -> None:
        self._set_running(False)
        self._show_problem(message)
        self.statusBar().showMessage("run failed", 8000)

    def _on_cancelled(self) -> None:
        self._set_running(False)
        self.statusBar().showMessage("run cancelled", 8000)

    def _set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_action.setEnabled(running)
        for action in (self.run_action, self.open_action, self.validate_action):
            action.setEnabled(not running)
        self.sizing.setEnabled(not running)
        self.export_action.setEnabled(not running and self.outcome is not None)
        self.sensitivity_action.setEnabled(not running and self.outcome is not None)

    # ------------------------------------------------------------ dialogs and window events

    def _choose_scenario(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scenario", str(self.scenario_path.parent),
                                              "Scenarios (*.yaml *.yml);;All files (*)")
        if path:
            self.open_scenario(Path(path))

    def _choose_save_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save scenario as", str(Path.cwd() / self.scenario_path.name),
                                              "Scenarios (*.yaml *.yml)")
        if path:
            self.save_scenario(Path(path))

    def _choose_export_path(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export comparison", str(Path.cwd() / "comparison.xlsx"),
                                                   export_filter())
        if path:
            self.export_to(with_export_suffix(Path(path), chosen))

    def _update_title(self) -> None:
        star = "*" if self.editor.document().isModified() else ""
        self.setWindowTitle(f"vlmplan — {self.scenario_path.name}{star}")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Stop a running simulation before the window goes."""
        self.controller.shutdown()
        super().closeEvent(event)

