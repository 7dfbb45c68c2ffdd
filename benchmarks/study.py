"""What the book's two studies cost from cold, against one network trained alone.

    LENET1_DATA=... python benchmarks/study.py [--quick] [--which paper modern]

Each study runs in a fresh, temporary runs folder (nothing reloaded), as on a fresh clone; then
one network of the same kind is trained alone in another. Everything is measured in this one
run, so the ratios (networks per second together against alone) hold on a shared machine even
when the seconds do not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter

from lenet1.experiments import cache, recipes
from lenet1.experiments.modern import STEPS, run_study
from lenet1.experiments.paper import base_config, plan_for, run_all
from lenet1.experiments.runs import train_run
from lenet1.threads import torch_threads


def _networks(root: str) -> Counter[str]:
    return Counter(path.parts[0] for path in cache.entries(root))


def paper(quick: bool) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        run_all(quick=quick, root=root, progress=None)
        seconds = time.perf_counter() - start
        count = sum(_networks(root).values())
    plan = plan_for(quick)
    # One LeNet-1 alone, the protocol's way (every pass evaluated), on the compiled engine.
    start = time.perf_counter()
    train_run(base_config("lenet1", "sgd", plan))
    return seconds, count, time.perf_counter() - start


def modern(quick: bool) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        run_study(quick=quick, root=root, seeds=(0, 1) if quick else (0, 1, 2, 3, 4))
        seconds = time.perf_counter() - start
        count = sum(_networks(root).values())
    scale = recipes.QUICK if quick else recipes.FULL
    # One network alone: the last step's recipe (mini-batches; its open choices at their first
    # candidate), seed 0, on one thread.
    from lenet1.experiments.modern import recipes as step_recipes

    last = step_recipes(STEPS)[-1]
    with tempfile.TemporaryDirectory() as root, torch_threads(1):
        start = time.perf_counter()
        recipes.Runner(root, recipes.study_sets(scale), scale).run(last, 0, "test")
        alone = time.perf_counter() - start
    return seconds, count, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick plans (a smoke test)")
    parser.add_argument("--which", nargs="+", choices=("paper", "modern"),
                        default=["paper", "modern"])
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; plans: {'quick' if args.quick else 'full'}")
    print()
    print("| study | networks | wall time from cold | networks/min | one network alone | "
          "speed-up over one at a time |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.which:
        seconds, count, alone = (paper if name == "paper" else modern)(args.quick)
        print(f"| {name} | {count} | {seconds / 60:.1f} min | {60 * count / seconds:.1f} | "
              f"{alone:.1f} s | {count * alone / seconds:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
