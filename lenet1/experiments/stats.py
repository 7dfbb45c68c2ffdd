"""Statistics over seeds.

:func:`summarise` turns the runs' histories into mean, standard deviation and range per pass;
:func:`rejection_figures` measures the rejection needed for 1% error, with the threshold set on
the test set itself (as the paper did) or on held-out training digits.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from torch import nn

from ..data import Digits
from ..rejection import RejectionPoint, at_threshold, rejection_for_error
from ..train.online import History, predict
from .runs import (
    Run,
)

T = TypeVar("T")

METRICS = ("mse", "error", "misses")
SETS = ("train", "test")


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation; NaN for fewer than two values (it is undefined)."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class Spread:
    """A figure over seeds: mean, sample standard deviation and range."""

    mean: float
    std: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        numbers = [float(v) for v in values]
        if not numbers:
            raise ValueError("no values to summarise")
        return cls(statistics.fmean(numbers), sample_std(numbers), min(numbers), max(numbers), len(numbers))

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        return (f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f} "
                f"[{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]")


def summarise(histories: Sequence[History]) -> list[dict[str, Spread]]:
    """Per pass, the spread over runs of every figure (``train_mse``, ``test_misses``...).

    All histories must cover the same passes."""
    if not histories:
        raise ValueError("no histories to summarise")
    lengths = {len(h.passes) for h in histories}
    if len(lengths) != 1:
        raise ValueError(f"the histories cover different numbers of passes: {sorted(lengths)}")
    table = []
    for records in zip(*(h.passes for h in histories)):
        row = {f"{which}_{metric}": Spread.of(getattr(getattr(r, which), metric)
                                              for r in records)
               for which in SETS for metric in METRICS}
        table.append(row)
    return table


def final_spreads(runs: Sequence[Run]) -> dict[str, Spread]:
    return summarise([run.history for run in runs])[-1]


@dataclass(frozen=True)
class RejectionFigures:
    """The rejection needed for 1% test error, two ways."""

    on_test: RejectionPoint  # threshold chosen on the test set itself (the paper's way)
    held_out: RejectionPoint | None  # threshold chosen on held-out training digits, applied
    # to the test set (None when the run saw every training digit)


def rejection_figures(run: Run, test: Digits, target: float = 0.01,
                      held_out: Digits | None = None) -> RejectionFigures:
    outputs = predict(run.model, test.images)
    on_test = rejection_for_error(outputs, test.labels, target)
    honest = None
    if held_out is not None:
        threshold = rejection_for_error(predict(run.model, held_out.images), held_out.labels,
                                        target).threshold
        honest = at_threshold(outputs, test.labels, threshold)
    return RejectionFigures(on_test, honest)


def middle(items: Sequence[T], key: Callable[[T], float]) -> tuple[T, int]:
    """The item in the middle by ``key`` (of two middle items, the one ranked higher; ties in
    the order given), and its rank from 1: the book's one way to pick "the middle seed"."""
    if not items:
        raise ValueError("no items to pick from")
    order = sorted(range(len(items)), key=lambda i: key(items[i]))
    return items[order[len(order) // 2]], len(order) // 2 + 1


def miss_matrix(models: Sequence[nn.Module], digits: Digits) -> np.ndarray:
    """(networks, digits), True where a network misreads a digit: which digits every seed gets
    wrong (label or segmentation noise, most likely) and which only some do (seed luck)."""
    return np.stack([predict(model, digits.images).argmax(dim=1).numpy()
                     != digits.labels.numpy() for model in models])


def per_class_errors(misses: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(networks, classes): each network's error rate on the digits of each class."""
    labels = np.asarray(labels)
    columns = [misses[:, labels == c].mean(axis=1) if (labels == c).any()
               else np.full(len(misses), np.nan) for c in range(10)]  # no digit: undefined
    return np.stack(columns, axis=1)


__all__ = ["RejectionFigures", "Spread", "final_spreads", "middle", "miss_matrix", "per_class_errors",
           "rejection_figures", "sample_std", "summarise"]
