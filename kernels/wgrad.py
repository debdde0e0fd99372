"""Weight gradient of convolution as a split-K implicit GEMM; with input and grad_output
swapped it is also the weight gradient of transposed convolution.

GEMM view, per group g (axis 1), tap and split (axis 2):
    grad_weight[o, (c, tap)] = sum_m A[o, m] * B[m, c]
    M = out_channels / groups                    rows: output channels of group g
    N = in_channels / groups, one tap per column tile
    K = batch * out_depth * out_height * out_width   (split in SPLIT ranges, axis 2)
    A[o, m] = grad_output[n, g*Mg + o, od, oh, ow]
    B[m, c] = input[n, g*Cg + c, od*sd - pd + kd*dd, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
    (padding resolved in the gather exactly as the forward kernel does)

Tensors (any strides, in elements):
    input       [batch, in_channels, in_depth, in_height, in_width]
    grad_output [batch, out_channels, out_depth, out_height, out_width]
    workspace   fp32 (fp64 for fp64) [SPLIT, out_channels * (in_channels / groups) * taps + out_channels]:
                each split's partial weight gradient in weight order [o, c, kd, kh, kw],
                then (BIAS_GRAD only) its partial bias gradient (row sums of A, taken by the first column
                tile of tap 0). wgrad_reduce_kernel sums the splits in a fixed order, so
                results are bit-reproducible: no atomics anywhere.

DEPTHWISE (one input channel per group): a single group spanning every output channel;
output channel o meets only input channel o // multiplier, so each step is an
elementwise product summed over positions instead of a mostly-empty tl.dot.
"""

import triton
import triton.language as tl

from ._index import mma, padded_index, split_rows


