"""The paper's training method and every figure it reports, over many seeds.

Three steps, each from saved run folders (:func:`lenet1.experiments.training.run_folder`, keyed by configuration
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

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..data import load, validation_split
from ..engine.intrinsics import LANES
from ..rejection import RejectionPoint, rejection_for_error
from ..train.online import metrics_of, predict
from .executors import Executor, InProcess, cluster_for
from .runs import CurvatureTrace, Run, RunConfig, make_model
from .stats import Spread, rejection_figures, summarise
from .training import cached_runs, curvature_trace

Progress = Callable[[str], None] | None

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
    # Replicas trained in one task; None: one lane group of 8 per thread a task runs on (all
    # the cores in this process, one on a worker), so that no core waits. Never a number.
    batch: int | None = None


#: The book's study.
FULL = Plan(passes=23, calibration_seeds=3, final_seeds=10, ablation_seeds=5, holdout=0.2,
            sdlm_etas=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3), schedules=("constant", "1998"),
            mus=(0.002, 0.02), sgd_lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
            random_tables=(1, 2, 3))
#: A smoke test of the study (a couple of passes and seeds).
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
    return (final.pass_index < run.config.passes
            or not math.isfinite(final.train.mse) or not math.isfinite(final.test.mse))


def train_runs(configs: Sequence[RunConfig], plan: Plan, root: str | Path | None = None,
               data_root: str | None = None, progress: Progress = None,
               executor: Executor | None = None) -> list[Run]:
    """:func:`lenet1.experiments.training.cached_runs`, ``plan.batch`` replicas at a time, where a replica that
    diverges (a sweep's large step sizes) is saved as such and does not stop the others."""
    if any(config.engine != "fast" for config in configs):
        raise ValueError("the study trains with the fast engine only")
    runner = executor or InProcess(threads=os.cpu_count() or 1)
    return cached_runs(configs, root, data_root, progress,
                       batch=plan.batch or LANES * runner.threads, stop_on_divergence=False,
                       executor=runner)


# --- 1. calibration ---------------------------------------------------------------------------


def base_config(model: str, optimizer: str, plan: Plan) -> RunConfig:
    return RunConfig(model=model, optimizer=optimizer, passes=plan.passes, engine="fast",
                     curvature_patterns=plan.curvature_patterns)


def calibration_grid(model: str, optimizer: str, plan: Plan) -> list[RunConfig]:
    """The grid's points (seed 0), every one on the held-out split of the training digits."""
    base = replace(base_config(model, optimizer, plan), holdout=plan.holdout,
                   holdout_seed=HOLDOUT_SEED, record="last")
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
        """What selection minimises, in this order (no diverged seed, then held-out error, then
        held-out MSE)."""
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
        return replace(self.best.config, holdout=0.0, holdout_seed=0, record="every")


def calibrate(model: str, optimizer: str, plan: Plan, root: str | Path | None = None,
              data_root: str | None = None, progress: Progress = None,
              executor: Executor | None = None) -> Calibration:
    configs = calibration_configs(model, optimizer, plan)
    return calibration_of(model, optimizer,
                          train_runs(configs, plan, root, data_root, progress, executor))


def calibration_of(model: str, optimizer: str, runs: Sequence[Run]) -> Calibration:
    """The grid's points and the winner, from its trained runs."""
    assert all(r.config.holdout > 0 for r in runs)  # the test set plays no part
    points = grid_points(runs)
    return Calibration(model, optimizer, points, select(points))


# --- 2. the protocol, over seeds --------------------------------------------------------------


@dataclass
class Arm:
    """One network and optimiser under the protocol: ``runs`` on every training digit,
    ``holdout_runs`` on the calibration split's 80% (for the held-out rejection threshold).

    Rejection for 1% test error, per seed, three ways: ``rejection_on_test``, the paper's way
    (networks trained on every digit, the threshold chosen on the test set itself);
    ``holdout_on_test``, the same for the 80%-trained networks; ``rejection_held_out``, those
    networks with the threshold chosen on the held-out 20% and applied to the test set. The
    last two compare like with like. ``holdout_test_errors``: the 80%-trained networks' test
    error (their held-out error is their history's last "test" record)."""

    name: str
    model: str
    config: RunConfig
    runs: list[Run]
    holdout_runs: list[Run]
    rejection_on_test: list[RejectionPoint]
    rejection_held_out: list[RejectionPoint]
    holdout_on_test: list[RejectionPoint]
    holdout_test_errors: list[float]

    def summary(self) -> list[dict[str, Spread]]:
        return summarise([run.history for run in self.runs])

    def final(self) -> dict[str, Spread]:
        return self.summary()[-1]


def protocol_configs(config: RunConfig, plan: Plan) -> tuple[list[RunConfig], list[RunConfig]]:
    """The protocol's runs of ``config``: every seed on every training digit, and again on
    the held-out split (for the rejection threshold)."""
    full = [replace(config, seed=s) for s in range(plan.final_seeds)]
    held = [replace(config, seed=s, holdout=plan.holdout, holdout_seed=HOLDOUT_SEED,
                    record="last")
            for s in range(plan.final_seeds)]
    return full, held


def protocol(name: str, config: RunConfig, plan: Plan, root: str | Path | None = None,
             data_root: str | None = None, progress: Progress = None,
             executor: Executor | None = None) -> Arm:
    return arms_of({name: config}, plan, root, data_root, progress, executor)[name]


def arms_of(configs: Mapping[str, RunConfig], plan: Plan, root: str | Path | None = None,
            data_root: str | None = None, progress: Progress = None,
            executor: Executor | None = None) -> dict[str, Arm]:
    """The protocol for each named configuration, every arm's runs trained as one set of tasks
    (so that no worker waits at the end of one arm for the next to start)."""
    parts = {name: protocol_configs(config, plan) for name, config in configs.items()}
    runs = iter(train_runs([run for full, held in parts.values() for run in full + held],
                           plan, root, data_root, progress, executor))
    return {name: _arm(name, configs[name], plan, [next(runs) for _ in full],
                       [next(runs) for _ in held], data_root)
            for name, (full, held) in parts.items()}


def _arm(name: str, config: RunConfig, plan: Plan, runs: list[Run], holdout_runs: list[Run],
         data_root: str | None) -> Arm:
    bad = [r.path.name for r in runs + holdout_runs if diverged(r)]
    if bad:
        raise FloatingPointError(f"{name}: the calibrated constants diverged in {bad}")
    split = load(config.data, data_root)
    _, held_out = validation_split(split.train, plan.holdout, HOLDOUT_SEED)
    on_test = [rejection_for_error(predict(r.model, split.test.images), split.test.labels)
               for r in runs]
    figures = [rejection_figures(r, split.test, held_out=held_out) for r in holdout_runs]
    holdout_errors = [metrics_of(predict(r.model, split.test.images), split.test.labels).error
                      for r in holdout_runs]
    return Arm(name, config.model, config, runs, holdout_runs, on_test,
               [f.held_out for f in figures if f.held_out is not None],
               [f.on_test for f in figures], holdout_errors)


# The setup of the best-known earlier reproductions (FACTS.md): plain tanh, weights uniform in
# +-2.4/sqrt(F), SGD at 0.03, not calibrated. On the paper's digits, with 10 seeds, it shows
# how tightly a setup that reads the paper differently fits the training set.
EARLIER = "LeNet-1, earlier reproductions' setup"


def earlier_reproduction(plan: Plan, root: str | Path | None = None,
                         data_root: str | None = None, progress: Progress = None,
                         executor: Executor | None = None) -> Arm:
    return protocol(EARLIER, earlier_config(plan), plan, root, data_root, progress, executor)


def earlier_config(plan: Plan) -> RunConfig:
    return replace(base_config("lenet1", "sgd", plan), unit="tanh", init="sqrt_fan_in", lr=0.03)


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
              data_root: str | None = None, progress: Progress = None,
              executor: Executor | None = None) -> list[Ablation]:
    """Each variant of the calibrated SDLM network, on the held-out split; the first entry is
    the baseline itself (its held-out runs)."""
    base = replace(baseline.config, holdout=plan.holdout, holdout_seed=HOLDOUT_SEED,
                   record="last")
    variants = ablation_variants(plan)
    configs = [replace(base, seed=s, **changes)  # type: ignore[arg-type]
               for _, changes in variants
               for s in range(plan.ablation_seeds)]
    runs = train_runs(configs, plan, root, data_root, progress, executor)
    out = [Ablation("baseline (calibrated SDLM)", baseline.holdout_runs)]
    for i, (name, _) in enumerate(variants):
        out.append(Ablation(name, runs[i * plan.ablation_seeds:(i + 1) * plan.ablation_seeds]))
    return out


