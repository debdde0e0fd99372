"""Weight gradient of convolution as a split-K implicit GEMM; with input and grad_output
swapped it is also the weight gradient of transposed convolution.

GEMM view, per group g (axis 1), tap and split (axis 2):
    grad_weight[o, (c, tap)] = sum_m A[o, m] * B[m, c]
    M = out_channels / groups                    rows: output channels of group g
    N = in_channels / groups, one tap per column tile; a program takes TAP_RUN (1-3; elementwise 1-9)
        consecutive taps along w with one accumulator each, so every K step's A tile and
        position split serve the run, and each further tap's B differs only in its w index
    K = batch * out_depth * out_height * out_width   (split in SPLIT ranges of whole K steps, axis 2)
    A[o, m] = grad_output[n, g*Mg + o, od, oh, ow]
    B[m, c] = input[n, g*Cg + c, od*sd - pd + kd*dd, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
    (padding resolved in the gather exactly as the forward kernel does)
Thin groups (PACKED_CHANNELS = 2..15 input channels per group) pack N instead:
    N = taps * (in_channels / groups), column j = (tap j // channels, channel j % channels),
    so B[m, j] gathers each column at its own tap and a 3x3 RGB stem pads 27 columns to
    32 rather than each tap's 3 channels to 16. PACKED_DENSE (one group, no tap in the
    padding, channels-last input, dilation 1 along w: a patch embedding) splits B's
    address into a position's offset plus a column's, each row's (kw, channel) pairs one
    contiguous run, so B loads along it without masks.

The K loop walks positions m in flat (n, od, oh, ow) order, BLOCK_K per step; how a step
finds its positions' coordinates is chosen per launch (constexprs set by the host,
tconv/descriptors/wgrad.py), cheapest first:
    ROW_STEPS  out_width % BLOCK_K == 0: every step lies inside one output line, so
               (n, od, oh, first ow) are scalars (divided once per step, not per
               position) and each position only adds its ow offset.
    LINE_STEPS out_width divides BLOCK_K and BLOCK_K divides out_height * out_width
               (zeros padding): every step is BLOCK_K / out_width whole lines of one
               (n, od) plane, so its plane and first line are scalars, and each
               position's line and column in the step (hence its w index, w check and
               offset from the step's first line) are the same every step: computed once
               per tile, a step adds one scalar and checks h per position. LINE_STEPS 2:
               BLOCK_K is the whole plane, so the h checks are the tile's too and a step
               checks only its plane's d.
    BATCH_STEPS otherwise, when BLOCK_K divides the batch: positions run image-fastest
               (flat m = ((od * out_height + oh) * out_width + ow) * batch + n, the same
               sum in another order), so a step is BLOCK_K images at one output position,
               whose coordinates, tap indices and padding checks are scalars (packed
               thin columns: [BLOCK_N] vectors, once per step); each image's offset in A
               and B is computed once per tile.
    MAGIC      otherwise positions are split with multiply-high by a magic number
               (exact while num_rows * size < 2**32), else with `//`; its bits 1, 2, 4
               say which of out_width, out_height, out_depth (8: the batch, BATCH_STEPS).
    GRAD_FLAT  grad_output's (n, d, h, w) strides flatten into one row stride: A's
               pointers then advance like a plain GEMM's, in every mode but BATCH_STEPS.
Output/input channel tiles past the edge wrap around with `%` (their partials are never
stored), so no channel masks are evaluated in the loop; zeros padding checks bounds with
one unsigned compare per dimension.

Tensors (any strides, in elements):
    input       [batch, in_channels, in_depth, in_height, in_width]
    grad_output [batch, out_channels, out_depth, out_height, out_width]
    workspace   fp32 (fp64 for fp64) [SPLIT, out_channels * (in_channels / groups) * taps + out_channels]:
                each split's partial weight gradient in weight order [o, c, kd, kh, kw],
                then (BIAS_GRAD only) its partial bias gradient (row sums of A, taken by the first column
                tile of tap 0). wgrad_reduce_kernel sums the splits in a fixed order, so
                results are bit-reproducible: no atomics anywhere.

ELEMENTWISE (one input channel per group, or small groups of GROUP_IN input and
GROUP_OUT < 16 output channels: tconv.spec.ConvSpec.elementwise_lanes): a single group
whose rows are the weight's (output channel o, input channel c of its group) pairs,
row r = o * GROUP_IN + c; row r meets input channel (o // GROUP_OUT) * GROUP_IN + c only,
so each step is an elementwise product summed over positions instead of a mostly-empty
tl.dot. Each tap of its run keeps a [BLOCK_M, BLOCK_K] tile of products, summed over
positions once after the loop; a run of a kernel row's width (up to 9 taps) reads
grad_output once per kernel row (a 3x3's 3 times, not 9).
LANES = 8, 4 or 2 (elementwise, a run of the whole kernel row, activations stored
w-innermost with aligned rows: NCHW): positions load along w instead of across rows, LANES
a thread (a chunk: one 16-, 8- or 4-byte vector of 16-bit storage), each chunk inside one
output line, BLOCK_K / LANES chunks a row per step. A chunk's outputs start at a span of
LANE_STRIDE x LANES input columns, loaded as one vector; the LANE_PAD columns before it and
those after it that the row's last taps reach are taken from the neighbouring spans' loads
(zero in the padding). Each tap multiplies grad_output's lanes by the span's lanes moved by
its offset, so each input column is loaded once per kernel row, a vector at a time, rather
than once per tap, one element at a time.
"""

import triton
import triton.language as tl

from ._index import PAD_ZEROS, mma, padded_index, strides_in_elements, vector_lanes

