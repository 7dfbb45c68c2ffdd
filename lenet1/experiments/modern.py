"""Thirty-three years later: the 1989 network trained the modern way, one change at a time.

The study is a declarative list of :data:`STEPS`. Step 0 is the paper's loop with plain SGD at
0.03 (online updates, scaled tanh units, MSE, 23 passes; not the paper's optimiser); every later
step starts from the previous step's :class:`~lenet1.experiments.recipes.Recipe` and changes the fields it names, and
nothing else. The network keeps its 9,760 free parameters and the paper's initial weights
(uniform +-2.4/F, drawn from the seed exactly as :func:`lenet1.experiments.runs.make_model` draws them) in
every step, so for a given seed every step starts from the same weights.

Some steps leave a choice open (a learning rate after a change that rescales the gradient, or
which of several further improvements to add). Those choices are made on a *validation split*
carved from the training digits (:func:`lenet1.data.validation_split`, 20%, seed 0): each
candidate is trained on the other 80% with the first :attr:`~lenet1.experiments.recipes.Scale.selection_seeds` seeds and
judged by its mean validation error (ties: mean validation MSE). The test set is used once per
step, for the figures of the chosen recipe.

Every run is trained or reloaded by :class:`lenet1.experiments.training.Runner`, through the
package's one cache: a run is trained once, reloaded afterwards, and never reused by different
code.

:func:`run_study` regenerates everything: it trains what is missing, reloads the rest, and
returns a :class:`Study` with one :class:`StepSummary` per step (mean, std and range of the test
error and misses over the seeds, wall time, and the same arithmetic's time on the paper's DSP
board) and one :class:`Selection` per open choice. Command line::

    LENET1_DATA=... python -m lenet1 study modern [--quick] [--seeds 0 1 2 3 4]
"""
from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..accounting import multiply_adds
from ..facts import KARPATHY_PATH
from ..nets import ModernLeNet1
from .executors import Executor, cluster_for
from .recipes import FULL, PAPER_RECIPE, QUICK, Recipe, Scale, study_sets
from .stats import sample_std
from .training import Runner, RunResult

