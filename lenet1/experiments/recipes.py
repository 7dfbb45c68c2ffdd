"""What one run of the modern study is, and how it is trained and cached.

A :class:`Recipe` is everything that decides a run's numbers besides the seed and the data;
:func:`initial_network` draws its first weights (the paper's, uniform +-2.4/F, exactly as
:func:`lenet1.experiments.runs.make_model` draws them, so every recipe of one seed starts from
the same weights). :class:`Runner` trains a recipe on a seed, or reloads it from the one cache
(:mod:`lenet1.experiments.cache`, kind ``modern``): each entry holds ``history.json``,
``result.json`` (the measured wall time, whether it diverged) and the final weights, from which
test-time augmentation is evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Digits, load, validation_split
from ..engine import FastEngine
from ..nets import ModernLeNet1
from ..threads import torch_threads
from ..train.minibatch import (
    ModernConfig,
    ModernHistory,
    place_coded,
    predict_shifted,
)
from ..train.online import SGD, History, Metrics, metrics_of, predict, train_online
from ..train.stacked import train_stacked
from . import cache

VALIDATION_FRACTION = 0.2
VALIDATION_SEED = 0
TRAINERS = ("online", "minibatch")
EVALUATIONS = ("test", "validation")

# --- what a run does ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a run's numbers, besides the seed and the data.

    ``trainer="online"`` is :func:`lenet1.train.train_online` (one update per pattern, the
    patterns in the file's order, plain SGD on the MSE, scaled tanh units: the paper's loop) and
    allows nothing else; ``"minibatch"`` is :func:`lenet1.train.minibatch.train_minibatch`,
    which at batch 1 with SGD on the MSE and no shuffling does the same arithmetic
    (``tests/test_modern.py``), and which the study's runs get to float32 rounding from
    :func:`lenet1.train.stacked.train_stacked` (trained a few together, ``tests/test_stacked.py``).
    ``tta`` is evaluation only: the outputs averaged over every translation of up to ``tta``
    pixels (:func:`lenet1.train.minibatch.predict_shifted`); it does not change the training.
    """

    trainer: str = "online"
    unit: str = "scaled_tanh"
    output: str = "squashed"
    loss: str = "mse"
    optimizer: str = "sgd"
    lr: float = 0.03
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    batch_size: int = 1
    passes: int = 23
    shuffle: bool = False
    translate: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    ema: float = 0.0
    tta: int = 0

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        if not isinstance(self.tta, int) or isinstance(self.tta, bool) or not 0 <= self.tta <= 4:
            raise ValueError(f"tta must be a whole number of pixels in 0..4, got {self.tta!r}")
        if self.trainer == "online":
            differ = [f.name for f in dataclasses.fields(Recipe)
                      if f.name not in ("lr", "passes", "tta", "trainer")
                      and getattr(self, f.name) != f.default]
            if differ:
                raise ValueError(f"the online trainer is the paper's loop and cannot change "
                                 f"{', '.join(differ)}: use trainer='minibatch'")
        else:
            self.modern_config(0)  # raises on a bad optimiser, schedule, loss, ...
            if (self.loss == "cross_entropy") != (self.output == "logits"):
                raise ValueError(f"the {self.loss} loss needs "
                                 f"{'logits' if self.loss == 'cross_entropy' else 'squashed'} "
                                 f"outputs, got {self.output!r}")
            ModernLeNet1(unit=self.unit, output=self.output,  # type: ignore[arg-type]
                         dropout=self.dropout, init="fan_in", seed=0)

    def changed(self, changes: Mapping[str, Any]) -> Recipe:
        """A copy with ``changes`` applied; unknown field names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def diff(self, other: Recipe) -> dict[str, Any]:
        """The fields whose values differ in ``other``, with ``other``'s values."""
        return {f.name: getattr(other, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}

    def training(self) -> dict[str, Any]:
        """The fields that decide the trained weights (all but the evaluation's ``tta``)."""
        values = asdict(self)
        values.pop("tta")
        return values

    def capped(self, max_passes: int | None) -> Recipe:
        if max_passes is None or self.passes <= max_passes:
            return self
        return dataclasses.replace(self, passes=max_passes)

    def modern_config(self, seed: int) -> ModernConfig:
        return ModernConfig(loss=self.loss, label_smoothing=self.label_smoothing,
                            optimizer=self.optimizer, lr=self.lr, momentum=self.momentum,
                            weight_decay=self.weight_decay, schedule=self.schedule,
                            batch_size=self.batch_size, passes=self.passes, shuffle=self.shuffle,
                            translate=self.translate, rotate=self.rotate, scale=self.scale,
                            ema=self.ema, seed=seed)

    def network(self) -> nn.Module:
        """The network this recipe trains, with placeholder weights (the real initial ones:
        :func:`initial_network`); the global random state is left alone."""
        if self.trainer == "online":
            from ..nets import build_model

            with torch.random.fork_rng(devices=[]):
                return build_model("lenet1", unit="scaled_tanh", init="fan_in", table="block")
        return ModernLeNet1(unit=self.unit, output=self.output,  # type: ignore[arg-type]
                            dropout=self.dropout, init="fan_in", seed=0)


PAPER_RECIPE = Recipe()


def initial_network(recipe: Recipe, seed: int) -> nn.Module:
    """The recipe's network holding the paper's initial weights for ``seed``: the weights
    :func:`lenet1.runs.make_model` draws for ``RunConfig(seed=seed)``, whatever the units.
    The global random state is left as it was."""
    from .runs import RunConfig, make_model

    with torch.random.fork_rng(devices=[]):
        paper = make_model(RunConfig(seed=seed))
    model = recipe.network()
    model.load_state_dict(paper.state_dict())
    return model



# --- how big a study is -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How much of everything: ``train_size`` first training digits (None: all 7,291),
    at most ``max_passes`` passes, candidates judged on the first ``selection_seeds`` seeds."""

    train_size: int | None = None
    max_passes: int | None = None
    selection_seeds: int = 2

    def key(self) -> dict[str, Any]:
        return {"train_size": self.train_size}


FULL = Scale()
QUICK = Scale(train_size=300, max_passes=2, selection_seeds=1)


# --- one run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One trained network's figures. ``test`` is the evaluation set's (the test set, or the
    validation split), with test-time augmentation if the recipe asks for it; ``seconds`` is
    the measured wall time of the training call, per-pass evaluation included; ``fresh``: it
    was trained by this call rather than reloaded."""

    recipe: Recipe
    seed: int
    evaluation: str
    history: History
    seconds: float
    train: Metrics
    test: Metrics
    path: Path | None = None
    fresh: bool = False
    diverged: bool = False


def run_spec(recipe: Recipe, seed: int, evaluation: str, scale: Scale) -> dict[str, Any]:
    """Everything besides the code that decides a run's weights: its cache specification."""
    spec: dict[str, Any] = {"recipe": recipe.training(), "seed": seed, "data": "usps",
                            "evaluation": evaluation, **scale.key()}
    if evaluation == "validation":
        spec["validation"] = [VALIDATION_FRACTION, VALIDATION_SEED]
    if recipe.trainer == "online":
        spec["engine"] = "fast"
    return spec


def _final_metrics(recipe: Recipe, model: nn.Module, digits: Digits) -> Metrics:
    if recipe.tta:
        outputs = predict_shifted(model, digits.images, recipe.tta)
    else:
        outputs = place_coded(model, predict(model, digits.images))
    return metrics_of(outputs, digits.labels)


def study_sets(scale: Scale, data_root: str | None = None) -> dict[str, tuple[Digits, Digits]]:
    """(training digits, judged digits) for the test runs and for the validation runs."""
    split = load("usps", data_root)
    train = split.train if scale.train_size is None else \
        split.train.subset(slice(0, scale.train_size))
    return {"test": (train, split.test),
            "validation": validation_split(train, VALIDATION_FRACTION, VALIDATION_SEED)}


class Runner:
    """Trains or reloads runs through the cache (:mod:`lenet1.experiments.cache`, kind
    ``modern``). Each entry holds ``history.json``, ``result.json`` (wall time, whether it
    diverged, threads, how many runs it was trained with) and, unless it diverged,
    ``weights.safetensors``.

    :meth:`run_all` trains the missing runs of a list in stacks (:func:`_stacks`: up to
    :data:`STACK_SIZE` mini-batch runs that share their shape, trained together by
    :func:`~lenet1.train.stacked.train_stacked`), the stacks side by side in ``workers``
    processes on one thread each, then reloads them all. :meth:`run` trains a missing run alone
    (a stack of one), which gives it the numbers it gets in a stack to float32 rounding; a run's
    stack is decided by the list it is asked for with, never by the machine.
    """

    KIND = "modern"

    def __init__(self, root: str | Path | None, sets: Mapping[str, tuple[Digits, Digits]],
                 scale: Scale, log: Callable[[str], None] | None = None,
                 data_root: str | None = None, workers: int = 1, code: str | None = None
                 ) -> None:
        self.root = cache.runs_root(root)
        # Taken once: every run of one study is keyed by the same code, even if the source
        # changes while it trains.
        self.code = code or cache.code_key()
        self.sets = sets
        self.scale = scale
        self.log = log or (lambda message: None)
        self.data_root = data_root
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def run_all(self, jobs: Sequence[tuple[Recipe, int, str]], what: str = ""
                ) -> list[RunResult]:
        """:meth:`run` for every ``(recipe, seed, evaluation)``, the missing ones trained in
        parallel first (the results in order). ``what`` names the jobs in the progress log."""
        wanted: dict[Path, tuple[Recipe, int, str, Path]] = {}
        for recipe, seed, evaluation in jobs:
            capped = recipe.capped(self.scale.max_passes)
            folder = self.folder(capped, seed, evaluation)
            # One training per folder: recipes that differ only in their evaluation (tta)
            # share their weights.
            if folder not in wanted and not cache.is_complete(folder, ("result.json",
                                                                       "history.json")):
                wanted[folder] = (capped, seed, evaluation, folder)
        if not wanted:
            return [self.run(*job) for job in jobs]
        # The longest first, so that the short ones fill the workers' last gaps.
        stacks = sorted(_stacks(list(wanted.values())),
                        key=lambda stack: sum(_expected_cost(job[0]) for job in stack),
                        reverse=True)
        workers = min(self.workers, len(stacks))
        progress = _Progress(len(wanted), len(stacks), workers, what, self.log)
        if self.workers > 1 and len(stacks) > 1:
            if self._pool is None:
                # spawn, not fork: a forked copy of a process that has started torch's thread
                # pools can hang.
                self._pool = ProcessPoolExecutor(min(self.workers, os.cpu_count() or 1),
                                                 mp_context=get_context("spawn"))
            futures = {self._pool.submit(_train_elsewhere, str(self.root), self.code,
                                         self.scale, self.data_root, stack): stack
                       for stack in stacks}
            for future in as_completed(futures):
                future.result()  # a worker's error is raised here
                for job in futures[future]:
                    progress.done(self._outcome(job[3], job[2]))
        else:
            for stack in stacks:
                self._train(stack)
                for job in stack:
                    progress.done(self._outcome(job[3], job[2]))
        results = [self.run(*job) for job in jobs]
        return [replace(r, fresh=True) if r.path in wanted else r for r in results]

    def folder(self, recipe: Recipe, seed: int, evaluation: str) -> Path:
        kind = "online" if recipe.trainer == "online" else f"b{recipe.batch_size}"
        return cache.folder_of(self.KIND, f"{evaluation[:3]}-{kind}-s{seed}",
                               run_spec(recipe, seed, evaluation, self.scale), self.root,
                               self.code)

    def run(self, recipe: Recipe, seed: int, evaluation: str) -> RunResult:
        if evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
        recipe = recipe.capped(self.scale.max_passes)
        train, judged = self.sets[evaluation]
        folder = self.folder(recipe, seed, evaluation)
        fresh = False
        if not cache.is_complete(folder, ("result.json", "history.json")):
            self._train([(recipe, seed, evaluation, folder)])
            self.log(f"  trained {self._outcome(folder, evaluation)}")
            fresh = True
        saved = json.loads((folder / "result.json").read_text())
        history_type = ModernHistory if recipe.trainer == "minibatch" else History
        history = history_type.from_json(json.loads((folder / "history.json").read_text()))
        if saved["diverged"]:
            nan = Metrics(math.nan, 1.0, len(judged), len(judged))
            return RunResult(recipe, seed, evaluation, history, saved["seconds"],
                             Metrics(math.nan, 1.0, len(train), len(train)), nan, folder, fresh,
                             diverged=True)
        if recipe.tta:
            from safetensors.torch import load_file

            model = recipe.network()
            model.load_state_dict(load_file(str(folder / "weights.safetensors")))
            train_metrics = _final_metrics(recipe, model, train)
            test_metrics = _final_metrics(recipe, model, judged)
        else:
            train_metrics, test_metrics = history.final.train, history.final.test
        return RunResult(recipe, seed, evaluation, history, saved["seconds"], train_metrics,
                         test_metrics, folder, fresh)

    def _train(self, stack: Sequence[Job]) -> None:
        """Train one stack (:func:`_stacks`): mini-batch runs together with
        :func:`~lenet1.train.stacked.train_stacked`, an online run alone on the compiled
        engine; then store each run."""
        from safetensors.torch import save_file

        first, _, evaluation, _ = stack[0]
        train, judged = self.sets[evaluation]
        models = [initial_network(recipe, seed) for recipe, seed, _, _ in stack]
        # A validation run is judged by its end alone; the test runs' curves are drawn.
        every = evaluation == "test"
        start = time.perf_counter()
        outcomes: list[tuple[History, bool]]
        if first.trainer == "online":
            (recipe, _, _, _), = stack
            try:
                outcomes = [(train_online(models[0], train, judged, recipe.passes,
                                          SGD(recipe.lr), FastEngine(), record_every=every),
                             False)]
            except FloatingPointError:
                outcomes = [(History(), True)]
        else:
            runs = train_stacked(models, train, judged,  # type: ignore[arg-type]
                                 [recipe.modern_config(seed) for recipe, seed, _, _ in stack],
                                 record_every=every)
            outcomes = [(ModernHistory() if r.diverged else r.history, r.diverged)
                        for r in runs]
        # The stack's wall time, shared evenly by its runs.
        seconds = (time.perf_counter() - start) / len(stack)
        for (recipe, seed, evaluation, folder), model, (history, diverged) in zip(
                stack, models, outcomes):

            def write(partial: Path, history: History = history, diverged: bool = diverged,
                      model: nn.Module = model) -> None:
                cache.write_json(partial / "result.json", {
                    "seconds": seconds, "diverged": diverged,
                    "threads": torch.get_num_threads(), "stacked_with": len(stack)})
                cache.write_json(partial / "history.json", history.to_json())
                if not diverged:
                    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                              str(partial / "weights.safetensors"))

            cache.store(folder, self.KIND, run_spec(recipe, seed, evaluation, self.scale), write,
                        self.code)

    @staticmethod
    def _outcome(folder: Path, evaluation: str) -> str:
        saved = json.loads((folder / "result.json").read_text())
        history = History.from_json(json.loads((folder / "history.json").read_text()))
        final = history.final.test if history.passes and not saved["diverged"] else None
        outcome = "diverged" if final is None else f"{100 * final.error:.2f}% ({final.misses})"
        return f"{folder.name}: {outcome} on {evaluation} in {saved['seconds']:.1f} s"


