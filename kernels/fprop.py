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

Elementwise layers (ELEMENTWISE_LANES > 0: one input channel per group, or small groups
of GROUP_IN input and GROUP_OUT < 16 output channels, tconv.spec.ConvSpec.elementwise_lanes)
run as one group spanning every output channel, without tl.dot: the columns are
(output channel, lane) pairs, lane = input channel of the output's group (LANES per
output channel), each tap an elementwise multiply-add, the lanes summed once per tile.
Depthwise rows may be output runs (W_RUN > 1, output_run_loop; tconv.descriptors.fprop
output_run): row r holds W_RUN consecutive output positions along w, one accumulator each,
and a K step takes a (kd, kh) row of taps, loading each input column the run reads once
(a 3x3 at stride 1 in runs of 4: 6 loads for 12 products). Given w-innermost (NCHW) input,
LANE_PAD >= 0: the columns are lanes of vectors along w (output_run_loop's lanes), and each
run's outputs store as one vector (store_run).

The K loop runs over (tap, channel block) pairs, tap-major, with the tap and block carried
as counters (no division in the loop). With zeros padding and fewer than 64 taps
(TAP_BITS; 32 for elementwise layers), each row's input offset at tap 0 and a bit per tap
saying whether that tap reads a real element are computed once per tile (in a 64-bit word
from 32 taps), so a K step's gather is a scalar delta
and a shift per row, CUTLASS-style. Without padding (UNPADDED: every tap of an output
position reads a real element), at any tap count, the main loop takes the same scalar deltas
and masks only the rows past the last, with one mask for the whole loop. Otherwise the padding is resolved in the gather each
step: zeros by the load mask, reflect / replicate / circular by folding the index, so no
padded copy of the input ever exists. EVEN_K (channels a multiple of BLOCK_K) drops the
channel masks.

Thin groups (PACKED_CHANNELS = 2..15 input channels per group, e.g. an RGB stem) pack the
reduction instead: K = TAPS * PACKED_CHANNELS in im2col order, k = tap * channels + c, so
a K step spans several taps and only the last one is padded (27 -> 32 for a 3x3 RGB stem,
not 9 x 16 = 144). Each step splits its BLOCK_K indices by constexpr divisors (a multiply
each) and gathers A and B per element.

Folded width (FOLD_CHANNELS = the input channels, when 32 does not divide them or a thin
unpadded layer's runs are whole aligned K steps, one group, zeros padding, dilation 1 along
w; tconv.descriptors.fprop folded_channels): the K loop runs over the (kd, kh) taps and, in
each, over a row's KERNEL_W x FOLD_CHANNELS run of (kw, c) pairs, k = kw * FOLD_CHANNELS + c,
which channels-last storage keeps contiguous in both operands (FOLD_DENSE: k is the offset
itself), so 80 channels x 7 taps take 64-wide K steps instead of 16-wide ones, and a 16x16
RGB patch's rows 48-long runs instead of one-element gathers. A[m, (kd, kh, k)] is real when
0 <= first_w * C + k < W * C (always, UNPADDED).

One channel block a tap (TAP_STEPS: a group of exactly BLOCK_K channels) moves to the next
tap every step, without a channel counter; the tap's weight offset and input delta are
then carried from step to step (kernels/_index.py tap_moves), as in 1-d loops.

Chunked steps (K_CHUNKS > 1, tconv.descriptors.base.k_chunks): a K step takes K_CHUNKS
whole BLOCK_K-wide channel blocks of one tap (96 channels as 3 x 32, where no power-of-two
BLOCK_K spans them without padding; 128 as 2 x 64 in channels-last loops), one tl.dot each,
sharing the tap's row mask, pointers and counters: the step is BLOCK_K x K_CHUNKS wide.
"""

import triton
import triton.language as tl

from ._index import (
    elementwise_pairs,
    in_elements,
    load_and_dot,
    mma,
    next_step,
    output_run_loop,
    padded_index,
    split_rows,
    staged_strides,
    staged_weight,
    store_output,
    store_run,
    strides_in_elements,
    sum_lanes,
    swizzle_tile,
    tap_is_valid,
    tap_move,
    tap_moves,
    valid_taps,
    width_in_unit,
)


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
def packed_step(
    k_start, input_ptr, weight_ptr, input_rows, tap_bits, first_d, first_h, first_w, input_row_base, row_in_range,
    weight_col_base, col_in_range, dilation_d, dilation_h, dilation_w, in_depth, in_height, in_width,
    in_stride_c, in_stride_d, in_stride_h, in_stride_w,
    weight_stride_c, weight_stride_d, weight_stride_h, weight_stride_w,
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, PACKED_CHANNELS: tl.constexpr,
    TAP_BITS: tl.constexpr, UNPADDED: tl.constexpr, PADDING_MODE: tl.constexpr, BLOCK_K: tl.constexpr,
    INDEX_DTYPE: tl.constexpr,
):
    """The (A, B) tiles of the packed K step at k_start: column k of A and row k of B are
    tap k // PACKED_CHANNELS, channel k % PACKED_CHANNELS; k past the last tap is zero."""
    TAPS: tl.constexpr = KERNEL_D * KERNEL_H * KERNEL_W
    k = k_start + tl.arange(0, BLOCK_K)
    k_in_range = k < TAPS * PACKED_CHANNELS
    tap = tl.minimum(k // PACKED_CHANNELS, TAPS - 1)  # (clamped: the padded k stay masked)
    channel = k - tap * PACKED_CHANNELS
    kw = tap % KERNEL_W
    kh = (tap // KERNEL_W) % KERNEL_H
    kd = tap // (KERNEL_W * KERNEL_H)
    weight_k = channel * weight_stride_c + kd * weight_stride_d + kh * weight_stride_h + kw * weight_stride_w
    b = tl.load(weight_ptr + weight_col_base[None, :] + weight_k.to(INDEX_DTYPE)[:, None],
                mask=k_in_range[:, None] & col_in_range[None, :], other=0.0)
    if TAP_BITS:
        tap_delta = (kd * (dilation_d * in_stride_d) + kh * (dilation_h * in_stride_h) + kw * (dilation_w * in_stride_w)
                     + channel * in_stride_c)
        a_offsets = input_rows[:, None] + tap_delta.to(INDEX_DTYPE)[None, :]
        if UNPADDED:  # every tap real: rows by their range (tap_bits), columns by the last step's tail
            a_mask = tap_bits[:, None] & k_in_range[None, :]
        else:
            a_mask = (((tap_bits[:, None] >> tap[None, :]) & 1) != 0) & k_in_range[None, :]
    else:
        row_offset, a_mask = tap_rows(
            first_d[:, None], first_h[:, None], first_w[:, None], kd[None, :], kh[None, :], kw[None, :],
            dilation_d, dilation_h, dilation_w, in_depth, in_height, in_width, in_stride_d, in_stride_h, in_stride_w,
            input_row_base[:, None], row_in_range[:, None], PADDING_MODE, INDEX_DTYPE,
        )
        a_offsets = row_offset + (channel * in_stride_c).to(INDEX_DTYPE)[None, :]
        a_mask = a_mask & k_in_range[None, :]
    a = tl.load(input_ptr + a_offsets, mask=a_mask, other=0.0)
    return a, b


@triton.jit
def folded_step(
    k, input_ptr, weight_ptr, a_rows, row_mask, first_w, b_cols, col_in_range, in_width, in_stride_c, in_stride_w,
    weight_stride_c, weight_stride_w, KERNEL_W: tl.constexpr, FOLD_CHANNELS: tl.constexpr,
    UNPADDED: tl.constexpr, EVEN_K: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    """The (A, B) tiles of a folded-width K step: index k of a row's (kw, channel) run is tap
    kw = k // FOLD_CHANNELS, channel k % FOLD_CHANNELS, and reads input position first_w + kw.
    UNPADDED: every position of the run is real, so A is masked by rows alone."""
    kw = k // FOLD_CHANNELS
    channel = k - kw * FOLD_CHANNELS
    a_k = (kw * in_stride_w + channel * in_stride_c).to(INDEX_DTYPE)
    b_k = (kw * weight_stride_w + channel * weight_stride_c).to(INDEX_DTYPE)
    position = first_w[:, None] + kw[None, :]
    if UNPADDED:
        a_mask = row_mask[:, None]
    else:
        a_mask = row_mask[:, None] & (position >= 0) & (position < in_width)
    if EVEN_K:
        b = tl.load(weight_ptr + b_cols[None, :] + b_k[:, None])
    else:
        k_in_range = k < KERNEL_W * FOLD_CHANNELS
        a_mask = a_mask & k_in_range[None, :]
        b = tl.load(weight_ptr + b_cols[None, :] + b_k[:, None], mask=k_in_range[:, None] & col_in_range[None, :],
                    other=0.0)
    a = tl.load(input_ptr + a_rows[:, None] + a_k[None, :], mask=a_mask, other=0.0)
    return a, b


@triton.jit
def dense_folded_step(
    k_start, a_pointers, b_pointers, run, row_mask, channels, in_width,
    KERNEL_W: tl.constexpr, FOLD_CHANNELS: tl.constexpr, UNPADDED: tl.constexpr, EVEN_K: tl.constexpr,
):
    """The (A, B) tiles of a folded-width K step whose input and weight store w and channel as
    one run (FOLD_DENSE): index k of the run is the offset itself, so the tiles are the
    tiles at k = 0 moved by the step's scalar (the pointers), and an element is real when
    its place in its row's run, `run` + k_start (run: first_w * channels + k at k = 0), lies
    in the row: one unsigned test. Columns past the edge are wrapped in range by the caller."""
    if UNPADDED:
        a_mask = row_mask[:, None]
    else:
        a_mask = row_mask[:, None] & ((run + k_start).to(tl.uint32) < in_width * FOLD_CHANNELS)
    if EVEN_K:
        b = tl.load(b_pointers)
    else:
        k_in_range = k_start + channels < KERNEL_W * FOLD_CHANNELS
        a_mask = a_mask & k_in_range[None, :]
        b = tl.load(b_pointers, mask=k_in_range[:, None], other=0.0)
    a = tl.load(a_pointers, mask=a_mask, other=0.0)
    return a, b


@triton.jit
def conv_fprop_kernel(
    # pointers
    input_ptr, weight_ptr, bias_ptr, output_ptr, stage_ptr,
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
    in_channels_per_group, out_channels_per_group,
    # meta-parameters
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr,
    PADDING_MODE: tl.constexpr, HAS_BIAS: tl.constexpr,
    BASE_FIRST: tl.constexpr, ELEMENTWISE_LANES: tl.constexpr, GROUP_IN: tl.constexpr, GROUP_OUT: tl.constexpr,
    W_RUN: tl.constexpr, RUN_STRIDE_W: tl.constexpr, LANE_PAD: tl.constexpr,
    TAP_BITS: tl.constexpr, UNPADDED: tl.constexpr, EVEN_K: tl.constexpr, TAP_STEPS: tl.constexpr,
    K_CHUNKS: tl.constexpr, PACKED_CHANNELS: tl.constexpr, STAGE_TAPS: tl.constexpr,
    FOLD_CHANNELS: tl.constexpr, FOLD_DENSE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr, UPCAST_DOT: tl.constexpr,
    INDEX_DTYPE: tl.constexpr, IN_UNIT: tl.constexpr, WEIGHT_UNIT: tl.constexpr, OUT_UNIT: tl.constexpr,
    OUT_W_UNIT: tl.constexpr,
):
    TAPS: tl.constexpr = KERNEL_D * KERNEL_H * KERNEL_W
    STEP_K: tl.constexpr = BLOCK_K * K_CHUNKS  # a tap's channels a K step takes (chunked steps)
    # Tap offsets carried across steps (tap_moves) where a step always moves a tap or moves
    # along w alone (1-d); else rebuilt from the counters each step (kernels/dgrad.py).
    CARRIED: tl.constexpr = TAP_STEPS or KERNEL_D * KERNEL_H == 1
    # Row strides and channel counts arrive divided by units (tconv.descriptors.units), one per
    # tensor: multiplied back by these constants, they are provably 16-byte multiples. The
    # input's channel count goes with the input, the output's with the output (elementwise
    # launches: the group sizes are the GROUP_IN, GROUP_OUT constexprs, the columns go with
    # the input, whose loads they mask).
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w = strides_in_elements(
        in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w, IN_UNIT, LANE_PAD >= 0)
    column_stride = weight_stride_o  # (one lane a column: the columns' stride, which comes whole)
    weight_stride_o, weight_stride_d, weight_stride_h, weight_stride_w = in_elements(
        weight_stride_o, weight_stride_d, weight_stride_h, weight_stride_w, WEIGHT_UNIT)
    if ELEMENTWISE_LANES == 1:
        weight_stride_o = column_stride
    out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w = strides_in_elements(
        out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w, OUT_UNIT, OUT_W_UNIT > 0)
    in_channels_per_group = in_channels_per_group * (1 if ELEMENTWISE_LANES else IN_UNIT)
    out_channels_per_group = out_channels_per_group * (IN_UNIT if ELEMENTWISE_LANES else OUT_UNIT)
    # Elementwise launches one group (axis 1 has one program), and a folded width has one
    # group: a constant 0 keeps the rows' offsets provably aligned (a thin layer's group
    # offset, group * 3 channels, would not be), so the loads can be vector-wide.
    group = 0 if ELEMENTWISE_LANES or FOLD_CHANNELS else tl.program_id(1)
    # Output runs (W_RUN > 1, output_run_loop): a row is W_RUN positions along w, which the
    # host makes divide the output's width; the tile still holds BLOCK_M positions.
    ROWS: tl.constexpr = BLOCK_M // W_RUN
    run_width = out_width // W_RUN if W_RUN > 1 else out_width
    num_rows = batch * out_depth * out_height * run_width
    pid_m, pid_n = swizzle_tile(
        tl.program_id(0), tl.cdiv(num_rows, ROWS), tl.cdiv(out_channels_per_group, BLOCK_N), GROUP_M
    )

    # Rows: output positions of this tile (runs' first positions), and where their receptive fields start.
    rows = pid_m * ROWS + tl.arange(0, ROWS)
    row_in_range = rows < num_rows
    n, od, oh, ow = split_rows(rows, out_depth, out_height, run_width)
    if W_RUN > 1:
        ow = ow * W_RUN
    first_d = od * stride_d - pad_d
    first_h = oh * stride_h - pad_h
    first_w = ow * stride_w - pad_w
    input_row_base = n.to(INDEX_DTYPE) * in_stride_n + (group * in_channels_per_group).to(INDEX_DTYPE) * in_stride_c
    if TAP_BITS:
        # Zeros padding: each row's offset at tap (0, 0, 0), possibly outside the input (such
        # rows are masked); a tap adds a scalar delta, so a K step's gather is one add per row.
        input_rows = input_row_base + (
            first_d.to(INDEX_DTYPE) * in_stride_d + first_h.to(INDEX_DTYPE) * in_stride_h
            + first_w.to(INDEX_DTYPE) * in_stride_w
        )
        if UNPADDED:  # no tap reads outside the input: the rows' range is the one mask
            tap_bits = row_in_range
        elif W_RUN > 1:  # a bit per (kd, kh) and input column of the run (output_run_loop)
            tap_bits = valid_taps(first_d, first_h, first_w, row_in_range, dilation_d, dilation_h, 1,
                                  in_depth, in_height, in_width, KERNEL_D, KERNEL_H,
                                  (W_RUN - 1) * RUN_STRIDE_W + KERNEL_W)
        elif FOLD_CHANNELS:  # taps over (kd, kh) only: the folded width is checked per element
            tap_bits = valid_taps(first_d, first_h, first_w, row_in_range, dilation_d, dilation_h, dilation_w,
                                  in_depth, in_height, in_width, KERNEL_D, KERNEL_H, 1, False)
        else:
            tap_bits = valid_taps(first_d, first_h, first_w, row_in_range, dilation_d, dilation_h, dilation_w,
                                  in_depth, in_height, in_width, KERNEL_D, KERNEL_H, KERNEL_W)

    # Columns: output channels of this group (elementwise: (output channel, lane) pairs).
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in_range = cols < out_channels_per_group
    out_channels = group * out_channels_per_group + cols
    if ELEMENTWISE_LANES:
        out_channels, lane, col_in_range, input_channel = elementwise_pairs(
            cols, col_in_range, ELEMENTWISE_LANES, GROUP_IN, GROUP_OUT)
        pair_input = input_channel.to(INDEX_DTYPE) * in_stride_c
        pair_weight = out_channels.to(INDEX_DTYPE) * weight_stride_o + lane.to(INDEX_DTYPE) * weight_stride_c
        if STAGE_TAPS:  # the columns' weights staged, consecutive (kernels/_index.py staged_weight)
            weight_ptr = staged_weight(weight_ptr, stage_ptr, pair_weight, col_in_range, tl.program_id(0),
                                       weight_stride_d, weight_stride_h, weight_stride_w, (0, 0, 0), (1, 1, 1),
                                       (KERNEL_D, KERNEL_H, KERNEL_W), KERNEL_D, KERNEL_H, KERNEL_W, STAGE_TAPS,
                                       BLOCK_N, INDEX_DTYPE)
            pair_weight = tl.arange(0, BLOCK_N).to(INDEX_DTYPE)
            weight_stride_d, weight_stride_h, weight_stride_w = staged_strides(KERNEL_H, KERNEL_W, BLOCK_N)
    if EVEN_K or FOLD_DENSE:
        # Whole channel blocks and column tiles (or a dense folded width's steps): columns past
        # the edge only exist in the last tile, wrap onto real channels (never stored), so the
        # weight load needs no column mask.
        weight_col_base = (group * out_channels_per_group + cols % out_channels_per_group).to(INDEX_DTYPE) * weight_stride_o
    else:
        weight_col_base = out_channels.to(INDEX_DTYPE) * weight_stride_o

    channels = tl.arange(0, BLOCK_K)
    if TAP_BITS:
        if BASE_FIRST:  # (the other branch keeps its own sum: input_ptr + a_offsets compiled longer)
            a_offsets = input_rows[:, None] + (channels * in_stride_c).to(INDEX_DTYPE)[None, :]
            b_offsets = weight_col_base[None, :] + (channels * weight_stride_c).to(INDEX_DTYPE)[:, None]
        else:
            a_tile = input_ptr + input_rows[:, None] + (channels * in_stride_c).to(INDEX_DTYPE)[None, :]
            b_tile = weight_ptr + weight_col_base[None, :] + (channels * weight_stride_c).to(INDEX_DTYPE)[:, None]

    step_channels = 1 if ELEMENTWISE_LANES else in_channels_per_group  # elementwise: a step per tap
    channel_blocks = tl.cdiv(step_channels, STEP_K)
    acc = tl.zeros((ROWS, BLOCK_N), dtype=ACC_DTYPE)
    if W_RUN > 1:
        accs = output_run_loop(
            input_ptr, weight_ptr, input_rows, tap_bits, pair_input, pair_weight, col_in_range,
            dilation_d * in_stride_d, dilation_h * in_stride_h, in_stride_w, weight_stride_d, weight_stride_h,
            weight_stride_w, KERNEL_D, KERNEL_H, KERNEL_W, W_RUN, RUN_STRIDE_W, False, UNPADDED, ROWS, BLOCK_N,
            ACC_DTYPE, INDEX_DTYPE,
            # (lanes: each row's offset at its own span, first_w + LANE_PAD, visibly aligned)
            input_row_base + (first_d.to(INDEX_DTYPE) * in_stride_d + first_h.to(INDEX_DTYPE) * in_stride_h
                              + (ow * RUN_STRIDE_W).to(INDEX_DTYPE)), LANE_PAD,
        )
        channel_blocks = 0
    if PACKED_CHANNELS:
        # Thin groups: K steps over the packed (tap, channel) pairs.
        if not TAP_BITS:
            input_rows = input_row_base
            tap_bits = row_in_range
        for k_start in range(0, TAPS * PACKED_CHANNELS, BLOCK_K):
            a, b = packed_step(
                k_start, input_ptr, weight_ptr, input_rows, tap_bits, first_d, first_h, first_w, input_row_base,
                row_in_range, weight_col_base, col_in_range, dilation_d, dilation_h, dilation_w,
                in_depth, in_height, in_width, in_stride_c, in_stride_d, in_stride_h, in_stride_w,
                weight_stride_c, weight_stride_d, weight_stride_h, weight_stride_w,
                KERNEL_D, KERNEL_H, KERNEL_W, PACKED_CHANNELS, TAP_BITS, UNPADDED, PADDING_MODE, BLOCK_K, INDEX_DTYPE,
            )
            acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
        channel_blocks = 0  # (the loop below then runs no step)
    if FOLD_CHANNELS:
        # Folded width (TAP_BITS, dilation_w 1): K steps over the (kd, kh) taps, and in each
        # over blocks of the row's KERNEL_W x FOLD_CHANNELS run of (kw, channel) pairs,
        # contiguous in channels-last storage: 80 channels x 7 take BLOCK_K 64, not 16.
        fold_blocks: tl.constexpr = (KERNEL_W * FOLD_CHANNELS + BLOCK_K - 1) // BLOCK_K
        k_start = tl.full((), 0, tl.int32)
        tap = tl.full((), 0, tl.int32)
        kd = tl.full((), 0, tl.int32)
        kh = tl.full((), 0, tl.int32)
        if FOLD_DENSE:  # the tiles' offsets and runs at k = 0, built once (dense_folded_step)
            fold_a = input_rows[:, None] + channels.to(INDEX_DTYPE)[None, :]
            fold_b = weight_col_base[None, :] + channels.to(INDEX_DTYPE)[:, None]
            fold_run = (first_w * FOLD_CHANNELS)[:, None] + channels[None, :]
        for _ in range(0, KERNEL_D * KERNEL_H * fold_blocks):
            tap_delta = kd * (dilation_d * in_stride_d) + kh * (dilation_h * in_stride_h)
            if UNPADDED:
                fold_mask = row_in_range
            else:
                fold_mask = tap_is_valid(tap_bits, tap)
            if FOLD_DENSE:
                # (pointer plus scalar, then the tile: 184 -> 144 instructions per 32 HMMA on
                # HiFi-GAN's 80 x 7 conv_pre, sm_80, against the tile plus a per-step vector)
                a, b = dense_folded_step(
                    k_start, (input_ptr + (tap_delta + k_start).to(INDEX_DTYPE)) + fold_a,
                    (weight_ptr + (kd * weight_stride_d + kh * weight_stride_h + k_start).to(INDEX_DTYPE)) + fold_b,
                    fold_run, fold_mask, channels, in_width, KERNEL_W, FOLD_CHANNELS, UNPADDED, EVEN_K,
                )
            else:
                a, b = folded_step(
                    k_start + channels, input_ptr, weight_ptr, input_rows + tap_delta.to(INDEX_DTYPE),
                    fold_mask, first_w, weight_col_base + (kd * weight_stride_d + kh * weight_stride_h),
                    col_in_range, in_width, in_stride_c, in_stride_w, weight_stride_c, weight_stride_w,
                    KERNEL_W, FOLD_CHANNELS, UNPADDED, EVEN_K, INDEX_DTYPE,
                )
            acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
            # (levels: the run's blocks, then kh, then kd: next_step one level down)
            k_start, _, kd, kh, next_tap, _, _ = next_step(k_start, 0, kd, kh, BLOCK_K, fold_blocks * BLOCK_K,
                                                           KERNEL_D, KERNEL_H, 1, KERNEL_D, KERNEL_H)
            tap += next_tap
        channel_blocks = 0
    # K steps run over (tap, channel block), channel blocks fastest. The tap and channel
    # block are counters carried from step to step: no division in the loop.
    channel_start = tl.full((), 0, tl.int32)
    tap_bit = tl.full((), 1, tl.int64 if TAPS > 31 else tl.int32)  # (valid_taps' word)
    tap = tl.full((), 0, tl.int32)
    kd = tl.full((), 0, tl.int32)
    kh = tl.full((), 0, tl.int32)
    kw = tl.full((), 0, tl.int32)
    # CARRIED loops carry the tap's weight offset and input delta too: a step adds one of
    # three precomputed moves (tap_moves) instead of rebuilding them from the counters.
    tap_offset = tl.full((), 0, tl.int32)
    tap_delta = tl.full((), 0, tl.int32)
    if CARRIED:
        weight_moves = tap_moves(weight_stride_d, weight_stride_h, weight_stride_w, KERNEL_H, KERNEL_W)
        input_moves = tap_moves(dilation_d * in_stride_d, dilation_h * in_stride_h, dilation_w * in_stride_w,
                                KERNEL_H, KERNEL_W)
    for step in range(0, TAPS * channel_blocks):
        if TAPS == 1:
            # Kept apart: a 1x1 loop is a plain GEMM loop, and carried counters there
            # stop Triton from pipelining its loads.
            channel_start = step * STEP_K
            tap_offset = 0
        elif not CARRIED:  # (as in kernels/dgrad.py: SD's 320-channel 3x3, sm_80: 225 against 230)
            tap_offset = kd * weight_stride_d + kh * weight_stride_h + kw * weight_stride_w
            if TAP_BITS:
                tap_delta = kd * (dilation_d * in_stride_d) + kh * (dilation_h * in_stride_h) + kw * (dilation_w * in_stride_w)
        if TAP_BITS:
            row_offset = input_rows + tap_delta.to(INDEX_DTYPE)
            if UNPADDED:
                row_mask = row_in_range
            elif (KERNEL_D == 1 or TAP_STEPS) and ACC_DTYPE != tl.float64:  # a carried scalar bit: one AND per row
                row_mask = (tap_bits & tap_bit) != 0
            else:  # the shift: the AND spilled 24-560 bytes in 3-d loops, 16 in sm_90's fp64 64x64x64
                row_mask = ((tap_bits >> tap) & 1) != 0
        else:
            row_offset, row_mask = tap_rows(
                first_d, first_h, first_w, kd, kh, kw, dilation_d, dilation_h, dilation_w,
                in_depth, in_height, in_width, in_stride_d, in_stride_h, in_stride_w,
                input_row_base, row_in_range, PADDING_MODE, INDEX_DTYPE,
            )
        if ELEMENTWISE_LANES:
            # A multiply-add on CUDA cores per (position, pair), rather than a tl.dot
            # whose 16-wide N or K would be mostly padding.
            a = tl.load(
                input_ptr + row_offset[:, None] + pair_input[None, :],
                mask=row_mask[:, None] & col_in_range[None, :],
                other=0.0,
            )
            b = tl.load(weight_ptr + pair_weight + tap_offset, mask=col_in_range, other=0.0)
            acc += a.to(ACC_DTYPE) * b.to(ACC_DTYPE)[None, :]
        else:
            channel = channel_start + channels
            if TAP_BITS:
                # Tile pointers built once, moved by one scalar per step; or (BASE_FIRST: small
                # 16-bit tiles with a channel counter, the host's rule) the base pointers moved
                # by it and offset tiles built once added: SD-UNet's stride-2 320-channel layer,
                # sm_80, 123 -> 114 instructions per 16 HMMA, where sm_90's ResNet-50 3x3 tiles
                # would lose 21 of 103 per 4 HGMMA.
                if BASE_FIRST:
                    a_pointers = (input_ptr + (tap_delta + channel_start * in_stride_c).to(INDEX_DTYPE)) + a_offsets
                    b_pointers = (weight_ptr + (channel_start * weight_stride_c + tap_offset).to(INDEX_DTYPE)) + b_offsets
                else:
                    a_pointers = a_tile + (tap_delta + channel_start * in_stride_c).to(INDEX_DTYPE)
                    b_pointers = b_tile + (channel_start * weight_stride_c + tap_offset).to(INDEX_DTYPE)
            else:
                a_pointers = input_ptr + row_offset[:, None] + (channel * in_stride_c)[None, :]
                b_pointers = weight_ptr + weight_col_base[None, :] + (channel * weight_stride_c + tap_offset)[:, None]
            acc = load_and_dot(acc, a_pointers, b_pointers, row_mask, channel, in_channels_per_group, col_in_range,
                               in_stride_c, weight_stride_c, EVEN_K, K_CHUNKS, BLOCK_K, INDEX_DTYPE, INPUT_PRECISION,
                               UPCAST_DOT)
        if TAPS > 1:
            channel_start, kd, kh, kw, next_tap, next_h, next_d = next_step(
                channel_start, kd, kh, kw, STEP_K, step_channels, KERNEL_H, KERNEL_W, KERNEL_D, KERNEL_H, KERNEL_W,
                TAP_STEPS)
            if CARRIED:
                tap_offset += tap_move(next_tap, next_h, next_d, *weight_moves, KERNEL_D, KERNEL_H)
                if TAP_BITS:
                    tap_delta += tap_move(next_tap, next_h, next_d, *input_moves, KERNEL_D, KERNEL_H)
            tap_bit = tap_bit << next_tap
            tap += next_tap

    if ELEMENTWISE_LANES > 1:
        acc, out_channels, col_in_range = sum_lanes(acc, pid_n, out_channels_per_group, BLOCK_M, BLOCK_N,
                                                    ELEMENTWISE_LANES)
    # Recomputed rather than kept live through the K loop (registers). An output stored w
    # innermost (NCHW) whose width the host puts in its unit (OUT_W_UNIT > 1): the width and
    # the rows' count visible multiples of it, so each row's positions store as vectors.
    if OUT_W_UNIT > 1:
        run_width, row_in_range = width_in_unit(rows, num_rows, run_width, OUT_W_UNIT)
    n, od, oh, ow = split_rows(rows, out_depth, out_height, run_width)
    if W_RUN > 1 and OUT_W_UNIT > 0:  # (runs along a w-innermost output: one vector each)
        store_run(output_ptr, accs, bias_ptr, out_channels, row_in_range, col_in_range, n, od, oh, ow * W_RUN,
                  out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w, W_RUN, ROWS, BLOCK_N,
                  HAS_BIAS, INDEX_DTYPE)
    elif W_RUN > 1:
        for i in tl.static_range(W_RUN):
            store_output(
                output_ptr, accs[i], bias_ptr, out_channels, row_in_range, col_in_range,
                n, od, oh, ow * W_RUN + i, out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
                HAS_BIAS, INDEX_DTYPE,
            )
    else:
        store_output(
            output_ptr, acc, bias_ptr, out_channels, row_in_range, col_in_range,
            n, od, oh, ow, out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
            HAS_BIAS, INDEX_DTYPE,
        )
