"""The paper study's tables (pandas) and figures (matplotlib), and its files.

Everything here formats what :mod:`lenet1.experiments.paper` computed; nothing trains.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..experiments import cache
from ..experiments.paper import (
    QUICK,
    Ablation,
    Arm,
    Calibration,
    CurvatureAgreement,
    CurvatureTrace,
    GridPoint,
    StudyResults,
    diverged,
    run_all,
)
from ..experiments.stats import Spread
from ..facts import PAPER
from .plots import ARM_COLOURS, figure

Progress = Any

ROWS = (("train MSE", "train_mse", 1.0, "{:.2e}"), ("train error %", "train_error", 100, "{:.2f}"),
        ("train misses", "train_misses", 1, "{:.1f}"), ("test MSE", "test_mse", 1.0, "{:.2e}"),
        ("test error %", "test_error", 100, "{:.2f}"), ("test misses", "test_misses", 1, "{:.1f}"))


def _cell(spread: Spread, scale: float, fmt: str) -> tuple[str, str, str]:
    return (fmt.format(spread.mean * scale), fmt.format(spread.std * scale),
            f"[{fmt.format(spread.low * scale)}, {fmt.format(spread.high * scale)}]")


def arm_table(arm: Arm, rejection: bool = True) -> Any:
    """Paper vs reproduction at the last pass: mean, std and range over seeds; with
    ``rejection``, also the rejection figures and those of the networks trained on 80% of the
    training digits (whose held-out digits set the honest threshold)."""
    paper = PAPER.get(arm.model, {})
    final = arm.final()
    rows = []
    for label, key, scale, fmt in ROWS:
        mean, std, span = _cell(final[key], scale, fmt)
        value = paper.get(key)
        shown = "" if value is None else (str(value) if "misses" in key
                                          else fmt.format(value * scale))
        rows.append({"figure": label, "the paper": shown, "mean": mean, "std": std,
                     "range": span})
    def spread_row(label: str, values: list[float], scale: float, fmt: str,
                   paper_value: str = "") -> None:
        mean, std, span = _cell(Spread.of(values), scale, fmt)
        rows.append({"figure": label, "the paper": paper_value, "mean": mean, "std": std,
                     "range": span})

    if not rejection:
        return pd.DataFrame(rows).set_index("figure")
    spread_row("rejection % for 1% test error (threshold on test)",
               [p.rejection for p in arm.rejection_on_test], 100, "{:.1f}",
               f"{100 * paper['rejection']:.1f}" if "rejection" in paper else "")
    # The same figures for the networks trained on 80% of the training digits, so that the
    # held-out threshold is compared with a test-set threshold for the same networks.
    spread_row("80%-trained: held-out error %",
               [r.history.final.test.error for r in arm.holdout_runs], 100, "{:.2f}")
    spread_row("80%-trained: test error %", arm.holdout_test_errors, 100, "{:.2f}")
    spread_row("80%-trained: rejection % for 1% test error (threshold on test)",
               [p.rejection for p in arm.holdout_on_test], 100, "{:.1f}")
    spread_row("80%-trained: rejection % (threshold for 1% on held-out digits)",
               [p.rejection for p in arm.rejection_held_out], 100, "{:.1f}")
    spread_row("80%-trained: test error % at that held-out threshold",
               [p.error for p in arm.rejection_held_out], 100, "{:.2f}")
    return pd.DataFrame(rows).set_index("figure")


def fit_table(arms: Sequence[Arm]) -> pd.DataFrame:
    """How tightly each arm fits the training digits, and what that costs on the test set:
    means over seeds at the last pass, next to the paper's LeNet-1 figures and as ratios to
    them (our MSE normalisation: the mean over the patterns and the 10 outputs)."""
    paper = PAPER["lenet1"]
    rows = [{"arm": "the paper (one run, as reported)", "train MSE": f"{paper['train_mse']:.1e}",
             "train misses": f"{paper['train_misses']:.0f}",
             "test MSE": f"{paper['test_mse']:.1e}", "test misses": f"{paper['test_misses']:.0f}",
             "train MSE / paper": "1", "test misses / paper": "1"}]
    for arm in arms:
        final = arm.final()
        rows.append({"arm": f"{arm.name} ({final['train_mse'].count} seeds)",
                     "train MSE": f"{final['train_mse'].mean:.2e}",
                     "train misses": f"{final['train_misses'].mean:.1f}",
                     "test MSE": f"{final['test_mse'].mean:.2e}",
                     "test misses": f"{final['test_misses'].mean:.1f}",
                     "train MSE / paper": f"{final['train_mse'].mean / paper['train_mse']:.2f}",
                     "test misses / paper":
                         f"{final['test_misses'].mean / paper['test_misses']:.2f}"})
    return pd.DataFrame(rows).set_index("arm")


def calibration_table(calibration: Calibration) -> pd.DataFrame:
    """Every grid point of a calibration: constants, held-out error and MSE, diverged seeds."""
    rows = []
    for p in calibration.points:
        c = p.config
        rows.append({"optimizer": c.optimizer,
                     "schedule": c.schedule if c.optimizer == "sdlm" else "constant",
                     "mu": c.mu if c.optimizer == "sdlm" else float("nan"),
                     "eta or lr": c.lr,
                     "held-out error %": 100 * p.error,
                     "std %": 100 * statistics.stdev(p.errors) if len(p.errors) > 1 else 0.0,
                     "held-out MSE": p.mse, "diverged seeds": p.diverged,
                     "chosen": "<==" if p is calibration.best else ""})
    return pd.DataFrame(rows)


def ablation_table(results: Sequence[Ablation]) -> Any:
    """Held-out error and MSE after the last pass, per variant, and the difference from the
    baseline's mean with its standard error (Welch)."""
    base = results[0].final()["test_error"]
    rows = []
    for ablation in results:
        final = ablation.final()
        err, tr = final["test_error"], final["train_error"]
        se = math.sqrt(err.std ** 2 / err.count + base.std ** 2 / base.count)
        rows.append({"variant": ablation.name, "seeds": err.count,
                     "diverged": sum(diverged(r) for r in ablation.runs),
                     "held-out error %": f"{100 * err.mean:.2f} ± {100 * err.std:.2f}",
                     "range %": f"[{100 * err.low:.2f}, {100 * err.high:.2f}]",
                     "vs baseline (pp)": f"{100 * (err.mean - base.mean):+.2f} ± {100 * se:.2f}",
                     "train error %": f"{100 * tr.mean:.2f} ± {100 * tr.std:.2f}",
                     "held-out MSE": f"{final['test_mse'].mean:.2e}"})
    return pd.DataFrame(rows).set_index("variant")




