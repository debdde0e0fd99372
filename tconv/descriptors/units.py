"""Row strides and channel counts in units of their alignment.

Triton's launch specialisation marks an integer argument as divisible by 16 or not at all.
A channels-last tensor of 24 or 40 channels has rows that start 16-byte aligned in 16-bit
storage, yet its row strides (24, 40 x width, ...) read as unaligned, so the compiler loads
its channels one element at a time. The conv kernels therefore take such values divided by
their unit and multiply them back by a constexpr, one per tensor (IN_UNIT, WEIGHT_UNIT,
OUT_UNIT, GRAD_UNIT), which proves the alignment.
"""

from __future__ import annotations

import torch

from ..configs import KernelConfig
from ..spec import ConvSpec
from .base import Descriptor, channels_innermost, elementwise_run, layout_3d


def stride_unit(values: tuple[int, ...], element_size: int) -> int:
    """The largest power of two, up to 16 bytes of elements, dividing every one of `values`
    (row strides and channel counts): 8 for 40 fp16 channels, whose row stride then reaches
    the kernel as 5 and is multiplied back by a constant 8. 1 when every value is a multiple
    of 16 (the specialisation sees those) or one needs 64 bits (the kernel multiplies in the
    argument's own width)."""
    if all(value % 16 == 0 for value in values) or any(value >= 2**31 for value in values):
        return 1
    unit = max(1, 16 // element_size)
    while unit > 1 and any(value % unit for value in values):
        unit //= 2
    return unit


#: The dims of an elementwise launch's weight [A, B, *kernel] its columns move along (the
#: kernels' pair offsets): like an activation's channel stride, they stay whole (where a
#: column is one lane: descriptors/fprop.py), so that a weight copy's 1 does not spoil its
#: tap strides' unit (MobileNetV3's 120 channels: 8).
ELEMENTWISE_WEIGHT_COLUMNS = (0, 1)


def row_strides(tensor: torch.Tensor, columns: tuple[int, ...] = (1,)) -> tuple[int, ...]:
    """The [N, C, D, H, W] strides of `tensor` (layout_3d) that decide a kernel's stride unit:
    every one but the channel stride (the `columns` dims' strides), less those of one-element
    dims (their index is always 0, so such a stride never moves an address that is read, and
    any value will do)."""
    sizes, strides = layout_3d(tensor)
    return tuple(stride for dim, (size, stride) in enumerate(zip(sizes, strides)) if dim not in columns and size > 1)


def divided_strides(strides: tuple[int, ...], unit: int, columns: tuple[int, ...] = (1,)) -> tuple[int, ...]:
    """[N, C, D, H, W] strides with every one but the channel stride (the `columns` dims')
    divided by `unit` (rounded down: only a one-element dim's stride may not divide, see
    row_strides)."""
    return tuple(stride if dim in columns else stride // unit for dim, stride in enumerate(strides))


def tensor_unit(tensor: torch.Tensor, counts: tuple[int, ...] = (), rows: tuple[int, ...] | None = None) -> int:
    """The unit of one tensor's row strides (row_strides, or `rows`) and the channel counts
    that mask its loads or stores (`counts`), in its element size. One unit per tensor, so
    that a weight in torch's layout (a 3x3's 9-element rows) leaves a channels-last input's
    unit whole."""
    return stride_unit((*(row_strides(tensor) if rows is None else rows), *counts), tensor.element_size())


def lane_unit(tensor: torch.Tensor, counts: tuple[int, ...] = ()) -> int:
    """tensor_unit for runs in lanes (kernels/_index.py output_run_loop, store_run): w is
    innermost and its stride comes whole, the channel stride in units with the other rows, so
    a run's span (its input) or outputs (its output) start provably aligned."""
    return stride_unit((*row_strides(tensor, (4,)), *counts), tensor.element_size())


def output_units(output: torch.Tensor, counts: tuple[int, ...] = (), width: bool = True) -> tuple[int, int]:
    """A forward's or input gradient's (OUT_UNIT, OUT_W_UNIT). An output stored w innermost
    (NCHW) takes its (n, c, d, h) strides in units (lane_unit) and, with `width` (its rows are
    single positions along a w of stride 1, split by the epilogue), its width in the same
    unit, then OUT_W_UNIT: the epilogue's rows are then visibly runs of that many consecutive
    positions, stored as vectors (ResNet-50's 56-wide outputs: 128-bit stores where each
    16-bit element was stored apart). OUT_W_UNIT is 1 without `width`; an output whose stores
    would be narrower than 64 bits, or not w innermost: tensor_unit's and 0."""
    sizes, strides = layout_3d(output)
    if strides[4] != 1 or sizes[4] == 1 or channels_innermost(output):
        return tensor_unit(output, counts), 0
    if not width:
        return lane_unit(output, counts), 1
    # (the width's unit: up to 16 elements, where every value is a multiple of 16 and the
    # strides' unit is 1 because the launch's specialisation sees them; at least 8 bytes:
    # DeepBench's 5x10 forward, 166 outputs wide, spilled 8 bytes on sm_80 storing pairs)
    values = (*row_strides(output, (4,)), *counts, sizes[4])
    width_unit = next(unit for unit in (16, 8, 4, 2, 1) if all(value % unit == 0 for value in values))
    if width_unit * output.element_size() < 8:
        return tensor_unit(output, counts), 0
    return stride_unit(values, output.element_size()), width_unit


def input_run(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, input: torch.Tensor,
              columns: int) -> tuple[int, bool, int]:
    """A forward's or input gradient's (W_RUN, whether in lanes, IN_UNIT) on `input`
    (elementwise_run). In lanes (NCHW) its (n, c, d, h) strides come in units and w's whole
    (lane_unit), so the spans' alignment is proven; otherwise its row strides and the channels
    its loads mask do: a group's input channels, or an elementwise layer's `columns`."""
    run, lanes = elementwise_run(kernel, spec, config, input)
    if lanes:
        return run, lanes, lane_unit(input, (columns,))
    return run, lanes, tensor_unit(input, (columns if spec.elementwise_lanes else spec.in_channels_per_group,))


def thin_runs_aligned(spec) -> bool:
    """Whether a thin layer's channels-last (kw, channel) runs, kernel width x channels long at
    steps of stride x channels, each start 16 bytes apart in 16-bit storage (multiples of 8
    elements): the forward's folded width and the weight gradient's dense columns load them
    128 bits wide then, and one element at a time otherwise (ViT-L/14's 42-element runs)."""
    channels = spec.in_channels_per_group
    return (spec.kernel_size[-1] * channels) % 8 == 0 and (spec.stride[-1] * channels) % 8 == 0
