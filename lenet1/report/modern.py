"""The modern study's tables (pandas), figures (matplotlib) and plain-text report.

Everything here formats what :mod:`lenet1.experiments.modern` computed; nothing trains.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..experiments.karpathy import KarpathyRecord
from ..experiments.modern import Difficulty, StepSummary, Study, describe, dsp_seconds
from ..experiments.recipes import PAPER_RECIPE
from ..experiments.stats import Difference, one_sample
from ..facts import (
    DISTRIBUTORS_EXCELLENT_ERROR,
    KARPATHY_PATH,
    PAPER,
    PASSES,
    TRAIN_DIGITS,
    TRAINING_TIME,
)
from .compare import interval_text, p_text
from .plots import PAPER_COLOUR, TEST_COLOUR, TRAIN_COLOUR


KARPATHY_CHANGE = ("Karpathy's final recipe, as his code runs it: online, AdamW 3e-4 to 1e-4, "
                   "circular 1-pixel shifts, ReLU, dropout 0.25")


def step_rows(study: Study, record: KarpathyRecord | None = None) -> list[dict[str, str]]:
    """The table's rows as text: the paper's quoted figures, then every step, then (if given)
    Karpathy's final recipe run on the same digits and seeds."""
    paper_dsp = dsp_seconds(PAPER_RECIPE, TRAIN_DIGITS)
    rows = [{"step": "-", "change": "the paper (1989), as reported", "passes": f"{PASSES}",
             "batch": "1", "test error": f"{100 * PAPER['lenet1']['test_error']:.1f}%",
             "seed range": "", "vs previous step": "", "test misses": f"{PAPER['lenet1']['test_misses']:.0f}",
                 "train error": f"{100 * PAPER['lenet1']['train_error']:.2f}%",
             "time per run": TRAINING_TIME, "DSP board": _duration(paper_dsp),
             "Karpathy 2022 (MNIST stand-in)": ""}]
    for s in study.steps:
        karpathy = f"{100 * s.karpathy[1]:.2f}% ({s.karpathy[0]})" if s.karpathy else ""
        rows.append({
            "step": str(s.index), "change": _title(study, s), "passes": str(s.recipe.passes),
            "batch": str(s.recipe.batch_size),
            "test error": f"{100 * s.mean:.2f} ± {100 * s.std:.2f}%",
            "seed range": f"{100 * s.low:.2f}-{100 * s.high:.2f}%",
            "vs previous step": _points(study.paired_change(s.index)),
            "test misses": f"{s.mean_misses:.1f} ({min(s.test_misses)}-{max(s.test_misses)})",
            "train error": f"{100 * s.train_mean:.2f}%",
            "time per run": f"{s.mean_seconds:.1f} s",
            "DSP board": _duration(s.dsp_seconds),
            "Karpathy 2022 (MNIST stand-in)": karpathy})
    if record is not None:
        rows.append(karpathy_row(record))
    return rows


def karpathy_row(record: KarpathyRecord) -> dict[str, str]:
    """Karpathy's final recipe as a row of the step table (trained on all 7,291 digits)."""
    errors, misses = record.test_spread, record.test_misses
    his_label, his_error = KARPATHY_PATH["relu_dropout"]
    return {
        "step": "K", "change": KARPATHY_CHANGE, "passes": str(record.recipe.passes),
        "batch": str(record.recipe.batch_size),
        "test error": f"{100 * errors.mean:.2f} ± {100 * errors.std:.2f}%",
        "seed range": f"{100 * errors.low:.2f}-{100 * errors.high:.2f}%",
        "vs previous step": "",
        "test misses": f"{statistics.fmean(misses):.1f} ({min(misses)}-{max(misses)})",
        "train error": f"{100 * statistics.fmean(record.train_errors):.2f}%",
        "time per run": _duration(record.seconds),
        "DSP board": _duration(dsp_seconds(record.recipe, TRAIN_DIGITS)),
        "Karpathy 2022 (MNIST stand-in)": f"{100 * his_error:.2f}% ({his_label}, one seed)"}


