"""The paper's training method and every figure it reports, over many seeds.

Three steps, each from saved run folders (:func:`lenet1.runs.run_folder`, keyed by configuration
and source), so that running it twice trains nothing the second time:

1. **Calibration** (:func:`calibrate`). The paper gives no step size for its network. For each
   network and optimiser, a grid of constants (SDLM: ``eta`` x schedule x ``mu``; SGD: the
   learning rate) is trained on 80% of the *training* digits, a few seeds per point, and the
   point with the lowest mean error on the other 20% after the last pass wins (ties: the lowest
   held-out MSE). A point where any seed diverges is out. The test set is never looked at:
   every calibration run has ``holdout > 0``, and such a run reports the held-out digits where
   another reports the test set.
2. **The protocol** (:func:`protocol`): the chosen constants, trained on every training digit
   for many seeds (the paper's figures), and again with the held-out split (to set the
   rejection threshold on digits the test set does not contain).
3. **Ablations** (:func:`ablations`): one choice changed at a time, on the held-out split, with
   the calibrated SDLM runs as the baseline.

:func:`run_all` does all of it, plus the curvature trace of the SDLM chapter, and prints a
plain-text summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import load, validation_split
from .rejection import RejectionPoint, rejection_for_error
from .runs import (
    Run,
    RunConfig,
    code_fingerprint,
    fit_and_evaluation_sets,
    make_model,
    make_rule,
    runs_root,
)
from .study import Spread, cached_runs, rejection_figures, summarise
from .train import History, predict

Progress = Callable[[str], None] | None

# --- the paper's figures (FACTS.md; quoted, never ours) ---------------------------------------

PAPER = {
    "lenet1": {"train_mse": 2.5e-3, "train_error": 0.0014, "train_misses": 10,
               "test_mse": 1.8e-2, "test_error": 0.050, "test_misses": 102, "rejection": 0.121},
    "fc40": {"train_error": 0.016, "test_error": 0.081, "rejection": 0.194},
}


# --- the plan: how much to train -------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Every size of the study. :data:`FULL` is what the book shows; :data:`QUICK` is a smoke
    test (a couple of passes and seeds) for the notebooks' quick mode."""

    passes: int
    calibration_seeds: int
    final_seeds: int
    ablation_seeds: int
    holdout: float
    sdlm_etas: tuple[float, ...]
    schedules: tuple[str, ...]
    mus: tuple[float, ...]
    sgd_lrs: tuple[float, ...]
    random_tables: tuple[int, ...]
    curvature_patterns: int = 500
    gauss_newton_digits: int = 16
    # Replicas trained in one batch: a multiple of the cores, small enough to save progress.
    batch: int = 8


FULL = Plan(passes=23, calibration_seeds=3, final_seeds=10, ablation_seeds=5, holdout=0.2,
            sdlm_etas=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3), schedules=("constant", "1998"),
            mus=(0.002, 0.02), sgd_lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
            random_tables=(1, 2, 3))
QUICK = Plan(passes=2, calibration_seeds=2, final_seeds=2, ablation_seeds=2, holdout=0.2,
             sdlm_etas=(1e-4, 1e-3), schedules=("constant",), mus=(0.002,),
             sgd_lrs=(0.03, 0.1), random_tables=(1,), gauss_newton_digits=4)
HOLDOUT_SEED = 0


def plan_for(quick: bool) -> Plan:
    return QUICK if quick else FULL


# --- divergence -------------------------------------------------------------------------------


def diverged(run: Run) -> bool:
    """A run whose history stops before its last pass, or ends on a non-finite MSE."""
    final = run.history.final
    return (len(run.history.passes) < run.config.passes + 1
            or not math.isfinite(final.train.mse) or not math.isfinite(final.test.mse))


def train_runs(configs: Sequence[RunConfig], plan: Plan, root: str | Path | None = None,
               data_root: str | None = None, progress: Progress = None) -> list[Run]:
    """:func:`lenet1.study.cached_runs`, ``plan.batch`` replicas at a time, where a replica that
    diverges (a sweep's large step sizes) is saved as such and does not stop the others."""
    if any(config.engine != "fast" for config in configs):
        raise ValueError("the study trains with the fast engine only")
    return cached_runs(configs, root, data_root, progress, batch=plan.batch,
                       stop_on_divergence=False)


