"""Spreadsheet formulas that carry their value: the cost rule (``profiles.costs``) evaluated over cells.

A ``Formula`` is an Excel expression and the number it evaluates to. Arithmetic on formulas (``+ - * /``
with formulas or plain numbers) builds a bigger expression and computes its value at the same time, so
calling a rule of ``profiles.costs`` with ``Formula.cell`` arguments gives the live formula a workbook
cell holds and the value cached with it (shown by viewers that do not recalculate), from the one rule the
simulator itself uses.
"""

from dataclasses import dataclass
from typing import Union

from xlsxwriter.utility import xl_rowcol_to_cell

Operand = Union["Formula", float, int]

_ATOM, _PRODUCT, _SUM = 3, 2, 1  # binding strength: a cell or number, * and /, + and -


@dataclass(frozen=True)
class Formula:
    """An Excel expression (without the leading ``=``) and its value."""

    text: str
    value: float
    strength: int = _ATOM

    @classmethod
    def cell(cls, sheet: str, row: int, col: int, value: float) -> "Formula":
        """The absolute reference to ``sheet``'s cell (``row``, ``col``, from 0) that holds ``value``."""
        return cls(f"'{sheet}'!{xl_rowcol_to_cell(row, col, row_abs=True, col_abs=True)}", float(value))

    @classmethod
    def column_sum(cls, sheet: str, first_row: int, last_row: int, col: int, value: float) -> "Formula":
        """``SUM`` of ``sheet``'s cells in column ``col`` from ``first_row`` to ``last_row`` (from 0), worth ``value``."""
        first = xl_rowcol_to_cell(first_row, col, row_abs=True, col_abs=True)
        last = xl_rowcol_to_cell(last_row, col, row_abs=True, col_abs=True)
        return cls(f"SUM('{sheet}'!{first}:{last})", float(value))

    @classmethod
    def number(cls, value: float) -> "Formula":
        """A constant."""
        text = f"{float(value):.15g}".upper()  # Excel writes exponents as E
        return cls(text if float(value) >= 0 else f"({text})", float(value))

    @property
    def excel(self) -> str:
        """The text a cell holds: ``=expression``."""
        return f"={self.text}"

    def _combine(self, other: Operand, operator: str, swapped: bool = False) -> "Formula":
        right = other if isinstance(other, Formula) else Formula.number(other)
        left, right = (right, self) if swapped else (self, right)
        strength = _SUM if operator in "+-" else _PRODUCT
        left_text = left.text if left.strength >= strength else f"({left.text})"
        right_text = right.text if right.strength > strength or (right.strength == strength and operator in "+*") \
            else f"({right.text})"
        value = {"+": left.value + right.value, "-": left.value - right.value, "*": left.value * right.value,
                 "/": left.value / right.value if right.value else float("nan")}[operator]
        return Formula(f"{left_text}{operator}{right_text}", value, strength)

    def __add__(self, other: Operand) -> "Formula":
        if not isinstance(other, Formula) and other == 0:
            return self  # sum() starts from 0
        return self._combine(other, "+")

    def __radd__(self, other: Operand) -> "Formula":
        if not isinstance(other, Formula) and other == 0:
            return self
        return self._combine(other, "+", swapped=True)

    def __sub__(self, other: Operand) -> "Formula":
        return self._combine(other, "-")

    def __rsub__(self, other: Operand) -> "Formula":
        return self._combine(other, "-", swapped=True)

    def __mul__(self, other: Operand) -> "Formula":
        return self._combine(other, "*")

    def __rmul__(self, other: Operand) -> "Formula":
        return self._combine(other, "*", swapped=True)

    def __truediv__(self, other: Operand) -> "Formula":
        return self._combine(other, "/")

    def __rtruediv__(self, other: Operand) -> "Formula":
        return self._combine(other, "/", swapped=True)
