from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from lenet1.experiments.runs import RunConfig, fit_and_evaluation_sets
from lenet1.experiments.training import cached_runs, run_folder, split_for
from lenet1.experiments.stats import Spread, rejection_figures, summarise
from lenet1.train.online import History, Metrics, PassRecord

from .conftest import requires_data


def _history(test_misses: list[int]) -> History:
    return History([PassRecord(i, Metrics(0.1, 0.0, 0, 10), Metrics(0.2, m / 10, m, 10))
                    for i, m in enumerate(test_misses)])


def test_spread_statistics():
    spread = Spread.of([1.0, 2.0, 6.0])
    assert spread.mean == 3.0 and spread.low == 1.0 and spread.high == 6.0
    assert spread.std == pytest.approx(((4 + 1 + 9) / 2) ** 0.5)
    assert math.isnan(Spread.of([5.0]).std)  # undefined for one value, as in the modern study
    assert spread.format() == "3.00 ± 2.65 [1.00, 6.00]"
    with pytest.raises(ValueError):
        Spread.of([])


@pytest.mark.parametrize("count, most, workers, sizes", [
    (20, 16, 1, [16, 4]),  # one worker: full lane groups first
    (10, 8, 2, [5, 5]),  # two workers: each gets half rather than 8 and 2
    (17, 8, 2, [5, 4, 4, 4]),  # a multiple of the workers
    (16, 8, 2, [8, 8]),
    (3, 8, 4, [1, 1, 1]),
    (0, 8, 2, []),
])
def test_tasks_are_split_so_that_every_worker_gets_a_share(count, most, workers, sizes):
    items = list(range(count))
    parts = split_for(items, most, workers)
    assert [len(p) for p in parts] == sizes
    assert [i for p in parts for i in p] == items  # in order, each once
    with pytest.raises(ValueError):
        split_for(items, 0, workers)


def test_summarise_per_pass():
    table = summarise([_history([9, 5, 3]), _history([7, 5, 1])])
    assert len(table) == 3
    assert table[0]["test_misses"].mean == 8.0 and table[2]["test_misses"].low == 1.0
    assert table[1]["test_misses"].std == 0.0
    with pytest.raises(ValueError, match="different numbers of passes"):
        summarise([_history([1, 2]), _history([1])])


def test_cached_runs_train_replicas_once_and_match_single_runs(tmp_path):
    base = RunConfig(passes=1, engine="fast", holdout=0.9, holdout_seed=1)
    configs = [replace(base, seed=seed) for seed in range(2)] + [RunConfig(passes=1, engine="fast", holdout=0.9, holdout_seed=1,
                                          optimizer="sdlm", seed=5)]
    runs = cached_runs(configs, root=tmp_path)
    assert [r.config for r in runs] == configs
    assert all(run_folder(c, tmp_path).is_dir() for c in configs)
    again = cached_runs(configs, root=tmp_path)
    assert [r.history.to_json() for r in again] == [r.history.to_json() for r in runs]
    # A replica gives the numbers the same configuration gives alone.
    from lenet1.experiments.runs import train_run

    _, alone = train_run(configs[2])
    assert alone.final.test.misses == runs[2].history.final.test.misses
    assert alone.final.train.mse == pytest.approx(runs[2].history.final.train.mse, rel=1e-5)


@requires_data
def test_rejection_figures_two_ways(usps, tmp_path):
    run = cached_runs([RunConfig(passes=1, engine="fast", holdout=0.5)], root=tmp_path)[0]
    _, held = fit_and_evaluation_sets(run.config)
    figures = rejection_figures(run, usps.test, held_out=held)
    assert figures.on_test.error <= 0.01
    assert 0 < figures.on_test.rejection < 1
    assert figures.held_out is not None and figures.held_out.count == len(usps.test)
    assert rejection_figures(run, usps.test).held_out is None


def test_miss_matrix_and_per_class_errors():
    from lenet1.data import Digits
    from lenet1.experiments.stats import miss_matrix, per_class_errors

    class Always(torch.nn.Module):  # answers class k for every digit
        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = -torch.ones(len(x), 10)
            out[:, self.k] = 1.0
            return out

    labels = torch.tensor([0, 0, 1, 2])
    digits = Digits(torch.zeros(4, 1, 16, 16), labels)
    misses = miss_matrix([Always(0), Always(1)], digits)
    assert misses.tolist() == [[False, False, True, True], [True, True, False, True]]
    errors = per_class_errors(misses, labels.numpy())
    assert errors.shape == (2, 10)
    assert errors[0, :3].tolist() == [0.0, 1.0, 1.0] and errors[1, :3].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(errors[0, 5])  # no digit of class 5: undefined, not zero


def test_middle_picks_the_upper_of_two_middle_items_and_its_rank():
    from lenet1.experiments.stats import middle

    assert middle([5, 1, 3], lambda v: v) == (3, 2)
    assert middle([4, 1, 3, 2], lambda v: v) == (3, 3)  # of 2 and 3, the higher
    assert middle(["b", "a"], lambda v: 0) == ("a", 2)  # ties keep the order given
    with pytest.raises(ValueError):
        middle([], lambda v: v)
