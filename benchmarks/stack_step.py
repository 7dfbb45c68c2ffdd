"""How much of one step of a five-network stack its two convolutions and its augmentation
take, against the whole step.

    LENET1_DATA=... python benchmarks/stack_step.py [--passes 2] [--repeats 200]

All on one thread, in one run, one measurement after another. The recipe is the modern study's
final one as it trains (mini-batches of 32, AdamW, ReLU, dropout, shifts of up to one pixel,
rotation up to 10 degrees and scaling up to 10%), five seeds in one stack as the study trains
them:

- ``the whole step``: :func:`lenet1.train.stacked.train_stacked`, the wall time of ``--passes``
  passes less that of one (which pays the evaluation of a few digits), per mini-batch step,
  after an untimed pass;
- ``H1 and H2 convolutions``: the stack's two grouped convolutions alone (the shapes and the
  channels-last layout of :class:`lenet1.train.stacked._Stack`'s, the input already padded,
  the weights already masked), forward and backward with channels-last gradients, each with
  its weights' gradient and H2 with its input's, ``--repeats`` times;
- ``augmentation``: :func:`lenet1.augment.augment_stack` on a stack's mini-batches,
  ``--repeats`` times.

``the rest`` is the step less the two: the padding and the H2 mask, the units and dropout, H3's
and the output's batched products, the loss, the optimiser, the data, and PyTorch's bookkeeping
of all those operators.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lenet1.augment import augment_stack
from lenet1.experiments.recipes import initial_network
from lenet1.nets import PAD_AFTER, PAD_BEFORE, STRIDE
from lenet1.threads import torch_threads
from lenet1.train.stacked import train_stacked
from minibatch_step import RECIPE as STEP_6  # benchmarks/, beside this file
from minibatch_step import seconds_per_step, training_digits

# The study's step 6 (minibatch_step.py's recipe) with the rotation and scaling step 7 chose.
RECIPE = STEP_6.changed({"rotate": 10.0, "scale": 0.1})
MEMBERS, MAPS = 5, 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=2, help="passes of the whole step (>= 2)")
    parser.add_argument("--repeats", type=int, default=200,
                        help="repeats of the convolutions and of the augmentation")
    parser.add_argument("--digits", type=int, default=None,
                        help="train on the first N training digits (default: all 7,291)")
    args = parser.parse_args()
    if args.passes < 2:
        parser.error(f"--passes must be at least 2 (one pass is subtracted), got {args.passes}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    digits = training_digits(parser, args.digits)
    few = digits.subset(slice(0, 10))  # the evaluation is not timed: keep it small
    batch = RECIPE.batch_size
    steps = -(-len(digits) // batch)

    def stacked(passes: int) -> None:
        recipe = RECIPE.changed({"passes": passes})
        train_stacked([initial_network(recipe, seed) for seed in range(MEMBERS)],  # type: ignore[misc]
                      digits, few, [recipe.modern_config(seed) for seed in range(MEMBERS)],
                      record_every=False)

    with torch_threads(1):
        step = seconds_per_step(stacked, args.passes, steps)
        convolutions = _repeated(_convolutions(batch), args.repeats)
        # a stack's mini-batches: the first digits, over again if there are fewer
        firsts = torch.arange(MEMBERS * batch) % len(digits)
        augmentation = _repeated(_augmentation(digits.images[firsts]), args.repeats)
    rows = [("the whole step", step), ("H1 and H2 convolutions, forward and backward",
                                        convolutions),
            ("augmentation (shifts, rotation and scaling)", augmentation),
            ("the rest", step - convolutions - augmentation)]
    print(f"one thread; a stack of {MEMBERS} networks; {len(digits)} digits in mini-batches of "
          f"{batch}")
    print()
    print("| part | ms per stack step | share of the step |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {1e3 * seconds:.2f} | {100 * seconds / step:.0f}% |")


def _repeated(work: Callable[[], object], repeats: int) -> float:
    """Seconds per call of ``work``, after a few untimed calls."""
    for _ in range(5):
        work()
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - start) / repeats


def _convolutions(batch: int) -> Callable[[], None]:
    """The stack's two grouped convolutions with :class:`~lenet1.train.stacked._Stack`'s shapes
    and layout, forward and backward."""
    last = torch.channels_last
    generator = torch.Generator().manual_seed(0)
    maps = MEMBERS * MAPS
    side = 16 + PAD_BEFORE + PAD_AFTER
    images = torch.rand(batch, MEMBERS, side, side, generator=generator).contiguous(
        memory_format=last)
    w1 = torch.rand(maps, 1, 5, 5, generator=generator).requires_grad_()
    h1 = torch.rand(batch, 8, 8, maps, generator=generator).requires_grad_()
    w2 = torch.rand(maps, MAPS, 5, 5, generator=generator).requires_grad_()

    def work() -> None:
        a1 = F.conv2d(images, w1.contiguous(memory_format=last), stride=STRIDE, groups=MEMBERS)
        a2 = F.conv2d(h1.permute(0, 3, 1, 2), w2.contiguous(memory_format=last), stride=STRIDE,
                      padding=PAD_BEFORE, groups=MEMBERS)
        # gradients laid out as the outputs (channels last), as the step's arrive
        torch.autograd.backward([a1, a2], [torch.ones_like(a1), torch.ones_like(a2)])

    return work


def _augmentation(images: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A stack's mini-batches augmented as the recipe's members augment them."""
    batches = images.view(MEMBERS, -1, 1, 16, 16)
    augmentations = [RECIPE.modern_config(seed).augmentation() for seed in range(MEMBERS)]
    generators = [torch.Generator().manual_seed(seed) for seed in range(MEMBERS)]
    return lambda: augment_stack(batches, augmentations, generators)


if __name__ == "__main__":
    main()