def seed_band_curves(arms: Sequence[Arm]) -> Any:
    """MSE (log) and error % (log) against the pass: each arm's mean over seeds (test solid,
    train dashed) with its min-max band, and the paper's end points at pass 23."""
    fig = figure(10.0, 4.4)
    left, right = fig.subplots(1, 2)
    for arm, colour in zip(arms, ARM_COLOURS):
        summary = arm.summary()
        x = list(range(len(summary)))
        for which, style in (("test", "-"), ("train", "--")):
            for ax, metric, scale in ((left, "mse", 1), (right, "error", 100)):
                s = [row[f"{which}_{metric}"] for row in summary]
                ax.plot(x, [v.mean * scale for v in s], style, color=colour, linewidth=1.4,
                        label=f"{arm.name}, {which}")
                ax.fill_between(x, [v.low * scale for v in s], [v.high * scale for v in s],
                                color=colour, alpha=0.15, linewidth=0)
    for arm, colour in zip(arms, ARM_COLOURS):
        paper = PAPER.get(arm.model, {})
        for which, marker in (("test", "D"), ("train", "s")):
            for ax, metric, scale in ((left, "mse", 1), (right, "error", 100)):
                if f"{which}_{metric}" in paper:
                    ax.plot([23], [paper[f"{which}_{metric}"] * scale], marker, markersize=8,
                            markerfacecolor="none", markeredgecolor="#333333",
                            markeredgewidth=1.5)
    left.set_yscale("log")
    right.set_yscale("log", nonpositive="mask")
    left.set_ylabel("mean squared error (log)")
    right.set_ylabel("error rate % (log)")
    for ax in (left, right):
        ax.set_xlabel("pass over the training set")
        ax.grid(True, color="#dddddd", linewidth=0.6)
    right.plot([], [], "D", markerfacecolor="none", markeredgecolor="#333333",
               label="the paper, test (pass 23)")
    right.plot([], [], "s", markerfacecolor="none", markeredgecolor="#333333",
               label="the paper, train (pass 23)")
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False, fontsize=8)
    return fig


