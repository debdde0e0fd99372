"""A layout pass: copy an [N, C, D, H, W] tensor of any strides into a dense channels-last one.

Not a GEMM. Convolution kernels gather their reduction dimension along channels; on a
channels-first tensor (PyTorch's default NCHW) those loads are one element wide and
cannot be asynchronous, so the main loop costs 4-9x a GEMM's. One pass that reads the
tensor along positions and writes it along channels gives the main loop dense
128-bit loads instead; its bytes are what the layout costs.

Copy view, per program: a [BLOCK_P positions, BLOCK_C channels] tile of one image n,
    target[n, p, c] = source[n, c, p]   (p = flat (d, h, w); target contiguous)
A padded target (tconv.configs.padded_channels) has more images and channels than the
source (target_channels per row): what the source lacks is written as zeros.
Loads run along positions (coalesced, and vector-wide when the flat position stride is 1),
stores along channels; Triton moves the tile between the two orders through shared memory.
"""

import triton
import triton.language as tl

from ._index import split_rows


@triton.jit
def channels_last_copy_kernel(
    source_ptr, target_ptr,
    images, channels, target_channels, depth, height, width, positions,
    stride_n, stride_c, stride_d, stride_h, stride_w, position_stride,
    FLAT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, INDEX_DTYPE: tl.constexpr,
    POSITION_UNIT: tl.constexpr, CHANNEL_UNIT: tl.constexpr, PADDED: tl.constexpr,
):
    """FLAT: (d, h, w) flatten into one position of stride `position_stride`, so a tile's
    positions are one strided run: unit stride in NCHW, where loads are vector-wide when
    `positions` (= depth x height x width, passed so that the launch sees its divisibility)
    keeps the tail mask constant over 8 elements. `positions`, `stride_n` and `stride_c`
    arrive divided by POSITION_UNIT, `channels` and `target_channels` by CHANNEL_UNIT (powers of two dividing them,
    tconv.descriptors.units.stride_unit): multiplied back by constants, 14 x 14 positions
    load 64 bits and 24 channels store 128."""
    positions, stride_n, stride_c = positions * POSITION_UNIT, stride_n * POSITION_UNIT, stride_c * POSITION_UNIT
    channels = channels * CHANNEL_UNIT
    if PADDED:  # the target has more images or channels, zeros
        target_channels = target_channels * CHANNEL_UNIT
    else:
        target_channels = channels
    position_tiles = tl.cdiv(positions, BLOCK_P)
    n = tl.program_id(0) // position_tiles  # one scalar division per program
    p = (tl.program_id(0) % position_tiles) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if FLAT:
        position_offset = p.to(INDEX_DTYPE) * position_stride
    else:
        _, d, h, w = split_rows(p, depth, height, width)
        position_offset = (d.to(INDEX_DTYPE) * stride_d + h.to(INDEX_DTYPE) * stride_h
                           + w.to(INDEX_DTYPE) * stride_w)
    mask = (p < positions)[:, None] & (c < target_channels)[None, :]
    source = source_ptr + n.to(INDEX_DTYPE) * stride_n + position_offset[:, None] + (c.to(INDEX_DTYPE) * stride_c)[None, :]
    if PADDED:  # (the image test as a vector along positions, constant along them)
        tile = tl.load(source, mask=mask & ((p * 0 + n) < images)[:, None] & (c < channels)[None, :], other=0.0)
    else:
        tile = tl.load(source, mask=mask)
    target_row = n.to(INDEX_DTYPE) * positions + p.to(INDEX_DTYPE)
    tl.store(target_ptr + target_row[:, None] * target_channels + c.to(INDEX_DTYPE)[None, :], tile, mask=mask)
