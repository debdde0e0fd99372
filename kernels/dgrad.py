"""Transposed convolution as an implicit GEMM in output space; the same kernel is the
input gradient (dgrad) of the forward convolution.

Meaning: insert (stride - 1) zeros between input elements, convolve with the kernel
(dilated by `dilation`), crop `pad` from the front of the result. Cost: none of that.
The output is split by stride phase: along each dimension the outputs o with
(o + pad) % stride == r receive exactly the taps k with (k * dilation) % stride == r,
so each phase is a dense implicit GEMM over its own taps and no zero is ever loaded
or multiplied. All phases run in one launch (program axis 2).

GEMM view, per group g (axis 1) and phase (axis 2):
    M = batch * (outputs of the phase)          rows: output positions o = o0 + j * stride
    N = out_channels / groups                   cols: output channels of group g
    K = (in_channels / groups) * (taps of the phase)
    A[m, (t, c)] = input[n, g*Cg + c, i]  with  i = q + j - t * in_step   (per dimension)
    B[(t, c), n] = weight[g*Cg + c, n, k] with  k = k0 + t * tap_step

Tensors (any strides, in elements; 1-d and 2-d problems have unit leading extents):
    input  [batch, in_channels, in_depth, in_height, in_width]
    weight [in_channels, out_channels / groups, KERNEL_D, KERNEL_H, KERNEL_W]
    bias   [out_channels] or absent
    output [batch, out_channels, out_depth, out_height, out_width]
    phases int32 [3, max_stride, 5]: per dimension (d, h, w) and residue r the fields
           (o0 first output, outputs, k0 first tap, taps, q first input), built by
           tconv/spec.py; tap_step = stride / gcd(stride, dilation) and
           in_step = dilation / gcd(stride, dilation) come as arguments.

Elementwise layers (ELEMENTWISE_LANES > 0: one input channel per group, e.g. a depthwise
conv's input gradient, or small groups of GROUP_IN input and GROUP_OUT < 16 output
channels, e.g. a one-channel input's gradient) run as one group spanning every output
channel without tl.dot: the columns are (output channel, lane) pairs, lane = input
channel of the output's group, each tap an elementwise multiply-add, the lanes summed
once per tile (as kernels/fprop.py). At stride 1 depthwise rows may be output runs
(W_RUN > 1, kernels/_index.py output_run_loop, FLIPPED: output i reads column j through
tap KERNEL_W - 1 - (j - i)), each input column loaded once for the run's outputs; given NCHW
(LANE_PAD >= 0) the columns are lanes of vectors along w, and each run stores as one vector
(store_run).

The K loop runs over (tap, channel block), channel blocks fastest, with the tap carried
as per-dimension counters (no division in the loop). The kernel extents are constexprs
(a phase's tap counts stay runtime values, bounded by them). With TAP_BITS (fewer than 64
kernel taps, 32 elementwise) each row's input offset at tap 0 and a bit per valid tap are computed once
per tile, so a step's gather is a scalar delta and a shift per row. EVEN_K (channels a
multiple of BLOCK_K) drops the channel masks; a 1x1 kernel (at most one tap per phase)
keeps the plain GEMM loop. TAP_STEPS (exactly BLOCK_K channels a group: every step a new
tap) drops the channel counter and carries the tap's weight offset, input delta and bit
from step to step (kernels/_index.py tap_moves), as 1-d loops do. K_CHUNKS > 1 makes a
step K_CHUNKS whole channel blocks of one tap, a tl.dot each (chunked steps, as in
kernels/fprop.py: 96 channels as 3 x 32).
"""

import triton
import triton.language as tl

