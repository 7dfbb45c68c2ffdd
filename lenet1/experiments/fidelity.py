"""Which of the choices the paper leaves open give its five figures together.

The paper reports five figures after 23 passes (``PAPER``): the training set's misses and
MSE, the test set's misses and MSE, and the rejection that brings the test error to 1%. The
book's protocol reads the test digits about as well as the paper but fits the training digits
more loosely. This study asks which settings of everything the paper leaves open or states
loosely (``CATEGORIES`` and ``RANGES``) reach all five, and what the training fit depends on.

Decided before any run (and printed with the results):

- **Distance** of a setting to the paper: the sum over the five figures of
  ``|ln(ours / paper)|``, ours the mean over the setting's seeds (misses floored at half a
  miss, so that a perfect fit has a finite distance). 0 is the paper exactly; 0.1 on one
  figure is 10% off.
- **Reproduces**: the paper's value lies within the seeds' range (min to max) for every one
  of the five figures.

The design (:func:`design`): a Latin hypercube over the factors, each categorical factor's
levels spread evenly over the points and each continuous one drawn log-uniformly within its
strata, from a fixed seed; every point trained with a few seeds (the *screening*); the points
nearest the paper then retrained with 10 fresh seeds (the *confirmation*); and the earlier
reproductions' setups (``arms``) with 10 seeds each. A run is an online run of
:mod:`lenet1.experiments.runs` on the fast engine, cached like every other, so the design's
runs are trained once; :func:`run_study` runs the stages in turn.

This study aims at the paper's reported test figures, so unlike the rest of the book it looks
at the test set on purpose; none of its choices feeds the book's headline protocol, whose
constants were chosen on held-out training digits.

The full study (``FULL``: 1,500 or more networks) takes some 40 minutes on two cores; its table
ships with the book (:data:`TABLE`), keyed by the code that made it, and :func:`check_table`
retrains a few of its rows at random and fails unless they give the table's numbers.
"""

from __future__ import annotations

import csv
import json
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load
from ..facts import PAPER as PAPER_FACTS
from ..rejection import rejection_for_error
from ..train.online import predict
from . import cache
from .executors import Executor, cluster_for
from .paper import EARLIER, FULL as PAPER_PLAN, QUICK as PAPER_QUICK
from .paper import calibrate, diverged, earlier_config, protocol_configs, train_runs
from .runs import Run, RunConfig, loss_factor
from .training import StaleTableError

Progress = Callable[[str], None] | None

#: The five figures, in the order every table gives them.
FIGURES = ("train_misses", "train_mse", "test_misses", "test_mse", "rejection")
#: The paper's five figures (from ``lenet1.facts``; 10 and 102 misses, MSE 2.5e-3 and 1.8e-2, 12.1%).
PAPER: dict[str, float] = {name: float(PAPER_FACTS["lenet1"][name]) for name in FIGURES}
#: Misses are floored at this before a logarithm, so a perfect fit is half a miss from one.
MISS_FLOOR = 0.5

#: Every factor with levels, the paper's level (or this book's reading of it) first.
CATEGORIES: dict[str, tuple[Any, ...]] = {
    "table": ("block", "random:1", "random:2"),
    "init": ("fan_in", "sqrt_fan_in"),
    "bias_init": ("zero", "uniform", "output_minus_one"),
    "unit": ("scaled_tanh", "tanh"),
    "output": ("hidden", "sigmoid"),    # hidden: the output units are the hidden units' kind
    "loss": ("mean", "half_mean", "sum", "half_sum"),
    "order": ("fixed", "shuffled"),
    "input_background": (-1.0, 0.0),
    "h2_background": (-1.0, 0.0),
    "passes": (23, 15, 35),
    "optimizer": ("sdlm", "sgd"),
    "schedule": ("constant", "1998"),          # SDLM only
    "curvature_patterns": (500, 100, 1000),    # SDLM only
}
#: The continuous factors, drawn log-uniformly (SDLM's eta and mu, SGD's step).
RANGES: dict[str, tuple[float, float]] = {"eta": (1e-5, 3e-3), "mu": (2e-4, 0.2),
                                          "lr": (0.003, 0.3)}
#: The factors that apply to one optimiser only.
SDLM_ONLY = ("schedule", "curvature_patterns", "eta", "mu")
SGD_ONLY = ("lr",)
DESIGN_SEED = 1989


