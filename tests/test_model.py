from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from lenet1.accounting import architecture, free_parameters
from lenet1.facts import FREE_PARAMETERS
from lenet1.nets import (
    MODERN_INITS,
    MODERN_UNITS,
    OUTPUTS,
    FullyConnected40,
    LeNet1,
    ModernLeNet1,
    ShapeError,
    _unit,
    block_table,
    build_model,
    connection_table,
    full_table,
    random_table,
)
from lenet1.train.online import SGD, ReferenceEngine

PAPER = {"H1": (768, 19968, 1068), "H2": (192, 38592, 2592), "H3": (30, 5790, 5790),
         "output": (10, 310, 310), "total": (1256, 64660, 9760)}


def test_architecture_matches_the_papers_table():
    rows = {r.layer: (r.units, r.connections, r.free_parameters)
            for r in architecture(LeNet1())}
    for layer, expected in PAPER.items():
        assert rows[layer] == expected, layer


def _networks_of_lenet1s_topology() -> list[tuple[str, nn.Module]]:
    """LeNet-1, every option of ModernLeNet1, and the network of every modern recipe."""
    from lenet1.experiments.modern import STEPS, recipes

    nets: list[tuple[str, nn.Module]] = [("LeNet1", LeNet1())]
    for unit, init, output, dropout in itertools.product(MODERN_UNITS, MODERN_INITS,
                                                         OUTPUTS, (0.0, 0.5)):
        nets.append((f"Modern {unit} {init} {output} {dropout}",
                     ModernLeNet1(unit=unit, init=init, output=output, dropout=dropout, seed=0)))
    chosen = {s.name: s.choices[-1] for s in STEPS if s.choices}
    nets += [(f"recipe {i}", r.network()) for i, r in enumerate(recipes() + recipes(chosen=chosen))]
    return nets


def test_every_network_of_the_topology_has_the_papers_free_parameters():
    """The one check of the paper's 9,760, counted two ways for every network that claims it."""
    for name, model in _networks_of_lenet1s_topology():
        free = sum(p.numel() for n, p in model.named_parameters() if n != "h2_weight")
        free += int(model.h2_mask.sum()) * 25
        assert free == free_parameters(model) == architecture(model)[-1].free_parameters \
            == FREE_PARAMETERS, name


def test_baseline_has_10690_connections():
    total = architecture(FullyConnected40())[-1]
    assert total.connections == 10690 and total.units == 306


def test_full_table_counts_more_weights():
    assert architecture(LeNet1(full_table()))[-1].free_parameters == 9760 + 12 * 4 * 25


def test_tables_have_eight_inputs_per_map():
    for table in (block_table(), random_table(0), random_table(1)):
        assert table.sum(dim=1).tolist() == [8] * 12
    assert not torch.equal(random_table(0), random_table(1))
    assert torch.equal(random_table(3), connection_table("random:3"))
    with pytest.raises(ValueError):
        connection_table("diagonal")


def test_bad_tables_are_refused():
    with pytest.raises(ShapeError):
        LeNet1(torch.ones(12, 11, dtype=torch.bool))
    empty = block_table()
    empty[0] = False
    with pytest.raises(ShapeError, match="at least one"):
        LeNet1(empty)


@torch.no_grad()
def test_init_ranges_follow_the_fan_in():
    torch.manual_seed(0)
    model = LeNet1(init="fan_in")
    assert float(model.h1_weight.abs().max()) <= 2.4 / 25
    assert float(model.h2_weight.abs().max()) <= 2.4 / 200
    assert float(model.h3_weight.abs().max()) <= 2.4 / 192
    assert float(model.h1_weight.abs().max()) > 0.9 * 2.4 / 25  # the range is used
    sqrt = LeNet1(init="sqrt_fan_in")
    assert float(sqrt.h2_weight.abs().max()) > 2.4 / 200
    assert all(float(b.abs().max()) == 0 for b in (model.h1_bias, model.h2_bias,
                                                   model.h3_bias, model.out_bias))


def test_disconnected_weights_are_zero_and_stay_zero_through_training():
    torch.manual_seed(0)
    model = LeNet1()
    off = ~model.table
    assert float(model.h2_weight.detach()[off].abs().max()) == 0.0
    images = torch.rand(20, 1, 16, 16) * 2 - 1
    targets = -torch.ones(20, 10)
    targets[torch.arange(20), torch.arange(20) % 10] = 1
    ReferenceEngine().train_pass(model, images, targets, SGD(0.1).step_sizes(model, None, 1))
    trained = model.h2_weight.detach()
    assert float(trained[off].abs().max()) == 0.0
    assert float((trained[model.table] != 0).float().mean()) > 0.99