# --- 1. calibration ---------------------------------------------------------------------------


def base_config(model: str, optimizer: str, plan: Plan) -> RunConfig:
    return RunConfig(model=model, optimizer=optimizer, passes=plan.passes, engine="fast",
                     curvature_patterns=plan.curvature_patterns)


def calibration_grid(model: str, optimizer: str, plan: Plan) -> list[RunConfig]:
    """The grid's points (seed 0), every one on the held-out split of the training digits."""
    base = replace(base_config(model, optimizer, plan), holdout=plan.holdout,
                   holdout_seed=HOLDOUT_SEED)
    if optimizer == "sgd":
        return [replace(base, lr=lr) for lr in plan.sgd_lrs]
    return [replace(base, lr=eta, schedule=schedule, mu=mu)
            for schedule in plan.schedules for mu in plan.mus for eta in plan.sdlm_etas]


def calibration_configs(model: str, optimizer: str, plan: Plan) -> list[RunConfig]:
    """Every calibration run: each grid point with ``plan.calibration_seeds`` seeds."""
    return [replace(point, seed=seed) for point in calibration_grid(model, optimizer, plan)
            for seed in range(plan.calibration_seeds)]


@dataclass(frozen=True)
class GridPoint:
    """One point of a calibration grid: its configuration (seed 0) and its seeds' held-out
    error and MSE after the last pass (a diverged seed counts as error 1, MSE inf)."""

    config: RunConfig
    errors: tuple[float, ...]
    mses: tuple[float, ...]
    diverged: int

    @property
    def error(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def mse(self) -> float:
        return statistics.fmean(self.mses)

    @property
    def key(self) -> tuple[int, float, float]:
        """What selection minimises: no diverged seed, then held-out error, then MSE."""
        return (int(self.diverged > 0), self.error, self.mse)

    def label(self) -> str:
        c = self.config
        if c.optimizer == "sgd":
            return f"sgd lr={c.lr:g}"
        return f"sdlm eta={c.lr:g} {c.schedule} mu={c.mu:g}"


def grid_points(runs: Sequence[Run]) -> list[GridPoint]:
    """The runs grouped by configuration (all but the seed), in order of first appearance."""
    groups: dict[RunConfig, list[Run]] = {}
    for run in runs:
        groups.setdefault(replace(run.config, seed=0), []).append(run)
    points = []
    for config, members in groups.items():
        errors, mses, bad = [], [], 0
        for run in members:
            if diverged(run):
                bad += 1
                errors.append(1.0)
                mses.append(math.inf)
            else:
                errors.append(run.history.final.test.error)  # the held-out digits
                mses.append(run.history.final.test.mse)
        points.append(GridPoint(config, tuple(errors), tuple(mses), bad))
    return points


def select(points: Sequence[GridPoint]) -> GridPoint:
    """The grid point with the lowest mean held-out error; ties by held-out MSE."""
    if not points:
        raise ValueError("an empty grid")
    return min(points, key=lambda p: p.key)


@dataclass
class Calibration:
    model: str
    optimizer: str
    points: list[GridPoint]
    best: GridPoint

    @property
    def chosen(self) -> RunConfig:
        """The winning constants, on every training digit (the protocol's configuration)."""
        return replace(self.best.config, holdout=0.0, holdout_seed=0)

    def table(self) -> Any:
        import pandas as pd

        rows = []
        for p in self.points:
            c = p.config
            rows.append({"optimizer": c.optimizer,
                         "schedule": c.schedule if c.optimizer == "sdlm" else "constant",
                         "mu": c.mu if c.optimizer == "sdlm" else float("nan"),
                         "eta or lr": c.lr,
                         "held-out error %": 100 * p.error,
                         "std %": 100 * statistics.stdev(p.errors) if len(p.errors) > 1 else 0.0,
                         "held-out MSE": p.mse, "diverged seeds": p.diverged,
                         "chosen": "<==" if p is self.best else ""})
        return pd.DataFrame(rows)


def calibrate(model: str, optimizer: str, plan: Plan, root: str | Path | None = None,
              data_root: str | None = None, progress: Progress = None) -> Calibration:
    configs = calibration_configs(model, optimizer, plan)
    assert all(c.holdout > 0 for c in configs)  # the test set plays no part
    runs = train_runs(configs, plan, root, data_root, progress)
    points = grid_points(runs)
    return Calibration(model, optimizer, points, select(points))


# --- 2. the protocol, over seeds --------------------------------------------------------------


@dataclass
class Arm:
    """One network and optimiser under the protocol: ``runs`` on every training digit,
    ``holdout_runs`` on the calibration split (for the held-out rejection threshold)."""

    name: str
    model: str
    config: RunConfig
    runs: list[Run]
    holdout_runs: list[Run]
    rejection_on_test: list[RejectionPoint]
    rejection_held_out: list[RejectionPoint]

    def summary(self) -> list[dict[str, Spread]]:
        return summarise([run.history for run in self.runs])

    def final(self) -> dict[str, Spread]:
        return self.summary()[-1]


def protocol(name: str, config: RunConfig, plan: Plan, root: str | Path | None = None,
             data_root: str | None = None, progress: Progress = None) -> Arm:
    full = [replace(config, seed=s) for s in range(plan.final_seeds)]
    held = [replace(config, seed=s, holdout=plan.holdout, holdout_seed=HOLDOUT_SEED)
            for s in range(plan.final_seeds)]
    runs = train_runs(full + held, plan, root, data_root, progress)
    runs, holdout_runs = runs[:len(full)], runs[len(full):]
    bad = [r.path.name for r in runs + holdout_runs if diverged(r)]
    if bad:
        raise FloatingPointError(f"{name}: the calibrated constants diverged in {bad}")
    split = load(config.data, data_root)
    _, held_out = validation_split(split.train, plan.holdout, HOLDOUT_SEED)
    on_test = [rejection_for_error(predict(r.model, split.test.images), split.test.labels)
               for r in runs]
    honest = [rejection_figures(r, split.test, held_out=held_out).held_out for r in holdout_runs]
    return Arm(name, config.model, config, runs, holdout_runs, on_test,
               [p for p in honest if p is not None])


ROWS = (("train MSE", "train_mse", 1.0, "{:.2e}"), ("train error %", "train_error", 100, "{:.2f}"),
        ("train misses", "train_misses", 1, "{:.1f}"), ("test MSE", "test_mse", 1.0, "{:.2e}"),
        ("test error %", "test_error", 100, "{:.2f}"), ("test misses", "test_misses", 1, "{:.1f}"))


def _cell(spread: Spread, scale: float, fmt: str) -> tuple[str, str, str]:
    return (fmt.format(spread.mean * scale), fmt.format(spread.std * scale),
            f"[{fmt.format(spread.low * scale)}, {fmt.format(spread.high * scale)}]")


def arm_table(arm: Arm) -> Any:
    """Paper vs reproduction at the last pass: mean, std and range over seeds."""
    import pandas as pd

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
    for label, points in (("rejection % for 1% test error (threshold on test)",
                           arm.rejection_on_test),
                          ("rejection % for 1% error (threshold on held-out digits)",
                           arm.rejection_held_out)):
        mean, std, span = _cell(Spread.of(p.rejection for p in points), 100, "{:.1f}")
        rows.append({"figure": label, "the paper": f"{100 * paper['rejection']:.1f}"
                     if "on test" in label else "", "mean": mean, "std": std, "range": span})
    mean, std, span = _cell(Spread.of(p.error for p in arm.rejection_held_out), 100, "{:.2f}")
    rows.append({"figure": "test error % at the held-out threshold", "the paper": "",
                 "mean": mean, "std": std, "range": span})
    return pd.DataFrame(rows).set_index("figure")


# --- 3. ablations -----------------------------------------------------------------------------


def ablation_variants(plan: Plan) -> list[tuple[str, dict[str, object]]]:
    variants: list[tuple[str, dict[str, object]]] = [
        ("init 2.4/sqrt(F)", {"init": "sqrt_fan_in"}),
        ("plain tanh", {"unit": "tanh"}),
        ("biases drawn like weights", {"bias_init": "uniform"}),
        ("H2 padding 0 (not -1)", {"h2_background": 0.0}),
        ("table: all 12 (full)", {"table": "full"}),
    ]
    variants += [(f"table: random 8-of-12 #{s}", {"table": f"random:{s}"})
                 for s in plan.random_tables]
    return variants


@dataclass
class Ablation:
    name: str
    runs: list[Run]

    def final(self) -> dict[str, Spread]:
        return summarise([r.history for r in self.runs if not diverged(r)])[-1]


def ablations(baseline: Arm, plan: Plan, root: str | Path | None = None,
              data_root: str | None = None, progress: Progress = None) -> list[Ablation]:
    """Each variant of the calibrated SDLM network, on the held-out split; the first entry is
    the baseline itself (its held-out runs)."""
    base = replace(baseline.config, holdout=plan.holdout, holdout_seed=HOLDOUT_SEED)
    variants = ablation_variants(plan)
    configs = [replace(base, seed=s, **changes)  # type: ignore[arg-type]
               for _, changes in variants
               for s in range(plan.ablation_seeds)]
    runs = train_runs(configs, plan, root, data_root, progress)
    out = [Ablation("baseline (calibrated SDLM)", baseline.holdout_runs)]
    for i, (name, _) in enumerate(variants):
        out.append(Ablation(name, runs[i * plan.ablation_seeds:(i + 1) * plan.ablation_seeds]))
    return out


def ablation_table(results: Sequence[Ablation]) -> Any:
    """Held-out error and MSE after the last pass, per variant, and the difference from the
    baseline's mean with its standard error (Welch)."""
    import pandas as pd

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


NORMALISATIONS = (("mean over the 10 outputs (ours)", 1.0), ("half the mean", 0.5),
                  ("sum over the 10 outputs", 10.0), ("half the sum", 5.0))


def loss_normalisations(runs: Sequence[Run], data_root: str | None = None) -> Any:
    """Our networks' train and test MSE under each normalisation of "MSE averaged over the
    patterns and over the output units", next to the paper's 2.5e-3 and 1.8e-2."""
    import pandas as pd

    from .data import place_code

    split = load(runs[0].config.data, data_root)
    values: dict[str, list[float]] = {"train": [], "test": []}
    for run in runs:
        for name, digits in (("train", split.train), ("test", split.test)):
            out = predict(run.model, digits.images)
            values[name].append(float(((out - place_code(digits.labels)) ** 2).mean()))
    rows = []
    for label, factor in NORMALISATIONS:
        train, test = (Spread.of(v * factor for v in values[k]) for k in ("train", "test"))
        rows.append({"normalisation": label, "train MSE": f"{train.mean:.2e}",
                     "test MSE": f"{test.mean:.2e}",
                     "train / paper": f"{train.mean / PAPER['lenet1']['train_mse']:.2f}",
                     "test / paper": f"{test.mean / PAPER['lenet1']['test_mse']:.2f}"})
    rows.append({"normalisation": "the paper", "train MSE": "2.5e-03", "test MSE": "1.8e-02",
                 "train / paper": "1", "test / paper": "1"})
    return pd.DataFrame(rows).set_index("normalisation")


# --- the curvature during training (the SDLM chapter) ----------------------------------------


@dataclass
class CurvatureTrace:
    """Per pass and parameter tensor: the median ``h_kk`` and the median step
    ``eta / (mu + h_kk)`` SDLM used for that pass (connections absent from H2's table left
    out), and the run's history."""

    config: RunConfig
    passes: list[int]
    median_h: dict[str, list[float]]
    median_step: dict[str, list[float]]
    eta: list[float]
    history: History = field(repr=False)


def curvature_trace(config: RunConfig, root: str | Path | None = None,
                    data_root: str | None = None) -> CurvatureTrace:
    """Train ``config`` (SDLM) once on one engine, snapshotting the rule's curvature before
    every pass; cached as JSON next to the run folders."""
    from .engine import FastEngine
    from .model import LeNet1
    from .sdlm import SDLM, h2_mask
    from .train import train_online

    key = hashlib.sha256(json.dumps([asdict(config), code_fingerprint()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = runs_root(root) / f"curvature-{config.model}-s{config.seed}-{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return CurvatureTrace(config, data["passes"], data["median_h"], data["median_step"],
                              data["eta"], History.from_json(data["history"]))
    train, test = fit_and_evaluation_sets(config, data_root)
    model = make_model(config)
    rule = make_rule(config)
    assert isinstance(rule, SDLM)
    passes: list[int] = []
    median_h: dict[str, list[float]] = {}
    median_step: dict[str, list[float]] = {}
    etas: list[float] = []

    def snapshot(record: Any) -> None:
        if rule.last_pass != record.pass_index or not rule.last_curvature:
            return
        passes.append(record.pass_index)
        eta = rule.eta(record.pass_index)
        etas.append(eta)
        for name, h in rule.last_curvature.items():
            values = h
            if name == "h2_weight" and isinstance(model, LeNet1):
                values = h[h2_mask(model).expand_as(h).bool()]
            values = values.flatten().double()
            median_h.setdefault(name, []).append(float(values.median()))
            median_step.setdefault(name, []).append(float((eta / (rule.mu + values)).median()))

    history = train_online(model, train, test, config.passes, rule, FastEngine(),
                           on_pass=snapshot)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"passes": passes, "median_h": median_h,
                                "median_step": median_step, "eta": etas,
                                "history": history.to_json()}) + "\n")
    return CurvatureTrace(config, passes, median_h, median_step, etas, history)


