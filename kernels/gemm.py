"""A plain tiled GEMM: the reference every convolution main loop is compared with, and
a 1x1 convolution (stride 1, no padding, one group) when positions flatten into rows.

GEMM view:
    output[m, n] = sum_k A[m, k] * B[k, n]  (+ bias[n])
    M = batch * positions       rows: output positions (= input positions)
    N = out_channels            cols
    K = in_channels
    A[m, k] = input at row m, channel k     (row stride stride_am, channel stride stride_ak)
    B[k, n] = weight[n, k, 1, ...]          (stride_bk, stride_bn)

Its main loop has the shape of Triton's matrix-multiplication tutorial's: two loads masked
on the reduction tail, one tl.dot, two pointer advances, so its SASS is what a gather-free loop costs.
"""

import triton
import triton.language as tl

from ._index import mma, swizzle_tile


@triton.jit
def gemm_kernel(
    # pointers
    a_ptr, b_ptr, bias_ptr, c_ptr,
    # sizes
    rows, columns, reduction,
    # strides (elements)
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    # meta-parameters
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr, UPCAST_DOT: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    pid_m, pid_n = swizzle_tile(tl.program_id(0), tl.cdiv(rows, BLOCK_M), tl.cdiv(columns, BLOCK_N), GROUP_M)
    row = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    col = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k = tl.arange(0, BLOCK_K)
    # Rows and columns past the edge wrap around (in bounds; their results are never
    # stored), so the loop masks only the reduction tail, as the tutorial's does.
    a_pointers = a_ptr + (row % rows).to(INDEX_DTYPE)[:, None] * stride_am + k[None, :] * stride_ak
    b_pointers = b_ptr + k[:, None] * stride_bk + (col % columns).to(INDEX_DTYPE)[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for step in range(0, tl.cdiv(reduction, BLOCK_K)):
        remaining = reduction - step * BLOCK_K
        a = tl.load(a_pointers, mask=(k < remaining)[None, :], other=0.0)
        b = tl.load(b_pointers, mask=(k < remaining)[:, None], other=0.0)
        acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
        a_pointers += BLOCK_K * stride_ak
        b_pointers += BLOCK_K * stride_bk
    if HAS_BIAS:
        acc += tl.load(bias_ptr + col, mask=col < columns, other=0.0).to(acc.dtype)[None, :]
    c_pointers = c_ptr + row.to(INDEX_DTYPE)[:, None] * stride_cm + col.to(INDEX_DTYPE)[None, :] * stride_cn
    tl.store(c_pointers, acc.to(c_ptr.dtype.element_ty), mask=(row < rows)[:, None] & (col < columns)[None, :])
