"""Where one mini-batch step of the modern trainer spends its time, and what training several
networks as one stack (:func:`lenet1.train.stacked.train_stacked`) buys back.

    LENET1_DATA=... python benchmarks/minibatch_step.py [--passes 1]

All on one thread, in this one run, so the ratios hold on a shared machine. The recipe is the
modern study's step 6 (mini-batches of 32, AdamW, ReLU, dropout, random shifts):

- ``train_minibatch``: one network alone, the reference trainer;
- ``forward + backward``: that network's forward pass, loss and backward pass alone, on the
  same mini-batches (no optimiser, no augmentation, no data handling): PyTorch's operators;
- ``train_stacked, K``: K networks (seeds) trained together, per network.

Each figure is the wall time of ``--passes`` passes less that of one pass (which pays the
evaluation of a few digits), per network and mini-batch step, after an untimed pass of the
same kind (the first operators of a process pay for their setup).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from lenet1.data import Digits, load
from lenet1.experiments.recipes import PAPER_RECIPE, initial_network
from lenet1.nets import ModernLeNet1
from lenet1.threads import torch_threads
from lenet1.train.minibatch import objective, train_minibatch
from lenet1.train.stacked import train_stacked

RECIPE = PAPER_RECIPE.changed({
    "trainer": "minibatch", "batch_size": 32, "shuffle": True, "output": "logits",
    "loss": "cross_entropy", "optimizer": "adamw", "weight_decay": 0.01, "schedule": "cosine",
    "lr": 3e-3, "translate": 1, "unit": "relu", "dropout": 0.25})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=2, help="passes per figure (>= 2)")
    parser.add_argument("--digits", type=int, default=None,
                        help="train on the first N training digits (default: all 7,291)")
    args = parser.parse_args()
    if args.passes < 2:
        parser.error(f"--passes must be at least 2 (one pass is subtracted), got {args.passes}")
    digits = training_digits(parser, args.digits)
    few = digits.subset(slice(0, 10))  # the evaluation is not timed: keep it small
    recipe = RECIPE.changed({"passes": args.passes})
    steps = -(-len(digits) // recipe.batch_size)
    rows = []

    def per_step(train: Callable[[int], object]) -> float:
        return seconds_per_step(train, args.passes, steps)

    def alone_run(passes: int) -> None:
        config = recipe.changed({"passes": passes}).modern_config(0)
        train_minibatch(initial_network(recipe, 0), digits, few, config, record_every=False)

    def stacked_run(k: int, passes: int) -> None:
        changed = recipe.changed({"passes": passes})
        train_stacked([initial_network(changed, seed) for seed in range(k)],  # type: ignore[misc]
                      digits, few, [changed.modern_config(seed) for seed in range(k)],
                      record_every=False)

    with torch_threads(1):
        alone = per_step(alone_run)
        rows.append(("train_minibatch, 1 network", alone))
        model = initial_network(recipe, 0)
        rows.append(("forward + backward, 1 network", _forward_backward(model, digits, steps)))
        for k in (1, 2, 5, 10):
            rows.append((f"train_stacked, {k} together",
                         per_step(lambda passes, k=k: stacked_run(k, passes)) / k))
    print(f"one thread; {len(digits)} digits in mini-batches of {recipe.batch_size}; "
          "ms per network and step")
    print()
    print("| what | ms per network-step | speed-up over train_minibatch |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {1e3 * seconds:.2f} | {alone / seconds:.2f}x |")


def training_digits(parser: argparse.ArgumentParser, count: int | None) -> Digits:
    """The training digits, or the first ``count`` of them (a ``--digits`` option)."""
    digits = load("usps").train
    if count is not None:
        if not 32 <= count <= len(digits):
            parser.error(f"--digits must lie in 32..{len(digits)}, got {count}")
        digits = digits.subset(slice(0, count))
    return digits


def seconds_per_step(train: Callable[[int], object], passes: int, steps: int) -> float:
    """Seconds per mini-batch step of ``train(passes)`` (``steps`` a pass): the difference
    between ``passes`` passes and one, after an untimed pass."""
    train(1)
    start = time.perf_counter()
    train(1)
    one = time.perf_counter() - start
    start = time.perf_counter()
    train(passes)
    return (time.perf_counter() - start - one) / ((passes - 1) * steps)


def _forward_backward(model: torch.nn.Module, digits, steps: int) -> float:  # type: ignore[no-untyped-def]
    assert isinstance(model, ModernLeNet1)
    generator = torch.Generator().manual_seed(0)
    model.train()
    order = torch.randperm(len(digits), generator=generator)
    start = time.perf_counter()
    for begin in range(0, len(digits), 32):
        index = order[begin:begin + 32]
        loss = objective(model.states(digits.images[index], generator)["out"],
                         digits.labels[index], "cross_entropy")
        model.zero_grad(set_to_none=True)
        loss.backward()
    return (time.perf_counter() - start) / steps


if __name__ == "__main__":
    main()
