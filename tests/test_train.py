from __future__ import annotations

import json
import math

import pytest
import torch

from lenet1.experiments.runs import RunConfig, RunError, load_run, make_model, save_run
from lenet1.experiments.training import cached_run
from lenet1.nets import LeNet1
from lenet1.train.online import SGD, History, evaluate, metrics_of, train_online

from .conftest import random_digits, requires_data


def test_metrics_count_exact_misses():
    outputs = -torch.ones(4, 10)
    outputs[torch.arange(4), torch.tensor([0, 1, 2, 9])] = 1.0
    metrics = metrics_of(outputs, torch.tensor([0, 1, 2, 3]))
    assert metrics.misses == 1 and metrics.error == 0.25 and metrics.count == 4
    # MSE per pattern and output unit: one pattern has two outputs off by 2 -> 8/40.
    assert metrics.mse == pytest.approx(8 / 40)


@requires_data
def test_short_run_on_real_digits_lowers_the_loss(usps):
    torch.manual_seed(0)
    model = LeNet1()
    fit = usps.train.subset(slice(0, 400))
    history = train_online(model, fit, usps.test.subset(slice(0, 200)), 2, SGD(0.03))
    mses = [r.train.mse for r in history.passes]
    assert len(history.passes) == 3 and history.passes[0].pass_index == 0
    assert mses[2] < mses[1] < mses[0]
    assert history.final.train.misses < history.passes[0].train.misses


def test_same_seed_same_numbers_bit_for_bit():
    train, test = random_digits(60, 0), random_digits(20, 1)

    def run() -> tuple[History, dict[str, torch.Tensor]]:
        model = make_model(RunConfig(seed=7))
        return train_online(model, train, test, 2, SGD(0.05)), model.state_dict()

    (h1, w1), (h2, w2) = run(), run()
    assert h1.to_json() == h2.to_json()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    other = make_model(RunConfig(seed=8)).state_dict()
    assert not torch.equal(other["h1_weight"], w1["h1_weight"])


def test_divergence_is_reported():
    with pytest.raises(FloatingPointError, match="diverged"):
        model = LeNet1()
        with torch.no_grad():
            model.out_weight.fill_(float("nan"))
        train_online(model, random_digits(10, 0), random_digits(10, 1), 1, SGD(0.01))


def test_bad_learning_rate():
    with pytest.raises(ValueError):
        SGD(-1.0)
    with pytest.raises(ValueError):
        SGD(float("nan"))


def test_run_folder_round_trip(tmp_path):
    config = RunConfig(passes=1, seed=3)
    model = make_model(config)
    history = train_online(model, random_digits(30, 0), random_digits(10, 1), 1, SGD(0.03))
    save_run(tmp_path, config, model, history)
    run = load_run(tmp_path)
    assert run.config == config
    assert run.history.to_json() == history.to_json()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  run.model.state_dict().values()))
    # The weights reload without executing anything.
    assert json.loads((tmp_path / "environment.json").read_text())["torch"] == torch.__version__
    assert evaluate(run.model, random_digits(10, 1)) == history.final.test


@pytest.mark.parametrize("options", [
    {"output": "sigmoid"}, {"input_background": 0.0}, {"h2_background": 0.0},
    {"unit": "tanh", "output": "sigmoid", "input_background": 0.0, "bias_init": "uniform"},
    {"model": "fc40", "output": "sigmoid"},
])
def test_a_reloaded_run_is_the_network_it_was_trained_as(tmp_path, options):
    # Every option of the network, not only its weights: a run reloaded with other outputs or
    # another background would read the digits as another network.
    config = RunConfig(passes=1, seed=3, **options)
    model = make_model(config)
    test = random_digits(40, 1)
    history = train_online(model, random_digits(30, 0), test, 1, SGD(0.03))
    save_run(tmp_path, config, model, history)
    run = load_run(tmp_path)
    images = test.images
    assert torch.equal(run.model(images), model(images))
    assert evaluate(run.model, test) == history.final.test


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        load_run(tmp_path)
    with pytest.raises(RunError, match="not a folder"):
        load_run(tmp_path / "absent")
    for name in ("config.json", "history.json", "weights.safetensors"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(RunError, match="unreadable"):
        load_run(tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="unit"):
        RunConfig(unit="sigmoid")
    with pytest.raises(ValueError, match="connection table"):
        RunConfig(table="nope")
    with pytest.raises(RunError, match="unknown configuration keys"):
        RunConfig.from_json({"momentum": 0.9})


@requires_data
def test_cached_run_trains_once_then_reloads(tmp_path):
    config = RunConfig(passes=0, seed=1)
    first = cached_run(config, root=tmp_path)
    again = cached_run(config, root=tmp_path)
    assert first.path == again.path and (first.path / "history.json").is_file()
    assert again.history.to_json() == first.history.to_json()
    assert cached_run(RunConfig(passes=0, seed=2), root=tmp_path).path != first.path


def test_recording_only_the_last_pass_keeps_the_weights_and_the_last_record():
    from lenet1.train.replicas import train_replicas

    train, test = random_digits(120, 0), random_digits(40, 1)

    def run(record_every: bool) -> tuple[list[LeNet1], list]:
        torch.manual_seed(0)
        models = [LeNet1() for _ in range(3)]
        rules = [SGD(0.03), SGD(0.01), SGD(1e36)]  # the last overflows: it diverges
        histories = train_replicas(models, train, test, 3, rules, threads=1,
                                   stop_on_divergence=False, record_every=record_every)
        return models, histories

    every_models, every = run(True)
    last_models, last = run(False)
    assert [len(h.passes) for h in every[:2]] == [4, 4]
    assert [len(h.passes) for h in last[:2]] == [1, 1]
    for a, b, ha, hb in zip(every_models[:2], last_models[:2], every[:2], last[:2]):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                    b.state_dict().values()))
        assert ha.final == hb.final
    # The diverged replica stops in both, at a pass before the last, its state recorded.
    assert not math.isfinite(every[2].final.train.mse) and not math.isfinite(last[2].final.train.mse)
    assert every[2].final.pass_index < 3 and last[2].final.pass_index < 3
