"""Karpathy's final modern recipe, run as his code runs it, on the paper's digits.

His ``modern.py`` (karpathy/lecun1989-repro) trains one network online for 80 passes; on the
book's machine, with PyTorch's per-operator overhead at one digit per update, five seeds of it
take some twenty minutes of one core: too long for every build of the book. So the five
networks are trained once (:func:`train_record`, through the modern study's cache: one stack
of seeds 0-4, :func:`~lenet1.experiments.recipes.stack_of`), and their histories ship with the
book in ``results/karpathy.json`` (:data:`RECORD`). Every build retrains the stack's first pass
from the same initial weights, with the whole run's schedule, and requires every figure of
that pass, for every seed, to be the recorded one bit for bit (:func:`check_record`): code that
no longer gives the recorded beginning refuses the record.

Command line::

    LENET1_DATA=... python -m lenet1 study karpathy            # read, check a pass, print
    LENET1_DATA=... python -m lenet1 study karpathy --scale full  # train all, write the record
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data import load
from ..train.minibatch import ModernHistory
from . import cache
from .recipes import FULL, PAPER_RECIPE, Recipe, stack_of, study_sets, train_stack
from .stats import Spread
from .training import Log, Runner, StaleTableError

#: Karpathy's final modern recipe as his ``modern.py`` runs it (``lenet1.facts.KARPATHY_MODERN``
#: describes it), online (batch 1, the file's order), ReLU units, dropout 0.25 on H2's states,
#: cross-entropy on logits, AdamW at 3e-4 decayed pass by pass to 1e-4 with weight decay 0.01
#: on every parameter, a random circular shift of up to a pixel, weights uniform in
#: +-2.4/sqrt F, H1's maps padded with -1 for H2, 80 passes. It is not a step of the modern
#: study, whose recipes change one thing at a time, but a row beside it, so that his reported
#: numbers are compared with a recipe like his.
KARPATHY_FINAL: Recipe = PAPER_RECIPE.changed({
    "trainer": "minibatch", "unit": "relu", "output": "logits", "loss": "cross_entropy",
    "optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01, "decay_biases": True,
    "schedule": "linear_to_third", "batch_size": 1, "passes": 80, "shuffle": False,
    "translate": 1, "wrap": True, "dropout": 0.25, "init": "sqrt_fan_in",
    "h2_background": -1.0})

#: The seeds of the record (one stack).
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)

#: The shipped record of the five runs.
RECORD = Path(__file__).resolve().parents[2] / "results" / "karpathy.json"


@dataclass(frozen=True)
class KarpathyRecord:
    """The five networks' histories (every pass, both sets), the recipe that made them, the
    code key of the code that trained them, and the wall time of each network's training (its
    share of the stack's; a measurement of the machine, not a figure of the run)."""

    recipe: Recipe
    seeds: tuple[int, ...]
    histories: tuple[ModernHistory, ...]
    code_key: str
    test_count: int
    seconds: float

    @property
    def test_misses(self) -> tuple[int, ...]:
        return tuple(h.final.test.misses for h in self.histories)

    @property
    def test_errors(self) -> tuple[float, ...]:
        return tuple(h.final.test.error for h in self.histories)

    @property
    def train_errors(self) -> tuple[float, ...]:
        return tuple(h.final.train.error for h in self.histories)

    @property
    def test_spread(self) -> Spread:
        """The test error over the seeds (mean, standard deviation and range)."""
        return Spread.of(self.test_errors)


def train_record(seeds: Sequence[int] = SEEDS, root: str | Path | None = None,
                 data_root: str | None = None, log: Log | None = None,
                 workers: int = 1) -> KarpathyRecord:
    """Train (or reload from the cache) Karpathy's final recipe on ``seeds`` over the paper's
    digits: some twenty minutes of one core for the five."""
    sets = study_sets(FULL, data_root)
    with Runner(root, sets, FULL, log, data_root, workers) as runner:
        results = runner.run_all([(KARPATHY_FINAL, seed, "test") for seed in seeds],
                                 "Karpathy's final recipe")
    if any(r.diverged for r in results):
        raise FloatingPointError("Karpathy's recipe diverged on the training set")
    histories = []
    for result in results:
        if not isinstance(result.history, ModernHistory):  # pragma: no cover - by the recipe
            raise TypeError("a mini-batch run has a ModernHistory")
        histories.append(result.history)
    return KarpathyRecord(KARPATHY_FINAL, tuple(seeds), tuple(histories), cache.code_key(),
                          len(sets["test"][1]), statistics.fmean(r.seconds for r in results))


