"""Statistics over seeds.

:func:`summarise` turns the runs' histories into mean, standard deviation and range per pass;
:func:`rejection_figures` measures the rejection needed for 1% error, with the threshold set on
the test set itself (as the paper did) or on held-out training digits.

The tests behind the book's comparative words, each on two samples of one figure over seeds:
:func:`welch` (two independent samples) and :func:`paired` (the same seeds in both) give the
difference of the means with its confidence interval and a two-sided p-value;
:func:`bootstrap` gives a seeded percentile interval of the same difference without assuming
normality; :func:`equivalence` is the two one-sided tests (TOST) against a margin stated before
the data are seen, the test behind "indistinguishable". Where one sentence reads several tests
at once, :func:`holm` adjusts their p-values for the family.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import stats as sps
from torch import nn

from ..data import Digits
from ..rejection import RejectionPoint, at_threshold, rejection_for_error
from ..train.online import History, predict
from .runs import Run

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


@dataclass(frozen=True)
class Difference:
    """The difference of two means, ``a - b``, with its confidence interval.

    ``p`` is the two-sided p-value of "no difference" (NaN for a bootstrap interval, which
    tests nothing); ``df`` the t-test's degrees of freedom (NaN for a bootstrap)."""

    test: str
    difference: float
    low: float
    high: float
    level: float
    p: float
    df: float
    count: tuple[int, int]

    def excludes_zero(self) -> bool:
        """The interval lies entirely on one side of 0: the sign of the difference is settled
        at this level."""
        return self.low > 0 or self.high < 0

    def p_above(self) -> float:
        """The one-sided p-value of "the true difference is 0 or less", for the question
        whether it lies above 0 (a t-test's; NaN for a bootstrap)."""
        if math.isnan(self.p):
            return math.nan
        return self.p / 2 if self.difference > 0 else 1 - self.p / 2

    def p_below(self) -> float:
        """The one-sided p-value of "the true difference is 0 or more", for the question
        whether it lies below 0 (a t-test's; NaN for a bootstrap)."""
        if math.isnan(self.p):
            return math.nan
        return self.p / 2 if self.difference < 0 else 1 - self.p / 2


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests (TOST) of "the means differ by less than ``margin``".

    ``low``..``high`` is the (1 - 2 alpha) confidence interval of ``a - b``; the two means are
    equivalent at level ``alpha`` exactly when that interval lies inside (-margin, +margin),
    that is when ``p`` (the larger of the two one-sided p-values) is below ``alpha``."""

    test: str
    difference: float
    low: float
    high: float
    margin: float
    alpha: float
    p: float
    count: tuple[int, int]

    @property
    def equivalent(self) -> bool:
        return self.p < self.alpha


def prediction_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Where one more seed's value should fall, at ``level``, if the seeds' values are a normal
    sample: ``mean +- t * std * sqrt(1 + 1/n)``. A single reported run (the paper's) outside it
    is unlikely to be one more draw of the same distribution."""
    x = _floats(values, "values")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    half = (float(sps.t.ppf(0.5 + level / 2, len(x) - 1)) * float(x.std(ddof=1))
            * math.sqrt(1 + 1 / len(x)))
    return float(x.mean()) - half, float(x.mean()) + half


def _floats(values: Iterable[float], name: str, least: int = 2) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    if len(array) < least:
        raise ValueError(f"{name} needs at least {least} values, got {len(array)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds a value that is not finite")
    return array


