"""Forward convolution as an implicit GEMM (also transposed convolution's input gradient).

GEMM view, per group g (program axis 1):
    output[m, n] = sum_k A[m, k] * B[k, n]  (+ bias[n])
    M = batch * out_depth * out_height * out_width        rows: output positions
    N = out_channels / groups                             cols: output channels of group g
    K = (in_channels / groups) * kernel_d * kernel_h * kernel_w
    A[m, (tap, c)] = input[n, g*Cg + c, od*sd - pd + kd*dd, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
    B[(tap, c), n] = weight[g*Ng + n, c, kd, kh, kw]

Tensors (any strides, in elements; 1-d and 2-d problems have unit leading extents):
    input  [batch, in_channels, in_depth, in_height, in_width]
    weight [out_channels, in_channels / groups, KERNEL_D, KERNEL_H, KERNEL_W]
    bias   [out_channels] or absent
    output [batch, out_channels, out_depth, out_height, out_width]

Depthwise layers (one input channel per group) run as one group spanning every output
channel, with an elementwise multiply-add per tap instead of tl.dot (DEPTHWISE).

The K loop runs over (tap, channel block) pairs, tap-major. Row offsets of a tap are
recomputed from per-row base indices (vectors of BLOCK_M), never per element, and the
padding is resolved in that gather: zeros by the load mask, reflect / replicate /
circular by folding the index, so no padded copy of the input ever exists.
"""

import triton
import triton.language as tl

from ._index import mma, padded_index, split_rows, store_output, swizzle_tile


@triton.jit
def tap_rows(
    first_d, first_h, first_w, kd, kh, kw, dilation_d, dilation_h, dilation_w,
    in_depth, in_height, in_width, in_stride_d, in_stride_h, in_stride_w,
    input_row_base, row_in_range, PADDING_MODE: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    """Per row, the input offset tap (kd, kh, kw) reads and whether it is a real element."""
    in_d, valid_d = padded_index(first_d + kd * dilation_d, in_depth, PADDING_MODE)
    in_h, valid_h = padded_index(first_h + kh * dilation_h, in_height, PADDING_MODE)
    in_w, valid_w = padded_index(first_w + kw * dilation_w, in_width, PADDING_MODE)
    row_offset = input_row_base + (
        in_d.to(INDEX_DTYPE) * in_stride_d + in_h.to(INDEX_DTYPE) * in_stride_h + in_w.to(INDEX_DTYPE) * in_stride_w
    )
    return row_offset, row_in_range & valid_d & valid_h & valid_w


@triton.jit
def conv_fprop_kernel(
    # pointers
    input_ptr, weight_ptr, bias_ptr, output_ptr,
    # input sizes and strides
    batch, in_depth, in_height, in_width,
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w,
    # weight strides
    weight_stride_o, weight_stride_c, weight_stride_d, weight_stride_h, weight_stride_w,
    # output sizes and strides
    out_depth, out_height, out_width,
    out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
    # geometry
    stride_d, stride_h, stride_w,
    pad_d, pad_h, pad_w,
    dilation_d, dilation_h, dilation_w,
    in_channels_per_group, out_channels_per_group, depthwise_multiplier,
    # meta-parameters
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr,
    PADDING_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, DEPTHWISE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr, UPCAST_DOT: tl.constexpr,
    INDEX_DTYPE: tl.constexpr,
):
    group = tl.program_id(1)
    num_rows = batch * out_depth * out_height * out_width
    pid_m, pid_n = swizzle_tile(
        tl.program_id(0), tl.cdiv(num_rows, BLOCK_M), tl.cdiv(out_channels_per_group, BLOCK_N), GROUP_M
    )

    # Rows: output positions of this tile, and where their receptive fields start.
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in_range = rows < num_rows
    n, od, oh, ow = split_rows(rows, out_depth, out_height, out_width)
    first_d = od * stride_d - pad_d
    first_h = oh * stride_h - pad_h
    first_w = ow * stride_w - pad_w
    input_row_base = n.to(INDEX_DTYPE) * in_stride_n + (group * in_channels_per_group).to(INDEX_DTYPE) * in_stride_c

    # Columns: output channels of this group.
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in_range = cols < out_channels_per_group
    out_channels = group * out_channels_per_group + cols
    weight_col_base = out_channels.to(INDEX_DTYPE) * weight_stride_o

    # Depthwise: one input channel per group (launched as a single group spanning all
    # output channels); output channel oc reads only input channel oc // multiplier.
    depthwise_input_col = (out_channels // depthwise_multiplier).to(INDEX_DTYPE) * in_stride_c
    channels = tl.arange(0, BLOCK_K)
    channel_blocks = tl.cdiv(in_channels_per_group, BLOCK_K)  # 1 when DEPTHWISE
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for step in range(0, KERNEL_D * KERNEL_H * KERNEL_W * channel_blocks):
        tap = step // channel_blocks
        channel_start = (step - tap * channel_blocks) * BLOCK_K
        kw = tap % KERNEL_W
        kh = (tap // KERNEL_W) % KERNEL_H
        kd = tap // (KERNEL_W * KERNEL_H)
        row_offset, row_mask = tap_rows(
            first_d, first_h, first_w, kd, kh, kw, dilation_d, dilation_h, dilation_w,
            in_depth, in_height, in_width, in_stride_d, in_stride_h, in_stride_w,
            input_row_base, row_in_range, PADDING_MODE, INDEX_DTYPE,
        )
        tap_offset = kd * weight_stride_d + kh * weight_stride_h + kw * weight_stride_w
        if DEPTHWISE:
            # No channel reduction: an elementwise multiply-add on CUDA cores rather than
            # a tl.dot whose 16-wide K would be 15/16 padding.
            a = tl.load(
                input_ptr + row_offset[:, None] + depthwise_input_col[None, :],
                mask=row_mask[:, None] & col_in_range[None, :],
                other=0.0,
            )
            b = tl.load(weight_ptr + weight_col_base + tap_offset, mask=col_in_range, other=0.0)
            acc += a.to(ACC_DTYPE) * b.to(ACC_DTYPE)[None, :]
        else:
            channel = channel_start + channels
            channel_mask = channel < in_channels_per_group
            a = tl.load(
                input_ptr + row_offset[:, None] + (channel * in_stride_c)[None, :],
                mask=row_mask[:, None] & channel_mask[None, :],
                other=0.0,
            )
            b = tl.load(
                weight_ptr + weight_col_base[None, :] + (channel * weight_stride_c + tap_offset)[:, None],
                mask=channel_mask[:, None] & col_in_range[None, :],
                other=0.0,
            )
            acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)

    # Recomputed rather than kept live through the K loop (registers).
    n, od, oh, ow = split_rows(rows, out_depth, out_height, out_width)
    store_output(
        output_ptr, acc, bias_ptr, out_channels, row_in_range, col_in_range,
        n, od, oh, ow, out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
        HAS_BIAS, INDEX_DTYPE,
    )
