"""Many networks' online passes at once (:class:`~lenet1.engine.schedule.ReplicaEngine`), spread over the cores as
lane groups and single passes.

This module decides only which kernel trains which network and on which thread, never a
number: every replica gets exactly the numbers :class:`~lenet1.engine.fast.FastEngine` gives
it alone (``tests/test_engine.py``), so it is not part of the code key."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numba
import numpy as np
import torch
from torch import Tensor, nn

from ..nets import MAPS, ShapeError
from ..threads import in_parallel
from .fast import _run_one
from .intrinsics import LANES
from .lanes import _lenet1_lanes
from .marshal import LENET1_NAMES, TRANSPOSED, _Net, _patterns
from .single import _fc_pass, _lenet1_pass

# (The ignores: numba's Dispatcher is typed with the kernel's own signature, which mypy cannot
# match against the star-arguments.)


def _max_threads() -> int:
    """The most threads numba may use (NUMBA_NUM_THREADS, by default the CPU count)."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def _single_jobs(images: np.ndarray, targets: np.ndarray, params: list[np.ndarray],
                 steps: list[np.ndarray], nets: list[_Net], losses: np.ndarray,
                 replicas: range) -> list[Callable[[], None]]:
    """A job for each of ``replicas`` (stacked in ``params`` and ``steps``, replica first):
    the single network's pass, as FastEngine runs it."""
    def one(r: int) -> None:
        net = nets[r]
        arrays = [p[r] for p in params] + [s[r] for s in steps]
        kernel = _lenet1_pass if net.is_lenet1 else _fc_pass
        losses[r] = kernel(images, targets, *arrays, *net.constants)  # type: ignore[call-arg]

    return [partial(one, r) for r in replicas]


def measured_group_cost(patterns: int = 256, repeats: int = 3) -> float:
    """What a group of 8 lanes costs, in single-network passes on one core, measured on this
    machine: the best of ``repeats`` timings of each kernel on ``patterns`` random digits.

    The lanes do the same arithmetic per network as the single pass, but the single pass is
    bound by its short loops' overheads and the lanes by arithmetic, so the ratio depends on the
    processor (2.7-3.3 where this was written). It only decides which kernel trains which
    replica, never the numbers. Measured once per process (some 50 ms), and only when a
    :class:`~lenet1.engine.schedule.ReplicaEngine` is not given one.
    """
    global _GROUP_COST
    if _GROUP_COST is None:
        from ..nets import LeNet1, block_table

        generator = torch.Generator().manual_seed(0)
        images = torch.rand(patterns, 1, 16, 16, generator=generator) * 2 - 1
        targets = torch.full((patterns, 10), -1.0)
        with torch.random.fork_rng():  # the caller's random stream is left as it was
            torch.manual_seed(0)
            model = LeNet1(block_table())
        zero = {name: torch.tensor(0.0) for name, _ in model.named_parameters()}
        x, t = _patterns(images, targets)
        net = _Net(model, zero)
        count = len(net.arrays)
        params = [np.stack([net.arrays[i]] * LANES) for i in range(count)]
        steps = [np.stack([net.steps[i]] * LANES) for i in range(count)]
        losses = np.zeros(LANES, np.float64)

        def best(job: Callable[[], object]) -> float:
            job()  # compiled (or loaded from numba's cache) before timing
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                job()
                times.append(time.perf_counter() - start)
            return min(times)

        jobs, _ = _lane_groups(x, t, params, steps, [net] * LANES, losses)
        _GROUP_COST = best(jobs[0]) / best(lambda: _run_one(net, x, t))
    return _GROUP_COST


_GROUP_COST: float | None = None