def gauss_newton_comparison(model: torch.nn.Module, images: torch.Tensor) -> Any:
    """Second-derivative back-propagation's ``h_kk`` against the exact Gauss-Newton diagonal,
    per parameter tensor, averaged over ``images``."""
    import pandas as pd

    from .model import LeNet1
    from .sdlm import curvature, exact_gauss_newton_diagonal, h2_mask

    estimate = curvature(model, images)
    exact = exact_gauss_newton_diagonal(model, images)
    rows = []
    for name, est in estimate.items():
        ex = exact[name]
        if name == "h2_weight" and isinstance(model, LeNet1):
            keep = h2_mask(model).expand_as(est).bool()
            est, ex = est[keep], ex[keep]
        a, b = est.flatten().double().numpy(), ex.flatten().double().numpy()
        corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        rows.append({"parameter": name, "mean h (estimate)": f"{a.mean():.3e}",
                     "mean h (exact)": f"{b.mean():.3e}",
                     "ratio of means": f"{a.mean() / b.mean():.3f}",
                     "median ratio": f"{float(np.median(a / np.maximum(b, 1e-30))):.3f}",
                     "correlation": f"{corr:.3f}"})
    return pd.DataFrame(rows).set_index("parameter")


# --- figures ----------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", facecolor="white")


