"""Several networks trained online at once: :func:`~lenet1.train.replicas.train_replicas`.

The replicas run on :class:`~lenet1.engine.ReplicaEngine`, which gives every network exactly
the numbers :func:`~lenet1.train.online.train_online` gives it alone on
:class:`~lenet1.engine.FastEngine`; this module only decides how they share the cores, so it is
not part of the code key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..data import Digits
from .online import History, PassRecord, StepRule, _online_loop


def train_replicas(models: Sequence[nn.Module], train: Digits, test: Digits, passes: int,
                   rules: Sequence[StepRule],
                   on_pass: Callable[[int, PassRecord], None] | None = None,
                   threads: int | None = None, stop_on_divergence: bool = True,
                   group_cost: float | None = None, record_every: bool = True,
                   shuffle_seed: int | None = None) -> list[History]:
    """:func:`~lenet1.train.online.train_online` for several networks at once, one step rule each, on the compiled
    :class:`~lenet1.engine.ReplicaEngine`.

    Returns one :class:`~lenet1.train.online.History` per model, the one
    ``train_online(model, train, test, passes, rule, engine=FastEngine())`` gives; ``on_pass``
    sees the replica's index and the record. A replica whose training MSE is no longer finite
    has diverged: with ``stop_on_divergence`` (the default, as ``train_online`` does) a
    FloatingPointError is raised; without, that replica leaves the run and its history ends
    there. ``group_cost``: see :class:`~lenet1.engine.ReplicaEngine` (speed only).
    ``record_every``, ``shuffle_seed``: as for ``train_online`` (the replicas share the orders).
    """
    from ..engine.schedule import ReplicaEngine

    models, rules = list(models), list(rules)
    if len(models) != len(rules):
        raise ValueError(f"{len(models)} models but {len(rules)} step rules")
    engine = ReplicaEngine(threads, group_cost)

    def train_pass(live: list[nn.Module], steps: list[dict[str, Tensor]],
                   patterns: Digits) -> list[float | None]:
        engine.train_pass(live, patterns.images, patterns.targets, steps)
        return engine.last_losses

    return _online_loop(models, train, test, passes, rules, train_pass, on_pass,
                        threads=engine.cores(), stop_on_divergence=stop_on_divergence,
                        record_every=record_every, shuffle_seed=shuffle_seed)
