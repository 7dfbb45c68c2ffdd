"""Many runs at once: seeds, sweeps and their summaries.

:func:`cached_runs` returns one run folder per configuration, training only those not already
saved (under :func:`lenet1.runs.runs_root`, keyed by configuration and source code). The missing
runs that can share a pass (same data, set split, passes and network shape, fast engine) are
trained together as replicas, which gives each the numbers it would get alone.

:func:`summarise` turns the runs' histories into mean, standard deviation and range per pass;
:func:`rejection_figures` measures the rejection needed for 1% error, with the threshold set on
the test set itself (as the paper did) or on held-out training digits.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .data import Digits
from .rejection import RejectionPoint, at_threshold, rejection_for_error
from .runs import (
    RUN_FILES,
    Run,
    RunConfig,
    cached_run,
    fit_and_evaluation_sets,
    make_model,
    make_rule,
    run_folder,
    save_run_atomically,
)
from .train import History, predict

METRICS = ("mse", "error", "misses")
SETS = ("train", "test")


def _replica_group(config: RunConfig) -> tuple[object, ...]:
    # Replicas share the patterns (data, split) and the number of passes; their units, tables
    # and step rules may differ.
    return (config.data, config.model, config.passes, config.holdout, config.holdout_seed)


def cached_runs(configs: Sequence[RunConfig], root: str | Path | None = None,
                data_root: str | None = None,
                progress: Callable[[str], None] | None = None, batch: int | None = None,
                stop_on_divergence: bool = True) -> list[Run]:
    """One run per configuration, in order: reloaded if saved, else trained now and saved.

    Missing fast-engine runs that share data and shape are trained together as replicas,
    ``batch`` at a time (default: all at once; a smaller batch saves progress more often).
    With ``stop_on_divergence=False`` a replica whose loss blows up does not stop the others:
    its run is saved with the history up to the pass where it diverged, as a sweep needs.
    """
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    runs: dict[int, Run] = {}
    missing: dict[tuple[object, ...], list[int]] = {}
    for index, config in enumerate(configs):
        folder = run_folder(config, root)
        if config.engine == "fast" and not all((folder / f).is_file() for f in RUN_FILES):
            missing.setdefault(_replica_group(config), []).append(index)
        else:
            runs[index] = cached_run(config, root, data_root)
    for indices in missing.values():
        from .engine import train_replicas

        train, evaluation = fit_and_evaluation_sets(configs[indices[0]], data_root)
        size = batch or len(indices)
        for start in range(0, len(indices), size):
            chunk = indices[start:start + size]
            group = [configs[i] for i in chunk]
            if progress is not None:
                progress(f"training {len(group)} replicas: {group[0].model}, "
                         f"{group[0].passes} passes, holdout {group[0].holdout}")
            models = [make_model(config) for config in group]
            histories = train_replicas(models, train, evaluation, group[0].passes,
                                       [make_rule(config) for config in group],
                                       stop_on_divergence=stop_on_divergence)
            for index, config, model, history in zip(chunk, group, models, histories):
                runs[index] = save_run_atomically(run_folder(config, root), config, model,
                                                  history)
    return [runs[i] for i in range(len(configs))]


def seeds(config: RunConfig, count: int, first: int = 0) -> list[RunConfig]:
    """``config`` with seeds ``first`` .. ``first + count - 1``."""
    return [replace(config, seed=seed) for seed in range(first, first + count)]


@dataclass(frozen=True)
class Spread:
    """A figure over seeds: mean, sample standard deviation and range."""

    mean: float
    std: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        numbers = [float(v) for v in values]
        if not numbers:
            raise ValueError("no values to summarise")
        std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        return cls(statistics.fmean(numbers), std, min(numbers), max(numbers), len(numbers))

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        return (f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f} "
                f"[{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]")


def summarise(histories: Sequence[History]) -> list[dict[str, Spread]]:
    """Per pass, the spread over runs of every figure (``train_mse``, ``test_misses``...).

    All histories must cover the same passes."""
    if not histories:
        raise ValueError("no histories to summarise")
    lengths = {len(h.passes) for h in histories}
    if len(lengths) != 1:
        raise ValueError(f"the histories cover different numbers of passes: {sorted(lengths)}")
    table = []
    for records in zip(*(h.passes for h in histories)):
        row = {f"{which}_{metric}": Spread.of(getattr(getattr(r, which), metric)
                                              for r in records)
               for which in SETS for metric in METRICS}
        table.append(row)
    return table


def final_spreads(runs: Sequence[Run]) -> dict[str, Spread]:
    return summarise([run.history for run in runs])[-1]


@dataclass(frozen=True)
class RejectionFigures:
    """The rejection needed for 1% test error, two ways."""

    on_test: RejectionPoint  # threshold chosen on the test set itself (the paper's way)
    held_out: RejectionPoint | None  # threshold chosen on held-out training digits, applied
    # to the test set (None when the run saw every training digit)


def rejection_figures(run: Run, test: Digits, target: float = 0.01,
                      held_out: Digits | None = None) -> RejectionFigures:
    outputs = predict(run.model, test.images)
    on_test = rejection_for_error(outputs, test.labels, target)
    honest = None
    if held_out is not None:
        threshold = rejection_for_error(predict(run.model, held_out.images), held_out.labels,
                                        target).threshold
        honest = at_threshold(outputs, test.labels, threshold)
    return RejectionFigures(on_test, honest)


__all__ = ["RejectionFigures", "Spread", "cached_runs", "final_spreads", "rejection_figures",
           "seeds", "summarise"]