def rejection_strip(arms: Sequence[Arm]) -> Any:
    """Each seed's rejection for 1% test error, two ways, and the paper's figure."""
    fig = figure(8.0, 0.6 + 0.55 * 2 * len(arms))
    ax = fig.subplots()
    labels = []
    y = 0
    for arm, colour in zip(arms, ARM_COLOURS):
        for how, points in (("threshold on test", arm.rejection_on_test),
                            ("threshold on held-out", arm.rejection_held_out)):
            values = [100 * p.rejection for p in points]
            ax.plot(values, [y] * len(values), "o", color=colour, alpha=0.7)
            ax.plot([statistics.fmean(values)], [y], "|", color="black", markersize=14)
            labels.append(f"{arm.name}\n{how}")
            if how == "threshold on test" and "rejection" in PAPER.get(arm.model, {}):
                ax.plot([100 * PAPER[arm.model]["rejection"]], [y], "*", color="#333333",
                        markersize=12)
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test digits rejected for 1% error on the rest (%); star: the paper; "
                  "bar: mean")
    ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
    return fig


def calibration_figure(calibrations: Sequence[Calibration]) -> Any:
    """Held-out error against eta (SDLM) or the learning rate (SGD), mean and range of seeds."""
    fig = figure(4.2 * len(calibrations), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(calibrations)))
    for ax, cal in zip(axes, calibrations):
        lines: dict[str, list[GridPoint]] = {}
        for p in cal.points:
            c = p.config
            label = "lr" if c.optimizer == "sgd" else f"{c.schedule}, mu={c.mu:g}"
            lines.setdefault(label, []).append(p)
        for label, points in lines.items():
            ok = [p for p in points if not p.diverged]
            x = [p.config.lr for p in ok]
            ax.plot(x, [100 * p.error for p in ok], "-o", markersize=3, label=label)
            ax.vlines(x, [100 * min(p.errors) for p in ok], [100 * max(p.errors) for p in ok],
                      color="#999999", linewidth=0.8)
        best = cal.best
        ax.plot([best.config.lr], [100 * best.error], "*", color="black", markersize=12)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("first eta" if cal.optimizer == "sdlm" else "learning rate")
        ax.set_ylabel(f"held-out error % (pass {cal.best.config.passes})")
        ax.set_title(f"{cal.model}, {cal.optimizer}")
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.legend(frameon=False, fontsize=7)
    return fig


