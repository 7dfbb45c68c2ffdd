"""Trained networks through the one cache: reloaded when stored, else trained now, here or on
the workers of an :mod:`executor <lenet1.experiments.executors>`, and stored.

- online runs (:class:`~lenet1.experiments.runs.RunConfig`, kind ``online``): one entry per
  run (:func:`run_folder`); :func:`cached_runs` trains the missing ones as groups of replicas,
  which give every run exactly the numbers it gets alone, so which runs share a group never
  matters;
- curvature traces of SDLM runs (kind ``curvature``): :func:`curvature_trace`;
- the modern study's runs (kind ``modern``): :class:`Runner`, one entry per
  :class:`~lenet1.experiments.recipes.Stack` (the networks trained together), with one
  sub-folder per seed (``s<seed>/``: ``history.json``, ``result.json``,
  ``weights.safetensors``).

Nothing here decides a number (it is not part of the code key): the training functions it
calls depend on their specification and the digits alone. Storing is the client's job, done
atomically, so a worker that dies or a study stopped with Ctrl-C leaves only whole entries,
and the next call trains what is missing.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..data import Digits, load
from ..train.minibatch import ModernHistory
from ..train.online import History, Metrics, PassRecord
from ..train.replicas import train_replicas
from . import cache
from .executors import Context, Executor, InProcess, Processes
from .recipes import (
    EVALUATIONS,
    Recipe,
    Scale,
    Stack,
    Teaching,
    Trained,
    candidate_stacks,
    final_metrics,
    stack_of,
    teach,
    teacher_passes,
    train_stack,
    trained_recipe,
)
from .runs import (
    RUN_FILES,
    CurvatureTrace,
    Run,
    RunConfig,
    environment,
    fit_and_evaluation_sets,
    load_run,
    make_model,
    make_rule,
    save_run,
    shuffle_seed,
    trace_curvature,
    train_run,
)

ONLINE = "online"  # the cache's kinds
CURVATURE = "curvature"
MODERN = "modern"
Log = Callable[[str], None]


class StaleTableError(RuntimeError):
    """A table of results that ships with the book no longer matches what the code trains."""

T = TypeVar("T")


# --- progress -----------------------------------------------------------------------------------


class Progress:
    """Logs each trained network with how many remain and an estimate of the time left."""

    def __init__(self, total: int, tasks: int, workers: int, what: str, where: str,
                 log: Log) -> None:
        self.total, self.log = total, log
        # The first tasks finish together, one per worker: until then, the time so far is
        # that of this many networks.
        self.in_flight = max(1, min(workers, tasks)) * total / max(1, tasks)
        self.count, self.start = 0, time.perf_counter()
        log(f"training {total} network{'s' if total > 1 else ''}"
            f"{' (' + what + ')' if what else ''}, {tasks} task{'s' if tasks > 1 else ''} "
            f"on {where}")

    def done(self, outcome: str) -> None:
        self.count += 1
        left = self.total - self.count
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(self.count, self.in_flight) * left
        self.log(f"  [{self.count}/{self.total}] trained {outcome}"
                 + (f"; about {eta / 60:.1f} min left" if left else ""))


def _outcome(history: History, diverged: bool, where: str) -> str:
    if diverged or not history.passes or not math.isfinite(history.final.train.mse):
        return "diverged"
    return _figures(history.final.test, where)


def _figures(metrics: Metrics, where: str) -> str:
    return f"{100 * metrics.error:.2f}% ({metrics.misses}) on {where}"


# --- online runs --------------------------------------------------------------------------------


def run_folder(config: RunConfig, root: str | Path | None = None,
               code: str | None = None) -> Path:
    """Where the cached run of ``config`` lives (:func:`lenet1.experiments.cache.folder_of`)."""
    label = f"{config.model}-{config.optimizer}-s{config.seed}"
    return cache.folder_of(ONLINE, label, asdict(config), root, code)


def _store_run(folder: Path, config: RunConfig, model: nn.Module | None, history: History,
               state: Mapping[str, Any] | None = None,
               machine: Mapping[str, str] | None = None, code: str | None = None) -> None:
    cache.store(folder, ONLINE, asdict(config),
                lambda partial: save_run(partial, config, model, history, state, machine), code)


def cached_run(config: RunConfig, root: str | Path | None = None,
               data_root: str | None = None,
               on_pass: Callable[[PassRecord], None] | None = None) -> Run:
    """The run for ``config``, trained now in this process or reloaded from the cache."""
    folder = run_folder(config, root)
    if cache.is_complete(folder, RUN_FILES):
        return load_run(folder)
    model, history = train_run(config, data_root=data_root, on_pass=on_pass)
    _store_run(folder, config, model, history)
    return Run(folder, config, history, model)


@dataclass(frozen=True)
class OnlineGroup:
    """Online runs trained side by side as replicas: same data, split, model and passes."""

    configs: tuple[RunConfig, ...]
    stop_on_divergence: bool = True


def train_online_group(context: Context, group: OnlineGroup, threads: int
                       ) -> list[tuple[list[dict[str, object]], dict[str, Any],
                                       dict[str, str]]]:
    """Train a group of replicas (a task): each run's history, weights and machine."""
    first = group.configs[0]
    train, evaluation = fit_and_evaluation_sets(first, split=context[first.data])
    models = [make_model(config) for config in group.configs]
    histories = train_replicas(models, train, evaluation, first.passes,
                               [make_rule(config) for config in group.configs],
                               threads=threads, stop_on_divergence=group.stop_on_divergence,
                               record_every=first.record == "every",
                               shuffle_seed=shuffle_seed(first))
    machine = environment()
    return [(history.to_json(), {k: v.detach().contiguous() for k, v in model.state_dict().items()},
             machine) for model, history in zip(models, histories)]