Job = tuple[Recipe, int, str, Path]  # recipe, seed, evaluation, cache folder

STACK_SIZE = 5  # networks trained together at most (10 buy little more, and balance worse)


def _stacks(jobs: Sequence[Job]) -> list[list[Job]]:
    """The jobs in stacks trained together: mini-batch runs that share what a stack must
    share (:func:`lenet1.train.stacked.stack_key`) and their evaluation set, in the order
    given, cut into the fewest stacks of at most :data:`STACK_SIZE`, as even as possible; an
    online run alone. The cut depends on the jobs only, never on the machine, so a run's
    numbers (which a stack changes only by float32 rounding) repeat wherever it is trained."""
    groups: dict[tuple[object, ...], list[Job]] = {}
    for job in jobs:
        recipe, seed, evaluation, folder = job
        if recipe.trainer == "online":
            key: tuple[object, ...] = ("online", folder)
        else:
            key = (evaluation, recipe.unit, recipe.output, recipe.dropout, recipe.loss,
                   recipe.optimizer, recipe.batch_size, recipe.passes)
        groups.setdefault(key, []).append(job)
    stacks = []
    for group in groups.values():
        count = math.ceil(len(group) / STACK_SIZE)
        size, extra = divmod(len(group), count)
        begin = 0
        for i in range(count):
            end = begin + size + (1 if i < extra else 0)
            stacks.append(group[begin:end])
            begin = end
    return stacks


