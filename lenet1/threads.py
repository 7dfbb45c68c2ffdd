"""Running small work on the cores: a torch thread setting for a block, and jobs on threads.

The compiled passes and torch's operators release the GIL, so Python threads run them side by
side; each job sees the numbers it would see alone.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import torch


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Batch-1 work is fastest on one thread: the arithmetic is too small to split."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


P = ParamSpec("P")
R = TypeVar("R")


def on_one_thread(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run with torch on one thread, whatever the caller set: a sum over a batch
    is then added in one order on every machine and in every worker, so a run's numbers do
    not depend on the thread count it happened to be given."""
    @functools.wraps(function)
    def pinned(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch_threads(1):
            return function(*args, **kwargs)

    return pinned


def in_parallel(jobs: Sequence[Callable[[], None]], threads: int) -> None:
    """Run the jobs on up to ``threads`` Python threads, or one after another on this thread
    when there is one thread or one job. An exception in a job is raised here."""
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
