"""The 1989 network (LeNet-1) and the paper's fully connected baseline.

Layer by layer, as in LeCun et al. (1989), section 5:

- input: 16x16 grey levels in [-1, 1]; beyond the border lies a virtual background of -1.
- H1: 12 maps of 8x8 units. Each unit sees a 5x5 field of the input, fields two pixels apart.
  The 25 weights are shared within a map; every unit has its own bias.
- H2: 12 maps of 4x4 units. Each unit sees 5x5 fields, two pixels apart, in 8 of the 12 H1
  maps (200 weights + 1 bias). Which 8 is a *connection table*, swappable here.
- H3: 30 units fully connected to H2. Output: 10 units fully connected to H3.

The receptive fields of a 16-wide input at stride 2 need 1.5 pixels of border on each side to
give 8 outputs; we pad 2 pixels before and 1 after, so that unit i is centred on pixel 2i.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Unit = Literal["scaled_tanh", "tanh"]
Init = Literal["fan_in", "sqrt_fan_in"]
BiasInit = Literal["zero", "uniform", "output_minus_one"]
OutputUnit = Literal["scaled_tanh", "tanh", "sigmoid"]
UNITS: tuple[str, ...] = ("scaled_tanh", "tanh")
# The output layer may also be a logistic sigmoid trained on 0/1 targets (see ``activation``).
OUTPUT_UNITS: tuple[str, ...] = (*UNITS, "sigmoid")
INITS: tuple[str, ...] = ("fan_in", "sqrt_fan_in")
BIAS_INITS: tuple[str, ...] = ("zero", "uniform", "output_minus_one")

# f(a) = A tanh(S a), with f(+-1) = +-1 (the 1998 paper, appendix A).
TANH_AMPLITUDE = 1.7159
TANH_SLOPE = 2.0 / 3.0
BACKGROUND = -1.0
MAPS = 12
KERNEL = 5
STRIDE = 2
PAD_BEFORE, PAD_AFTER = 2, 1


class ShapeError(ValueError):
    """An input tensor does not have the shape, dtype or values the network expects."""


def activation(a: Tensor, unit: OutputUnit) -> Tensor:
    """The unit's squashing function: 1.7159 tanh(2a/3) (``scaled_tanh``), plain ``tanh``, or
    (output layer only) ``sigmoid``, read in the same +-1 code as the others.

    A sigmoid output ``s = 1 / (1 + exp(-a))`` trained on 0/1 targets ``(1 + t) / 2`` is, exactly,
    the unit ``y = 2 s - 1 = tanh(a / 2)`` trained on the +-1 targets ``t`` with the squared error
    divided by 4, since ``(s - (1 + t) / 2)^2 = (y - t)^2 / 4``. The network computes ``y``, so
    every output keeps the +-1 code; the factor 1/4 belongs to the loss
    (:func:`lenet1.experiments.runs.loss_factor`)."""
    if unit == "scaled_tanh":
        return TANH_AMPLITUDE * torch.tanh(TANH_SLOPE * a)
    if unit == "sigmoid":
        return torch.tanh(0.5 * a)
    return torch.tanh(a)


# --- connection tables: table[out_map, in_map] is True where an H2 map sees an H1 map ---------


def block_table() -> Tensor:
    """The three-group table used by earlier reproductions (the paper does not give its own).

    H2 maps 0-3 see H1 maps 0-7, maps 4-7 see H1 maps 4-11, maps 8-11 see H1 maps 0-3 and 8-11.
    """
    table = torch.zeros(MAPS, MAPS, dtype=torch.bool)
    table[0:4, 0:8] = True
    table[4:8, 4:12] = True
    table[8:12, 0:4] = True
    table[8:12, 8:12] = True
    return table


def full_table() -> Tensor:
    """Every H2 map sees all 12 H1 maps (more weights than the paper's 9,760)."""
    return torch.ones(MAPS, MAPS, dtype=torch.bool)


def random_table(seed: int, inputs_per_map: int = 8) -> Tensor:
    """Each H2 map sees ``inputs_per_map`` H1 maps drawn at random (reproducibly from ``seed``)."""
    if not 1 <= inputs_per_map <= MAPS:
        raise ValueError(f"inputs_per_map must lie in 1..{MAPS}, got {inputs_per_map}")
    generator = torch.Generator().manual_seed(seed)
    table = torch.zeros(MAPS, MAPS, dtype=torch.bool)
    for out_map in range(MAPS):
        table[out_map, torch.randperm(MAPS, generator=generator)[:inputs_per_map]] = True
    return table


def connection_table(name: str) -> Tensor:
    """A table by name: ``block``, ``full`` or ``random:SEED``."""
    if name == "block":
        return block_table()
    if name == "full":
        return full_table()
    if name.startswith("random:"):
        try:
            return random_table(int(name.removeprefix("random:")))
        except ValueError:
            pass
    raise ValueError(f"unknown connection table {name!r}: use 'block', 'full' or 'random:SEED'")


def check_table(table: Tensor) -> Tensor:
    if table.shape != (MAPS, MAPS) or table.dtype != torch.bool:
        raise ShapeError(f"a connection table is a {MAPS}x{MAPS} bool tensor, got "
                         f"{tuple(table.shape)} {table.dtype}")
    if not bool(table.any(dim=1).all()):
        raise ShapeError("every H2 map must see at least one H1 map")
    return table


def check_images(x: Tensor) -> Tensor:
    """Fail clearly on what the network cannot take: not (N, 1, 16, 16) float32 in [-1, 1]."""
    if not isinstance(x, Tensor):
        raise ShapeError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 16, 16):
        raise ShapeError(f"images must have shape (N, 1, 16, 16), got {tuple(x.shape)}")
    if x.dtype != torch.float32:
        raise ShapeError(f"images must be float32, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ShapeError("images contain NaN or infinite values")
    if x.numel() and (float(x.min()) < -1.0 - 1e-6 or float(x.max()) > 1.0 + 1e-6):
        raise ShapeError(f"pixels must lie in [-1, 1], got [{float(x.min()):.3g}, "
                         f"{float(x.max()):.3g}]")
    return x


def _uniform_(tensor: Tensor, fan_in: int, init: Init) -> None:
    scale = 2.4 / (fan_in if init == "fan_in" else math.sqrt(fan_in))
    with torch.no_grad():
        tensor.uniform_(-scale, scale)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """A clear error for an option outside its choices."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_options(unit: str, init: str, bias_init: str, output: str) -> None:
    check_choice("unit", unit, UNITS)
    check_choice("output", output, OUTPUT_UNITS)
    check_choice("init", init, INITS)
    check_choice("bias_init", bias_init, BIAS_INITS)


def _bias_(bias: Tensor, fan_in: int, init: Init, bias_init: BiasInit,
           output: bool = False) -> None:
    """``zero``: biases start at 0. ``uniform``: like the unit's weights (a bias is a weight
    from a unit that is always on), drawn after all the weights. ``output_minus_one``: 0, but
    the output units' at -1, towards the target of 9 outputs in 10 (Karpathy's choice)."""
    if bias_init == "uniform":
        _uniform_(bias, fan_in, init)
    else:
        with torch.no_grad():
            bias.fill_(-1.0 if output and bias_init == "output_minus_one" else 0.0)


def _background(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [-1, 1], got {value}")
    return value


class LeNet1Weights(nn.Module):
    """LeNet-1's 9,760 free parameters (undrawn) and its H2 connection mask, nothing more.

    H1 and H2 have one bias per unit, not per map: the paper counts 8x8x12 and 4x4x12 of them.
    :class:`LeNet1` and the modern variants both build on it, so they keep exactly these weights.
    """

    h2_mask: Tensor

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("h2_mask", table[:, :, None, None].to(torch.float32))
        self.h1_weight = nn.Parameter(torch.empty(MAPS, 1, KERNEL, KERNEL))
        self.h1_bias = nn.Parameter(torch.zeros(MAPS, 8, 8))
        self.h2_weight = nn.Parameter(torch.empty(MAPS, MAPS, KERNEL, KERNEL))
        self.h2_bias = nn.Parameter(torch.zeros(MAPS, 4, 4))
        self.h3_weight = nn.Parameter(torch.empty(30, MAPS * 4 * 4))
        self.h3_bias = nn.Parameter(torch.zeros(30))
        self.out_weight = nn.Parameter(torch.empty(10, 30))
        self.out_bias = nn.Parameter(torch.zeros(10))

    @property
    def table(self) -> Tensor:
        return self.h2_mask[:, :, 0, 0].bool()


class LeNet1(LeNet1Weights):
    """The constrained network of the 1989 paper: 1,256 units, 64,660 connections, 9,760 weights.

    Args:
        table: H2's connection table, (12, 12) bool, ``table[out, in]``; default the block table.
        unit: ``scaled_tanh`` (1.7159 tanh(2a/3), the default) or ``tanh``.
        output: the output units' function, by default ``unit``; or ``sigmoid`` (see
            :func:`activation`).
        init: weights uniform in +-2.4/F (``fan_in``, the default) or +-2.4/sqrt(F), F the
            number of weights into a unit. Biases start at zero: the paper gives no bias init.
        h2_background: the value H1's maps are padded with before H2 looks at them. The paper
            speaks only of the input's border; -1 (the tanh's "off" level) is the default.
        bias_init: ``zero`` (the default) or ``uniform``: each bias drawn like its unit's
            weights, within +-2.4/F (or +-2.4/sqrt(F)), after every weight has been drawn;
            ``output_minus_one``: zero but the output units', at -1.
        input_background: the value the input is padded with: the paper's virtual background
            of -1 (the default), or another.

    Disconnected H2 weights are held at exactly zero: the weight tensor is multiplied by the
    table in every forward pass, so their gradient is zero and no optimiser step moves them.
    """

    def __init__(self, table: Tensor | None = None, unit: Unit = "scaled_tanh",
                 init: Init = "fan_in", h2_background: float = BACKGROUND,
                 bias_init: BiasInit = "zero", output: OutputUnit | None = None,
                 input_background: float = BACKGROUND) -> None:
        output = unit if output is None else output
        _check_options(unit, init, bias_init, output)
        super().__init__(check_table(block_table() if table is None else table.clone()))
        self.bias_init: BiasInit = bias_init
        self.unit: Unit = unit
        self.output: OutputUnit = output
        self.init: Init = init
        self.h2_background = _background("h2_background", h2_background)
        self.input_background = _background("input_background", input_background)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the weights (from torch's global generator), then the biases (zero by default)."""
        _uniform_(self.h1_weight, KERNEL * KERNEL, self.init)
        # Each H2 map draws with its own fan-in: 25 times the number of H1 maps it sees.
        for out_map, inputs in enumerate(self.table.sum(dim=1).tolist()):
            _uniform_(self.h2_weight[out_map], KERNEL * KERNEL * int(inputs), self.init)
        _uniform_(self.h3_weight, self.h3_weight.shape[1], self.init)
        _uniform_(self.out_weight, self.out_weight.shape[1], self.init)
        with torch.no_grad():
            self.h2_weight.mul_(self.h2_mask)
        _bias_(self.h1_bias, KERNEL * KERNEL, self.init, self.bias_init)
        for out_map, inputs in enumerate(self.table.sum(dim=1).tolist()):
            _bias_(self.h2_bias[out_map], KERNEL * KERNEL * int(inputs), self.init,
                   self.bias_init)
        _bias_(self.h3_bias, self.h3_weight.shape[1], self.init, self.bias_init)
        _bias_(self.out_bias, self.out_weight.shape[1], self.init, self.bias_init, output=True)

    def layers(self, x: Tensor) -> dict[str, Tensor]:
        """Every layer's states for images ``x`` (N, 1, 16, 16): h1, h2, h3 and out."""
        check_images(x)
        pad = (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)
        h1 = activation(F.conv2d(F.pad(x, pad, value=self.input_background), self.h1_weight,
                                 stride=STRIDE) + self.h1_bias, self.unit)
        h2_in = F.pad(h1, pad, value=self.h2_background)
        h2 = activation(F.conv2d(h2_in, self.h2_weight * self.h2_mask, stride=STRIDE)
                        + self.h2_bias, self.unit)
        h3 = activation(F.linear(h2.flatten(1), self.h3_weight, self.h3_bias), self.unit)
        out = activation(F.linear(h3, self.out_weight, self.out_bias), self.output)
        return {"h1": h1, "h2": h2, "h3": h3, "out": out}

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)["out"]