def _chosen(study: Study, step: str) -> dict[str, Any]:
    return next(sel.choice for sel in study.selections if sel.step == step)


def _title(study: Study, step: StepSummary) -> str:
    """What a step changes, with what its choice picked (if it changes anything)."""
    if step.name not in {sel.step for sel in study.selections}:
        return step.title
    if not step.changed:
        return f"{step.title}: none chosen, the recipe before it kept"
    return f"{step.title}: {describe(_chosen(study, step.name))}"


def step_table(study: Study, record: KarpathyRecord | None = None) -> pd.DataFrame:
    """The rows as a pandas DataFrame (pandas comes with the book's extras); ``record``:
    Karpathy's final recipe as a last row."""
    return pd.DataFrame(step_rows(study, record)).set_index("step")


def selection_rows(study: Study) -> list[dict[str, str]]:
    rows = []
    for sel in study.selections:
        for i, candidate in enumerate(sel.candidates):
            errors = [100 * e for e in sel.errors[i]]
            tested = [100 * e for e in sel.test_errors[i]] if sel.test_errors else []
            rows.append({
                "step": sel.step, "candidate": describe(candidate) if candidate else
                "(previous recipe: kept if nothing beats it)",
                "seeds": _seeds(sel.seeds),
                "validation error": " / ".join(f"{e:.2f}%" for e in errors),
                "mean": f"{statistics.fmean(errors):.2f}%",
                "chosen": "yes" if i == sel.chosen else "",
                # Shown, never used: the choice is made before these are read.
                "same networks on the test digits (not used)":
                    f"{statistics.fmean(tested):.2f}%" if tested else ""})
    return rows


def selection_table(study: Study) -> pd.DataFrame:
    return pd.DataFrame(selection_rows(study)).set_index(["step", "candidate"])


def gap_rows(study: Study) -> list[dict[str, str]]:
    """Every step's recipe trained without the validation digits, on every seed: its error
    on them and, the same networks, on the test digits (mean and range over the seeds)."""
    def spread(errors: Sequence[float]) -> str:
        return (f"{100 * statistics.fmean(errors):.2f}% "
                f"({100 * min(errors):.2f}-{100 * max(errors):.2f}%)")

    rows = []
    for s in study.steps:
        if not s.validation_errors:
            continue
        higher = sum(t > v for v, t in zip(s.validation_errors, s.validation_test_errors))
        rows.append({
            "step": f"{s.index} {s.label}",
            "seeds": _seeds(s.validation_seeds),
            "validation error": spread(s.validation_errors),
            "test error, same networks": spread(s.validation_test_errors),
            "test minus validation": f"{100 * s.validation_gap:+.2f} points",
            "test higher": f"{higher} of {len(s.validation_errors)}"})
    return rows


def _seeds(seeds: Sequence[int]) -> str:
    """Seeds as a reader writes them: a run of consecutive ones as ``0-4``."""
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return " ".join(str(seed) for seed in seeds)


def gap_table(study: Study) -> pd.DataFrame:
    return pd.DataFrame(gap_rows(study)).set_index("step")


def class_table(difficulty: Difficulty) -> pd.DataFrame:
    """Per class: the final recipe's validation error, the same networks' test error, and the
    test runs' test error (means over seeds, %), with each set's digits of the class."""
    def mean(rates: np.ndarray) -> np.ndarray:
        return 100 * rates.mean(axis=0)

    frame = pd.DataFrame({
        "validation digits": np.bincount(difficulty.validation_labels, minlength=10),
        "validation error (%)": mean(difficulty.validation_by_class()),
        "test error, same networks (%)": mean(difficulty.held_out_test_by_class()),
        "test digits": np.bincount(difficulty.test_labels, minlength=10),
        "test error, all training digits (%)": mean(difficulty.test_by_class()),
        "test misses, all training digits": [
            difficulty.test_misses[:, difficulty.test_labels == c].sum(axis=1).mean()
            for c in range(10)]})
    frame.index.name = "class"
    return frame.round(2)


