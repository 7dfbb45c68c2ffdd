"""Replicas: eight networks to a vector
------------------------------------

The single pass is bound by the overheads of its short loops, not by arithmetic, so many
LeNet-1s go faster together than one after another. ``_lenet1_lanes`` trains a *group*
of 8 networks with the replica as the innermost (fastest) axis of every array: a weight of
the single pass becomes 8 consecutive floats, one per network (a "lane"), so w1 is (25, 12, 8)
[offset, H1 map, lane], w2 (300, 12, 8), w3 (H, 192, 8), a state (unit, lane), and so on
(no padding maps: the vector runs across the networks now). Every scalar operation of
``_lenet1_pass`` becomes one 8-wide AVX2 operation doing it for all 8 networks, lane l
doing network l's operation on network l's numbers, in the same order: the same products,
summed in the same order (``_lanes_gemm`` keeps a block of outputs in registers and adds
each output's terms in the single pass's order, multiply then add, no fused multiply-add),
the same ``fast_tanh``, the same 16 partial sums in the full layers' dot products. So each
network gets exactly FastEngine's numbers, whatever the other lanes hold. Each network's own
unit constants (A, S, A S, for the hidden and the output units) and H2's background are lane
vectors too, so units, connection tables (absent weights are zero weights with zero steps, per
lane), backgrounds and step sizes may differ across the lanes. The input image (and the
background around it) is the same for every lane and is kept once,
broadcast into the products that use it. H2's unfolded input and its error are built one
H1 map at a time (12.8 KB, in the first-level cache), and H2's gradient goes straight into
its update without being stored. H2's blocks of 4 output maps that no lane's table connects
to an H1 map are skipped (``_live_blocks``): with the block table in every lane, a third of
H2's products, which are most of the arithmetic.

A group short of 8 networks fills its other lanes with dummies (zero weights and steps), which
cost as much as real ones. A group costs some 3 single passes (measured once per process,
:func:`~lenet1.engine.schedule.measured_group_cost`), so
whole groups of 8 go to the lanes, a remainder of fewer than that many networks takes the
single pass (10 networks on two cores: a group of 8 on one, two single passes on the other),
a larger one fills one more group (the groups as even as possible), and the lanes are used
at all only where that beats single passes for every network (``_lane_count``). The
fully connected net keeps the single pass per network. Groups, or single passes, run on
Python threads (the compiled functions release the GIL), not in numba's OpenMP parallel
loops, whose threads spin after a parallel call and slow the single-threaded work that
follows.
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
    H2FLAT_BLOCKS,
    H2N,
    H2SIDE,
    LANES,
    ONE,
    OUT,
    QUAD,
    ROW4,
    SIDE,
    TWO_TENTHS,
    VECTOR,
    XPHASE,
    XPHASES,
    ZERO,
    K,
    _add_into,
    _copy,
    _inline,
    _jit,
    _lanes_gemm,
    _lanes_gemm_step,
    _lanes_step,
    f32,
    fast_tanh,
)
from .single import _phase_at


@_inline
def _lanes_derivative(d: np.ndarray, u: np.ndarray, amp_slope: np.ndarray) -> None:
    """``d *= A S (1 - u^2)`` over flat lane arrays (``amp_slope`` repeats the lanes' A S)."""
    for i in range(d.size):
        d[i] *= amp_slope[i] * (ONE - u[i] * u[i])


@_inline
def _lanes_bias_squash(a: np.ndarray, b: np.ndarray, u: np.ndarray, x: np.ndarray,
                       amp_x: np.ndarray, slope_x: np.ndarray) -> None:
    """``a += b``, then ``x = A tanh(S a)`` (``u`` the tanh), over flat lane arrays."""
    for i in range(a.size):
        a[i] += b[i]
        t = fast_tanh(slope_x[i] * a[i])
        u[i] = t
        x[i] = amp_x[i] * t


@_inline
def _lanes_full_step(w: np.ndarray, s: np.ndarray, b: np.ndarray, sb: np.ndarray, d: np.ndarray,
                     x: np.ndarray, rows: int, cols: int) -> None:
    """A full layer's update, lane by lane: ``w[r, k] -= s[r, k] d[r] x[k]``, ``b -= sb d``."""
    for r in range(rows):
        for k in range(cols):
            _lanes_step(w, (r * cols + k) * LANES, s, (r * cols + k) * LANES,
                        d, r * LANES, x, k * LANES)
    for i in range(rows * LANES):
        b[i] -= sb[i] * d[i]


@_inline
def _lanes_dot(y: np.ndarray, w: np.ndarray, x: np.ndarray, acc: np.ndarray, n: int) -> None:
    """``y[j] = sum_i w[j, i] x[i]`` for every row j, lane by lane, summed as ``_dot``
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
                  out_amp: np.ndarray, out_slope: np.ndarray, input_background: np.float32,
                  losses: np.ndarray) -> None:
    """``_lenet1_pass`` for a group of 8 networks, one per lane: w1 (25, 12, 8) [offset,
    H1 map, lane], b1 (768, 8), w2 (300, 12, 8) [H1 map * 25 + offset, H2 map, lane], b2
    (192, 8), w3 (H, 192, 8), b3 (H, 8), w4 (10, H, 8), b4 (10, 8); s* the steps alike;
    background, amp, slope, out_amp, out_slope and losses (float64) one per lane; the input's
    background, which the lanes share. Each lane does its network's operations in
    ``_lenet1_pass``'s order; the loss sums are added to ``losses``."""
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
    out_amp_x = np.empty(OUT * L, np.float32)              # the output units' alike
    out_slope_x = np.empty(OUT * L, np.float32)
    out_amp_slope_x = np.empty(OUT * L, np.float32)
    for i in range(OUT * L):
        out_amp_x[i] = out_amp[i % L]
        out_slope_x[i] = out_slope[i % L]
        out_amp_slope_x[i] = out_amp[i % L] * out_slope[i % L]
    xph = np.full(XPHASES, input_background, np.float32)  # the input: the same for every lane
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
        _lanes_bias_squash(a3, b3f, u3, x3, amp_x, slope_x)
        _lanes_dot(a4, w4f, x3, acc4, hidden)                  # a4 = w4 x3 + b4
        _lanes_bias_squash(a4, b4f, u4, y, out_amp_x, out_slope_x)

        # ---- backward ---------------------------------------------------------------------
        loss[:] = ZERO
        for c in range(OUT):
            target = targets[pattern, c]
            for lane in range(L):
                i = c * L + lane
                diff = y[i] - target
                loss[lane] += diff * diff
                d4[i] = TWO_TENTHS * diff * (out_amp_slope_x[i] * (ONE - u4[i] * u4[i]))
        for lane in range(L):
            losses[lane] += float(loss[lane] / f32(OUT))
        e3[:] = ZERO
        for j in range(hidden):                                # e3 = w4^T d4, then w4 moves
            _lanes_gemm(e3, j * L, 0, 0, d4, 0, 0, 0, L, w4f, j * L, 0, 0, hidden * L,
                        1, 1, OUT, 0)
        _lanes_full_step(w4f, s4f, b4f, sb4f, d4, x3, OUT, hidden)
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
        _lanes_full_step(w3f, s3f, b3f, sb3f, e3, x2, hidden, H2FLAT)
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


