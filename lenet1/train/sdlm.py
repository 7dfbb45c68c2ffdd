"""The paper's optimiser: the stochastic diagonal Levenberg-Marquardt method.

The 1989 paper trains with "a special version of Newton's algorithm that uses a positive,
diagonal approximation of the Hessian matrix" and cites LeCun (1987) and Becker & LeCun
(1988). The 1998 paper (appendix C) spells the method out. Each weight ``k`` gets its own step

    eps_k = eta / (mu + h_kk),        w_k <- w_k - eps_k * dE_p/dw_k   (after every pattern p),

where ``h_kk`` estimates the diagonal second derivative of the loss with respect to ``w_k``,
``mu`` keeps the step finite where the curvature is tiny, and ``eta`` is a global rate that
follows a schedule over the passes. ``h_kk`` is re-estimated before each pass, as an average over
a few hundred training patterns (500 in the 1998 paper), and then held fixed for the pass.

Second-derivative back-propagation
----------------------------------

Write ``a_i`` for the total input of unit ``i``, ``x_i = f(a_i)`` for its state, and
``a_i = sum_j w_ij x_j`` over the connections into ``i`` (a bias is a connection from a unit
whose state is always 1; the virtual background of the input, and whatever H1's maps are padded
with, are units whose state is a constant). With shared weights, one free parameter ``w_k``
sits on many connections ``(i, j)``; write ``(i, j) ~ k`` for them.

*Weights from unit states.* Since ``a_i`` is linear in ``w_ij``,
``d2E/dw_ij^2 = d2E/da_i^2 * x_j^2``, and a shared weight adds up its connections, dropping
the cross terms between different connections (the *diagonal* approximation):

    h_kk = sum_{(i, j) ~ k} d2E/da_i^2 * x_j^2.                                        (1)

*Outputs.* Our per-pattern loss is ``E_p = (1/10) sum_k (y_k - t_k)^2`` with ``y_k = f(a_k)``.
Differentiating twice,
``d2E/da_k^2 = f'(a_k)^2 d2E/dy_k^2 + f''(a_k) dE/dy_k``. The Gauss-Newton approximation drops
the second term, which can be negative, so that every estimate stays positive; with
``d2E/dy_k^2 = 2/10``:

    d2E/da_k^2 = (2/10) f'(a_k)^2.                                                      (2)

*Hidden units.* Unit ``i`` feeds units ``k`` (every unit whose field contains it, through every
shared weight; connections absent from H2's table do not exist). Its state's derivative is
``dE/dx_i = sum_k w_ki dE/da_k``; differentiating once more and keeping only the diagonal terms
``k = k'`` gives ``d2E/dx_i^2 ~= sum_k w_ki^2 d2E/da_k^2``, and as at the outputs (dropping
``f''``):

    d2E/da_i^2 = f'(a_i)^2 * sum_k w_ki^2 d2E/da_k^2.                                  (3)

This is ordinary back-propagation with every weight squared, every ``f'`` squared, and second
derivatives in place of first ones: one backward pass, as cheap as the gradient's. Batched, (3)
is a transposed convolution of ``d2E/da^2`` with the squared kernels (a matrix product with the
squared weights in a full layer), and (1) is a product of ``d2E/da^2`` with the unfolded squared
inputs, summed over the positions that share a kernel. The unit's derivative comes from its
state: for ``f(a) = A tanh(S a)``, ``f'(a) = S (A - f(a)^2 / A)``; for ``tanh``,
``f'(a) = 1 - f(a)^2``.

How good the approximation is: the Gauss-Newton diagonal is ``(2/10) sum_o (dy_o/dw_k)^2``,
and ``dy_o/dw_k`` sums over every path from weight ``k`` to output ``o``. Eq. (1)-(3) square
each path's term and drop the products of different paths. An output weight reaches one output
by one path, and so does an unshared weight of the last hidden layer (``dy_o/dw_kj =
f'(a_o) w_ok f'(a_k) x_j``): for the top two layers the estimate *is* the Gauss-Newton diagonal.
Below them (H1, H2 of LeNet-1) a unit reaches an output through several units of the next layer,
and a shared kernel through every position it is used at, so the estimate drops cross terms
that can have either sign. :func:`exact_gauss_newton_diagonal` computes the exact diagonal, to
compare with.

How ``eta`` and ``mu`` relate to the loss's normalisation
----------------------------------------------------------

Scaling the loss by ``c`` scales both the gradient and ``h_kk`` by ``c``, so the step
``eta * c * g / (mu + c * h)`` is unchanged if ``mu`` is scaled by ``c`` too: ``eta`` does not
depend on the normalisation, ``mu`` does. The same rule on the summed loss ``10 E_p`` with
``(eta, mu)`` is exactly our rule with ``(eta, mu / 10)``; on half the summed loss, ``5 E_p``, it
is ``(eta, mu / 5)``. Which of these the 1998 paper's ``mu = 0.02`` belongs to is a guess: its
LeNet-5 loss is on RBF outputs (``sum_j (x_j - w_ij)^2``, no half), not on ten place-coded
outputs. Here ``mu`` is used as given, in units of our ``E_p``: the default 0.02 is the 1998
figure taken literally; if the 1998 loss is read as a sum over ten outputs, ``mu = 0.002`` would
be its equivalent. The calibration tries both. Where ``h_kk >> mu`` the step is ``eta`` times
the Newton step ``g / h`` whatever the normalisation; where ``h_kk << mu`` it is plain gradient
descent with the rate ``eta / mu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Digits
from ..nets import (
    PAD_AFTER,
    PAD_BEFORE,
    STRIDE,
    TANH_AMPLITUDE,
    TANH_SLOPE,
    FullyConnected40,
    LeNet1,
    OutputUnit,
    check_images,
)

OUTPUTS = 10
# d2E_p/dy_k^2 for E_p = (1/10) sum_k (y_k - t_k)^2.
OUTPUT_SECOND_DERIVATIVE = 2.0 / OUTPUTS
# The 1998 paper's schedule for LeNet-5 on 60,000 patterns: (passes, eta) phases; the last eta
# holds for every later pass.
LENET5_SCHEDULE: tuple[tuple[int, float], ...] = (
    (2, 0.0005), (3, 0.0002), (3, 0.0001), (4, 0.00005), (1, 0.00001))
LENET5_MU = 0.02
LENET5_PATTERNS = 500
# Patterns per batch in the curvature pass: bounds the memory of the unfolded inputs.
CHUNK = 1024


# --- the second-derivative pass ---------------------------------------------------------------


def squared_derivative(state: Tensor, unit: OutputUnit) -> Tensor:
    """``f'(a)^2`` from the unit's state ``x = f(a)``.

    ``scaled_tanh``: ``f = A tanh(S a)``, ``f' = A S (1 - tanh^2(S a)) = S (A - x^2 / A)``.
    ``tanh``: ``f' = 1 - x^2``. ``sigmoid`` (an output in the +-1 code, ``tanh(a/2)``):
    ``f' = (1 - x^2) / 2``.
    """
    if unit == "scaled_tanh":
        derivative = TANH_SLOPE * (TANH_AMPLITUDE - state * state / TANH_AMPLITUDE)
    elif unit == "tanh":
        derivative = 1.0 - state * state
    elif unit == "sigmoid":
        derivative = 0.5 * (1.0 - state * state)
    else:
        raise ValueError(f"no derivative for unit {unit!r}")
    return derivative * derivative


def _full_layer(inputs: Tensor, second: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A fully connected layer: ``a_k = sum_j w_kj x_j + b_k``.

    Args:
        inputs: the states ``x_j`` feeding the layer, (N, J).
        second: ``d2E/da_k^2`` of the layer's units, (N, K).
        weight: (K, J).

    Returns the weights' and biases' ``h_kk`` summed over the N patterns (eq. 1), and
    ``sum_k w_kj^2 d2E/da_k^2`` for each input unit (the sum of eq. 3), (N, J).
    """
    return second.T @ (inputs * inputs), second.sum(dim=0), second @ (weight * weight)


