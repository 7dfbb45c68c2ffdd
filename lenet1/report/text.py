"""Plain-text lines for the terminal: one pass of a run."""

from __future__ import annotations

from ..train.online import PassRecord


def format_record(record: PassRecord) -> str:
    tr, te = record.train, record.test
    return (f"pass {record.pass_index:>2}  train mse {tr.mse:.2e} error {100 * tr.error:5.2f}% "
            f"misses {tr.misses:>4}  |  test mse {te.mse:.2e} error {100 * te.error:5.2f}% "
            f"misses {te.misses:>4}")