from ._index import (
    elementwise_pairs,
    in_elements,
    load_and_dot,
    next_step,
    output_run_loop,
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
def phase_fields(phases_ptr, dim, residue, max_stride):
    """Read one dimension's phase record: (first output, outputs, first tap, taps, first input)."""
    record = phases_ptr + (dim * max_stride + residue) * 5
    return tl.load(record), tl.load(record + 1), tl.load(record + 2), tl.load(record + 3), tl.load(record + 4)


@triton.jit
def phase_valid_taps(
    base_d, base_h, base_w, row_in_range, taps_d, taps_h, taps_w, in_step_d, in_step_h, in_step_w,
    in_depth, in_height, in_width, KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr,
):
    """Per row, bit (td * KERNEL_H + th) * KERNEL_W + tw set when the phase has tap
    (td, th, tw) and it reads a real input element (fewer than 64 kernel taps, in a 64-bit
    word from 32). Built once per tile, so a K step's row mask is one shift."""
    BITS: tl.constexpr = tl.int64 if KERNEL_D * KERNEL_H * KERNEL_W > 31 else tl.int32
    bits = tl.zeros(base_h.shape, dtype=BITS)
    for td in tl.static_range(KERNEL_D):
        in_d = base_d - td * in_step_d
        valid_d = row_in_range & (td < taps_d) & (in_d >= 0) & (in_d < in_depth)
        for th in tl.static_range(KERNEL_H):
            in_h = base_h - th * in_step_h
            valid_h = valid_d & (th < taps_h) & (in_h >= 0) & (in_h < in_height)
            for tw in tl.static_range(KERNEL_W):
                in_w = base_w - tw * in_step_w
                valid = valid_h & (tw < taps_w) & (in_w >= 0) & (in_w < in_width)
                bits = bits | (valid.to(BITS) << ((td * KERNEL_H + th) * KERNEL_W + tw))
    return bits


@triton.jit
def conv_dgrad_kernel(
    # pointers
    input_ptr, weight_ptr, bias_ptr, output_ptr, phases_ptr, stage_ptr,
    # input sizes and strides
    batch, in_depth, in_height, in_width,
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w,
    # weight strides
    weight_stride_c, weight_stride_o, weight_stride_d, weight_stride_h, weight_stride_w,
    # output sizes and strides
    out_depth, out_height, out_width,
    out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
    # geometry
    stride_d, stride_h, stride_w,
    tap_step_d, tap_step_h, tap_step_w,
    in_step_d, in_step_h, in_step_w,
    max_stride, in_channels_per_group, out_channels_per_group, weight_columns,
    # meta-parameters
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, HAS_BIAS: tl.constexpr,
    ELEMENTWISE_LANES: tl.constexpr, GROUP_IN: tl.constexpr, GROUP_OUT: tl.constexpr, W_RUN: tl.constexpr,
    LANE_PAD: tl.constexpr, TAP_BITS: tl.constexpr, EVEN_K: tl.constexpr, TAP_STEPS: tl.constexpr,
    K_CHUNKS: tl.constexpr, PADDED: tl.constexpr,
    STAGE_TAPS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr, UPCAST_DOT: tl.constexpr,
    INDEX_DTYPE: tl.constexpr, IN_UNIT: tl.constexpr, WEIGHT_UNIT: tl.constexpr, OUT_UNIT: tl.constexpr,
    OUT_W_UNIT: tl.constexpr,
):
    TAPS: tl.constexpr = KERNEL_D * KERNEL_H * KERNEL_W
    STEP_K: tl.constexpr = BLOCK_K * K_CHUNKS  # a tap's channels a K step takes (chunked steps, as in kernels/fprop.py)
    # Tap offsets carried across steps (tap_moves) where a step always moves a tap or moves
    # along w alone (1-d); else rebuilt from the counters each step.
    CARRIED: tl.constexpr = TAP_STEPS or KERNEL_D * KERNEL_H == 1
    # Row strides and channel counts in units, one per tensor (as in kernels/fprop.py; runs in
    # lanes: w's stride is 1, the channel stride in units instead).
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w = strides_in_elements(
        in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w, IN_UNIT, LANE_PAD >= 0)
    column_stride = weight_stride_c  # (elementwise launches: the columns' stride, which comes whole)
    weight_stride_c, weight_stride_d, weight_stride_h, weight_stride_w = in_elements(
        weight_stride_c, weight_stride_d, weight_stride_h, weight_stride_w, WEIGHT_UNIT)
    if ELEMENTWISE_LANES:
        weight_stride_c = column_stride
    if ELEMENTWISE_LANES:  # (group sizes: the GROUP_IN, GROUP_OUT constexprs)
        out_channels_per_group = out_channels_per_group * IN_UNIT  # the columns
    else:
        in_channels_per_group = in_channels_per_group * IN_UNIT
        out_channels_per_group = out_channels_per_group * WEIGHT_UNIT
    # The weight's columns, which mask (or wrap) its loads: more than out_channels_per_group
    # in a zero-padded copy (PADDED: tconv.configs.padded_channels), whose extra columns are
    # zeros and never stored.
    if PADDED:
        weight_columns = weight_columns * WEIGHT_UNIT
    else:
        weight_columns = out_channels_per_group
    out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w = strides_in_elements(
        out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w, OUT_UNIT, OUT_W_UNIT > 0)
    # Elementwise launches one group (axis 1 has one program): a constant 0 keeps the rows'
    # offsets provably aligned, so the channel loads can be vector-wide.
    group = 0 if ELEMENTWISE_LANES else tl.program_id(1)
    phase = tl.program_id(2)
    residue_w = phase % stride_w
    residue_h = (phase // stride_w) % stride_h
    residue_d = phase // (stride_w * stride_h)
    first_out_d, outs_d, first_tap_d, taps_d, first_in_d = phase_fields(phases_ptr, 0, residue_d, max_stride)
    first_out_h, outs_h, first_tap_h, taps_h, first_in_h = phase_fields(phases_ptr, 1, residue_h, max_stride)
    first_out_w, outs_w, first_tap_w, taps_w, first_in_w = phase_fields(phases_ptr, 2, residue_w, max_stride)
    # At stride 1 a dimension has one phase, all its outputs: taking that extent from the
    # arguments (not the table) keeps its divisibility known, so rows stay provably
    # contiguous and the epilogue's stores vectorise along positions when they are.
    if stride_d == 1:
        outs_d = out_depth
    if stride_h == 1:
        outs_h = out_height
    if stride_w == 1:
        outs_w = out_width
    if W_RUN > 1:  # (stride 1: the first outputs are 0, and no table load is sunk among a 1-d run's loads)
        first_out_d, first_out_h, first_out_w = 0, 0, 0

    # The grid is sized for the largest phase; tiles past this phase's rows do nothing.
    # Output runs (W_RUN > 1, stride 1: one phase): a row is W_RUN outputs along w, which the
    # host makes divide the output's width (kernels/_index.py output_run_loop).
    ROWS: tl.constexpr = BLOCK_M // W_RUN
    run_width = outs_w // W_RUN if W_RUN > 1 else outs_w
    num_rows = batch * outs_d * outs_h * run_width
    num_pid_n = tl.cdiv(out_channels_per_group, BLOCK_N)
    pid_m, pid_n = swizzle_tile(tl.program_id(0), tl.num_programs(0) // num_pid_n, num_pid_n, GROUP_M)
    rows = pid_m * ROWS + tl.arange(0, ROWS)
    row_in_range = rows < num_rows
    # A phase may have no outputs (stride > output size); its rows are all masked, and
    # the divisors are kept >= 1 so the index split stays defined.
    n, jd, jh, jw = split_rows(rows, tl.maximum(outs_d, 1), tl.maximum(outs_h, 1), tl.maximum(run_width, 1))
    if W_RUN > 1:
        jw = jw * W_RUN
    base_d = first_in_d + jd
    base_h = first_in_h + jh
    base_w = first_in_w + jw
    input_row_base = n.to(INDEX_DTYPE) * in_stride_n + (group * in_channels_per_group).to(INDEX_DTYPE) * in_stride_c
    if TAP_BITS:
        # Each row's input offset at tap 0 (a tap then adds a scalar delta) and a bit per
        # tap saying whether it reads a real element: computed once.
        if W_RUN > 1:  # the run's first column is its first output's last tap: w moved back KERNEL_W - 1
            base_w = base_w - (KERNEL_W - 1)
        input_rows = input_row_base + (
            base_d.to(INDEX_DTYPE) * in_stride_d + base_h.to(INDEX_DTYPE) * in_stride_h
            + base_w.to(INDEX_DTYPE) * in_stride_w
        )
        if W_RUN > 1:  # a bit per (kd, kh) and input column of the run
            tap_bits = valid_taps(base_d, base_h, base_w, row_in_range, -in_step_d, -in_step_h, 1,
                                  in_depth, in_height, in_width, KERNEL_D, KERNEL_H, W_RUN + KERNEL_W - 1)
        else:
            tap_bits = phase_valid_taps(base_d, base_h, base_w, row_in_range, taps_d, taps_h, taps_w,
                                        in_step_d, in_step_h, in_step_w, in_depth, in_height, in_width,
                                        KERNEL_D, KERNEL_H, KERNEL_W)

    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in_range = cols < out_channels_per_group
    weight_col_in_range = cols < weight_columns
    out_channels = group * out_channels_per_group + cols
    channels = tl.arange(0, BLOCK_K)
    if EVEN_K:
        # Columns past the edge (last tile only) wrap onto real channels and are never
        # stored, so with whole channel blocks the weight load needs no mask.
        weight_col_base = (cols % weight_columns).to(INDEX_DTYPE) * weight_stride_o
    else:
        weight_col_base = cols.to(INDEX_DTYPE) * weight_stride_o
    if TAP_BITS:
        a_tile = input_ptr + input_rows[:, None] + (channels * in_stride_c).to(INDEX_DTYPE)[None, :]
        b_tile = weight_ptr + (
            (group * in_channels_per_group + channels).to(INDEX_DTYPE) * weight_stride_c)[:, None] + weight_col_base[None, :]
    if ELEMENTWISE_LANES:
        # (output channel, lane) pairs; the weight is [input channel, output channel of its group, taps].
        out_channels, lane, col_in_range, input_channel = elementwise_pairs(
            cols, col_in_range, ELEMENTWISE_LANES, GROUP_IN, GROUP_OUT)
        pair_input = input_channel.to(INDEX_DTYPE) * in_stride_c
        pair_weight = (input_channel.to(INDEX_DTYPE) * weight_stride_c
                       + (out_channels % GROUP_OUT).to(INDEX_DTYPE) * weight_stride_o)
        if STAGE_TAPS:  # the columns' weights staged, consecutive (kernels/_index.py staged_weight)
            weight_ptr = staged_weight(weight_ptr, stage_ptr, pair_weight, col_in_range,
                                       tl.program_id(0) + tl.program_id(2) * tl.num_programs(0),
                                       weight_stride_d, weight_stride_h, weight_stride_w,
                                       (first_tap_d, first_tap_h, first_tap_w), (tap_step_d, tap_step_h, tap_step_w),
                                       (taps_d, taps_h, taps_w), KERNEL_D, KERNEL_H, KERNEL_W, STAGE_TAPS, BLOCK_N,
                                       INDEX_DTYPE)
            pair_weight = tl.arange(0, BLOCK_N).to(INDEX_DTYPE)
            weight_stride_d, weight_stride_h, weight_stride_w = staged_strides(KERNEL_H, KERNEL_W, BLOCK_N)

    step_channels = 1 if ELEMENTWISE_LANES else in_channels_per_group  # elementwise: a step per tap
    channel_blocks = tl.cdiv(step_channels, STEP_K)
    num_steps = taps_d * taps_h * taps_w * channel_blocks
    if pid_m * ROWS >= num_rows:
        num_steps = 0
    acc = tl.zeros((ROWS, BLOCK_N), dtype=ACC_DTYPE)
    if W_RUN > 1:  # (a tap row (kd, kh) reads the input kd * in_step_d, kh * in_step_h before the output)
        accs = output_run_loop(
            input_ptr, weight_ptr, input_rows, tap_bits, pair_input, pair_weight, col_in_range,
            -(in_step_d * in_stride_d), -(in_step_h * in_stride_h), in_stride_w, weight_stride_d, weight_stride_h,
            weight_stride_w, KERNEL_D, KERNEL_H, KERNEL_W, W_RUN, 1, True, False, ROWS, BLOCK_N, ACC_DTYPE,
            INDEX_DTYPE,
            # (lanes: each row's offset at its own span, the run's first output's column, visibly aligned)
            input_row_base + (base_d.to(INDEX_DTYPE) * in_stride_d + base_h.to(INDEX_DTYPE) * in_stride_h
                              + jw.to(INDEX_DTYPE)), LANE_PAD,
        )
        num_steps = 0
    # K steps over (tap, channel block), channel blocks fastest; the per-dimension tap
    # indices are counters carried across steps (the phase's tap counts are runtime
    # values, so dividing the step would cost real divisions every step). CARRIED loops
    # carry the tap's weight offset, input delta and bit too: a step adds one of three
    # precomputed moves to each (tap_moves) rather than rebuilding them from the counters.
    channel_start = tl.full((), 0, tl.int32)
    td = tl.full((), 0, tl.int32)
    th = tl.full((), 0, tl.int32)
    tw = tl.full((), 0, tl.int32)
    tap_offset = first_tap_d * weight_stride_d + first_tap_h * weight_stride_h + first_tap_w * weight_stride_w
    tap_delta = tl.full((), 0, tl.int32)
    tap = tl.full((), 0, tl.int32)
    if CARRIED:
        weight_moves = tap_moves(tap_step_d * weight_stride_d, tap_step_h * weight_stride_h,
                                 tap_step_w * weight_stride_w, taps_h, taps_w)
        input_moves = tap_moves(-(in_step_d * in_stride_d), -(in_step_h * in_stride_h), -(in_step_w * in_stride_w),
                                taps_h, taps_w)
        bit_moves = tap_moves(KERNEL_H * KERNEL_W, KERNEL_W, 1, taps_h, taps_w)
    for step in range(0, num_steps):
        if TAPS == 1:
            # A 1x1 kernel at stride 1 is a plain GEMM loop: no counters (they stop
            # Triton from pipelining the loads there).
            channel_start = step * STEP_K
            tap_offset = 0  # the only tap; said statically so the weight's alignment stays known
        elif not CARRIED:
            # Several channel blocks a tap in 2-d and 3-d: rebuilt from the counters, which
            # compiled shorter than moves applied under a condition (sm_80: SD-UNet's
            # 320-channel 3x3 input gradient 143 against 160 instructions a step, 3D U-Net's
            # 118 against 124).
            tap_offset = ((first_tap_d + td * tap_step_d) * weight_stride_d + (first_tap_h + th * tap_step_h)
                          * weight_stride_h + (first_tap_w + tw * tap_step_w) * weight_stride_w)
            if TAP_BITS:
                tap_delta = -(td * (in_step_d * in_stride_d) + th * (in_step_h * in_stride_h)
                              + tw * (in_step_w * in_stride_w))
                tap = (td * KERNEL_H + th) * KERNEL_W + tw
        if TAP_BITS:
            row_offset = input_rows + tap_delta.to(INDEX_DTYPE)
            if EVEN_K and (KERNEL_D == 1 or TAP_STEPS):  # one AND per row against the tap's scalar bit
                row_mask = tap_is_valid(tap_bits, tap)
            else:  # the shift: the AND spilled 88 bytes with per-element channel masks (sm_90
                # TF32 DCGAN G1), 8 in 3-d loops with a channel counter (sm_90 128x64x64)
                row_mask = ((tap_bits >> tap) & 1) != 0
        else:
            in_d = base_d - td * in_step_d
            in_h = base_h - th * in_step_h
            in_w = base_w - tw * in_step_w
            row_mask = (
                row_in_range
                & (in_d >= 0) & (in_d < in_depth)
                & (in_h >= 0) & (in_h < in_height)
                & (in_w >= 0) & (in_w < in_width)
            )
            row_offset = input_row_base + (
                in_d.to(INDEX_DTYPE) * in_stride_d + in_h.to(INDEX_DTYPE) * in_stride_h
                + in_w.to(INDEX_DTYPE) * in_stride_w
            )
        if ELEMENTWISE_LANES:
            # A multiply-add on CUDA cores per (position, pair), no tl.dot.
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
                # Tile pointers built once, moved by one scalar per step.
                a_pointers = a_tile + (tap_delta + channel_start * in_stride_c).to(INDEX_DTYPE)
                b_pointers = b_tile + (channel_start * weight_stride_c + tap_offset).to(INDEX_DTYPE)
            else:
                weight_rows = (group * in_channels_per_group + channel).to(INDEX_DTYPE) * weight_stride_c + tap_offset
                a_pointers = input_ptr + row_offset[:, None] + (channel * in_stride_c)[None, :]
                b_pointers = weight_ptr + weight_rows[:, None] + weight_col_base[None, :]
            acc = load_and_dot(acc, a_pointers, b_pointers, row_mask, channel, in_channels_per_group, weight_col_in_range,
                               in_stride_c, weight_stride_c, EVEN_K, K_CHUNKS, BLOCK_K, INDEX_DTYPE, INPUT_PRECISION,
                               UPCAST_DOT)
        if TAPS > 1:
            channel_start, td, th, tw, next_tap, next_h, next_d = next_step(
                channel_start, td, th, tw, STEP_K, step_channels, taps_h, taps_w, KERNEL_D, KERNEL_H, KERNEL_W, TAP_STEPS)
            if CARRIED:
                tap_offset += tap_move(next_tap, next_h, next_d, *weight_moves, KERNEL_D, KERNEL_H)
                if TAP_BITS:
                    tap_delta += tap_move(next_tap, next_h, next_d, *input_moves, KERNEL_D, KERNEL_H)
                    tap += tap_move(next_tap, next_h, next_d, *bit_moves, KERNEL_D, KERNEL_H)

    if ELEMENTWISE_LANES > 1:
        acc, out_channels, col_in_range = sum_lanes(acc, pid_n, out_channels_per_group, BLOCK_M, BLOCK_N,
                                                    ELEMENTWISE_LANES)
    width = tl.maximum(run_width, 1)
    if OUT_W_UNIT > 1:  # (stride 1 along w, one phase, the output w innermost: as in kernels/fprop.py's epilogue)
        width, row_in_range = width_in_unit(rows, num_rows, run_width, OUT_W_UNIT)
        first_out_w = 0
    n, jd, jh, jw = split_rows(rows, tl.maximum(outs_d, 1), tl.maximum(outs_h, 1), width)
    if W_RUN > 1 and OUT_W_UNIT > 0:  # (runs along a w-innermost output: one vector each; first outputs 0)
        store_run(output_ptr, accs, bias_ptr, out_channels, row_in_range, col_in_range, n, jd * stride_d,
                  jh * stride_h, jw * W_RUN, out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
                  W_RUN, ROWS, BLOCK_N, HAS_BIAS, INDEX_DTYPE)
    elif W_RUN > 1:
        for i in tl.static_range(W_RUN):
            store_output(
                output_ptr, accs[i], bias_ptr, out_channels, row_in_range, col_in_range,
                n, first_out_d + jd * stride_d, first_out_h + jh * stride_h, first_out_w + jw * W_RUN + i,
                out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
                HAS_BIAS, INDEX_DTYPE,
            )
    else:
        store_output(
            output_ptr, acc, bias_ptr, out_channels, row_in_range, col_in_range,
            n, first_out_d + jd * stride_d, first_out_h + jh * stride_h, first_out_w + jw * stride_w,
            out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
            HAS_BIAS, INDEX_DTYPE,
        )
