from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lenet1.experiments import paper as ps
from lenet1.experiments.runs import Run, RunConfig, make_model
from lenet1.nets import FullyConnected40, LeNet1
from lenet1.rejection import RejectionPoint
from lenet1.report import paper as report
from lenet1.train.online import History, Metrics, PassRecord

from .conftest import requires_data


def _history(final_error: float, final_mse: float, passes: int = 2,
             count: int = 100) -> History:
    records = [PassRecord(i, Metrics(0.5, 0.5, 50, count), Metrics(0.5, 0.5, 50, count))
               for i in range(passes)]
    misses = round(final_error * count)
    records.append(PassRecord(passes, Metrics(final_mse / 2, final_error / 2, misses // 2, count),
                              Metrics(final_mse, final_error, misses, count)))
    return History(records)


def _run(config: RunConfig, history: History) -> Run:
    return Run(Path("/nonexistent"), config, history, None)  # type: ignore[arg-type]


def _point(lr: float, errors: list[float], mses: list[float], bad: int = 0) -> ps.GridPoint:
    return ps.GridPoint(RunConfig(lr=lr, passes=2, holdout=0.2), tuple(errors), tuple(mses), bad)


# --- selection --------------------------------------------------------------------------------


def test_select_picks_the_lowest_mean_error():
    points = [_point(0.1, [0.05, 0.07], [0.02, 0.02]), _point(0.2, [0.04, 0.05], [0.9, 0.9]),
              _point(0.3, [0.06, 0.05], [0.01, 0.01])]
    assert ps.select(points).config.lr == 0.2


def test_select_breaks_ties_by_mse_and_never_takes_a_diverged_point():
    points = [_point(0.1, [0.05, 0.05], [0.03, 0.03]), _point(0.2, [0.05, 0.05], [0.02, 0.02]),
              _point(0.3, [0.01, 0.01], [0.01, 0.01], bad=1)]
    assert ps.select(points).config.lr == 0.2
    with pytest.raises(ValueError):
        ps.select([])


def test_grid_points_group_seeds_and_count_divergence():
    base = RunConfig(passes=2, holdout=0.2, lr=0.05)
    other = replace(base, lr=0.5)
    runs = [_run(replace(base, seed=0), _history(0.04, 0.02)),
            _run(replace(base, seed=1), _history(0.06, 0.04)),
            _run(replace(other, seed=0), _history(0.01, 0.01)),
            # diverged: its history stops after pass 1
            _run(replace(other, seed=1), History(_history(0.5, 0.5).passes[:2]))]
    first, second = ps.grid_points(runs)
    assert first.config == base and first.error == pytest.approx(0.05)
    assert first.mse == pytest.approx(0.03) and first.diverged == 0
    assert second.diverged == 1 and math.isinf(second.mse)
    assert ps.select([first, second]) is first


def test_diverged():
    config = RunConfig(passes=2)
    assert not ps.diverged(_run(config, _history(0.1, 0.1)))
    assert ps.diverged(_run(config, _history(0.1, float("nan"))))
    assert ps.diverged(_run(config, History(_history(0.1, 0.1).passes[:2])))


# --- the test set is never used for calibration -----------------------------------------------


@pytest.mark.parametrize("plan", [ps.FULL, ps.QUICK], ids=["full", "quick"])
@pytest.mark.parametrize("model,optimizer", [("lenet1", "sdlm"), ("lenet1", "sgd"),
                                             ("fc40", "sdlm"), ("fc40", "sgd")])
def test_calibration_runs_all_hold_out_training_digits(plan, model, optimizer):
    configs = ps.calibration_configs(model, optimizer, plan)
    grid = ps.calibration_grid(model, optimizer, plan)
    assert len(configs) == len(grid) * plan.calibration_seeds
    assert len(set(configs)) == len(configs)
    for config in configs:
        assert config.holdout > 0 and config.holdout == plan.holdout
        assert config.model == model and config.optimizer == optimizer
        assert config.passes == plan.passes and config.engine == "fast"


def test_the_full_grid_is_the_documented_one():
    assert len(ps.calibration_grid("lenet1", "sdlm", ps.FULL)) == 6 * 2 * 2
    assert len(ps.calibration_grid("lenet1", "sgd", ps.FULL)) == 6
    assert ps.FULL.passes == 23 and ps.FULL.final_seeds >= 10 and ps.FULL.ablation_seeds >= 5


def test_the_chosen_configuration_trains_on_every_training_digit():
    point = _point(0.1, [0.05], [0.02])
    calibration = ps.Calibration("lenet1", "sgd", [point], point)
    assert calibration.chosen.holdout == 0.0 and calibration.chosen.lr == 0.1
    table = report.calibration_table(calibration)
    assert list(table["chosen"]) == ["<=="]


# --- tables from given runs -------------------------------------------------------------------


def test_arm_table_reports_mean_std_range_and_the_paper():
    config = RunConfig(passes=2)
    runs = [_run(replace(config, seed=s), _history(e, 0.02, count=2007))
            for s, e in enumerate([100 / 2007, 104 / 2007])]
    points = [RejectionPoint(0.1, r, 0.01, 1, 1, 100) for r in (0.10, 0.14)]
    held = [RejectionPoint(0.2, r, 0.02, 1, 2, 100) for r in (0.20, 0.30)]
    arm = ps.Arm("x", "lenet1", config, runs, runs, points, held, held, [0.05, 0.07])
    table = report.arm_table(arm)
    assert table.loc["test misses", "mean"] == "102.0"
    assert table.loc["test misses", "the paper"] == "102"
    assert table.loc["test misses", "range"] == "[100.0, 104.0]"
    assert table.loc["test error %", "the paper"] == "5.00"
    assert table.loc["rejection % for 1% test error (threshold on test)", "mean"] == "12.0"
    assert table.loc["rejection % for 1% test error (threshold on test)", "the paper"] == "12.1"
    # The 80%-trained networks' rows: each from its own list, none with a paper figure.
    assert table.loc["80%-trained: test error %", "mean"] == "6.00"
    assert table.loc["80%-trained: rejection % for 1% test error (threshold on test)",
                     "mean"] == "25.0"
    assert table.loc["80%-trained: test error % at that held-out threshold", "mean"] == "2.00"
    assert table.loc["80%-trained: test error %", "the paper"] == ""
    fit = report.fit_table([arm])
    assert fit.loc["x (2 seeds)", "test misses / paper"] == "1.00"


def test_ablation_table_compares_with_the_baseline():
    config = RunConfig(passes=2, holdout=0.2)
    base = ps.Ablation("baseline", [_run(config, _history(e, 0.02)) for e in (0.04, 0.06)])
    variant = ps.Ablation("v", [_run(config, _history(e, 0.02)) for e in (0.07, 0.09)])
    table = report.ablation_table([base, variant])
    assert table.loc["baseline", "vs baseline (pp)"].startswith("+0.00")
    assert table.loc["v", "vs baseline (pp)"].startswith("+3.00")
    assert table.loc["v", "held-out error %"].startswith("8.00")


# --- the bias initialisation option -----------------------------------------------------------


def test_bias_init_option():
    torch.manual_seed(0)
    zero = LeNet1()
    torch.manual_seed(0)
    uniform = LeNet1(bias_init="uniform")
    # The weights are drawn first, so they do not depend on the biases' option.
    for name in ("h1_weight", "h2_weight", "h3_weight", "out_weight"):
        assert torch.equal(getattr(zero, name), getattr(uniform, name))
    for name, fan_in in (("h1_bias", 25), ("h2_bias", 200), ("h3_bias", 192), ("out_bias", 30)):
        assert not getattr(zero, name).any()
        bias = getattr(uniform, name)
        assert bias.abs().max() <= 2.4 / fan_in and bias.abs().max() > 0
    fc = FullyConnected40(bias_init="uniform")
    assert fc.hidden_bias.abs().max() <= 2.4 / 256 and fc.out_bias.any()
    with pytest.raises(ValueError):
        LeNet1(bias_init="ones")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RunConfig(bias_init="ones")
    assert make_model(RunConfig(bias_init="uniform")).h3_bias.any()


# --- end to end, quick plan -------------------------------------------------------------------


@requires_data
def test_quick_study_end_to_end(tmp_path):
    results = ps.run_all(quick=True, root=tmp_path, progress=None)
    assert set(results.arms) == {name for name, _, _ in ps.ARMS}
    for name, calibration in results.calibrations.items():
        assert all(p.config.holdout > 0 for p in calibration.points)
        assert results.arms[name].config == calibration.chosen
    sdlm = results.arms["LeNet-1, SDLM"]
    assert len(sdlm.runs) == ps.QUICK.final_seeds and len(sdlm.rejection_held_out) == len(
        sdlm.holdout_runs)
    assert all(r.config.holdout == 0 for r in sdlm.runs)
    assert len(results.trace.passes) == ps.QUICK.passes
    # The trace's run is the protocol's seed 0: the same arithmetic, alone or as a replica.
    assert results.trace.history.final.test.misses == sdlm.runs[0].history.final.test.misses
    assert "LeNet-1, SDLM" in report.format_summary(results)
    # Every trained thing is one entry of the one cache.
    entries = sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("key.json"))
    assert {e.split("/")[0] for e in entries} == {"online", "curvature"}
    # A second call reloads every run (nothing is trained again) and writes the files.
    printed: list[str] = []
    again = report.run_and_report(quick=True, root=tmp_path, out=tmp_path / "out",
                                  progress=printed.append)
    assert sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("key.json")) \
        == entries
    assert not any(line.startswith("training ") for line in printed)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"summary.txt", "ablations.csv", "loss-normalisations.csv",
            "protocol-lenet-1-sdlm.csv", "calibration-fc-40-sgd.csv", "learning-curves.png",
            "rejection.png", "calibration.png", "ablations.png", "curvature.png", "fit.csv",
            "protocol-lenet-1-earlier-reproductions-setup.csv", "results.md"} <= written
    assert results.earlier.config.unit == "tanh" and results.earlier.config.init == "sqrt_fan_in"
    assert len(results.earlier.runs) == ps.QUICK.final_seeds
    assert (tmp_path / "out" / "results.md").read_text().count("\n") == 10
    assert (tmp_path / "out" / "summary.txt").read_text().strip() == printed[-1].strip()
    assert again.arms["LeNet-1, SGD"].final()["test_misses"].mean == \
        results.arms["LeNet-1, SGD"].final()["test_misses"].mean
