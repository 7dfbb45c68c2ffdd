"""The fidelity study: the paper's open choices as engine options checked against literal
loops, the design, the pre-stated distance and criterion, the effects model, the shipped
table and its check, and the study end to end in quick mode."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lenet1.engine import FastEngine
from lenet1.experiments import fidelity
from lenet1.experiments.fidelity import (
    FIGURES,
    PAPER,
    Figures,
    Point,
    Row,
    Scale,
    design,
    distance,
    effects,
    settings_of,
)
from lenet1.experiments.runs import RunConfig, loss_factor, make_model, make_rule, shuffle_seed
from lenet1.experiments.training import StaleTableError
from lenet1.train.online import pass_order, train_online

from .conftest import random_digits, requires_data

# --- the options against loops written out literally -----------------------------------------


def _literal_sigmoid_loop(config: RunConfig, train, passes: int) -> torch.nn.Module:
    """Senn's kind of training written out: a sigmoid output against 0/1 (one-hot) targets,
    the squared error summed (``loss='sum'``) or averaged over the 10 outputs, plain SGD one
    pattern at a time, the patterns reshuffled before every pass from the run's seed."""
    model = make_model(config)
    generator = torch.Generator().manual_seed(config.seed)
    params = list(model.parameters())
    for _ in range(passes):
        for i in torch.randperm(len(train), generator=generator).tolist():
            x = train.images[i:i + 1]
            h3 = model.layers(x)["h3"]
            s = torch.sigmoid(F.linear(h3, model.out_weight, model.out_bias))
            target = F.one_hot(train.labels[i:i + 1], 10).float()
            error = ((s - target) ** 2)
            loss = error.sum() if config.loss == "sum" else error.mean()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(config.lr * g)
    return model


@pytest.mark.parametrize("loss", ["sum", "mean"])
def test_sigmoid_outputs_losses_and_reshuffling_equal_the_literal_loop(loss):
    train, test = random_digits(60, 11), random_digits(10, 12)
    config = RunConfig(unit="tanh", output="sigmoid", loss=loss, order="shuffled",
                       optimizer="sgd", lr=0.05 if loss == "sum" else 0.3, passes=2, seed=5,
                       engine="fast")
    ours = make_model(config)
    train_online(ours, train, test, config.passes, make_rule(config), FastEngine(),
                 shuffle_seed=shuffle_seed(config))
    literal = _literal_sigmoid_loop(config, train, config.passes)
    start = make_model(config)
    with torch.no_grad():
        moved = max(float((a - b).abs().max()) for a, b in zip(literal.parameters(),
                                                               start.parameters()))
        gap = max(float((a - b).abs().max()) for a, b in zip(literal.parameters(),
                                                             ours.parameters()))
    assert moved > 1e-2          # the training did something the comparison can see
    assert gap < 2e-5


def test_the_loss_factor_is_the_normalisation_times_a_quarter_for_sigmoids():
    base = RunConfig()
    assert loss_factor(base) == 1.0
    assert loss_factor(replace(base, loss="half_sum")) == 5.0
    assert loss_factor(replace(base, output="sigmoid", loss="sum")) == 2.5
    # SGD's step grows with the loss, SDLM's mu shrinks with it.
    assert make_rule(replace(base, loss="sum", lr=0.01)).lr == pytest.approx(0.1)
    sdlm = make_rule(replace(base, optimizer="sdlm", loss="half_mean", mu=0.02))
    assert sdlm.mu == pytest.approx(0.04)


def test_the_orders_are_permutations_from_the_seed():
    orders = pass_order(50, 3, seed=4)
    assert all(sorted(o.tolist()) == list(range(50)) for o in orders)
    assert orders[0].tolist() != orders[1].tolist()
    assert [o.tolist() for o in pass_order(50, 3, seed=4)] == [o.tolist() for o in orders]
    assert shuffle_seed(RunConfig(seed=7)) is None
    assert shuffle_seed(RunConfig(seed=7, order="shuffled")) == 7


def test_an_output_like_the_hidden_units_follows_them():
    config = RunConfig(unit="scaled_tanh", output="scaled_tanh")
    assert config.output is None                      # one spelling per network
    tanh = replace(config, unit="tanh")
    assert make_model(tanh).output == "tanh"
    sigmoid = replace(RunConfig(output="sigmoid"), unit="tanh")
    assert make_model(sigmoid).output == "sigmoid"


