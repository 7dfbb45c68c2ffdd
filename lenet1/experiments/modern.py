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
candidate is trained on the other 80% and judged by its mean validation error (ties: mean
validation MSE), on the first :attr:`~lenet1.experiments.recipes.Scale.selection_seeds` seeds
(a late choice: on every seed, below). The test set decides nothing: it is read for the
figures of the chosen recipes.

A *late* step (:attr:`Step.late`: the longer schedule and the test-time shifts, which end the
study) changes no later training, so its choice need not come first: every recipe the
late choices may lead to is trained beside the test runs, on both sets and every seed, and the
late choices are then made on every seed's validation runs, not the selection seeds' alone.
A losing candidate's test runs are trained for nothing (here, the 80-pass ones if the 30
passes before them won), and no training waits for the choice.

What no choice waits for trains beside the first choice: the runs of the steps before it,
and the teacher the distilling candidates share (trained once as a task of its own; a stack
for which none was trained trains its own, with the same bits).

Every step's recipe is also judged on the validation split on every seed of the study, and
the same networks are read on the test digits
(:meth:`~lenet1.experiments.training.Runner.on_test`) for the book's comparison of the two
held-out sets; no choice sees those figures. On the selection seeds these are the runs a choice
trained (a choice step's chosen candidate; for a step followed by a pure choice, that choice's
reference runs); the seeds no choice trained (all of them for a step that nothing judged) are
trained in one stack per recipe, beside the test runs
(:meth:`~lenet1.experiments.training.Runner.seed_stacks`). In a pure choice whose previous
recipe was judged already, those runs are its figures (it is not trained again). The stored
networks are read side by side on the machine's cores (:func:`side_by_side`).
:func:`difficulty` reads the final step's networks digit by digit.

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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ..accounting import multiply_adds
from ..facts import KARPATHY_PATH
from ..nets import ModernLeNet1
from ..threads import in_parallel, torch_threads
from ..train.online import Metrics
from .executors import Executor, cluster_for
from .recipes import (
    FULL,
    PAPER_RECIPE,
    QUICK,
    Recipe,
    Scale,
    Stack,
    read_outputs,
    study_sets,
    trained_recipe,
)
from .stats import per_class_errors, sample_std
from .training import Runner, RunResult, load_network

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

    ``late``: the choice is made once every run is trained, on every seed's validation runs
    rather than the selection seeds'. Every candidate's runs (on both sets, every seed) are
    trained before it is made, so no training waits for it; that only pays where the
    candidates train little that is new (a longer schedule; a way of reading). Late steps end
    the study.
    """

    name: str
    label: str  # short, for a figure's axis
    title: str  # what changes, in words
    changes: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[Mapping[str, Any], ...] = ()
    note: str = ""
    late: bool = False

    def candidates(self) -> list[dict[str, Any]]:
        """What the step may add to its changes: each choice, and in a pure choice first
        ``{}``, the previous recipe as it is."""
        if not self.choices:
            return [{}]
        return ([{}] if not self.changes else []) + [dict(c) for c in self.choices]

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
         choices=({"translate": 2}, {"rotate": 10.0, "scale": 0.1}, {"elastic": 8.0},
                  {"label_smoothing": 0.1}, {"ema": 0.999}, {"distil": 0.5}),
         note="elastic distortions as Simard et al. (2003) draw them: uniform noise "
              "smoothed by a Gaussian of width 2 pixels, times a strength of 8; "
              "distillation as Hinton et al. (2015): half the loss towards the "
              "probabilities, at temperature 2, of a network of 74,330 weights trained on "
              "the same digits (lenet1.train.distill)"),
    Step("longer", "80 passes", "the 80 passes of Karpathy's final recipe instead of 30, "
         "kept if they beat 30 on validation", choices=({"passes": 80},), late=True),
    Step("tta", "TTA", "test-time augmentation, chosen on validation",
         choices=({"tta": 1}, {"tta": 2}), late=True),
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
        "elastic": lambda v: f"elastic distortions of strength {v:g}",
        "distil": lambda v: f"a larger network's soft targets (weight {v:g})",
        "passes": lambda v: f"{v} passes",
        "tta": lambda v: f"test-time shifts up to {v} px ({(2 * v + 1) ** 2} views)",
        "lr": lambda v: f"lr {v:g}",
        "dropout": lambda v: f"dropout {v:g}",
    }
    return ", ".join(words[k](v) if k in words else f"{k} {v}" for k, v in changes.items())


def short(changes: Mapping[str, Any]) -> str:
    """A change in a word or two, for a figure's axis."""
    words = {"translate": lambda v: f"shifts {v} px", "rotate": lambda v: "rotate+scale",
             "scale": lambda v: "rotate+scale", "label_smoothing": lambda v: "label smoothing",
             "ema": lambda v: "EMA", "elastic": lambda v: "elastic",
             "distil": lambda v: "distilled",
             "passes": lambda v: f"{v} passes", "tta": lambda v: f"TTA {v} px",
             "lr": lambda v: f"lr {v:g}"}
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
    # The step's recipe trained on the rest of the training digits on every seed, judged on
    # the validation split and, the same networks, on the test digits.
    validation_test_errors: tuple[float, ...] = ()
    validation_runs: tuple[RunResult, ...] = field(default=(), compare=False, repr=False)

    @property
    def validation_seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in self.validation_runs)

    @property
    def validation_errors(self) -> tuple[float, ...]:
        return tuple(r.test.error for r in self.validation_runs)

    @property
    def validation_gap(self) -> float:
        """Mean test error minus mean validation error of the same networks (fractions)."""
        return statistics.fmean(self.validation_test_errors) - \
            statistics.fmean(self.validation_errors)

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
              patterns: int, validation: Sequence[tuple[RunResult, Metrics]] = ()
              ) -> StepSummary:
    """A step's statistics from its runs (one per seed, all of the same recipe), and from its
    recipe's validation runs with the same networks' test figures."""
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
        karpathy=step.karpathy, validation_test_errors=tuple(m.error for _, m in validation),
        validation_runs=tuple(r for r, _ in validation))


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
    # The same networks on the test digits (for the figures only, never for the choice).
    test_errors: tuple[tuple[float, ...], ...] = ()

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