def _conv_layer(padded: Tensor, second: Tensor, weight: Tensor,
                pad: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """A convolutional layer with shared kernels and one bias per unit.

    Args:
        padded: the states feeding the layer, background padding included, (N, C, H+p, W+p).
        second: ``d2E/da^2`` of the layer's units, (N, O, P, Q).
        weight: the kernels as the forward pass uses them (masked), (O, C, kh, kw).
        pad: the padding (before, after) on each side, to strip from the back-propagated sum.

    Returns ``h_kk`` for the kernels (O, C, kh, kw), summed over the patterns and over every
    position that shares a kernel (eq. 1); ``h_kk`` for the per-unit biases (O, P, Q), summed
    over the patterns; and the sum of eq. 3 for the real (unpadded) input units, (N, C, H, W).
    """
    n, out_maps = second.shape[:2]
    kernel = weight.shape[2:]
    # (N, C*kh*kw, P*Q): every position's squared inputs, in the kernel's own order.
    columns = F.unfold(padded * padded, kernel, stride=STRIDE)
    weight_curvature = torch.einsum("nol,ncl->oc", second.reshape(n, out_maps, -1), columns)
    # A transposed convolution sends each unit's d2E/da^2, times each squared weight, back to
    # every input in its field: the sum over k of w_ki^2 d2E/da_k^2.
    size = padded.shape[2:]
    natural = [(s - 1) * STRIDE + k for s, k in zip(second.shape[2:], kernel)]
    back = F.conv_transpose2d(second, weight * weight, stride=STRIDE,
                              output_padding=tuple(t - m for t, m in zip(size, natural)))
    before, after = pad
    back = back[:, :, before:back.shape[2] - after, before:back.shape[3] - after]
    return weight_curvature.reshape(weight.shape), second.sum(dim=0), back


def h2_mask(model: LeNet1) -> Tensor:
    """H2's connection table as a 0/1 tensor that broadcasts against ``h2_weight``."""
    return model.table[:, :, None, None].to(model.h2_weight.dtype)


def _lenet1_sums(model: LeNet1, images: Tensor) -> dict[str, Tensor]:
    states = model.layers(images)
    unit = model.unit
    pad = (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)
    sums: dict[str, Tensor] = {}
    second = OUTPUT_SECOND_DERIVATIVE * squared_derivative(states["out"], model.output)  # eq. 2
    sums["out_weight"], sums["out_bias"], back = _full_layer(states["h3"], second,
                                                             model.out_weight)
    second = squared_derivative(states["h3"], unit) * back                            # eq. 3
    h2 = states["h2"]
    sums["h3_weight"], sums["h3_bias"], back = _full_layer(h2.flatten(1), second,
                                                           model.h3_weight)
    second = squared_derivative(h2, unit) * back.reshape(h2.shape)
    mask = h2_mask(model)
    h2_inputs = F.pad(states["h1"], pad, value=model.h2_background)
    weight, sums["h2_bias"], back = _conv_layer(h2_inputs, second, model.h2_weight * mask,
                                                (PAD_BEFORE, PAD_AFTER))
    sums["h2_weight"] = weight * mask
    second = squared_derivative(states["h1"], unit) * back
    h1_inputs = F.pad(images, pad, value=model.input_background)
    sums["h1_weight"], sums["h1_bias"], _ = _conv_layer(h1_inputs, second, model.h1_weight,
                                                        (PAD_BEFORE, PAD_AFTER))
    return sums


def _fc_sums(model: FullyConnected40, images: Tensor) -> dict[str, Tensor]:
    states = model.layers(images)
    unit = model.unit
    sums: dict[str, Tensor] = {}
    second = OUTPUT_SECOND_DERIVATIVE * squared_derivative(states["out"], model.output)  # eq. 2
    sums["out_weight"], sums["out_bias"], back = _full_layer(states["hidden"], second,
                                                             model.out_weight)
    second = squared_derivative(states["hidden"], unit) * back                        # eq. 3
    sums["hidden_weight"], sums["hidden_bias"], _ = _full_layer(images.flatten(1), second,
                                                                model.hidden_weight)
    return sums


@torch.no_grad()
def curvature(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """The Gauss-Newton diagonal ``h_kk`` by second-derivative back-propagation, averaged over
    ``images`` (N, 1, 16, 16): one tensor per parameter, of the parameter's shape.

    Every value is >= 0; H2 weights absent from the connection table get exactly 0.
    """
    check_images(images)
    if len(images) == 0:
        raise ValueError("the curvature needs at least one pattern")
    if not isinstance(model, (LeNet1, FullyConnected40)):
        raise TypeError(f"no second-derivative pass for {type(model).__name__}")
    total: dict[str, Tensor] = {}
    for start in range(0, len(images), CHUNK):
        batch = images[start:start + CHUNK]
        sums = _lenet1_sums(model, batch) if isinstance(model, LeNet1) else \
            _fc_sums(model, batch)
        for name, value in sums.items():
            total[name] = total[name] + value if name in total else value
    names = [name for name, _ in model.named_parameters()]
    if set(names) != set(total):
        raise RuntimeError(f"curvature covers {sorted(total)}, the model has {sorted(names)}")
    return {name: (total[name] / len(images)).reshape(param.shape).detach()
            for name, param in model.named_parameters()}


def exact_gauss_newton_diagonal(model: nn.Module, images: Tensor,
                                chunk: int = 8) -> dict[str, Tensor]:
    """The exact diagonal of the Gauss-Newton matrix, ``(2/10) sum_o (dy_o/dw_k)^2``, averaged
    over ``images``: the quantity second-derivative back-propagation approximates.

    The per-output Jacobians come from ``torch.func.jacrev``, which ``vmap``s the backward pass
    over the outputs of ``chunk`` patterns at a time. Row ``(i, o)`` of the chunk's Jacobian is
    ``dy_io/dw``, which depends on pattern ``i`` alone, so squaring and summing the rows gives
    the sum over the chunk's patterns. (The model's input checks rule out ``vmap`` over the
    patterns themselves.) The cost grows as ``chunk`` squared per chunk: for tests and studies.
    """
    from torch.func import functional_call, jacrev

    check_images(images)
    if len(images) == 0:
        raise ValueError("the Gauss-Newton diagonal needs at least one pattern")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a whole number >= 1, got {chunk!r}")
    params = {name: param.detach() for name, param in model.named_parameters()}
    buffers = {name: buffer for name, buffer in model.named_buffers()}

    def outputs(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (x,))

    total = {name: torch.zeros_like(param) for name, param in params.items()}
    for start in range(0, len(images), chunk):
        jacobians = jacrev(outputs)(params, images[start:start + chunk])  # (n, 10, *shape)
        for name, jacobian in jacobians.items():
            total[name] += jacobian.pow(2).sum(dim=(0, 1))
    return {name: OUTPUT_SECOND_DERIVATIVE * value / len(images) for name, value in total.items()}


# --- the step rule -----------------------------------------------------------------------------


def _check_schedule(schedule: Sequence[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    phases = tuple(tuple(phase) for phase in schedule)
    if not phases:
        raise ValueError("the eta schedule needs at least one (passes, eta) phase")
    for phase in phases:
        if len(phase) != 2:
            raise ValueError(f"a schedule phase is a (passes, eta) pair, got {phase!r}")
        passes, eta = phase
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ValueError(f"a phase lasts a whole number >= 1 of passes, got {passes!r}")
        if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise ValueError(f"eta must be a positive number, got {eta!r}")
    return tuple((int(p), float(e)) for p, e in phases)  # type: ignore[misc]


@dataclass
class SDLM:
    """The stochastic diagonal Levenberg-Marquardt step rule (1998 paper, appendix C).

    Before pass ``n`` (1-based) it averages the curvature ``h_kk`` over ``patterns`` training
    patterns drawn at random (from ``seed`` and ``n``: the same on every run) and gives weight
    ``k`` the step ``eta_n / (mu + h_kk)`` for the whole pass.

    Args:
        schedule: ``(passes, eta)`` phases in order; after the last phase its eta holds for
            every later pass. The default is the 1998 paper's LeNet-5 schedule (0.0005 for 2
            passes, 0.0002 for 3, 0.0001 for 3, 0.00005 for 4, then 0.00001); its values for
            the 1989 network are unknown. See :meth:`scaled` and :meth:`constant`.
        mu: added to every ``h_kk``; in units of our loss, the mean over the 10 outputs (how
            the 1998 paper's 0.02 translates is a guess: see the module's docstring).
        patterns: how many training patterns the curvature is averaged over before each pass
            (all of them if the set is smaller).
        seed: draws the patterns.

    After each call of :meth:`step_sizes`, ``last_curvature`` holds the ``h_kk`` it used and
    ``last_pass`` the pass it was for.

    With the 1989 initialisation (weights within +-2.4/F) the network starts nearly linear with
    its outputs near 0, and ``h_kk`` is tiny (about 1e-8 to 1e-4 on our loss) for every weight
    but the biases of H3 and the outputs (about 0.007 and 0.26): with ``mu = 0.02`` the first
    pass is close to plain gradient descent at the rate ``eta / mu``.
    """

    schedule: tuple[tuple[int, float], ...] = LENET5_SCHEDULE
    mu: float = LENET5_MU
    patterns: int = LENET5_PATTERNS
    seed: int = 0
    last_curvature: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False,
                                              compare=False)
    last_pass: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.schedule = _check_schedule(self.schedule)
        if not (isinstance(self.mu, (int, float)) and math.isfinite(self.mu) and self.mu > 0):
            raise ValueError(f"mu must be a positive number, got {self.mu!r}")
        if isinstance(self.patterns, bool) or not isinstance(self.patterns, int) \
                or self.patterns < 1:
            raise ValueError(f"patterns must be a whole number >= 1, got {self.patterns!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed!r}")
        self.mu = float(self.mu)

    @classmethod
    def scaled(cls, factor: float, schedule: Sequence[tuple[int, float]] = LENET5_SCHEDULE,
               **kwargs: object) -> SDLM:
        """``schedule`` (by default the 1998 paper's) with every eta multiplied by ``factor``."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"the schedule's factor must be a positive number, got {factor!r}")
        phases = _check_schedule(schedule)
        return cls(schedule=tuple((p, e * factor) for p, e in phases), **kwargs)  # type: ignore

    @classmethod
    def constant(cls, eta: float, **kwargs: object) -> SDLM:
        """The same eta for every pass."""
        return cls(schedule=((1, eta),), **kwargs)  # type: ignore[arg-type]

    def eta(self, pass_index: int) -> float:
        """The global eta of pass ``pass_index`` (1-based)."""
        if isinstance(pass_index, bool) or not isinstance(pass_index, int) or pass_index < 1:
            raise ValueError(f"passes are numbered from 1, got {pass_index!r}")
        end = 0
        for passes, eta in self.schedule:
            end += passes
            if pass_index <= end:
                return eta
        return self.schedule[-1][1]

    def sample(self, size: int, pass_index: int) -> Tensor:
        """The indices (sorted) of the patterns the curvature is averaged over before pass
        ``pass_index``, out of ``size``: a function of ``seed`` and ``pass_index`` only."""
        if size < 1:
            raise ValueError("the training set is empty")
        count = min(self.patterns, size)
        generator = np.random.default_rng([self.seed, pass_index])
        chosen = generator.choice(size, size=count, replace=False)
        return torch.from_numpy(np.sort(chosen).astype(np.int64))

    def step_sizes(self, model: nn.Module, train: Digits, pass_index: int) -> dict[str, Tensor]:
        eta = self.eta(pass_index)
        index = self.sample(len(train), pass_index)
        h = curvature(model, train.images[index])
        self.last_curvature = h
        self.last_pass = pass_index
        steps = {name: eta / (self.mu + value) for name, value in h.items()}
        if isinstance(model, LeNet1):
            # Absent connections have no gradient; a zero step keeps them visibly inert.
            steps["h2_weight"] = steps["h2_weight"] * h2_mask(model)
        return steps
