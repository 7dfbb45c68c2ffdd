"""What the book's two studies cost from cold, against one network trained alone, and on a
Dask cluster beside this machine's own pool.

    LENET1_DATA=... python benchmarks/study.py [--quick] [--which paper modern]
                                                [--scheduler local:2]

Each study runs in a fresh, temporary runs folder (nothing reloaded), as on a fresh clone; then
one network of the same kind is trained alone in another. With ``--scheduler``, each study is
also run from cold on that Dask scheduler (``local:N`` starts a LocalCluster of N processes on
127.0.0.1; its start-up counts), and the table gives its wall time over the default's. Every
figure is measured in this one run, so the ratios hold on a shared machine even when the
seconds do not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lenet1.data import load
from lenet1.experiments import cache, recipes
from lenet1.experiments.modern import STEPS, recipes as step_recipes, run_study, study_seeds
from lenet1.experiments.paper import base_config, plan_for, run_all
from lenet1.experiments.runs import train_run


def _networks(root: str) -> int:
    """Trained networks under ``root``: an online run, or one network of a modern stack."""
    count = 0
    for entry in cache.entries(root):
        members = [p for p in (Path(root) / entry).iterdir() if p.is_dir()]
        count += len(members) or 1
    return count


def _from_cold(study: Callable[[str], object]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        study(root)
        seconds = time.perf_counter() - start
        return seconds, _networks(root)


def paper(quick: bool, scheduler: str | None) -> tuple[float, int]:
    return _from_cold(lambda root: run_all(quick=quick, root=root, progress=None,
                                           scheduler=scheduler))


def paper_alone(quick: bool) -> float:
    # One LeNet-1 alone, the protocol's way (every pass evaluated), on the compiled engine.
    start = time.perf_counter()
    train_run(base_config("lenet1", "sgd", plan_for(quick)))
    return time.perf_counter() - start


def modern(quick: bool, scheduler: str | None) -> tuple[float, int]:
    return _from_cold(lambda root: run_study(study_seeds(quick), quick=quick, root=root,
                                             scheduler=scheduler))


def modern_alone(quick: bool) -> float:
    # One network alone: the last step's recipe (mini-batches; its open choices at their first
    # candidate), seed 0, a stack of one, on one thread.
    scale = recipes.QUICK if quick else recipes.FULL
    last = step_recipes(STEPS)[-1]
    stack = recipes.stack_of(last, 0, "test", scale)
    sets = recipes.study_sets(scale, split=load("usps"))
    start = time.perf_counter()
    recipes.train_stack(recipes.Stack((stack.recipe,), (0,), "test"), sets)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick plans (a smoke test)")
    parser.add_argument("--which", nargs="+", choices=("paper", "modern"),
                        default=["paper", "modern"])
    parser.add_argument("--scheduler", default=None,
                        help="also run each study on this Dask scheduler (e.g. local:2)")
    args = parser.parse_args()
    os.environ.pop("LENET1_SCHEDULER", None)  # the default rows are this machine's own pool
    print(f"cores: {os.cpu_count()}; plans: {'quick' if args.quick else 'full'}")
    print()
    print("| study | where | networks | wall time from cold | networks/min | "
          "one network alone | speed-up over one at a time | wall time over the default |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.which:
        study, alone = (paper, paper_alone) if name == "paper" else (modern, modern_alone)
        seconds, count = study(args.quick, None)
        single = alone(args.quick)
        rows = [("default", seconds, count)]
        if args.scheduler:
            dask_seconds, dask_count = study(args.quick, args.scheduler)
            rows.append((f"Dask {args.scheduler}", dask_seconds, dask_count))
        for where, wall, networks in rows:
            print(f"| {name} | {where} | {networks} | {wall / 60:.1f} min | "
                  f"{60 * networks / wall:.1f} | {single:.1f} s | "
                  f"{networks * single / wall:.1f}x | {wall / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