def _lane_count(replicas: int, cores: int, group_cost: float) -> int:
    """How many of the LeNet-1 replicas go to the lane kernel (the first ones), the rest
    taking the single pass, when a group costs ``group_cost`` single passes. Whole groups of 8
    always pay; a remainder of fewer networks than a group costs runs alone (10 on two cores: a
    group of 8 on one, two single passes on the other). All is kept only if its estimated time
    beats single passes for everyone."""
    whole = replicas - replicas % LANES
    lanes = whole if replicas % LANES < group_cost else replicas
    groups, singles = _group_count(lanes), replicas - lanes
    mixed = max(-(-groups // cores) * group_cost, (groups * group_cost + singles) / cores)
    return lanes if lanes and mixed < -(-replicas // cores) else 0


def _group_count(replicas: int) -> int:
    return -(-replicas // LANES)


def _lane_groups(images: np.ndarray, targets: np.ndarray, params: list[np.ndarray],
                 steps: list[np.ndarray], nets: Sequence[_Net], losses: np.ndarray
                 ) -> tuple[list[Callable[[], None]], Callable[[], None]]:
    """Jobs that train the LeNet-1 replicas stacked in ``params`` and ``steps`` (replica
    first, the kernels' layout) in groups of up to 8 lanes, one job a group, and a function
    to call once they are done: it writes the results back into ``params`` and the loss sums
    into ``losses``. The replicas are split into groups as evenly as possible
    (10 on two groups: 5 and 5), the rest of each group's lanes dummies: zero weights and
    steps, units of slope and amplitude 1."""
    replicas = len(nets)
    groups = [np.asarray(g) for g in np.array_split(np.arange(replicas),
                                                     _group_count(replicas))]

    def to_lanes(stack: np.ndarray, name: str) -> np.ndarray:
        if name in TRANSPOSED:
            stack = stack[..., :MAPS]              # the lane kernel has no padding maps
        lanes = np.zeros((len(groups), *stack.shape[1:], LANES), np.float32)
        for g, members in enumerate(groups):
            lanes[g, ..., :len(members)] = np.moveaxis(stack[members], 0, -1)
        return lanes

    def per_lane(values: np.ndarray, dummy: float) -> np.ndarray:
        lanes = np.full((len(groups), LANES), dummy, values.dtype)
        for g, members in enumerate(groups):
            lanes[g, :len(members)] = values[members]
        return lanes

    lane_params = [to_lanes(p, name) for p, name in zip(params, LENET1_NAMES)]
    lane_steps = [to_lanes(s, name) for s, name in zip(steps, LENET1_NAMES)]
    lane_losses = np.zeros((len(groups), LANES), np.float64)
    def constant(name: str) -> np.ndarray:
        return np.array([getattr(net, name) for net in nets], np.float32)

    lane_constants = (per_lane(constant("background"), 0.0), per_lane(constant("amp"), 1.0),
                      per_lane(constant("slope"), 1.0), per_lane(constant("out_amp"), 1.0),
                      per_lane(constant("out_slope"), 1.0))
    input_background = nets[0].input_background

    def group(g: int) -> None:
        _lenet1_lanes(images, targets,  # type: ignore[call-arg]
                      *[a[g] for a in lane_params], *[s[g] for s in lane_steps],
                      *[c[g] for c in lane_constants], input_background, lane_losses[g])

    def finish() -> None:
        for g, members in enumerate(groups):
            for stack, lanes, name in zip(params, lane_params, LENET1_NAMES):
                values = np.moveaxis(lanes[g, ..., :len(members)], -1, 0)
                if name in TRANSPOSED:
                    stack[members, :, :MAPS] = values
                else:
                    stack[members] = values
            losses[members] = lane_losses[g, :len(members)]

    return [partial(group, g) for g in range(len(groups))], finish


class ReplicaEngine:
    """Runs one online pass for several independent networks at once, each on the same
    patterns in the same order, with its own weights and step sizes.

    The networks must be all LeNet1 or all FullyConnected40 with the same parameter shapes;
    their units, connection tables and backgrounds may differ. Each gets exactly the numbers
    :class:`~lenet1.engine.fast.FastEngine` would give it alone. Enough LeNet-1s per core are trained eight to a
    vector (see the module's docstring). ``threads`` caps the cores used (default: as many as
    numba may use, at most one per group or network). ``group_cost``: what a group of 8 lanes
    costs in single passes (default: :func:`measured_group_cost`); it decides only which kernel
    trains which network, never the numbers.
    """

    def __init__(self, threads: int | None = None, group_cost: float | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        if group_cost is not None and not (isinstance(group_cost, (int, float))
                                           and math.isfinite(group_cost) and group_cost > 0):
            raise ValueError(f"group_cost must be a positive number, got {group_cost!r}")
        self.threads = threads
        self.group_cost = group_cost
        self.last_losses: list[float | None] = []

    def cores(self) -> int:
        """The threads a pass runs on: ``threads``, at most as many as numba may use."""
        return min(self.threads or _max_threads(), _max_threads())

    def train_pass(self, models: Sequence[nn.Module], images: Tensor, targets: Tensor,
                   step_sizes: Sequence[Mapping[str, Tensor]]) -> None:
        if len(models) == 0:
            raise ValueError("no models to train")
        if len(step_sizes) != len(models):
            raise ValueError(f"{len(models)} models but {len(step_sizes)} sets of step sizes")
        if len({id(model) for model in models}) != len(models):
            raise ValueError("the same model appears twice among the replicas")
        x, t = _patterns(images, targets)
        nets = [_Net(model, steps) for model, steps in zip(models, step_sizes)]
        first = nets[0]
        for index, net in enumerate(nets[1:], start=1):
            if net.is_lenet1 != first.is_lenet1 or any(
                    a.shape != b.shape for a, b in zip(net.arrays, first.arrays)):
                raise ShapeError(f"replica {index} is not the same architecture as replica 0 "
                                 f"({type(net.model).__name__} vs {type(first.model).__name__})")
        if len(x) == 0:
            self.last_losses = [None] * len(nets)
            return
        count = len(nets[0].arrays)
        params = [np.stack([net.arrays[i] for net in nets]) for i in range(count)]
        steps = [np.stack([net.steps[i] for net in nets]) for i in range(count)]
        if len({float(net.input_background) for net in nets}) > 1:
            raise ValueError("replicas see the same input patterns, so they must share the "
                             "input's background; train the others in a group of their own")
        losses = np.zeros(len(nets), np.float64)
        cores = self.cores()
        lanes = (_lane_count(len(nets), cores, self.group_cost or measured_group_cost())
                 if first.is_lenet1 else 0)
        jobs: list[Callable[[], None]] = []
        finish: Callable[[], None] | None = None
        if lanes:
            # Eight networks to a vector; the groups' jobs first, as they are the longest.
            jobs, finish = _lane_groups(x, t, [p[:lanes] for p in params],
                                        [s[:lanes] for s in steps], nets[:lanes],
                                        losses[:lanes])
        jobs += _single_jobs(x, t, params, steps, nets, losses, range(lanes, len(nets)))
        in_parallel(jobs, cores)
        if finish is not None:
            finish()
        for index, net in enumerate(nets):
            net.write_back([array[index] for array in params])
        self.last_losses = [float(total) / len(x) for total in losses]