T = TypeVar("T")


def side_by_side(calls: Sequence[Callable[[], T]], threads: int) -> list[T]:
    """Each call's result, the calls run on up to ``threads`` Python threads with torch on one
    thread each: readings of stored networks, which release the GIL, at the end of a study
    when the workers are idle. Each gives the numbers it gives alone."""
    results: dict[int, T] = {}

    def job(index: int) -> None:
        results[index] = calls[index]()

    with torch_threads(1):
        in_parallel([partial(job, index) for index in range(len(calls))], threads)
    return [results[index] for index in range(len(calls))]


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
    first_late = next((i for i, step in enumerate(steps) if step.late), len(steps))
    if not all(step.late for step in steps[first_late:]):
        raise ValueError("late steps must end the study (nothing can build on a late choice)")
    scale = scale or (QUICK if quick else FULL)
    sets = study_sets(scale, data_root)
    workers = workers if workers is not None else os.cpu_count() or 1
    selection_seeds = seeds[:max(1, scale.selection_seeds)]
    summaries: list[StepSummary] = []
    selections: list[Selection] = []
    runs: list[RunResult] = []
    kept: set[tuple[Path | None, Recipe]] = set()
    patterns = len(sets["test"][0])

    def keep(run: RunResult) -> RunResult:
        if (run.path, run.recipe) not in kept:
            kept.add((run.path, run.recipe))
            runs.append(run)
        return run

    # The test runs record their test curves (drawn in the book) and the training set's
    # figures at the end only.
    with Runner(root, sets, scale, log, data_root, workers, executor=executor,
                train_curves=False) as runner:
        # (trained recipe, seed) -> the stack holding its validation run: a recipe judged by a
        # choice is read where the choice trained it, whichever step asks for it.
        judged_in: dict[tuple[Recipe, int], Stack] = {}
        read: dict[tuple[Recipe, int], tuple[RunResult, Metrics]] = {}

        def note(stacks: Sequence[Stack]) -> None:
            for stack in stacks:
                for _, trained, seed in stack.members:
                    judged_in.setdefault((trained, seed), stack)

        def judge(pairs: Sequence[tuple[Recipe, int]]) -> list[tuple[RunResult, Metrics]]:
            """Validation runs (trained already), each read as its recipe reads (test-time
            shifts included), with the same networks' test figures; read side by side."""
            def reading(recipe: Recipe, seed: int) -> tuple[RunResult, Metrics]:
                run = runner.read(judged_in[(trained_recipe(recipe, scale), seed)], recipe,
                                  seed)
                return run, runner.on_test(run)

            new = [pair for pair in dict.fromkeys(pairs) if pair not in read]
            read.update(zip(new, side_by_side([partial(reading, *pair) for pair in new],
                                              workers)))
            for pair in pairs:
                keep(read[pair][0])
            return [read[pair] for pair in pairs]

        def decide(index: int, step: Step, base: Recipe, on: Sequence[int]) -> Recipe:
            """The step's choice on the validation runs of seeds ``on`` (all trained)."""
            candidates = step.candidates()
            readings = judge([(base.changed(c), seed) for c in candidates for seed in on])
            groups = [readings[i:i + len(on)] for i in range(0, len(readings), len(on))]
            errors = [tuple(r.test.error for r, _ in group) for group in groups]
            mse = [tuple(r.test.mse for r, _ in group) for group in groups]
            chosen = choose(candidates, errors, mse)
            selections.append(Selection(step.name, tuple(candidates), tuple(errors), tuple(mse),
                                        tuple(on), len(sets["validation"][1]), chosen,
                                        tuple(tuple(m.error for _, m in group)
                                              for group in groups)))
            if log:
                log(f"step {index} {step.name}: chose {describe(candidates[chosen])}")
            return base.changed(candidates[chosen])

        def choice_stacks(step: Step, base: Recipe, judged: Callable[[Recipe], bool]
                          ) -> list[Stack]:
            """A choice's stacks on the selection seeds. In a pure choice whose previous
            recipe was ``judged`` already (the step before it chose), those runs are its
            figures, not new ones."""
            candidates = step.candidates()
            if not step.changes and judged(base):
                candidates = candidates[1:]
            return runner.candidate_stacks([base.changed(c) for c in candidates],
                                           selection_seeds, "validation")

        # What no choice waits for trains beside the first choice: the runs of the steps
        # before it (their recipes are fixed), and each teacher that later distilling
        # candidates would otherwise each train for themselves (for the stacks the earlier
        # steps' first candidates lead to; should a choice change the teacher's length, those
        # stacks train their own, with the same bits).
        first_choice = next((i for i, step in enumerate(steps[:first_late]) if step.choices),
                            None)
        early: list[Stack] = []
        for fixed in recipes(steps[:first_choice or 0]):
            trained = trained_recipe(fixed, scale)
            early += [runner.stack(trained, seed, "test") for seed in seeds]
            early += runner.seed_stacks(trained, seeds, "validation")
        expected, seen, later = PAPER_RECIPE, set[Recipe](), []
        for step in steps[:first_late]:
            expected = expected.changed(step.changes)
            if step.choices:
                stacks = choice_stacks(step, expected,
                                       lambda r: trained_recipe(r, scale) in seen)
                later += stacks
                seen.update(r for stack in stacks for r in stack.recipes)
                expected = expected.changed(step.choices[0])
        teachers = runner.teachers_for(later)
        # First every choice that later steps build on, step by step, on the selection seeds.
        step_recipes: list[Recipe] = []
        recipe = PAPER_RECIPE
        for index, step in enumerate(steps[:first_late]):
            base = recipe.changed(step.changes)
            if step.choices:
                stacks = choice_stacks(step, base, lambda r: all(
                    (trained_recipe(r, scale), seed) in judged_in for seed in selection_seeds))
                what = f"step {index} {step.name}, validation"
                if index == first_choice:
                    runner.train_missing(stacks + early, what + (
                        "; beside it, what no choice waits for" if early or teachers else ""),
                        teachers)
                else:
                    runner.train_missing(stacks, what)
                note(stacks)
                base = decide(index, step, base, selection_seeds)
            recipe = base
            step_recipes.append(recipe)
        # Then, side by side, every test run and every validation run not trained yet: every
        # step's recipe on every seed, and every recipe the late choices may lead to.
        possible, late = [recipe], []
        for step in steps[first_late:]:
            possible = list(dict.fromkeys(before.changed(step.changes).changed(c)
                                          for before in possible for c in step.candidates()))
            late += possible
        wanted = list(dict.fromkeys(trained_recipe(r, scale) for r in step_recipes + late))
        missing: dict[Recipe, list[int]] = {
            trained: [seed for seed in seeds if (trained, seed) not in judged_in]
            for trained in wanted}
        validation_stacks = [stack for trained, unjudged in missing.items() if unjudged
                             for stack in runner.seed_stacks(trained, unjudged, "validation")]
        runner.train_missing([runner.stack(trained, seed, "test") for trained in wanted
                              for seed in seeds] + validation_stacks,
                             "every step, test; every step, validation on the seeds not yet "
                             "judged; the late choices' candidates, both")
        note(validation_stacks)
        # The late choices, on every seed's validation runs.
        for index, step in enumerate(steps[first_late:], first_late):
            recipe = decide(index, step, recipe.changed(step.changes), seeds)
            step_recipes.append(recipe)
        # Every test run trained is kept (for the compute figures), the steps' read as they
        # read.
        chosen = {trained_recipe(r, scale) for r in step_recipes}
        for run in runner.run_all([(trained, seed, "test") for trained in wanted
                                   if trained not in chosen for seed in seeds]):
            keep(run)
        jobs = [(r, seed) for r in step_recipes for seed in seeds]
        tested = side_by_side([partial(runner.read, runner.stack(r, seed, "test"), r, seed)
                               for r, seed in jobs], workers)
        validated = judge(jobs)
        for index, step in enumerate(steps):
            results = tested[index * len(seeds):(index + 1) * len(seeds)]
            if any(r.diverged for r in results):
                raise FloatingPointError(f"step {step.name} diverged on the training set")
            for run in results:
                keep(run)
            summary = summarise(index, step, step_recipes[index - 1] if index else None,
                                results, patterns,
                                validated[index * len(seeds):(index + 1) * len(seeds)])
            summaries.append(summary)
            if log:
                log(f"step {index} {step.name}: test error {100 * summary.mean:.2f} ± "
                    f"{100 * summary.std:.2f}% over {len(seeds)} seeds")
    return Study(summaries, selections, runs, seeds, scale, patterns, len(sets["test"][1]),
                 "fast")


