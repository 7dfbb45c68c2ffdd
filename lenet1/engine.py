"""A fast engine for online training: the whole pass in one compiled loop, backprop by hand.

:class:`lenet1.train.ReferenceEngine` lets autograd run a batch of one, so nearly all of its
time is per-operator overhead. :class:`FastEngine` does the same arithmetic with numba: it
copies the parameters out of the model, runs every pattern of the pass inside one compiled
function (forward, backward and update, fused: no Python per pattern), and copies them back.
:class:`ReplicaEngine` and :func:`train_replicas` train several independent networks at once:
LeNet-1s eight to a vector (below), or one compiled pass per network, spread over the cores.

The arithmetic, per pattern
---------------------------

Write ``a`` for a unit's total input, ``x = f(a)`` for its state and ``f(a) = A tanh(S a)``
(``A = 1.7159, S = 2/3`` for ``scaled_tanh``; ``A = S = 1`` for ``tanh``). The derivative
comes from the tanh the forward pass computed: with ``u = tanh(S a)``, ``f'(a) = A S (1 - u^2)``.

*Outputs.* ``E = (1/10) sum_k (y_k - t_k)^2``, so ``dE/dy_k = (2/10)(y_k - t_k)``, and the
output's error signal is ``delta_k = dE/da_k = f'(a_k) dE/dy_k``.

*A full layer* ``a_k = sum_j w_kj x_j + b_k`` (H3 and the output; both layers of the fully
connected net) sends back ``dE/dx_j = sum_k w_kj delta_k`` and has the gradients
``dE/dw_kj = delta_k x_j`` and ``dE/db_k = delta_k``. Below it, ``delta_j = f'(a_j) dE/dx_j``.

*A convolutional layer* (H1, H2): unit ``q`` of map ``o`` computes
``a_oq = sum_{m, k} w_omk x_m[2q + k] + b_oq``, the offset ``k`` running over the 5x5 field in
each padded input map ``m`` (written 1-d: ``2q + k`` is the pixel at offset ``k`` from the
field's corner). Unfolding the fields, ``P[(m, k), q] = x_m[2q + k]`` (im2col), makes the layer
a matrix product, ``a = W P + b``, and its backward pass two more:

- ``dE/dP = W^T delta``: each unit's error goes back through each of its weights to the input
  it saw; adding every ``dE/dP[(m, k), q]`` into ``dE/dx_m[2q + k]`` (col2im) gives the error of
  the maps below. The padding's share is dropped: the background is a constant.
- ``dE/dW = delta P^T``: ``dE/dw_omk = sum_q delta_oq x_m[2q + k]``, a shared weight's
  gradient summed over every position that shares it. Each unit has its own bias:
  ``dE/db_oq = delta_oq``.

Nothing is sent below H1: the input does not learn.

*H2's connection table.* An absent connection is a weight held at zero. The working copy of
H2's kernels has its absent weights set to zero and their step sizes to zero, so they add
nothing forward or backward and never move; the model's own values are put back untouched,
as in the reference, where the kernels are multiplied by the mask and absent weights get no
gradient.

*The update* is ``w -= step * dE/dw`` for every parameter once the pattern's backward pass is
through a layer: a layer sends its error down with the weights the pattern saw, then moves.

Why it is fast
--------------

All the arithmetic runs in float32, in a fixed order, without ``fastmath`` (reassociating the
sums would change the numbers from one build to the next). numba's loops vectorise only when
they are long (numba does not run LLVM's SLP vectoriser, and a loop of unknown length checks
its arrays for overlap on every entry), and most of LeNet-1's are short: 16 units in an H2 map,
25 weights in a kernel, 12 maps. So the convolutional layers' products are written as small
blocks of explicit 16-float vector operations (:func:`_gemm16`), many rows side by side so
that their additions overlap. The two kernels are kept transposed, one row per (input map,
offset) holding that weight for every output map (12 maps padded to 16 with zeros), so that
every product runs along whole vectors: over a map's units, or over the maps. The padded maps
are stored split by the parity of row and column, so that the pixels one row of stride-2
fields sees are contiguous and the unfolding (and its reverse) moves rows of 4 or 8 floats at
a time. The long loops of H3 and of the fully connected net are left to LLVM. ``tanh`` is a
branch-free rational approximation that vectorises where the C library's ``tanhf`` cannot.
One update then takes some 13-20 us on one core of the machine this was written on, against
about 0.8 ms for the reference.

Replicas: eight networks to a vector
------------------------------------

The single pass is bound by the overheads of its short loops, not by arithmetic, so many
LeNet-1s go faster together than one after another. :func:`_lenet1_lanes` trains a *group*
of 8 networks with the replica as the innermost (fastest) axis of every array: a weight of
the single pass becomes 8 consecutive floats, one per network (a "lane"), so w1 is (25, 12, 8)
[offset, H1 map, lane], w2 (300, 12, 8), w3 (H, 192, 8), a state (unit, lane), and so on
(no padding maps: the vector runs across the networks now). Every scalar operation of
:func:`_lenet1_pass` becomes one 8-wide AVX2 operation doing it for all 8 networks, lane l
doing network l's operation on network l's numbers, in the same order: the same products,
summed in the same order (:func:`_lanes_gemm` keeps a block of outputs in registers and adds
each output's terms in the single pass's order, multiply then add, no fused multiply-add),
the same ``fast_tanh``, the same 16 partial sums in the full layers' dot products. So each
network gets exactly FastEngine's numbers, whatever the other lanes hold. Each network's own
unit constants (A, S, A S) and background are lane vectors too, so units, connection tables
(absent weights are zero weights with zero steps, per lane), backgrounds and step sizes may
differ across the lanes. The input image is the same for every lane and is kept once,
broadcast into the products that use it. H2's unfolded input and its error are built one
H1 map at a time (12.8 KB, in the first-level cache), and H2's gradient goes straight into
its update without being stored. H2's blocks of 4 output maps that no lane's table connects
to an H1 map are skipped (:func:`_live_blocks`): with the block table in every lane, a third of
H2's products, which are most of the arithmetic.

A group short of 8 networks fills its other lanes with dummies (zero weights and steps), which
cost as much as real ones. A group costs about 2.8 single passes (:data:`GROUP_COST`), so
whole groups of 8 go to the lanes, a remainder of fewer than that many networks takes the
single pass (10 networks on two cores: a group of 8 on one, two single passes on the other),
a larger one fills one more group (the groups as even as possible), and the lanes are used
at all only where that beats single passes for every network (:func:`_lane_count`). The
fully connected net keeps the single pass per network. Groups, or single passes, run on
Python threads (the compiled functions release the GIL), not in numba's OpenMP parallel
loops, whose threads spin after a parallel call and slow the single-threaded work that
follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
from torch import Tensor, nn

from .data import Digits
from .model import (
    BACKGROUND,
    KERNEL,
    MAPS,
    PAD_BEFORE,
    STRIDE,
    TANH_AMPLITUDE,
    TANH_SLOPE,
    FullyConnected40,
    LeNet1,
    ShapeError,
    check_images,
)
from .train import History, PassRecord, StepRule, evaluate, torch_threads

__all__ = ["FastEngine", "ReplicaEngine", "fast_tanh", "train_replicas"]

f32 = np.float32

# --- LeNet-1's sizes: compile-time constants in the kernels ------------------------------------

VECTOR = 16                   # floats in one vector operation (512 bits)
SIDE = 16                     # input side
H1SIDE = 8
H1N = H1SIDE * H1SIDE         # units per H1 map
H2SIDE = 4
H2N = H2SIDE * H2SIDE         # units per H2 map: one vector
K = KERNEL * KERNEL           # offsets in a 5x5 field
H2IN = MAPS * K               # rows of H2's unfolded input: (H1 map, offset)
H2FLAT = MAPS * H2N           # H3's inputs
# A padded map is stored split by the parity of row and column into four "phases", so that
# the pixels one row of stride-2 fields sees are contiguous: pixel (Y, X) is in phase
# (Y % 2, X % 2), at (Y // 2, X // 2). Each phase is square, half the padded side rounded up.
XPHASE = (SIDE + 3 + 1) // 2          # the input, padded to 19: phases of 10 x 10
H1PHASE = (H1SIDE + 3 + 1) // 2       # an H1 map, padded to 11: phases of 6 x 6
XPHASES = 4 * XPHASE * XPHASE
H1PHASES = 4 * H1PHASE * H1PHASE
OUT = 10

ONE = f32(1.0)
ZERO = f32(0.0)
TWO_TENTHS = f32(2.0 / OUT)   # dE/dy = (2/10)(y - t)
XBACK = f32(BACKGROUND)       # the input's virtual background

# --- building blocks ---------------------------------------------------------------------------

# No fastmath: every sum keeps its written order. The "numpy" error model makes a division a
# plain division (Python's model tests the divisor for zero, which stops vectorisation).
# nogil: the replica engine runs several passes at once on Python threads.
_jit = njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
_inline = njit(cache=True, fastmath=False, error_model="numpy", inline="always")

_VEC = ir.VectorType(ir.FloatType(), VECTOR)
_SPLAT = ir.Constant(ir.VectorType(ir.IntType(32), VECTOR), [0] * VECTOR)


def _is_float32_c_array(t: types.Type) -> bool:
    return isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C"


@intrinsic
def _gemm16_intrinsic(typingctx, y, y_at, y_stride, c, c_at, c_row,  # type: ignore[no-untyped-def]
                      c_col, x, x_at, x_stride, rows, count):
    """``Y += C X`` for a block of ``rows`` x 16 outputs, ``count`` terms each:

        y[y_at + j*y_stride + l] += sum_{i < count} c[c_at + j*c_row + i*c_col]
                                                    * x[x_at + i*x_stride + l]

    for ``j < rows``, ``l < 16``, on the flat data of float32 C-contiguous arrays. Each output
    adds its terms in the order ``i = 0, 1, ...``, exactly as a loop of ``y += c * x`` would;
    the ``rows`` outputs are interleaved so that their additions overlap instead of waiting for
    each other, and they stay in registers. ``rows`` and ``count`` are constants (the block is
    unrolled); the caller keeps every index in bounds: nothing is checked.
    """
    arrays_ok = all(_is_float32_c_array(a) for a in (y, c, x))
    ints_ok = all(isinstance(i, types.Integer)
                  for i in (y_at, y_stride, c_at, c_row, c_col, x_at, x_stride))
    if not (arrays_ok and ints_ok and isinstance(rows, types.IntegerLiteral)
            and isinstance(count, types.IntegerLiteral)):
        return None
    n_rows, n_terms = rows.literal_value, count.literal_value

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        index = [context.cast(builder, value, kind, types.intp)
                 for value, kind in zip(args, signature.args)]
        y_at_, y_stride_, c_at_, c_row_, c_col_, x_at_, x_stride_ = (
            index[1], index[2], index[4], index[5], index[6], index[8], index[9])
        data = [context.make_array(signature.args[i])(context, builder, args[i]).data
                for i in (0, 3, 7)]
        y_data, c_data, x_data = data

        def at(base, offset, *terms):  # type: ignore[no-untyped-def]
            for stride, times in terms:
                offset = builder.add(offset, builder.mul(stride, ir.Constant(stride.type, times)))
            return builder.gep(base, [offset])

        def vector(pointer):  # type: ignore[no-untyped-def]
            return builder.bitcast(pointer, _VEC.as_pointer())

        y_ptrs = [vector(at(y_data, y_at_, (y_stride_, j))) for j in range(n_rows)]
        sums = [builder.load(p, align=4) for p in y_ptrs]
        for i in range(n_terms):
            xv = builder.load(vector(at(x_data, x_at_, (x_stride_, i))), align=4)
            for j in range(n_rows):
                coefficient = builder.load(at(c_data, c_at_, (c_row_, j), (c_col_, i)), align=4)
                lane = builder.insert_element(ir.Constant(_VEC, ir.Undefined), coefficient,
                                              ir.Constant(ir.IntType(32), 0))
                splat = builder.shuffle_vector(lane, ir.Constant(_VEC, ir.Undefined), _SPLAT)
                sums[j] = builder.fadd(sums[j], builder.fmul(splat, xv))
        for pointer, total in zip(y_ptrs, sums):
            builder.store(total, pointer, align=4)
        return context.get_dummy_value()

    return types.void(y, y_at, y_stride, c, c_at, c_row, c_col, x, x_at, x_stride, rows,
                      count), codegen


_gemm16: Callable[..., None] = _gemm16_intrinsic   # as the kernels call it


@intrinsic
def _mac16_intrinsic(typingctx, y, x, x_at, z, z_at):  # type: ignore[no-untyped-def]
    """``y[0:16] += x[x_at:x_at+16] * z[z_at:z_at+16]``, elementwise (flat float32 data)."""
    if not (all(_is_float32_c_array(a) for a in (y, x, z))
            and isinstance(x_at, types.Integer) and isinstance(z_at, types.Integer)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        y_arr, x_arr, x_off, z_arr, z_off = args
        ty_y, ty_x, ty_xo, ty_z, ty_zo = signature.args

        def vector(array_type, array, offset, offset_type):  # type: ignore[no-untyped-def]
            offset = context.cast(builder, offset, offset_type, types.intp)
            data = context.make_array(array_type)(context, builder, array).data
            return builder.bitcast(builder.gep(data, [offset]), _VEC.as_pointer())

        y_ptr = vector(ty_y, y_arr, ir.Constant(ir.IntType(64), 0), types.int64)
        x_ptr = vector(ty_x, x_arr, x_off, ty_xo)
        z_ptr = vector(ty_z, z_arr, z_off, ty_zo)
        product = builder.fmul(builder.load(x_ptr, align=4), builder.load(z_ptr, align=4))
        builder.store(builder.fadd(builder.load(y_ptr, align=4), product), y_ptr, align=4)
        return context.get_dummy_value()

    return types.void(y, x, x_at, z, z_at), codegen


_mac16: Callable[..., None] = _mac16_intrinsic


def _short_vector_op(dst, dst_at, src, src_at, width, add: bool):  # type: ignore[no-untyped-def]
    """Typing and code for ``dst.flat[dst_at:dst_at+width] = src.flat[src_at:src_at+width]``
    (``+=`` with ``add``): one vector load (and add) and store, ``width`` a constant."""
    if not (_is_float32_c_array(dst) and _is_float32_c_array(src)
            and isinstance(dst_at, types.Integer) and isinstance(src_at, types.Integer)
            and isinstance(width, types.IntegerLiteral)):
        return None
    vector_type = ir.VectorType(ir.FloatType(), width.literal_value)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        pointers = []
        for i in (0, 2):
            data = context.make_array(signature.args[i])(context, builder, args[i]).data
            offset = context.cast(builder, args[i + 1], signature.args[i + 1], types.intp)
            pointers.append(builder.bitcast(builder.gep(data, [offset]),
                                            vector_type.as_pointer()))
        dst_ptr, src_ptr = pointers
        value = builder.load(src_ptr, align=4)
        if add:
            value = builder.fadd(builder.load(dst_ptr, align=4), value)
        builder.store(value, dst_ptr, align=4)
        return context.get_dummy_value()

    return types.void(dst, dst_at, src, src_at, width), codegen


@intrinsic
def _copy_intrinsic(typingctx, dst, dst_at, src, src_at, width):  # type: ignore[no-untyped-def]
    """``dst.flat[dst_at:dst_at+width] = src.flat[src_at:src_at+width]`` (nothing checked)."""
    return _short_vector_op(dst, dst_at, src, src_at, width, add=False)


@intrinsic
def _add_into_intrinsic(typingctx, dst, dst_at, src, src_at, width):  # type: ignore[no-untyped-def]
    """``dst.flat[dst_at:dst_at+width] += src.flat[src_at:src_at+width]`` (nothing checked)."""
    return _short_vector_op(dst, dst_at, src, src_at, width, add=True)


_copy: Callable[..., None] = _copy_intrinsic
_add_into: Callable[..., None] = _add_into_intrinsic


# tanh: Eigen's float32 rational approximation (generic_fast_tanh_float), x p(x^2) / q(x^2),
# the input clamped where tanh rounds to +-1. Branch-free, so a loop of it vectorises; the C
# library's tanhf is a call per element and costs some thirty times as much here.
_TANH_CLAMP = f32(7.99881172180175781)
_P13, _P11, _P9, _P7, _P5, _P3, _P1 = (f32(c) for c in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03))
_Q6, _Q4, _Q2, _Q0 = (f32(c) for c in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))


@_inline
def fast_tanh(x: np.float32) -> np.float32:
    """tanh of a float32, within 4e-7 of the true value (torch's tanh is within 3e-8)."""
    v = max(min(x, _TANH_CLAMP), -_TANH_CLAMP)
    v2 = v * v
    p = ((((((_P13 * v2 + _P11) * v2 + _P9) * v2 + _P7) * v2 + _P5) * v2 + _P3) * v2 + _P1) * v
    q = ((_Q6 * v2 + _Q4) * v2 + _Q2) * v2 + _Q0
    return p / q


@_inline
def _squash(a: np.ndarray, u: np.ndarray, x: np.ndarray, amp: np.float32,
            slope: np.float32) -> None:
    """For flat arrays: ``u = tanh(S a)`` (kept for f'), and the state ``x = A u``."""
    for i in range(a.size):
        t = fast_tanh(slope * a[i])
        u[i] = t
        x[i] = amp * t


@_inline
def _tanh_of(a: np.ndarray, u: np.ndarray, slope: np.float32) -> None:
    """For flat arrays: ``u = tanh(S a)`` only (the states are written elsewhere)."""
    for i in range(a.size):
        u[i] = fast_tanh(slope * a[i])


@_inline
def _derivative(u: np.float32, amp_slope: np.float32) -> np.float32:
    """f'(a) from u = tanh(S a): A S (1 - u^2)."""
    return amp_slope * (ONE - u * u)


@_inline
def _dot(w: np.ndarray, x: np.ndarray, acc: np.ndarray) -> np.float32:
    """``sum_j w[j] x[j]`` for 1-d arrays: 16 partial sums (one vector) over the whole
    vectors, added up in lane order, then the tail. ``acc`` is scratch of 16 floats."""
    n = w.size
    full = n - n % VECTOR
    for lane in range(VECTOR):
        acc[lane] = ZERO
    for start in range(0, full, VECTOR):
        _mac16(acc, w, start, x, start)
    total = ZERO
    for lane in range(VECTOR):
        total += acc[lane]
    for j in range(full, n):
        total += w[j] * x[j]
    return total


# --- LeNet-1 -------------------------------------------------------------------------------------


@_inline
def _phase_at(row: int, col: int, side: int) -> int:
    """Where pixel (row, col) of a padded map lies in its four phases, each side x side."""
    return ((row % 2) * 2 + col % 2) * side * side + (row // 2) * side + col // 2


@_jit
def _lenet1_pass(images: np.ndarray, targets: np.ndarray,
                 w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                 w3: np.ndarray, b3: np.ndarray, w4: np.ndarray, b4: np.ndarray,
                 s1: np.ndarray, sb1: np.ndarray, s2: np.ndarray, sb2: np.ndarray,
                 s3: np.ndarray, sb3: np.ndarray, s4: np.ndarray, sb4: np.ndarray,
                 background: np.float32, amp: np.float32, slope: np.float32) -> float:
    """One online pass of LeNet-1 over ``images`` (N, 256) with ``targets`` (N, 10).

    The parameters: w1 (25, 16) [offset, H1 map], b1 (12, 64), w2 (300, 16) [H1 map * 25 +
    offset, H2 map; absent connections zero], b2 (12, 16), w3 (H, 192), b3 (H,), w4 (10, H),
    b4 (10,). The kernels are transposed so that one vector holds a weight of every map; maps
    12-15 are padding, held at zero. s* are the step sizes, of the same shapes (zero where a
    weight is held at zero). Updates the parameters in place; returns the sum of the patterns'
    losses, each taken before its own update.
    """
    n = images.shape[0]
    hidden = w3.shape[0]
    amp_slope = amp * slope
    # Working arrays, allocated once per pass. Names: a total input, u tanh(S a), x state,
    # e dE/dx (then, in place, the delta dE/da), d delta, p unfolded fields (im2col),
    # g gradient; "ph" a padded map split into phases, "t" transposed.
    xph = np.full(XPHASES, XBACK, np.float32)            # the padded input's phases
    p1 = np.empty((K, H1N), np.float32)                  # (offset, H1 unit)
    a1 = np.empty((MAPS, H1N), np.float32)
    u1 = np.empty((MAPS, H1N), np.float32)
    x1ph = np.full((MAPS, H1PHASES), background, np.float32)
    p2 = np.empty((H2IN, H2N), np.float32)               # (H1 map * 25 + offset, H2 unit)
    a2 = np.empty((MAPS, H2N), np.float32)
    u2 = np.empty((MAPS, H2N), np.float32)
    x2 = np.empty((MAPS, H2N), np.float32)
    a3 = np.empty(hidden, np.float32)
    u3 = np.empty(hidden, np.float32)
    x3 = np.empty(hidden, np.float32)
    a4 = np.empty(OUT, np.float32)
    u4 = np.empty(OUT, np.float32)
    y = np.empty(OUT, np.float32)
    d4 = np.empty(OUT, np.float32)
    e3 = np.empty(hidden, np.float32)
    e2 = np.empty((MAPS, H2N), np.float32)
    d2t = np.zeros((H2N, VECTOR), np.float32)
    ep2 = np.empty((H2IN, H2N), np.float32)              # dE/dp2
    g2 = np.empty((H2IN, VECTOR), np.float32)            # laid out as w2
    e1ph = np.empty(H1PHASES, np.float32)                # dE/dx of one padded H1 map
    d1 = np.empty((MAPS, H1N), np.float32)
    d1t = np.zeros((H1N, VECTOR), np.float32)
    g1 = np.empty((K, VECTOR), np.float32)               # laid out as w1
    acc = np.empty(VECTOR, np.float32)
    # Flat views: a loop over a whole array is one long loop, which LLVM vectorises.
    a1flat, u1flat, d1flat = a1.reshape(-1), u1.reshape(-1), d1.reshape(-1)
    b1flat, sb1flat = b1.reshape(-1), sb1.reshape(-1)
    w1flat, s1flat, g1flat = w1.reshape(-1), s1.reshape(-1), g1.reshape(-1)
    a2flat, u2flat, x2flat, e2flat = a2.reshape(-1), u2.reshape(-1), x2.reshape(-1), e2.reshape(-1)
    b2flat, sb2flat = b2.reshape(-1), sb2.reshape(-1)
    w2flat, s2flat, g2flat = w2.reshape(-1), s2.reshape(-1), g2.reshape(-1)
    ep2flat = ep2.reshape(-1)
    total_loss = 0.0

    for pattern in range(n):
        image = images[pattern]
        # ---- forward ----------------------------------------------------------------------
        for row in range(SIDE):                                # the image, padded, in phases
            for col in range(SIDE):
                xph[_phase_at(row + PAD_BEFORE, col + PAD_BEFORE, XPHASE)] = \
                    image[row * SIDE + col]
        for u in range(KERNEL):                                # unfold: p1[(u, v), (i, j)]
            for v in range(KERNEL):                            # = x[2i + u, 2j + v]: a row of
                for i in range(H1SIDE):                        # 8 units is 8 pixels in a row
                    _copy(p1, (u * KERNEL + v) * H1N + i * H1SIDE,      # of one phase
                          xph, _phase_at(STRIDE * i + u, v, XPHASE), H1SIDE)
        for i in range(MAPS * H1N):
            a1flat[i] = b1flat[i]
        for c in range(0, H1N, VECTOR):                        # a1 += w1 p1: (12x25)(25x64)
            _gemm16(a1, c, H1N, w1, 0, 1, VECTOR, p1, c, H1N, MAPS, K)
        _tanh_of(a1flat, u1flat, slope)
        for m in range(MAPS):                                  # the states, padded, in phases
            for i in range(H1SIDE):
                for j in range(H1SIDE):
                    x1ph[m, _phase_at(i + PAD_BEFORE, j + PAD_BEFORE, H1PHASE)] = \
                        amp * u1[m, i * H1SIDE + j]
        for m in range(MAPS):                                  # unfold: p2[(m, u, v), (i, j)]
            for u in range(KERNEL):
                for v in range(KERNEL):
                    r = m * K + u * KERNEL + v
                    for i in range(H2SIDE):
                        _copy(p2, r * H2N + i * H2SIDE,
                              x1ph, m * H1PHASES + _phase_at(STRIDE * i + u, v, H1PHASE), H2SIDE)
        for i in range(H2FLAT):
            a2flat[i] = b2flat[i]
        for m in range(MAPS):                                  # a2 += w2 p2: (12x300)(300x16)
            _gemm16(a2, 0, H2N, w2, m * K * VECTOR, 1, VECTOR, p2, m * K * H2N, H2N, MAPS, K)
        _squash(a2flat, u2flat, x2flat, amp, slope)
        for j in range(hidden):                                # a3 = w3 x2 + b3
            a3[j] = _dot(w3[j], x2flat, acc) + b3[j]
        _squash(a3, u3, x3, amp, slope)
        for c in range(OUT):                                   # a4 = w4 x3 + b4
            a4[c] = _dot(w4[c], x3, acc) + b4[c]
        _squash(a4, u4, y, amp, slope)

        # ---- backward: a layer moves once its error has gone down through it --------------
        loss = ZERO
        for c in range(OUT):
            diff = y[c] - targets[pattern, c]
            loss += diff * diff
            d4[c] = TWO_TENTHS * diff * _derivative(u4[c], amp_slope)
        total_loss += float(loss / f32(OUT))
        for j in range(hidden):
            e3[j] = ZERO
        for c in range(OUT):                                   # e3 = w4^T d4; w4, b4 move
            dc = d4[c]
            for j in range(hidden):
                e3[j] += dc * w4[c, j]
            for j in range(hidden):
                w4[c, j] -= s4[c, j] * (dc * x3[j])
            b4[c] -= sb4[c] * dc
        for j in range(hidden):
            e3[j] *= _derivative(u3[j], amp_slope)
        for i in range(H2FLAT):
            e2flat[i] = ZERO
        for j in range(hidden):                                # e2 = w3^T d3; w3, b3 move
            dj = e3[j]
            for i in range(H2FLAT):
                e2flat[i] += dj * w3[j, i]
            for i in range(H2FLAT):
                w3[j, i] -= s3[j, i] * (dj * x2flat[i])
            b3[j] -= sb3[j] * dj
        for i in range(H2FLAT):
            e2flat[i] *= _derivative(u2flat[i], amp_slope)
        for i in range(H2IN * H2N):
            ep2flat[i] = ZERO
        for m in range(MAPS):                                  # ep2 = w2^T d2: (300x12)(12x16)
            _gemm16(ep2, m * K * H2N, H2N, w2, m * K * VECTOR, VECTOR, 1, e2, 0, H2N, K, MAPS)
        for o in range(MAPS):
            for q in range(H2N):
                d2t[q, o] = e2[o, q]
        for i in range(H2IN * VECTOR):
            g2flat[i] = ZERO
        for m in range(MAPS):                                  # g2 = p2 d2^T: (300x16)(16x12)
            _gemm16(g2, m * K * VECTOR, VECTOR, p2, m * K * H2N, H2N, 1, d2t, 0, VECTOR, K, H2N)
        for i in range(H2IN * VECTOR):                         # w2, b2 move
            w2flat[i] -= s2flat[i] * g2flat[i]
        for i in range(H2FLAT):
            b2flat[i] -= sb2flat[i] * e2flat[i]
        for m in range(MAPS):                                  # fold ep2 onto H1 (col2im)
            for i in range(H1PHASES):
                e1ph[i] = ZERO
            for u in range(KERNEL):
                for v in range(KERNEL):
                    r = m * K + u * KERNEL + v
                    for i in range(H2SIDE):
                        _add_into(e1ph, _phase_at(STRIDE * i + u, v, H1PHASE),
                                  ep2, r * H2N + i * H2SIDE, H2SIDE)
            for i in range(H1SIDE):
                for j in range(H1SIDE):
                    p = i * H1SIDE + j
                    delta = e1ph[_phase_at(i + PAD_BEFORE, j + PAD_BEFORE, H1PHASE)] * \
                        _derivative(u1[m, p], amp_slope)
                    d1[m, p] = delta
                    d1t[p, m] = delta
        for i in range(K * VECTOR):
            g1flat[i] = ZERO
        for p in range(0, H1N, VECTOR):                        # g1 = p1 d1^T: (25x64)(64x12)
            _gemm16(g1, 0, VECTOR, p1, p, H1N, 1, d1t, p * VECTOR, VECTOR, K, VECTOR)
        for i in range(K * VECTOR):                            # w1, b1 move
            w1flat[i] -= s1flat[i] * g1flat[i]
        for i in range(MAPS * H1N):
            b1flat[i] -= sb1flat[i] * d1flat[i]
    return total_loss


# --- the fully connected network ---------------------------------------------------------------


@_jit
def _fc_pass(images: np.ndarray, targets: np.ndarray, w1: np.ndarray, b1: np.ndarray,
             w2: np.ndarray, b2: np.ndarray, s1: np.ndarray, sb1: np.ndarray, s2: np.ndarray,
             sb2: np.ndarray, amp: np.float32, slope: np.float32) -> float:
    """One online pass of the fully connected net: w1 (H, 256), b1 (H,), w2 (10, H), b2 (10,)
    and their step sizes. Updates them in place; returns the sum of the patterns' losses."""
    n = images.shape[0]
    hidden = w1.shape[0]
    inputs = w1.shape[1]
    amp_slope = amp * slope
    a1 = np.empty(hidden, np.float32)
    u1 = np.empty(hidden, np.float32)
    x1 = np.empty(hidden, np.float32)
    e1 = np.empty(hidden, np.float32)
    a2 = np.empty(OUT, np.float32)
    u2 = np.empty(OUT, np.float32)
    y = np.empty(OUT, np.float32)
    d2 = np.empty(OUT, np.float32)
    acc = np.empty(VECTOR, np.float32)
    total_loss = 0.0
    for pattern in range(n):
        x = images[pattern]
        for j in range(hidden):                                # a1 = w1 x + b1
            a1[j] = _dot(w1[j], x, acc) + b1[j]
        _squash(a1, u1, x1, amp, slope)
        for c in range(OUT):                                   # a2 = w2 x1 + b2
            a2[c] = _dot(w2[c], x1, acc) + b2[c]
        _squash(a2, u2, y, amp, slope)
        loss = ZERO
        for c in range(OUT):
            diff = y[c] - targets[pattern, c]
            loss += diff * diff
            d2[c] = TWO_TENTHS * diff * _derivative(u2[c], amp_slope)
        total_loss += float(loss / f32(OUT))
        for j in range(hidden):
            e1[j] = ZERO
        for c in range(OUT):                                   # e1 = w2^T d2; w2, b2 move
            dc = d2[c]
            for j in range(hidden):
                e1[j] += dc * w2[c, j]
            for j in range(hidden):
                w2[c, j] -= s2[c, j] * (dc * x1[j])
            b2[c] -= sb2[c] * dc
        for j in range(hidden):                                # w1, b1 move
            dj = e1[j] * _derivative(u1[j], amp_slope)
            for i in range(inputs):
                w1[j, i] -= s1[j, i] * (dj * x[i])
            b1[j] -= sb1[j] * dj
    return total_loss


# --- many LeNet-1s at once, replica-innermost ("lanes") -----------------------------------------
# A group of LANES networks is stored with the replica as the last, fastest axis: every scalar
# of the single-network pass becomes one 8-float vector (one AVX2 register), and every scalar
# operation one vector operation, lane l doing exactly network l's float32 operation in the
# same order. So each lane's numbers are FastEngine's, bit for bit, whatever the other lanes
# hold; a group short of LANES networks fills the rest with dummy lanes (zero weights and steps).

LANES = 8                     # floats in one AVX2 vector: networks per group
QUAD = 4                      # H2 maps per block skipped when absent from every lane
_LVEC = ir.VectorType(ir.FloatType(), LANES)
ROW4 = H2SIDE * LANES         # a row of 4 H2 units, every lane
H2FLAT_BLOCKS = H2FLAT // VECTOR


def _lanes_block(args: tuple, step: bool):  # type: ignore[no-untyped-def,type-arg]
    """Typing and code for :func:`_lanes_gemm` (``step`` False) and :func:`_lanes_gemm_step`
    (``step`` True: a second array, the steps, follows the first, at the same offsets)."""
    head = 2 if step else 1
    arrays = args[:head] + (args[head + 3], args[head + 8])
    ints = args[head:head + 3] + args[head + 4:head + 8] + args[head + 9:head + 13]
    literals = args[head + 13:]
    if not (all(_is_float32_c_array(a) for a in arrays)
            and all(isinstance(i, types.Integer) for i in ints)
            and all(isinstance(n, types.IntegerLiteral) for n in literals)):
        return None
    n_rows, n_cols, n_terms, n_splat = (n.literal_value for n in literals)

    def codegen(context, builder, signature, values):  # type: ignore[no-untyped-def]
        def intp(i):  # type: ignore[no-untyped-def]
            return context.cast(builder, values[i], signature.args[i], types.intp)

        def data(i):  # type: ignore[no-untyped-def]
            return context.make_array(signature.args[i])(context, builder, values[i]).data

        y_data, c_data, x_data = data(0), data(head + 3), data(head + 8)
        y_o, y_j_, y_k_ = (intp(head + i) for i in range(3))
        c_o, c_j_, c_k_, c_i_ = (intp(head + 4 + i) for i in range(4))
        x_o, x_j_, x_k_, x_i_ = (intp(head + 9 + i) for i in range(4))

        def offset(base, *terms):  # type: ignore[no-untyped-def]
            for stride, times in terms:
                if times:
                    base = builder.add(base, builder.mul(stride, ir.Constant(stride.type, times)))
            return base

        def pointer(array, at):  # type: ignore[no-untyped-def]
            return builder.bitcast(builder.gep(array, [at]), _LVEC.as_pointer())

        def load(array, at, scalar):  # type: ignore[no-untyped-def]
            if scalar:                                  # one float, broadcast to the lanes
                value = builder.load(builder.gep(array, [at]), align=4)
                lane = builder.insert_element(ir.Constant(_LVEC, ir.Undefined), value,
                                              ir.Constant(ir.IntType(32), 0))
                return builder.shuffle_vector(lane, ir.Constant(_LVEC, ir.Undefined),
                                              ir.Constant(ir.VectorType(ir.IntType(32), LANES),
                                                          [0] * LANES))
            return builder.load(pointer(array, at), align=4)

        outputs = [(j, k) for j in range(n_rows) for k in range(n_cols)]
        y_at_ = [offset(y_o, (y_j_, j), (y_k_, k)) for j, k in outputs]
        if step:                                        # a gradient starts from zero
            sums = [ir.Constant(_LVEC, [0.0] * LANES) for _ in outputs]
        else:
            sums = [builder.load(pointer(y_data, at), align=4) for at in y_at_]
        for i in range(n_terms):
            for n, (j, k) in enumerate(outputs):
                cv = load(c_data, offset(c_o, (c_j_, j), (c_k_, k), (c_i_, i)), n_splat == 1)
                xv = load(x_data, offset(x_o, (x_j_, j), (x_k_, k), (x_i_, i)), n_splat == 2)
                sums[n] = builder.fadd(sums[n], builder.fmul(cv, xv))
        if step:                                        # w -= s * g
            s_data = data(1)
            for at, total in zip(y_at_, sums):
                w_ptr = pointer(y_data, at)
                move = builder.fmul(builder.load(pointer(s_data, at), align=4), total)
                builder.store(builder.fsub(builder.load(w_ptr, align=4), move), w_ptr, align=4)
        else:
            for at, total in zip(y_at_, sums):
                builder.store(total, pointer(y_data, at), align=4)
        return context.get_dummy_value()

    return types.void(*args), codegen


@intrinsic
def _lanes_gemm_intrinsic(typingctx, y, y_at, y_j, y_k,  # type: ignore[no-untyped-def]
                          c, c_at, c_j, c_k, c_i, x, x_at, x_j, x_k, x_i,
                          rows, cols, count, splat):
    """A block of ``rows`` x ``cols`` lane vectors, each a sum of ``count`` products:

        Y[j, k] += sum_{i < count} C[j, k, i] * X[j, k, i]      (8 lanes each, elementwise)

    with ``Y[j, k]`` the 8 floats at ``y[y_at + j*y_j + k*y_k]``, ``C`` at ``c_at + j*c_j +
    k*c_k + i*c_i`` and ``X`` likewise. ``splat`` 1 makes C a single float shared by the lanes
    (the input image, the same for every network), 2 does so for X. Each lane adds its terms
    in the order ``i = 0, 1, ...`` (multiply, then add: as the scalar loop does). The block's
    outputs stay in registers; ``rows``, ``cols``, ``count`` and ``splat`` are constants;
    nothing is checked.
    """
    return _lanes_block((y, y_at, y_j, y_k, c, c_at, c_j, c_k, c_i, x, x_at, x_j, x_k, x_i,
                         rows, cols, count, splat), step=False)


@intrinsic
def _lanes_gemm_step_intrinsic(typingctx, w, s, w_at, w_j, w_k,  # type: ignore[no-untyped-def]
                               c, c_at, c_j, c_k, c_i, x, x_at, x_j, x_k, x_i,
                               rows, cols, count, splat):
    """A weight block's gradient and update in one: ``G[j, k] = 0 + sum_i C X`` as in
    :func:`_lanes_gemm`, then ``W[j, k] -= S[j, k] * G[j, k]``, ``S`` (the steps) at W's
    offsets. The gradient never goes to memory."""
    return _lanes_block((w, s, w_at, w_j, w_k, c, c_at, c_j, c_k, c_i, x, x_at, x_j, x_k, x_i,
                         rows, cols, count, splat), step=True)


_lanes_gemm: Callable[..., None] = _lanes_gemm_intrinsic
_lanes_gemm_step: Callable[..., None] = _lanes_gemm_step_intrinsic


@intrinsic
def _lanes_step_intrinsic(typingctx, w, w_at, s, s_at, d, d_at, x, x_at):  # type: ignore[no-untyped-def]
    """``w -= s * (d * x)`` for the 8 lanes at each offset: the update of a full layer's
    weight, where ``d`` (the unit's delta) and ``x`` (the input's state) come from different
    rows."""
    if not (all(_is_float32_c_array(a) for a in (w, s, d, x))
            and all(isinstance(i, types.Integer) for i in (w_at, s_at, d_at, x_at))):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        pointers = []
        for i in (0, 2, 4, 6):
            data = context.make_array(signature.args[i])(context, builder, args[i]).data
            at = context.cast(builder, args[i + 1], signature.args[i + 1], types.intp)
            pointers.append(builder.bitcast(builder.gep(data, [at]), _LVEC.as_pointer()))
        wv, sv, dv, xv = (builder.load(p, align=4) for p in pointers)
        builder.store(builder.fsub(wv, builder.fmul(sv, builder.fmul(dv, xv))), pointers[0],
                      align=4)
        return context.get_dummy_value()

    return types.void(w, w_at, s, s_at, d, d_at, x, x_at), codegen


_lanes_step: Callable[..., None] = _lanes_step_intrinsic


@_inline
def _lanes_derivative(d: np.ndarray, u: np.ndarray, amp_slope: np.ndarray) -> None:
    """``d *= A S (1 - u^2)`` over flat lane arrays (``amp_slope`` repeats the lanes' A S)."""
    for i in range(d.size):
        d[i] *= amp_slope[i] * (ONE - u[i] * u[i])


@_inline
def _lanes_dot(y: np.ndarray, w: np.ndarray, x: np.ndarray, acc: np.ndarray, n: int) -> None:
    """``y[j] = sum_i w[j, i] x[i]`` for every row j, lane by lane, summed as :func:`_dot`
    sums: 16 partial sums over the whole vectors of 16, added in order, then the tail.
    Flat lane arrays: y (rows, 8), w (rows, n, 8), x (n, 8); acc is scratch (16, rows, 8)."""
    rows = y.size // LANES
    full = n - n % VECTOR
    acc[:] = ZERO
    for j in range(rows):
        for half in range(0, VECTOR, 8):                 # 8 partial sums at a time in registers
            if full == H2FLAT:                           # H3: the whole row in one block
                _lanes_gemm(acc, (half * rows + j) * LANES, rows * LANES, 0,
                            w, (j * n + half) * LANES, LANES, 0, VECTOR * LANES,
                            x, half * LANES, LANES, 0, VECTOR * LANES, 8, 1, H2FLAT_BLOCKS, 0)
                continue
            for b in range(0, full, VECTOR):
                _lanes_gemm(acc, (half * rows + j) * LANES, rows * LANES, 0,
                            w, (j * n + b + half) * LANES, LANES, 0, 0,
                            x, (b + half) * LANES, LANES, 0, 0, 8, 1, 1, 0)
    y[:] = ZERO
    for s in range(VECTOR):
        for i in range(rows * LANES):
            y[i] += acc[s * rows * LANES + i]
    for j in range(rows):
        for t in range(full, n):
            _lanes_gemm(y, j * LANES, 0, 0, w, (j * n + t) * LANES, 0, 0, 0,
                        x, t * LANES, 0, 0, 0, 1, 1, 1, 0)


@_inline
def _lanes_unfold(p2: np.ndarray, x1ph: np.ndarray, m: int) -> None:
    """H2's unfolded input from H1 map ``m``: p2[(offset, unit, lane)], rows of 4 units."""
    for u in range(KERNEL):
        for v in range(KERNEL):
            for i in range(H2SIDE):
                _copy(p2, ((u * KERNEL + v) * H2N + i * H2SIDE) * LANES, x1ph,
                      (m * H1PHASES + _phase_at(STRIDE * i + u, v, H1PHASE)) * LANES, ROW4)


@_jit
def _live_blocks(w2: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """(H1 map, block of 4 H2 maps): whether any weight or step of the block is nonzero in
    any lane of ``w2``, ``s2`` (300, 12, 8). A block that is zero in every lane (absent from
    every lane's table) adds only products ``0 * x`` forward and backward and moves by
    ``0 * g``, so the lane kernel skips it: the same numbers while they are finite (with
    the block table, a third of H2's arithmetic)."""
    live = np.zeros((MAPS, MAPS // QUAD), np.bool_)
    for m in range(MAPS):
        for r in range(K):
            for o in range(MAPS):
                for lane in range(w2.shape[2]):
                    if w2[m * K + r, o, lane] != ZERO or s2[m * K + r, o, lane] != ZERO:
                        live[m, o // QUAD] = True
    return live


@_jit
def _lenet1_lanes(images: np.ndarray, targets: np.ndarray,
                  w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                  w3: np.ndarray, b3: np.ndarray, w4: np.ndarray, b4: np.ndarray,
                  s1: np.ndarray, sb1: np.ndarray, s2: np.ndarray, sb2: np.ndarray,
                  s3: np.ndarray, sb3: np.ndarray, s4: np.ndarray, sb4: np.ndarray,
                  background: np.ndarray, amp: np.ndarray, slope: np.ndarray,
                  losses: np.ndarray) -> None:
    """:func:`_lenet1_pass` for a group of 8 networks, one per lane: w1 (25, 12, 8) [offset,
    H1 map, lane], b1 (768, 8), w2 (300, 12, 8) [H1 map * 25 + offset, H2 map, lane], b2
    (192, 8), w3 (H, 192, 8), b3 (H, 8), w4 (10, H, 8), b4 (10, 8); s* the steps alike;
    background, amp, slope and losses (float64) one per lane. Each lane does its network's
    operations in :func:`_lenet1_pass`'s order; the loss sums are added to ``losses``."""
    n = images.shape[0]
    hidden = w3.shape[0]
    L = LANES
    # The lanes' constants repeated along the longest flat array (H1's), so that a flat loop
    # over any lane array finds its lane's constant at the same index, and vectorises.
    longest = MAPS * H1N * L
    slope_x = np.empty(longest, np.float32)
    amp_x = np.empty(longest, np.float32)
    amp_slope_x = np.empty(longest, np.float32)
    for i in range(longest):
        slope_x[i] = slope[i % L]
        amp_x[i] = amp[i % L]
        amp_slope_x[i] = amp[i % L] * slope[i % L]
    xph = np.full(XPHASES, XBACK, np.float32)             # the input: the same for every lane
    p1 = np.empty((K, H1N), np.float32)
    a1 = np.empty(MAPS * H1N * L, np.float32)             # (map, unit, lane), flat
    u1 = np.empty(MAPS * H1N * L, np.float32)
    x1 = np.empty(MAPS * H1N * L, np.float32)
    x1ph = np.empty(MAPS * H1PHASES * L, np.float32)      # (map, padded phases, lane)
    for i in range(MAPS * H1PHASES):
        for lane in range(L):
            x1ph[i * L + lane] = background[lane]
    p2 = np.empty(K * H2N * L, np.float32)                # one H1 map's (offset, unit, lane)
    a2 = np.empty(H2FLAT * L, np.float32)
    u2 = np.empty(H2FLAT * L, np.float32)
    x2 = np.empty(H2FLAT * L, np.float32)
    a3 = np.empty(hidden * L, np.float32)
    u3 = np.empty(hidden * L, np.float32)
    x3 = np.empty(hidden * L, np.float32)
    acc3 = np.empty(VECTOR * hidden * L, np.float32)
    a4 = np.empty(OUT * L, np.float32)
    u4 = np.empty(OUT * L, np.float32)
    y = np.empty(OUT * L, np.float32)
    acc4 = np.empty(VECTOR * OUT * L, np.float32)
    d4 = np.empty(OUT * L, np.float32)
    e3 = np.empty(hidden * L, np.float32)
    e2 = np.empty(H2FLAT * L, np.float32)
    ep2 = np.empty(K * H2N * L, np.float32)               # dE/dp2, one H1 map's rows
    e1ph = np.empty(H1PHASES * L, np.float32)
    d1 = np.empty(MAPS * H1N * L, np.float32)
    g1 = np.empty(K * MAPS * L, np.float32)
    loss = np.empty(L, np.float32)
    w1f, s1f, b1f, sb1f = w1.reshape(-1), s1.reshape(-1), b1.reshape(-1), sb1.reshape(-1)
    w2f, s2f, b2f, sb2f = w2.reshape(-1), s2.reshape(-1), b2.reshape(-1), sb2.reshape(-1)
    w3f, s3f, b3f, sb3f = w3.reshape(-1), s3.reshape(-1), b3.reshape(-1), sb3.reshape(-1)
    w4f, s4f, b4f, sb4f = w4.reshape(-1), s4.reshape(-1), b4.reshape(-1), sb4.reshape(-1)
    live = _live_blocks(w2, s2)

    for pattern in range(n):
        image = images[pattern]
        # ---- forward ----------------------------------------------------------------------
        for row in range(SIDE):
            for col in range(SIDE):
                xph[_phase_at(row + PAD_BEFORE, col + PAD_BEFORE, XPHASE)] = \
                    image[row * SIDE + col]
        for u in range(KERNEL):
            for v in range(KERNEL):
                for i in range(H1SIDE):
                    _copy(p1, (u * KERNEL + v) * H1N + i * H1SIDE,
                          xph, _phase_at(STRIDE * i + u, v, XPHASE), H1SIDE)
        for i in range(MAPS * H1N * L):
            a1[i] = b1f[i]
        for m in range(0, MAPS, 2):                            # a1 += w1 p1, p1 shared
            for q in range(0, H1N, 4):
                _lanes_gemm(a1, (m * H1N + q) * L, H1N * L, L, w1f, m * L, L, 0, MAPS * L,
                            p1, q, 0, 1, H1N, 2, 4, K, 2)
        for i in range(MAPS * H1N * L):
            t = fast_tanh(slope_x[i] * a1[i])
            u1[i] = t
            x1[i] = amp_x[i] * t
        for m in range(MAPS):                                  # the states, padded, in phases
            for i in range(H1SIDE):
                for j in range(H1SIDE):
                    _copy(x1ph, (m * H1PHASES + _phase_at(i + PAD_BEFORE, j + PAD_BEFORE,
                                                          H1PHASE)) * L,
                          x1, (m * H1N + i * H1SIDE + j) * L, LANES)
        for i in range(H2FLAT * L):
            a2[i] = b2f[i]
        for m in range(MAPS):                                  # a2 += w2 p2, rows in order,
            _lanes_unfold(p2, x1ph, m)                         # one H1 map's rows at a time
            for o in range(0, MAPS, 2):
                if not live[m, o // QUAD]:
                    continue
                for q in range(0, H2N, 4):
                    _lanes_gemm(a2, (o * H2N + q) * L, H2N * L, L,
                                w2f, (m * K * MAPS + o) * L, L, 0, MAPS * L,
                                p2, q * L, 0, L, H2N * L, 2, 4, K, 0)
        for i in range(H2FLAT * L):
            t = fast_tanh(slope_x[i] * a2[i])
            u2[i] = t
            x2[i] = amp_x[i] * t
        _lanes_dot(a3, w3f, x2, acc3, H2FLAT)                  # a3 = w3 x2 + b3
        for i in range(hidden * L):
            a3[i] += b3f[i]
            t = fast_tanh(slope_x[i] * a3[i])
            u3[i] = t
            x3[i] = amp_x[i] * t
        _lanes_dot(a4, w4f, x3, acc4, hidden)                  # a4 = w4 x3 + b4
        for i in range(OUT * L):
            a4[i] += b4f[i]
            t = fast_tanh(slope_x[i] * a4[i])
            u4[i] = t
            y[i] = amp_x[i] * t

        # ---- backward ---------------------------------------------------------------------
        loss[:] = ZERO
        for c in range(OUT):
            target = targets[pattern, c]
            for lane in range(L):
                i = c * L + lane
                diff = y[i] - target
                loss[lane] += diff * diff
                d4[i] = TWO_TENTHS * diff * (amp_slope_x[i] * (ONE - u4[i] * u4[i]))
        for lane in range(L):
            losses[lane] += float(loss[lane] / f32(OUT))
        e3[:] = ZERO
        for j in range(hidden):                                # e3 = w4^T d4, then w4 moves
            _lanes_gemm(e3, j * L, 0, 0, d4, 0, 0, 0, L, w4f, j * L, 0, 0, hidden * L,
                        1, 1, OUT, 0)
        for c in range(OUT):
            for j in range(hidden):
                _lanes_step(w4f, (c * hidden + j) * L, s4f, (c * hidden + j) * L,
                            d4, c * L, x3, j * L)
        for i in range(OUT * L):
            b4f[i] -= sb4f[i] * d4[i]
        _lanes_derivative(e3, u3, amp_slope_x)
        e2[:] = ZERO
        five = hidden - hidden % 5
        for i in range(0, H2FLAT, 12):                         # e2 = w3^T d3, then w3 moves
            for j in range(0, five, 5):
                _lanes_gemm(e2, i * L, L, 0, e3, j * L, 0, 0, L,
                            w3f, (j * H2FLAT + i) * L, L, 0, H2FLAT * L, 12, 1, 5, 0)
            for j in range(five, hidden):
                _lanes_gemm(e2, i * L, L, 0, e3, j * L, 0, 0, L,
                            w3f, (j * H2FLAT + i) * L, L, 0, H2FLAT * L, 12, 1, 1, 0)
        for j in range(hidden):
            for i in range(H2FLAT):
                _lanes_step(w3f, (j * H2FLAT + i) * L, s3f, (j * H2FLAT + i) * L,
                            e3, j * L, x2, i * L)
        for i in range(hidden * L):
            b3f[i] -= sb3f[i] * e3[i]
        _lanes_derivative(e2, u2, amp_slope_x)
        for m in range(MAPS):                                  # one H1 map's rows at a time,
            ep2[:] = ZERO                                      # all in the first-level cache:
            for r in range(0, K, 5):                           # ep2 = w2^T d2 (old w2)
                for q in range(H2N):
                    for o in range(0, MAPS, QUAD):
                        if live[m, o // QUAD]:
                            _lanes_gemm(ep2, (r * H2N + q) * L, H2N * L, L,
                                        w2f, ((m * K + r) * MAPS + o) * L, MAPS * L, 0, L,
                                        e2, (o * H2N + q) * L, 0, L, H2N * L, 5, 1, QUAD, 0)
            _lanes_unfold(p2, x1ph, m)                         # w2 -= s2 (p2 d2^T)
            for r in range(0, K, 5):
                for o in range(MAPS):
                    if not live[m, o // QUAD]:
                        continue
                    _lanes_gemm_step(w2f, s2f, ((m * K + r) * MAPS + o) * L, MAPS * L, L,
                                     p2, r * H2N * L, H2N * L, 0, L,
                                     e2, o * H2N * L, 0, H2N * L, L, 5, 1, H2N, 0)
            e1ph[:] = ZERO                                     # fold ep2 onto H1 (col2im)
            for u in range(KERNEL):
                for v in range(KERNEL):
                    r = u * KERNEL + v
                    for i in range(H2SIDE):
                        _add_into(e1ph, _phase_at(STRIDE * i + u, v, H1PHASE) * L,
                                  ep2, (r * H2N + i * H2SIDE) * L, ROW4)
            for i in range(H1SIDE):
                for j in range(H1SIDE):
                    _copy(d1, (m * H1N + i * H1SIDE + j) * L,
                          e1ph, _phase_at(i + PAD_BEFORE, j + PAD_BEFORE, H1PHASE) * L, LANES)
        for i in range(H2FLAT * L):
            b2f[i] -= sb2f[i] * e2[i]
        _lanes_derivative(d1, u1, amp_slope_x)
        g1[:] = ZERO
        for k in range(0, K, 5):                               # g1 = p1 d1^T, p1 shared
            for o in range(0, MAPS, 2):
                for q in range(0, H1N, VECTOR):
                    _lanes_gemm(g1, (k * MAPS + o) * L, MAPS * L, L,
                                p1, k * H1N + q, H1N, 0, 1,
                                d1, (o * H1N + q) * L, 0, H1N * L, L, 5, 2, VECTOR, 1)
        for i in range(K * MAPS * L):
            w1f[i] -= s1f[i] * g1[i]
        for i in range(MAPS * H1N * L):
            b1f[i] -= sb1f[i] * d1[i]


# --- from torch to the kernels and back --------------------------------------------------------

LENET1_NAMES = ("h1_weight", "h1_bias", "h2_weight", "h2_bias", "h3_weight", "h3_bias",
                "out_weight", "out_bias")
FC_NAMES = ("hidden_weight", "hidden_bias", "out_weight", "out_bias")


def _unit_constants(unit: str) -> tuple[np.float32, np.float32]:
    """(A, S) of f(a) = A tanh(S a). tanh is A = S = 1: multiplying by 1 changes nothing."""
    if unit == "scaled_tanh":
        return f32(TANH_AMPLITUDE), f32(TANH_SLOPE)
    if unit == "tanh":
        return ONE, ONE
    raise ValueError(f"the fast engine knows the units 'scaled_tanh' and 'tanh', not {unit!r}")


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
        self.background = f32(0.0)
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


# (The ignores: numba's Dispatcher is typed with the kernel's own signature, which mypy cannot
# match against the star-arguments.)


def _run_one(net: _Net, images: np.ndarray, targets: np.ndarray) -> float:
    arrays = (*net.arrays, *net.steps)
    if net.is_lenet1:
        return _lenet1_pass(images, targets, *arrays,  # type: ignore[call-arg,arg-type]
                            net.background, net.amp, net.slope)
    return _fc_pass(images, targets, *arrays, net.amp, net.slope)  # type: ignore[call-arg,arg-type]


def _max_threads() -> int:
    """The most threads numba may use (NUMBA_NUM_THREADS, by default the CPU count)."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


# --- the engines -------------------------------------------------------------------------------


class FastEngine:
    """Online training, one pattern at a time, compiled: the :class:`~lenet1.train.Engine`
    protocol, with the same arithmetic as :class:`~lenet1.train.ReferenceEngine` to float32
    rounding, thirty to fifty times faster.

    Trains :class:`~lenet1.model.LeNet1` (any connection table and ``h2_background``) and
    :class:`~lenet1.model.FullyConnected40`, with either unit, under any step rule: a step size
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


def _in_parallel(jobs: list[Callable[[], None]], threads: int) -> None:
    """Run the jobs on up to ``threads`` Python threads: the compiled passes release the GIL.
    (Not numba's parallel loops: its OpenMP threads spin after a parallel call, slowing the
    single-threaded work that follows, and its layer is one per process.)"""
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _single_jobs(images: np.ndarray, targets: np.ndarray, params: list[np.ndarray],
                 steps: list[np.ndarray], nets: list[_Net], losses: np.ndarray,
                 replicas: range) -> list[Callable[[], None]]:
    """A job for each of ``replicas`` (stacked in ``params`` and ``steps``, replica first):
    the single network's pass, as FastEngine runs it."""
    def one(r: int) -> None:
        net = nets[r]
        arrays = [p[r] for p in params] + [s[r] for s in steps]
        if net.is_lenet1:
            losses[r] = _lenet1_pass(images, targets, *arrays,  # type: ignore[call-arg]
                                     net.background, net.amp, net.slope)
        else:
            losses[r] = _fc_pass(images, targets, *arrays,  # type: ignore[call-arg]
                                 net.amp, net.slope)

    return [partial(one, r) for r in replicas]


# What a group of 8 lanes costs, in single-network passes on one core (measured on an AMD
# EPYC with AVX2: 2.7-2.8 with the block table in every lane, whose absent blocks are skipped;
# about 3.3 when some lane sees all 12 H1 maps). The lanes' arithmetic is the same per network,
# but the single pass is bound by its short loops' overheads, the lanes by arithmetic.
GROUP_COST = 2.8


def _lane_count(replicas: int, cores: int) -> int:
    """How many of the LeNet-1 replicas go to the lane kernel (the first ones), the rest
    taking the single pass. Whole groups of 8 always pay; a remainder of fewer networks than a
    group costs runs alone (10 on two cores: a group of 8 on one, two single passes on the
    other). All is kept only if its estimated time beats single passes for everyone."""
    whole = replicas - replicas % LANES
    lanes = whole if replicas % LANES < GROUP_COST else replicas
    groups, singles = _group_count(lanes), replicas - lanes
    mixed = max(-(-groups // cores) * GROUP_COST, (groups * GROUP_COST + singles) / cores)
    return lanes if lanes and mixed < -(-replicas // cores) else 0


def _group_count(replicas: int) -> int:
    return -(-replicas // LANES)


def _lane_groups(images: np.ndarray, targets: np.ndarray, params: list[np.ndarray],
                 steps: list[np.ndarray], background: np.ndarray, amp: np.ndarray,
                 slope: np.ndarray, losses: np.ndarray
                 ) -> tuple[list[Callable[[], None]], Callable[[], None]]:
    """Jobs that train the LeNet-1 replicas stacked in ``params`` and ``steps`` (replica
    first, the kernels' layout) in groups of up to 8 lanes, one job a group, and a function
    to call once they are done: it writes the results back into ``params`` and the loss sums
    into ``losses``. The replicas are split into groups as evenly as possible
    (10 on two groups: 5 and 5), the rest of each group's lanes dummies: zero weights and
    steps, units of slope and amplitude 1."""
    replicas = len(amp)
    groups = [np.asarray(g) for g in np.array_split(np.arange(replicas),
                                                     _group_count(replicas))]

    def to_lanes(stack: np.ndarray, name: str) -> np.ndarray:
        if name in TRANSPOSED:
            stack = stack[..., :MAPS]              # the lane kernel has no padding maps
        lanes = np.zeros((len(groups), *stack.shape[1:], LANES), np.float32)
        for g, members in enumerate(groups):
            lanes[g, ..., :len(members)] = np.moveaxis(stack[members], 0, -1)
        return lanes

    def per_lane(values: np.ndarray, dummy: float) -> np.ndarray:
        lanes = np.full((len(groups), LANES), dummy, values.dtype)
        for g, members in enumerate(groups):
            lanes[g, :len(members)] = values[members]
        return lanes

    lane_params = [to_lanes(p, name) for p, name in zip(params, LENET1_NAMES)]
    lane_steps = [to_lanes(s, name) for s, name in zip(steps, LENET1_NAMES)]
    lane_losses = np.zeros((len(groups), LANES), np.float64)
    lane_constants = (per_lane(background, 0.0), per_lane(amp, 1.0), per_lane(slope, 1.0))

    def group(g: int) -> None:
        _lenet1_lanes(images, targets,  # type: ignore[call-arg]
                      *[a[g] for a in lane_params], *[s[g] for s in lane_steps],
                      *[c[g] for c in lane_constants], lane_losses[g])

    def finish() -> None:
        for g, members in enumerate(groups):
            for stack, lanes, name in zip(params, lane_params, LENET1_NAMES):
                values = np.moveaxis(lanes[g, ..., :len(members)], -1, 0)
                if name in TRANSPOSED:
                    stack[members, :, :MAPS] = values
                else:
                    stack[members] = values
            losses[members] = lane_losses[g, :len(members)]

    return [partial(group, g) for g in range(len(groups))], finish


class ReplicaEngine:
    """Runs one online pass for several independent networks at once, each on the same
    patterns in the same order, with its own weights and step sizes.

    The networks must be all LeNet1 or all FullyConnected40 with the same parameter shapes;
    their units, connection tables and backgrounds may differ. Each gets exactly the numbers
    :class:`FastEngine` would give it alone. Enough LeNet-1s per core are trained eight to a
    vector (see the module's docstring). ``threads`` caps the cores used (default: as many as
    numba may use, at most one per group or network).
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        self.threads = threads
        self.last_losses: list[float | None] = []

    def train_pass(self, models: Sequence[nn.Module], images: Tensor, targets: Tensor,
                   step_sizes: Sequence[Mapping[str, Tensor]]) -> None:
        if len(models) == 0:
            raise ValueError("no models to train")
        if len(step_sizes) != len(models):
            raise ValueError(f"{len(models)} models but {len(step_sizes)} sets of step sizes")
        if len({id(model) for model in models}) != len(models):
            raise ValueError("the same model appears twice among the replicas")
        x, t = _patterns(images, targets)
        nets = [_Net(model, steps) for model, steps in zip(models, step_sizes)]
        first = nets[0]
        for index, net in enumerate(nets[1:], start=1):
            if net.is_lenet1 != first.is_lenet1 or any(
                    a.shape != b.shape for a, b in zip(net.arrays, first.arrays)):
                raise ShapeError(f"replica {index} is not the same architecture as replica 0 "
                                 f"({type(net.model).__name__} vs {type(first.model).__name__})")
        if len(x) == 0:
            self.last_losses = [None] * len(nets)
            return
        count = len(nets[0].arrays)
        params = [np.stack([net.arrays[i] for net in nets]) for i in range(count)]
        steps = [np.stack([net.steps[i] for net in nets]) for i in range(count)]
        amp = np.array([net.amp for net in nets], np.float32)
        slope = np.array([net.slope for net in nets], np.float32)
        losses = np.zeros(len(nets), np.float64)
        cores = min(self.threads or _max_threads(), _max_threads())
        lanes = _lane_count(len(nets), cores) if first.is_lenet1 else 0
        jobs: list[Callable[[], None]] = []
        finish: Callable[[], None] | None = None
        if lanes:
            # Eight networks to a vector; the groups' jobs first, as they are the longest.
            background = np.array([net.background for net in nets], np.float32)
            jobs, finish = _lane_groups(x, t, [p[:lanes] for p in params],
                                        [s[:lanes] for s in steps], background[:lanes],
                                        amp[:lanes], slope[:lanes], losses[:lanes])
        jobs += _single_jobs(x, t, params, steps, nets, losses, range(lanes, len(nets)))
        _in_parallel(jobs, cores)
        if finish is not None:
            finish()
        for index, net in enumerate(nets):
            net.write_back([array[index] for array in params])
        self.last_losses = [float(total) / len(x) for total in losses]


def train_replicas(models: Sequence[nn.Module], train: Digits, test: Digits, passes: int,
                   rules: Sequence[StepRule],
                   on_pass: Callable[[int, PassRecord], None] | None = None,
                   threads: int | None = None, stop_on_divergence: bool = True
                   ) -> list[History]:
    """:func:`lenet1.train.train_online` for several networks at once, one step rule each.

    Trains every model in place for ``passes`` passes over ``train`` in its own order, and
    evaluates each on both sets before training and after every pass (``on_pass`` sees the
    replica's index and the record). Returns one :class:`~lenet1.train.History` per model,
    the one ``train_online(model, train, test, passes, rule, engine=FastEngine())`` gives.

    A replica whose training MSE is no longer finite has diverged: with
    ``stop_on_divergence`` (the default, as ``train_online`` does) a FloatingPointError is
    raised; without, that replica leaves the run and its history ends there.
    """
    models, rules = list(models), list(rules)
    if len(models) != len(rules):
        raise ValueError(f"{len(models)} models but {len(rules)} step rules")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise ValueError(f"passes must be a whole number >= 0, got {passes!r}")
    check_images(train.images)
    engine = ReplicaEngine(threads)
    targets = train.targets
    histories = [History() for _ in models]
    live = list(range(len(models)))

    cores = min(threads or _max_threads(), _max_threads())

    def record(pass_index: int) -> None:
        entries: dict[int, PassRecord] = {}

        def measure(index: int) -> None:
            entries[index] = PassRecord(pass_index, evaluate(models[index], train),
                                        evaluate(models[index], test))

        # Evaluating is most of a replica run's time (the training is fast). torch releases
        # the GIL, so the models are evaluated side by side, each on one thread: the numbers
        # of a sequential evaluation. The setting is 1 throughout, whichever thread reads it.
        with torch_threads(1):
            _in_parallel([partial(measure, index) for index in live], cores)
        for index in live:
            histories[index].passes.append(entries[index])
            if on_pass is not None:
                on_pass(index, entries[index])

    record(0)
    for pass_index in range(1, passes + 1):
        if not live:
            break
        steps = [rules[index].step_sizes(models[index], train, pass_index) for index in live]
        engine.train_pass([models[index] for index in live], train.images, targets, steps)
        record(pass_index)
        diverged = [index for index in live
                    if not math.isfinite(histories[index].final.train.mse)]
        if diverged and stop_on_divergence:
            index = diverged[0]
            raise FloatingPointError(
                f"replica {index} diverged at pass {pass_index}: the MSE is "
                f"{histories[index].final.train.mse}; lower its learning rate")
        live = [index for index in live if index not in diverged]
    return histories
