"""Tables of the tests behind the book's comparative words.

Each row is one comparison of a figure over seeds, tested by :mod:`lenet1.experiments.stats`:
a difference of means with its confidence interval and p-value (Welch, paired, bootstrap), or an
equivalence test against a margin stated before the data were seen (TOST). The verdict column
says what the test allows a sentence to say, and nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..experiments.stats import Difference, Equivalence


@dataclass(frozen=True)
class Row:
    """One comparison: its name, its test's result, and the figure's unit and scale
    (``scale`` 100 and unit ``"points"`` for an error rate kept as a fraction)."""

    name: str
    result: Difference | Equivalence
    scale: float = 100.0
    unit: str = "points"
    digits: int = 2


def verdict(result: Difference | Equivalence) -> str:
    """What the test allows the text to say."""
    if isinstance(result, Equivalence):
        if result.equivalent:
            return f"equivalent within the margin (p {p_text(result.p)})"
        return "not shown equivalent: the interval reaches past the margin"
    if result.excludes_zero():
        return "a difference: the interval excludes 0"
    return "no difference shown: the interval includes 0"


def _number(value: float, row: Row) -> str:
    return f"{value * row.scale:+.{row.digits}f}"


def _p(value: float) -> str:
    """A p-value for a table: ``0.034``, or ``< 0.001`` (a p-value is never 0); empty for NaN
    (a bootstrap, which tests nothing)."""
    if math.isnan(value):
        return ""
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def p_text(value: float) -> str:
    """A p-value as a sentence gives it after "p": ``= 0.034`` or ``< 0.001``."""
    number = _p(value)
    return number if number.startswith("<") or not number else f"= {number}"


def comparison_table(rows: Sequence[Row]) -> pd.DataFrame:
    """One line per comparison: the test, the seeds, the difference ``a - b`` with its
    interval, the margin (equivalence tests only), the p-value and the verdict."""
    lines = []
    for row in rows:
        r = row.result
        level = (f"{100 * (1 - 2 * r.alpha):.0f}%" if isinstance(r, Equivalence)
                 else f"{100 * r.level:.0f}%")
        lines.append({
            "comparison": row.name,
            "test": r.test,
            "seeds": " and ".join(str(c) for c in r.count),
            f"difference ({row.unit})": _number(r.difference, row),
            "interval": f"{level}: [{_number(r.low, row)}, {_number(r.high, row)}]",
            "margin": (f"± {r.margin * row.scale:.{row.digits}f}"
                       if isinstance(r, Equivalence) else ""),
            "p": _p(r.p),
            "verdict": verdict(r),
        })
    return pd.DataFrame(lines).set_index("comparison")


def interval_text(result: Difference | Equivalence, scale: float = 100.0, digits: int = 2,
                  unit: str = "points") -> str:
    """``+0.12 points (95% interval -0.10 to +0.34)``, for a sentence."""
    level = (1 - 2 * result.alpha) if isinstance(result, Equivalence) else result.level
    return (f"{result.difference * scale:+.{digits}f} {unit} ({100 * level:.0f}% interval "
            f"{result.low * scale:+.{digits}f} to {result.high * scale:+.{digits}f})")


def effect_words(result: Difference, lowers: str = "lowers", raises: str = "raises") -> str:
    """A change's direction in words, as far as its test settles it: ``lowers`` or ``raises``
    (the interval lies wholly below or above 0), else that the test cannot tell it from 0."""
    if result.high < 0:
        return f"{lowers} it (the interval lies below 0)"
    if result.low > 0:
        return f"{raises} it (the interval lies above 0)"
    return "changes it by an amount these seeds cannot tell from 0"


__all__ = ["Row", "comparison_table", "effect_words", "interval_text", "p_text", "verdict"]
