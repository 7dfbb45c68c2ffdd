from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from lenet1.accounting import free_parameters, multiply_adds
from lenet1.nets import (
    MODERN_INITS,
    MODERN_UNITS,
    FullyConnected40,
    LeNet1,
    ModernLeNet1,
    full_table,
)
from lenet1.train.minibatch import (
    ModernConfig,
    ModernHistory,
    WeightAverage,
    evaluate_modern,
    make_optimizer,
    place_coded,
    predict_shifted,
    train_minibatch,
)
from lenet1.train.online import SGD, predict, train_online

from .conftest import requires_data, toy_digits


def _off(model: torch.nn.Module) -> torch.Tensor:
    return model.h2_weight.detach()[~model.table]  # type: ignore[index, operator, union-attr]


# --- the network ------------------------------------------------------------------------------


def test_every_option_keeps_the_absent_connections_at_zero():
    for unit, init, output, dropout in itertools.product(MODERN_UNITS, MODERN_INITS,
                                                         ("logits", "squashed"), (0.0, 0.5)):
        model = ModernLeNet1(unit=unit, init=init, output=output, dropout=dropout, seed=0)
        assert float(_off(model).abs().max()) == 0.0, (unit, init, output, dropout)
    assert free_parameters(ModernLeNet1(full_table())) == \
        free_parameters(ModernLeNet1()) + 4 * 12 * 25


def test_same_names_and_shapes_as_lenet1_and_the_same_function():
    torch.manual_seed(0)
    paper = LeNet1()
    modern = ModernLeNet1(unit="scaled_tanh", output="squashed", init="fan_in")
    modern.load_state_dict(paper.state_dict())
    images = toy_digits(8, 0).images
    # The modern network writes the tanh with a sigmoid (faster here): a few float32 steps.
    assert torch.allclose(modern(images), paper(images), rtol=0, atol=1e-6)


def test_relu_pads_h2_with_zero_and_tanh_with_minus_one():
    images = toy_digits(4, 0).images
    for unit, background in (("relu", 0.0), ("tanh", -1.0), ("scaled_tanh", -1.0)):
        model = ModernLeNet1(unit=unit, seed=1)
        assert model.h2_background == background
        states = model.layers(images)
        padded = F.pad(states["h1"], (2, 1, 2, 1), value=background)
        sums = F.conv2d(padded, model.h2_weight * model.h2_mask, stride=2) + model.h2_bias
        expected = torch.relu(sums) if unit == "relu" else states["h2"]
        assert torch.equal(states["h2"], expected)
        if unit == "relu":  # and -1 padding would have given something else
            wrong = torch.relu(F.conv2d(F.pad(states["h1"], (2, 1, 2, 1), value=-1.0),
                                        model.h2_weight * model.h2_mask, stride=2)
                               + model.h2_bias)
            assert not torch.equal(states["h2"], wrong)


