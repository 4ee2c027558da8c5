"""Re-take the README's pictures: the desktop app (docs/screenshot.png, docs/screenshot-search.png) and
the workbook (docs/workbook.png).

Run under a virtual display at the size they are shown at::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/take_screenshots.py [app|workbook]

Each screenshot runs in its own process, as ``vlmplan gui --screenshot FILE``
does: the bundled scenario is simulated, the window saved when the results
are in, and the app quits. ``screenshot.png``: the replicas as written (the
scenario's own hour). ``screenshot-search.png``: 900 s simulated with every
model stage searched, the Deployments tab open and the first deployment
selected, so the line under the table says why it misses. The PNGs stay
lossless (about 400 kB each): 256 colours would save two thirds, but shifted
the small legend swatches away from their plots' colours.

``workbook.png``: the workbook of ``vlmplan plan
planner/scenarios/autoscale.yaml --autoscale --xlsx`` as LibreOffice prints
it (needs LibreOffice's ``soffice``, poppler's ``pdftotext`` and
``pdftoppm``, and Pillow): the Comparison sheet's first page, the
Assumptions sheet's inputs and the Charts sheet, each cropped to its content
and stacked.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SHOTS = {"as-written": DOCS / "screenshot.png", "search": DOCS / "screenshot-search.png"}
SEARCH_HORIZON_S = 900.0
WORKBOOK_DPI = 110  # printed pages at about the width the README shows
# The printed pages shown, each found by how it starts: Comparison, Assumptions, Charts.
WORKBOOK_PAGES = ("deployment", "Inputs: change a yellow cell", "Plan 'autoscale': the Comparison sheet")


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


def workbook(path: Path) -> None:
    """The autoscale plan's workbook, printed by LibreOffice, its three pages cropped and stacked into ``path``."""
    from PIL import Image, ImageOps

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        scenario = DOCS.parent / "planner" / "scenarios" / "autoscale.yaml"
        subprocess.run([sys.executable, "-m", "planner", "plan", str(scenario), "--autoscale", "--xlsx",
                        str(work / "plan.xlsx")], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["soffice", f"-env:UserInstallation=file://{work / 'profile'}", "--headless", "--convert-to",
                        "pdf", "--outdir", str(work), str(work / "plan.xlsx")], check=True, stdout=subprocess.DEVNULL)
        pages = subprocess.run(["pdftotext", "-layout", str(work / "plan.pdf"), "-"], check=True,
                               capture_output=True, text=True).stdout.split("\f")
        parts = []
        for start in WORKBOOK_PAGES:
            number = next(k for k, text in enumerate(pages, start=1) if text.lstrip().startswith(start))
            subprocess.run(["pdftoppm", "-r", str(WORKBOOK_DPI), "-png", "-singlefile", "-f", str(number), "-l",
                            str(number), str(work / "plan.pdf"), str(work / f"page-{number}")], check=True)
            with Image.open(work / f"page-{number}.png") as page:
                page = page.convert("RGB")
                parts.append(page.crop(ImageOps.invert(page).getbbox()))
    margin, gap = 12, 32
    stacked = Image.new("RGB", (max(p.width for p in parts) + 2 * margin,
                                sum(p.height for p in parts) + gap * (len(parts) - 1) + 2 * margin), "white")
    top = margin
    for part in parts:
        stacked.paste(part, (margin, top))
        top += part.height + gap
    stacked.save(path, optimize=True)


def main() -> int:
    if len(sys.argv) == 3:  # one screenshot, in this process
        return take(sys.argv[1], Path(sys.argv[2]))
    which = sys.argv[1] if len(sys.argv) == 2 else "all"
    if which in ("app", "all"):
        for kind, path in SHOTS.items():
            done = subprocess.run([sys.executable, __file__, kind, str(path)], check=False)
            if done.returncode != 0:
                return done.returncode
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if which in ("workbook", "all"):
        workbook(DOCS / "workbook.png")
        print(f"wrote {DOCS / 'workbook.png'} ({(DOCS / 'workbook.png').stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
