"""The rejection curve: margins, ties, both error definitions, and a brute-force cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenet1.rejection import (
    at_threshold,
    margins,
    predictions,
    rejection_curve,
    rejection_for_error,
)


def outputs_with(margin_and_correct: list[tuple[float, bool]], label: int = 0) -> tuple[
        np.ndarray, np.ndarray]:
    """Ten-class outputs whose top-two margins and correctness are as given (label 0)."""
    rows = []
    for margin, correct in margin_and_correct:
        row = np.full(10, -1.0)
        top, second = (label, 1) if correct else (1, label)
        row[top] = 0.5
        row[second] = 0.5 - margin
        rows.append(row)
    return np.array(rows), np.full(len(rows), label, dtype=np.int64)


def test_margins_and_predictions() -> None:
    out = np.array([[0.9, 0.1, -1.0], [-1.0, 0.3, 0.3], [0.0, -0.5, 0.25]])
    np.testing.assert_allclose(margins(out), [0.8, 0.0, 0.25])
    # A tie goes to the first of the tied units, as argmax does.
    np.testing.assert_array_equal(predictions(out), [0, 1, 2])


def test_hand_worked_curve() -> None:
    # margins 0.1 (wrong), 0.2 (right), 0.3 (wrong), 0.4 (right)
    out, labels = outputs_with([(0.3, False), (0.1, False), (0.4, True), (0.2, True)])
    curve = rejection_curve(out, labels)
    np.testing.assert_allclose(curve.thresholds[:-1], [0.1, 0.2, 0.3, 0.4])
    assert curve.thresholds[-1] == np.inf
    np.testing.assert_array_equal(curve.rejected, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(curve.errors, [2, 1, 1, 0, 0])
    np.testing.assert_allclose(curve.rejection, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.error, [2 / 4, 1 / 3, 1 / 2, 0, 0])
    everyone = rejection_curve(out, labels, denominator="all")
    np.testing.assert_allclose(everyone.error, [2 / 4, 1 / 4, 1 / 4, 0, 0])


def test_ties_are_rejected_together() -> None:
    out, labels = outputs_with([(0.2, False), (0.2, True), (0.2, False), (0.5, True)])
    curve = rejection_curve(out, labels)
    # Three patterns share a margin: the only rejection counts possible are 0, 3 and 4.
    np.testing.assert_array_equal(curve.rejected, [0, 3, 4])
    np.testing.assert_array_equal(curve.errors, [2, 0, 0])
    best = rejection_for_error(out, labels, target=0.0)
    assert best.rejected == 3 and best.errors == 0 and best.rejection == pytest.approx(0.75)


def test_rejection_for_error_edges() -> None:
    out, labels = outputs_with([(0.1, False), (0.2, True), (0.3, True), (0.4, True)])
    none_needed = rejection_for_error(out, labels, target=0.25)
    assert none_needed.rejection == 0.0 and none_needed.error == pytest.approx(0.25)
    one_needed = rejection_for_error(out, labels, target=0.1)
    assert one_needed.rejected == 1 and one_needed.error == 0.0
    assert one_needed.threshold == pytest.approx(0.2)
    # All wrong: only rejecting everything reaches zero errors.
    out, labels = outputs_with([(0.1, False), (0.2, False)])
    everything = rejection_for_error(out, labels, target=0.0)
    assert everything.rejection == 1.0 and everything.threshold == np.inf


def test_exact_target_counts_as_reached() -> None:
    # 3 errors in 300 is exactly 1%: no rejection needed.
    spec = [(0.05, False)] * 3 + [(0.5, True)] * 297
    out, labels = outputs_with(spec)
    assert rejection_for_error(out, labels, target=0.01).rejected == 0


def test_tensors_and_arrays_agree() -> None:
    generator = torch.Generator().manual_seed(0)
    out = torch.rand(200, 10, generator=generator) * 2 - 1
    labels = torch.randint(0, 10, (200,), generator=generator)
    a = rejection_curve(out, labels)
    b = rejection_curve(out.numpy(), labels.numpy())
    np.testing.assert_array_equal(a.rejected, b.rejected)
    np.testing.assert_array_equal(a.errors, b.errors)


@pytest.mark.parametrize("denominator", ["accepted", "all"])
def test_against_brute_force(denominator: str) -> None:
    rng = np.random.default_rng(1)
    # Outputs on a coarse grid, so that many margins tie.
    out = rng.integers(-4, 5, size=(300, 10)) / 4.0
    labels = rng.integers(0, 10, size=300)
    curve = rejection_curve(out, labels, denominator)  # type: ignore[arg-type]
    assert np.all(np.diff(curve.rejected) > 0)
    if denominator == "all":
        assert np.all(np.diff(curve.errors) <= 0)
    for i, threshold in enumerate(curve.thresholds):
        expected = at_threshold(out, labels, float(threshold), denominator)  # type: ignore[arg-type]
        assert expected.rejected == curve.rejected[i]
        assert expected.errors == curve.errors[i]
        assert expected.error == pytest.approx(curve.error[i])
    for target in (0.0, 0.01, 0.05, 0.5, 1.0):
        best = rejection_for_error(out, labels, target, denominator)  # type: ignore[arg-type]
        brute = min(at_threshold(out, labels, float(t), denominator).rejection  # type: ignore[arg-type]
                    for t in curve.thresholds
                    if at_threshold(out, labels, float(t), denominator).error  # type: ignore[arg-type]
                    <= target + 1e-12)
        assert best.rejection == pytest.approx(brute)
        assert best.error <= target + 1e-12


def test_bad_inputs_fail_clearly() -> None:
    out = np.zeros((3, 10))
    with pytest.raises(ValueError, match="labels"):
        rejection_curve(out, np.array([0, 1]))
    with pytest.raises(ValueError, match="0..9"):
        rejection_curve(out, np.array([0, 1, 10]))
    with pytest.raises(ValueError, match="integers"):
        rejection_curve(out, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        rejection_curve(np.full((3, 10), np.nan), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="classes"):
        rejection_curve(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="denominator"):
        rejection_curve(out, np.array([0, 1, 2]), "some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target"):
        rejection_for_error(out, np.array([0, 1, 2]), target=1.5)


def test_empty_set() -> None:
    curve = rejection_curve(np.zeros((0, 10)), np.zeros(0, dtype=np.int64))
    assert curve.count == 0 and list(curve.rejected) == [0] and list(curve.error) == [0.0]