@triton.jit
def conv_wgrad_kernel(
    # pointers
    input_ptr, grad_output_ptr, workspace_ptr,
    # input sizes and strides
    batch, in_depth, in_height, in_width,
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w,
    # grad_output sizes and strides
    out_depth, out_height, out_width,
    grad_stride_n, grad_stride_c, grad_stride_d, grad_stride_h, grad_stride_w,
    # geometry
    stride_d, stride_h, stride_w,
    pad_d, pad_h, pad_w,
    dilation_d, dilation_h, dilation_w,
    in_channels_per_group, out_channels_per_group, depthwise_multiplier,
    rows_per_split, split_stride, bias_offset,
    # meta-parameters
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr,
    PADDING_MODE: tl.constexpr, BIAS_GRAD: tl.constexpr, DEPTHWISE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr, UPCAST_DOT: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    TAPS: tl.constexpr = KERNEL_D * KERNEL_H * KERNEL_W
    group = tl.program_id(1)
    split = tl.program_id(2)
    # Axis 0: output-channel tiles fastest, then (tap, input-channel tile).
    num_pid_m = tl.cdiv(out_channels_per_group, BLOCK_M)
    num_pid_c = tl.cdiv(in_channels_per_group, BLOCK_N)
    pid_m = tl.program_id(0) % num_pid_m
    pid_n = tl.program_id(0) // num_pid_m
    tap = pid_n // num_pid_c
    pid_c = pid_n % num_pid_c
    kw = tap % KERNEL_W
    kh = (tap // KERNEL_W) % KERNEL_H
    kd = tap // (KERNEL_W * KERNEL_H)

    out_channel = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # within the group
    out_mask = out_channel < out_channels_per_group
    grad_col = (group * out_channels_per_group + out_channel).to(INDEX_DTYPE) * grad_stride_c
    if DEPTHWISE:
        channel = out_channel // depthwise_multiplier
        channel_mask = out_mask
    else:
        channel = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
        channel_mask = channel < in_channels_per_group
    input_col = (group * in_channels_per_group + channel).to(INDEX_DTYPE) * in_stride_c

    num_rows = batch * out_depth * out_height * out_width
    first_row = split * rows_per_split
    last_row = tl.minimum(first_row + rows_per_split, num_rows)
    positions = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    bias_acc = tl.zeros((BLOCK_M,), dtype=ACC_DTYPE)
    depthwise_acc = tl.zeros((BLOCK_M,), dtype=ACC_DTYPE)
    for row_start in range(first_row, last_row, BLOCK_K):
        rows = row_start + positions
        row_mask = rows < last_row
        n, od, oh, ow = split_rows(rows, out_depth, out_height, out_width)
        grad_row = (
            n.to(INDEX_DTYPE) * grad_stride_n + od.to(INDEX_DTYPE) * grad_stride_d
            + oh.to(INDEX_DTYPE) * grad_stride_h + ow.to(INDEX_DTYPE) * grad_stride_w
        )
        in_d, valid_d = padded_index(od * stride_d - pad_d + kd * dilation_d, in_depth, PADDING_MODE)
        in_h, valid_h = padded_index(oh * stride_h - pad_h + kh * dilation_h, in_height, PADDING_MODE)
        in_w, valid_w = padded_index(ow * stride_w - pad_w + kw * dilation_w, in_width, PADDING_MODE)
        input_row = (
            n.to(INDEX_DTYPE) * in_stride_n + in_d.to(INDEX_DTYPE) * in_stride_d
            + in_h.to(INDEX_DTYPE) * in_stride_h + in_w.to(INDEX_DTYPE) * in_stride_w
        )
        input_mask = row_mask & valid_d & valid_h & valid_w
        a = tl.load(
            grad_output_ptr + grad_col[:, None] + grad_row[None, :],
            mask=out_mask[:, None] & row_mask[None, :],
            other=0.0,
        )
        if DEPTHWISE:
            b = tl.load(
                input_ptr + input_col[:, None] + input_row[None, :],
                mask=channel_mask[:, None] & input_mask[None, :],
                other=0.0,
            )
            depthwise_acc += tl.sum(a.to(ACC_DTYPE) * b.to(ACC_DTYPE), axis=1)
        else:
            b = tl.load(
                input_ptr + input_row[:, None] + input_col[None, :],
                mask=input_mask[:, None] & channel_mask[None, :],
                other=0.0,
            )
            acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
        if BIAS_GRAD:
            bias_acc += tl.sum(a.to(ACC_DTYPE), axis=1)

    # Partial results in weight order [o, c, tap] of this split's workspace row.
    split_base = workspace_ptr + split.to(INDEX_DTYPE) * split_stride
    weight_row = (group * out_channels_per_group + out_channel).to(INDEX_DTYPE) * in_channels_per_group
    if DEPTHWISE:
        tl.store(split_base + weight_row * TAPS + tap, depthwise_acc, mask=out_mask)
    else:
        offsets = (weight_row[:, None] + channel[None, :]) * TAPS + tap
        tl.store(split_base + offsets, acc, mask=out_mask[:, None] & channel_mask[None, :])
    if BIAS_GRAD:
        if pid_n == 0:
            bias_index = group * out_channels_per_group + out_channel
            tl.store(split_base + bias_offset + bias_index, bias_acc, mask=out_mask)


@triton.jit
def wgrad_reduce_kernel(
    workspace_ptr, grad_weight_ptr, grad_bias_ptr,
    num_splits, split_stride, weight_numel,
    BIAS_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    """Second pass: sum the split partials in split order (deterministic), cast once,
    write grad_weight (contiguous) and grad_bias."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < split_stride
    total = tl.zeros((BLOCK,), dtype=workspace_ptr.dtype.element_ty)
    for split in range(0, num_splits):
        total += tl.load(workspace_ptr + split * split_stride + offsets, mask=mask, other=0.0)
    tl.store(grad_weight_ptr + offsets, total.to(grad_weight_ptr.dtype.element_ty), mask=offsets < weight_numel)
    if BIAS_GRAD:
        bias_offsets = offsets - weight_numel
        tl.store(
            grad_bias_ptr + bias_offsets, total.to(grad_bias_ptr.dtype.element_ty),
            mask=mask & (bias_offsets >= 0),
        )
