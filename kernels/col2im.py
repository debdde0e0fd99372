"""Column-to-image: the second half of a transposed convolution with few output channels.

Not a GEMM. A transposed convolution (and so a conv's input gradient) whose groups have
fewer output channels than tl.dot's 16 (an RGB stem's input gradient: 3; DCGAN's last
layer: 64 -> 3) would pad its GEMM's N to 16. It is computed in two launches instead
(tconv/descriptors/columns.py): first a GEMM over the whole kernel, fprop's main loop on
a 1x1 problem, whose N is every (output channel, tap) pair (147 for a 7x7 RGB stem),

    columns[n, i, j(c, t)] = sum_ci input[n, ci, i] * weight[ci, c, t]

then this kernel, which gives every output element the columns of the taps that land on it:

    output[n, c, o] = bias[c] + sum_t columns[n, i(o, t), j(c, t)]
    i(o, t) = (o + pad - t * dilation) / stride, per dim, where it divides and is in range

Per program: BLOCK_P output positions of one stride phase (residue of o + pad modulo the
stride, per dim) x BLOCK_C channels. Within a phase the taps that divide are the same for
every position, so each tap is tested once per program (a scalar branch) and its input
index is a per-position subtraction. Phases are the fastest program index, so programs
that run together read the same column rows (each phase reads a share of every row),
which then come from L2 once rather than once per phase. The column index of (c, t) is
c * TAP_STRIDE_C + kd * TAP_STRIDE_D + kh * TAP_STRIDE_H + kw * TAP_STRIDE_W: the weight's
own offsets, scaled, so the GEMM reads the weight in place.
"""

import triton
import triton.language as tl

from ._index import split_rows


@triton.jit
def phase_start(residue, pad, stride):
    """(first output index o0 >= 0 with (o0 + pad) % stride == residue, (o0 + pad) // stride)."""
    first = ((residue - pad) % stride + stride) % stride
    return first, (first + pad) // stride


@triton.jit
def col2im_kernel(
    columns_ptr, bias_ptr, output_ptr,
    batch, in_depth, in_height, in_width, out_depth, out_height, out_width, channels,
    col_stride_n, col_stride_j, col_stride_d, col_stride_h, col_stride_w,
    tap_stride_c, tap_stride_d, tap_stride_h, tap_stride_w,
    out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
    stride_d, stride_h, stride_w, pad_d, pad_h, pad_w, dilation_d, dilation_h, dilation_w,
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC_DTYPE: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    phases = stride_d * stride_h * stride_w
    phase = tl.program_id(0) % phases
    tile = tl.program_id(0) // phases
    residue_w = phase % stride_w
    residue_h = (phase // stride_w) % stride_h
    residue_d = phase // (stride_w * stride_h)
    first_d, base_d = phase_start(residue_d, pad_d, stride_d)
    first_h, base_h = phase_start(residue_h, pad_h, stride_h)
    first_w, base_w = phase_start(residue_w, pad_w, stride_w)
    # this phase's outputs per dim (0 when the first one is past the end)
    count_d = tl.maximum(out_depth - first_d + stride_d - 1, 0) // stride_d
    count_h = tl.maximum(out_height - first_h + stride_h - 1, 0) // stride_h
    count_w = tl.maximum(out_width - first_w + stride_w - 1, 0) // stride_w

    p = tile * BLOCK_P + tl.arange(0, BLOCK_P)
    p_in_range = p < batch * count_d * count_h * count_w
    n, pd, ph, pw = split_rows(p, count_d, count_h, count_w)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_in_range = c < channels
    row_base = n.to(INDEX_DTYPE) * col_stride_n
    column_base = (c * tap_stride_c).to(INDEX_DTYPE) * col_stride_j

    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC_DTYPE)
    for kd in tl.static_range(KERNEL_D):
        if (kd * dilation_d) % stride_d == residue_d:
            in_d = base_d + pd - (kd * dilation_d) // stride_d
            valid_d = p_in_range & (in_d >= 0) & (in_d < in_depth)
            for kh in tl.static_range(KERNEL_H):
                if (kh * dilation_h) % stride_h == residue_h:
                    in_h = base_h + ph - (kh * dilation_h) // stride_h
                    valid_h = valid_d & (in_h >= 0) & (in_h < in_height)
                    for kw in tl.static_range(KERNEL_W):
                        if (kw * dilation_w) % stride_w == residue_w:
                            in_w = base_w + pw - (kw * dilation_w) // stride_w
                            valid = valid_h & (in_w >= 0) & (in_w < in_width)
                            rows = row_base + (in_d.to(INDEX_DTYPE) * col_stride_d + in_h.to(INDEX_DTYPE) * col_stride_h
                                               + in_w.to(INDEX_DTYPE) * col_stride_w)
                            tap = (kd * tap_stride_d + kh * tap_stride_h + kw * tap_stride_w).to(INDEX_DTYPE)
                            acc += tl.load(columns_ptr + rows[:, None] + (column_base + tap * col_stride_j)[None, :],
                                           mask=valid[:, None] & c_in_range[None, :], other=0.0).to(ACC_DTYPE)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=c_in_range, other=0.0).to(ACC_DTYPE)[None, :]
    out_rows = (n.to(INDEX_DTYPE) * out_stride_n + (first_d + pd * stride_d).to(INDEX_DTYPE) * out_stride_d
                + (first_h + ph * stride_h).to(INDEX_DTYPE) * out_stride_h
                + (first_w + pw * stride_w).to(INDEX_DTYPE) * out_stride_w)
    tl.store(output_ptr + out_rows[:, None] + (c.to(INDEX_DTYPE) * out_stride_c)[None, :],
             acc.to(output_ptr.dtype.element_ty), mask=p_in_range[:, None] & c_in_range[None, :])