def test_karpathys_output_biases_start_at_minus_one():
    model = make_model(RunConfig(bias_init="output_minus_one"))
    assert bool((model.out_bias == -1).all()) and bool((model.h3_bias == 0).all())
    assert bool((model.h1_bias == 0).all())


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="output"):
        RunConfig(output="softmax")
    with pytest.raises(ValueError, match="loss"):
        RunConfig(loss="median")
    with pytest.raises(ValueError, match="order"):
        RunConfig(order="sorted")
    with pytest.raises(ValueError, match="input_background"):
        RunConfig(input_background=2.0)


# --- the design and the pre-stated criteria ---------------------------------------------------


def test_the_design_is_balanced_fixed_and_complete():
    points = design(fidelity.FULL)
    assert len(points) == fidelity.FULL.points
    assert design(fidelity.FULL) == points                     # the same every time
    for name, levels in fidelity.CATEGORIES.items():
        counts = [sum(p.levels[name] == level for p in points) for level in levels]
        applies = [c for c in counts]
        if name in fidelity.SDLM_ONLY:
            assert sum(applies) == sum(p.levels["optimizer"] == "sdlm" for p in points)
        else:
            assert max(counts) - min(counts) <= 1, (name, counts)
    for name, (low, high) in fidelity.RANGES.items():
        values = [p.levels[name] for p in points if p.levels[name] is not None]
        assert low <= min(values) and max(values) <= high
        # log-uniform: about a third of the points in each third of the log range
        thirds = [sum(fidelity._third(name, v) == t for v in values)
                  for t in ("low", "middle", "high")]
        assert min(thirds) > len(values) / 5
    for p in points:      # every point is a valid run, the one-optimiser factors where they apply
        config = p.config(0)
        assert (p.levels["lr"] is None) == (config.optimizer == "sdlm")


def test_distance_and_reproduces_are_what_was_stated():
    assert distance(PAPER) == 0.0
    doubled = {**PAPER, "train_misses": 20.0}
    assert distance(doubled) == pytest.approx(math.log(2))
    assert distance({**PAPER, "train_misses": 0.0}) == pytest.approx(math.log(10 / 0.5))
    assert distance({**PAPER, "test_mse": math.nan}) == math.inf
    config = RunConfig()

    def row(name, **values):
        figures = {**PAPER, **values}
        return Row("screen", name, config, Figures(*[figures[f] for f in FIGURES], False))

    around = [row("a", train_misses=8), row("a", train_misses=12, test_mse=0.02),
              row("a", test_mse=0.017)]
    off = [row("b", train_misses=11), row("b", train_misses=13)]
    settings = {s.name: s for s in settings_of(around + off)}
    assert settings["a"].reproduces and not settings["b"].reproduces
    assert settings["a"].seeds == 3 and settings["a"].means["train_misses"] == 10


def test_the_effects_model_finds_a_planted_effect():
    points = design(Scale(points=60, seeds=2, confirm=0, confirm_seeds=1, arm_seeds=1))
    generator = random.Random(3)
    rows = []
    for p in points:
        for seed in range(2):
            # shuffled order: 60 misses instead of 20 (61/21 times the misses plus one);
            # nothing else matters
            base = 60.0 if p.levels["order"] == "shuffled" else 20.0
            misses = (base + 1) * math.exp(generator.gauss(0, 0.1)) - 1
            rows.append(Row("screen", f"p{p.index}", p.config(seed),
                            Figures(misses, 0.01, misses, 0.02, 0.1, False)))
    found = {(e.factor, e.level): e for e in effects(rows, points, "train_misses")}
    shuffled = found[("order", "shuffled")]
    assert shuffled.low < 61 / 21 < shuffled.high and shuffled.high / shuffled.low < 1.3
    assert found[("init", "sqrt_fan_in")].low < 1.0 < found[("init", "sqrt_fan_in")].high


# --- the table and its check ------------------------------------------------------------------


