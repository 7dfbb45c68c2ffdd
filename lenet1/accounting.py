"""Counting a network from its tensors: units, connections, free parameters, multiply-adds.

Nothing here is typed from the paper: every figure is read off a network's weight tensors, so
the paper's table (1,256 units, 64,660 connections, 9,760 free parameters) is a check, not an
input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from .facts import DSP_MULTIPLY_ADDS_PER_SECOND
from .nets import KERNEL, FullyConnected40, LeNet1, ModernLeNet1


@dataclass(frozen=True)
class LayerCount:
    """Units, connections (bias included, one per unit) and free parameters of one layer."""

    layer: str
    units: int
    connections: int
    free_parameters: int


def _layer(name: str, units: int, inputs_per_unit: int, free: int) -> LayerCount:
    return LayerCount(name, units, units * (inputs_per_unit + 1), free)


def architecture(model: nn.Module) -> list[LayerCount]:
    """Count every layer of ``model`` from its tensors, as the paper's table does.

    A connection is one input to one unit, bias included (the virtual background counts, as in
    the paper). A free parameter is a weight or bias that training can change: shared weights
    count once, disconnected H2 weights not at all.
    """
    rows = [LayerCount("input", 256, 0, 0)]
    if isinstance(model, (LeNet1, ModernLeNet1)):
        inputs_per_h2_map = model.table.sum(dim=1) * KERNEL * KERNEL
        h1_units = model.h1_bias.numel()
        h2_units_per_map = model.h2_bias[0].numel()
        rows += [
            _layer("H1", h1_units, KERNEL * KERNEL, model.h1_weight.numel() + h1_units),
            LayerCount("H2", model.h2_bias.numel(),
                       int((h2_units_per_map * (inputs_per_h2_map + 1)).sum()),
                       int(inputs_per_h2_map.sum()) + model.h2_bias.numel()),
            _layer("H3", model.h3_bias.numel(), model.h3_weight.shape[1],
                   model.h3_weight.numel() + model.h3_bias.numel()),
            _layer("output", model.out_bias.numel(), model.out_weight.shape[1],
                   model.out_weight.numel() + model.out_bias.numel()),
        ]
    elif isinstance(model, FullyConnected40):
        rows += [
            _layer("hidden", model.hidden_bias.numel(), model.hidden_weight.shape[1],
                   model.hidden_weight.numel() + model.hidden_bias.numel()),
            _layer("output", model.out_bias.numel(), model.out_weight.shape[1],
                   model.out_weight.numel() + model.out_bias.numel()),
        ]
    else:
        raise TypeError(f"no accounting for {type(model).__name__}")
    rows.append(LayerCount("total", sum(r.units for r in rows),
                           sum(r.connections for r in rows),
                           sum(r.free_parameters for r in rows)))
    return rows


def format_architecture(rows: list[LayerCount]) -> str:
    lines = [f"{'layer':<8}{'units':>8}{'connections':>14}{'free parameters':>18}"]
    lines += [f"{r.layer:<8}{r.units:>8,}{r.connections:>14,}{r.free_parameters:>18,}"
              for r in rows]
    return "\n".join(lines)


def free_parameters(model: nn.Module) -> int:
    """Weights and biases training can change: disconnected H2 weights do not count."""
    total = sum(p.numel() for p in model.parameters())
    mask = getattr(model, "h2_mask", None)
    if mask is not None:
        total -= int((mask == 0).sum()) * KERNEL * KERNEL
    return total


@dataclass(frozen=True)
class MultiplyAdds:
    """Multiply-adds of one pattern through a network, counted from its weight tensors.

    ``forward``: one per connection (biases are adds, not counted). ``backward``: propagating
    the error signals down to H1 (one per connection above H1) plus every connection's weight
    gradient (one each). ``update``: one per free parameter for a plain gradient step.
    Squashing functions and their derivatives are not counted (a table look-up on the DSP).
    """

    forward: int
    backward: int
    update: int

    @property
    def train_pattern(self) -> int:
        """The multiply-adds of one online training step (forward, backward and update)."""
        return self.forward + self.backward + self.update

    def dsp_seconds(self, patterns: int, passes: int = 1, batch_size: int = 1,
                    rate: float = DSP_MULTIPLY_ADDS_PER_SECOND) -> float:
        """Training time at ``rate`` multiply-adds a second (the paper's DSP-32C board),
        one update per ``batch_size`` patterns; arithmetic only, no overhead."""
        updates = math.ceil(patterns / batch_size) * passes
        return ((self.forward + self.backward) * patterns * passes
                + self.update * updates) / rate


def multiply_adds(model: nn.Module) -> MultiplyAdds:
    """Count a LeNet1, ModernLeNet1 or FullyConnected40 from its parameter shapes."""
    tensors: dict[str, Tensor] = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    if {"h1_weight", "h2_mask"} <= tensors.keys():
        h1 = tensors["h1_bias"].numel() * tensors["h1_weight"][0].numel()
        per_map = KERNEL * KERNEL * tensors["h2_mask"].sum(dim=(1, 2, 3))
        h2 = int((per_map * tensors["h2_bias"][0].numel()).sum())
        layers = [h1, h2, tensors["h3_weight"].numel(), tensors["out_weight"].numel()]
    elif "hidden_weight" in tensors:
        layers = [tensors["hidden_weight"].numel(), tensors["out_weight"].numel()]
    else:
        raise TypeError(f"no multiply-add count for {type(model).__name__}")
    forward = sum(layers)
    return MultiplyAdds(forward=forward, backward=forward + sum(layers[1:]),
                        update=free_parameters(model))