def test_padding_is_the_virtual_background():
    # An all-background input gives the same H1 response everywhere except through biases:
    # with zero biases every H1 unit sees only -1, so all units of a map are equal.
    model = LeNet1()
    h1 = model.layers(-torch.ones(1, 1, 16, 16))["h1"]
    assert torch.allclose(h1, h1[:, :, :1, :1].expand_as(h1))


def test_h2_background_changes_h2_only():
    torch.manual_seed(0)
    a = LeNet1(h2_background=-1.0)
    b = LeNet1(h2_background=0.0)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    la, lb = a.layers(x), b.layers(x)
    assert torch.equal(la["h1"], lb["h1"])
    assert not torch.allclose(la["h2"], lb["h2"])


def test_reading_a_zero_background_network_gives_the_padded_copys_bits():
    # Without a gradient, ModernLeNet1 pads H1 with zeros inside H2's convolution (two on
    # every side) rather than in a padded copy (two before, one after): the same sums.
    model = ModernLeNet1(unit="relu", dropout=0.25, seed=3).eval()
    assert model.h2_background == 0.0
    x = torch.rand(300, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        read = model.states(x)
    tracked = model.states(x)  # with a gradient: the padded copy
    for name in ("h1", "h2", "h3", "out"):
        assert torch.equal(read[name], tracked[name].detach()), name


@pytest.mark.parametrize("unit", ["scaled_tanh", "tanh"])
def test_units(unit):
    model = LeNet1(unit=unit)
    with torch.no_grad():
        model.out_bias.fill_(100.0)
        model.out_weight.zero_()
    out = model(torch.zeros(1, 1, 16, 16))
    expected = 1.7159 if unit == "scaled_tanh" else 1.0
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-4)


@pytest.mark.parametrize("unit,amplitude,slope,within",
                         [("scaled_tanh", 1.7159, 2 / 3, 5e-7), ("tanh", 1.0, 1.0, 5e-7)])
def test_the_modern_tanh_units_are_the_tanh_to_a_few_float32_steps(unit, amplitude, slope,
                                                                  within):
    # Written with a sigmoid for speed (nets._unit): the function and its slope, to rounding.
    a = torch.linspace(-30, 30, 600_001, requires_grad=True)
    exact = amplitude * torch.tanh(slope * a.detach().double())
    value = _unit(a, unit)
    assert float((value.detach().double() - exact).abs().max()) <= within
    value.sum().backward()
    exact_slope = amplitude * slope * (1 - torch.tanh(slope * a.detach().double()) ** 2)
    assert float((a.grad.double() - exact_slope).abs().max()) <= within
    assert torch.equal(_unit(a.detach(), "relu"), torch.relu(a.detach()))


@pytest.mark.parametrize("kind", ["lenet1", "fc40"])
def test_finite_difference_gradient(kind, monkeypatch):
    # Central differences need float64; the input check insists on float32 for real use.
    monkeypatch.setattr("lenet1.nets.check_images", lambda images: images)
    torch.manual_seed(1)
    model = build_model(kind).double()
    x = (torch.rand(3, 1, 16, 16, dtype=torch.float64) * 2 - 1)
    t = torch.tensor([[1.0 if k == j else -1.0 for k in range(10)] for j in (1, 4, 7)],
                     dtype=torch.float64)

    def loss() -> torch.Tensor:
        return ((model(x) - t) ** 2).mean()

    grads = torch.autograd.grad(loss(), list(model.parameters()))
    generator = torch.Generator().manual_seed(0)
    for (name, param), grad in zip(model.named_parameters(), grads):
        flat = param.data.view(-1)
        candidates = torch.nonzero(grad.view(-1)).view(-1)
        picks = candidates[torch.randperm(len(candidates), generator=generator)[:5]]
        for index in picks.tolist():
            saved = float(flat[index])
            flat[index] = saved + 1e-6
            up = loss().item()
            flat[index] = saved - 1e-6
            down = loss().item()
            flat[index] = saved
            numeric = (up - down) / 2e-6
            assert numeric == pytest.approx(float(grad.view(-1)[index]), rel=1e-4, abs=1e-9), name


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(1, 16, 16), "shape"),
    (torch.zeros(1, 1, 16, 16, dtype=torch.float64), "float32"),
    (torch.full((1, 1, 16, 16), float("nan")), "NaN"),
    (torch.full((1, 1, 16, 16), 3.0), "[-1, 1]"),
    ([[0.0]], "torch.Tensor"),
])
def test_bad_images_get_a_clear_error(bad, message):
    with pytest.raises(ShapeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LeNet1()(bad)


def test_bad_options():
    with pytest.raises(ValueError, match="unit"):
        LeNet1(unit="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init"):
        FullyConnected40(init="xavier")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown model"):
        build_model("lenet5")