def normalised_mses(runs: Sequence[Run], data_root: str | None = None) -> dict[str, list[float]]:
    """Each run's train and test MSE on our scale (the squared error averaged over the
    patterns and the 10 outputs), the quantity the paper's normalisations rescale."""
    from ..data import place_code

    split = load(runs[0].config.data, data_root)
    values: dict[str, list[float]] = {"train": [], "test": []}
    for run in runs:
        for name, digits in (("train", split.train), ("test", split.test)):
            out = predict(run.model, digits.images)
            values[name].append(float(((out - place_code(digits.labels)) ** 2).mean()))
    return values


@dataclass(frozen=True)
class CurvatureAgreement:
    """Second-derivative back-propagation's ``h_kk`` against the exact Gauss-Newton diagonal
    for one parameter tensor, averaged over some digits (H2's absent connections left out)."""

    parameter: str
    mean_estimate: float
    mean_exact: float
    median_ratio: float
    correlation: float


def gauss_newton_comparison(model: torch.nn.Module, images: torch.Tensor
                            ) -> list[CurvatureAgreement]:
    """How close the SDLM curvature estimate is to the exact Gauss-Newton diagonal, per
    parameter tensor, averaged over ``images``."""
    from ..nets import LeNet1
    from ..train.sdlm import curvature, exact_gauss_newton_diagonal, h2_mask

    estimate = curvature(model, images)
    exact = exact_gauss_newton_diagonal(model, images)
    rows = []
    for name, est in estimate.items():
        ex = exact[name]
        if name == "h2_weight" and isinstance(model, LeNet1):
            keep = h2_mask(model).expand_as(est).bool()
            est, ex = est[keep], ex[keep]
        a, b = est.flatten().double().numpy(), ex.flatten().double().numpy()
        corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else math.nan
        rows.append(CurvatureAgreement(name, float(a.mean()), float(b.mean()),
                                       float(np.median(a / np.maximum(b, 1e-30))), corr))
    return rows