@dataclass(frozen=True)
class Scale:
    """How much the study trains: ``points`` settings, ``seeds`` each in the screening; the
    ``confirm`` nearest the paper again with ``confirm_seeds`` fresh seeds (those after the
    screening's, which chose them); the arms with ``arm_seeds``.
    ``passes`` replaces the passes factor's levels (a quick run's few passes)."""

    points: int
    seeds: int
    confirm: int
    confirm_seeds: int
    arm_seeds: int
    passes: tuple[int, ...] = CATEGORIES["passes"]

    def __post_init__(self) -> None:
        if min(self.points, self.seeds, self.confirm_seeds, self.arm_seeds) < 1 or \
                self.confirm < 0 or self.confirm > self.points:
            raise ValueError(f"not a valid scale: {self}")


#: The study whose table ships with the book (480 settings x 3 seeds, the 6 nearest with 10).
FULL = Scale(points=480, seeds=3, confirm=6, confirm_seeds=10, arm_seeds=10)
#: A smoke test (a few settings, two passes).
QUICK = Scale(points=6, seeds=2, confirm=2, confirm_seeds=3, arm_seeds=2, passes=(2, 1))
SCALES = {"full": FULL, "quick": QUICK}


# --- the design -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One setting of the design: its index and its factors' values."""

    index: int
    levels: Mapping[str, Any]

    def config(self, seed: int) -> RunConfig:
        """The run of this setting with ``seed`` (on every training digit, the test set
        reported, the figures recorded after the last pass)."""
        v = self.levels
        sdlm = v["optimizer"] == "sdlm"
        output = None if v["output"] == "hidden" else v["output"]
        return RunConfig(model="lenet1", unit=v["unit"], output=output, init=v["init"],
                         table=v["table"], h2_background=v["h2_background"],
                         input_background=v["input_background"], bias_init=v["bias_init"],
                         passes=v["passes"], optimizer=v["optimizer"],
                         lr=v["eta"] if sdlm else v["lr"],
                         schedule=v["schedule"] if sdlm else "constant",
                         mu=v["mu"] if sdlm else RunConfig.mu,
                         curvature_patterns=(v["curvature_patterns"] if sdlm
                                             else RunConfig.curvature_patterns),
                         loss=v["loss"], order=v["order"], seed=seed, engine="fast",
                         record="last")


def _round(value: float) -> float:
    """Three significant digits: the design's values as a person would write them."""
    return float(f"{value:.3g}")


def design(scale: Scale, seed: int = DESIGN_SEED) -> list[Point]:
    """A Latin hypercube of ``scale.points`` settings: each factor's column is a random
    permutation of the points' strata (so every level of a categorical factor comes up
    equally often, give or take one), and a continuous factor is drawn log-uniformly inside
    its stratum. The columns are independent, so every pair of factors is spread over its
    combinations. From Python's own generator, the same on every version and machine."""
    rng = random.Random(seed)
    n = scale.points
    columns: dict[str, list[float]] = {}
    for name in (*CATEGORIES, *RANGES):
        strata = list(range(n))
        rng.shuffle(strata)
        columns[name] = [(s + rng.random()) / n for s in strata]
    levels_of = {**CATEGORIES, "passes": scale.passes}
    points = []
    for i in range(n):
        values: dict[str, Any] = {}
        for name, levels in levels_of.items():
            values[name] = levels[min(int(columns[name][i] * len(levels)), len(levels) - 1)]
        for name, (low, high) in RANGES.items():
            values[name] = _round(low * (high / low) ** columns[name][i])
        for name in SGD_ONLY if values["optimizer"] == "sdlm" else SDLM_ONLY:
            values[name] = None                 # does not apply
        points.append(Point(i, values))
    return points


