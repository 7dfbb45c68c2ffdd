"""The kernels' building blocks: LeNet-1's sizes as compile-time constants, the numba
settings, and small vector operations written directly in LLVM IR (16 floats for the single
pass, 8 lanes for the replica kernel), plus a branch-free tanh."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..nets import BACKGROUND, KERNEL, MAPS

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
    """Typing and code for ``_lanes_gemm`` (``step`` False) and ``_lanes_gemm_step``
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
    ``_lanes_gemm``, then ``W[j, k] -= S[j, k] * G[j, k]``, ``S`` (the steps) at W's
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