def _points(change: tuple[float, float] | None) -> str:
    if change is None:
        return ""
    mean, std = change
    spread = f" ± {100 * std:.2f}" if math.isfinite(std) else ""
    return f"{100 * mean:+.2f}{spread}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_rows(rows: Sequence[Mapping[str, str]]) -> str:
    """Rows of text as an aligned plain-text table."""
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns),
             "-+-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


# --- figures ----------------------------------------------------------------------------------


def plot_path(study: Study, goal: float | None = None) -> Any:
    """Left: test error at every step, each seed a dot, the mean a line, with the paper's 5.0%
    and Karpathy's reported path on his MNIST stand-in (and ``goal``, a fraction, as a dotted
    line). Right: one thread's time per run on this machine (a run's share of its stack) and
    the same arithmetic on the paper's DSP board."""
    from matplotlib.figure import Figure

    steps = study.steps
    x = list(range(len(steps)))
    figure = Figure(figsize=(10.5, 4.0), layout="constrained", facecolor="white")
    error_axes, time_axes = figure.subplots(1, 2, width_ratios=[1.6, 1])
    for s in steps:
        error_axes.scatter([s.index] * len(s.test_errors), [100 * e for e in s.test_errors],
                           s=14, color=TEST_COLOUR, alpha=0.35, linewidths=0, zorder=2)
    error_axes.plot(x, [100 * s.mean for s in steps], "-o", color=TEST_COLOUR, ms=5, zorder=3,
                    label=f"this book, mean of {len(study.seeds)} seeds (dots: each seed)")
    error_axes.plot([0], [100 * PAPER['lenet1']['test_error']], "*", color=PAPER_COLOUR, ms=13, zorder=4,
                    label="the paper, 1989 (reported)")
    if goal is not None:
        error_axes.axhline(100 * goal, color=PAPER_COLOUR, ls=":", lw=1, zorder=1,
                           label=f"{100 * goal:g}%, called excellent by the data's distributors")
    his = [(s.index, 100 * s.karpathy[1]) for s in steps if s.karpathy]
    if his:
        error_axes.plot(*zip(*his), "--s", color=TRAIN_COLOUR, mfc="white", ms=6, zorder=3,
                        label="Karpathy 2022, on his MNIST stand-in (reported)")
    labels = [f"{s.index} {s.label}" for s in steps]
    error_axes.set_xticks(x, labels, rotation=35, ha="right")
    error_axes.set_ylabel("test error (%)")
    error_axes.set_ylim(bottom=0)
    error_axes.grid(axis="y", alpha=0.3)
    error_axes.legend(loc="lower left", frameon=False)
    time_axes.bar([i - 0.2 for i in x], [s.mean_seconds for s in steps], width=0.4,
                  color=TEST_COLOUR, label="time per run, this machine (1 thread)")
    time_axes.bar([i + 0.2 for i in x], [s.dsp_seconds for s in steps], width=0.4,
                  color=PAPER_COLOUR, alpha=0.6, label="same arithmetic on the DSP-32C board")
    time_axes.set_yscale("log")
    longest = max(max(s.mean_seconds, s.dsp_seconds) for s in steps)
    time_axes.set_ylim(1, longest * 30)  # room for the legend above the bars
    time_axes.set_xticks(x, labels, rotation=35, ha="right")
    time_axes.set_ylabel("training time (s)")
    for seconds, text in ((60, "1 min"), (3600, "1 h")):
        if seconds < longest * 10:
            time_axes.axhline(seconds, color="0.7", lw=0.8, zorder=0)
            time_axes.text(-0.5, seconds, text, va="bottom", ha="left", fontsize=8,
                           color="0.4")
    time_axes.legend(loc="upper left", frameon=False, fontsize=8)
    return figure


