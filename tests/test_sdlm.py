"""The diagonal Levenberg-Marquardt rule: its second-derivative pass against two independent
computations, and the rule's bookkeeping.

The brute-force reference below builds the network as an explicit list of connections, one per
(unit, input) pair, straight from the paper's description (fields two pixels apart, the -1
background, H2's table), and runs eq. (2)-(3) of :mod:`lenet1.train.sdlm` over that graph in float64.
It shares no code with the batched convolutions of :func:`lenet1.train.sdlm.curvature`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from lenet1.data import Digits, place_code
from lenet1.nets import TANH_AMPLITUDE, TANH_SLOPE, FullyConnected40, LeNet1, connection_table
from lenet1.train import sdlm
from lenet1.train.online import ReferenceEngine, evaluate, train_online
from lenet1.train.sdlm import LENET5_SCHEDULE, SDLM, curvature, exact_gauss_newton_diagonal

from .conftest import requires_data


def images(count: int, seed: int = 0) -> Tensor:
    """Digit-like test images: mostly background (-1) with strokes of ink in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    ink = torch.rand(count, 1, 16, 16, generator=generator) * 2 - 1
    strokes = torch.rand(count, 1, 16, 16, generator=generator) < 0.35
    return torch.where(strokes, ink, torch.full_like(ink, -1.0))


def trained_a_little(model: nn.Module, seed: int = 0, updates: int = 60) -> nn.Module:
    """Move the weights off their tiny initial values so every layer's curvature matters."""
    x = images(updates, seed + 100)
    targets = place_code(torch.arange(updates) % 10)
    ReferenceEngine().train_pass(model, x, targets,
                                 {name: torch.tensor(0.05) for name, _ in
                                  model.named_parameters()})
    return model


# --- the brute-force graph -------------------------------------------------------------------


@dataclass
class GraphLayer:
    """One layer as explicit connections. Sources index the previous layer's states, then two
    constant units: the background (``units_in``) and the bias unit (``units_in + 1``)."""

    units: int
    units_in: int
    background: float
    weight: str
    bias: str
    dst: list[int]
    src: list[int]
    index: list[int]          # flat index into the weight (or, for src == bias unit, the bias)


def _conv_layer(maps_in: int, size_in: int, maps_out: int, size_out: int,
                table: Tensor, background: float, weight: str, bias: str) -> GraphLayer:
    layer = GraphLayer(maps_out * size_out * size_out, maps_in * size_in * size_in,
                       background, weight, bias, [], [], [])
    bg, one = layer.units_in, layer.units_in + 1
    for out_map in range(maps_out):
        for r in range(size_out):
            for c in range(size_out):
                unit = (out_map * size_out + r) * size_out + c
                for in_map in range(maps_in):
                    if not table[out_map, in_map]:
                        continue  # an absent connection: not in the graph at all
                    for kr in range(5):
                        for kc in range(5):
                            # The field of unit (r, c) starts two pixels before pixel 2r.
                            row, col = 2 * r - 2 + kr, 2 * c - 2 + kc
                            inside = 0 <= row < size_in and 0 <= col < size_in
                            layer.dst.append(unit)
                            layer.src.append((in_map * size_in + row) * size_in + col
                                             if inside else bg)
                            layer.index.append(((out_map * maps_in + in_map) * 5 + kr) * 5 + kc)
                layer.dst.append(unit)
                layer.src.append(one)
                layer.index.append(unit)  # one bias per unit
    return layer


def _full_layer(units_in: int, units: int, weight: str, bias: str) -> GraphLayer:
    layer = GraphLayer(units, units_in, 0.0, weight, bias, [], [], [])
    for k in range(units):
        for j in range(units_in):
            layer.dst.append(k)
            layer.src.append(j)
            layer.index.append(k * units_in + j)
        layer.dst.append(k)
        layer.src.append(units_in + 1)
        layer.index.append(k)
    return layer


def graph_of(model: nn.Module) -> list[GraphLayer]:
    if isinstance(model, LeNet1):
        return [_conv_layer(1, 16, 12, 8, torch.ones(12, 1, dtype=torch.bool), -1.0,
                            "h1_weight", "h1_bias"),
                _conv_layer(12, 8, 12, 4, model.table, model.h2_background,
                            "h2_weight", "h2_bias"),
                _full_layer(192, 30, "h3_weight", "h3_bias"),
                _full_layer(30, 10, "out_weight", "out_bias")]
    assert isinstance(model, FullyConnected40)
    return [_full_layer(256, 40, "hidden_weight", "hidden_bias"),
            _full_layer(40, 10, "out_weight", "out_bias")]


