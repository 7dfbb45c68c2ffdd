"""What writing the modern network's tanh units with a sigmoid buys: torch's tanh, element by
element, against ``lenet1.nets._unit``'s ``2 A sigmoid(2 S a) - A``, alone and in training.

    LENET1_DATA=... python benchmarks/tanh_units.py [--passes 2] [--rounds 3] [--digits N]

All on one thread, in this one run, so the ratios hold on a shared machine:

- the unit alone on one mini-batch's H1 sums of a stack of five (32 x 8 x 8 x 60);
- stacks of five networks (seeds 0-4) of the modern study's tanh steps (1: mini-batches, 4:
  AdamW, 5: shifts), each trained for ``--passes`` passes with torch's tanh and with the
  sigmoid, the two in turn ``--rounds`` times (alternating which goes first), summed, on
  the first ``--digits`` training digits (default all 7,291).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

import lenet1.nets as nets
import lenet1.train.stacked as stacked
from lenet1.experiments.modern import STEPS
from lenet1.experiments.recipes import PAPER_RECIPE, FULL, Recipe, initial_network, study_sets
from lenet1.threads import torch_threads

#: The choices the study made at steps 1, 3 and 4 (its printed tables).
CHOSEN = {"minibatch": {"lr": 0.48}, "cross_entropy": {"lr": 0.1}, "adamw": {"lr": 3e-3}}
TIMED = ("minibatch", "adamw", "translate")


def torch_tanh_unit(a: Tensor, unit: str) -> Tensor:
    return torch.relu(a) if unit == "relu" else nets.activation(a, unit)  # type: ignore[arg-type]


def torch_tanh_squash(logits: Tensor, unit: str) -> Tensor:
    return torch_tanh_unit(logits, "tanh" if unit == "tanh" else "scaled_tanh")


UNITS: dict[str, tuple[Callable[[Tensor, str], Tensor], Callable[[Tensor, str], Tensor]]] = {
    "torch tanh": (torch_tanh_unit, torch_tanh_squash),
    "sigmoid": (nets._unit, nets._squash),
}


def use(name: str) -> None:
    unit, squash = UNITS[name]
    for module in (nets, stacked):
        module._unit, module._squash = unit, squash  # type: ignore[attr-defined]


def recipes() -> dict[str, Recipe]:
    recipe, out = PAPER_RECIPE, {}
    for step in STEPS[1:6]:
        recipe = recipe.changed(dict(step.changes)).changed(CHOSEN.get(step.name, {}))
        out[step.name] = recipe
    return out


def unit_alone(repeats: int = 300) -> dict[str, float]:
    sums = torch.randn(32, 8, 8, 60)
    seconds = {}
    for name, (unit, _) in UNITS.items():
        for _ in range(20):
            unit(sums, "scaled_tanh")
        start = time.perf_counter()
        for _ in range(repeats):
            unit(sums, "scaled_tanh")
        seconds[name] = (time.perf_counter() - start) / repeats
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--digits", type=int, default=None)
    args = parser.parse_args()
    if args.passes < 1 or args.rounds < 1 or (args.digits is not None and args.digits < 1):
        parser.error("--passes, --rounds and --digits must be at least 1")
    train, test = study_sets(FULL)["test"]
    if args.digits is not None:
        train = train.subset(slice(0, args.digits))
    chosen = recipes()
    with torch_threads(1):
        alone = unit_alone()
        print("the scaled tanh unit on 32 x 8 x 8 x 60 sums: "
              + ", ".join(f"{name} {1e6 * s:.0f} us" for name, s in alone.items())
              + f" (ratio {alone['sigmoid'] / alone['torch tanh']:.2f})")
        total = dict.fromkeys(UNITS, 0.0)
        for round_index in range(args.rounds):
            order = list(UNITS) if round_index % 2 == 0 else list(reversed(UNITS))
            for step in TIMED:
                recipe = chosen[step]
                for name in order:
                    use(name)
                    models = [initial_network(recipe, seed) for seed in range(5)]
                    configs = [recipe.modern_config(seed) for seed in range(5)]
                    start = time.perf_counter()
                    stacked.train_stacked(models, train, test, configs,  # type: ignore[arg-type]
                                          train_every=False, until=args.passes)
                    total[name] += time.perf_counter() - start
        use("sigmoid")
    print(f"stacks of five, steps {', '.join(TIMED)}, {args.passes} passes, {args.rounds} "
          f"rounds: " + ", ".join(f"{name} {s:.1f} s" for name, s in total.items())
          + f" (ratio {total['sigmoid'] / total['torch tanh']:.3f})")


if __name__ == "__main__":
    main()