def _pairs(a: Iterable[float], b: Iterable[float]) -> np.ndarray:
    x, y = _floats(a, "a"), _floats(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired samples must have the same length, got {len(x)} and {len(y)}")
    return x - y


def _welch_parts(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Difference of means, its standard error, and the Welch-Satterthwaite degrees of freedom."""
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return float(x.mean() - y.mean()), 0.0, float(len(x) + len(y) - 2)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return float(x.mean() - y.mean()), se, float(df)


def _t_test(test: str, difference: float, se: float, df: float, level: float,
            count: tuple[int, int]) -> Difference:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if se == 0:  # every value alike within each sample: the difference is exact
        p = 1.0 if difference == 0 else 0.0
        return Difference(test, difference, difference, difference, level, p, df, count)
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * sps.t.sf(abs(difference) / se, df))
    return Difference(test, difference, difference - half, difference + half, level, p, df, count)


def welch(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Difference:
    """Welch's t-test of two independent samples: ``mean(a) - mean(b)``, its ``level``
    confidence interval and the two-sided p-value, without assuming equal variances."""
    x, y = _floats(a, "a"), _floats(b, "b")
    difference, se, df = _welch_parts(x, y)
    return _t_test("Welch t", difference, se, df, level, (len(x), len(y)))


def paired(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Difference:
    """The paired t-test, for two samples that share their seeds (``a[i]`` and ``b[i]`` from
    the same seed): the mean of the differences, its interval and the two-sided p-value."""
    d = _pairs(a, b)
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    return _t_test("paired t", float(d.mean()), se, float(len(d) - 1), level, (len(d), len(d)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values, in their order: rejecting every
    test whose adjusted p-value is below alpha keeps the chance of any false rejection in the
    family at most alpha, whatever the tests' dependence. The k-th smallest of m is multiplied
    by m - k + 1, and the products are made non-decreasing in that order (capped at 1)."""
    values = [float(p) for p in p_values]
    if any(isinstance(p, bool) for p in p_values) or \
            not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in values):
        raise ValueError(f"p-values must be numbers in [0, 1], got {list(p_values)!r}")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def one_sample(values: Iterable[float], reference: float, level: float = 0.95) -> Difference:
    """The one-sample t-test of ``mean(values) - reference`` (a fixed figure, such as a target
    error): the difference, its ``level`` confidence interval and the two-sided p-value."""
    x = _floats(values, "values")
    if isinstance(reference, bool) or not isinstance(reference, (int, float)) \
            or not math.isfinite(reference):
        raise ValueError(f"reference must be a finite number, got {reference!r}")
    se = float(x.std(ddof=1)) / math.sqrt(len(x))
    return _t_test("one-sample t", float(x.mean()) - reference, se, float(len(x) - 1), level,
                   (len(x), 1))


def bootstrap(a: Iterable[float], b: Iterable[float], level: float = 0.95,
              resamples: int = 10_000, seed: int = 0, pair: bool = False) -> Difference:
    """A percentile bootstrap interval of ``mean(a) - mean(b)``: each sample resampled with
    replacement (or, with ``pair``, the seeds' differences), from a seeded generator, so the
    same values always give the same interval."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    generator = np.random.default_rng(seed)
    if pair:
        d = _pairs(a, b)
        draws = d[generator.integers(0, len(d), (resamples, len(d)))].mean(axis=1)
        difference, count = float(d.mean()), (len(d), len(d))
    else:
        x, y = _floats(a, "a"), _floats(b, "b")
        draws = (x[generator.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
                 - y[generator.integers(0, len(y), (resamples, len(y)))].mean(axis=1))
        difference, count = float(x.mean() - y.mean()), (len(x), len(y))
    low, high = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return Difference("bootstrap" + (" (paired)" if pair else ""), difference, float(low),
                      float(high), level, math.nan, math.nan, count)


def equivalence(a: Iterable[float], b: Iterable[float], margin: float, alpha: float = 0.05,
                pair: bool = False) -> Equivalence:
    """Two one-sided t-tests (TOST): are the means of ``a`` and ``b`` within ``margin`` of each
    other? ``margin`` must be fixed before the data are seen; Welch's standard error for
    independent samples, the paired one with ``pair``."""
    if not margin > 0:
        raise ValueError(f"the margin must be positive, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    if pair:
        d = _pairs(a, b)
        difference, se, df = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), len(d) - 1.0
        count, test = (len(d), len(d)), "TOST, paired t"
    else:
        x, y = _floats(a, "a"), _floats(b, "b")
        difference, se, df = _welch_parts(x, y)
        count, test = (len(x), len(y)), "TOST, Welch t"
    if se == 0:
        p = 0.0 if abs(difference) < margin else 1.0
        return Equivalence(test, difference, difference, difference, margin, alpha, p, count)
    p_low = float(sps.t.sf((difference + margin) / se, df))  # H0: difference <= -margin
    p_high = float(sps.t.cdf((difference - margin) / se, df))  # H0: difference >= +margin
    half = float(sps.t.ppf(1 - alpha, df)) * se
    return Equivalence(test, difference, difference - half, difference + half, margin, alpha,
                       max(p_low, p_high), count)


__all__ = ["Difference", "Equivalence", "RejectionFigures", "Spread", "bootstrap", "equivalence", "holm",
           "middle", "miss_matrix", "one_sample", "paired", "per_class_errors", "prediction_interval",
           "rejection_figures",
           "sample_std", "summarise", "welch"]