# --- a run's five figures -------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """A run's five figures, its MSEs as its own loss reports them (``loss_factor`` times the
    mean over the outputs in the +-1 code), and whether it diverged (then the figures are
    NaN)."""

    train_misses: float
    train_mse: float
    test_misses: float
    test_mse: float
    rejection: float
    diverged: bool

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in FIGURES}


def figures_of(run: Run, test_digits: Any) -> Figures:
    """The five figures of a trained run (its last record, and the rejection for 1% test
    error computed from its weights)."""
    if diverged(run):
        nan = math.nan
        return Figures(nan, nan, nan, nan, nan, True)
    final = run.history.final
    scale = loss_factor(run.config)
    rejection = rejection_for_error(predict(run.model, test_digits.images),
                                    test_digits.labels).rejection
    return Figures(float(final.train.misses), scale * final.train.mse,
                   float(final.test.misses), scale * final.test.mse, float(rejection), False)


def distance(means: Mapping[str, float]) -> float:
    """The sum over the five figures of ``|ln(ours / paper)|`` (misses floored at half a
    miss): the pre-stated distance to the paper. Infinite for a diverged setting."""
    total = 0.0
    for name in FIGURES:
        ours = means[name]
        if not math.isfinite(ours):
            return math.inf
        if name.endswith("misses"):
            ours = max(ours, MISS_FLOOR)
        total += abs(math.log(max(ours, 1e-12) / PAPER[name]))
    return total


# --- rows, summaries --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One trained network of the study: which stage and setting it belongs to, its run's
    configuration, and its five figures."""

    stage: str      # "screen", "confirm" or "arm"
    name: str       # the setting: "p<index>" or the arm's name
    config: RunConfig
    figures: Figures


@dataclass(frozen=True)
class Setting:
    """A setting over its seeds: the figures' means and ranges, its distance to the paper,
    and whether the paper's five figures all lie within the seeds' ranges."""

    name: str
    stage: str
    config: RunConfig          # seed 0's
    seeds: int
    diverged: int
    means: dict[str, float]
    lows: dict[str, float]
    highs: dict[str, float]

    @property
    def distance(self) -> float:
        return math.inf if self.diverged else distance(self.means)

    @property
    def reproduces(self) -> bool:
        return not self.diverged and all(self.lows[f] <= PAPER[f] <= self.highs[f]
                                         for f in FIGURES)


def settings_of(rows: Sequence[Row], stage: str | None = None) -> list[Setting]:
    """Every setting's summary over its seeds (the rows of ``stage``, or all), in the order
    the settings first appear."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if stage is None or row.stage == stage:
            groups.setdefault((row.stage, row.name), []).append(row)
    settings = []
    for (where, name), members in groups.items():
        good = [r.figures for r in members if not r.figures.diverged]
        values = {f: [getattr(g, f) for g in good] for f in FIGURES}
        nan = math.nan
        settings.append(Setting(
            name, where, replace(members[0].config, seed=0), len(members),
            len(members) - len(good),
            {f: statistics.fmean(v) if v else nan for f, v in values.items()},
            {f: min(v) if v else nan for f, v in values.items()},
            {f: max(v) if v else nan for f, v in values.items()}))
    return settings


def nearest(settings: Sequence[Setting], count: int) -> list[Setting]:
    """The ``count`` settings nearest the paper (ties: the earlier setting)."""
    ranked = sorted((s for s in settings if math.isfinite(s.distance)),
                    key=lambda s: s.distance)
    return ranked[:count]


# --- the factors' effects -------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """A factor level's effect against the paper's level, all else held equal in a
    main-effects model: misses (plus one) are multiplied by ``ratio``, with a 95% interval."""

    factor: str
    level: str
    reference: str
    ratio: float
    low: float
    high: float
    runs: int            # the runs at this level
    diverged: float      # the share of this level's runs that diverged


def _third(name: str, value: float) -> str:
    """A continuous factor's value as the third of its (log) range it falls in."""
    low, high = RANGES[name]
    position = math.log(value / low) / math.log(high / low)
    return ("low", "middle", "high")[min(int(position * 3), 2)]


def _factor_levels(point_levels: Mapping[str, Any]) -> dict[str, str]:
    """A setting's factor levels as categories (continuous ones by third)."""
    levels: dict[str, str] = {}
    for name in CATEGORIES:
        value = point_levels[name]
        if value is not None:
            levels[name] = str(value)
    for name in RANGES:
        value = point_levels[name]
        if value is not None:
            levels[name] = _third(name, value)
    return levels