def plot_curves(study: Study) -> Any:
    """Test error after every pass, averaged over the seeds, one curve per trained recipe, so
    the effect of each change can be seen along the way, not only at the end."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    figure = Figure(figsize=(7.0, 4.0), layout="constrained", facecolor="white")
    axes = figure.subplots()
    colours = colormaps["viridis"]
    drawn: set[tuple[Path | None, ...]] = set()
    for s in study.steps:
        runs = [r for r in study.runs if r.evaluation == "test" and r.recipe == s.recipe]
        paths = tuple(r.path for r in runs)
        if not runs or paths in drawn:  # an evaluation-only step trains nothing new
            continue
        drawn.add(paths)
        count = min(len(r.history.passes) for r in runs)
        passes = [runs[0].history.passes[i].pass_index for i in range(1, count)]
        errors = [100 * statistics.fmean(r.history.passes[i].test.error for r in runs)
                  for i in range(1, count)]
        axes.plot(passes, errors, color=colours(0.9 * s.index / max(1, len(study.steps) - 1)),
                  label=f"{s.index} {s.label}")
    axes.axhline(100 * PAPER['lenet1']['test_error'], color="0.4", ls=":", lw=1)
    axes.text(1, 100 * PAPER['lenet1']['test_error'], "the paper's 5.0%", va="bottom", fontsize=8,
              color="0.3")
    axes.set_yscale("log")
    ticks = [1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 60, 80]
    axes.yaxis.set_major_locator(FixedLocator(ticks))
    axes.yaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:g}")
    axes.set_xlabel("pass")
    axes.set_ylabel(f"test error (%, log scale), mean of {len(study.seeds)} seeds")
    axes.legend(ncol=2, frameon=False, fontsize=8)
    return figure


def plot_validation_test(study: Study, goal: float | None = None) -> Any:
    """One panel per step: each validation run's error on the validation split (x) against the
    same network's on the test digits (y), one dot per seed, the diagonal where the two would
    agree; a dashed line at the step's mean test error of the networks trained on all the
    training digits, and (``goal``, a fraction) a dotted line at a target test error."""
    from matplotlib.figure import Figure

    steps = [s for s in study.steps if s.validation_errors]
    columns = min(5, len(steps))
    rows = -(-len(steps) // columns)
    figure = Figure(figsize=(2.1 * columns, 2.2 * rows + 0.4), layout="constrained",
                    facecolor="white")
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).flatten()
    top = 1.1 * max(100 * max(*s.validation_test_errors, *s.validation_errors, s.mean)
                    for s in steps)
    for panel, s in zip(axes, steps):
        panel.plot([0, top], [0, top], color="0.75", lw=0.8, zorder=1)
        panel.axhline(100 * s.mean, color=TEST_COLOUR, ls="--", lw=0.9, zorder=1)
        if goal is not None:
            panel.axhline(100 * goal, color=PAPER_COLOUR, ls=":", lw=0.9, zorder=1)
        panel.scatter([100 * e for e in s.validation_errors],
                      [100 * e for e in s.validation_test_errors], s=22, color=TEST_COLOUR,
                      zorder=3)
        panel.set_title(f"{s.index} {s.label}", fontsize=9)
        panel.set_xlim(0, top)
        panel.set_ylim(0, top)
        panel.grid(alpha=0.25)
    for panel in axes[len(steps):]:
        panel.set_visible(False)
    figure.supxlabel("validation error (%), networks trained without the validation digits",
                     fontsize=9)
    figure.supylabel("test error (%), the same networks", fontsize=9)
    return figure


def plot_hardest(difficulty: Difficulty, images: Any, count: int = 24) -> Any:
    """The test digits every seed of the final recipe misreads (up to ``count``), each with
    its label and what most seeds read it as; ``images``: the test images (N, 1, 16,
    16)."""
    from matplotlib.figure import Figure

    chosen = difficulty.missed_by_all()[:count]
    columns = 12
    rows = max(1, -(-len(chosen) // columns))
    figure = Figure(figsize=(columns * 0.8, rows * 0.95), layout="constrained",
                    facecolor="white")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for panel in axes:
        panel.set_axis_off()
    for panel, index in zip(axes, chosen):
        panel.imshow(-images[index, 0], cmap="gray", vmin=-1, vmax=1)
        read = np.bincount(difficulty.test_predictions[:, index], minlength=10).argmax()
        panel.set_title(f"{difficulty.test_labels[index]} read {read}", fontsize=8)
    return figure


# --- plain text -------------------------------------------------------------------------------


def karpathy_report(record: KarpathyRecord) -> str:
    """Karpathy's final recipe on the paper's digits, seed by seed, as plain text."""
    lines = [f"{KARPATHY_CHANGE}, {record.recipe.passes} passes, on the paper's digits "
             f"(code {record.code_key}):"]
    for seed, history in zip(record.seeds, record.histories):
        final = history.final
        lines.append(f"  seed {seed}: test {final.test.misses} misses "
                     f"({100 * final.test.error:.2f}%), train {final.train.misses} misses "
                     f"({100 * final.train.error:.2f}%)")
    his_label, his_error = KARPATHY_PATH["relu_dropout"]
    spread = record.test_spread
    lines.append(f"  mean {100 * spread.mean:.2f} ± {100 * spread.std:.2f}% over "
                 f"{len(record.seeds)} seeds; he reports {100 * his_error:.2f}% on his MNIST "
                 f"stand-in ({his_label}, one seed)")
    return "\n".join(lines)


def report(study: Study, record: KarpathyRecord | None = None) -> str:
    """The study's tables and its final recipe, as plain text."""
    best = study.final()
    final = (f"final recipe: step {best.index} ({best.label}): {100 * best.mean:.2f} ± "
             f"{100 * best.std:.2f}% test error, seeds {100 * best.low:.2f}-"
             f"{100 * best.high:.2f}%, {best.mean_misses:.1f} misses of {best.test_count}")
    compute = (f"compute of every run: {study.compute_seconds:.0f} s; trained now: "
               f"{study.fresh_seconds:.0f} s; online engine: {study.engine}")
    return "\n\n".join([format_rows(step_rows(study, record)),
                        format_rows(selection_rows(study)), format_rows(gap_rows(study)),
                        final + "\n" + compute])


