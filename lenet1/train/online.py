"""Online training as the paper did it, and per-pass evaluation.

One update per pattern, patterns in a constant order (the training set's own), 23 passes; or,
as some later reproductions do, the patterns reshuffled before every pass (:func:`pass_order`).

The loss of one pattern is its squared error *averaged over the 10 output units*:
``E_p = (1/10) * sum_k (y_k - t_k)^2``, so its gradient with respect to output k is
``(2/10) (y_k - t_k)``. Summing over the units instead (or halving, as many texts do) only
rescales the gradient: a learning rate ``lr`` here equals ``lr / 10`` with the summed loss and
``lr / 5`` with half the summed loss. The reported MSE is the same quantity averaged over the
patterns too, the paper's "averaged over the patterns and over the output units".

How a pass is computed is an :class:`Engine` (the autograd reference here, a fast engine in
:mod:`lenet1.engine`); how big each weight's step is is a :class:`StepRule` (plain SGD here, the
paper's diagonal Levenberg-Marquardt in :mod:`lenet1.train.sdlm`). Both see the network's parameters
by name, so any rule runs on any engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Protocol

import torch
from torch import Tensor, nn

from ..data import Digits
from ..nets import check_images
from ..threads import in_parallel, on_one_thread, torch_threads

OUTPUTS = 10


@dataclass(frozen=True)
class Metrics:
    """One set's figures: MSE (per pattern and output unit), error rate and exact misses."""

    mse: float
    error: float
    misses: int
    count: int


#: The figures of a set that was not evaluated after a pass (NaN, no patterns), as in the
#: records of a run trained with ``train_every=False``.
UNMEASURED = Metrics(math.nan, math.nan, 0, 0)