def effects(rows: Sequence[Row], points: Sequence[Point], figure: str) -> list[Effect]:
    """Each factor level's effect on ``figure`` (``train_misses`` or ``test_misses``) over the
    screening's converged runs: least squares of ``ln(misses + 1)`` on every factor's levels
    (the paper's level, or a continuous factor's middle third, the reference; the
    one-optimiser factors counted within their optimiser), with intervals from standard errors
    robust to the runs of one setting being alike (clustered by setting)."""
    by_name = {f"p{p.index}": p for p in points}
    screen = [r for r in rows if r.stage == "screen" and r.name in by_name]
    reference = {name: str(levels[0]) for name, levels in CATEGORIES.items()}
    reference.update({name: "middle" for name in RANGES})
    columns: list[tuple[str, str]] = []
    seen: dict[str, set[str]] = {}
    level_rows = [(_factor_levels(by_name[r.name].levels), r) for r in screen]
    for levels, _ in level_rows:
        for name, level in levels.items():
            seen.setdefault(name, set()).add(level)
    for name in (*CATEGORIES, *RANGES):
        for level in sorted(seen.get(name, ()), key=str):
            if level != reference[name]:
                columns.append((name, level))
    good = [(levels, r) for levels, r in level_rows if not r.figures.diverged]
    counts = {column: 0 for column in columns}
    bad = {column: 0 for column in columns}
    for levels, r in level_rows:
        for column in columns:
            if levels.get(column[0]) == column[1]:
                counts[column] += 1
                bad[column] += r.figures.diverged
    if len(good) <= len(columns) + 1:
        return []
    x = np.zeros((len(good), len(columns) + 1))
    x[:, 0] = 1.0
    for i, (levels, _) in enumerate(good):
        for j, (name, level) in enumerate(columns, start=1):
            x[i, j] = levels.get(name) == level
    y = np.array([math.log(getattr(r.figures, figure) + 1.0) for _, r in good])
    clusters = [r.name for _, r in good]
    beta, se = _clustered_least_squares(x, y, clusters)
    return [Effect(name, level, reference[name], math.exp(beta[j]),
                   math.exp(beta[j] - 1.96 * se[j]), math.exp(beta[j] + 1.96 * se[j]),
                   counts[(name, level)], bad[(name, level)] / max(counts[(name, level)], 1))
            for j, (name, level) in enumerate(columns, start=1)]


