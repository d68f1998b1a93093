"""Choosing rows by their metadata: ``--where "popularity >= 60" --where "year < 1990"``.

An expression is ``COLUMN OP VALUE`` with OP one of ``==`` (or ``=``), ``!=``, ``<``, ``<=``, ``>``, ``>=``, and
VALUE a number, or text (bare, or quoted with ' or " when it holds spaces or operators). It is read with a
regular expression, never evaluated: nothing in it runs. Several expressions must all hold. Numbers compare
numerically (a row whose value is missing matches nothing but ``!=``); text compares as text, with equality only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Metadata

OPERATOR = re.compile(r"==|!=|<=|>=|<|>|=")
COLUMN = re.compile(r"[A-Za-z_][\w.\- ]*")
MAX_EXPRESSION = 1000
"""The longest ``--where`` expression, in characters."""
OPERATORS = {"==": np.equal, "=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
             ">": np.greater, ">=": np.greater_equal}


@dataclass(frozen=True)
class WhereExpression:
    """One parsed ``--where`` expression."""

    column: str
    operator: str
    value: float | str
    text: str

    def matches(self, metadata: Metadata) -> np.ndarray:
        """A boolean mask over the table's rows."""
        if self.column not in metadata:
            raise GanzooError(f"--where {self.text!r}: no column {self.column!r} (the metadata has: "
                              f"{', '.join(sorted(metadata)) or 'no columns'})")
        values = metadata[self.column]
        numeric_column = values.dtype.kind == "f"
        if isinstance(self.value, float):
            if not numeric_column:
                raise GanzooError(f"--where {self.text!r}: column {self.column!r} holds text, not numbers")
            with np.errstate(invalid="ignore"):
                return OPERATORS[self.operator](values, self.value) & (~np.isnan(values) | (self.operator == "!="))
        if self.operator not in ("==", "=", "!="):
            raise GanzooError(f"--where {self.text!r}: text compares with == or != only")
        texts = np.array(["" if isinstance(v, float) and np.isnan(v) else str(v) for v in values], dtype=object)
        return OPERATORS[self.operator](texts, self.value).astype(bool)


def parse_where(text: str) -> WhereExpression:
    """An expression parsed (in time linear in its length), or a one-line GanzooError saying what is wrong."""
    if len(text) > MAX_EXPRESSION:
        raise GanzooError(f"--where {text[:40]!r}... is {len(text):,} characters long; an expression is at most "
                          f"{MAX_EXPRESSION:,}")
    operator = OPERATOR.search(text)
    column = text[:operator.start()].strip() if operator else ""
    raw = text[operator.end():].strip() if operator else ""
    if not operator or not raw or not COLUMN.fullmatch(column):
        raise GanzooError(f"--where {text!r} is not COLUMN OP VALUE (OP: ==, !=, <, <=, >, >=), e.g. "
                          "\"popularity >= 60\"")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return WhereExpression(column, operator.group(), raw[1:-1], text)
    if any(symbol in raw for symbol in "<>=!'\""):
        raise GanzooError(f"--where {text!r}: the value {raw!r} is not a number or a word (quote text)")
    try:
        number = float(raw)
    except ValueError:
        return WhereExpression(column, operator.group(), raw, text)
    if not math.isfinite(number):
        raise GanzooError(f"--where {text!r}: the value {raw!r} is not a finite number (quote it to compare text)")
    return WhereExpression(column, operator.group(), number, text)


def select(metadata: Metadata, expressions: list[str] | tuple[str, ...]) -> np.ndarray:
    """Indices of the rows for which every expression holds (all rows when there are none)."""
    count = len(next(iter(metadata.values()))) if metadata else 0
    mask = np.ones(count, dtype=bool)
    for expression in map(parse_where, expressions):
        mask &= expression.matches(metadata)
    return np.flatnonzero(mask)