ARM_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def seed_band_curves(arms: Sequence[Arm]) -> Any:
    """MSE (log) and error % (log) against the pass: each arm's mean over seeds (test solid,
    train dashed) with its min-max band, and the paper's end points at pass 23."""
    fig = _figure(10.0, 4.4)
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
    fig = _figure(8.0, 0.6 + 0.55 * 2 * len(arms))
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
    fig = _figure(4.2 * len(calibrations), 3.4)
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
    fig = _figure(7.5, 0.5 + 0.4 * len(results))
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
    fig = _figure(10.0, 3.6)
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


# --- everything -------------------------------------------------------------------------------


@dataclass
class StudyResults:
    plan: Plan
    calibrations: dict[str, Calibration]
    arms: dict[str, Arm]
    ablations: list[Ablation]
    normalisations: Any
    trace: CurvatureTrace
    gauss_newton: dict[str, Any]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return format_summary(self)


ARMS = (("LeNet-1, SDLM", "lenet1", "sdlm"), ("LeNet-1, SGD", "lenet1", "sgd"),
        ("FC-40, SDLM", "fc40", "sdlm"), ("FC-40, SGD", "fc40", "sgd"))


def calibrate_all(plan: Plan, root: str | Path | None = None, data_root: str | None = None,
                  progress: Progress = None) -> dict[str, Calibration]:
    return {name: calibrate(model, optimizer, plan, root, data_root, progress)
            for name, model, optimizer in ARMS}


