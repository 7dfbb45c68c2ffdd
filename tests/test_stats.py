"""The tests behind the book's comparative words: Welch, paired, bootstrap, equivalence (TOST)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lenet1.experiments.stats import (
    bootstrap,
    equivalence,
    holm,
    one_sample,
    paired,
    prediction_interval,
    welch,
)

A = [5.1, 5.6, 5.3, 5.9, 5.4, 5.8, 5.2, 5.5]
B = [5.0, 5.3, 5.6, 5.2, 5.1, 5.7, 4.9, 5.4]


def test_welch_agrees_with_scipy() -> None:
    result = welch(A, B)
    reference = sps.ttest_ind(A, B, equal_var=False)
    assert result.p == pytest.approx(reference.pvalue)
    assert result.difference == pytest.approx(np.mean(A) - np.mean(B))
    interval = reference.confidence_interval(0.95)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))
    assert result.count == (8, 8) and result.test == "Welch t"


def test_paired_agrees_with_scipy() -> None:
    result = paired(A, B, level=0.9)
    reference = sps.ttest_rel(A, B)
    assert result.p == pytest.approx(reference.pvalue) and result.df == 7
    interval = reference.confidence_interval(0.9)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))
    with pytest.raises(ValueError, match="same length"):
        paired(A, B[:-1])


def test_one_sample_agrees_with_scipy() -> None:
    result = one_sample(A, 0.3, level=0.9)
    reference = sps.ttest_1samp(A, 0.3)
    assert result.p == pytest.approx(reference.pvalue) and result.df == len(A) - 1
    interval = reference.confidence_interval(0.9)
    assert (result.low + 0.3, result.high + 0.3) == pytest.approx((interval.low, interval.high))
    assert result.difference == pytest.approx(sum(A) / len(A) - 0.3)
    for bad in (float("nan"), True, "0.3"):
        with pytest.raises(ValueError, match="reference"):
            one_sample(A, bad)  # type: ignore[arg-type]


def test_the_one_sided_p_value_agrees_with_scipy() -> None:
    # "Is the mean above the reference?" (a goal not met), from either side of it.
    for reference in (5.2, 5.6, float(np.mean(A))):
        result = one_sample(A, reference)
        greater = sps.ttest_1samp(A, reference, alternative="greater").pvalue
        assert result.p_above() == pytest.approx(greater)
        # and "is it below?" (a goal met)
        less = sps.ttest_1samp(A, reference, alternative="less").pvalue
        assert result.p_below() == pytest.approx(less)
    assert paired(A, B).p_above() == pytest.approx(
        sps.ttest_rel(A, B, alternative="greater").pvalue)
    assert paired(A, B).p_below() == pytest.approx(
        sps.ttest_rel(A, B, alternative="less").pvalue)
    assert math.isnan(bootstrap(A, B).p_above()) and math.isnan(bootstrap(A, B).p_below())


def test_holm_adjusts_a_family_step_down() -> None:
    # By hand: sorted 0.01, 0.02, 0.03, 0.5 times 4, 3, 2, 1 -> 0.04, 0.06, 0.06 (made
    # non-decreasing), 0.5; returned in the given order.
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.4, 0.9]) == [0.8, 0.9]  # capped at 1 only where the product passes it
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []
    rng = np.random.default_rng(0)
    raw = list(rng.uniform(0, 0.2, 9))
    adjusted = holm(raw)
    assert all(a >= p for a, p in zip(adjusted, raw))  # never below the raw p-value
    assert min(adjusted) == pytest.approx(9 * min(raw))  # the smallest: Bonferroni's
    for bad in ([1.2], [float("nan")], [-0.1], [True]):
        with pytest.raises(ValueError, match="p-values"):
            holm(bad)


def test_a_clear_difference_excludes_zero_and_a_null_one_does_not() -> None:
    far = [x + 1.0 for x in B]
    assert welch(far, B).excludes_zero() and welch(far, B).p < 1e-4
    assert not welch(A, A).excludes_zero() and welch(A, A).p == pytest.approx(1.0)


def test_constant_samples_give_an_exact_difference() -> None:
    result = welch([2.0, 2.0, 2.0], [1.0, 1.0])
    assert (result.difference, result.low, result.high, result.p) == (1.0, 1.0, 1.0, 0.0)
    assert paired([1.0, 2.0], [1.0, 2.0]).p == 1.0


def test_bootstrap_is_seeded_and_brackets_the_difference() -> None:
    first, again = bootstrap(A, B, seed=3), bootstrap(A, B, seed=3)
    assert first == again  # the same values and seed give the same interval
    assert first.low < first.difference < first.high and math.isnan(first.p)
    other = bootstrap(A, B, seed=4)
    assert (other.low, other.high) != (first.low, first.high)
    # on this well-behaved sample the percentile interval is close to Welch's
    assert abs(first.high - first.low) == pytest.approx(
        welch(A, B).high - welch(A, B).low, rel=0.35)
    pair = bootstrap(A, B, pair=True)
    assert pair.test == "bootstrap (paired)" and pair.difference == pytest.approx(
        np.mean(np.subtract(A, B)))


def test_equivalence_is_two_one_sided_tests() -> None:
    result = equivalence(A, B, margin=0.5)
    difference = np.mean(A) - np.mean(B)
    welch_se = math.sqrt(np.var(A, ddof=1) / 8 + np.var(B, ddof=1) / 8)
    df = welch(A, B).df
    lower = sps.t.sf((difference + 0.5) / welch_se, df)
    upper = sps.t.cdf((difference - 0.5) / welch_se, df)
    assert result.p == pytest.approx(max(lower, upper))
    # TOST at alpha is the (1 - 2 alpha) interval inside the margin
    ninety = welch(A, B, level=0.9)
    assert (result.low, result.high) == pytest.approx((ninety.low, ninety.high))
    assert result.equivalent == (-0.5 < ninety.low and ninety.high < 0.5)
    assert result.equivalent
    assert not equivalence(A, B, margin=0.05).equivalent  # too tight a margin for 8 seeds
    assert not equivalence([x + 1.0 for x in A], B, margin=0.5).equivalent


def test_paired_equivalence_uses_the_differences() -> None:
    result = equivalence(A, B, margin=0.5, pair=True)
    ninety = paired(A, B, level=0.9)
    assert (result.low, result.high) == pytest.approx((ninety.low, ninety.high))
    assert result.test == "TOST, paired t"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        welch([1.0], B)
    with pytest.raises(ValueError, match="not finite"):
        welch([1.0, math.nan], B)
    with pytest.raises(ValueError, match="margin"):
        equivalence(A, B, margin=0)
    with pytest.raises(ValueError, match="level"):
        welch(A, B, level=1.5)


def test_prediction_interval_is_wider_than_the_mean_s() -> None:
    low, high = prediction_interval(A)
    mean, std = np.mean(A), np.std(A, ddof=1)
    t = sps.t.ppf(0.975, 7)
    assert (low, high) == pytest.approx((mean - t * std * math.sqrt(1 + 1 / 8),
                                         mean + t * std * math.sqrt(1 + 1 / 8)))
    assert high - low > 2 * t * std / math.sqrt(8)


def test_effect_words_follow_the_interval() -> None:
    from lenet1.report.compare import effect_words, interval_text

    lower = [x - 1.0 for x in A]
    assert effect_words(paired(lower, A)).startswith("lowers it")
    assert effect_words(paired(A, lower), raises="adds to").startswith("adds to it")
    assert "cannot tell" in effect_words(paired(A, A))
    assert interval_text(paired(lower, A)).startswith("-100.00 points (95% interval")


def test_listed_joins_words_as_a_sentence() -> None:
    from lenet1.report.text import listed

    assert listed(["a"]) == "a" and listed("ab") == "a and b"
    assert listed(["0", "1", "7"]) == "0, 1 and 7"
    with pytest.raises(ValueError):
        listed([])


def test_a_p_value_is_never_written_as_zero() -> None:
    from lenet1.report.compare import Row, comparison_table, p_text, verdict

    assert p_text(0.0001) == "< 0.001" and p_text(0.034) == "= 0.034"
    assert p_text(float("nan")) == ""  # a bootstrap tests nothing
    far = paired([x + 1.0 for x in A], A)
    close = equivalence(A, A, margin=1.0, pair=True)
    assert comparison_table([Row("far", far)])["p"].iloc[0] == "< 0.001"
    assert "p < 0.001" in verdict(close) or "p = " in verdict(close)
    assert "0.000" not in verdict(close)
