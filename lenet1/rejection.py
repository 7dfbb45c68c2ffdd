"""Rejection: the network answers only when it is sure enough.

The paper (section 6) rejects a pattern "when the difference between the two most active output
units is below a threshold", and reports how many test patterns must be rejected to bring the
error rate down to 1% (12.1% for the constrained network, 19.4% for the fully connected one).

Definitions used here, all on one set of patterns:

- a pattern's *margin* is its highest output minus its second highest (>= 0; 0 when the top two
  tie). Its *prediction* is the index of the highest output, the first one on a tie, as
  ``argmax`` does everywhere else in the package;
- a threshold ``t`` *rejects* every pattern whose margin is strictly below ``t``. Patterns with
  equal margins are therefore rejected together: no threshold separates them, so the curve has
  one point per distinct margin, not one per pattern;
- the *rejection rate* is rejected / all patterns;
- the *error rate* is, by default, the errors among the accepted patterns divided by the number
  of accepted patterns (``denominator="accepted"``): the error rate of the answers the system
  still gives, which is what a post office reading zip codes would care about. The paper does not
  say which it used; ``denominator="all"`` divides by every pattern instead (errors that slip
  through per pattern presented). With nothing accepted, both are 0.

"The rejection needed for 1% error" is the smallest rejection rate on the curve whose error rate
is at most 1%. Like the paper, this picks the threshold on the very set it is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor

Denominator = Literal["accepted", "all"]
DENOMINATORS: tuple[str, ...] = ("accepted", "all")

ArrayLike = Tensor | np.ndarray


def _as_arrays(outputs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    out = outputs.detach().cpu().numpy() if isinstance(outputs, Tensor) else np.asarray(outputs)
    lab = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if out.ndim != 2 or out.shape[1] < 2:
        raise ValueError(f"outputs must be (N, classes) with at least 2 classes, got {out.shape}")
    if lab.ndim != 1 or len(lab) != len(out):
        raise ValueError(f"labels must be (N,) with N = {len(out)}, got {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {lab.dtype}")
    if len(lab) and (lab.min() < 0 or lab.max() >= out.shape[1]):
        raise ValueError(f"labels must lie in 0..{out.shape[1] - 1}")
    out = out.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError("outputs contain NaN or infinite values")
    return out, lab.astype(np.int64)


def margins(outputs: ArrayLike) -> np.ndarray:
    """Highest output minus second highest, per pattern (float64, >= 0)."""
    out = outputs.detach().cpu().numpy() if isinstance(outputs, Tensor) else np.asarray(outputs)
    if out.ndim != 2 or out.shape[1] < 2:
        raise ValueError(f"outputs must be (N, classes) with at least 2 classes, got {out.shape}")
    top_two = np.sort(out.astype(np.float64), axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def predictions(outputs: ArrayLike) -> np.ndarray:
    """The most active output unit per pattern (the first one on a tie)."""
    out = outputs.detach().cpu().numpy() if isinstance(outputs, Tensor) else np.asarray(outputs)
    return np.argmax(out, axis=1).astype(np.int64)


@dataclass(frozen=True)
class RejectionCurve:
    """Error against rejection, one point per threshold, in order of increasing rejection.

    ``thresholds[i]`` rejects the patterns whose margin is below it: the first threshold is the
    smallest margin (nothing rejected), the last is ``inf`` (everything rejected).
    ``rejected[i]`` and ``errors[i]`` count the rejected patterns and the errors among the
    accepted ones at that threshold.
    """

    thresholds: np.ndarray
    rejected: np.ndarray
    errors: np.ndarray
    count: int
    denominator: Denominator = "accepted"

    @property
    def accepted(self) -> np.ndarray:
        return self.count - self.rejected

    @property
    def rejection(self) -> np.ndarray:
        """Fraction of the patterns rejected."""
        return self.rejected / max(self.count, 1)

    @property
    def error(self) -> np.ndarray:
        """Error rate at each threshold, per :attr:`denominator` (0 where nothing is accepted)."""
        if self.denominator == "all":
            return self.errors / max(self.count, 1)
        accepted = self.accepted
        return np.divide(self.errors, accepted, out=np.zeros(len(accepted)),
                         where=accepted > 0)


@dataclass(frozen=True)
class RejectionPoint:
    """One point of a rejection curve: the threshold, and what it rejects and lets through."""

    threshold: float
    rejection: float
    error: float
    rejected: int
    errors: int
    count: int


def rejection_curve(outputs: ArrayLike, labels: ArrayLike,
                    denominator: Denominator = "accepted") -> RejectionCurve:
    """The error rate against the rejection rate, as the margin threshold rises.

    ``outputs`` (N, classes) are the network's outputs, ``labels`` (N,) the true classes.
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    out, lab = _as_arrays(outputs, labels)
    margin = margins(out)
    wrong = predictions(out) != lab
    order = np.argsort(margin, kind="stable")
    margin, wrong = margin[order], wrong[order]
    # One threshold per distinct margin (ties stay together), then one that rejects everything.
    thresholds = np.append(np.unique(margin), np.inf)
    rejected = np.searchsorted(margin, thresholds, side="left")
    wrong_before = np.concatenate([[0], np.cumsum(wrong)])
    errors = int(wrong.sum()) - wrong_before[rejected]
    return RejectionCurve(thresholds, rejected.astype(np.int64), errors.astype(np.int64),
                          len(lab), denominator)


def point(curve: RejectionCurve, index: int) -> RejectionPoint:
    """The curve's ``index``-th point as a :class:`RejectionPoint`."""
    return RejectionPoint(threshold=float(curve.thresholds[index]),
                          rejection=float(curve.rejection[index]),
                          error=float(curve.error[index]),
                          rejected=int(curve.rejected[index]), errors=int(curve.errors[index]),
                          count=curve.count)


def rejection_for_error(outputs: ArrayLike, labels: ArrayLike, target: float = 0.01,
                        denominator: Denominator = "accepted") -> RejectionPoint:
    """The smallest rejection that brings the error rate down to ``target`` or below.

    Always found: rejecting everything leaves no errors (rejection 1.0).
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must lie in [0, 1], got {target}")
    curve = rejection_curve(outputs, labels, denominator)
    # A whisker of tolerance so that, e.g., 3 errors in 300 counts as 1%.
    reached = np.flatnonzero(curve.error <= target + 1e-12)
    return point(curve, int(reached[0]))


def at_threshold(outputs: ArrayLike, labels: ArrayLike, threshold: float,
                 denominator: Denominator = "accepted") -> RejectionPoint:
    """Rejection and error when patterns with a margin below ``threshold`` are rejected."""
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    out, lab = _as_arrays(outputs, labels)
    margin = margins(out)
    keep = margin >= threshold
    errors = int(((predictions(out) != lab) & keep).sum())
    rejected = int((~keep).sum())
    accepted = len(lab) - rejected
    if denominator == "all":
        error = errors / max(len(lab), 1)
    else:
        error = errors / accepted if accepted else 0.0
    return RejectionPoint(float(threshold), rejected / max(len(lab), 1), error, rejected,
                          errors, len(lab))


__all__ = ["DENOMINATORS", "RejectionCurve", "RejectionPoint", "at_threshold", "margins",
           "point", "predictions", "rejection_curve", "rejection_for_error"]