# --- where the final recipe fails ---------------------------------------------------------------


@dataclass(frozen=True)
class Difficulty:
    """The final recipe's readings, digit by digit (class numbers, seeds x digits): its test
    runs (trained on all the training digits) on the test digits, ``test_predictions``; its
    validation runs (trained on the rest of the training digits) on the validation split,
    ``validation_predictions``, and on the test digits, ``held_out_test_predictions``; each
    set's labels; ``ensemble_error``: the test error of the test runs' outputs averaged (the
    seeds voting as one)."""

    seeds: tuple[int, ...]
    validation_seeds: tuple[int, ...]
    test_labels: np.ndarray
    validation_labels: np.ndarray
    test_predictions: np.ndarray
    validation_predictions: np.ndarray
    held_out_test_predictions: np.ndarray
    ensemble_error: float

    @property
    def test_misses(self) -> np.ndarray:
        return self.test_predictions != self.test_labels

    @property
    def validation_misses(self) -> np.ndarray:
        return self.validation_predictions != self.validation_labels

    @property
    def held_out_test_misses(self) -> np.ndarray:
        return self.held_out_test_predictions != self.test_labels

    def test_by_class(self) -> np.ndarray:
        """(seeds, classes) test error rates of the test runs."""
        return per_class_errors(self.test_misses, self.test_labels)

    def validation_by_class(self) -> np.ndarray:
        """(validation seeds, classes) validation error rates of the validation runs."""
        return per_class_errors(self.validation_misses, self.validation_labels)

    def held_out_test_by_class(self) -> np.ndarray:
        """(validation seeds, classes): the validation runs' error rates on the test digits."""
        return per_class_errors(self.held_out_test_misses, self.test_labels)

    def missed_by_all(self) -> np.ndarray:
        """The test digits every test run misreads."""
        return np.flatnonzero(self.test_misses.all(axis=0))

    def shared_fraction(self) -> float:
        """Of the test runs' misses, the share on digits every one of them misses."""
        misses = self.test_misses
        total = int(misses.sum())
        return float(misses[:, misses.all(axis=0)].sum() / total) if total else math.nan


