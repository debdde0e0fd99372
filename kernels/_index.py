"""Index helpers shared by the convolution kernels (``@triton.jit`` only)."""

import triton
import triton.language as tl

# Values of the PADDING_MODE meta-parameter; tconv/spec.py maps torch's names onto them.
PAD_ZEROS = tl.constexpr(0)
PAD_REFLECT = tl.constexpr(1)
PAD_REPLICATE = tl.constexpr(2)
PAD_CIRCULAR = tl.constexpr(3)


@triton.jit
def swizzle_tile(pid, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Map a linear program id to (pid_m, pid_n), walking GROUP_M row-tiles per column so
    that programs running together share the same weight tiles in L2."""
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_in_group = pid % num_pid_in_group
    pid_m = first_pid_m + pid_in_group % group_size_m
    pid_n = pid_in_group // group_size_m
    return pid_m, pid_n


@triton.jit
def in_elements(stride_n, stride_d, stride_h, stride_w, UNIT: tl.constexpr):
    """Four row strides passed in units of UNIT (tconv.descriptors.units), in elements again:
    constant multiples of UNIT, which proves their rows' alignment to the compiler."""
    return stride_n * UNIT, stride_d * UNIT, stride_h * UNIT, stride_w * UNIT


@triton.jit
def strides_in_elements(stride_n, stride_c, stride_d, stride_h, stride_w, UNIT: tl.constexpr, W_WHOLE: tl.constexpr):
    """An activation's [N, C, D, H, W] strides, in elements again (in_elements): its row strides
    (n, d, h, w) came in units and its channel stride whole, or, where the kernel moves along a
    w-innermost (NCHW) tensor's w in vectors (W_WHOLE: runs in lanes, an output stored along
    w), its (n, c, d, h) strides in units and w's whole."""
    if W_WHOLE:
        stride_n, stride_c, stride_d, stride_h = in_elements(stride_n, stride_c, stride_d, stride_h, UNIT)
    else:
        stride_n, stride_d, stride_h, stride_w = in_elements(stride_n, stride_d, stride_h, stride_w, UNIT)
    return stride_n, stride_c, stride_d, stride_h, stride_w


@triton.jit
def padded_index(index, size, PADDING_MODE: tl.constexpr):
    """Map an index of the padded input onto the real input and say whether it is real.

    The padding is never materialised: zeros padding is a load mask, the other modes
    fold an out-of-range index back into [0, size). torch guarantees pad < size for
    reflect and pad <= size for circular, so one fold is always enough.
    """
    if PADDING_MODE == PAD_REFLECT:
        index = tl.where(index < 0, -index, index)
        index = tl.where(index >= size, 2 * size - 2 - index, index)
    elif PADDING_MODE == PAD_REPLICATE:
        index = tl.minimum(tl.maximum(index, 0), size - 1)
    elif PADDING_MODE == PAD_CIRCULAR:
        index = tl.where(index < 0, index + size, index)
        index = tl.where(index >= size, index - size, index)
    return index, (index >= 0) & (index < size)


@triton.jit
def width_in_unit(rows, num_rows, width, OUT_W_UNIT: tl.constexpr):
    """An epilogue's output width and rows' mask where the host put the width and the rows'
    count in OUT_W_UNIT (descriptors/units.py output_units): both rebuilt as visible multiples
    of it (exact), so the compiler proves runs of OUT_W_UNIT consecutive, aligned positions
    along a w-innermost output and stores them as vectors."""
    return width // OUT_W_UNIT * OUT_W_UNIT, rows < num_rows // OUT_W_UNIT * OUT_W_UNIT


@triton.jit
def split_rows(rows, depth, height, width):
    """Split a flat row index over [N, D, H, W] into (n, d, h, w)."""
    w = rows % width
    rest = rows // width
    h = rest % height
    rest = rest // height
    d = rest % depth
    n = rest // depth
    return n, d, h, w


@triton.jit
def mma(acc, a, b, INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """acc += a @ b on tensor cores.

    UPCAST_DOT is set only when running in Triton's CPU interpreter with bfloat16
    operands: Triton 3.9's interpreter returns garbage for bf16 tl.dot, while bf16
    loads, stores and casts are exact, so upcasting there changes nothing else.
    """
    if UPCAST_DOT:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=INPUT_PRECISION)


@triton.jit
def carry(index, increment, extent):
    """Advance a counter carried across K steps by `increment`, wrapping at `extent`:
    (the new value, 1 when it wrapped). Replaces dividing the step index in the loop."""
    index += increment
    wrapped = index >= extent
    return tl.where(wrapped, 0, index), wrapped.to(tl.int32)


@triton.jit
def tap_is_valid(tap_bits, tap):
    """Row mask of one tap from the rows' valid-tap bits: the tap's bit is built once per
    step as a scalar, so each row costs one AND-and-test (shifting every row's word by the
    tap cost a second instruction per row)."""
    return (tap_bits & (tl.full((), 1, tap_bits.dtype) << tap.to(tap_bits.dtype))) != 0


@triton.jit
def next_step(channel_start, kd, kh, kw, block_k, channels, taps_h, taps_w,
              KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, TAP_STEPS: tl.constexpr = False):
    """The counters of a tap-major K loop's next step: the channel block, then the tap
    (kd, kh, kw) when the channels wrap, and whether the step moved to the next tap, kw
    wrapped and kh wrapped (1 or 0: what tap_move reads). TAP_STEPS (one channel block per
    tap) moves to the next tap every step. The outermost level with more than one tap never
    wraps inside the loop, so the levels above it are not carried: kd stays a constant 0
    with a unit KERNEL_D (a 3x3 loop loses a counter and two multiplies), and kh too in 1-d
    loops. kw stays carried there (sm_80's 128x32x32 loop on a 32-channel conv1d spilled 16
    bytes with kw a plain sum), and a loop with one tap in all three levels (a 1-d conv's
    folded width) keeps counting kh: sm_80's HiFi-GAN conv_pre loop lost its pipelining and
    spilled without that count."""
    if TAP_STEPS:
        next_tap = 1
    else:
        channel_start, next_tap = carry(channel_start, block_k, channels)
    kw, next_h = carry(kw, next_tap, taps_w)
    next_d = 0
    if KERNEL_D * KERNEL_H == 1 and KERNEL_W > 1:
        pass  # 1-d: kw wraps only past the last step
    elif KERNEL_D == 1:
        kh += next_h
    else:
        kh, next_d = carry(kh, next_h, taps_h)
        kd += next_d
    return channel_start, kd, kh, kw, next_tap, next_h, next_d


@triton.jit
def tap_moves(along_d, along_h, along_w, taps_h, taps_w):
    """What an offset carried across a tap loop adds when the loop moves one tap along w,
    when kw wraps (one along h, back along w) and when kh wraps: `along_*` is what one tap
    along that dimension adds. Computed once, so a step adds a scalar instead of rebuilding
    the offset from the three counters (two multiplies and an add per dimension). Returns
    (move along w, move when kw wraps, move when kh wraps), tap_move's order."""
    back_w = (taps_w - 1) * along_w
    return along_w, along_h - back_w, along_d - (taps_h - 1) * along_h - back_w


@triton.jit
def tap_move(next_tap, next_h, next_d, move_w, move_h, move_d, KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr):
    """The scalar a carried offset adds after a step (next_step's flags, tap_moves' moves)."""
    if KERNEL_D > 1:
        move = tl.where(next_d != 0, move_d, tl.where(next_h != 0, move_h, move_w))
    elif KERNEL_H > 1:
        move = tl.where(next_h != 0, move_h, move_w)
    else:
        move = move_w
    return move * next_tap


@triton.jit
def load_and_dot(
    acc, a_pointers, b_pointers, row_mask, channel, channels_in_group, col_in_range, a_stride_c, b_stride_c,
    EVEN_K: tl.constexpr, K_CHUNKS: tl.constexpr, BLOCK_K: tl.constexpr, INDEX_DTYPE: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    """One implicit-GEMM K step: A [BLOCK_M, BLOCK_K] masked by rows (and channels), B
    [BLOCK_K, BLOCK_N] masked by channels and columns; whole channel blocks (EVEN_K, columns
    wrapped in range by the caller) mask the rows only.
    K_CHUNKS > 1 (chunked steps, always whole blocks): the step takes K_CHUNKS channel
    blocks of one tap, 48 channels as three 16-wide blocks, each block's A and B tiles
    BLOCK_K channels (a_stride_c, b_stride_c apart per channel) after the previous one's.
    The tap's row mask and pointers serve every block, so the step's fixed cost is paid
    once per tap rather than once per block."""
    if K_CHUNKS > 1:
        a_chunk = tl.cast(BLOCK_K * a_stride_c, INDEX_DTYPE)
        b_chunk = tl.cast(BLOCK_K * b_stride_c, INDEX_DTYPE)
        for chunk in tl.static_range(K_CHUNKS):
            a = tl.load(a_pointers + chunk * a_chunk, mask=row_mask[:, None], other=0.0)
            b = tl.load(b_pointers + chunk * b_chunk)
            acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
    elif EVEN_K:
        a = tl.load(a_pointers, mask=row_mask[:, None], other=0.0)
        b = tl.load(b_pointers)
        acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
    else:
        channel_mask = channel < channels_in_group
        a = tl.load(a_pointers, mask=row_mask[:, None] & channel_mask[None, :], other=0.0)
        b = tl.load(b_pointers, mask=channel_mask[:, None] & col_in_range[None, :], other=0.0)
        acc = mma(acc, a, b, INPUT_PRECISION, UPCAST_DOT)
    return acc


@triton.jit
def store_output(
    output_ptr, acc, bias_ptr, out_channels, row_mask, col_mask,
    n, od, oh, ow, out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
    HAS_BIAS: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    """Epilogue: add the bias (in the accumulator's precision), cast once, store the tile."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + out_channels, mask=col_mask, other=0.0).to(acc.dtype)[None, :]
    row_offset = (
        n.to(INDEX_DTYPE) * out_stride_n
        + od.to(INDEX_DTYPE) * out_stride_d
        + oh.to(INDEX_DTYPE) * out_stride_h
        + ow.to(INDEX_DTYPE) * out_stride_w
    )
    tl.store(
        output_ptr + row_offset[:, None] + (out_channels.to(INDEX_DTYPE) * out_stride_c)[None, :],
        acc.to(output_ptr.dtype.element_ty),
        mask=row_mask[:, None] & col_mask[None, :],
    )



@triton.jit
def elementwise_pairs(cols, col_in_range, LANES: tl.constexpr, GROUP_IN: tl.constexpr, GROUP_OUT: tl.constexpr):
    """Elementwise layers' columns: column j is lane j % LANES of output channel j // LANES,
    and reads input channel (output channel // GROUP_OUT) * GROUP_IN + lane; lanes past the
    group's GROUP_IN input channels are masked off. Constexpr group sizes keep the input
    channels' runs (GROUP_IN long) provably contiguous, so their loads can be vector-wide.
    Returns (output channel, lane, column mask, input channel) per column."""
    out_channel = cols // LANES
    lane = cols % LANES
    if GROUP_IN < LANES:
        col_in_range = col_in_range & (lane < GROUP_IN)
    input_channel = out_channel // GROUP_OUT * GROUP_IN + lane
    return out_channel, lane, col_in_range, input_channel


@triton.jit
def sum_lanes(acc, pid_n, columns, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, LANES: tl.constexpr):
    """Elementwise epilogue: each output channel's LANES partial sums added, once per tile.
    Returns the [BLOCK_M, BLOCK_N // LANES] tile, its output channels and their mask."""
    acc = tl.sum(tl.reshape(acc, (BLOCK_M, BLOCK_N // LANES, LANES)), axis=2)
    out_channel = pid_n * (BLOCK_N // LANES) + tl.arange(0, BLOCK_N // LANES)
    return acc, out_channel, out_channel < columns // LANES


@triton.jit
def staged_weight(weight_ptr, stage_ptr, pair_weight, col_in_range, program,
                  weight_stride_d, weight_stride_h, weight_stride_w, first_taps, tap_steps, phase_taps,
                  KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr,
                  STAGE_TAPS: tl.constexpr, BLOCK_N: tl.constexpr, INDEX_DTYPE: tl.constexpr):
    """An elementwise program's weight columns, every tap its loop takes, copied into its own
    block of the stage, [KERNEL_D, KERNEL_H, KERNEL_W, BLOCK_N]: its pointer. Column j of tap
    t, read at weight_ptr + pair_weight[j] + t's offset (a whole kernel apart from the next
    column in torch's layout: one-element loads), is then at block + t * BLOCK_N + j, so the
    main loop's per-tap weight loads are vector-wide. The loop takes, per dimension (d, h,
    w), phase_taps taps from first_taps, tap_steps apart (a forward: all of them; an input
    gradient's phase: kernels/dgrad.py); STAGE_TAPS is the taps rounded up to a power of
    two. The barrier makes the block's stores visible to the program's other threads
    before its loop reads them; no other program reads them."""
    TAPS: tl.constexpr = KERNEL_D * KERNEL_H * KERNEL_W
    taps = tl.arange(0, STAGE_TAPS)
    kd = taps // (KERNEL_H * KERNEL_W)
    kh = taps // KERNEL_W % KERNEL_H
    kw = taps % KERNEL_W
    tap_in_range = taps < TAPS
    taken = (tap_in_range & phase_tap(kd, first_taps[0], tap_steps[0], phase_taps[0])
             & phase_tap(kh, first_taps[1], tap_steps[1], phase_taps[1])
             & phase_tap(kw, first_taps[2], tap_steps[2], phase_taps[2]))
    tap_offsets = (kd * weight_stride_d + kh * weight_stride_h + kw * weight_stride_w).to(INDEX_DTYPE)
    columns = tl.load(weight_ptr + tap_offsets[:, None] + pair_weight[None, :],
                      mask=taken[:, None] & col_in_range[None, :], other=0.0)
    block = stage_ptr + program.to(INDEX_DTYPE) * (TAPS * BLOCK_N)
    tl.store(block + (taps * BLOCK_N)[:, None] + tl.arange(0, BLOCK_N)[None, :], columns, mask=tap_in_range[:, None])
    tl.debug_barrier()
    return block


@triton.jit
def phase_tap(k, first, step, count):
    """Whether kernel index k is one of a loop's taps along a dimension: first + i * step, i < count."""
    offset = k - first
    return (offset >= 0) & (offset % step == 0) & (offset < step * count)


@triton.jit
def staged_strides(KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, BLOCK_N: tl.constexpr):
    """The (d, h, w) tap strides of a staged block (staged_weight): constants."""
    return KERNEL_H * KERNEL_W * BLOCK_N, KERNEL_W * BLOCK_N, BLOCK_N


@triton.jit
def valid_taps(
    first_d, first_h, first_w, row_in_range, dilation_d, dilation_h, dilation_w, in_depth, in_height, in_width,
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, CHECK_W: tl.constexpr = True,
):
    """Per row, a bit per tap (tap-major order, fewer than 32 taps, or 64 in 64-bit words):
    set when the tap reads a real input element. Built once per tile,
    so a K step's row mask is one shift. Without CHECK_W the w index is not checked (a
    folded width checks it per element)."""
    BITS: tl.constexpr = tl.int64 if KERNEL_D * KERNEL_H * KERNEL_W > 31 else tl.int32
    bits = tl.zeros(first_h.shape, dtype=BITS)
    for kd in tl.static_range(KERNEL_D):
        in_d = first_d + kd * dilation_d
        valid_d = row_in_range & (in_d >= 0) & (in_d < in_depth)
        for kh in tl.static_range(KERNEL_H):
            in_h = first_h + kh * dilation_h
            valid_h = valid_d & (in_h >= 0) & (in_h < in_height)
            for kw in tl.static_range(KERNEL_W):
                in_w = first_w + kw * dilation_w
                valid = valid_h & (in_w >= 0) & (in_w < in_width) if CHECK_W else valid_h
                bits = bits | (valid.to(BITS) << ((kd * KERNEL_H + kh) * KERNEL_W + kw))
    return bits


@triton.jit
def _interleaved(even, odd):
    """One tuple of lanes from its even and its odd lanes."""
    lanes = ()
    for i in tl.static_range(len(even)):
        lanes = lanes + (even[i], odd[i])
    return lanes


@triton.jit
def _lanes4(tile, ROWS: tl.constexpr, CHUNKS: tl.constexpr):
    even, odd = tl.split(tl.reshape(tile, [ROWS, CHUNKS, 2, 2]))
    return _interleaved(tl.split(even), tl.split(odd))


@triton.jit
def _lanes8(tile, ROWS: tl.constexpr, CHUNKS: tl.constexpr):
    even, odd = tl.split(tl.reshape(tile, [ROWS, CHUNKS, 4, 2]))
    return _interleaved(_lanes4(even, ROWS, CHUNKS), _lanes4(odd, ROWS, CHUNKS))


@triton.jit
def vector_lanes(tile, ROWS: tl.constexpr, CHUNKS: tl.constexpr, WIDTH: tl.constexpr):
    """The WIDTH (2, 4, 8 or 16) lanes of a [ROWS, CHUNKS, WIDTH] tile, lane i as a [ROWS, CHUNKS]
    tensor: the tuple (lane 0, lane 1, ...). A thread holds its chunk's lanes, so splitting
    them moves no data. (if / else: the compiler would build what follows an early return.)"""
    if WIDTH == 2:
        lanes = tl.split(tile)
    elif WIDTH == 4:
        lanes = _lanes4(tile, ROWS, CHUNKS)
    elif WIDTH == 8:
        lanes = _lanes8(tile, ROWS, CHUNKS)
    else:
        even, odd = tl.split(tl.reshape(tile, [ROWS, CHUNKS, 8, 2]))
        lanes = _interleaved(_lanes8(even, ROWS, CHUNKS), _lanes8(odd, ROWS, CHUNKS))
    return lanes


@triton.jit
def _joined4(lane0, lane1, lane2, lane3, ROWS: tl.constexpr, CHUNKS: tl.constexpr):
    return tl.reshape(tl.join(tl.join(lane0, lane2), tl.join(lane1, lane3)), [ROWS, CHUNKS, 4])


@triton.jit
def joined_lanes(lanes, ROWS: tl.constexpr, CHUNKS: tl.constexpr, WIDTH: tl.constexpr):
    """vector_lanes' inverse: the [ROWS, CHUNKS, WIDTH] tile whose lane i is lanes[i] (WIDTH 2,
    4 or 8). Each thread holds its chunk's lanes, so joining them moves no data."""
    if WIDTH == 2:
        tile = tl.join(lanes[0], lanes[1])
    elif WIDTH == 4:
        tile = _joined4(lanes[0], lanes[1], lanes[2], lanes[3], ROWS, CHUNKS)
    else:
        even = _joined4(lanes[0], lanes[2], lanes[4], lanes[6], ROWS, CHUNKS)
        odd = _joined4(lanes[1], lanes[3], lanes[5], lanes[7], ROWS, CHUNKS)
        tile = tl.reshape(tl.join(even, odd), [ROWS, CHUNKS, 8])
    return tile


@triton.jit
def store_run(
    output_ptr, accs, bias_ptr, out_channels, row_mask, col_mask,
    n, od, oh, ow, out_stride_n, out_stride_c, out_stride_d, out_stride_h, out_stride_w,
    W_RUN: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr, HAS_BIAS: tl.constexpr,
    INDEX_DTYPE: tl.constexpr,
):
    """store_output for runs of W_RUN outputs along a w-innermost output (NCHW, or a 1-d layer's
    channels-last runs): each row's outputs from (ow, oh, od) on, as one [ROWS, BLOCK_N, W_RUN]
    tile (joined_lanes). A run's outputs are consecutive, so each stores as one vector where
    the other strides come in units (descriptors/units.py output_units)."""
    if HAS_BIAS:
        bias = tl.load(bias_ptr + out_channels, mask=col_mask, other=0.0)
    outputs = ()
    for i in tl.static_range(W_RUN):
        acc = accs[i]
        if HAS_BIAS:
            acc += bias.to(acc.dtype)[None, :]
        outputs = outputs + (acc.to(output_ptr.dtype.element_ty),)
    row_offset = (
        n.to(INDEX_DTYPE) * out_stride_n
        + od.to(INDEX_DTYPE) * out_stride_d
        + oh.to(INDEX_DTYPE) * out_stride_h
        + ow.to(INDEX_DTYPE) * out_stride_w
    )
    pointers = (output_ptr + row_offset[:, None, None] + (out_channels.to(INDEX_DTYPE) * out_stride_c)[None, :, None]
                + (tl.arange(0, W_RUN) * out_stride_w).to(INDEX_DTYPE)[None, None, :])
    tl.store(pointers, joined_lanes(outputs, ROWS, BLOCK_N, W_RUN),
             mask=row_mask[:, None, None] & col_mask[None, :, None])


@triton.jit
def _span(pointers, tap_bits, bit, col_in_range, ACC_DTYPE: tl.constexpr):
    """A [rows, columns, lanes] span of output_run_loop's lanes, real where its rows' `bit` is set."""
    real = (tap_bits & bit) != 0
    return tl.load(pointers, mask=real[:, None, None] & col_in_range[None, :, None], other=0.0).to(ACC_DTYPE)


@triton.jit
def output_run_loop(
    input_ptr, weight_ptr, input_rows, tap_bits, pair_input, pair_weight, col_in_range,
    row_step_d, row_step_h, in_stride_w, weight_stride_d, weight_stride_h, weight_stride_w,
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, W_RUN: tl.constexpr,
    RUN_STRIDE_W: tl.constexpr, FLIPPED: tl.constexpr, UNPADDED: tl.constexpr, ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr, ACC_DTYPE: tl.constexpr, INDEX_DTYPE: tl.constexpr,
    span_rows=None, LANE_PAD: tl.constexpr = -1,
):
    """An elementwise loop whose rows are runs of W_RUN consecutive output positions along w
    (stride RUN_STRIDE_W, dilation 1): one accumulator per position of the run. A K step
    takes a (kd, kh) row of taps; the run's outputs read the SPAN input columns
    j = i * RUN_STRIDE_W + kw (output i, tap kw), each loaded once and multiplied into every
    output that reads it, where a tap a step loads each output's column again (a 3x3 at
    stride 1: 6 loads for 4 outputs' 12 products, not 12). FLIPPED (an input gradient at
    stride 1, kernels/dgrad.py): output i reads column j through tap KERNEL_W - 1 - (j - i).
    input_rows: each row's offset at column 0 of tap row (0, 0); a tap row (kd, kh) adds
    kd * row_step_d + kh * row_step_h (negative for an input gradient). tap_bits: a bit per
    (kd, kh, j), (kd, kh)-major (valid_taps over a SPAN-wide kernel). Returns the W_RUN
    accumulators.
    Lanes (LANE_PAD >= 0: activations stored w-innermost, NCHW): the columns are not loaded
    one by one across channels but taken from [ROWS, BLOCK_N, OWN] vectors along w, OWN =
    W_RUN x RUN_STRIDE_W: the run's own span, whose first column is LANE_PAD places after
    column 0 (span_rows: each row's offset there, aligned), and the spans before and after
    it where the row's columns reach them (each masked whole by the bit of a column it holds:
    the host makes the input's width a multiple of OWN)."""
    SPAN: tl.constexpr = (W_RUN - 1) * RUN_STRIDE_W + KERNEL_W
    BITS: tl.constexpr = tl.int64 if KERNEL_D * KERNEL_H * SPAN > 31 else tl.int32
    OWN: tl.constexpr = W_RUN * RUN_STRIDE_W
    accs = ()
    for _ in tl.static_range(W_RUN):
        accs = accs + (tl.zeros((ROWS, BLOCK_N), dtype=ACC_DTYPE),)
    a_tile = input_ptr + input_rows[:, None] + pair_input[None, :]
    if LANE_PAD >= 0:
        span_tile = input_ptr + span_rows[:, None, None] + pair_input[None, :, None] + tl.arange(0, OWN)[None, None, :]
    row_bit = tl.full((), 1, BITS)  # the step's bit of column 0
    for tap_row in range(0, KERNEL_D * KERNEL_H):
        kd = tap_row // KERNEL_H
        kh = tap_row - kd * KERNEL_H
        weight_offset = kd * weight_stride_d + kh * weight_stride_h
        tap_delta = kd * row_step_d + kh * row_step_h
        weights = ()
        for kw in tl.static_range(KERNEL_W):
            weights = weights + (tl.load(weight_ptr + pair_weight + (weight_offset + kw * weight_stride_w),
                                         mask=col_in_range, other=0.0).to(ACC_DTYPE),)
        if LANE_PAD >= 0:  # the row's columns: the lanes of its spans (j is lane OWN + j - LANE_PAD)
            own = _span(span_tile + tap_delta.to(INDEX_DTYPE), tap_bits, row_bit << LANE_PAD, col_in_range, ACC_DTYPE)
            window = vector_lanes(own, ROWS, BLOCK_N, OWN)
            before, after = window, window  # (placeholders where no column reaches that side: never indexed)
            if LANE_PAD > 0:
                before = vector_lanes(_span(span_tile + (tap_delta - OWN).to(INDEX_DTYPE), tap_bits, row_bit,
                                            col_in_range, ACC_DTYPE), ROWS, BLOCK_N, OWN)
            if SPAN - LANE_PAD > OWN:
                after = vector_lanes(_span(span_tile + (tap_delta + OWN).to(INDEX_DTYPE), tap_bits,
                                           row_bit << (SPAN - 1), col_in_range, ACC_DTYPE), ROWS, BLOCK_N, OWN)
            window = before + window + after
        for j in tl.static_range(SPAN):
            if LANE_PAD >= 0:
                column = window[OWN + j - LANE_PAD]
            else:
                pointers = a_tile + (tap_delta + j * in_stride_w).to(INDEX_DTYPE)
                if UNPADDED:
                    mask = tap_bits
                else:
                    mask = (tap_bits & (row_bit << j)) != 0
                column = tl.load(pointers, mask=mask[:, None] & col_in_range[None, :], other=0.0).to(ACC_DTYPE)
            added = ()
            for i in tl.static_range(W_RUN):
                acc = accs[i]
                for kw in tl.static_range(KERNEL_W):  # the tap through which output i reads column j, if any
                    if j == (i + KERNEL_W - 1 - kw) * FLIPPED + (i * RUN_STRIDE_W + kw) * (1 - FLIPPED):
                        acc = acc + column * weights[kw][None, :]
                added = added + (acc,)
            accs = added
        row_bit = row_bit << SPAN
    return accs
