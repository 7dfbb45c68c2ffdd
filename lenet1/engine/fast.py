"""One network's online pass on the compiled kernels: :class:`~lenet1.engine.fast.FastEngine`."""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from .marshal import _Net, _patterns
from .single import _fc_pass, _lenet1_pass

# (The ignores: numba's Dispatcher is typed with the kernel's own signature, which mypy cannot
# match against the star-arguments.)


def _run_one(net: _Net, images: np.ndarray, targets: np.ndarray) -> float:
    arrays = (*net.arrays, *net.steps)
    kernel = _lenet1_pass if net.is_lenet1 else _fc_pass
    return kernel(images, targets, *arrays, *net.constants)  # type: ignore[call-arg,arg-type]



class FastEngine:
    """Online training, one pattern at a time, compiled: the :class:`~lenet1.train.online.Engine`
    protocol, with the same arithmetic as :class:`~lenet1.train.online.ReferenceEngine` to float32
    rounding, thirty to fifty times faster.

    Trains :class:`~lenet1.nets.LeNet1` (any connection table and ``h2_background``) and
    :class:`~lenet1.nets.FullyConnected40`, with either unit, under any step rule: a step size
    is anything that broadcasts to its parameter's shape.

    After a pass, ``last_loss`` is the mean of the patterns' losses, each taken before its own
    update (the online training loss).
    """

    def __init__(self) -> None:
        self.last_loss: float | None = None

    def train_pass(self, model: nn.Module, images: Tensor, targets: Tensor,
                   step_sizes: dict[str, Tensor]) -> None:
        x, t = _patterns(images, targets)
        net = _Net(model, step_sizes)
        total = _run_one(net, x, t) if len(x) else 0.0
        net.write_back()
        self.last_loss = total / len(x) if len(x) else None