#: The seeds the study reports.
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: The seeds of quick mode (one stack of the quick scale's two).
QUICK_SEEDS: tuple[int, ...] = (0, 1)


def study_seeds(quick: bool) -> tuple[int, ...]:
    """The seeds the study reports: :data:`SEEDS`, or :data:`QUICK_SEEDS` in quick mode."""
    return QUICK_SEEDS if quick else SEEDS

# --- the steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One change to the previous step's recipe.

    ``changes`` are applied as they are. ``choices``, if any, are alternative further changes,
    one of which is picked on the validation split; when ``changes`` is empty the step is a pure
    selection and the previous recipe competes with the candidates (it may be kept).
    """

    name: str
    label: str  # short, for a figure's axis
    title: str  # what changes, in words
    changes: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[Mapping[str, Any], ...] = ()
    note: str = ""

    @property
    def karpathy(self) -> tuple[str, float] | None:
        return KARPATHY_PATH.get(self.name)


#: The study's steps in order, each changing the previous step's recipe.
STEPS: tuple[Step, ...] = (
    Step("paper", "paper", "the paper's loop with plain SGD (step 0.03): online, scaled tanh, "
         "MSE, 23 passes"),
    Step("minibatch", "mini-batch", "mini-batches of 32 instead of online updates",
         {"trainer": "minibatch", "batch_size": 32},
         choices=({"lr": 0.24}, {"lr": 0.48}, {"lr": 0.96}),
         note="the loss is a batch mean, so 32 x 0.03 = 0.96 keeps each pattern's step; "
              "halving it once or twice is tried too"),
    Step("shuffle", "shuffle", "patterns reshuffled every pass", {"shuffle": True}),
    Step("cross_entropy", "cross-entropy", "softmax + cross-entropy instead of tanh outputs "
         "+ MSE", {"output": "logits", "loss": "cross_entropy"},
         choices=({"lr": 0.03}, {"lr": 0.1}, {"lr": 0.3}),
         note="the cross-entropy's gradient is on another scale than the MSE's, so the "
              "step is chosen again"),
    Step("adamw", "AdamW", "AdamW (weight decay 0.01), cosine-decayed learning rate, 30 passes",
         {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "cosine", "passes": 30},
         choices=({"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-2})),
    Step("translate", "shifts", "random translation by up to 1 pixel", {"translate": 1}),
    Step("relu_dropout", "ReLU+dropout", "ReLU units, dropout 0.25 before H3",
         {"unit": "relu", "dropout": 0.25}),
    Step("more", "chosen", "one more training change, chosen on validation",
         choices=({"translate": 2}, {"rotate": 10.0, "scale": 0.1}, {"label_smoothing": 0.1},
                  {"ema": 0.999})),
    Step("tta", "TTA", "test-time augmentation, chosen on validation",
         choices=({"tta": 1}, {"tta": 2})),
)


def describe(changes: Mapping[str, Any]) -> str:
    """A change in words, for tables."""
    if not changes:
        return "as before"
    words = {
        "translate": lambda v: f"random shifts up to {v} px",
        "rotate": lambda v: f"rotation up to {v:g} deg",
        "scale": lambda v: f"scaling up to {100 * v:g}%",
        "label_smoothing": lambda v: f"label smoothing {v:g}",
        "ema": lambda v: f"weight average (EMA {v:g})",
        "tta": lambda v: f"test-time shifts up to {v} px ({(2 * v + 1) ** 2} views)",
        "lr": lambda v: f"lr {v:g}",
        "dropout": lambda v: f"dropout {v:g}",
    }
    return ", ".join(words[k](v) if k in words else f"{k} {v}" for k, v in changes.items())


def short(changes: Mapping[str, Any]) -> str:
    """A change in a word or two, for a figure's axis."""
    words = {"translate": lambda v: f"shifts {v} px", "rotate": lambda v: "rotate+scale",
             "scale": lambda v: "rotate+scale", "label_smoothing": lambda v: "label smoothing",
             "ema": lambda v: "EMA", "tta": lambda v: f"TTA {v} px", "lr": lambda v: f"lr {v:g}"}
    labels = [words[k](v) if k in words else k for k, v in changes.items()]
    return "+".join(dict.fromkeys(labels)) or "as before"


def recipes(steps: Sequence[Step] = STEPS, chosen: Mapping[str, Mapping[str, Any]] | None = None
            ) -> list[Recipe]:
    """Each step's recipe, given each open choice (default: the first candidate)."""
    chosen = chosen or {}
    recipe, out = PAPER_RECIPE, []
    for step in steps:
        recipe = recipe.changed(step.changes)
        if step.choices:
            recipe = recipe.changed(chosen.get(step.name, step.choices[0]))
        out.append(recipe)
    return out



# --- summaries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSummary:
    """One step's figures over its seeds (errors as fractions)."""

    index: int
    name: str
    label: str
    title: str
    changed: dict[str, Any]  # the recipe fields this step changed, with their new values
    recipe: Recipe
    seeds: tuple[int, ...]
    test_errors: tuple[float, ...]
    test_misses: tuple[int, ...]
    test_count: int
    train_errors: tuple[float, ...]
    seconds: tuple[float, ...]
    dsp_seconds: float
    karpathy: tuple[str, float] | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.test_errors)

    @property
    def std(self) -> float:
        return sample_std(self.test_errors)

    @property
    def low(self) -> float:
        return min(self.test_errors)

    @property
    def high(self) -> float:
        return max(self.test_errors)

    @property
    def mean_misses(self) -> float:
        return statistics.fmean(self.test_misses)

    @property
    def std_misses(self) -> float:
        return sample_std([float(m) for m in self.test_misses])

    @property
    def train_mean(self) -> float:
        return statistics.fmean(self.train_errors)

    @property
    def mean_seconds(self) -> float:
        return statistics.fmean(self.seconds)