def _expected_cost(recipe: Recipe) -> float:
    """A run's relative training time, for ordering only: passes, the compiled online pass
    about twice as fast a pass as a mini-batch one, augmentation a little dearer."""
    speed = 0.5 if recipe.trainer == "online" else 1.0
    extra = 1.2 if (recipe.translate or recipe.rotate or recipe.scale or recipe.dropout) else 1.0
    return recipe.passes * speed * extra


class _Progress:
    """Logs each trained run with how many remain and an estimate of the time left."""

    def __init__(self, total: int, stacks: int, workers: int, what: str,
                 log: Callable[[str], None]) -> None:
        self.total, self.log = total, log
        # The first runs finish together, a stack per worker: until then, the time so far is
        # that of this many runs.
        self.in_flight = max(1, workers) * total / stacks
        self.count, self.start = 0, time.perf_counter()
        log(f"training {total} network{'s' if total > 1 else ''}"
            f"{' (' + what + ')' if what else ''}, {stacks} stack{'s' if stacks > 1 else ''} "
            f"on {workers} worker{'s' if workers > 1 else ''}")

    def done(self, outcome: str) -> None:
        self.count += 1
        left = self.total - self.count
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(self.count, self.in_flight) * left
        self.log(f"  [{self.count}/{self.total}] trained {outcome}"
                 + (f"; about {eta / 60:.1f} min left" if left else ""))


def _train_elsewhere(root: str, code: str, scale: Scale, data_root: str | None,
                     stack: Sequence[Job]) -> None:
    """One stack in a worker process: the same training as in the caller, on one thread."""
    with torch_threads(1):
        Runner(root, study_sets(scale, data_root), scale, code=code)._train(stack)