# --- the goal, and the README's summary ---------------------------------------------------------


@dataclass(frozen=True)
class GoalReading:
    """A step's test errors (one per seed, at least two) against a goal for their mean
    (fractions): the one-sample t-test of the mean minus the goal, and what a sentence says
    of it. Met or not is read in misses, as :attr:`within` reads each network."""

    step: StepSummary
    goal: float
    test: Difference

    @property
    def allowed(self) -> float:
        """The misses a network may make within the goal (50.175 of 2,007 at 2.5%)."""
        return self.goal * self.step.test_count

    @property
    def met(self) -> bool:
        return self.step.mean_misses <= self.allowed

    @property
    def verdict(self) -> str:
        """``met``, or ``missed by 0.22 points``."""
        return "met" if self.met else f"missed by {100 * (self.step.mean - self.goal):.2f} points"

    @property
    def digits(self) -> float:
        """How many test digits a network misreads more (or fewer) than the goal allows, on
        average."""
        return abs(self.step.mean_misses - self.allowed)

    def digits_text(self) -> str:
        """``some 4.4 test digits a network more than it allows`` (or fewer)."""
        side = "fewer" if self.met else "more"
        return f"some {self.digits:.1f} test digits a network {side} than it allows"

    @property
    def within(self) -> list[int]:
        """The misses of the networks within the goal."""
        return [m for m in self.step.test_misses if m <= self.allowed]

    def within_text(self) -> str:
        """``1 of the 5 networks (48 misses) is within it``."""
        within, count = self.within, len(self.step.seeds)
        if not within:
            return "none of the networks is within it"
        return (f"{len(within)} of the {count} networks ({', '.join(map(str, within))} misses) "
                f"{'is' if len(within) == 1 else 'are'} within it")

    def one_sided_text(self) -> str:
        """The one-sided test on the side the mean lies, read at 0.05: missed, ``the one-sided
        test of "the true mean is at most 2.5%" gives p = 0.034, below 0.05: these seeds speak
        against a true mean within the goal``; met, the test of "at least" and whether the
        seeds show the true mean within it."""
        goal = f"{100 * self.goal:.1f}%"
        if self.met:
            p = self.test.p_below()
            reading = ("these seeds show a true mean within the goal" if p < 0.05 else
                       "these seeds cannot show a true mean within the goal")
            hypothesis = f"at least {goal}"
        else:
            p = self.test.p_above()
            reading = ("these seeds speak against a true mean within the goal" if p < 0.05 else
                       "these seeds cannot rule out a true mean within the goal")
            hypothesis = f"at most {goal}"
        return (f"the one-sided test of \"the true mean is {hypothesis}\" gives p {p_text(p)}, "
                f"{'below' if p < 0.05 else 'not below'} 0.05: {reading}")


