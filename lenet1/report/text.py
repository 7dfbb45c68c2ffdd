"""Plain text: one pass of a run for the terminal, and lists for a sentence."""

from __future__ import annotations

from collections.abc import Iterable

from ..train.online import PassRecord


def format_record(record: PassRecord) -> str:
    tr, te = record.train, record.test
    return (f"pass {record.pass_index:>2}  train mse {tr.mse:.2e} error {100 * tr.error:5.2f}% "
            f"misses {tr.misses:>4}  |  test mse {te.mse:.2e} error {100 * te.error:5.2f}% "
            f"misses {te.misses:>4}")


def listed(words: Iterable[str]) -> str:
    """Words as a sentence lists them: ``a``, ``a and b``, ``a, b and c``."""
    words = list(words)
    if not words:
        raise ValueError("nothing to list")
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