def difficulty(study: Study, data_root: str | None = None) -> Difficulty:
    """The final step's networks read digit by digit (:class:`Difficulty`). Loads the stored
    networks; trains nothing."""
    final = study.final()
    # Two steps may share a recipe (a pure choice that kept the one before): one run a seed.
    by_seed = {r.seed: r for r in study.runs if r.evaluation == "test"
               and r.recipe == final.recipe and r.seed in study.seeds}
    tested = [by_seed[seed] for seed in sorted(by_seed)]
    if [r.seed for r in tested] != sorted(study.seeds):
        raise ValueError("the study does not hold one test run of its final step per seed")
    sets = study_sets(study.scale, data_root)
    test, validation = sets["test"][1], sets["validation"][1]

    def read(networks: Sequence[nn.Module], images: Tensor) -> tuple[np.ndarray, Tensor]:
        outputs = [read_outputs(model, images, final.recipe.tta) for model in networks]
        return (np.stack([o.argmax(dim=1).numpy() for o in outputs]),
                torch.stack(outputs).mean(dim=0))

    tested_predictions, votes = read([load_network(r) for r in tested], test.images)
    held_out = [load_network(r) for r in final.validation_runs]
    return Difficulty(
        seeds=tuple(r.seed for r in tested), validation_seeds=final.validation_seeds,
        test_labels=test.labels.numpy(), validation_labels=validation.labels.numpy(),
        test_predictions=tested_predictions,
        validation_predictions=read(held_out, validation.images)[0],
        held_out_test_predictions=read(held_out, test.images)[0],
        ensemble_error=float((votes.argmax(dim=1) != test.labels).float().mean()))