def ablation_figure(results: Sequence[Ablation]) -> Any:
    fig = figure(7.5, 0.5 + 0.4 * len(results))
    ax = fig.subplots()
    for y, ab in enumerate(results):
        values = [100 * r.history.final.test.error for r in ab.runs if not diverged(r)]
        ax.plot(values, [y] * len(values), "o", color=ARM_COLOURS[0 if y else 1], alpha=0.7)
        ax.plot([statistics.fmean(values)], [y], "|", color="black", markersize=14)
    base = statistics.fmean(100 * r.history.final.test.error for r in results[0].runs)
    ax.axvline(base, color="#999999", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(results)), [r.name for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("held-out error after the last pass (%); bar: mean over seeds")
    ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
    return fig


def curvature_figure(trace: CurvatureTrace) -> Any:
    fig = figure(10.0, 3.6)
    left, right = fig.subplots(1, 2)
    for name in trace.median_h:
        style = "-" if name.endswith("weight") else ":"
        left.plot(trace.passes, trace.median_h[name], style, marker="o", markersize=2,
                  label=name)
        right.plot(trace.passes, trace.median_step[name], style, marker="o", markersize=2,
                   label=name)
    left.set_yscale("log")
    right.set_yscale("log")
    left.set_ylabel("median h_kk (our loss)")
    right.set_ylabel("median step eta / (mu + h_kk)")
    for ax in (left, right):
        ax.set_xlabel("pass")
        ax.grid(True, color="#dddddd", linewidth=0.6)
    right.legend(frameon=False, fontsize=7, ncol=2)
    return fig




def format_summary(results: StudyResults) -> str:
    lines = [f"paper study ({'quick' if results.plan is QUICK else 'full'} plan: "
             f"{results.plan.passes} passes, {results.plan.final_seeds} seeds; "
             f"{results.seconds:.0f} s: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in results.phases.items()) + ")"]
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.max_colwidth", 60):
        lines.append("\ncalibration (held-out 20% of the training digits; test set unused):")
        for name, cal in results.calibrations.items():
            b = cal.best
            lines.append(f"  {name}: {b.label()}  held-out error {100 * b.error:.2f}% "
                         f"(seeds {', '.join(f'{100 * e:.2f}' for e in b.errors)}), "
                         f"MSE {b.mse:.2e}")
        for name, arm in {**results.arms, results.earlier.name: results.earlier}.items():
            lines.append(f"\n{name} ({len(arm.runs)} seeds; {arm.config.optimizer} "
                         f"lr/eta {arm.config.lr:g}"
                         + (f", {arm.config.schedule}, mu {arm.config.mu:g}"
                            if arm.config.optimizer == "sdlm" else "") + "):")
            lines.append(arm_table(arm).to_string())
        lines.append("\nfit of the training digits, and its cost on the test set:")
        lines.append(fit_table([*results.arms.values(), results.earlier]).to_string())
        lines.append("\nablations (held-out digits, calibrated SDLM):")
        lines.append(ablation_table(results.ablations).to_string())
        lines.append("\nloss normalisation (LeNet-1, SDLM, mean over seeds):")
        lines.append(normalisation_table(results.normalisations).to_string())
        for when, table in results.gauss_newton.items():
            lines.append(f"\nsecond-derivative backprop vs exact Gauss-Newton diagonal, {when}:")
            lines.append(gauss_newton_table(table).to_string())
    return "\n".join(lines)


def write_outputs(results: StudyResults, out: Path, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(text + "\n")
    for name, cal in results.calibrations.items():
        calibration_table(cal).to_csv(out / f"calibration-{_slug(name)}.csv", index=False)
    for name, arm in {**results.arms, results.earlier.name: results.earlier}.items():
        arm_table(arm).to_csv(out / f"protocol-{_slug(name)}.csv")
    fit_table([*results.arms.values(), results.earlier]).to_csv(out / "fit.csv")
    (out / "results.md").write_text(results_markdown(results))
    (out / "key.txt").write_text(cache.code_key() + "\n")  # which code made these runs
    ablation_table(results.ablations).to_csv(out / "ablations.csv")
    normalisation_table(results.normalisations).to_csv(out / "loss-normalisations.csv")
    figures = {"learning-curves": seed_band_curves(list(results.arms.values())),
               "rejection": rejection_strip(list(results.arms.values())),
               "calibration": calibration_figure(list(results.calibrations.values())),
               "ablations": ablation_figure(results.ablations),
               "curvature": curvature_figure(results.trace)}
    for name, drawn in figures.items():
        drawn.savefig(out / f"{name}.png", dpi=110)


def results_markdown(results: StudyResults) -> str:
    """The README's results table: the paper's figures beside ours (mean ± std over seeds)."""
    lenet, fc = results.arms["LeNet-1, SDLM"], results.arms["FC-40, SDLM"]
    final, fc_final = lenet.final(), fc.final()
    seeds = final["test_misses"].count

    def spread(value: Spread, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        return f"{value.mean * scale:.{digits}f} ± {value.std * scale:.{digits}f}{unit}"

    def over(points: Sequence[Any], scale: float = 100.0) -> Spread:
        return Spread.of(p.rejection * scale for p in points)

    paper, paper_fc = PAPER["lenet1"], PAPER["fc40"]
    rows = [
        ("test misses (of 2,007)", f"{paper['test_misses']:.0f}",
         f"{spread(final['test_misses'], digits=1)} ({final['test_misses'].low:.0f} to "
         f"{final['test_misses'].high:.0f})"),
        ("test error", f"{100 * paper['test_error']:.1f}%", spread(final["test_error"], 100,
                                                                   unit="%")),
        ("test MSE", f"{paper['test_mse']:.1e}", f"{final['test_mse'].mean:.2e} ± "
                                                  f"{final['test_mse'].std:.1e}"),
        ("train misses (of 7,291)", f"{paper['train_misses']:.0f}",
         spread(final["train_misses"], digits=1)),
        ("train MSE", f"{paper['train_mse']:.1e}", f"{final['train_mse'].mean:.2e} ± "
                                                   f"{final['train_mse'].std:.1e}"),
        ("rejection for 1% test error (threshold on test)", f"{100 * paper['rejection']:.1f}%",
         f"{over(lenet.rejection_on_test).mean:.1f} ± {over(lenet.rejection_on_test).std:.1f}%"),
        ("FC-40 baseline: test error", f"{100 * paper_fc['test_error']:.1f}%",
         spread(fc_final["test_error"], 100, unit="%")),
        ("FC-40 baseline: rejection for 1% test error", f"{100 * paper_fc['rejection']:.1f}%",
         f"{over(fc.rejection_on_test).mean:.1f} ± {over(fc.rejection_on_test).std:.1f}%"),
    ]
    lines = [f"| figure | the paper | this reproduction ({seeds} seeds, SDLM) |",
             "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-").replace(
        "--", "-")


NORMALISATIONS = (("mean over the 10 outputs (ours)", 1.0), ("half the mean", 0.5),
                  ("sum over the 10 outputs", 10.0), ("half the sum", 5.0))


def normalisation_table(mses: dict[str, list[float]]) -> pd.DataFrame:
    """Our networks' train and test MSE (:func:`~lenet1.experiments.paper.normalised_mses`)
    under each reading of "MSE averaged over the patterns and over the output units", next to
    the paper's figures."""
    paper = PAPER["lenet1"]
    rows = []
    for label, factor in NORMALISATIONS:
        train, test = (Spread.of(v * factor for v in mses[k]) for k in ("train", "test"))
        rows.append({"normalisation": label, "train MSE": f"{train.mean:.2e}",
                     "test MSE": f"{test.mean:.2e}",
                     "train / paper": f"{train.mean / paper['train_mse']:.2f}",
                     "test / paper": f"{test.mean / paper['test_mse']:.2f}"})
    rows.append({"normalisation": "the paper", "train MSE": f"{paper['train_mse']:.1e}",
                 "test MSE": f"{paper['test_mse']:.1e}", "train / paper": "1",
                 "test / paper": "1"})
    return pd.DataFrame(rows).set_index("normalisation")


def gauss_newton_table(rows: Sequence[CurvatureAgreement]) -> pd.DataFrame:
    """:func:`~lenet1.experiments.paper.gauss_newton_comparison`'s figures, one row a tensor."""
    return pd.DataFrame([{"parameter": r.parameter, "mean h (estimate)": f"{r.mean_estimate:.3e}",
                          "mean h (exact)": f"{r.mean_exact:.3e}",
                          "ratio of means": f"{r.mean_estimate / r.mean_exact:.3f}",
                          "median ratio": f"{r.median_ratio:.3f}",
                          "correlation": f"{r.correlation:.3f}"} for r in rows]
                        ).set_index("parameter")


def run_and_report(quick: bool = False, root: str | Path | None = None, data_root: str | None = None,
          out: Path | str | None = None, progress: Progress = print,
          scheduler: str | None = None) -> StudyResults:
    """:func:`~lenet1.experiments.paper.run_all`, then its plain-text summary through
    ``progress``; with ``out``, also the summary, the tables (CSV) and the figures (PNG)."""
    results = run_all(quick, root, data_root, progress, scheduler)
    text = format_summary(results)
    if progress is not None:
        progress(text)
    if out is not None:
        write_outputs(results, Path(out), text)
    return results