#: BIAS_GRAD modes: A's row sums added every step (float32 and float64 tiles), or taken on
#: the tensor cores as A @ ones (16-bit dense tiles: a reduction across threads every step
#: nearly doubled their loops, and spilled on sm_80).
BIAS_ROW_SUMS = tl.constexpr(1)
BIAS_ON_TENSOR_CORES = tl.constexpr(2)
#: Columns of the ones that A multiplies for its row sums (tl.dot's narrowest N).
BIAS_COLUMNS = tl.constexpr(16)


@triton.jit
def _magic(divisor, USE: tl.constexpr):
    """The multiplier of _divmod: ceil(2**32 / divisor) for divisor > 1 (0 when unused).
    One 32-bit division per program, outside the loop."""
    if USE:
        return (tl.full((), 0xFFFFFFFF, tl.uint32) // divisor.to(tl.uint32)) + 1
    else:
        return tl.full((), 0, tl.uint32)


@triton.jit
def _divmod(x, divisor, magic, USE: tl.constexpr):
    """(x // divisor, x % divisor) for 0 <= x. With USE, floor(x / d) = umulhi(x, ceil(2**32 / d)):
    exact while x * d < 2**32 (the host checks): two multiplies per element instead of a
    division sequence. Without it a divisor specialised to 1 folds away."""
    if USE:
        quotient = tl.umulhi(tl.cast(x, tl.uint32), magic).to(tl.int32)  # (tl.cast: x may be a Python int when interpreted)
        # x + q * (-d): one multiply-add (d = 0 - (0 - d) is left to the compiler otherwise)
        return quotient, x + quotient * (0 - divisor)
    else:
        quotient = x // divisor
        return quotient, x - quotient * divisor


@triton.jit
def _tap_index(out_index, stride, offset, size, CHECK: tl.constexpr, PADDING_MODE: tl.constexpr):
    """(input index, whether real) of output index `out_index` under a tap at `offset`
    (= k * dilation - pad). Zeros padding: the index as is, checked with one unsigned
    compare, and only where the host found that taps can fall into the padding (CHECK);
    the other modes fold the index into range (always real). `index == index` is a
    true of the index's shape that folds away when compiled."""
    index = out_index * stride + offset
    if PADDING_MODE == PAD_ZEROS:
        if CHECK:
            return index, index.to(tl.uint32) < size  # int32 size: compared unsigned
        else:
            return index, index == index
    else:
        index, _ = padded_index(index, size, PADDING_MODE)
        return index, index == index


@triton.jit
def _load_step(
    row_start, last_row, a_pointers, geometry, MASK_ROWS: tl.constexpr, ROW_STEPS: tl.constexpr,
    LINE_STEPS: tl.constexpr, MAGIC: tl.constexpr, BOUNDS: tl.constexpr,
    BLOCK_K: tl.constexpr, TAP_RUN: tl.constexpr, KERNEL_W: tl.constexpr,
    GRAD_FLAT: tl.constexpr, PADDING_MODE: tl.constexpr, ELEMENTWISE: tl.constexpr, PACKED: tl.constexpr,
    INDEX_DTYPE: tl.constexpr,
):
    """The tiles of the K step at flat position row_start: A, and B at the program's first
    tap and (TAP_RUN > 1) at the next taps along w, which differ from it only in the w index:
    (A, B, B at tap + 1, B at tap + 2), the unused ones repeating B. MASK_ROWS only for the
    last, partial step of a split (the loop runs whole steps: no position mask in it).
    geometry: what every step takes besides its start (the kernel's step_geometry).
    PACKED: B's columns are (tap, channel) pairs, so the tap offsets are per column
    ([BLOCK_N] vectors) and B's indices [BLOCK_K, BLOCK_N] (never with ROW_STEPS or LINE_STEPS).
    LINE_STEPS: line_h, line_w and line_offset are each position's h index (times the
    stride), w index and input offset relative to the step's first line (per tile)."""
    (positions, grad_output_ptr, grad_col, input_ptr, input_col,
     in_depth, in_height, in_width, in_stride_n, in_stride_d, in_stride_h, in_stride_w,
     out_depth, out_height, out_width, grad_stride_n, grad_stride_d, grad_stride_h, grad_stride_w,
     stride_d, stride_h, stride_w, off_d, off_h, off_w, magic_w, magic_h, magic_d,
     dilation_w, line_h, line_w, line_offset) = geometry
    if LINE_STEPS:
        # The step is whole lines of one plane: (n, od, first oh) are scalars.
        line, _ = _divmod(row_start, out_width, magic_w, (MAGIC & 1) != 0)
        rest, oh0 = _divmod(line, out_height, magic_h, (MAGIC & 2) != 0)
        n, od = _divmod(rest, out_depth, magic_d, (MAGIC & 4) != 0)
        in_d, valid_d = _tap_index(od, stride_d, off_d, in_depth, (BOUNDS & 4) != 0, PADDING_MODE)
        in_h0 = oh0 * stride_h + off_h
        image = n
        if LINE_STEPS == 2:
            # The step is the whole plane (oh0 is 0): its positions' h indices and checks are
            # the same every step (hoisted out of the loop when compiled), and the plane's d
            # is checked once, broadcast to its positions.
            in_h0 = off_h
            in_h = in_h0 + line_h
            line_mask = (in_h.to(tl.uint32) < in_height) if (BOUNDS & 2) != 0 else in_h == in_h
            if (BOUNDS & 4) != 0:
                line_mask = line_mask & (tl.broadcast_to(in_d, [BLOCK_K]).to(tl.uint32) < in_depth)
        else:
            if (BOUNDS & 4) != 0:
                # A plane whose d tap is padding: its h index is made negative (scalar
                # select), so the per-position h compare rejects it too.
                in_h0 = tl.where(valid_d, in_h0, -1 - BLOCK_K * stride_h)
            in_h = in_h0 + line_h
            line_mask = (in_h.to(tl.uint32) < in_height) if (BOUNDS & 6) != 0 else in_h == in_h
        in_w = line_w
        if (BOUNDS & 1) != 0:
            input_mask = line_mask & (in_w.to(tl.uint32) < in_width)
        else:
            input_mask = line_mask
    elif ROW_STEPS:
        # The step lies in one output line: its coordinates are scalars, and positions
        # differ in ow only (ow = ow0 + position).
        line, ow0 = _divmod(row_start, out_width, magic_w, (MAGIC & 1) != 0)
        rest, oh = _divmod(line, out_height, magic_h, (MAGIC & 2) != 0)
        n, od = _divmod(rest, out_depth, magic_d, (MAGIC & 4) != 0)
        in_h, valid_h = _tap_index(oh, stride_h, off_h, in_height, (BOUNDS & 2) != 0, PADDING_MODE)
        in_d, valid_d = _tap_index(od, stride_d, off_d, in_depth, (BOUNDS & 4) != 0, PADDING_MODE)
        in_w0 = ow0 * stride_w + off_w
        if PADDING_MODE == PAD_ZEROS and (BOUNDS & 6) != 0:
            # A line whose (d, h) tap is padding: its w index is made negative (scalar
            # select), so the one unsigned compare per position rejects it too.
            in_w0 = tl.where(valid_d & valid_h, in_w0, -in_width - BLOCK_K * stride_w - KERNEL_W * dilation_w)
        in_w, valid_w = _tap_index(in_w0, 1, positions * stride_w, in_width,
                                   (BOUNDS & 7) != 0, PADDING_MODE)
        input_mask = valid_w
        line_mask = valid_w == valid_w  # (d, h) are folded into the w index above
        ow = ow0 + positions
        image = n
    else:
        rows = row_start + positions
        line, ow = _divmod(rows, out_width, magic_w, (MAGIC & 1) != 0)
        rest, oh = _divmod(line, out_height, magic_h, (MAGIC & 2) != 0)
        n, od = _divmod(rest, out_depth, magic_d, (MAGIC & 4) != 0)
        image, in_od, in_oh, in_ow = n, od, oh, ow
        if PACKED:  # positions down, (tap, channel) columns across
            image, in_od, in_oh, in_ow = n[:, None], od[:, None], oh[:, None], ow[:, None]
            off_d, off_h, off_w = off_d[None, :], off_h[None, :], off_w[None, :]
        in_w, valid_w = _tap_index(in_ow, stride_w, off_w, in_width, (BOUNDS & 1) != 0, PADDING_MODE)
        in_h, valid_h = _tap_index(in_oh, stride_h, off_h, in_height, (BOUNDS & 2) != 0, PADDING_MODE)
        in_d, valid_d = _tap_index(in_od, stride_d, off_d, in_depth, (BOUNDS & 4) != 0, PADDING_MODE)
        line_mask = valid_h & valid_d
        input_mask = valid_w & line_mask
    if LINE_STEPS:
        input_row = line_offset + (
            image.to(INDEX_DTYPE) * in_stride_n + in_d.to(INDEX_DTYPE) * in_stride_d
            + in_h0.to(INDEX_DTYPE) * in_stride_h
        )
    else:
        input_row = (
            image.to(INDEX_DTYPE) * in_stride_n + in_d.to(INDEX_DTYPE) * in_stride_d
            + in_h.to(INDEX_DTYPE) * in_stride_h + in_w.to(INDEX_DTYPE) * in_stride_w
        )
    if MASK_ROWS:
        row_mask = positions < last_row - row_start
        input_mask = input_mask & (row_mask[:, None] if PACKED else row_mask)
        line_mask = line_mask & (row_mask[:, None] if PACKED else row_mask)
    if GRAD_FLAT:
        grad_pointers = a_pointers
    else:
        grad_row = (
            n.to(INDEX_DTYPE) * grad_stride_n + od.to(INDEX_DTYPE) * grad_stride_d
            + oh.to(INDEX_DTYPE) * grad_stride_h + ow.to(INDEX_DTYPE) * grad_stride_w
        )
        grad_pointers = grad_output_ptr + grad_col[:, None] + grad_row[None, :]
    if MASK_ROWS:
        a = tl.load(grad_pointers, mask=row_mask[None, :], other=0.0)
    else:
        a = tl.load(grad_pointers)
    if ELEMENTWISE:
        b_pointers = input_ptr + input_col[:, None] + input_row[None, :]
        b_mask = input_mask[None, :]
    elif PACKED:
        b_pointers = input_ptr + input_row + input_col[None, :]
        b_mask = input_mask
    else:
        b_pointers = input_ptr + input_row[:, None] + input_col[None, :]
        b_mask = input_mask[:, None]
    if MASK_ROWS or (PADDING_MODE == PAD_ZEROS and BOUNDS != 0):
        b = tl.load(b_pointers, mask=b_mask, other=0.0)
    else:
        b = tl.load(b_pointers)  # every tap inside the input: nothing to mask
    taps = (b,)
    for run in tl.static_range(1, TAP_RUN):  # (zeros padding, unpacked: the host's rule) the next taps: w index + dilation
        taps = taps + (_next_tap(b_pointers, in_w, line_mask, run, dilation_w, in_width, in_stride_w, MASK_ROWS,
                                 BOUNDS, ELEMENTWISE, INDEX_DTYPE),)
    return a, taps


@triton.jit
def _batch_step(
    row_start, positions, a_tile, b_tile, batch, magic_n,
    in_depth, in_height, in_width, in_stride_n, in_stride_d, in_stride_h, in_stride_w,
    out_height, out_width, grad_stride_n, grad_stride_d, grad_stride_h, grad_stride_w,
    stride_d, stride_h, stride_w, off_d, off_h, off_w, magic_w, magic_h, dilation_w,
    MAGIC: tl.constexpr, BOUNDS: tl.constexpr, BLOCK_K: tl.constexpr, TAP_RUN: tl.constexpr,
    PADDING_MODE: tl.constexpr, PACKED: tl.constexpr, INDEX_DTYPE: tl.constexpr,
):
    """_load_step's tiles for BATCH_STEPS: the step is BLOCK_K images at one output position
    (positions run image-fastest), so the position, its tap's input index and whether that
    is padding are scalars; a_tile and b_tile hold each image's offset (computed once per
    tile) and a step adds one scalar to each (PACKED: a vector over B's columns). Steps are
    always whole (BLOCK_K divides the batch), and a tap in the padding masks B's rows with
    one compare against 0 (PACKED: a column mask)."""
    spot, n0 = _divmod(row_start, batch, magic_n, (MAGIC & 8) != 0)
    line, ow = _divmod(spot, out_width, magic_w, (MAGIC & 1) != 0)
    od, oh = _divmod(line, out_height, magic_h, (MAGIC & 2) != 0)
    in_w, valid_w = _tap_index(ow, stride_w, off_w, in_width, (BOUNDS & 1) != 0, PADDING_MODE)
    in_h, valid_h = _tap_index(oh, stride_h, off_h, in_height, (BOUNDS & 2) != 0, PADDING_MODE)
    in_d, valid_d = _tap_index(od, stride_d, off_d, in_depth, (BOUNDS & 4) != 0, PADDING_MODE)
    a = tl.load(a_tile + (n0.to(INDEX_DTYPE) * grad_stride_n + od.to(INDEX_DTYPE) * grad_stride_d
                          + oh.to(INDEX_DTYPE) * grad_stride_h + ow.to(INDEX_DTYPE) * grad_stride_w))
    input_offset = (n0.to(INDEX_DTYPE) * in_stride_n + in_d.to(INDEX_DTYPE) * in_stride_d
                    + in_h.to(INDEX_DTYPE) * in_stride_h + in_w.to(INDEX_DTYPE) * in_stride_w)
    line_valid = valid_h & valid_d
    if PACKED:
        # (tap, channel) columns: off_d, off_h, off_w are per column, so are the input index,
        # its check and its offset ([BLOCK_N] vectors, once per step), the same for every row.
        b_pointers = b_tile + input_offset[None, :]
        b_mask = (line_valid & valid_w)[None, :]
    else:
        b_pointers = b_tile + input_offset
        b_mask = (positions < tl.where(line_valid & valid_w, BLOCK_K, 0))[:, None]
    if PADDING_MODE == PAD_ZEROS and BOUNDS != 0:
        b = tl.load(b_pointers, mask=b_mask, other=0.0)
    else:
        b = tl.load(b_pointers)
    taps = (b,)
    for run in tl.static_range(1, TAP_RUN):  # (zeros padding, dense) the run's next taps: w index + dilation
        pointers = b_pointers + tl.cast(run * dilation_w, INDEX_DTYPE) * in_stride_w
        if BOUNDS != 0:
            valid = line_valid & ((in_w + run * dilation_w).to(tl.uint32) < in_width)
            tile = tl.load(pointers, mask=(positions < tl.where(valid, BLOCK_K, 0))[:, None], other=0.0)
        else:
            tile = tl.load(pointers)
        taps = taps + (tile,)
    return a, taps


@triton.jit
def _next_tap(b_pointers, in_w, line_mask, step, dilation_w, in_width, in_stride_w, MASK_ROWS: tl.constexpr,
              BOUNDS: tl.constexpr, ELEMENTWISE: tl.constexpr, INDEX_DTYPE: tl.constexpr):
    """B at the tap `step` places further along w: the same positions and channels, the w
    index moved by step * dilation, checked with one unsigned compare where w can reach
    the zero padding; line_mask carries the (d, h) checks and the partial step's rows.
    (ELEMENTWISE: B is [rows, positions], else [positions, columns].)"""
    pointers = b_pointers + tl.cast(step * dilation_w, INDEX_DTYPE) * in_stride_w
    if (BOUNDS & 1) != 0:
        valid = line_mask & ((in_w + step * dilation_w).to(tl.uint32) < in_width)
    else:
        valid = line_mask
    if MASK_ROWS or BOUNDS != 0:
        return tl.load(pointers, mask=valid[None, :] if ELEMENTWISE else valid[:, None], other=0.0)
    else:
        return tl.load(pointers)


@triton.jit
def _lane_step(row_start, last_row, chunks, lanes, geometry, MASK_ROWS: tl.constexpr, MAGIC: tl.constexpr,
               BOUNDS: tl.constexpr, LANE_PAD: tl.constexpr, LANE_STRIDE: tl.constexpr, KERNEL_W: tl.constexpr,
               BLOCK_M: tl.constexpr, ACC_DTYPE: tl.constexpr, INDEX_DTYPE: tl.constexpr):
    """LANES: the K step at flat position row_start as chunks of CHUNK positions along w, each
    inside one output line (the host's rule: out_width % CHUNK == 0). Returns grad_output's
    lanes and the input's window of 3 x SPAN lanes (SPAN = LANE_STRIDE x CHUNK, the input
    columns a chunk's outputs start at): lane j is the input column j - SPAN places after
    the chunk's first output column's at tap kw = LANE_PAD, taken from the previous span's
    load, the chunk's own and the next span's (the halo loads' unused lanes are never loaded
    once compiled, and a halo no tap reaches is not loaded at all). MASK_ROWS only for a
    split's partial last step: whole chunks past it read zeros (the positions are a multiple
    of CHUNK)."""
    (grad_output_ptr, grad_col, input_ptr, input_col,
     in_depth, in_height, in_width, in_stride_n, in_stride_d, in_stride_h,
     out_depth, out_height, out_width, grad_stride_n, grad_stride_d, grad_stride_h,
     stride_d, stride_h, off_d, off_h, magic_w, magic_h, magic_d) = geometry
    CHUNKS: tl.constexpr = chunks.shape[0]
    CHUNK: tl.constexpr = lanes.shape[0]
    SPAN: tl.constexpr = LANE_STRIDE * CHUNK
    # Split in chunks (magic_w is out_width / CHUNK's), so that ow0 is a visible multiple of
    # CHUNK and the loads' alignment is proven.
    chunk = row_start // CHUNK + chunks
    line, lane_w = _divmod(chunk, out_width // CHUNK, magic_w, (MAGIC & 1) != 0)
    rest, oh = _divmod(line, out_height, magic_h, (MAGIC & 2) != 0)
    n, od = _divmod(rest, out_depth, magic_d, (MAGIC & 4) != 0)
    ow0 = lane_w * CHUNK
    in_h, valid_h = _tap_index(oh, stride_h, off_h, in_height, (BOUNDS & 2) != 0, PAD_ZEROS)
    in_d, valid_d = _tap_index(od, stride_d, off_d, in_depth, (BOUNDS & 4) != 0, PAD_ZEROS)
    real = valid_h & valid_d
    if MASK_ROWS:
        real = real & (chunk * CHUNK < last_row)
    grad_row = (n.to(INDEX_DTYPE) * grad_stride_n + od.to(INDEX_DTYPE) * grad_stride_d
                + oh.to(INDEX_DTYPE) * grad_stride_h + ow0)
    input_row = (n.to(INDEX_DTYPE) * in_stride_n + in_d.to(INDEX_DTYPE) * in_stride_d
                 + in_h.to(INDEX_DTYPE) * in_stride_h + ow0 * LANE_STRIDE)
    columns = tl.arange(0, SPAN)
    a_pointers = grad_output_ptr + grad_col[:, None, None] + grad_row[None, :, None] + lanes[None, None, :]
    b_pointers = input_ptr + input_col[:, None, None] + input_row[None, :, None] + columns[None, None, :]
    if MASK_ROWS:
        a = tl.load(a_pointers, mask=(chunk * CHUNK < last_row)[None, :, None], other=0.0)
    else:
        a = tl.load(a_pointers)
    if MASK_ROWS or (BOUNDS & 6) != 0:
        b = tl.load(b_pointers, mask=real[None, :, None], other=0.0)
    else:
        b = tl.load(b_pointers)
    own = vector_lanes(b.to(ACC_DTYPE), BLOCK_M, CHUNKS, SPAN)
    before, after = own, own  # (placeholders where no tap reaches that side's span: never indexed)
    if LANE_PAD > 0:  # the previous span: in the padding for a line's first chunk
        before_mask = (real & (ow0 > 0))[None, :, None]
        before = vector_lanes(tl.load(b_pointers - SPAN, mask=before_mask, other=0.0).to(ACC_DTYPE),
                              BLOCK_M, CHUNKS, SPAN)
    if KERNEL_W - 1 - LANE_PAD >= LANE_STRIDE:  # the next span: whole, or wholly past the input (in_width % SPAN == 0)
        after_mask = (real & (ow0 * LANE_STRIDE + SPAN < in_width))[None, :, None]
        after = vector_lanes(tl.load(b_pointers + SPAN, mask=after_mask, other=0.0).to(ACC_DTYPE),
                             BLOCK_M, CHUNKS, SPAN)
    return vector_lanes(a.to(ACC_DTYPE), BLOCK_M, CHUNKS, CHUNK), before + own + after


@triton.jit
def _accumulate_lanes(accs, bias_acc, grad_lanes, window, LANE_PAD: tl.constexpr, LANE_STRIDE: tl.constexpr,
                      KERNEL_W: tl.constexpr, BIAS_GRAD: tl.constexpr):
    """LANES: add one K step. Tap kw of the row multiplies each grad_output lane i by the
    window's lane LANE_STRIDE x i + kw - LANE_PAD (+ a span: the window starts a span early),
    summed into the tap's [rows, chunks] accumulator; the bias adds the lanes themselves."""
    CHUNK: tl.constexpr = len(grad_lanes)
    added = ()
    for kw in tl.static_range(KERNEL_W):
        total = accs[kw]
        for i in tl.static_range(CHUNK):
            total += grad_lanes[i] * window[LANE_STRIDE * (CHUNK + i) + kw - LANE_PAD]
        added = added + (total,)
    if BIAS_GRAD:
        for i in tl.static_range(CHUNK):
            bias_acc += grad_lanes[i]
    return added, bias_acc


@triton.jit
def _accumulate(
    accs, bias_acc, a, taps, TAP_RUN: tl.constexpr, ELEMENTWISE: tl.constexpr,
    BIAS_GRAD: tl.constexpr, ACC_DTYPE: tl.constexpr, INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    """Add one K step: A @ B on tensor cores for each of the run's taps' B (elementwise:
    A * B, per position, summed after the loop) and, for the bias gradient, A's row sums."""
    a_wide = a.to(ACC_DTYPE)  # (elementwise: once for the run, whose taps share A)
    added = ()
    for run in tl.static_range(TAP_RUN):
        if ELEMENTWISE:
            added = added + (accs[run] + a_wide * taps[run].to(ACC_DTYPE),)
        else:
            added = added + (mma(accs[run], a, taps[run], INPUT_PRECISION, UPCAST_DOT),)
    if BIAS_GRAD:
        if ELEMENTWISE:
            bias_acc += a_wide
        elif BIAS_GRAD == BIAS_ON_TENSOR_CORES:  # every column of bias_acc is A's row sums
            bias_acc = mma(bias_acc, a, tl.full((a.shape[1], BIAS_COLUMNS), 1, a.dtype), INPUT_PRECISION, UPCAST_DOT)
        else:
            bias_acc += tl.sum(a_wide, axis=1)
    return added, bias_acc


@triton.jit
def conv_wgrad_kernel(
    # pointers
    input_ptr, grad_output_ptr, workspace_ptr,
    # input sizes and strides
    batch, in_depth, in_height, in_width,
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w,
    # grad_output sizes and strides (grad_stride_row: one flat position's, when GRAD_FLAT)
    out_depth, out_height, out_width,
    grad_stride_n, grad_stride_c, grad_stride_d, grad_stride_h, grad_stride_w, grad_stride_row,
    # geometry
    stride_d, stride_h, stride_w,
    pad_d, pad_h, pad_w,
    dilation_d, dilation_h, dilation_w,
    in_channels_per_group, out_channels_per_group, loaded_in_channels, loaded_out_channels,
    rows_per_split, split_stride, bias_offset,
    # meta-parameters
    KERNEL_D: tl.constexpr, KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr,
    PADDING_MODE: tl.constexpr, BIAS_GRAD: tl.constexpr, ELEMENTWISE: tl.constexpr,
    GROUP_IN: tl.constexpr, GROUP_OUT: tl.constexpr, PACKED_CHANNELS: tl.constexpr, PACKED_DENSE: tl.constexpr,
    ROW_STEPS: tl.constexpr, LINE_STEPS: tl.constexpr, BATCH_STEPS: tl.constexpr, MAGIC: tl.constexpr,
    BOUNDS: tl.constexpr, GRAD_FLAT: tl.constexpr, TAP_RUN: tl.constexpr, PADDED: tl.constexpr,
    LANES: tl.constexpr, LANE_PAD: tl.constexpr, LANE_STRIDE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr, UPCAST_DOT: tl.constexpr, INDEX_DTYPE: tl.constexpr,
    IN_UNIT: tl.constexpr, GRAD_UNIT: tl.constexpr,
):
    TAPS: tl.constexpr = KERNEL_D * KERNEL_H * KERNEL_W
    # Row strides and channel counts in units: the input's and its channel count in IN_UNIT,
    # grad_output's in GRAD_UNIT (as in kernels/fprop.py).
    # LANES: w's stride is 1 (positions load along it) and the channel stride is in units instead.
    in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w = strides_in_elements(
        in_stride_n, in_stride_c, in_stride_d, in_stride_h, in_stride_w, IN_UNIT, LANES > 0)
    grad_stride_n, grad_stride_c, grad_stride_d, grad_stride_h, grad_stride_w = strides_in_elements(
        grad_stride_n, grad_stride_c, grad_stride_d, grad_stride_h, grad_stride_w, GRAD_UNIT, LANES > 0)
    grad_stride_row = grad_stride_row * GRAD_UNIT
    out_channels_per_group = out_channels_per_group * GRAD_UNIT  # (elementwise: the rows)
    if not ELEMENTWISE:  # (elementwise group sizes are the GROUP_IN, GROUP_OUT constexprs)
        in_channels_per_group = in_channels_per_group * IN_UNIT
    # The channels the operands hold, which wrap the loads: more in zero-padded copies
    # (PADDED: tconv.configs.padded_channels), whose extra rows and columns are never stored.
    if PADDED:
        loaded_out_channels = loaded_out_channels * GRAD_UNIT
        loaded_in_channels = loaded_in_channels * IN_UNIT
    else:
        loaded_out_channels = out_channels_per_group
        loaded_in_channels = in_channels_per_group
    # Elementwise and PACKED_DENSE launches have one group: a constant keeps offsets aligned.
    group = 0 if ELEMENTWISE or PACKED_DENSE else tl.program_id(1)
    split = tl.program_id(2)
    # Axis 0: output-channel tiles fastest, then (tap, input-channel tile).
    num_pid_m = tl.cdiv(out_channels_per_group, BLOCK_M)
    num_pid_c = 1 if ELEMENTWISE else tl.cdiv(in_channels_per_group, BLOCK_N)
    pid_m = tl.program_id(0) % num_pid_m
    pid_n = tl.program_id(0) // num_pid_m
    if PACKED_CHANNELS:
        # Thin groups: columns are the (tap, channel) pairs of the weight, tap-major, so a
        # tile's columns span several taps and only the last tile is padded.
        pid_c = 0
        column = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        column_in_range = column < TAPS * PACKED_CHANNELS
        pair = column % (TAPS * PACKED_CHANNELS)  # wrapped into range, like the channels
        tap = pair // PACKED_CHANNELS
    else:
        # A program takes TAP_RUN consecutive taps along w (a divisor of KERNEL_W): one
        # position split and one grad_output tile per K step serve all of them.
        run = pid_n // num_pid_c
        tap = run * TAP_RUN  # (the run's first tap)
        pid_c = pid_n % num_pid_c
    kw = tap % KERNEL_W
    kh = (tap // KERNEL_W) % KERNEL_H
    kd = tap // (KERNEL_W * KERNEL_H)

    out_channel = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # within the group
    out_mask = out_channel < out_channels_per_group
    # Loads use channels wrapped into range (always in bounds, as kernels/gemm.py does),
    # so the loop masks positions only; the wrapped rows' and columns' partials are
    # dropped by the masked stores.
    grad_col = (group * loaded_out_channels + out_channel % loaded_out_channels).to(INDEX_DTYPE) * grad_stride_c
    if ELEMENTWISE:
        # Rows are (output channel, input channel of its group) pairs (out_channels_per_group
        # counts the pairs): grad_output's row is the pair's output channel.
        pair = out_channel % out_channels_per_group
        grad_col = (pair // GROUP_IN).to(INDEX_DTYPE) * grad_stride_c
        channel = pair % GROUP_IN  # (unused: the pair is the weight row)
        channel_mask = out_mask
        load_channel = pair // GROUP_IN // GROUP_OUT * GROUP_IN + channel
    elif PACKED_CHANNELS:
        channel = pair - tap * PACKED_CHANNELS
        channel_mask = column_in_range
        load_channel = channel
        if PACKED_DENSE:
            # No tap reaches the padding, and channels-last storage keeps a row's (kw, channel)
            # pairs as one run: a column's offset from its position's tap (0, 0, 0) is its
            # (kd, kh) row's plus its place in the run, so B is a position offset plus a
            # column offset, with no mask, loaded along runs of KERNEL_W x channels.
            RUN: tl.constexpr = KERNEL_W * PACKED_CHANNELS
            tap_row = pair // RUN
            dense_column = ((tap_row // KERNEL_H) * dilation_d * in_stride_d + (tap_row % KERNEL_H) * dilation_h
                            * in_stride_h + pair % RUN)
    else:
        channel = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
        channel_mask = channel < in_channels_per_group
        load_channel = channel % loaded_in_channels
    if PACKED_DENSE:  # positions at tap (0, 0, 0); the columns carry the rest
        input_col = dense_column.to(INDEX_DTYPE)
        off_d, off_h, off_w = -pad_d, -pad_h, -pad_w
    else:  # the channel's offset, and the tap's into the padded input
        input_col = (group * loaded_in_channels + load_channel).to(INDEX_DTYPE) * in_stride_c
        off_d = kd * dilation_d - pad_d
        off_h = kh * dilation_h - pad_h
        off_w = kw * dilation_w - pad_w

    num_rows = batch * out_depth * out_height * out_width
    first_row = split * rows_per_split
    last_row = tl.minimum(first_row + rows_per_split, num_rows)
    # The loop runs whole K steps; a split's partial last step (only the last split
    # has one) is taken after it, with position masks.
    last_whole = first_row + (last_row - first_row) // BLOCK_K * BLOCK_K
    positions = tl.arange(0, BLOCK_K)
    magic_w = _magic(out_width // LANES if LANES else out_width, (MAGIC & 1) != 0)  # (LANES: split in chunks)
    magic_h = _magic(out_height, (MAGIC & 2) != 0)
    magic_d = _magic(out_depth, (MAGIC & 4) != 0)
    if LINE_STEPS:  # each position's line (times the stride) and w index in its step, the same every step
        line_h = positions // out_width * stride_h
        line_w = positions % out_width * stride_w + off_w
        line_offset = line_h.to(INDEX_DTYPE) * in_stride_h + line_w.to(INDEX_DTYPE) * in_stride_w
    else:
        line_h, line_w, line_offset = positions, positions, positions
    magic_n = _magic(batch, (MAGIC & 8) != 0)
    b_tile = input_ptr
    if GRAD_FLAT:
        # Flat position m of grad_output sits at m * grad_stride_row: A is a GEMM operand,
        # its pointers advanced by BLOCK_K rows per step.
        a_pointers = grad_output_ptr + grad_col[:, None] + (
            first_row.to(INDEX_DTYPE) + positions.to(INDEX_DTYPE))[None, :] * grad_stride_row
    elif BATCH_STEPS:  # each image's offset in the step's tiles (B's at the program's tap channels)
        a_pointers = grad_output_ptr + grad_col[:, None] + (positions.to(INDEX_DTYPE) * grad_stride_n)[None, :]
        b_tile = input_ptr + (positions.to(INDEX_DTYPE) * in_stride_n)[:, None] + input_col[None, :]
    else:
        a_pointers = grad_output_ptr
    # What a step of the whole-step loop and the split's partial last step both take
    # besides their start (_load_step unpacks it).
    step_geometry = (positions, grad_output_ptr, grad_col, input_ptr, input_col,
                     in_depth, in_height, in_width, in_stride_n, in_stride_d, in_stride_h, in_stride_w,
                     out_depth, out_height, out_width, grad_stride_n, grad_stride_d, grad_stride_h, grad_stride_w,
                     stride_d, stride_h, stride_w, off_d, off_h, off_w, magic_w, magic_h, magic_d,
                     dilation_w, line_h, line_w, line_offset)
    if LANES:  # a tap's products summed over each chunk's lanes every step
        chunks, lanes = tl.arange(0, BLOCK_K // LANES), tl.arange(0, LANES)
        lane_geometry = (grad_output_ptr, grad_col, input_ptr, input_col,
                         in_depth, in_height, in_width, in_stride_n, in_stride_d, in_stride_h,
                         out_depth, out_height, out_width, grad_stride_n, grad_stride_d, grad_stride_h,
                         stride_d, stride_h, off_d, off_h, magic_w, magic_h, magic_d)
        acc = tl.zeros((BLOCK_M, BLOCK_K // LANES), dtype=ACC_DTYPE)
        bias_acc = acc
    elif ELEMENTWISE:
        # A row's products with its one input channel, per position of the step: summed over
        # positions once, after the loop, not across threads every step (sm_90, MobileNetV2's
        # 144-channel 3x3 at 32x16x32: 152 loop instructions a tap -> 34 a tap in a run of 3).
        acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=ACC_DTYPE)
        bias_acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=ACC_DTYPE) if BIAS_GRAD else acc
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
        if BIAS_GRAD == BIAS_ON_TENSOR_CORES:
            bias_acc = tl.zeros((BLOCK_M, BIAS_COLUMNS), dtype=ACC_DTYPE)
        else:
            bias_acc = tl.zeros((BLOCK_M,), dtype=ACC_DTYPE)
    accs = ()
    for _ in tl.static_range(TAP_RUN):  # one accumulator per tap of the run
        accs = accs + (tl.zeros_like(acc),)
    for row_start in range(first_row, last_whole, BLOCK_K):
        if LANES:
            grad_lanes, window = _lane_step(row_start, last_row, chunks, lanes, lane_geometry, False, MAGIC, BOUNDS,
                                            LANE_PAD, LANE_STRIDE, KERNEL_W, BLOCK_M, ACC_DTYPE, INDEX_DTYPE)
            accs, bias_acc = _accumulate_lanes(accs, bias_acc, grad_lanes, window, LANE_PAD, LANE_STRIDE, KERNEL_W, BIAS_GRAD)
        elif BATCH_STEPS:
            a, taps = _batch_step(
                row_start, positions, a_pointers, b_tile, batch, magic_n,
                in_depth, in_height, in_width, in_stride_n, in_stride_d, in_stride_h, in_stride_w,
                out_height, out_width, grad_stride_n, grad_stride_d, grad_stride_h, grad_stride_w,
                stride_d, stride_h, stride_w, off_d, off_h, off_w, magic_w, magic_h, dilation_w,
                MAGIC, BOUNDS, BLOCK_K, TAP_RUN, PADDING_MODE, PACKED_CHANNELS != 0 and not PACKED_DENSE, INDEX_DTYPE,
            )
        else:
            a, taps = _load_step(row_start, last_row, a_pointers, step_geometry, False, ROW_STEPS, LINE_STEPS,
                                 MAGIC, BOUNDS, BLOCK_K, TAP_RUN, KERNEL_W, GRAD_FLAT, PADDING_MODE, ELEMENTWISE,
                                 PACKED_CHANNELS != 0 and not PACKED_DENSE, INDEX_DTYPE)
        if not LANES:
            if GRAD_FLAT:
                a_pointers += BLOCK_K * grad_stride_row
            accs, bias_acc = _accumulate(accs, bias_acc, a, taps, TAP_RUN, ELEMENTWISE, BIAS_GRAD, ACC_DTYPE,
                                         INPUT_PRECISION, UPCAST_DOT)
    if not BATCH_STEPS:  # (BLOCK_K divides the batch: every split is whole steps)
        if LANES:
            if last_whole < last_row:
                grad_lanes, window = _lane_step(last_whole, last_row, chunks, lanes, lane_geometry, True, MAGIC,
                                                BOUNDS, LANE_PAD, LANE_STRIDE, KERNEL_W, BLOCK_M, ACC_DTYPE, INDEX_DTYPE)
                accs, bias_acc = _accumulate_lanes(accs, bias_acc, grad_lanes, window, LANE_PAD, LANE_STRIDE, KERNEL_W, BIAS_GRAD)
        elif last_whole < last_row:
            if GRAD_FLAT:  # (not the loop's pointers: the loop's last value stays unused, unpipelined)
                a_pointers = grad_output_ptr + grad_col[:, None] + (
                    last_whole.to(INDEX_DTYPE) + positions.to(INDEX_DTYPE))[None, :] * grad_stride_row
            a, taps = _load_step(last_whole, last_row, a_pointers, step_geometry, True, False, False,
                                 MAGIC, BOUNDS, BLOCK_K, TAP_RUN, KERNEL_W, GRAD_FLAT, PADDING_MODE, ELEMENTWISE,
                                 PACKED_CHANNELS != 0 and not PACKED_DENSE, INDEX_DTYPE)
            accs, bias_acc = _accumulate(accs, bias_acc, a, taps, TAP_RUN, ELEMENTWISE, BIAS_GRAD, ACC_DTYPE,
                                         INPUT_PRECISION, UPCAST_DOT)

    # Partial results in weight order [o, c, tap] of this split's workspace row.
    split_base = workspace_ptr + split.to(INDEX_DTYPE) * split_stride
    weight_row = (group * out_channels_per_group + out_channel).to(INDEX_DTYPE) * in_channels_per_group
    if ELEMENTWISE:  # a row is one (output channel, input channel) pair of the weight
        offsets = out_channel.to(INDEX_DTYPE) * TAPS + tap
        store_mask = out_mask
    else:
        offsets = (weight_row[:, None] + channel[None, :]) * TAPS + tap  # (tap: a scalar, or per column when packed)
        store_mask = out_mask[:, None] & channel_mask[None, :]
    for run in tl.static_range(TAP_RUN):  # the run's taps are consecutive along w: consecutive in [o, c, tap]
        if ELEMENTWISE:
            tl.store(split_base + offsets + run, tl.sum(accs[run], axis=1), mask=store_mask)
        else:
            tl.store(split_base + offsets + run, accs[run], mask=store_mask)
    if BIAS_GRAD:
        if pid_n == 0:
            if ELEMENTWISE:  # each output channel's first pair stores its row sum
                tl.store(split_base + bias_offset + out_channel // GROUP_IN, tl.sum(bias_acc, axis=1),
                         mask=out_mask & (out_channel % GROUP_IN == 0))
            else:
                bias_index = group * out_channels_per_group + out_channel
                if BIAS_GRAD == BIAS_ON_TENSOR_CORES:  # (the first column, exactly: the others add zeros)
                    row_sums = tl.sum(tl.where(tl.arange(0, BIAS_COLUMNS)[None, :] == 0, bias_acc, 0.0), axis=1)
                else:
                    row_sums = bias_acc
                tl.store(split_base + bias_offset + bias_index, row_sums, mask=out_mask)


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