def test_init_bounds_and_seeded_draws():
    for init, bound in (("fan_in", 2.4 / 200), ("sqrt_fan_in", 2.4 / math.sqrt(200)),
                        ("pytorch", 1 / math.sqrt(200)), ("kaiming", math.sqrt(6 / 200))):
        model = ModernLeNet1(init=init, seed=0)
        top = float(model.h2_weight.detach().abs().max())
        assert 0.9 * bound < top <= bound, init
        biases_zero = float(model.h3_bias.detach().abs().max()) == 0.0
        assert biases_zero == (init != "pytorch")
    before = torch.get_rng_state()
    a, b = ModernLeNet1(seed=4), ModernLeNet1(seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_dropout_acts_only_in_training_mode():
    images = toy_digits(16, 0).images
    model = ModernLeNet1(dropout=0.5, seed=0)
    model.eval()
    assert torch.equal(model(images), model(images))
    evaluated = model(images)
    model.train()
    first = model(images, torch.Generator().manual_seed(0))
    assert not torch.equal(first, evaluated)
    assert torch.equal(first, model(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, model(images, torch.Generator().manual_seed(1)))
    plain = ModernLeNet1(dropout=0.0, seed=0).train()
    assert torch.equal(plain(images), plain.eval()(images))


def test_outputs_are_logits_or_squashed():
    images = toy_digits(6, 0).images
    logits = ModernLeNet1(output="logits", seed=0)
    squashed = ModernLeNet1(output="squashed", seed=0)
    states = logits.layers(images)
    assert torch.equal(states["out"], states["logits"])
    assert torch.allclose(squashed(images), 1.7159 * torch.tanh(2 / 3 * states["logits"]))
    probabilities = place_coded(logits, logits(images))
    assert torch.allclose((probabilities + 1).sum(dim=1) / 2, torch.ones(6))


@pytest.mark.parametrize("kwargs", [{"unit": "sigmoid"}, {"init": "xavier"},
                                    {"output": "softmax"}, {"dropout": 1.0},
                                    {"dropout": -0.1}, {"h2_background": 2.0}])
def test_bad_network_options_raise_value_errors(kwargs):
    with pytest.raises(ValueError):
        ModernLeNet1(**kwargs)


# --- training ---------------------------------------------------------------------------------


def test_masked_weights_stay_exactly_zero_under_adamw_with_weight_decay():
    model = ModernLeNet1(seed=0)
    config = ModernConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1, passes=1)
    optimizer = make_optimizer(model, config)
    data = toy_digits(64, 0)
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(model(data.images), data.labels).backward()
        assert float(model.h2_weight.grad[~model.table].abs().max()) == 0.0
        optimizer.step()
    assert float(_off(model).abs().max()) == 0.0
    state = optimizer.state[model.h2_weight]
    assert float(state["exp_avg"][~model.table].abs().max()) == 0.0
    assert float(state["exp_avg_sq"][~model.table].abs().max()) == 0.0
    train_minibatch(model, data, toy_digits(20, 1), ModernConfig(weight_decay=0.1, passes=2,
                                                           translate=1, ema=0.9))
    assert float(_off(model).abs().max()) == 0.0
    assert float((model.h2_weight[model.table] != 0).float().mean()) > 0.99


def test_same_seed_same_numbers_bit_for_bit():
    train, test = toy_digits(100, 0), toy_digits(30, 1)
    config = ModernConfig(batch_size=16, passes=2, translate=1, rotate=5.0, scale=0.05,
                          label_smoothing=0.1, seed=3)

    def run(seed: int) -> tuple[ModernHistory, dict[str, torch.Tensor]]:
        model = ModernLeNet1(dropout=0.25, seed=0)
        history = train_minibatch(model, train, test, ModernConfig(
            **{**config.__dict__, "seed": seed}))
        return history, model.state_dict()

    before = torch.get_rng_state()
    (h1, w1), (h2, w2) = run(3), run(3)
    assert torch.equal(torch.get_rng_state(), before)
    assert h1.to_json() == h2.to_json()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    _, w3 = run(4)
    assert not torch.equal(w1["h1_weight"], w3["h1_weight"])


def test_a_short_run_lowers_the_loss_and_evaluates_whole_sets_in_eval_mode():
    train, test = toy_digits(200, 0), toy_digits(50, 1)
    model = ModernLeNet1(dropout=0.5, seed=0)
    seen = []
    history = train_minibatch(model, train, test, ModernConfig(passes=3, batch_size=20),
                              on_pass=seen.append)
    losses = [r.train_loss for r in history.passes]
    assert [r.pass_index for r in history.passes] == [0, 1, 2, 3] and seen == history.passes
    assert losses[-1] < losses[0] and history.final.test_loss < history.passes[0].test_loss
    assert history.final.train.count == 200 and history.final.test.count == 50
    # The last record is the whole-set, dropout-off figure of the final network.
    metrics, loss = evaluate_modern(model, train, "cross_entropy")
    assert metrics == history.final.train and loss == history.final.train_loss
    assert ModernHistory.from_json(history.to_json()).to_json() == history.to_json()


def test_recording_the_last_pass_only_gives_the_same_network_and_last_record():
    train, test = toy_digits(120, 0), toy_digits(30, 1)
    config = ModernConfig(batch_size=16, passes=3, translate=1, rotate=5.0, scale=0.05,
                          label_smoothing=0.1, ema=0.9, seed=2)
    every, last = ModernLeNet1(dropout=0.25, seed=0), ModernLeNet1(dropout=0.25, seed=0)
    full = train_minibatch(every, train, test, config)
    end = train_minibatch(last, train, test, config, record_every=False)
    assert [r.pass_index for r in end.passes] == [3]
    assert end.to_json()[-1] == full.to_json()[-1]
    assert all(torch.equal(last.state_dict()[k], w) for k, w in every.state_dict().items())


def test_states_are_the_checked_layers():
    model, images = ModernLeNet1(dropout=0.0, seed=1).eval(), toy_digits(8, 0).images
    checked, unchecked = model.layers(images), model.states(images)
    assert checked.keys() == unchecked.keys()
    assert all(torch.equal(checked[k], unchecked[k]) for k in checked)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.layers(images * 3)


def test_batch_one_sgd_mse_matches_the_online_trainer():
    torch.manual_seed(0)
    paper = LeNet1()
    modern = ModernLeNet1(unit="scaled_tanh", output="squashed", init="fan_in")
    modern.load_state_dict(paper.state_dict())
    train, test = toy_digits(30, 0), toy_digits(10, 1)
    train_online(paper, train, test, 1, SGD(0.05))
    train_minibatch(modern, train, test, ModernConfig(
        loss="mse", optimizer="sgd", momentum=0.0, lr=0.05, schedule="constant",
        batch_size=1, passes=1, shuffle=False))
    for name, weight in paper.state_dict().items():
        assert torch.allclose(modern.state_dict()[name], weight, atol=1e-6), name


def test_schedules():
    cosine = ModernConfig(lr=1.0, schedule="cosine")
    linear = ModernConfig(lr=1.0, schedule="linear")
    assert cosine.lr_at(0, 10) == 1.0 and cosine.lr_at(5, 10) == pytest.approx(0.5)
    assert linear.lr_at(5, 10) == 0.5 and linear.lr_at(9, 10) == pytest.approx(0.1)
    assert ModernConfig(lr=1.0, schedule="constant").lr_at(9, 10) == 1.0
    # Karpathy's: held for a pass (here 5 steps), from lr in the first to lr/3 in the last.
    third = ModernConfig(lr=3e-4, schedule="linear_to_third", passes=4)
    assert [third.lr_at(step, 20) for step in (0, 4)] == [3e-4, 3e-4]
    assert third.lr_at(5, 20) == pytest.approx(3e-4 * (1 - 2 / 9))
    assert third.lr_at(19, 20) == pytest.approx(1e-4)


def test_decay_biases_decays_every_parameter():
    # Without it the biases never decay; with it they shrink as AdamW shrinks every parameter.
    model = ModernLeNet1(seed=0)
    with torch.no_grad():
        model.h3_bias.fill_(1.0)
    for decay_biases, expected in ((False, 1.0), (True, 1.0 - 0.1 * 0.5)):
        copy = ModernLeNet1(seed=0)
        copy.load_state_dict(model.state_dict())
        optimizer = make_optimizer(copy, ModernConfig(optimizer="adamw", lr=0.1,
                                                      weight_decay=0.5,
                                                      decay_biases=decay_biases))
        for p in copy.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        assert torch.allclose(copy.h3_bias, torch.full_like(copy.h3_bias, expected))
    with pytest.raises(ValueError, match="decay_biases"):
        ModernConfig(decay_biases=1)  # type: ignore[arg-type]


def test_weight_average_and_test_time_shifts():
    model = ModernLeNet1(seed=0)
    average = WeightAverage(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    average.update(model)
    assert torch.allclose(average.model.h3_weight, 2 * model.h3_weight / 3)
    images = toy_digits(5, 0).images
    assert torch.allclose(predict_shifted(model, images, 0),
                          place_coded(model, predict(model, images)))
    assert predict_shifted(model, images, 1).shape == (5, 10)


@pytest.mark.parametrize("kwargs", [
    {"loss": "hinge"}, {"optimizer": "lbfgs"}, {"schedule": "step"}, {"lr": 0.0},
    {"lr": float("nan")}, {"batch_size": 0}, {"passes": -1}, {"seed": -1},
    {"loss": "mse", "label_smoothing": 0.1}, {"label_smoothing": 1.0}, {"momentum": 1.0},
    {"weight_decay": -1e-3}, {"translate": -1}, {"translate": 1.5}, {"rotate": -1.0},
    {"scale": 0.9}, {"ema": 1.0}, {"batch_size": True}])
def test_bad_configs_raise_value_errors(kwargs):
    with pytest.raises(ValueError):
        ModernConfig(**kwargs)


def test_loss_must_fit_the_output_layer():
    data = toy_digits(10, 0)
    with pytest.raises(ValueError, match="logits"):
        train_minibatch(ModernLeNet1(output="squashed"), data, data, ModernConfig(passes=1))
    with pytest.raises(ValueError, match="squashed"):
        train_minibatch(ModernLeNet1(), data, data, ModernConfig(loss="mse", passes=1))
    with pytest.raises(ValueError, match="logits"):
        train_minibatch(LeNet1(), data, data, ModernConfig(passes=1))


def test_divergence_is_reported():
    model = ModernLeNet1(seed=0)
    with torch.no_grad():
        model.out_weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged"):
        train_minibatch(model, toy_digits(10, 0), toy_digits(10, 1), ModernConfig(passes=1))


# --- cost -------------------------------------------------------------------------------------


def test_multiply_adds_follow_the_papers_connections():
    count = multiply_adds(ModernLeNet1())
    # 64,660 connections less one bias per H1..output unit (1,000) are multiplications.
    assert count.forward == 64660 - 1000 == multiply_adds(LeNet1()).forward
    assert count.backward == count.forward + (count.forward - 768 * 25)
    assert count.update == 9760
    assert multiply_adds(FullyConnected40()).forward == 10690 - 50
    seconds = count.dsp_seconds(7291)
    assert seconds == pytest.approx(count.train_pattern * 7291 / 12.5e6)
    with pytest.raises(TypeError):
        multiply_adds(torch.nn.Linear(3, 3))


@requires_data
def test_a_short_run_on_real_digits(usps):
    model = ModernLeNet1(seed=0)
    history = train_minibatch(model, usps.train.subset(slice(0, 1000)),
                              usps.test.subset(slice(0, 300)),
                              ModernConfig(passes=2, batch_size=32))
    losses = [r.test_loss for r in history.passes]
    assert losses[2] < losses[1] < losses[0]
    assert history.final.test.error < 0.5 * history.passes[0].test.error
