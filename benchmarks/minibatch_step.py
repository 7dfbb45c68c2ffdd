"""Where one mini-batch step of the modern trainer spends its time, and what training several
networks as one stack (:func:`lenet1.train.stacked.train_stacked`) buys back.

    LENET1_DATA=... python benchmarks/minibatch_step.py [--passes 1]

All on one thread, in this one run, so the ratios hold on a shared machine. The recipe is the
modern study's step 6 (mini-batches of 32, AdamW, ReLU, dropout, random shifts):

- ``train_minibatch``: one network alone, the reference trainer;
- ``forward + backward``: that network's forward pass, loss and backward pass alone, on the
  same mini-batches (no optimiser, no augmentation, no data handling): PyTorch's operators;
- ``train_stacked, K``: K networks (seeds) trained together, per network.

Each figure is the wall time of the last of ``--passes`` passes (the first warms up), per
network and mini-batch step, without the evaluation of the whole sets.
"""

from __future__ import annotations

import argparse
import time

import torch

from lenet1.data import load
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
        parser.error(f"--passes must be at least 2 (the first warms up), got {args.passes}")
    digits = load("usps").train
    if args.digits is not None:
        if not 32 <= args.digits <= len(digits):
            parser.error(f"--digits must lie in 32..{len(digits)}, got {args.digits}")
        digits = digits.subset(slice(0, args.digits))
    few = digits.subset(slice(0, 10))  # the evaluation is not timed: keep it small
    recipe = RECIPE.changed({"passes": args.passes})
    steps = -(-len(digits) // recipe.batch_size)
    rows = []
    with torch_threads(1):
        model = initial_network(recipe, 0)
        history = train_minibatch(model, digits, few, recipe.modern_config(0),
                                  record_every=False)
        alone = history.final.seconds / steps
        rows.append(("train_minibatch, 1 network", alone))
        rows.append(("forward + backward, 1 network", _forward_backward(model, digits, steps)))
        for k in (1, 2, 5, 10):
            models = [initial_network(recipe, seed) for seed in range(k)]
            runs = train_stacked(models, digits, few,  # type: ignore[arg-type]
                                 [recipe.modern_config(seed) for seed in range(k)],
                                 record_every=False)
            rows.append((f"train_stacked, {k} together", runs[0].history.final.seconds / steps))
    print(f"one thread; {len(digits)} digits in mini-batches of {recipe.batch_size}; "
          "ms per network and step")
    print()
    print("| what | ms per network-step | speed-up over train_minibatch |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {1e3 * seconds:.2f} | {alone / seconds:.2f}x |")


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