class FullyConnected40(nn.Module):
    """The paper's baseline: 256 inputs, one hidden layer of 40 units, 10 outputs
    (10,690 connections). Same units and initialisation options as :class:`LeNet1`."""

    def __init__(self, unit: Unit = "scaled_tanh", init: Init = "fan_in",
                 hidden: int = 40, bias_init: BiasInit = "zero",
                 output: OutputUnit | None = None) -> None:
        super().__init__()
        output = unit if output is None else output
        _check_options(unit, init, bias_init, output)
        self.bias_init: BiasInit = bias_init
        self.unit: Unit = unit
        self.output: OutputUnit = output
        self.init: Init = init
        self.hidden_weight = nn.Parameter(torch.empty(hidden, 256))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))
        self.out_weight = nn.Parameter(torch.empty(10, hidden))
        self.out_bias = nn.Parameter(torch.zeros(10))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_(self.hidden_weight, 256, self.init)
        _uniform_(self.out_weight, self.out_weight.shape[1], self.init)
        _bias_(self.hidden_bias, 256, self.init, self.bias_init)
        _bias_(self.out_bias, self.out_weight.shape[1], self.init, self.bias_init, output=True)

    def layers(self, x: Tensor) -> dict[str, Tensor]:
        check_images(x)
        hidden = activation(F.linear(x.flatten(1), self.hidden_weight, self.hidden_bias),
                            self.unit)
        out = activation(F.linear(hidden, self.out_weight, self.out_bias), self.output)
        return {"hidden": hidden, "out": out}

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)["out"]