def unit_function(a: Tensor, unit: str) -> tuple[Tensor, Tensor]:
    """f(a) and f'(a), from the total input."""
    if unit == "scaled_tanh":
        t = torch.tanh(TANH_SLOPE * a)
        return TANH_AMPLITUDE * t, TANH_AMPLITUDE * TANH_SLOPE * (1 - t * t)
    t = torch.tanh(a)
    return t, 1 - t * t


def brute_force(model: nn.Module, x: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
    """Forward and second-derivative pass over the explicit graph, in float64.

    Returns each layer's states and h_kk (averaged over the patterns) for every parameter.
    """
    params = {name: p.detach().double().flatten() for name, p in model.named_parameters()}
    n = len(x)
    states = x.double().flatten(1)
    layers = graph_of(model)
    inputs, derivatives, outputs = [], [], []
    for layer in layers:
        augmented = torch.cat([states, torch.full((n, 1), layer.background, dtype=torch.float64),
                               torch.ones(n, 1, dtype=torch.float64)], dim=1)
        dst, src = torch.tensor(layer.dst), torch.tensor(layer.src)
        is_bias = src == layer.units_in + 1
        w = torch.where(is_bias, params[layer.bias][torch.tensor(layer.index) * is_bias],
                        params[layer.weight][torch.tensor(layer.index) * ~is_bias])
        a = torch.zeros(n, layer.units, dtype=torch.float64)
        a.index_add_(1, dst, w * augmented[:, src])
        states, derivative = unit_function(a, model.unit)
        inputs.append(augmented)
        derivatives.append(derivative)
        outputs.append(states)
    h = {name: torch.zeros_like(p) for name, p in params.items()}
    second = 0.2 * derivatives[-1] ** 2                                   # eq. (2)
    for depth in range(len(layers) - 1, -1, -1):
        layer = layers[depth]
        dst, src, index = (torch.tensor(layer.dst), torch.tensor(layer.src),
                           torch.tensor(layer.index))
        is_bias = src == layer.units_in + 1
        per_connection = (second[:, dst] * inputs[depth][:, src] ** 2).sum(dim=0)   # eq. (1)
        h[layer.weight].index_add_(0, index[~is_bias], per_connection[~is_bias])
        h[layer.bias].index_add_(0, index[is_bias], per_connection[is_bias])
        if depth == 0:
            break
        w = params[layer.weight][index[~is_bias]]
        back = torch.zeros(n, layer.units_in + 2, dtype=torch.float64)
        back.index_add_(1, src[~is_bias], w ** 2 * second[:, dst[~is_bias]])
        second = derivatives[depth - 1] ** 2 * back[:, :layer.units_in]             # eq. (3)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    return outputs, {name: (value / n).reshape(shapes[name]) for name, value in h.items()}


# --- the second-derivative pass --------------------------------------------------------------


def assert_close(actual: dict[str, Tensor], expected: dict[str, Tensor], names,
                 rtol: float = 1e-4) -> None:
    for name in names:
        a, e = actual[name].double(), expected[name].double()
        scale = e.abs().max()
        assert torch.allclose(a, e, rtol=rtol, atol=rtol * float(scale)), \
            f"{name}: largest difference {float((a - e).abs().max()):.3g} of {float(scale):.3g}"


@pytest.mark.parametrize("unit", ["scaled_tanh", "tanh"])
def test_top_two_layers_equal_the_exact_gauss_newton_diagonal(unit):
    # Each output weight reaches one output, and each H3 weight one H3 unit, whose paths to
    # the outputs the Gauss-Newton sum over outputs separates: no cross term is dropped.
    torch.manual_seed(1)
    x = images(24)
    lenet = trained_a_little(LeNet1(unit=unit))
    assert_close(curvature(lenet, x), exact_gauss_newton_diagonal(lenet, x),
                 ["out_weight", "out_bias", "h3_weight", "h3_bias"])
    fc = trained_a_little(FullyConnected40(unit=unit))
    assert_close(curvature(fc, x), exact_gauss_newton_diagonal(fc, x, chunk=24),
                 ["out_weight", "out_bias", "hidden_weight", "hidden_bias"])


@pytest.mark.parametrize("unit,table,background", [
    ("scaled_tanh", "block", -1.0),
    ("tanh", "random:3", 0.0),
    ("scaled_tanh", "full", 0.5),
])
def test_every_layer_equals_the_brute_force_graph(unit, table, background):
    torch.manual_seed(2)
    model = trained_a_little(LeNet1(connection_table(table), unit=unit, h2_background=background))
    x = images(5, seed=3)
    states, expected = brute_force(model, x)
    # The graph is the same network: its forward pass reproduces the model's.
    for graph_states, model_states in zip(states, model.layers(x).values()):
        assert torch.allclose(graph_states.float(), model_states.flatten(1), atol=1e-5)
    assert_close(curvature(model, x), expected, expected.keys())


@pytest.mark.parametrize("unit", ["scaled_tanh", "tanh"])
def test_fully_connected_network_equals_the_brute_force_graph(unit):
    torch.manual_seed(4)
    model = trained_a_little(FullyConnected40(unit=unit))
    x = images(5, seed=5)
    _, expected = brute_force(model, x)
    assert_close(curvature(model, x), expected, expected.keys())


def test_batches_of_patterns_add_up(monkeypatch):
    torch.manual_seed(6)
    model = LeNet1()
    x = images(10, seed=7)
    whole = curvature(model, x)
    monkeypatch.setattr(sdlm, "CHUNK", 3)
    assert_close(curvature(model, x), whole, whole.keys(), rtol=1e-5)


def _approximation_figures(model: LeNet1, x: Tensor) -> dict[str, tuple[float, float]]:
    """(sum of the estimate / sum of the exact diagonal, correlation) for the lower layers."""
    approximate, exact = curvature(model, x), exact_gauss_newton_diagonal(model, x)
    present = model.h2_mask.expand_as(model.h2_weight).bool()
    figures = {}
    for name in ["h1_weight", "h1_bias", "h2_weight", "h2_bias"]:
        a, e = approximate[name], exact[name]
        if name == "h2_weight":
            a, e = a[present], e[present]
        a, e = a.flatten().double(), e.flatten().double()
        figures[name] = (float(a.sum() / e.sum()),
                         float(torch.corrcoef(torch.stack([a, e]))[0, 1]))
        print(f"{name}: sum ratio {figures[name][0]:.3f}, correlation {figures[name][1]:.3f}")
    return figures


def test_lower_layers_approximate_the_exact_diagonal():
    # Below H3 the pass drops the cross terms between different paths to the outputs, and
    # between the positions that share a kernel: an approximation of the Gauss-Newton diagonal.
    torch.manual_seed(8)
    model = LeNet1()
    x = images(32, seed=9)
    # With the small initial weights the dropped terms nearly cancel: the totals agree.
    for name, (ratio, correlation) in _approximation_figures(model, x).items():
        assert 0.5 < ratio < 2.0, name
        assert correlation > 0.0, name
    # Once the weights have grown, the terms dropped for a shared kernel are mostly positive
    # (its 64 or 16 positions pull the same way), and the estimate falls well below the exact
    # diagonal there, while still tracking which weights are more curved.
    trained_a_little(model)
    figures = _approximation_figures(model, x)
    for name, (ratio, correlation) in figures.items():
        assert 0.0 < ratio < 1.0, name
        assert correlation > 0.0, name


@pytest.mark.parametrize("kind", ["lenet1", "fc40"])
def test_curvature_is_never_negative(kind):
    torch.manual_seed(10)
    model = trained_a_little(LeNet1() if kind == "lenet1" else FullyConnected40())
    for name, value in curvature(model, images(16, seed=11)).items():
        assert value.shape == dict(model.named_parameters())[name].shape
        assert bool((value >= 0).all()), name


def test_absent_h2_connections_get_no_curvature_and_no_step():
    torch.manual_seed(12)
    model = LeNet1(connection_table("random:1"))
    train = Digits(images(40, seed=13), torch.arange(40) % 10)
    rule = SDLM(patterns=20)
    steps = rule.step_sizes(model, train, 1)
    absent = ~model.h2_mask.expand_as(model.h2_weight).bool()
    assert bool((rule.last_curvature["h2_weight"][absent] == 0).all())
    assert bool((steps["h2_weight"][absent] == 0).all())
    assert bool((steps["h2_weight"][~absent] > 0).all())


# --- the step rule ---------------------------------------------------------------------------


def test_steps_are_eta_over_mu_plus_curvature_on_the_drawn_patterns():
    torch.manual_seed(14)
    model = FullyConnected40()
    train = Digits(images(50, seed=15), torch.arange(50) % 10)
    rule = SDLM.constant(0.003, mu=0.01, patterns=20, seed=4)
    steps = rule.step_sizes(model, train, 2)
    index = rule.sample(50, 2)
    assert len(index) == 20 and len(set(index.tolist())) == 20
    h = curvature(model, train.images[index])
    for name, param in model.named_parameters():
        assert steps[name].shape == param.shape
        assert torch.allclose(steps[name], 0.003 / (0.01 + h[name]))
        assert torch.equal(rule.last_curvature[name], h[name])
    assert rule.last_pass == 2


def test_same_seed_same_steps_and_patterns_change_with_seed_and_pass():
    torch.manual_seed(16)
    model = LeNet1()
    train = Digits(images(60, seed=17), torch.arange(60) % 10)
    first = SDLM(patterns=10, seed=5).step_sizes(model, train, 3)
    again = SDLM(patterns=10, seed=5).step_sizes(model, train, 3)
    assert all(torch.equal(first[name], again[name]) for name in first)
    rule = SDLM(patterns=10, seed=5)
    assert not torch.equal(rule.sample(60, 3), SDLM(patterns=10, seed=6).sample(60, 3))
    assert not torch.equal(rule.sample(60, 3), rule.sample(60, 4))
    # A set smaller than `patterns` is used whole.
    assert torch.equal(SDLM(patterns=500).sample(60, 1), torch.arange(60))


def test_schedule():
    rule = SDLM()
    assert rule.schedule == LENET5_SCHEDULE
    etas = [rule.eta(p) for p in range(1, 16)]
    assert etas == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 3
    scaled = SDLM.scaled(10.0, mu=0.002)
    assert scaled.mu == 0.002
    assert [scaled.eta(p) for p in (1, 3, 6, 9, 13, 40)] == pytest.approx(
        [5e-3, 2e-3, 1e-3, 5e-4, 1e-4, 1e-4])
    assert [SDLM.constant(0.01).eta(p) for p in (1, 7)] == [0.01, 0.01]


@pytest.mark.parametrize("make", [
    lambda: SDLM(schedule=()),
    lambda: SDLM(schedule=((0, 1e-3),)),
    lambda: SDLM(schedule=((2, -1e-3),)),
    lambda: SDLM(schedule=((2, math.nan),)),
    lambda: SDLM(schedule=((2.5, 1e-3),)),
    lambda: SDLM(schedule=((2, 1e-3, 4),)),
    lambda: SDLM(mu=0.0),
    lambda: SDLM(mu=math.inf),
    lambda: SDLM(patterns=0),
    lambda: SDLM(patterns=10.0),
    lambda: SDLM(seed=-1),
    lambda: SDLM.scaled(0.0),
    lambda: SDLM.constant(-0.1),
    lambda: SDLM().eta(0),
    lambda: SDLM().sample(0, 1),
    lambda: curvature(LeNet1(), torch.empty(0, 1, 16, 16)),
    lambda: exact_gauss_newton_diagonal(LeNet1(), images(2), chunk=0),
])
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_unknown_models_are_refused():
    with pytest.raises(TypeError):
        curvature(nn.Linear(256, 10), images(2))


@requires_data
def test_a_short_run_lowers_the_training_error(usps):
    torch.manual_seed(0)
    model = LeNet1()
    train, test = usps.train.subset(slice(0, 500)), usps.test.subset(slice(0, 200))
    rule = SDLM.constant(0.002, patterns=100)
    history = train_online(model, train, test, 2, rule)
    mse = [record.train.mse for record in history.passes]
    assert mse[2] < mse[1] < mse[0]
    assert history.final.train.error < 0.3
    assert evaluate(model, train).mse == pytest.approx(mse[2])
    assert rule.last_pass == 2


@pytest.mark.parametrize("kind", ["lenet1", "fc40"])
def test_fast_engine_agrees_with_the_reference_under_sdlm(kind):
    engine = pytest.importorskip("lenet1.engine")
    if not hasattr(engine, "FastEngine"):
        pytest.skip("lenet1.engine has no FastEngine yet")
    torch.manual_seed(18)
    reference = LeNet1(connection_table("random:2")) if kind == "lenet1" else FullyConnected40()
    fast = copy.deepcopy(reference)
    train = Digits(images(300, seed=19), torch.arange(300) % 10)
    # Per-weight steps, large enough (eta / mu = 0.05) that the weights move visibly.
    steps = SDLM.constant(0.001, mu=0.02, patterns=100).step_sizes(reference, train, 1)
    before = {name: p.detach().clone() for name, p in reference.named_parameters()}
    ReferenceEngine().train_pass(reference, train.images, train.targets, steps)
    engine.FastEngine().train_pass(fast, train.images, train.targets, steps)
    fast_params = {name: p.detach() for name, p in fast.named_parameters()}
    for name, param in reference.named_parameters():
        param = param.detach()
        moved = float((param - before[name]).abs().max())
        difference = float((fast_params[name] - param).abs().max())
        assert difference <= 1e-3 * max(moved, 1e-6) + 1e-6, \
            f"{name}: engines differ by {difference:.3g}, the weights moved {moved:.3g}"
    if kind == "lenet1":
        absent = ~reference.table[:, :, None, None].expand_as(reference.h2_weight)
        assert bool((fast_params["h2_weight"].detach()[absent] == 0).all())
