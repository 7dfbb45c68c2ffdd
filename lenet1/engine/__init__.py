"""The compiled engine: online training of LeNet-1 and FC-40 with backprop written by hand.

:class:`~lenet1.engine.fast.FastEngine` runs one network's pass (every pattern's forward, backward and update) in
one compiled loop, with the reference engine's arithmetic to float32 rounding and thirty to
fifty times faster. :class:`~lenet1.engine.schedule.ReplicaEngine` runs one pass for many independent networks at
once, LeNet-1s eight to a vector, each getting exactly FastEngine's numbers.

Modules, each one job:

- :mod:`~lenet1.engine.intrinsics`: sizes as compile-time constants, vector operations in
  LLVM IR, the branch-free tanh;
- :mod:`~lenet1.engine.single`: one network's pass (LeNet-1, FC-40), and the arithmetic;
- :mod:`~lenet1.engine.lanes`: eight LeNet-1s to a vector, replica innermost;
- :mod:`~lenet1.engine.marshal`: torch parameters to the kernels' arrays and back;
- :mod:`~lenet1.engine.fast`: :class:`~lenet1.engine.fast.FastEngine`, one network's pass;
- :mod:`~lenet1.engine.schedule`: :class:`~lenet1.engine.schedule.ReplicaEngine`, how replicas share the kernels and
  the cores (it decides no number).
"""

from .fast import FastEngine
from .intrinsics import fast_tanh
from .schedule import ReplicaEngine, measured_group_cost

__all__ = ["FastEngine", "ReplicaEngine", "fast_tanh", "measured_group_cost"]