def _clustered_least_squares(x: np.ndarray, y: np.ndarray, clusters: Sequence[str]
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients and their cluster-robust standard errors (the sandwich
    estimator with the usual small-sample factor)."""
    bread = np.linalg.pinv(x.T @ x)
    beta = bread @ x.T @ y
    residuals = y - x @ beta
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clusters):
        groups.setdefault(c, []).append(i)
    meat = np.zeros((x.shape[1], x.shape[1]))
    for members in groups.values():
        score = x[members].T @ residuals[members]
        meat += np.outer(score, score)
    g, n, k = len(groups), len(y), x.shape[1]
    factor = g / max(g - 1, 1) * (n - 1) / max(n - k, 1)
    covariance = factor * bread @ meat @ bread
    return beta, np.sqrt(np.maximum(np.diag(covariance), 0.0))


# --- the arms: the earlier reproductions' setups, each from its own code ---------------------


# Senn's reproduction (raphaelsenn/lenet-1, lenet1/lenet1.py and train.py): plain tanh hidden
# units, sigmoid outputs against 0/1 (one-hot) targets, weights uniform in +-2.4/F, zero
# biases, -1 beyond the input's border and H1's, the block table (copied from Karpathy's),
# torch's MSELoss (the mean over the 10 outputs for one pattern), plain SGD one pattern at a
# time, the patterns reshuffled every pass, 23 passes. Its code's default step is 0.1725, its
# README's 0.15.
SENN_CODE = "Senn's setup (SGD 0.1725, its code)"
# Karpathy's (karpathy/lecun1989-repro, repro.py): the paper study's earlier-reproductions
# setup (plain tanh, +-1 targets, +-2.4/sqrt(F), SGD 0.03, the file's order) with the one
# detail that arm leaves out: his output biases start at -1, the other biases at 0.
KARPATHY = "Karpathy's setup (its code, output biases at -1)"
SENN_README = "Senn's setup (SGD 0.15, its README)"
OURS = "this book's protocol (SDLM, calibrated)"


def arm_configs(passes: int, quick: bool, root: str | Path | None = None,
                data_root: str | None = None, progress: Progress = None,
                executor: Executor | None = None) -> dict[str, RunConfig]:
    """The arms' configurations (seed 0): the book's calibrated SDLM protocol, Karpathy's
    setup as the paper study trains it and as his code has it, and Senn's, with the step of
    its code and of its README. The first two are the paper study's own runs, so they are reloaded from its cache
    where it has run."""
    plan = PAPER_QUICK if quick else PAPER_PLAN
    ours = calibrate("lenet1", "sdlm", plan, root, data_root, progress, executor).chosen
    senn = RunConfig(model="lenet1", unit="tanh", output="sigmoid", init="fan_in",
                     bias_init="zero", table="block", loss="mean", order="shuffled",
                     optimizer="sgd", lr=0.1725, passes=passes, engine="fast")
    earlier = earlier_config(plan)
    return {OURS: ours, EARLIER: earlier,
            KARPATHY: replace(earlier, bias_init="output_minus_one", passes=passes),
            SENN_CODE: senn, SENN_README: replace(senn, lr=0.15)}


def arm_runs(config: RunConfig, name: str, seeds: int) -> list[RunConfig]:
    if name in (OURS, EARLIER):   # the paper study's runs, exactly (their learning curves too)
        plan = replace(PAPER_PLAN, final_seeds=seeds, passes=config.passes)
        return protocol_configs(config, plan)[0]
    return [replace(config, seed=s, record="last") for s in range(seeds)]


# --- the study ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    """The study's rows and what it was: the scale, the design's points, and the code key of
    the source that trained it."""

    scale: Scale
    points: list[Point]
    rows: list[Row]
    code_key: str

    @property
    def networks(self) -> int:
        """The networks trained."""
        return len({row.config for row in self.rows})

    def screening(self) -> list[Setting]:
        return settings_of(self.rows, "screen")

    def confirmation(self) -> list[Setting]:
        return settings_of(self.rows, "confirm")

    def arms(self) -> list[Setting]:
        return settings_of(self.rows, "arm")


def _train(configs: Sequence[RunConfig], root: str | Path | None, data_root: str | None,
           progress: Progress, executor: Executor | None) -> list[Run]:
    return train_runs(configs, PAPER_PLAN, root, data_root, progress, executor)


def run_study(scale: Scale, quick: bool = False, root: str | Path | None = None,
              data_root: str | None = None, progress: Progress = print,
              scheduler: str | None = None, executor: Executor | None = None) -> Study:
    """Screen the design, confirm the settings nearest the paper, train the arms; every run
    reloaded if cached. ``scheduler``: as for the other studies (a Dask cluster)."""
    if executor is None and (cluster := cluster_for(scheduler, progress)) is not None:
        with cluster:
            return run_study(scale, quick, root, data_root, progress, executor=cluster)
    split = load("usps", data_root)
    points = design(scale)
    screen_configs = [p.config(s) for p in points for s in range(scale.seeds)]
    runs = _train(screen_configs, root, data_root, progress, executor)
    rows = [Row("screen", f"p{c_point.index}", config, figures_of(run, split.test))
            for c_point, config, run in zip((p for p in points for _ in range(scale.seeds)),
                                            screen_configs, runs)]
    best = nearest(settings_of(rows, "screen"), scale.confirm)
    by_name = {f"p{p.index}": p for p in points}
    # Fresh seeds: the screening's seeds chose these settings for being near the paper, so
    # their runs would flatter them (the winner's curse).
    confirm_configs = [(s.name, by_name[s.name].config(seed)) for s in best
                       for seed in range(scale.seeds, scale.seeds + scale.confirm_seeds)]
    runs = _train([c for _, c in confirm_configs], root, data_root, progress, executor)
    rows += [Row("confirm", name, config, figures_of(run, split.test))
             for (name, config), run in zip(confirm_configs, runs)]
    arm_passes = scale.passes[0]
    arms = arm_configs(arm_passes, quick, root, data_root, progress, executor)
    arm_list = [(name, c) for name, config in arms.items()
                for c in arm_runs(config, name, scale.arm_seeds)]
    runs = _train([c for _, c in arm_list], root, data_root, progress, executor)
    rows += [Row("arm", name, config, figures_of(run, split.test))
             for (name, config), run in zip(arm_list, runs)]
    return Study(scale, points, rows, cache.code_key())


# --- the table that ships with the book -----------------------------------------------------

#: The full study's table, in the repository (the book reads it; :func:`check_table` keeps it
#: honest).
TABLE = Path(__file__).resolve().parents[2] / "results" / "fidelity.csv"
_CONFIG_FIELDS = [f.name for f in fields(RunConfig)]


def write_table(study: Study, path: Path = TABLE) -> None:
    """The study's rows as CSV (every run's configuration and five figures), and beside it
    a JSON file with the scale, the design seed and the code key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["stage", "name", *_CONFIG_FIELDS, *FIGURES, "diverged"])
        for row in study.rows:
            config = asdict(row.config)
            writer.writerow([row.stage, row.name, *[_cell(config[f]) for f in _CONFIG_FIELDS],
                             *[repr(getattr(row.figures, f)) for f in FIGURES],
                             int(row.figures.diverged)])
    meta = {"code_key": study.code_key, "scale": asdict(study.scale),
            "design_seed": DESIGN_SEED, "rows": len(study.rows)}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def _cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _parse(name: str, text: str) -> Any:
    default = next(f for f in fields(RunConfig) if f.name == name).default
    if text == "":
        return None
    if isinstance(default, bool):
        return text == "True"
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float) or name == "lr":
        return float(text)
    return text