def _tiny_study() -> fidelity.Study:
    config = RunConfig(passes=1, engine="fast", record="last", optimizer="sgd", lr=0.02)
    points = [Point(0, {})]
    rows = [Row("screen", "p0", replace(config, seed=s),
                Figures(3.0 + s, 0.01, 4.0, 0.02, 0.25, False)) for s in range(2)]
    rows.append(Row("arm", "x", config, Figures(*[math.nan] * 5, True)))
    return fidelity.Study(Scale(1, 2, 0, 1, 1, passes=(1,)), points, rows, "0123456789abcdef")


def test_the_table_reads_back_what_was_written(tmp_path):
    study = _tiny_study()
    path = tmp_path / "fidelity.csv"
    fidelity.write_table(study, path)
    again = fidelity.read_table(path)
    assert again.code_key == study.code_key and again.scale == study.scale
    assert [(r.stage, r.name, r.config) for r in again.rows] == \
        [(r.stage, r.name, r.config) for r in study.rows]
    assert again.rows[0].figures == study.rows[0].figures
    assert again.rows[2].figures.diverged
    with pytest.raises(FileNotFoundError, match="study fidelity --scale full"):
        fidelity.read_table(tmp_path / "missing.csv")
    path.write_text(path.read_text().replace("stage,name", "stage,title"))
    with pytest.raises(ValueError, match="columns"):
        fidelity.read_table(path)


@requires_data
def test_the_check_retrains_rows_and_catches_a_stale_one(tmp_path, usps):
    config = RunConfig(passes=1, engine="fast", record="last", optimizer="sgd", lr=0.02)
    runs = fidelity._train([config], tmp_path, None, None, None)
    true = fidelity.figures_of(runs[0], usps.test)
    good = fidelity.Study(_tiny_study().scale, [], [Row("screen", "p0", config, true)],
                          "0123456789abcdef")
    checks = fidelity.check_table(good, 4, root=tmp_path, rng=random.Random(0))
    assert len(checks) == 1 and checks[0].agrees
    stale = replace(true, train_misses=true.train_misses + 1)
    bad = replace(good, rows=[Row("screen", "p0", config, stale)])
    with pytest.raises(StaleTableError, match="no longer matches"):
        fidelity.check_table(bad, 1, root=tmp_path, rng=random.Random(0))


@requires_data
def test_the_quick_study_runs_and_reports(tmp_path):
    from lenet1.report.fidelity import report, verdict

    study = fidelity.run_study(fidelity.QUICK, quick=True, root=tmp_path, progress=None)
    stages = {r.stage for r in study.rows}
    assert stages == {"screen", "confirm", "arm"}
    assert len([r for r in study.rows if r.stage == "screen"]) == \
        fidelity.QUICK.points * fidelity.QUICK.seeds
    names = {s.name for s in study.arms()}
    assert {fidelity.OURS, fidelity.SENN_CODE, fidelity.SENN_README} <= names
    text = report(study)
    assert "Stated before the runs" in text and "the paper (1989), as reported" in text
    assert verdict(study)["networks"] == study.networks
    # The confirmation's seeds are fresh: not those that chose its settings.
    seeds = {stage: {r.config.seed for r in study.rows if r.stage == stage}
             for stage in ("screen", "confirm")}
    assert seeds["confirm"] and not seeds["screen"] & seeds["confirm"]
    # Reloaded, not retrained: the same rows a second time.
    again = fidelity.run_study(fidelity.QUICK, quick=True, root=tmp_path, progress=None)
    assert again.rows == study.rows


def test_a_settings_departures_from_what_the_paper_states():
    from types import SimpleNamespace

    from lenet1.report.fidelity import STATED, departures, departures_text

    paper = {name: levels[0] for name, levels in fidelity.CATEGORIES.items()}
    points = [fidelity.Point(0, paper), fidelity.Point(1, {**paper, "optimizer": "sgd",
                                                           "passes": 35, "table": "random:1",
                                                           "unit": "tanh"})]
    study = SimpleNamespace(points=points)
    first, second = SimpleNamespace(name="p0"), SimpleNamespace(name="p1")
    assert departures(study, first) == []
    # The table is not stated by the paper, so it is no departure from it.
    assert departures(study, second) == [("unit", "tanh"), ("passes", 35), ("optimizer", "sgd")]
    assert departures_text(study, [first, second]) == \
        "p0: none; p1: plain tanh units, 35 passes, plain SGD"
    assert set(STATED) <= set(fidelity.CATEGORIES)
