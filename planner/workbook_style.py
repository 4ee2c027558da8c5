"""How the workbook looks: number formats picked from a column's header ($, %, seconds, hours, yes/no),
column widths, print setup (landscape A4, legible width, headers repeated) and chart placement and colours
(a pixel grid, so charts never overlap; one colour per deployment, in the same order on every chart).
"""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

CHART_PX = (540, 300)  # width, height of every chart: two side by side fit one printed page
CHART_GAP_PX = 24
# Distinct colours (matplotlib's tab10), one per deployment, in the same order on every chart.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def cell_formats(book: Any) -> dict[str, Any]:  # an xlsxwriter workbook and its formats
    """One xlsxwriter format per kind of ``FORMATS`` (yes/no centred, so it never runs into a text beside it)."""
    return {kind: book.add_format({"num_format": code, **({"align": "center"} if kind == "yes_no" else {})})
            for kind, code in FORMATS.items()}


def palette(count: int) -> list[str]:
    """``count`` colours, repeating the palette when there are more deployments than colours."""
    return [PALETTE[index % len(PALETTE)] for index in range(count)]


def place(sheet: Any, chart: Any, row: int, slot: int, col: int = 1) -> None:  # xlsxwriter sheet and chart
    """Put ``chart`` in grid slot ``slot`` (two per line) from cell (``row``, ``col``), offsets in pixels so
    charts never overlap whatever the column widths."""
    width, height = CHART_PX
    chart.set_size({"width": width, "height": height})
    sheet.insert_chart(row, col, chart, {"x_offset": (slot % 2) * (width + CHART_GAP_PX),
                                         "y_offset": (slot // 2) * (height + CHART_GAP_PX), "object_position": 3})


TEXT_COLUMN_MAX = 60  # a reason is long: the column stops here and the text runs over
# Number formats by what a column holds, picked from its header (the cell keeps the full value).
FORMATS = {"usd_day": '"$"#,##0', "usd": '"$"#,##0.000', "share": "0.0%", "seconds": "0.000", "hours": "0.0",
           "number": "#,##0.###", "integer": "#,##0", "yes_no": '"yes";"yes";"no"'}
SHARE_WORDS = ("SLO met", "util", "attainment", "saving", "kv_use", "coverage")


def format_kind(header: str, values: pd.Series) -> str | None:
    """Which of ``FORMATS`` a column takes (None: text or booleans)."""
    text = str(header)
    if "$/day" in text or text.endswith("cost_per_day_usd"):
        return "usd_day"
    if "$" in text or text.endswith("_usd"):
        return "usd"
    if any(word in text for word in SHARE_WORDS):
        return "share"
    if "hour" in text:
        return "hours"
    if text.endswith((" s", "_s", "(s)")):
        return "seconds"
    known = values.dropna()
    if len(known) and all(isinstance(v, bool | np.bool_) for v in known):
        return "yes_no"  # a bare true/false shows as 1 or FALSE in some viewers
    if not pd.api.types.is_numeric_dtype(values):
        return None
    return "number" if pd.api.types.is_float_dtype(values) and not (known == known.round()).all() else "integer"


def fit_columns(writer: pd.ExcelWriter, sheet_name: str, frame: pd.DataFrame, index: bool = True,
                 first_col: int = 0, min_widths: Mapping[int, float] | None = None) -> dict[int, float]:
    """Columns as wide as their header or longest text (up to TEXT_COLUMN_MAX), each with its number format
    ($, %, seconds, hours); the sheet prints landscape, one page wide. Each column's width, by column."""
    sheet, book = writer.sheets[sheet_name], writer.book
    formats = cell_formats(book)
    offset = first_col + (1 if index else 0)
    total = 0.0
    widths: dict[int, float] = {}
    if index:
        total = widths[first_col] = max(len(str(name)) for name in [frame.index.name or "", *frame.index]) + 2
        sheet.set_column(first_col, first_col, total)
    for position, header in enumerate(frame.columns):
        values = frame[header]
        texts = [str(v) for v in values if isinstance(v, str)]
        kind = format_kind(str(header), values)
        width = min(max([len(str(header)) * 0.9, *map(len, texts)]) + 2, TEXT_COLUMN_MAX)
        width = max(width, 9 if kind else 0, (min_widths or {}).get(offset + position, 0))
        total += width
        widths[offset + position] = width
        sheet.set_column(offset + position, offset + position, width, formats[kind] if kind else None)
    print_setup(sheet, total)
    return widths


def format_cells(writer: pd.ExcelWriter, sheet_name: str, frame: pd.DataFrame, start_row: int) -> None:
    """Write ``frame``'s numbers again with their column's format (``frame`` was written at ``start_row``,
    with its index): for sheets that hold tables of different columns one above the other."""
    sheet, book = writer.sheets[sheet_name], writer.book
    formats = cell_formats(book)
    for position, header in enumerate(frame.columns, start=1):
        kind = format_kind(str(header), frame[header])
        if kind is None:
            continue
        for row, value in enumerate(frame[header], start=start_row + 1):
            if isinstance(value, bool | np.bool_):
                sheet.write_boolean(row, position, bool(value), formats[kind])
            elif isinstance(value, int | float) and pd.notna(value):
                sheet.write_number(row, position, value, formats[kind])


def header_row(writer: pd.ExcelWriter, sheet_name: str, frame: pd.DataFrame, row: int,
               widths: Mapping[int, float], owns_columns: bool = True) -> None:
    """Write ``frame``'s headers again at ``row`` (its first column in column 0; ``widths``: each column's
    width, as ``fit_columns`` set it): wrapped within their column (a table below another shares its columns,
    so a long header takes two lines rather than widening the column), aligned right over numbers like the
    numbers, so a header never seems to name the column beside it; a text column's header (and, when
    ``owns_columns``, its cells: not for a table below another) indented one step, so it never runs into
    the right-aligned number or header left of it."""
    sheet, book = writer.sheets[sheet_name], writer.book
    text = book.add_format({"text_wrap": True, "valign": "bottom", "align": "left", "indent": 1})
    number = book.add_format({"text_wrap": True, "valign": "bottom", "align": "right"})
    text_cells = book.add_format({"align": "left", "indent": 1})
    lines = 1
    for col, header in enumerate(frame.columns):
        numeric = format_kind(str(header), frame[header]) not in (None, "yes_no")
        lines = max(lines, math.ceil(len(str(header)) / max(1.0, widths[col] - 3)))
        sheet.write_string(row, col, str(header), number if numeric else text)
        if not numeric and owns_columns:
            sheet.set_column(col, col, widths[col], text_cells)
    sheet.set_row(row, LINE_HEIGHT_PT * lines)


LINE_HEIGHT_PT = 15  # one line of the default 11-point font
PAGE_WIDTH_CHARS = 200  # column-width units that still print legibly across one landscape A4 page


def print_setup(sheet: Any, width_chars: float = PAGE_WIDTH_CHARS) -> None:  # an xlsxwriter worksheet
    """Landscape A4, the header row (and the first column) on every page; as many pages wide as the
    columns need at a legible size (``width_chars``: the sheet's total column width), as long as it takes."""
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(max(1, math.ceil(width_chars / PAGE_WIDTH_CHARS)), 0)
    sheet.repeat_rows(0)
    sheet.repeat_columns(0)
    sheet.freeze_panes(1, 1)


def line_chart(writer: pd.ExcelWriter, sheet: str, frame: pd.DataFrame, suffix: str, x_column: int, title: str,
                y_name: str, y_format: str = "General") -> None:
    """A native chart right of ``frame`` (written at the top of ``sheet``): one line per column whose header
    ends with ``suffix`` (named without it, each its own colour), against the hour of day in ``x_column``."""
    chart = writer.book.add_chart({"type": "scatter", "subtype": "straight"})
    headers = [header for header in frame.columns if header.endswith(suffix)]
    for header, colour in zip(headers, palette(len(headers)), strict=True):
        index = frame.columns.get_loc(header)
        chart.add_series({"name": header[: -len(suffix)].strip() or header,
                          "categories": [sheet, 1, x_column, len(frame), x_column],
                          "values": [sheet, 1, index, len(frame), index], "line": {"color": colour, "width": 2}})
    hours = frame.iloc[:, x_column]
    span_h = float(hours.max() - hours.min())
    step_h = 0.25 if span_h <= 2 else 1 if span_h <= 8 else 3  # a handful of labelled hours on the axis
    chart.set_title({"name": title})
    chart.set_x_axis({"name": "hour of day", "num_format": "0.00" if step_h < 1 else "0", "major_unit": step_h,
                      "min": math.floor(float(hours.min()) / step_h) * step_h,
                      "max": math.ceil(float(hours.max()) / step_h) * step_h})
    chart.set_y_axis({"name": y_name, "num_format": y_format, "min": 0})
    chart.set_legend({"position": "bottom"})
    place(writer.sheets[sheet], chart, 1, 0, col=len(frame.columns) + 1)