def protocol_all(calibrations: dict[str, Calibration], plan: Plan,
                 root: str | Path | None = None, data_root: str | None = None,
                 progress: Progress = None) -> dict[str, Arm]:
    return {name: protocol(name, calibrations[name].chosen, plan, root, data_root, progress)
            for name in calibrations}


def run_all(quick: bool = False, root: str | Path | None = None, data_root: str | None = None,
            out: Path | str | None = None, progress: Progress = print) -> StudyResults:
    """Calibrate, train every protocol and ablation run that is not saved yet, and build every
    table; print (through ``progress``) the plain-text summary. With ``out``, also write the
    summary, the tables (CSV) and the figures (PNG) there."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        seconds[name] = time.perf_counter() - started - sum(seconds.values())

    plan = plan_for(quick)
    calibrations = calibrate_all(plan, root, data_root, progress)
    lap("calibration")
    arms = protocol_all(calibrations, plan, root, data_root, progress)
    lap("protocol")
    sdlm = arms["LeNet-1, SDLM"]
    ablation_results = ablations(sdlm, plan, root, data_root, progress)
    normalisations = loss_normalisations(sdlm.runs, data_root)
    lap("ablations")
    trace = curvature_trace(sdlm.config, root, data_root)
    split = load(sdlm.config.data, data_root)
    digits = split.train.images[:plan.gauss_newton_digits]
    gauss_newton = {"at initialisation": gauss_newton_comparison(make_model(sdlm.config), digits),
                    "after training": gauss_newton_comparison(sdlm.runs[0].model, digits)}
    lap("curvature")
    results = StudyResults(plan, calibrations, arms, ablation_results, normalisations, trace,
                           gauss_newton, time.perf_counter() - started, seconds)
    text = format_summary(results)
    if progress is not None:
        progress(text)
    if out is not None:
        write_outputs(results, Path(out), text)
    return results


def format_summary(results: StudyResults) -> str:
    import pandas as pd

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
        for name, arm in results.arms.items():
            lines.append(f"\n{name} ({len(arm.runs)} seeds; {arm.config.optimizer} "
                         f"lr/eta {arm.config.lr:g}"
                         + (f", {arm.config.schedule}, mu {arm.config.mu:g}"
                            if arm.config.optimizer == "sdlm" else "") + "):")
            lines.append(arm_table(arm).to_string())
        lines.append("\nablations (held-out digits, calibrated SDLM):")
        lines.append(ablation_table(results.ablations).to_string())
        lines.append("\nloss normalisation (LeNet-1, SDLM, mean over seeds):")
        lines.append(results.normalisations.to_string())
        for when, table in results.gauss_newton.items():
            lines.append(f"\nsecond-derivative backprop vs exact Gauss-Newton diagonal, {when}:")
            lines.append(table.to_string())
    return "\n".join(lines)


def write_outputs(results: StudyResults, out: Path, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(text + "\n")
    for name, cal in results.calibrations.items():
        cal.table().to_csv(out / f"calibration-{_slug(name)}.csv", index=False)
    for name, arm in results.arms.items():
        arm_table(arm).to_csv(out / f"protocol-{_slug(name)}.csv")
    ablation_table(results.ablations).to_csv(out / "ablations.csv")
    results.normalisations.to_csv(out / "loss-normalisations.csv")
    figures = {"learning-curves": seed_band_curves(list(results.arms.values())),
               "rejection": rejection_strip(list(results.arms.values())),
               "calibration": calibration_figure(list(results.calibrations.values())),
               "ablations": ablation_figure(results.ablations),
               "curvature": curvature_figure(results.trace)}
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=110)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-").replace(
        "--", "-")


__all__ = [
    "FULL",
    "PAPER",
    "QUICK",
    "Ablation",
    "Arm",
    "Calibration",
    "CurvatureTrace",
    "GridPoint",
    "Plan",
    "StudyResults",
    "ablation_table",
    "ablations",
    "arm_table",
    "calibrate",
    "calibrate_all",
    "calibration_configs",
    "calibration_grid",
    "curvature_trace",
    "diverged",
    "format_summary",
    "gauss_newton_comparison",
    "grid_points",
    "loss_normalisations",
    "plan_for",
    "protocol",
    "protocol_all",
    "run_all",
    "select",
    "train_runs",
]
