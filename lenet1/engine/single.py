"""One network's online pass, compiled: the whole pass in one compiled loop, backprop by hand.

:class:`lenet1.train.online.ReferenceEngine` lets autograd run a batch of one, so nearly all of its
time is per-operator overhead. :class:`~lenet1.engine.fast.FastEngine` does the same arithmetic with numba: it
copies the parameters out of the model, runs every pattern of the pass inside one compiled
function (forward, backward and update, fused: no Python per pattern), and copies them back.
:class:`~lenet1.engine.schedule.ReplicaEngine` and :func:`~lenet1.train.replicas.train_replicas` train several independent networks at once:
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
blocks of explicit 16-float vector operations (``_gemm16``), many rows side by side so
that their additions overlap. The two kernels are kept transposed, one row per (input map,
offset) holding that weight for every output map (12 maps padded to 16 with zeros), so that
every product runs along whole vectors: over a map's units, or over the maps. The padded maps
are stored split by the parity of row and column, so that the pixels one row of stride-2
fields sees are contiguous and the unfolding (and its reverse) moves rows of 4 or 8 floats at
a time. The long loops of H3 and of the fully connected net are left to LLVM. ``tanh`` is a
branch-free rational approximation that vectorises where the C library's ``tanhf`` cannot.
One update then takes some 13-20 us on one core of the machine this was written on, against
about 0.8 ms for the reference.

"""

from __future__ import annotations

import numpy as np

from ..nets import KERNEL, MAPS, PAD_BEFORE, STRIDE
from .intrinsics import (
    H1N,
    H1PHASE,
    H1PHASES,
    H1SIDE,
    H2FLAT,
    H2IN,
    H2N,
    H2SIDE,
    OUT,
    SIDE,
    TWO_TENTHS,
    VECTOR,
    XPHASE,
    XPHASES,
    ZERO,
    K,
    _add_into,
    _copy,
    _derivative,
    _dot,
    _gemm16,
    _inline,
    _jit,
    _squash,
    _tanh_of,
    f32,
)

# --- LeNet-1 -------------------------------------------------------------------------------------


@_inline
def _phase_at(row: int, col: int, side: int) -> int:
    """Where pixel (row, col) of a padded map lies in its four phases, each side x side."""
    return ((row % 2) * 2 + col % 2) * side * side + (row // 2) * side + col // 2


@_inline
def _full_forward(a: np.ndarray, w: np.ndarray, x: np.ndarray, b: np.ndarray, acc: np.ndarray,
                  u: np.ndarray, out: np.ndarray, amp: np.float32, slope: np.float32) -> None:
    """A full layer: ``a = w x + b``, then its states ``out = A tanh(S a)`` (``u`` the tanh)."""
    for j in range(a.size):
        a[j] = _dot(w[j], x, acc) + b[j]
    _squash(a, u, out, amp, slope)


@_inline
def _output_error(y: np.ndarray, target: np.ndarray, u: np.ndarray, d: np.ndarray,
                  amp_slope: np.float32) -> float:
    """The output layer's error signals ``d`` for one pattern, and its loss (mean over the 10)."""
    loss = ZERO
    for c in range(OUT):
        diff = y[c] - target[c]
        loss += diff * diff
        d[c] = TWO_TENTHS * diff * _derivative(u[c], amp_slope)
    return float(loss / f32(OUT))


@_inline
def _full_backward(e: np.ndarray, w: np.ndarray, s: np.ndarray, sb: np.ndarray,
                   b: np.ndarray, d: np.ndarray, x: np.ndarray) -> None:
    """``e = w^T d`` (the error of the layer below), then ``w`` and ``b`` move."""
    for j in range(e.size):
        e[j] = ZERO
    for c in range(d.size):
        dc = d[c]
        for j in range(e.size):
            e[j] += dc * w[c, j]
        for j in range(e.size):
            w[c, j] -= s[c, j] * (dc * x[j])
        b[c] -= sb[c] * dc


@_jit
def _lenet1_pass(images: np.ndarray, targets: np.ndarray,
                 w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                 w3: np.ndarray, b3: np.ndarray, w4: np.ndarray, b4: np.ndarray,
                 s1: np.ndarray, sb1: np.ndarray, s2: np.ndarray, sb2: np.ndarray,
                 s3: np.ndarray, sb3: np.ndarray, s4: np.ndarray, sb4: np.ndarray,
                 background: np.float32, amp: np.float32, slope: np.float32,
                 out_amp: np.float32, out_slope: np.float32,
                 input_background: np.float32) -> float:
    """One online pass of LeNet-1 over ``images`` (N, 256) with ``targets`` (N, 10).

    The parameters: w1 (25, 16) [offset, H1 map], b1 (12, 64), w2 (300, 16) [H1 map * 25 +
    offset, H2 map; absent connections zero], b2 (12, 16), w3 (H, 192), b3 (H,), w4 (10, H),
    b4 (10,). The kernels are transposed so that one vector holds a weight of every map; maps
    12-15 are padding, held at zero. s* are the step sizes, of the same shapes (zero where a
    weight is held at zero). The constants: H2's background (what H1's maps are padded with),
    the hidden units' A and S, the output units' A and S, the input's background. Updates the
    parameters in place; returns the sum of the patterns' losses, each taken before its own
    update.
    """
    n = images.shape[0]
    hidden = w3.shape[0]
    amp_slope = amp * slope
    out_amp_slope = out_amp * out_slope
    # Working arrays, allocated once per pass. Names: a total input, u tanh(S a), x state,
    # e dE/dx (then, in place, the delta dE/da), d delta, p unfolded fields (im2col),
    # g gradient; "ph" a padded map split into phases, "t" transposed.
    xph = np.full(XPHASES, input_background, np.float32)  # the padded input's phases
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
        _full_forward(a3, w3, x2flat, b3, acc, u3, x3, amp, slope)    # a3 = w3 x2 + b3
        _full_forward(a4, w4, x3, b4, acc, u4, y, out_amp, out_slope)  # a4 = w4 x3 + b4

        # ---- backward: a layer moves once its error has gone down through it --------------
        total_loss += _output_error(y, targets[pattern], u4, d4, out_amp_slope)
        _full_backward(e3, w4, s4, sb4, b4, d4, x3)            # e3 = w4^T d4; w4, b4 move
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
             sb2: np.ndarray, amp: np.float32, slope: np.float32, out_amp: np.float32,
             out_slope: np.float32) -> float:
    """One online pass of the fully connected net: w1 (H, 256), b1 (H,), w2 (10, H), b2 (10,)
    and their step sizes; the hidden and output units' A and S. Updates them in place; returns
    the sum of the patterns' losses."""
    n = images.shape[0]
    hidden = w1.shape[0]
    inputs = w1.shape[1]
    amp_slope = amp * slope
    out_amp_slope = out_amp * out_slope
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
        _full_forward(a1, w1, x, b1, acc, u1, x1, amp, slope)        # a1 = w1 x + b1
        _full_forward(a2, w2, x1, b2, acc, u2, y, out_amp, out_slope)  # a2 = w2 x1 + b2
        total_loss += _output_error(y, targets[pattern], u2, d2, out_amp_slope)
        _full_backward(e1, w2, s2, sb2, b2, d2, x1)            # e1 = w2^T d2; w2, b2 move
        for j in range(hidden):                                # w1, b1 move
            dj = e1[j] * _derivative(u1[j], amp_slope)
            for i in range(inputs):
                w1[j, i] -= s1[j, i] * (dj * x[i])
            b1[j] -= sb1[j] * dj
    return total_loss