def dsp_seconds(recipe: Recipe, patterns: int) -> float:
    """The training's multiply-adds at the paper's DSP board's 12.5 M a second."""
    count = multiply_adds(ModernLeNet1(unit="scaled_tanh", output="squashed", init="fan_in"))
    return count.dsp_seconds(patterns, recipe.passes, recipe.batch_size)


def summarise(index: int, step: Step, previous: Recipe | None, results: Sequence[RunResult],
              patterns: int) -> StepSummary:
    """A step's statistics from its runs (one per seed, all of the same recipe)."""
    if not results:
        raise ValueError("no runs to summarise")
    recipe = results[0].recipe
    if any(r.recipe != recipe for r in results):
        raise ValueError("the runs of one step must share its recipe")
    return StepSummary(
        index=index, name=step.name,
        label=(short(previous.diff(recipe)) if previous is not None and step.choices
               and not step.changes else step.label),
        title=step.title,
        changed=(previous.diff(recipe) if previous is not None else {}), recipe=recipe,
        seeds=tuple(r.seed for r in results),
        test_errors=tuple(r.test.error for r in results),
        test_misses=tuple(r.test.misses for r in results), test_count=results[0].test.count,
        train_errors=tuple(r.train.error for r in results),
        seconds=tuple(r.seconds for r in results), dsp_seconds=dsp_seconds(recipe, patterns),
        karpathy=step.karpathy)


@dataclass(frozen=True)
class Selection:
    """An open choice decided on the validation split. ``candidates[i]`` are the changes on top
    of the step's fixed ones (``{}``: the previous recipe, which wins when no change beats it)."""

    step: str
    candidates: tuple[dict[str, Any], ...]
    errors: tuple[tuple[float, ...], ...]  # per candidate, per selection seed
    mse: tuple[tuple[float, ...], ...]
    seeds: tuple[int, ...]
    validation_count: int
    chosen: int

    @property
    def choice(self) -> dict[str, Any]:
        return self.candidates[self.chosen]


def choose(candidates: Sequence[Mapping[str, Any]], errors: Sequence[Sequence[float]],
           mse: Sequence[Sequence[float]]) -> int:
    """The best candidate: lowest mean validation error, then lowest MSE, then the first listed.

    The reference ``{}`` (the previous recipe, listed first in a pure selection step) competes
    too: when nothing beats it on the validation split, the step changes nothing, however the
    test set might have liked the change."""
    def score(i: int) -> tuple[float, float, int]:
        mse_mean = statistics.fmean(mse[i])
        return statistics.fmean(errors[i]), (mse_mean if math.isfinite(mse_mean) else math.inf), i

    return min(range(len(candidates)), key=score)


# --- the whole study ----------------------------------------------------------------------------


@dataclass
class Study:
    steps: list[StepSummary]
    selections: list[Selection]
    runs: list[RunResult]
    seeds: tuple[int, ...]
    scale: Scale
    train_count: int
    test_count: int
    engine: str

    @property
    def compute_seconds(self) -> float:
        """Wall time of every distinct run the study needs (steps and selections)."""
        seen: dict[Path | None, float] = {}
        for r in self.runs:
            seen[r.path] = r.seconds
        return sum(seen.values())

    @property
    def fresh_seconds(self) -> float:
        """Wall time of the runs this call trained (the rest were reloaded)."""
        seen = {r.path: r.seconds for r in self.runs if r.fresh}
        return sum(seen.values())

    def final(self) -> StepSummary:
        """The last step: the recipe every validation choice led to. Not the step with the
        lowest test error, which would be a choice made on the test set."""
        return self.steps[-1]

    def paired_change(self, index: int) -> tuple[float, float] | None:
        """Step ``index``'s test error minus the previous step's, seed by seed (every step of
        one seed starts from the same weights): the mean and standard deviation of those
        differences, as fractions. ``None`` for step 0."""
        return paired_change(self.steps[index - 1], self.steps[index]) if index > 0 else None

def paired_change(before: StepSummary, after: StepSummary) -> tuple[float, float]:
    """Mean and standard deviation of ``after``'s test error minus ``before``'s, seed by seed."""
    if before.seeds != after.seeds:
        raise ValueError(f"the steps ran different seeds: {before.seeds} and {after.seeds}")
    differences = [b - a for a, b in zip(before.test_errors, after.test_errors)]
    return statistics.fmean(differences), sample_std(differences)