def loss_per_pattern(outputs: Tensor, targets: Tensor) -> Tensor:
    """Squared error averaged over the output units, one value per pattern."""
    return ((outputs - targets) ** 2).mean(dim=1)


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 1024, *,
            checked: bool = False) -> Tensor:
    """The network's outputs (N, 10) for ``images``, computed in batches on one thread: for
    images this small a second thread costs more than it saves, and one thread gives the same
    numbers whatever the machine's thread setting. ``checked``: the caller has checked these
    images already (a training loop, before its first pass, rather than at every pass)."""
    if not checked:
        check_images(images)
    if not len(images):
        return torch.empty(0, OUTPUTS)
    was_training = model.training
    model.eval()
    try:
        with torch_threads(1):
            return torch.cat([model(images[i:i + batch_size])
                              for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def metrics_of(outputs: Tensor, labels: Tensor) -> Metrics:
    from ..data import place_code

    misses = int((outputs.argmax(dim=1) != labels).sum())
    mse = float(loss_per_pattern(outputs, place_code(labels)).mean())
    return Metrics(mse=mse, error=misses / len(labels), misses=misses, count=len(labels))


def evaluate(model: nn.Module, digits: Digits, *, checked: bool = False) -> Metrics:
    return metrics_of(predict(model, digits.images, checked=checked), digits.labels)


# --- step rules and engines -------------------------------------------------------------------


class StepRule(Protocol):
    """Gives each parameter its step size for the coming pass: ``w -= step * grad``.

    A step size is a tensor that broadcasts against its parameter (a 0-d tensor for a global
    learning rate, a full-shape tensor for per-weight steps).
    """

    def step_sizes(self, model: nn.Module, train: Digits, pass_index: int) -> dict[str, Tensor]:
        ...


@dataclass(frozen=True)
class SGD:
    """Plain stochastic gradient descent: the same step ``lr`` for every weight."""

    lr: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a positive number, got {self.lr}")

    def step_sizes(self, model: nn.Module, train: Digits, pass_index: int) -> dict[str, Tensor]:
        return {name: torch.tensor(self.lr) for name, _ in model.named_parameters()}


class Engine(Protocol):
    """Runs one pass of online training: for each pattern in order, forward, backward, and
    ``w -= step * grad`` for every parameter, in place on ``model``."""

    def train_pass(self, model: nn.Module, images: Tensor, targets: Tensor,
                   step_sizes: dict[str, Tensor]) -> None:
        ...


class ReferenceEngine:
    """The readable loop: autograd computes each pattern's gradient, then every weight steps.

    This is what the book shows and what checks the fast engine; it is slow (about 3 ms an
    update) because a batch of one is all per-operator overhead.
    """

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def train_pass(self, model: nn.Module, images: Tensor, targets: Tensor,
                   step_sizes: dict[str, Tensor]) -> None:
        names, params = zip(*model.named_parameters())
        steps = [step_sizes[name] for name in names]
        patterns = range(len(images))
        if self.progress:
            from tqdm.auto import tqdm
            patterns = tqdm(patterns, desc="patterns", leave=False)
        with torch_threads(1):
            for i in patterns:
                outputs = model(images[i:i + 1])
                loss = loss_per_pattern(outputs, targets[i:i + 1]).sum()
                grads = torch.autograd.grad(loss, params)
                with torch.no_grad():
                    for param, grad, step in zip(params, grads, steps):
                        param.sub_(step * grad)


# --- the driver -------------------------------------------------------------------------------


@dataclass
class PassRecord:
    """The figures after a pass (pass 0: before training)."""

    pass_index: int
    train: Metrics
    test: Metrics


@dataclass
class History:
    passes: list[PassRecord] = field(default_factory=list)

    def to_json(self) -> list[dict[str, object]]:
        return [{"pass": r.pass_index, "train": asdict(r.train), "test": asdict(r.test)}
                for r in self.passes]

    @classmethod
    def from_json(cls, rows: list[dict[str, object]]) -> History:
        return cls([PassRecord(int(row["pass"]),  # type: ignore[call-overload]
                               Metrics(**row["train"]),  # type: ignore[arg-type]
                               Metrics(**row["test"]))  # type: ignore[arg-type]
                    for row in rows])

    @property
    def final(self) -> PassRecord:
        return self.passes[-1]


def pass_order(count: int, passes: int, seed: int) -> list[Tensor]:
    """The order of the ``count`` patterns in each of ``passes`` passes when they are
    reshuffled before every pass: one permutation a pass, drawn in turn from a generator
    seeded with ``seed`` (torch's own, so the same on every machine and Python)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(count, generator=generator) for _ in range(passes)]


def train_online(model: nn.Module, train: Digits, test: Digits, passes: int,
                 rule: StepRule, engine: Engine | None = None,
                 on_pass: Callable[[PassRecord], None] | None = None,
                 record_every: bool = True, shuffle_seed: int | None = None,
                 train_every: bool = True) -> History:
    """Train ``model`` in place for ``passes`` passes over ``train`` in its own order, or with
    ``shuffle_seed`` in the orders :func:`pass_order` draws from it.

    Evaluates both sets before training and after every pass (``on_pass`` sees each record),
    or with ``record_every=False`` after the last pass only (see ``_online_loop``);
    ``train_every=False``: the training set only after the last pass.
    """
    engine = engine or ReferenceEngine()

    def train_pass(models: list[nn.Module], steps: list[dict[str, Tensor]],
                   patterns: Digits) -> list[float | None]:
        engine.train_pass(models[0], patterns.images, patterns.targets, steps[0])
        return [getattr(engine, "last_loss", None)]

    return _online_loop([model], train, test, passes, [rule], train_pass,
                        lambda index, record: on_pass(record) if on_pass else None,
                        threads=1, stop_on_divergence=True, record_every=record_every,
                        shuffle_seed=shuffle_seed, train_every=train_every)[0]


@on_one_thread
def _online_loop(models: list[nn.Module], train: Digits, test: Digits, passes: int,
                 rules: list[StepRule],
                 train_pass: Callable[[list[nn.Module], list[dict[str, Tensor]], Digits],
                                      list[float | None]],
                 on_pass: Callable[[int, PassRecord], None] | None, threads: int,
                 stop_on_divergence: bool, record_every: bool = True,
                 shuffle_seed: int | None = None, train_every: bool = True) -> list[History]:
    """The loop both drivers share: evaluate, then per pass take each live model's step sizes,
    train them all on the pass's patterns (``train`` in its order, or reshuffled from
    ``shuffle_seed``), evaluate, and drop (or stop on) the ones that diverged.

    With ``record_every=False`` (a sweep that reads only the end), the sets are evaluated after
    the last pass only, and a model whose online training loss (``train_pass``'s return) is no
    longer finite is evaluated where it stopped: its history is that one record. With
    ``train_every=False`` (a curve of the test set alone) the training set's figures before
    the last pass are :data:`UNMEASURED`, and a record without them tells divergence by the
    test set's MSE. The weights, and the last record, are the same either way."""
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise ValueError(f"passes must be a whole number >= 0, got {passes!r}")
    check_images(train.images)
    check_images(test.images)
    histories = [History() for _ in models]
    live = list(range(len(models)))

    def record(pass_index: int, which: list[int]) -> None:
        entries: dict[int, PassRecord] = {}
        measured = train_every or pass_index == passes

        def measure(index: int) -> None:
            entries[index] = PassRecord(
                pass_index,
                evaluate(models[index], train, checked=True) if measured else UNMEASURED,
                evaluate(models[index], test, checked=True))

        # predict() runs on one thread and releases the GIL, so several models are evaluated
        # side by side with the numbers of a sequential evaluation.
        with torch_threads(1):
            in_parallel([partial(measure, index) for index in which], threads)
        for index in which:
            histories[index].passes.append(entries[index])
            if on_pass is not None:
                on_pass(index, entries[index])

    orders = None if shuffle_seed is None else pass_order(len(train), passes, shuffle_seed)
    if record_every or passes == 0:
        record(0, live)
    for pass_index in range(1, passes + 1):
        if not live:
            break
        # One torch thread per estimate: its sums are then added in one order everywhere; the
        # models' estimates run side by side (each on its own model, releasing the GIL).
        estimates: dict[int, dict[str, Tensor]] = {}

        def estimate(index: int) -> None:
            estimates[index] = rules[index].step_sizes(models[index], train, pass_index)

        with torch_threads(1):
            in_parallel([partial(estimate, index) for index in live], threads)
        steps = [estimates[index] for index in live]
        patterns = train if orders is None else train.subset(orders[pass_index - 1])
        losses = train_pass([models[index] for index in live], steps, patterns)
        if record_every or pass_index == passes:
            record(pass_index, live)
            diverged = [index for index in live if not math.isfinite(
                histories[index].final.train.mse if train_every or pass_index == passes
                else histories[index].final.test.mse)]
        else:
            diverged = [index for index, loss in zip(live, losses)
                        if loss is not None and not math.isfinite(loss)]
            record(pass_index, diverged)
        if diverged and stop_on_divergence:
            index = diverged[0]
            who = f"replica {index}" if len(models) > 1 else "training"
            raise FloatingPointError(
                f"{who} diverged at pass {pass_index}: the MSE is "
                f"{histories[index].final.train.mse}; lower the learning rate")
        live = [index for index in live if index not in diverged]
    return histories