def _replica_group(config: RunConfig) -> tuple[object, ...]:
    # Replicas share the patterns (data, split, order, the input's background), the number of
    # passes and what they record; their units, tables and step rules may differ.
    return (config.data, config.model, config.passes, config.holdout, config.holdout_seed,
            config.record, config.input_background, shuffle_seed(config))


def split_for(items: Sequence[T], most: int, workers: int = 1) -> list[tuple[T, ...]]:
    """``items`` in order, in consecutive parts of at most ``most``. For one worker, full parts
    of ``most`` and the rest (a full lane group is the cheapest per network); for several,
    nearly equal parts, as many as a multiple of ``workers`` (or one item each), so that the
    workers finish together."""
    if most < 1 or workers < 1:
        raise ValueError(f"most and workers must be >= 1, got {most} and {workers}")
    if workers == 1:
        return [tuple(items[i:i + most]) for i in range(0, len(items), most)]
    if not items:
        return []
    fewest = -(-len(items) // most)  # ceil
    count = min(len(items), -(-fewest // workers) * workers)
    size, extra = divmod(len(items), count)
    bounds = [index * size + min(index, extra) for index in range(count + 1)]
    return [tuple(items[a:b]) for a, b in zip(bounds, bounds[1:])]


def cached_runs(configs: Sequence[RunConfig], root: str | Path | None = None,
                data_root: str | None = None, progress: Log | None = None,
                batch: int | None = None, stop_on_divergence: bool = True,
                executor: Executor | None = None) -> list[Run]:
    """One run per configuration, in order: reloaded if cached, else trained now and cached.

    Missing fast-engine runs that share data and shape are trained together as replicas
    (:func:`lenet1.train.replicas.train_replicas`, which gives each the numbers it would get
    alone), ``batch`` at a time (default: all at once), each group a task of ``executor``
    (default: this process, on every core). With ``stop_on_divergence=False`` a replica whose
    loss blows up does not stop the others: its run is saved with the history up to the pass
    where it diverged, as a sweep needs.
    """
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    code = cache.code_key()
    folders = [run_folder(config, root, code) for config in configs]
    missing: dict[tuple[object, ...], list[RunConfig]] = {}
    for config, folder in zip(configs, folders):
        if cache.is_complete(folder, RUN_FILES):
            continue
        if config.engine != "fast":
            cached_run(config, root, data_root)  # the reference engine, alone
            continue
        group = missing.setdefault(_replica_group(config), [])
        if config not in group:
            group.append(config)
    # Workers of one thread each (Dask, processes) get a group in at least one share per
    # worker, so that none waits while another trains a whole lane group and its curvature.
    spread = executor.workers if executor is not None and executor.threads == 1 else 1
    tasks = [OnlineGroup(part, stop_on_divergence) for group in missing.values()
             for part in split_for(group, batch or len(group), spread)]
    if tasks:
        own = executor is None
        runner = executor or InProcess(threads=os.cpu_count() or 1)
        context = {source: load(source, data_root)
                   for source in sorted({task.configs[0].data for task in tasks})}
        log = progress or (lambda line: None)
        count = sum(len(task.configs) for task in tasks)
        tracker = Progress(count, len(tasks), runner.workers, "", runner.description, log)
        try:
            for index, results in runner.run(train_online_group, tasks, context, code):
                for config, (rows, state, machine) in zip(tasks[index].configs, results):
                    history = History.from_json(rows)
                    _store_run(run_folder(config, root, code), config, None, history, state,
                               machine, code)
                    where = "held-out digits" if config.holdout else "test"
                    tracker.done(f"{config.model} {config.optimizer} lr {config.lr:g} "
                                 f"s{config.seed}: {_outcome(history, False, where)}")
        finally:
            if own:
                runner.close()
    return [load_run(folder) for folder in folders]


def curvature_trace(config: RunConfig, root: str | Path | None = None,
                    data_root: str | None = None) -> CurvatureTrace:
    """:func:`lenet1.experiments.runs.trace_curvature`, cached (kind ``curvature``)."""
    folder = cache.folder_of(CURVATURE, f"{config.model}-s{config.seed}", asdict(config), root)
    if cache.is_complete(folder, ("trace.json", "history.json")):
        data = json.loads((folder / "trace.json").read_text())
        history = History.from_json(json.loads((folder / "history.json").read_text()))
        return CurvatureTrace(config, data["passes"], data["median_h"], data["median_step"],
                              data["eta"], history)
    trace, _ = trace_curvature(config, *fit_and_evaluation_sets(config, data_root))

    def write(partial: Path) -> None:
        cache.write_json(partial / "trace.json", {"passes": trace.passes,
                                                  "median_h": trace.median_h,
                                                  "median_step": trace.median_step,
                                                  "eta": trace.eta}, indent=None)
        cache.write_json(partial / "history.json", trace.history.to_json())

    cache.store(folder, CURVATURE, asdict(config), write)
    return trace


# --- the modern study's runs --------------------------------------------------------------------


@dataclass
class RunResult:
    """One trained network's figures. ``test`` is the evaluation set's (the test set, or the
    validation split), with test-time augmentation if the recipe asks for it; ``train`` the
    training digits' (read the same way for a test run, without test-time augmentation for a
    validation run, whose training figures nothing reports); ``seconds`` is
    the wall time of its stack's training divided by the stack's networks, per-pass
    evaluation included; ``fresh``: its runner trained it rather than reloaded it."""

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


MEMBER_FILES = ("history.json", "result.json")


def network_of(recipe: Recipe, folder: Path) -> nn.Module:
    """The trained network a stack stored in ``folder`` (a member's sub-folder), built as
    ``recipe`` builds it, in evaluation mode."""
    model = recipe.network()
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    return model.eval()


def load_network(result: RunResult) -> nn.Module:
    """The trained network of a stored modern run."""
    if result.path is None or result.diverged:
        raise ValueError("only a stored run that did not diverge has a network")
    return network_of(result.recipe, result.path)


def teacher_of(result: RunResult) -> Metrics | None:
    """The figures, on the digits its run is judged on, of the teacher a stored distilled run
    learnt from (None for a run without one)."""
    if result.path is None:
        raise ValueError("only a stored run has a teacher on record")
    saved = json.loads((result.path / "result.json").read_text())
    return Metrics(**saved["teacher"]) if "teacher" in saved else None


@dataclass(frozen=True)
class TeacherJob:
    """The teacher of one training set and length, as a task of its own
    (:func:`~lenet1.experiments.recipes.teach`)."""

    evaluation: str
    passes: int

    @classmethod
    def of(cls, stack: Stack) -> TeacherJob | None:
        """The teacher ``stack`` learns from, if any of its recipes distils."""
        if not any(recipe.distil for recipe in stack.recipes):
            return None
        return cls(stack.evaluation, teacher_passes(stack.recipe))

    def label(self) -> str:
        return f"teacher ({self.evaluation}, {self.passes} passes)"


StackTask = tuple[Stack, Teaching | None]


def _train_task(context: Context, task: StackTask | TeacherJob, threads: int
                ) -> tuple[list[Trained] | Teaching, float, dict[str, str]]:
    """A task: one stack (with its teacher, if one was trained for it already) or one
    teacher; its wall time and the machine it ran on."""
    start = time.perf_counter()
    if isinstance(task, TeacherJob):
        taught = teach(context, task.evaluation, task.passes)
        return taught, taught.seconds, environment()
    stack, teaching = task
    trained = train_stack(stack, context, teaching=teaching)
    return trained, time.perf_counter() - start, environment()


class Runner:
    """Trains or reloads the modern study's runs through the cache (kind ``modern``).

    A run ``(recipe, seed, evaluation)`` belongs to one stack
    (:func:`~lenet1.experiments.recipes.stack_of`: its recipe on a fixed block of seeds),
    and an entry holds a whole stack, so a run's numbers are those of its stack whichever runs
    are asked for, in whatever order, on however many workers. :meth:`run_all` trains the
    missing stacks of a list as tasks of the executor (by default ``workers`` processes of
    this machine, or this process for one), the longest first, then reloads every run.
    """

    KIND = MODERN

    def __init__(self, root: str | Path | None, sets: Mapping[str, tuple[Digits, Digits]],
                 scale: Scale, log: Log | None = None, data_root: str | None = None,
                 workers: int = 1, code: str | None = None,
                 executor: Executor | None = None, train_curves: bool = True) -> None:
        self.root = cache.runs_root(root)
        self.train_curves = train_curves  # see Stack: False records the test curve only
        # Taken once: every run of one study is keyed by the same code, even if the source
        # changes while it trains.
        self.code = code or cache.code_key()
        self.sets = dict(sets)
        self.scale = scale
        self.log = log or (lambda message: None)
        self.data_root = data_root
        self.workers = workers
        self._executor = executor
        self._own: Executor | None = None
        self._fresh: set[Stack] = set()  # the stacks this runner trained
        # Teachers this runner trained as tasks of their own (teachers_for), by training set
        # and length.
        self._teachings: dict[TeacherJob, Teaching] = {}
        self._pupils: dict[TeacherJob, int] = {}  # how many stacks each was trained for

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None

    def stack(self, recipe: Recipe, seed: int, evaluation: str) -> Stack:
        return stack_of(recipe, seed, evaluation, self.scale, self.train_curves)

    def stack_folder(self, stack: Stack) -> Path:
        return cache.folder_of(self.KIND, stack.label(), stack.spec(self.scale), self.root,
                               self.code)

    def folder(self, recipe: Recipe, seed: int, evaluation: str) -> Path:
        """The folder of one run asked for alone: its seed's sub-folder of its stack's entry."""
        stack = self.stack(recipe, seed, evaluation)
        return self.stack_folder(stack) / stack.member(0, seed)

    def _complete(self, stack: Stack) -> bool:
        folder = self.stack_folder(stack)
        return (folder / cache.KEY_FILE).is_file() and all(
            (folder / stack.member(index, seed) / name).is_file()
            for index, _, seed in stack.members for name in MEMBER_FILES)

    def teachers_for(self, stacks: Sequence[Stack]) -> list[TeacherJob]:
        """The teachers worth training on their own for ``stacks`` (the distilling stacks a
        later call will train): each teacher that two or more of those the cache lacks would
        otherwise each train for themselves, and this runner has not trained yet. Trained
        by :meth:`train_missing` (``teachers``), one is kept for every stack trained later
        that learns from it, and its time is shared evenly by the stacks it was counted for
        here; a stack without one trains its own, with the same bits."""
        wanted: dict[TeacherJob, int] = {}
        for stack in dict.fromkeys(stacks):
            job = TeacherJob.of(stack)
            if job is not None and not self._complete(stack):
                wanted[job] = wanted.get(job, 0) + 1
        jobs = [job for job, count in wanted.items() if count > 1 and job not in self._teachings]
        self._pupils.update((job, wanted[job]) for job in jobs)
        return jobs

    def _teaching(self, stack: Stack) -> Teaching | None:
        """The teacher trained already for ``stack``, if it distils and one was."""
        job = TeacherJob.of(stack)
        return None if job is None else self._teachings.get(job)

    def train_missing(self, stacks: Sequence[Stack], what: str = "",
                      teachers: Sequence[TeacherJob] = ()) -> None:
        """Train those of ``stacks`` the cache lacks, side by side (the longest first); the
        ``run`` methods then reload them. For stacks of several kinds that should share the
        workers, e.g. a study's test runs and its last validation runs. ``teachers``
        (:meth:`teachers_for`) are trained beside them, for stacks trained later."""
        missing = [stack for stack in dict.fromkeys(stacks) if not self._complete(stack)]
        jobs = [job for job in dict.fromkeys(teachers) if job not in self._teachings]
        if missing or jobs:
            self._train(missing, what, jobs)
            self._fresh.update(missing)

    def run_all(self, jobs: Sequence[tuple[Recipe, int, str]], what: str = ""
                ) -> list[RunResult]:
        """:meth:`run` for every ``(recipe, seed, evaluation)``, the missing stacks trained
        first, side by side (the results in order). ``what`` names the jobs in the log."""
        for _, _, evaluation in jobs:
            self._check_evaluation(evaluation)
        stacks = [self.stack(*job) for job in jobs]
        self.train_missing(stacks, what)
        return [self._read(stack, 0, recipe, seed) for stack, (recipe, seed, _) in zip(stacks, jobs)]

    def run_candidates(self, candidates: Sequence[Recipe], seeds: Sequence[int],
                       evaluation: str, what: str = "") -> list[RunResult]:
        """Every candidate on every seed (candidate by candidate), trained together: on each
        seed, the candidates of one shape in one stack
        (:func:`~lenet1.experiments.recipes.candidate_stacks`), keyed by all of them, so these
        numbers are those of this set of candidates, whoever asks for them."""
        self._check_evaluation(evaluation)
        stacks = self.candidate_stacks(candidates, seeds, evaluation)
        self.train_missing(stacks, what)
        where = {(recipe, seed): stack for stack in stacks for _, recipe, seed in stack.members}
        return [self.read(where[(trained_recipe(candidate, self.scale), seed)], candidate, seed)
                for candidate in candidates for seed in seeds]

    def candidate_stacks(self, candidates: Sequence[Recipe], seeds: Sequence[int],
                         evaluation: str) -> list[Stack]:
        """The stacks :meth:`run_candidates` trains for these candidates and seeds."""
        return candidate_stacks(candidates, seeds, evaluation, self.scale)

    def seed_stacks(self, recipe: Recipe, seeds: Sequence[int], evaluation: str
                    ) -> list[Stack]:
        """The stacks :meth:`run_seeds` trains: ``recipe`` on all of ``seeds`` in one stack
        (an online recipe: one stack a seed, as always), keyed by all of them."""
        self._check_evaluation(evaluation)
        trained = trained_recipe(recipe, self.scale)
        if trained.trainer == "online":
            return [Stack((trained,), (seed,), evaluation) for seed in seeds]
        return [Stack((trained,), tuple(seeds), evaluation)]

    def run_seeds(self, recipe: Recipe, seeds: Sequence[int], evaluation: str,
                  what: str = "") -> list[RunResult]:
        """``recipe`` on every one of ``seeds`` (in that order), trained together in one stack
        (:meth:`seed_stacks`): a step's runs on the seeds its choice did not train (five
        networks in one stack cost about half what they cost one by one)."""
        stacks = self.seed_stacks(recipe, seeds, evaluation)
        self.train_missing(stacks, what)
        where = {seed: stack for stack in stacks for seed in stack.seeds}
        return [self.read(where[seed], recipe, seed) for seed in seeds]

    def read(self, stack: Stack, recipe: Recipe, seed: int) -> RunResult:
        """``recipe``'s network on ``seed`` as ``stack`` trained it (trained already), read as
        ``recipe`` reads (test-time shifts included)."""
        trained = trained_recipe(recipe, self.scale)
        if trained not in stack.recipes or seed not in stack.seeds:
            raise ValueError(f"the stack {stack.label()} does not train this recipe on seed "
                             f"{seed}")
        return self._read(stack, stack.recipes.index(trained), recipe, seed)

    def run(self, recipe: Recipe, seed: int, evaluation: str) -> RunResult:
        """One run, trained (in its stack, :func:`~lenet1.experiments.recipes.stack_of`) or
        reloaded."""
        self._check_evaluation(evaluation)
        stack = self.stack(recipe, seed, evaluation)
        self.train_missing([stack])
        return self._read(stack, 0, recipe, seed)

    def on_test(self, result: RunResult) -> Metrics:
        """The figures on the test digits of a network judged on the validation split (read
        as its recipe reads, test-time shifts included): the same network on both held-out
        sets, to compare them. Never an input to a choice."""
        if result.evaluation != "validation" or result.path is None:
            raise ValueError("on_test is for stored runs judged on the validation split")
        test = self.sets["test"][1]
        if result.diverged:
            return Metrics(math.nan, 1.0, len(test), len(test))
        return final_metrics(result.recipe, network_of(result.recipe, result.path), test)

    def _read(self, stack: Stack, index: int, recipe: Recipe, seed: int) -> RunResult:
        """A stored network's result; ``recipe`` may add test-time augmentation."""
        fresh = stack in self._fresh
        evaluation = stack.evaluation
        recipe = recipe.capped(self.scale.max_passes)
        train, judged = self.sets[evaluation]
        folder = self.stack_folder(stack) / stack.member(index, seed)
        saved = json.loads((folder / "result.json").read_text())
        history_type = ModernHistory if recipe.trainer == "minibatch" else History
        history = history_type.from_json(json.loads((folder / "history.json").read_text()))
        if saved["diverged"]:
            nan = Metrics(math.nan, 1.0, len(judged), len(judged))
            return RunResult(recipe, seed, evaluation, history, saved["seconds"],
                             Metrics(math.nan, 1.0, len(train), len(train)), nan, folder, fresh,
                             diverged=True)
        if recipe.tta:
            model = network_of(recipe, folder)
            test_metrics = final_metrics(recipe, model, judged)
            # Nothing reports a validation run's training digits: they are not read again at
            # every shift (which would cost more than the rest of its reading).
            train_metrics = final_metrics(recipe, model, train) if evaluation == "test" \
                else history.final.train
        else:
            train_metrics, test_metrics = history.final.train, history.final.test
        return RunResult(recipe, seed, evaluation, history, saved["seconds"], train_metrics,
                         test_metrics, folder, fresh)

    @staticmethod
    def _check_evaluation(evaluation: str) -> None:
        if evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {evaluation!r}")

    def _executor_for(self, tasks: int) -> Executor:
        if self._executor is not None:
            return self._executor
        if self.workers <= 1 or tasks <= 1:
            return InProcess()
        if self._own is None:
            self._own = Processes(min(self.workers, os.cpu_count() or 1))
        return self._own

    def _train(self, stacks: Sequence[Stack], what: str,
               teachers: Sequence[TeacherJob] = ()) -> None:
        """Train ``stacks`` and ``teachers`` (the longest first, so that the short ones fill
        the workers' last gaps), store each stack as it comes and keep each teacher."""
        tasks: list[StackTask | TeacherJob] = [*teachers, *((stack, self._teaching(stack))
                                                           for stack in stacks)]
        tasks.sort(key=_task_cost, reverse=True)
        executor = self._executor_for(len(tasks))
        progress = Progress(sum(len(s.members) for s in stacks) + len(teachers), len(tasks),
                            executor.workers, what, executor.description, self.log)
        for index, (result, seconds, machine) in executor.run(_train_task, tasks, self.sets,
                                                              self.code):
            task = tasks[index]
            if isinstance(task, TeacherJob):
                self._teachings[task] = result
                progress.done(f"{task.label()}: {_figures(result.figures, task.evaluation)}")
                continue
            stack, teaching = task
            if teaching is not None:
                # A shared teacher's time is shared evenly by the stacks it was trained for,
                # so that the runs' times add up to the time spent.
                job = TeacherJob(teaching.evaluation, teaching.passes)
                seconds += teaching.seconds / self._pupils.get(job, 1)
            self._store(stack, result, seconds, machine)
            for member in result:
                progress.done(f"{stack.label()} {stack.member(member.index, member.seed)}: "
                              f"{_outcome(member.history, member.diverged, stack.evaluation)}")

    def _store(self, stack: Stack, trained: Sequence[Trained], seconds: float,
               machine: Mapping[str, str]) -> None:
        def write(partial: Path) -> None:
            cache.write_json(partial / "stack.json", {"seconds": seconds,
                                                      "environment": dict(machine)})
            for member in trained:
                folder = partial / stack.member(member.index, member.seed)
                folder.mkdir()
                # The stack's wall time, shared evenly by its networks.
                result: dict[str, Any] = {"seconds": seconds / len(trained),
                                          "diverged": member.diverged,
                                          "stacked_with": len(trained)}
                if member.teacher is not None:
                    result["teacher"] = asdict(member.teacher)
                cache.write_json(folder / "result.json", result)
                cache.write_json(folder / "history.json", member.history.to_json())
                if member.weights is not None:
                    save_file(member.weights, str(folder / "weights.safetensors"))

        cache.store(self.stack_folder(stack), self.KIND, stack.spec(self.scale), write,
                    self.code)


#: A teacher's pass in the units of ``_expected_cost``, roughly (for ordering only: its 20
#: passes took 20.5 s alone, a step 7 network's 30 augmented passes about 5 s in its stack).
TEACHER_PASS_COST = 5.0


def _task_cost(task: StackTask | TeacherJob) -> float:
    if isinstance(task, TeacherJob):
        return TEACHER_PASS_COST * task.passes
    stack = task[0]
    return _expected_cost(stack.recipe) * len(stack.members)


def _expected_cost(recipe: Recipe) -> float:
    """A run's relative training time, for ordering only: passes, the compiled online pass
    about twice as fast a pass as a mini-batch one, augmentation a little dearer."""
    speed = 0.5 if recipe.trainer == "online" else 1.0
    extra = 1.2 if (recipe.translate or recipe.rotate or recipe.scale or recipe.elastic
                     or recipe.dropout) else 1.0
    return recipe.passes * speed * extra
