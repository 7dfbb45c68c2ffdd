"""Where one mini-batch step of the modern trainer spends its time, and whether stacking
several networks into one (the seeds of a recipe trained together) would buy any of it back.

    LENET1_DATA=... python benchmarks/minibatch_step.py [--steps 300]

All on one thread, in this one run, so the ratios hold on a shared machine:

- ``trainer``: a step of :func:`lenet1.train.minibatch.train_minibatch` (batch 32, AdamW,
  ReLU, dropout, random shifts: the modern study's step 6), from the wall time of one pass.
- ``forward + backward``: the same network's forward pass, loss and backward pass alone (no
  optimiser, no augmentation, no data handling): what PyTorch's operators cost.
- ``K stacked``: K networks with their own weights and their own mini-batches in one set of
  operators (grouped convolutions for H1 and H2, batched products for H3 and the output), per
  network: what training a recipe's seeds together could give at best.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lenet1.data import load
from lenet1.experiments.recipes import PAPER_RECIPE, initial_network
from lenet1.nets import PAD_AFTER, PAD_BEFORE, STRIDE
from lenet1.threads import torch_threads
from lenet1.train.minibatch import train_minibatch

BATCH = 32
PAD = (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)


def trainer_step() -> float:
    digits = load("usps").train
    recipe = PAPER_RECIPE.changed({
        "trainer": "minibatch", "batch_size": BATCH, "shuffle": True, "output": "logits",
        "loss": "cross_entropy", "optimizer": "adamw", "weight_decay": 0.01,
        "schedule": "cosine", "passes": 2, "lr": 3e-3, "translate": 1, "unit": "relu",
        "dropout": 0.25})
    history = train_minibatch(initial_network(recipe, 0), digits, digits.subset(slice(0, 10)),
                              recipe.modern_config(0), record_every=False)
    steps = -(-len(digits) // BATCH)
    return history.final.seconds / steps  # the second pass: warm


def stacked_step(k: int, steps: int) -> float:
    """Seconds per network-step for ``k`` networks trained as one (random data)."""
    generator = torch.Generator().manual_seed(0)

    def weight(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 0.2 - 0.1).requires_grad_()

    w1, b1 = weight(12 * k, 1, 5, 5), weight(12 * k, 8, 8)
    w2, b2 = weight(12 * k, 12, 5, 5), weight(12 * k, 4, 4)
    w3, b3 = weight(k, 192, 30), weight(k, 1, 30)
    w4, b4 = weight(k, 30, 10), weight(k, 1, 10)
    images = torch.rand(BATCH, k, 16, 16, generator=generator) * 2 - 1  # network i: channel i
    labels = torch.randint(0, 10, (k * BATCH,), generator=generator)
    parameters = (w1, b1, w2, b2, w3, b3, w4, b4)

    def step() -> None:
        h1 = torch.relu(F.conv2d(F.pad(images, PAD, value=-1.0), w1, stride=STRIDE, groups=k)
                        + b1)
        h2 = torch.relu(F.conv2d(F.pad(h1, PAD), w2, stride=STRIDE, groups=k) + b2)
        h3 = torch.relu(torch.baddbmm(b3, h2.reshape(BATCH, k, 192).transpose(0, 1), w3))
        logits = torch.baddbmm(b4, h3, w4).reshape(k * BATCH, 10)
        # Each network's own mean loss; summed, each gets its own gradient.
        loss = F.cross_entropy(logits, labels, reduction="sum") / BATCH
        for p in parameters:
            p.grad = None
        loss.backward()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps timed per figure")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    with torch_threads(1):
        trainer = trainer_step()
        rows = [("trainer (AdamW, dropout, shifts)", trainer)]
        rows.append(("forward + backward, 1 network", stacked_step(1, args.steps)))
        rows += [(f"{k} stacked, per network", stacked_step(k, args.steps)) for k in (2, 5, 10)]
    print(f"one thread; mini-batches of {BATCH}; ms per network and step")
    print()
    print("| what | ms per step | vs the trainer |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {1e3 * seconds:.2f} | {seconds / trainer:.2f}x |")


if __name__ == "__main__":
    main()
