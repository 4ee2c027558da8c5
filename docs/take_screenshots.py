"""Re-take the README's screenshots of the desktop app (docs/screenshot.png, docs/screenshot-search.png).

Run under a virtual display at the size they are shown at::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/take_screenshots.py

Each screenshot runs in its own process, as ``vlmplan gui --screenshot FILE``
does: the bundled scenario is simulated, the window saved when the results
are in, and the app quits. ``screenshot.png``: the replicas as written (the
scenario's own hour). ``screenshot-search.png``: 900 s simulated with every
model stage searched, the Deployments tab open and the first deployment
selected, so the line under the table says why it misses. The PNGs stay
lossless (about 400 kB each): 256 colours would save two thirds, but shifted
the small legend swatches away from their plots' colours.
"""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SHOTS = {"as-written": DOCS / "screenshot.png", "search": DOCS / "screenshot-search.png"}
SEARCH_HORIZON_S = 900.0


def take(kind: str, path: Path) -> int:
    """Open the app, run the bundled scenario as ``kind`` says, save the window to ``path``; the exit code."""
    from PySide6.QtWidgets import QApplication

    from gui.app import _screenshot_when_done, run_gui
    from gui.controller import SEARCH_EVERY_STAGE
    from gui.window import MainWindow

    if kind == "as-written":
        return run_gui(None, screenshot_path=path)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("vlmplan")
    window = MainWindow(None)
    window.horizon.setValue(SEARCH_HORIZON_S)
    window.sizing.setCurrentText(SEARCH_EVERY_STAGE)
    window.form.tabs.setCurrentIndex(window.form.tabs.count() - 1)  # Deployments
    window.show()
    # Connected before the grab is: the first row is selected, and explained, when the window is saved.
    window.controller.finished.connect(lambda _outcome: window.results.select_deployment(0))
    _screenshot_when_done(app, window, path)
    return app.exec()


def main() -> int:
    if len(sys.argv) == 3:  # one screenshot, in this process
        return take(sys.argv[1], Path(sys.argv[2]))
    for kind, path in SHOTS.items():
        done = subprocess.run([sys.executable, __file__, kind, str(path)], check=False)
        if done.returncode != 0:
            return done.returncode
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
