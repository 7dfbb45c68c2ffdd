"""What one run of the modern study is, and what is trained together.

A :class:`Recipe` is everything that decides a run's numbers besides the seed and the data;
:func:`initial_network` draws its first weights (the paper's, uniform +-2.4/F, exactly as
:func:`lenet1.experiments.runs.make_model` draws them, so every recipe of one seed starts from
the same weights).

A mini-batch run is trained in a :class:`Stack`: its recipe on a fixed block of seeds
(:func:`stack_of`; seeds 0-4, 5-9, ... for the test runs), trained together by
:func:`~lenet1.train.stacked.train_stacked`. A stack's members agree with a network trained
alone only to float32 rounding, which many thousands of steps can grow into another network,
so the unit that is trained together is the unit that is cached and named: a run's numbers are
those of its stack, and its stack is decided by the run itself (its recipe, seed and
evaluation), never by which other runs were asked for, how many workers there are, or in what
order. :func:`train_stack` trains one stack from its specification and the digits alone: what a
worker process or a machine of a cluster runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..data import Digits, Split, load, validation_split
from ..engine.fast import FastEngine
from ..nets import INITS, ModernLeNet1
from ..train.distill import TEACHER_TRAINING, soft_targets, train_teacher
from ..train.minibatch import ModernConfig, ModernHistory, place_coded, predict_shifted
from ..train.online import SGD, History, Metrics, metrics_of, predict, train_online
from ..train.stacked import stack_key, train_stacked

VALIDATION_FRACTION = 0.2
VALIDATION_SEED = 0
TRAINERS = ("online", "minibatch")
EVALUATIONS = ("test", "validation")

# --- what a run does ----------------------------------------------------------------------------


#: The paper's loop in the mini-batch trainer's terms, plain SGD at 0.03 on the MSE, one digit
#: at a time in the file's order, 23 passes. A recipe's config holds seed 0, and every run of
#: it gets its own seed (:meth:`Recipe.modern_config`).
PAPER_TRAINING = ModernConfig(loss="mse", optimizer="sgd", lr=0.03, momentum=0.0,
                              schedule="constant", batch_size=1, passes=23, shuffle=False)
#: What a recipe decides besides its training config, the trainer, the network and the reading.
NETWORK_FIELDS: tuple[str, ...] = ("trainer", "unit", "output", "dropout", "init",
                                   "h2_background", "tta")
#: The training config's fields, read through the recipe (``recipe.lr`` is
#: ``recipe.config.lr``), every field of ModernConfig but the seed.
TRAINING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModernConfig)
                                         if f.name != "seed")
FIELDS = NETWORK_FIELDS + TRAINING_FIELDS


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a run's numbers, besides the seed and the data: the network
    and how it is trained (``config``, a :class:`~lenet1.train.minibatch.ModernConfig`, whose
    fields read through the recipe: ``recipe.lr``, ``recipe.passes``, ...).

    ``trainer="online"`` is :func:`lenet1.train.online.train_online` (one update per pattern, the
    patterns in the file's order, plain SGD on the MSE, scaled tanh units: the paper's loop) and
    allows nothing else; ``"minibatch"`` is :func:`lenet1.train.minibatch.train_minibatch`,
    which at batch 1 with SGD on the MSE and no shuffling does the same arithmetic
    (``tests/test_modern.py``), and which the study's runs get to float32 rounding from
    :func:`lenet1.train.stacked.train_stacked` (trained a few together, ``tests/test_stacked.py``).
    ``tta`` is evaluation only: the outputs averaged over every translation of up to ``tta``
    pixels (:func:`lenet1.train.minibatch.predict_shifted`); it does not change the training.
    ``init`` draws the first weights (the paper's +-2.4/F, or +-2.4/sqrt F as Karpathy's code
    has it); ``h2_background`` pads H1's maps for H2 (None: the unit's "off" level, see
    :class:`~lenet1.nets.ModernLeNet1`). Make one from ``PAPER_RECIPE`` with
    :meth:`changed`, which takes the network's fields and the config's alike.
    """

    trainer: str = "online"
    unit: str = "scaled_tanh"
    output: str = "squashed"
    dropout: float = 0.0
    init: str = "fan_in"
    h2_background: float | None = None
    tta: int = 0
    config: ModernConfig = PAPER_TRAINING

    def __getattr__(self, name: str) -> Any:
        # Only for names that are not attributes: the config's fields, read through.
        if name in TRAINING_FIELDS:
            return getattr(self.config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not isinstance(self.tta, int) or isinstance(self.tta, bool) or not 0 <= self.tta <= 4:
            raise ValueError(f"tta must be a whole number of pixels in 0..4, got {self.tta!r}")
        if not isinstance(self.config, ModernConfig) or self.config.seed != 0:
            raise ValueError("a recipe's config is a ModernConfig with seed 0 (each run gets "
                             "its own seed)")
        if self.trainer == "online":
            paper = {f.name: f.default for f in dataclasses.fields(Recipe)
                     if f.name != "config"} | {name: getattr(PAPER_TRAINING, name)
                                                for name in TRAINING_FIELDS}
            differ = [name for name in FIELDS if name not in ("lr", "passes", "tta", "trainer")
                      and getattr(self, name) != paper[name]]
            if differ:
                raise ValueError(f"the online trainer is the paper's loop and cannot change "
                                 f"{', '.join(differ)}: use trainer='minibatch'")
        else:
            if (self.loss == "cross_entropy") != (self.output == "logits"):
                raise ValueError(f"the {self.loss} loss needs "
                                 f"{'logits' if self.loss == 'cross_entropy' else 'squashed'} "
                                 f"outputs, got {self.output!r}")
            self.network()  # raises on a bad unit, output, dropout or background

    def changed(self, changes: Mapping[str, Any]) -> Recipe:
        """A copy with ``changes`` applied (the network's fields and the config's alike);
        unknown field names are an error."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
        training = {name: value for name, value in changes.items() if name in TRAINING_FIELDS}
        network = {name: value for name, value in changes.items() if name in NETWORK_FIELDS}
        return dataclasses.replace(self, **network,
                                   config=dataclasses.replace(self.config, **training))

    def diff(self, other: Recipe) -> dict[str, Any]:
        """The fields whose values differ in ``other``, with ``other``'s values."""
        return {name: getattr(other, name) for name in FIELDS
                if getattr(self, name) != getattr(other, name)}

    def training(self) -> dict[str, Any]:
        """The fields that decide the trained weights (all but the evaluation's ``tta``)."""
        return {name: getattr(self, name) for name in FIELDS if name != "tta"}

    def shape(self) -> tuple[object, ...]:
        """What the recipes of one stack share: the computation's shape, as
        :func:`lenet1.train.stacked.stack_key` (the one definition) gives it for the recipe's
        network and config."""
        if self.trainer == "online":
            return ("online",)
        return (self.trainer, *stack_key(self._modern_network(), self.modern_config(0)))

    def capped(self, max_passes: int | None) -> Recipe:
        if max_passes is None or self.passes <= max_passes:
            return self
        return self.changed({"passes": max_passes})

    def modern_config(self, seed: int) -> ModernConfig:
        """The training config of this recipe's run on ``seed``."""
        return dataclasses.replace(self.config, seed=seed)

    def network(self) -> nn.Module:
        """The network this recipe trains, with placeholder weights (the real initial ones:
        :func:`initial_network`); the global random state is left alone."""
        if self.trainer == "online":
            from ..nets import build_model

            with torch.random.fork_rng(devices=[]):
                return build_model("lenet1", unit="scaled_tanh", init="fan_in", table="block")
        return self._modern_network()

    def _modern_network(self) -> ModernLeNet1:
        return ModernLeNet1(unit=self.unit, output=self.output,  # type: ignore[arg-type]
                            dropout=self.dropout, init=self.init,  # type: ignore[arg-type]
                            h2_background=self.h2_background, seed=0)


PAPER_RECIPE = Recipe()


def initial_network(recipe: Recipe, seed: int) -> nn.Module:
    """The recipe's network holding the paper's initial weights for ``seed``: the weights
    :func:`lenet1.experiments.runs.make_model` draws for ``RunConfig(seed=seed,
    init=recipe.init)``, whatever the units. The global random state is left as it was."""
    from .runs import RunConfig, make_model

    with torch.random.fork_rng(devices=[]):
        paper = make_model(RunConfig(seed=seed, init=recipe.init))
    model = recipe.network()
    model.load_state_dict(paper.state_dict())
    return model



# --- how big a study is -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How much of everything: ``train_size`` first training digits (None: all 7,291),
    at most ``max_passes`` passes, the candidates of a choice that later training depends on
    judged on the first ``selection_seeds`` seeds (a late choice's on every seed: see
    :mod:`lenet1.experiments.modern`; a validation stack holds ``selection_seeds`` seeds),
    test runs stacked in blocks of ``test_block`` seeds."""

    train_size: int | None = None
    max_passes: int | None = None
    selection_seeds: int = 2
    test_block: int = 5

    def __post_init__(self) -> None:
        if self.selection_seeds < 1 or self.test_block < 1:
            raise ValueError(f"selection_seeds and test_block must be >= 1, got "
                             f"{self.selection_seeds} and {self.test_block}")

    def key(self) -> dict[str, Any]:
        return {"train_size": self.train_size}

    def block(self, evaluation: str) -> int:
        """How many consecutive seeds are trained together for ``evaluation``."""
        return self.test_block if evaluation == "test" else self.selection_seeds


#: The book's study.
FULL = Scale()
#: A smoke test (300 training digits, 2 passes, one selection seed, stacks of two seeds).
QUICK = Scale(train_size=300, max_passes=2, selection_seeds=1, test_block=2)


# --- what is trained together -------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Networks trained together: each of ``recipes`` (passes already capped by the scale,
    ``tta`` 0) on each of ``seeds``, judged on ``evaluation`` (``"test"``, or
    ``"validation"``: the held-out part of the training digits). The recipes share their
    shape (:meth:`Recipe.shape`). An online recipe is always a stack of one seed: the compiled
    engine gives a network the same numbers alone or beside others. A test stack records both
    sets after every pass; with ``train_curves=False`` it records the training set's figures
    after the last pass only (the test curve is what the book draws, and the training set
    costs four times as much to read)."""

    recipes: tuple[Recipe, ...]
    seeds: tuple[int, ...]
    evaluation: str
    train_curves: bool = True

    def __post_init__(self) -> None:
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {self.evaluation!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a stack needs distinct seeds, got {self.seeds}")
        if not self.recipes or len(set(self.recipes)) != len(self.recipes):
            raise ValueError("a stack needs distinct recipes")
        if len({recipe.shape() for recipe in self.recipes}) > 1:
            raise ValueError("the recipes of a stack must share their shape (Recipe.shape)")
        if self.recipe.trainer == "online" and len(self.members) != 1:
            raise ValueError("an online recipe is trained one seed at a time")

    @property
    def recipe(self) -> Recipe:
        """The first recipe (all share the shape)."""
        return self.recipes[0]

    @property
    def members(self) -> list[tuple[int, Recipe, int]]:
        """(recipe index, recipe, seed) of every network, recipe by recipe."""
        return [(i, recipe, seed) for i, recipe in enumerate(self.recipes)
                for seed in self.seeds]

    def member(self, index: int, seed: int) -> str:
        """A network's name in the stack: its seed, and its recipe's place if there are
        several."""
        return f"s{seed}" if len(self.recipes) == 1 else f"c{index}-s{seed}"

    def spec(self, scale: Scale) -> dict[str, Any]:
        """Everything besides the code that decides the stack's weights: its cache key."""
        spec: dict[str, Any] = {"recipes": [r.training() for r in self.recipes],
                                "seeds": list(self.seeds), "data": "usps",
                                "evaluation": self.evaluation, **scale.key()}
        if self.evaluation == "validation":
            spec["validation"] = [VALIDATION_FRACTION, VALIDATION_SEED]
        if self.recipe.trainer == "online":
            spec["engine"] = "fast"
        if not self.train_curves:
            spec["train_curves"] = False
        return spec

    def label(self) -> str:
        kind = "online" if self.recipe.trainer == "online" else f"b{self.recipe.batch_size}"
        seeds = f"s{self.seeds[0]}" + (f"-{self.seeds[-1]}" if len(self.seeds) > 1 else "")
        several = f"-{len(self.recipes)}r" if len(self.recipes) > 1 else ""
        return f"{self.evaluation[:3]}-{kind}{several}-{seeds}"


def trained_recipe(recipe: Recipe, scale: Scale) -> Recipe:
    """What is trained for ``recipe``: passes capped by ``scale``, without the
    evaluation-only ``tta``."""
    return dataclasses.replace(recipe.capped(scale.max_passes), tta=0)


def stack_of(recipe: Recipe, seed: int, evaluation: str, scale: Scale,
             train_curves: bool = True) -> Stack:
    """The stack that trains ``recipe`` on ``seed`` when it is asked for alone: the trained
    recipe (:func:`trained_recipe`) on the block of ``scale.block(evaluation)`` seeds that
    holds ``seed`` (blocks start at 0: 0-4, 5-9, ...); ``train_curves``: see :class:`Stack`
    (a test stack only)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a seed is a whole number >= 0, got {seed!r}")
    trained = trained_recipe(recipe, scale)
    size = 1 if trained.trainer == "online" else scale.block(evaluation)
    first = seed - seed % size
    curves = train_curves or evaluation != "test"
    return Stack((trained,), tuple(range(first, first + size)), evaluation, curves)


def candidate_stacks(recipes: Sequence[Recipe], seeds: Sequence[int], evaluation: str,
                     scale: Scale) -> list[Stack]:
    """The stacks that train a step's candidates together on ``seeds``: on each seed, the
    distinct trained recipes (:func:`trained_recipe`) of one shape in one stack, in the order
    given (one stack per seed, so that the seeds train side by side); an online recipe alone.
    Decided by the candidates and seeds alone."""
    distinct = list(dict.fromkeys(trained_recipe(recipe, scale) for recipe in recipes))
    shapes: dict[tuple[object, ...], list[Recipe]] = {}
    for recipe in distinct:
        shapes.setdefault(recipe.shape(), []).append(recipe)
    stacks = []
    for group in shapes.values():
        if group[0].trainer == "online":
            stacks += [Stack((recipe,), (seed,), evaluation) for recipe in group
                       for seed in seeds]
        else:
            stacks += [Stack(tuple(group), (seed,), evaluation) for seed in seeds]
    return stacks


def study_sets(scale: Scale, data_root: str | None = None, split: Split | None = None
               ) -> dict[str, tuple[Digits, Digits]]:
    """(training digits, judged digits) for the test runs and for the validation runs, from
    ``split`` (the paper's digits, e.g. as sent to a worker), else loaded from ``data_root``."""
    split = split if split is not None else load("usps", data_root)
    train = split.train if scale.train_size is None else \
        split.train.subset(slice(0, scale.train_size))
    return {"test": (train, split.test),
            "validation": validation_split(train, VALIDATION_FRACTION, VALIDATION_SEED)}


@dataclass(frozen=True)
class Teaching:
    """What a distilling stack learns from (:func:`teach`): the teacher's probabilities for
    the training digits of ``evaluation`` (``soft``, one row a digit), after ``passes`` of its
    training; its figures on the judged digits; and the seconds its training took. Decided by
    the digits and ``passes`` alone, so one teaching serves every stack that asks for it."""

    evaluation: str
    passes: int
    soft: Tensor
    figures: Metrics
    seconds: float


def teacher_passes(recipe: Recipe) -> int:
    """How long the teacher of a distilling stack of ``recipe`` trains: never longer than the
    stack (quick mode's two passes)."""
    return min(TEACHER_TRAINING.passes, recipe.passes)


def teach(sets: Mapping[str, tuple[Digits, Digits]], evaluation: str, passes: int) -> Teaching:
    """Train the teacher on ``evaluation``'s training digits for ``passes`` and read it on
    them: the :class:`Teaching` every distilling stack of that set and length learns from."""
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
    start = time.perf_counter()
    train, judged = sets[evaluation]
    network, figures = train_teacher(train, judged, passes)
    soft = soft_targets(network, train.images)
    return Teaching(evaluation, passes, soft, figures, time.perf_counter() - start)


@dataclass
class Trained:
    """One network of a trained stack: its recipe's place in the stack, its seed, history,
    whether its training loss stopped being finite, its final weights (None if it
    diverged), and the figures of the teacher it learnt from, if it did."""

    index: int
    seed: int
    history: History
    diverged: bool
    weights: dict[str, Any] | None
    teacher: Metrics | None = None  # a distilling stack's teacher, on the judged digits


def train_stack(stack: Stack, sets: Mapping[str, tuple[Digits, Digits]],
                until: int | None = None, teaching: Teaching | None = None) -> list[Trained]:
    """Train every network of ``stack`` from the paper's initial weights of its seed: a
    mini-batch stack together with :func:`~lenet1.train.stacked.train_stacked`, an online run
    on the compiled engine. Depends on nothing but the stack and the digits (torch on one
    thread), so it gives the same bits in this process, a worker or a cluster. ``until``: only
    that many passes of a mini-batch stack (see :func:`~lenet1.train.stacked.train_stacked`),
    to check the beginning of a recorded run. ``teaching``: a distilling stack's teacher
    (:func:`teach`), trained elsewhere already (the same bits as training it here, which is
    done when it is None)."""
    if until is not None and stack.recipe.trainer == "online":
        raise ValueError("until applies to mini-batch stacks only")
    distils = any(recipe.distil for recipe in stack.recipes)
    if teaching is not None and (not distils or (teaching.evaluation, teaching.passes)
                                 != (stack.evaluation, teacher_passes(stack.recipe))):
        raise ValueError(f"the stack {stack.label()} does not learn from a teacher of "
                         f"{teaching.passes} passes on the {teaching.evaluation} set")
    members = stack.members
    train, judged = sets[stack.evaluation]
    models = [initial_network(recipe, seed) for _, recipe, seed in members]
    # A validation run is judged by its end alone; the test runs' curves are drawn.
    every = stack.evaluation == "test"
    outcomes: list[tuple[History, bool]]
    teacher: Metrics | None = None
    if stack.recipe.trainer == "online":
        recipe = stack.recipe
        try:
            outcomes = [(train_online(models[0], train, judged, recipe.passes, SGD(recipe.lr),
                                      FastEngine(), record_every=every,
                                      train_every=stack.train_curves), False)]
        except FloatingPointError:
            outcomes = [(History(), True)]
    else:
        if distils and teaching is None:
            teaching = teach(sets, stack.evaluation, teacher_passes(stack.recipe))
        if teaching is not None:
            teacher = teaching.figures
        runs = train_stacked(models, train, judged,  # type: ignore[arg-type]
                             [recipe.modern_config(seed) for _, recipe, seed in members],
                             record_every=every, until=until, train_every=stack.train_curves,
                             soft_targets=None if teaching is None else teaching.soft)
        outcomes = [(ModernHistory() if r.diverged else r.history, r.diverged) for r in runs]
    return [Trained(index, seed, history, diverged,
                    None if diverged else {k: v.detach().contiguous()
                                           for k, v in model.state_dict().items()},
                    teacher if recipe.distil else None)
            for (index, recipe, seed), model, (history, diverged)
            in zip(members, models, outcomes)]


def read_outputs(model: nn.Module, images: Tensor, tta: int = 0) -> Tensor:
    """A trained network's outputs as the modern study reads them: a squashed network's as
    they are, a logits network's as ``2 softmax - 1``, averaged over every shift of up to
    ``tta`` pixels when ``tta`` > 0 (:func:`lenet1.train.minibatch.predict_shifted`)."""
    if tta:
        return predict_shifted(model, images, tta)
    return place_coded(model, predict(model, images))


def final_metrics(recipe: Recipe, model: nn.Module, digits: Digits) -> Metrics:
    """A trained network's figures on ``digits``, with the recipe's test-time augmentation."""
    return metrics_of(read_outputs(model, digits.images, recipe.tta), digits.labels)