def run_study(seeds: Sequence[int] = SEEDS, quick: bool = False, *,
              steps: Sequence[Step] = STEPS, scale: Scale | None = None,
              root: str | Path | None = None, data_root: str | None = None,
              log: Callable[[str], None] | None = None, workers: int | None = None,
              scheduler: str | None = None, executor: Executor | None = None) -> Study:
    """Every step on every seed, with every open choice decided on the validation split.

    Trains what ``root`` (default :func:`lenet1.experiments.cache.runs_root`) lacks and reloads
    the rest. ``quick`` shrinks everything (:data:`~lenet1.experiments.recipes.QUICK`: 300 training digits, 2 passes, one
    selection seed) for tests and the notebook's quick mode; ``scale`` overrides it. A run is
    trained in its stack (:func:`~lenet1.experiments.recipes.stack_of`: its recipe on a fixed
    block of seeds), the stacks in ``workers`` processes (default: one per core), or with
    ``scheduler`` (else ``$LENET1_SCHEDULER``) on a Dask cluster, or on ``executor``; none of
    these changes a number.
    """
    if executor is None and (cluster := cluster_for(scheduler, log)) is not None:
        with cluster:
            return run_study(seeds, quick, steps=steps, scale=scale, root=root,
                             data_root=data_root, log=log, workers=workers, executor=cluster)
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    scale = scale or (QUICK if quick else FULL)
    sets = study_sets(scale, data_root)
    workers = workers if workers is not None else os.cpu_count() or 1
    selection_seeds = seeds[:max(1, scale.selection_seeds)]
    summaries: list[StepSummary] = []
    selections: list[Selection] = []
    runs: list[RunResult] = []
    recipe: Recipe | None = None
    patterns = len(sets["test"][0])
    with Runner(root, sets, scale, log, data_root, workers, executor=executor) as runner:
        # First every open choice, step by step (each builds on the last); then the test runs
        # of every step at once, so that the workers never wait for a step's last run.
        step_recipes: list[Recipe] = []
        for index, step in enumerate(steps):
            base = (recipe or PAPER_RECIPE).changed(step.changes)
            if step.choices:
                candidates: list[dict[str, Any]] = ([{}] if not step.changes else []) + \
                    [dict(c) for c in step.choices]
                judged = runner.run_candidates([base.changed(c) for c in candidates],
                                               selection_seeds, "validation",
                                               f"step {index} {step.name}, validation")
                runs.extend(judged)
                per = len(selection_seeds)
                errors = [tuple(r.test.error for r in judged[i:i + per])
                          for i in range(0, len(judged), per)]
                mse = [tuple(r.test.mse for r in judged[i:i + per])
                       for i in range(0, len(judged), per)]
                chosen = choose(candidates, errors, mse)
                selections.append(Selection(step.name, tuple(candidates), tuple(errors),
                                            tuple(mse), selection_seeds,
                                            len(sets["validation"][1]), chosen))
                base = base.changed(candidates[chosen])
                if log:
                    log(f"step {index} {step.name}: chose {describe(candidates[chosen])}")
            recipe = base
            step_recipes.append(recipe)
        tested = runner.run_all([(r, s, "test") for r in step_recipes for s in seeds],
                                "every step, test")
        for index, step in enumerate(steps):
            results = tested[index * len(seeds):(index + 1) * len(seeds)]
            if any(r.diverged for r in results):
                raise FloatingPointError(f"step {step.name} diverged on the training set")
            runs.extend(results)
            summary = summarise(index, step, step_recipes[index - 1] if index else None,
                                results, patterns)
            summaries.append(summary)
            if log:
                log(f"step {index} {step.name}: test error {100 * summary.mean:.2f} ± "
                    f"{100 * summary.std:.2f}% over {len(seeds)} seeds")
    return Study(summaries, selections, runs, seeds, scale, patterns, len(sets["test"][1]),
                 "fast")


