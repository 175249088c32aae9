"""The fused per-tensor kernel: |x|^2, |y|^2, |x-y|^2 and max|x-y| in ONE pass over both float32 tensors.

Compiled with numba (imported lazily by :func:`qc.compare.metrics.pair_stats`, so ``import qc`` stays light; the
machine code is cached on disk next to this file, or in numba's user cache when that folder is read-only).

Each element is read once: the three squares are accumulated in float32 within a block of :data:`BLOCK` elements
(``reassoc`` lets LLVM keep many SIMD partial sums, so a block's rounding is that of a ~128-term sum) and in float64
across blocks, like the BLAS dot products of the former numpy kernel. The maximum of |x-y| is taken on the float's
bit pattern with the sign bit cleared: for finite floats that integer order is the order of |x-y|, and an integer
max is a reduction LLVM vectorizes (a float max with NaN semantics is not). NaN or Inf shows in the sums (the
caller then falls back to the exact float64 path), so the bit order of NaN patterns never decides anything.
"""

from __future__ import annotations

from typing import Any, cast

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

BLOCK = 4096
"""Elements per float32 block (16 KiB per tensor: both blocks stay in L1 while their sums are added up)."""

_ABS_MASK = np.int32(0x7FFFFFFF)


def _bits_typing(typingctx: Any, value: Any) -> Any:
    """The IEEE-754 bit pattern of a float32 as an int32 (an LLVM bitcast, no memory round trip)."""
    del typingctx, value

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


def _float_typing(typingctx: Any, value: Any) -> Any:
    """The float32 whose bit pattern is the given int32."""
    del typingctx, value

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


_bits: Any = intrinsic(_bits_typing)
_float: Any = intrinsic(_float_typing)


@numba.njit(
    "UniTuple(f8, 4)(f4[::1], f4[::1])",
    fastmath={"reassoc", "contract"},
    boundscheck=False,
    cache=True,
    nogil=True,
)
def _sums(x: Any, y: Any) -> Any:  # pragma: no cover - compiled; covered through pair_stats
    n = x.size
    xx = 0.0
    yy = 0.0
    dd = 0.0
    mx = np.int32(0)
    full = n - n % BLOCK
    for base in range(0, full, BLOCK):
        bx = np.float32(0.0)
        by = np.float32(0.0)
        bd = np.float32(0.0)
        bm = np.int32(0)
        for j in range(BLOCK):  # a constant trip count: LLVM unrolls and vectorizes all four reductions
            u = x[base + j]
            v = y[base + j]
            d = u - v
            bx += u * u
            by += v * v
            bd += d * d
            w = _bits(d) & _ABS_MASK
            bm = w if w > bm else bm
        xx += float(bx)
        yy += float(by)
        dd += float(bd)
        mx = bm if bm > mx else mx
    tx = np.float32(0.0)
    ty = np.float32(0.0)
    td = np.float32(0.0)
    for j in range(full, n):  # the tail, shorter than a block
        u = x[j]
        v = y[j]
        d = u - v
        tx += u * u
        ty += v * v
        td += d * d
        w = _bits(d) & _ABS_MASK
        mx = w if w > mx else mx
    return xx + tx, yy + ty, dd + td, float(_float(mx))


def fused_sums(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """|x|^2, |y|^2, |x-y|^2 and max|x-y| of two C-contiguous 1-D float32 arrays of one size (not checked here)."""
    return cast(tuple[float, float, float, float], _sums(x, y))