def goal_reading(step: StepSummary, goal: float = DISTRIBUTORS_EXCELLENT_ERROR) -> GoalReading:
    """``step``'s mean test error against ``goal`` (default: the 2.5% the data's distributors
    call excellent); the step needs two seeds or more, for the t-test."""
    if len(step.test_errors) < 2:
        raise ValueError(f"reading a mean against a goal needs two seeds or more, got "
                         f"{len(step.test_errors)}")
    return GoalReading(step, goal, one_sample(step.test_errors, goal))


def results_markdown(study: Study, record: KarpathyRecord | None = None,
                     goal: float = DISTRIBUTORS_EXCELLENT_ERROR) -> str:
    """The README's summary of the study: every step's test error over the seeds with its
    seed-by-seed change, the same recipe's error on the validation digits (trained without
    them), Karpathy's recipe if given (row K); then the final recipe against the goal, and
    the validation digits against the test digits."""
    seeds = len(study.seeds)
    lines = [f"| step | change | test error, mean ± sd over {seeds} seeds | test misses of "
             f"{study.test_count:,}, mean (range) | vs previous step, seed by seed (points, "
             f"mean ± sd) | validation error, mean (the recipe trained without those digits) |",
             "|---:|---|---:|---:|---:|---:|"]
    for s in study.steps:
        validation = (f"{100 * statistics.fmean(s.validation_errors):.2f}%"
                      if s.validation_errors else "")
        lines.append(f"| {s.index} | {_title(study, s)} | {100 * s.mean:.2f} ± "
                     f"{100 * s.std:.2f}% | {s.mean_misses:.1f} ({min(s.test_misses)}-"
                     f"{max(s.test_misses)}) | {_points(study.paired_change(s.index))} | "
                     f"{validation} |")
    if record is not None:
        row = karpathy_row(record)
        lines.append(f"| K | {row['change']}, {row['passes']} passes | {row['test error']} | "
                     f"{row['test misses']} | | |")
    best = study.final()
    lines += ["", f"- Final recipe (step {best.index}, {best.label}): **{100 * best.mean:.2f} ± "
                  f"{100 * best.std:.2f}%** test error over {seeds} seeds, "
                  f"{best.mean_misses:.1f} misses of {best.test_count:,} (seeds "
                  f"{100 * best.low:.2f}-{100 * best.high:.2f}%)."]
    if len(best.test_errors) > 1:
        reading = goal_reading(best, goal)
        lines.append(
            f"- The goal, a mean of at most {100 * goal:.1f}%: **{reading.verdict}**, "
            f"{reading.digits_text()}; {reading.within_text()}. One-sample t-test of the mean "
            f"against it: {interval_text(reading.test)}; {reading.one_sided_text()}.")
    pairs = [(v, t) for s in study.steps for v, t in zip(s.validation_errors,
                                                         s.validation_test_errors)]
    if pairs:
        on_validation, on_test = zip(*pairs)
        lines.append(
            f"- Every step's recipe trained without the validation digits misread "
            f"{100 * min(on_validation):.2f}-{100 * max(on_validation):.2f}% of them and, the "
            f"same networks, {100 * min(on_test):.2f}-{100 * max(on_test):.2f}% of the test "
            f"digits: the test digits more in {sum(t > v for v, t in pairs)} of {len(pairs)} "
            f"readings, one a step and seed. Where a step makes a choice, its validation figure "
            f"holds the runs the choice was made on, which favours the candidate chosen.")
    if record is not None:
        lines.append(f"- Row K: the record `results/karpathy.json` (code key "
                     f"`{record.code_key}`), which `python -m lenet1 study karpathy` checks.")
    return "\n".join(lines) + "\n"