def build_model(kind: str = "lenet1", unit: Unit = "scaled_tanh", init: Init = "fan_in",
                table: str = "block", h2_background: float = BACKGROUND,
                bias_init: BiasInit = "zero", output: OutputUnit | None = None,
                input_background: float = BACKGROUND) -> nn.Module:
    """A network by name (``lenet1`` or ``fc40``), as the CLI and run folders describe it."""
    if kind == "lenet1":
        return LeNet1(connection_table(table), unit=unit, init=init, h2_background=h2_background,
                      bias_init=bias_init, output=output, input_background=input_background)
    if kind == "fc40":
        return FullyConnected40(unit=unit, init=init, bias_init=bias_init, output=output)
    raise ValueError(f"unknown model {kind!r}: use 'lenet1' or 'fc40'")


# --- the same topology with modern options ---------------------------------------------------

ModernUnit = Literal["scaled_tanh", "tanh", "relu"]
ModernInit = Literal["fan_in", "sqrt_fan_in", "pytorch", "kaiming"]
Output = Literal["logits", "squashed"]
MODERN_UNITS: tuple[str, ...] = ("scaled_tanh", "tanh", "relu")
MODERN_INITS: tuple[str, ...] = ("fan_in", "sqrt_fan_in", "pytorch", "kaiming")
OUTPUTS: tuple[str, ...] = ("logits", "squashed")