# --- the curvature during training (the SDLM chapter) ----------------------------------------


# --- everything -------------------------------------------------------------------------------


@dataclass
class StudyResults:
    plan: Plan
    calibrations: dict[str, Calibration]
    arms: dict[str, Arm]
    earlier: Arm  # the earlier reproductions' setup, on the paper's digits
    ablations: list[Ablation]
    normalisations: dict[str, list[float]]  # normalised_mses of the SDLM arm
    trace: CurvatureTrace
    gauss_newton: dict[str, list[CurvatureAgreement]]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)


ARMS = (("LeNet-1, SDLM", "lenet1", "sdlm"), ("LeNet-1, SGD", "lenet1", "sgd"),
        ("FC-40, SDLM", "fc40", "sdlm"), ("FC-40, SGD", "fc40", "sgd"))


def calibrate_all(plan: Plan, root: str | Path | None = None, data_root: str | None = None,
                  progress: Progress = None,
                  executor: Executor | None = None) -> dict[str, Calibration]:
    # The grids are independent: trained as one set of tasks, so that no worker waits for
    # the end of one grid before the next starts.
    grids = {name: calibration_configs(model, optimizer, plan) for name, model, optimizer in ARMS}
    runs = iter(train_runs([c for configs in grids.values() for c in configs],
                           plan, root, data_root, progress, executor))
    return {name: calibration_of(model, optimizer, [next(runs) for _ in grids[name]])
            for name, model, optimizer in ARMS}


def protocol_all(calibrations: dict[str, Calibration], plan: Plan,
                 root: str | Path | None = None, data_root: str | None = None,
                 progress: Progress = None,
                 executor: Executor | None = None) -> dict[str, Arm]:
    return arms_of({name: c.chosen for name, c in calibrations.items()}, plan, root, data_root,
                   progress, executor)


def run_all(quick: bool = False, root: str | Path | None = None, data_root: str | None = None,
            progress: Progress = print, scheduler: str | None = None,
            executor: Executor | None = None) -> StudyResults:
    """Calibrate, then train every protocol and ablation run that is not saved yet, and the
    curvature trace; reload the rest. :mod:`lenet1.report.paper` turns the results into the
    book's tables and figures.

    The missing runs train as groups of replicas on ``executor``; by default in this process on
    every core, or with ``scheduler`` (else ``$LENET1_SCHEDULER``) on a Dask cluster
    (:class:`~lenet1.experiments.executors.DaskCluster`: an address, or ``local:N``). Where
    they train never changes their numbers."""
    if executor is None and (cluster := cluster_for(scheduler, progress)) is not None:
        with cluster:
            return run_all(quick, root, data_root, progress, executor=cluster)
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        seconds[name] = time.perf_counter() - started - sum(seconds.values())

    plan = plan_for(quick)
    calibrations = calibrate_all(plan, root, data_root, progress, executor)
    lap("calibration")
    arms = arms_of({**{name: c.chosen for name, c in calibrations.items()},
                    EARLIER: earlier_config(plan)}, plan, root, data_root, progress, executor)
    earlier = arms.pop(EARLIER)
    lap("protocol")
    sdlm = arms["LeNet-1, SDLM"]
    ablation_results = ablations(sdlm, plan, root, data_root, progress, executor)
    normalisations = normalised_mses(sdlm.runs, data_root)
    lap("ablations")
    trace = curvature_trace(sdlm.config, root, data_root)
    split = load(sdlm.config.data, data_root)
    digits = split.train.images[:plan.gauss_newton_digits]
    gauss_newton = {"at initialisation": gauss_newton_comparison(make_model(sdlm.config), digits),
                    "after training": gauss_newton_comparison(sdlm.runs[0].model, digits)}
    lap("curvature")
    results = StudyResults(plan, calibrations, arms, earlier, ablation_results, normalisations,
                           trace,
                           gauss_newton, time.perf_counter() - started, seconds)
    return results


__all__ = [
    "EARLIER",
    "FULL",
    "QUICK",
    "Ablation",
    "Arm",
    "Calibration",
    "CurvatureAgreement",
    "CurvatureTrace",
    "GridPoint",
    "Plan",
    "StudyResults",
    "ablations",
    "arms_of",
    "calibrate",
    "calibrate_all",
    "calibration_configs",
    "calibration_grid",
    "calibration_of",
    "curvature_trace",
    "diverged",
    "earlier_config",
    "earlier_reproduction",
    "gauss_newton_comparison",
    "grid_points",
    "normalised_mses",
    "plan_for",
    "protocol",
    "protocol_all",
    "protocol_configs",
    "run_all",
    "select",
    "train_runs",
]
