"""Where networks are trained: in this process, in worker processes, or on a Dask cluster.

A study hands an :class:`Executor` a list of *tasks* (a group of online replicas, a stack of
mini-batch networks) and a function that trains one; the executor runs them wherever it runs
things and yields each result as it comes. The function gets the digits and the task, nothing
else: no file is read on the worker, so a cluster needs no shared file system. The study (the
client) stores every result in its own cache, atomically (:func:`lenet1.experiments.cache.store`).

Every task carries the client's code key, and a worker whose package has another key refuses
it (:func:`lenet1.experiments.cache.check_code_key`): numbers made by other code are never
stored under this code's name. Which executor trains a task never changes its numbers (each
training function pins torch to one thread and depends only on its task and the digits;
``tests/test_reproducible.py`` trains the studies every way and compares the bytes).

- :class:`InProcess`: one task after another in this process (each may use ``threads``
  threads: the online replicas share the cores this way);
- :class:`Processes`: ``workers`` spawned processes on this machine, one thread each;
- :class:`DaskCluster`: the workers of a Dask scheduler (``--scheduler ADDRESS``), or a
  ``distributed.LocalCluster`` of N worker processes on 127.0.0.1 (``--scheduler local:N``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

from . import cache

SCHEDULER_VARIABLE = "LENET1_SCHEDULER"
LOCAL_PREFIX = "local:"
# Dask's nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536. Setting it at all turns
# off glibc's adaptive mmap threshold, so every array over 128 KiB (a pass's patterns, a batch
# of activations) is mapped and unmapped afresh: the online replicas then train at half speed
# (measured: 60.8 s for an 8-replica SDLM task with it, 29.8 s without). None unsets it for
# the workers of a local:N cluster; dask/lenet1.yaml does the same for `dask worker`.
WORKER_ENVIRONMENT = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}

# What every task sees besides itself: the digits (by data source, or by evaluation set).
Context = Mapping[str, Any]
TaskFunction = Callable[[Context, Any, int], Any]  # (digits, task, threads) -> result


class SchedulerError(RuntimeError):
    """No Dask scheduler answers, or the scheduler's address is not one."""


def run_task(function: TaskFunction, code: str, context: Context, task: Any,
             threads: int) -> Any:
    """What a worker runs: check that its code is the client's, then train."""
    cache.check_code_key(code)
    return function(context, task, threads)


class Executor(Protocol):
    """Runs tasks and yields ``(index, result)`` pairs as the tasks finish; each task may use
    ``threads`` threads."""

    workers: int
    threads: int
    description: str

    def run(self, function: TaskFunction, tasks: Sequence[Any], context: Context,
            code: str) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


class _Closing:
    """``with executor:`` closes it at the end."""

    def close(self) -> None:
        pass

    def __enter__(self: E) -> E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


E = TypeVar("E", bound=_Closing)


class InProcess(_Closing):
    """One task after another in this process; a task may use ``threads`` threads."""

    def __init__(self, threads: int = 1) -> None:
        self.workers = 1
        self.threads = threads
        self.description = "this process"

    def run(self, function: TaskFunction, tasks: Sequence[Any], context: Context,
            code: str) -> Iterator[tuple[int, Any]]:
        for index, task in enumerate(tasks):
            yield index, run_task(function, code, context, task, self.threads)


_WORKER_CONTEXT: Context = {}


def _install_context(context: Context) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


def _run_in_worker(function: TaskFunction, code: str, task: Any) -> Any:
    return run_task(function, code, _WORKER_CONTEXT, task, 1)