def _unit(a: Tensor, unit: str) -> Tensor:
    """The modern network's units: ReLU, or the tanh units as ``amplitude * tanh(slope * a)``
    written ``2 amplitude sigmoid(2 slope a) - amplitude``, the same function (within 5e-7 of
    it, a few float32 steps): torch's tanh on the CPU is not vectorised (2.5 ns an element on
    the project's machine, its sigmoid 0.4 ns), so a unit costs a third of it and the tanh
    steps of the modern study train about an eighth faster (``benchmarks/tanh_units.py``).
    The paper's network (:func:`activation`) keeps torch's tanh."""
    if unit == "relu":
        return torch.relu(a)
    amplitude, slope = (TANH_AMPLITUDE, TANH_SLOPE) if unit == "scaled_tanh" else (1.0, 1.0)
    return torch.sigmoid(a * (2 * slope)) * (2 * amplitude) - amplitude


def _squash(logits: Tensor, unit: str) -> Tensor:
    """A modern network's ``squashed`` outputs: the tanh for ``tanh`` units, else the scaled
    tanh (:func:`_unit`)."""
    return _unit(logits, "tanh" if unit == "tanh" else "scaled_tanh")


class ModernLeNet1(LeNet1Weights):
    """LeNet-1's topology and 9,760 free parameters, with modern options.

    Args:
        table: H2's connection table, (12, 12) bool; default the block table.
        unit: hidden units: ``scaled_tanh`` (1.7159 tanh(2a/3)), ``tanh`` or ``relu``.
        output: ``logits`` (the output layer's sums, for softmax + cross-entropy) or
            ``squashed`` (through 1.7159 tanh(2a/3) -- or the tanh for ``unit="tanh"`` -- so
            +-1 targets are reachable, for MSE; ReLU networks squash with the scaled tanh).
        dropout: probability of dropping each H2 state on its way into H3, in training only.
        init: ``fan_in`` (uniform +-2.4/F, the paper's), ``sqrt_fan_in`` (+-2.4/sqrt F),
            ``pytorch`` (nn.Linear's default: weights and biases uniform +-1/sqrt F) or
            ``kaiming`` (He: uniform +-sqrt(6/F), for ReLU). F counts only connected inputs
            (200 for H2, not 300). Biases start at zero except with ``pytorch``.
        h2_background: what H1's maps are padded with before H2 sees them; default the unit's
            "off" level: -1 for the tanh units (as LeNet1), 0 for ReLU (a ReLU is never -1; -1
            padding after ReLU was an earlier reproduction's bug). The input is always padded
            with the -1 of the paper's virtual background.
        seed: draw the initial weights from this seed; ``None``: from torch's global generator.
    """

    def __init__(self, table: Tensor | None = None, unit: ModernUnit = "relu",
                 output: Output = "logits", dropout: float = 0.0, init: ModernInit = "pytorch",
                 h2_background: float | None = None, seed: int | None = None) -> None:
        check_choice("unit", unit, MODERN_UNITS)
        check_choice("output", output, OUTPUTS)
        check_choice("init", init, MODERN_INITS)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if h2_background is None:
            h2_background = 0.0 if unit == "relu" else BACKGROUND
        if not (math.isfinite(h2_background) and -1.0 <= h2_background <= 1.0):
            raise ValueError(f"h2_background must lie in [-1, 1], got {h2_background}")
        super().__init__(check_table(block_table() if table is None else table.clone()))
        self.unit: ModernUnit = unit
        self.output: Output = output
        self.dropout = float(dropout)
        self.init: ModernInit = init
        self.h2_background = float(h2_background)
        self.reset_parameters(None if seed is None else torch.Generator().manual_seed(seed))

    def extra_repr(self) -> str:
        return (f"unit={self.unit}, output={self.output}, dropout={self.dropout}, "
                f"init={self.init}, h2_background={self.h2_background}")

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        def draw(tensor: Tensor, fan_in: int) -> None:
            bound = {"fan_in": 2.4 / fan_in, "sqrt_fan_in": 2.4 / math.sqrt(fan_in),
                     "pytorch": 1 / math.sqrt(fan_in), "kaiming": math.sqrt(6 / fan_in)}
            tensor.uniform_(-bound[self.init], bound[self.init], generator=generator)

        fan_ins = [KERNEL * KERNEL * int(n) for n in self.table.sum(dim=1).tolist()]
        draw(self.h1_weight, KERNEL * KERNEL)
        for out_map, fan_in in enumerate(fan_ins):  # each H2 map with its own fan-in
            draw(self.h2_weight[out_map], fan_in)
        draw(self.h3_weight, self.h3_weight.shape[1])
        draw(self.out_weight, self.out_weight.shape[1])
        self.h2_weight.mul_(self.h2_mask)  # disconnected weights are exactly zero
        biases = (self.h1_bias, self.h2_bias, self.h3_bias, self.out_bias)
        for bias in biases:
            bias.zero_()
        if self.init == "pytorch":
            draw(self.h1_bias, KERNEL * KERNEL)
            for out_map, fan_in in enumerate(fan_ins):
                draw(self.h2_bias[out_map], fan_in)
            draw(self.h3_bias, self.h3_weight.shape[1])
            draw(self.out_bias, self.out_weight.shape[1])

    def layers(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Every layer's states: h1, h2, h3, ``logits`` (the output sums) and ``out``.

        ``generator`` draws the dropout masks (training mode only); ``None``: the global one.
        """
        return self.states(check_images(x), generator)

    def states(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """:meth:`layers` without checking ``x``: for a trainer that checked its digits once,
        rather than every mini-batch (the checks' reductions cost more than a layer)."""
        pad = (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)
        h1 = _unit(F.conv2d(F.pad(x, pad, value=BACKGROUND), self.h1_weight, stride=STRIDE)
                   + self.h1_bias, self.unit)
        # The mask in the forward pass gives disconnected weights a zero gradient.
        if self.h2_background == 0.0 and not torch.is_grad_enabled():
            # Reading only: zeros padded inside the convolution (two on every side; the
            # stride-2 fields never reach the last row or column), the same sums as a padded
            # copy's (bit for bit in the tests and in every reading of the study), in a third
            # less time. (A gradient through it may be added in another order, so training
            # keeps the copy.)
            h2_in, padding = h1, PAD_BEFORE
        else:
            h2_in, padding = F.pad(h1, pad, value=self.h2_background), 0
        h2 = _unit(F.conv2d(h2_in, self.h2_weight * self.h2_mask, stride=STRIDE,
                            padding=padding) + self.h2_bias, self.unit)
        h2_flat = h2.flatten(1)
        if self.training and self.dropout > 0:
            # Our own mask, so the caller's generator (not the global one) decides it.
            keep = torch.rand(h2_flat.shape, generator=generator) >= self.dropout
            h2_flat = h2_flat * keep / (1 - self.dropout)
        h3 = _unit(F.linear(h2_flat, self.h3_weight, self.h3_bias), self.unit)
        logits = F.linear(h3, self.out_weight, self.out_bias)
        out = logits if self.output == "logits" else _squash(logits, self.unit)
        return {"h1": h1, "h2": h2, "h3": h3, "logits": logits, "out": out}

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.layers(x, generator)["out"]




# --- a larger network, to teach the small one --------------------------------------------------


class Teacher(nn.Module):
    """A larger convolutional network of today's kind, for knowledge distillation (its
    softened outputs as targets for LeNet-1): a 5x5 convolution to ``width`` maps and a 3x3
    to ``width`` more (16x16, zero padding), 2x2 max-pooling, a 3x3 convolution to 2 x
    ``width`` maps, pooling again (4x4), 128 hidden units and 10 logits; ReLU units; dropout
    before each linear layer in training. At ``width`` 16: 74,330 parameters, 7.6 times
    LeNet-1's. Its weights are PyTorch's default draws, from ``seed``.
    """

    output = "logits"  # for softmax + cross-entropy, as ModernLeNet1's "logits"

    def __init__(self, width: int = 16, dropout: float = 0.3, seed: int = 0) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a whole number >= 1, got {width!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        super().__init__()
        self.width, self.dropout = width, float(dropout)
        with torch.random.fork_rng(devices=[]):  # the draws from the seed, the global state kept
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(1, width, 5, padding=2)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1)
            self.conv3 = nn.Conv2d(width, 2 * width, 3, padding=1)
            self.hidden = nn.Linear(2 * width * 16, 128)
            self.out = nn.Linear(128, 10)

    def states(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``{"out": logits}`` for unchecked images; in training, ``generator`` draws the
        dropout masks (as :meth:`ModernLeNet1.states`)."""
        h = F.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
        h = F.max_pool2d(torch.relu(self.conv3(h)), 2).flatten(1)
        h = torch.relu(self.hidden(self._drop(h, generator)))
        return {"out": self.out(self._drop(h, generator))}

    def _drop(self, h: Tensor, generator: torch.Generator | None) -> Tensor:
        if not (self.training and self.dropout > 0):
            return h
        return h * (torch.rand(h.shape, generator=generator) >= self.dropout) / (1 - self.dropout)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.states(check_images(x), generator)["out"]