def read_table(path: Path = TABLE) -> Study:
    """The shipped study, as :func:`write_table` wrote it; a clear error if it is missing or
    malformed."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"no fidelity table at {path} (and {meta_path.name}): "
                                f"`python -m lenet1 study fidelity --scale full` makes it")
    meta = json.loads(meta_path.read_text())
    rows = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        expected = ["stage", "name", *_CONFIG_FIELDS, *FIGURES, "diverged"]
        if reader.fieldnames != expected:
            raise ValueError(f"{path}: the columns are not those this code writes; "
                             f"rerun the full study")
        for line in reader:
            config = RunConfig(**{f: _parse(f, line[f]) for f in _CONFIG_FIELDS})
            numbers = {f: float(line[f]) for f in FIGURES}
            rows.append(Row(line["stage"], line["name"], config,
                            Figures(**numbers, diverged=line["diverged"] == "1")))
    if len(rows) != meta["rows"]:
        raise ValueError(f"{path} holds {len(rows)} rows, its description says {meta['rows']}")
    sizes = dict(meta["scale"])
    scale = Scale(points=int(sizes["points"]), seeds=int(sizes["seeds"]),
                  confirm=int(sizes["confirm"]), confirm_seeds=int(sizes["confirm_seeds"]),
                  arm_seeds=int(sizes["arm_seeds"]), passes=tuple(sizes["passes"]))
    return Study(scale, design(scale, meta["design_seed"]), rows, meta["code_key"])


@dataclass(frozen=True)
class Check:
    """A row of the table retrained now: the table's figures and the new ones."""

    row: Row
    retrained: Figures

    @property
    def agrees(self) -> bool:
        a, b = self.row.figures, self.retrained
        if a.diverged or b.diverged:
            return a.diverged == b.diverged
        return all(math.isclose(getattr(a, f), getattr(b, f), rel_tol=1e-5, abs_tol=1e-9)
                   for f in FIGURES)


def check_table(study: Study, count: int, root: str | Path | None = None,
                data_root: str | None = None, progress: Progress = None,
                rng: random.Random | None = None) -> list[Check]:
    """Retrain ``count`` of the table's runs drawn at random with the code as it is, and raise
    :class:`~lenet1.experiments.training.StaleTableError` unless every one gives the table's figures (misses and rejection
    exactly, MSEs to a relative 1e-5). The draw is seeded by the code key (unless ``rng`` is
    given): every change to the code that decides numbers draws other runs, and the command
    line and the chapter draw the same ones, so the chapter reloads what the command trained."""
    rng = rng or random.Random(cache.code_key())
    drawn = rng.sample(study.rows, min(count, len(study.rows)))
    split = load("usps", data_root)
    runs = _train([row.config for row in drawn], root, data_root, progress, None)
    checks = [Check(row, figures_of(run, split.test)) for row, run in zip(drawn, runs)]
    stale = [c for c in checks if not c.agrees]
    if stale:
        lines = "; ".join(f"{c.row.stage} {c.row.name} seed {c.row.config.seed}: table "
                          f"{c.row.figures.values()}, now {c.retrained.values()}" for c in stale)
        raise StaleTableError(f"the fidelity table (code {study.code_key}) no longer matches "
                              f"the code ({cache.code_key()}): {lines}. Renew it with "
                              f"`python -m lenet1 study fidelity --scale full`.")
    return checks


__all__ = [
    "CATEGORIES",
    "FIGURES",
    "FULL",
    "KARPATHY",
    "OURS",
    "PAPER",
    "QUICK",
    "RANGES",
    "SENN_CODE",
    "SENN_README",
    "TABLE",
    "Check",
    "Effect",
    "Figures",
    "Point",
    "Row",
    "Scale",
    "Setting",
    "Study",
    "arm_configs",
    "check_table",
    "design",
    "distance",
    "effects",
    "figures_of",
    "nearest",
    "read_table",
    "run_study",
    "settings_of",
    "write_table",
]