class Processes(_Closing):
    """``workers`` processes of this machine (spawned: a forked copy of a process that has
    started torch's thread pools can hang), one task and one thread each at a time. The
    digits are sent once to each process when it starts."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = 1
        self.description = f"{workers} worker process{'es' if workers > 1 else ''}"
        self._pool: ProcessPoolExecutor | None = None
        self._context_id: int | None = None

    def run(self, function: TaskFunction, tasks: Sequence[Any], context: Context,
            code: str) -> Iterator[tuple[int, Any]]:
        if self._pool is None or self._context_id != id(context):
            self.close()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=_install_context,
                                             initargs=(dict(context),))
            self._context_id = id(context)
        futures = {self._pool.submit(_run_in_worker, function, code, task): index
                   for index, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()  # a worker's error is raised here
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskCluster(_Closing):
    """The workers of a Dask cluster. ``address`` is a scheduler's (``tcp://host:8786``), or
    ``local:N`` to start a ``distributed.LocalCluster`` of N worker processes, one
    thread each, on 127.0.0.1 (closed with this executor). A task whose worker dies is run
    again on another (Dask's own retry); the digits are sent to every worker once.
    ``connect_timeout`` is how many seconds a scheduler's address is tried before giving up."""

    def __init__(self, address: str, log: Callable[[str], None] | None = None,
                 connect_timeout: float = 30.0) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - dask is a dependency
            raise SchedulerError("the Dask scheduler needs dask.distributed: "
                               "pip install 'dask[distributed]'") from None
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) \
                or not 0 < connect_timeout < math.inf:
            raise SchedulerError(f"connect_timeout must be a positive number of seconds, "
                                 f"got {connect_timeout!r}")
        self._cluster = None
        self.threads = 1
        if address.startswith(LOCAL_PREFIX):
            count = address[len(LOCAL_PREFIX):]
            if not count.isdigit() or int(count) < 1:
                raise SchedulerError(f"--scheduler local:N needs a number of workers >= 1, "
                                 f"got {address!r}")
            with dask.config.set(WORKER_ENVIRONMENT):
                self._cluster = LocalCluster(n_workers=int(count), threads_per_worker=1,
                                             processes=True, host="127.0.0.1",
                                             dashboard_address="127.0.0.1:0")
            self.client = Client(self._cluster)
            self.description = f"a local Dask cluster of {count} worker processes"
        else:
            try:
                self.client = Client(address, timeout=connect_timeout)
            except (OSError, ValueError, TypeError) as error:
                raise SchedulerError(f"no Dask scheduler answers at {address}: {error}") from None
            self.description = f"the Dask cluster at {address}"
        self.workers = max(1, sum(self.client.nthreads().values()))
        if log is not None:
            log(f"Dask: {self.description}; dashboard {self.client.dashboard_link}")
        self._scattered: tuple[int, Any] | None = None

    def run(self, function: TaskFunction, tasks: Sequence[Any], context: Context,
            code: str) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed as dask_completed

        def submit(index: int) -> Any:
            future = self.client.submit(run_task, function, code, self._digits(context),
                                        tasks[index], 1, pure=False)
            futures[future] = index
            return future

        futures: dict[Any, int] = {}
        for index in range(len(tasks)):
            submit(index)
        resubmitted = 0
        try:
            completed = dask_completed(list(futures))
            for future in completed:
                try:
                    result = future.result()
                except CancelledError:
                    # The digits were lost with a worker before every worker had its copy
                    # (the scheduler cancels what needs them): scatter them again, retry.
                    resubmitted += 1
                    if resubmitted > len(tasks):
                        raise
                    self._scattered = None
                    completed.add(submit(futures[future]))
                    continue
                yield futures[future], result
        finally:
            for future in futures:
                future.cancel()

    def _digits(self, context: Context) -> Any:
        """The context's future on the cluster, scattered to every worker once."""
        if self._scattered is None or self._scattered[0] != id(context):
            # In a list: a dict given alone would be scattered value by value.
            future, = self.client.scatter([dict(context)], broadcast=True, hash=False)
            self._scattered = (id(context), future)
        return self._scattered[1]

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def scheduler_from_environment(scheduler: str | None) -> str | None:
    """``scheduler``, else ``$LENET1_SCHEDULER``, else None (this machine)."""
    return scheduler or os.environ.get(SCHEDULER_VARIABLE) or None


def cluster_for(scheduler: str | None, log: Callable[[str], None] | None = None
                ) -> DaskCluster | None:
    """A Dask executor for ``scheduler`` (else ``$LENET1_SCHEDULER``); None if neither names
    one (the study then trains on this machine without Dask)."""
    address = scheduler_from_environment(scheduler)
    return DaskCluster(address, log) if address else None