def write_record(record: KarpathyRecord, path: Path = RECORD) -> None:
    """The record as JSON: the recipe, the seeds, the code key and every pass's figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"code_key": record.code_key, "recipe": record.recipe.training(),
            "seeds": list(record.seeds), "test_count": record.test_count,
            "seconds_per_network": record.seconds,
            "histories": [h.to_json() for h in record.histories]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def read_record(path: Path = RECORD) -> KarpathyRecord:
    """The shipped record; a clear error if it is missing, malformed or of another recipe."""
    if not path.is_file():
        raise FileNotFoundError(f"no record of Karpathy's recipe at {path}: "
                                f"`python -m lenet1 study karpathy --scale full` makes it")
    try:
        data = json.loads(path.read_text())
        recipe = PAPER_RECIPE.changed(data["recipe"])
        seeds = tuple(int(s) for s in data["seeds"])
        histories = tuple(ModernHistory.from_json(rows) for rows in data["histories"])
        code, count = str(data["code_key"]), int(data["test_count"])
        seconds = float(data["seconds_per_network"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a record of Karpathy's recipe: {error!r}") from None
    if recipe != KARPATHY_FINAL:
        raise StaleTableError(f"{path} records another recipe than KARPATHY_FINAL: renew it "
                              f"with `python -m lenet1 study karpathy --scale full`")
    if len(histories) != len(seeds) or not seeds \
            or any(len(h.passes) != recipe.passes + 1 for h in histories):
        raise ValueError(f"{path} should hold {recipe.passes + 1} passes (0 included) for "
                         f"each of its seeds")
    return KarpathyRecord(recipe, seeds, histories, code, count, seconds)


def retrain_beginning(record: KarpathyRecord, passes: int = 1,
                      data_root: str | None = None) -> list[ModernHistory]:
    """The record's stack retrained from its initial weights for its first ``passes`` passes
    (with the whole run's schedule): each seed's history of passes 0..``passes``."""
    stack = stack_of(record.recipe, record.seeds[0], "test", FULL)
    if stack.seeds != record.seeds:
        raise ValueError(f"the record's seeds {record.seeds} are not one stack "
                         f"({stack.seeds})")
    trained = train_stack(stack, study_sets(FULL, split=load("usps", data_root)), until=passes)
    return [member.history for member in trained]  # type: ignore[misc]


def compare_beginning(record: KarpathyRecord, beginnings: Sequence[ModernHistory]) -> int:
    """Raise :class:`~lenet1.experiments.training.StaleTableError` unless every seed's
    retrained beginning is the record's, figure for figure and bit for bit; else return the
    number of records (a seed's pass) compared."""
    compared = 0
    for seed, recorded, now in zip(record.seeds, record.histories, beginnings, strict=True):
        rows = now.to_json()
        if not rows or rows != recorded.to_json()[:len(rows)]:
            raise StaleTableError(
                f"Karpathy's recipe, seed {seed}: the code (key {cache.code_key()}) no longer "
                f"gives the record's first {len(rows) - 1} pass(es) (recorded by code "
                f"{record.code_key}). Renew it with "
                f"`python -m lenet1 study karpathy --scale full`.")
        compared += len(rows)
    return compared


def check_record(record: KarpathyRecord, passes: int = 1, data_root: str | None = None
                 ) -> int:
    """:func:`retrain_beginning`, then :func:`compare_beginning`: the number of records
    compared, or a :class:`~lenet1.experiments.training.StaleTableError`."""
    return compare_beginning(record, retrain_beginning(record, passes, data_root))


__all__ = ["KARPATHY_FINAL", "RECORD", "SEEDS", "KarpathyRecord", "check_record",
           "compare_beginning", "read_record", "retrain_beginning", "train_record",
           "write_record"]
