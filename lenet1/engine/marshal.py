"""From torch to the kernels' arrays and back: names, layouts, step sizes, patterns."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..nets import (
    BACKGROUND,
    KERNEL,
    MAPS,
    TANH_AMPLITUDE,
    TANH_SLOPE,
    FullyConnected40,
    LeNet1,
    ShapeError,
    check_images,
)
from .intrinsics import H1SIDE, H2FLAT, H2SIDE, ONE, OUT, SIDE, VECTOR, f32

# --- from torch to the kernels and back --------------------------------------------------------

LENET1_NAMES = ("h1_weight", "h1_bias", "h2_weight", "h2_bias", "h3_weight", "h3_bias",
                "out_weight", "out_bias")
FC_NAMES = ("hidden_weight", "hidden_bias", "out_weight", "out_bias")


def _unit_constants(unit: str) -> tuple[np.float32, np.float32]:
    """(A, S) of f(a) = A tanh(S a). tanh is A = S = 1: multiplying by 1 changes nothing. The
    sigmoid output, in the +-1 code, is tanh(a/2) (:func:`lenet1.nets.activation`)."""
    if unit == "scaled_tanh":
        return f32(TANH_AMPLITUDE), f32(TANH_SLOPE)
    if unit == "tanh":
        return ONE, ONE
    if unit == "sigmoid":
        return ONE, f32(0.5)
    raise ValueError(f"the fast engine knows the units 'scaled_tanh', 'tanh' and (outputs) "
                     f"'sigmoid', not {unit!r}")


def _expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    if isinstance(model, LeNet1):
        hidden = model.h3_weight.shape[0]
        return {"h1_weight": (MAPS, 1, KERNEL, KERNEL), "h1_bias": (MAPS, H1SIDE, H1SIDE),
                "h2_weight": (MAPS, MAPS, KERNEL, KERNEL), "h2_bias": (MAPS, H2SIDE, H2SIDE),
                "h3_weight": (hidden, H2FLAT), "h3_bias": (hidden,),
                "out_weight": (OUT, hidden), "out_bias": (OUT,)}
    if isinstance(model, FullyConnected40):
        hidden = model.hidden_weight.shape[0]
        return {"hidden_weight": (hidden, SIDE * SIDE), "hidden_bias": (hidden,),
                "out_weight": (OUT, hidden), "out_bias": (OUT,)}
    raise TypeError(f"the fast engine trains LeNet1 and FullyConnected40, not "
                    f"{type(model).__name__}")


# The convolutional kernels, as the LeNet-1 pass keeps them: transposed, with the maps padded.
TRANSPOSED = ("h1_weight", "h2_weight")


def _to_kernel(name: str, array: np.ndarray) -> np.ndarray:
    """A parameter (or its steps), shaped as in torch, in the kernels' layout: flattened per
    map or unit, (rows, rest); H1's and H2's kernels transposed to (input map * 25 + offset,
    output map) with the output maps padded to a whole vector of zeros, so that one vector
    holds a weight of every map."""
    if name in TRANSPOSED:
        rows = array.reshape(MAPS, -1).T
        kernel = np.zeros((rows.shape[0], VECTOR), np.float32)
        kernel[:, :MAPS] = rows
        return kernel
    shape = array.shape
    return np.ascontiguousarray(array.reshape(shape if len(shape) == 1
                                              else (shape[0], math.prod(shape[1:]))),
                                dtype=np.float32).copy()


def _from_kernel(name: str, kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if name in TRANSPOSED:
        return np.ascontiguousarray(kernel[:, :MAPS].T).reshape(shape)
    return kernel.reshape(shape)


class _Net:
    """One model's parameters and step sizes as float32 numpy arrays in the kernels' layout.

    For LeNet-1 the working copy of H2's kernels has its absent connections set to zero and
    their steps to zero; :meth:`write_back` puts the model's own values there back.
    """

    def __init__(self, model: nn.Module, step_sizes: Mapping[str, Tensor]) -> None:
        expected = _expected_shapes(model)
        self.model = model
        self.is_lenet1 = isinstance(model, LeNet1)
        self.names = LENET1_NAMES if self.is_lenet1 else FC_NAMES
        params = dict(model.named_parameters())
        if set(params) != set(self.names):
            raise ShapeError(f"expected the parameters {sorted(self.names)}, the model has "
                             f"{sorted(params)}")
        for name in self.names:
            param = params[name]
            if tuple(param.shape) != expected[name]:
                raise ShapeError(f"parameter {name} has shape {tuple(param.shape)}, expected "
                                 f"{expected[name]}")
            if param.dtype != torch.float32 or param.device.type != "cpu":
                raise ShapeError(f"parameter {name} must be a float32 CPU tensor, got "
                                 f"{param.dtype} on {param.device}")
        unknown = set(step_sizes) - set(self.names)
        if unknown:
            raise ValueError(f"step sizes given for unknown parameters {sorted(unknown)}")
        self.params = [params[name] for name in self.names]
        values = [param.detach().numpy().copy() for param in self.params]
        steps = [_step_array(name, step_sizes, param)
                 for name, param in zip(self.names, self.params)]
        self.amp, self.slope = _unit_constants(getattr(model, "unit", ""))
        self.out_amp, self.out_slope = _unit_constants(getattr(model, "output", ""))
        self.background = f32(0.0)
        self.input_background = f32(getattr(model, "input_background", BACKGROUND))
        self.absent: np.ndarray | None = None
        self.kept: np.ndarray | None = None
        if self.is_lenet1:
            assert isinstance(model, LeNet1)
            background = float(model.h2_background)
            if not math.isfinite(background):
                raise ValueError(f"h2_background must be finite, got {background}")
            self.background = f32(background)
            # (12, 12, 5, 5): True for the weights of connections absent from the table.
            self.absent = np.broadcast_to(~model.table.numpy()[:, :, None, None],
                                          values[2].shape)
            self.kept = values[2][self.absent]
            values[2][self.absent] = 0.0
            steps[2][self.absent] = 0.0
        self.arrays = [_to_kernel(name, value) for name, value in zip(self.names, values)]
        self.steps = [_to_kernel(name, step) for name, step in zip(self.names, steps)]

    @property
    def constants(self) -> tuple[np.float32, ...]:
        """The single-network kernel's last arguments: LeNet-1's H2 background, the hidden and
        output units' (A, S) and the input's background; the fully connected net's units."""
        units = (self.amp, self.slope, self.out_amp, self.out_slope)
        return (self.background, *units, self.input_background) if self.is_lenet1 else units

    def write_back(self, arrays: Sequence[np.ndarray] | None = None) -> None:
        """Copy ``arrays`` (by default the working copy) into the model's parameters."""
        arrays = self.arrays if arrays is None else arrays
        with torch.no_grad():
            for name, param, array in zip(self.names, self.params, arrays):
                value = _from_kernel(name, array, tuple(param.shape))
                if name == "h2_weight" and self.absent is not None:
                    value = value.copy()
                    value[self.absent] = self.kept
                param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _step_array(name: str, step_sizes: Mapping[str, Tensor], param: Tensor) -> np.ndarray:
    """The step sizes of one parameter, broadcast to its full shape, as a fresh float32
    array."""
    if name not in step_sizes:
        raise ValueError(f"no step size given for parameter {name}")
    step = step_sizes[name]
    if not isinstance(step, Tensor):
        step = torch.as_tensor(step)
    if not (step.is_floating_point() or step.dtype in (torch.int32, torch.int64)):
        raise ShapeError(f"the step size of {name} must be a real tensor, got {step.dtype}")
    try:
        full = torch.broadcast_to(step.detach().to("cpu", torch.float32), param.shape)
    except RuntimeError:
        raise ShapeError(f"the step size of {name} has shape {tuple(step.shape)}, which does "
                         f"not broadcast to the parameter's {tuple(param.shape)}") from None
    if not bool(torch.isfinite(full).all()):
        raise ValueError(f"the step size of {name} contains NaN or infinite values")
    return full.contiguous().numpy().copy()


def _patterns(images: Tensor, targets: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Check a pass's patterns; return them as (N, 256) and (N, 10) float32 arrays."""
    check_images(images)
    if not isinstance(targets, Tensor):
        raise ShapeError(f"expected a torch.Tensor of targets, got {type(targets).__name__}")
    if targets.dim() != 2 or targets.shape[1] != OUT or targets.shape[0] != images.shape[0]:
        raise ShapeError(f"targets must have shape ({images.shape[0]}, {OUT}) for "
                         f"{images.shape[0]} images, got {tuple(targets.shape)}")
    if targets.dtype != torch.float32:
        raise ShapeError(f"targets must be float32, got {targets.dtype}")
    if not bool(torch.isfinite(targets).all()):
        raise ShapeError("targets contain NaN or infinite values")
    flat = images.detach().to("cpu").reshape(len(images), SIDE * SIDE)
    return (np.ascontiguousarray(flat.numpy()),
            np.ascontiguousarray(targets.detach().to("cpu").numpy()))
