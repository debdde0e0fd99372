"""Launch contract of kernels/layout.py, and where a dense pass uses it.

Given channels-first operands (PyTorch's default NCHW), a dense main loop gathers its
reduction dimension one element at a time, without cp.async: 2-3x a GEMM's instructions
(static model, sm_90). When the arch's roofline says it pays (tconv.configs.copies_pay:
compute-bound passes, and others whose gathered loop would cost more than the copies'
bytes), the pass first copies those operands channels-last, into buffers named operand +
PACKED, and its kernels read them in the operands' place (Descriptor.reads): the main
loops are then the channels-last ones. The output keeps torch's memory format, written by
the epilogue. Elementwise passes (depthwise) copy channels-first activations in forwards and
input gradients where tconv.configs.elementwise_copy_pays (their gathered loops load one
element at a time, and stencil taps are not aligned for wider loads along positions).

A compute-bound dense pass whose channel counts leave rows less than 8 bytes aligned (150
fp16 channels: 300-byte rows, so 32-bit loads at best) copies the operands its loop loads
along them into zero-padded channels-last buffers instead (PaddedChannelsCopy, 160
channels; tconv.configs.padded_channels), in either layout: the loops load 128 bits, the
zeros add nothing, and the kernels store only the real channels.

Elementwise passes (depthwise, small groups) load a weight vector per tap across their
columns, (output channel, lane) pairs; in torch's weight layout those sit a whole kernel
apart (9 elements for a 3x3), so each is a one-element load. When the columns can be made
contiguous (Descriptor.weight_columns) and the pass is large enough to repay a launch
(tconv.configs.weight_copy_pays), the pass first copies the weight, which is small, so
that consecutive columns are consecutive elements (WeightColumnsCopy): the per-tap weight
loads are then vector-wide. The same copy stores a dense input gradient's weight K-major
for TF32 on sm_90 (tconv.configs.k_major_weight), whose tensor cores take float32 operands
K-major only: its loop then loads the weight 128 bits at a time, not 32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import triton

from ..configs import (
    KernelConfig,
    channel_padded,
    copies_pay,
    elementwise_copy_pays,
    k_major_weight,
    padded_channels,
    weight_copy_pays,
)
from ..kernels import layout
from ..spec import ConvSpec
from .base import PACKED, STAGE, Descriptor, MemoryPass, layout_3d, stage_taps, tiles
from .units import stride_unit
from .wgrad import flat_row_stride


def channels_first(tensor: torch.Tensor | None) -> bool:
    """A batched operand whose channels (dim 1, more than one) are not innermost."""
    return (isinstance(tensor, torch.Tensor) and tensor.dim() >= 3 and tensor.shape[1] > 1 and tensor.stride(1) != 1
            and tensor.numel() > 0)


def dense_channels_last(tensor: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """An uninitialised [N, C, *spatial] tensor like `tensor` (of `shape`, else its own),
    channels innermost and dense."""
    shape = tuple(tensor.shape) if shape is None else shape
    order = (0, *range(2, len(shape)), 1)
    stored = torch.empty([shape[d] for d in order], dtype=tensor.dtype, device=tensor.device)
    return stored.permute(0, len(shape) - 1, *range(1, len(shape) - 1))


class ChannelsLastCopy(MemoryPass):
    """Copies one operand of `kernel`'s pass into a dense channels-last buffer. The copy
    is memory-bound: a [BLOCK_P, BLOCK_C] tile per program, one image per row of tiles."""

    function = layout.channels_last_copy_kernel
    BLOCK_P, BLOCK_C = 64, 64

    def __init__(self, kernel: Descriptor, operand: str):
        self.kernel, self.operand, self.target = kernel, operand, operand + PACKED
        self.name = f"{kernel.name}_{operand}_copy"
        self.operand_names = (operand,)

    def __repr__(self) -> str:
        return f"ChannelsLastCopy({self.kernel.name}, {self.operand!r})"

    def operand_shapes(self, spec: ConvSpec) -> dict[str, tuple[int, ...]]:
        return {self.operand: self.kernel.operand_shapes(spec)[self.operand]}

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        return {self.target: dense_channels_last(tensors[self.operand])}

    def reads(self, tensors: Mapping) -> dict:
        return dict(tensors)  # the caller's operand, and the buffer it fills

    def blocks(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(BLOCK_P, BLOCK_C): small weights (a 3x3 kernel's 9 positions) keep small tiles."""
        positions = math.prod(shape[2:])
        return (min(self.BLOCK_P, max(16, triton.next_power_of_2(positions))),
                min(self.BLOCK_C, max(16, triton.next_power_of_2(shape[1]))))

    def images(self, spec: ConvSpec, source: torch.Tensor | None) -> tuple[int, int, int, int]:
        """(images, channels, image stride, channel stride) of the copy's view of `source`
        (without it, the sizes of a launch on `spec`): the operand's dims 0 and 1."""
        shape = self.kernel.operand_shapes(spec)[self.operand]
        strides = source.stride()[:2] if source is not None else (0, 0)
        return shape[0], shape[1], *strides

    def target_images(self, spec: ConvSpec, source: torch.Tensor | None) -> tuple[int, int]:
        """(images, channels) of the target: the source's (PaddedChannelsCopy pads them)."""
        return self.images(spec, source)[:2]

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        source, target = tensors[self.operand], tensors[self.target]
        (_, _, *size), (_, _, *strides) = layout_3d(source)
        images, channels, image_stride, channel_stride = self.images(spec, source)
        target_images, target_channels = self.target_images(spec, source)
        position_stride = flat_row_stride(size, strides)
        block_p, block_c = self.blocks((images, target_channels, *size))
        positions, element = math.prod(size), source.element_size()
        position_unit = stride_unit((positions, image_stride, channel_stride), element)
        channel_unit = stride_unit((channels, target_channels), element)
        args = (source, target, images, channels // channel_unit, target_channels // channel_unit, *size,
                positions // position_unit, image_stride // position_unit, channel_stride // position_unit, *strides,
                position_stride or 0)
        meta = dict(FLAT=position_stride is not None, BLOCK_P=block_p, BLOCK_C=block_c,
                    INDEX_DTYPE=numerics["INDEX_DTYPE"], POSITION_UNIT=position_unit, CHANNEL_UNIT=channel_unit,
                    PADDED=(target_images, target_channels) != (images, channels),
                    num_warps=4)
        return args, meta

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        return self._grid(spec, None)

    def launch_grid(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping) -> tuple[int, ...]:
        return self._grid(spec, tensors[self.operand])

    def _grid(self, spec: ConvSpec, source: torch.Tensor | None) -> tuple[int, int]:
        images, channels = self.target_images(spec, source)
        size = self.kernel.operand_shapes(spec)[self.operand][2:]
        block_p, block_c = self.blocks((images, channels, *size))
        return images * tiles(math.prod(size), block_p), tiles(channels, block_c)

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        images, channels = self.target_images(spec, None)
        return images * math.prod(self.kernel.operand_shapes(spec)[self.operand][2:]), channels, 1

    def moved_bytes(self, spec: ConvSpec, element_bytes: int) -> int:
        """What the copy reads and writes: the operand twice."""
        return 2 * math.prod(self.kernel.operand_shapes(spec)[self.operand]) * element_bytes


class PaddedChannelsCopy(ChannelsLastCopy):
    """Copies one operand of a pass that pads channels (tconv.configs.padded_channels) into
    a channels-last buffer shaped as the padded problem's operand; the images and channels
    the operand lacks are zeros (a 150-channel input: rows of 160, the last 10 zero)."""

    def __init__(self, kernel: Descriptor, operand: str):
        super().__init__(kernel, operand)
        self.name = f"{kernel.name}_{operand}_padded_copy"

    def __repr__(self) -> str:
        return f"PaddedChannelsCopy({self.kernel.name}, {self.operand!r})"

    def padded_shape(self, spec: ConvSpec, element_size: int) -> tuple[int, ...]:
        """The padded problem's operand shape for elements of `element_size` bytes."""
        return self.kernel.operand_shapes(channel_padded(self.kernel.name, spec, element_size))[self.operand]

    def target_images(self, spec: ConvSpec, source: torch.Tensor | None) -> tuple[int, int]:
        """(Without `source`, for 16-bit elements: those pad most.)"""
        return self.padded_shape(spec, 2 if source is None else source.element_size())[:2]

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        source = tensors[self.operand]
        return {self.target: dense_channels_last(source, self.padded_shape(spec, source.element_size()))}

    def moved_bytes(self, spec: ConvSpec, element_bytes: int) -> int:
        """What the copy reads and writes: the operand, and its padded target."""
        return (math.prod(self.kernel.operand_shapes(spec)[self.operand])
                + math.prod(self.padded_shape(spec, element_bytes))) * element_bytes


class WeightColumnsCopy(ChannelsLastCopy):
    """Copies an elementwise pass's weight [A, B, *kernel] so that its columns read
    consecutive elements, viewed with the weight's shape: the channels-last copy of the
    weight seen as images over the kernel's positions. kernel.weight_columns(spec) "flat":
    one image of A x B channels, stored [*kernel, A, B] (or, when A and B do not flatten
    into one stride, A images of B channels, [A, *kernel, B]: runs of B); "transposed": B
    images of A channels, [B, *kernel, A]."""

    def __init__(self, kernel: Descriptor):
        super().__init__(kernel, "weight")
        self.name = f"{kernel.name}_weight_columns_copy"

    def __repr__(self) -> str:
        return f"WeightColumnsCopy({self.kernel.name})"

    def images(self, spec: ConvSpec, weight: torch.Tensor | None) -> tuple[int, int, int, int]:
        """The weight's view (see ChannelsLastCopy.images); without a weight, the sizes for
        one whose channels flatten."""
        rows, lanes, *_ = self.kernel.operand_shapes(spec)["weight"]
        row_stride, lane_stride = weight.stride()[:2] if weight is not None else (lanes, 1)
        if self.kernel.weight_columns(spec) == "transposed":
            return lanes, rows, lane_stride, row_stride
        if lanes == 1 or row_stride == lanes * lane_stride:
            return 1, rows * lanes, 0, lane_stride if lanes > 1 else row_stride
        return rows, lanes, row_stride, lane_stride

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        weight = tensors["weight"]
        rows, lanes, *size = weight.shape
        taps, (images, _, _, _) = len(size), self.images(spec, weight)
        stored = lambda *shape: torch.empty(shape, dtype=weight.dtype, device=weight.device)  # noqa: E731
        if self.kernel.weight_columns(spec) == "transposed":  # [B, *kernel, A]
            view = stored(lanes, *size, rows).permute(taps + 1, 0, *range(1, taps + 1))
        elif images == 1:  # [*kernel, A, B]
            view = stored(*size, rows, lanes).permute(taps, taps + 1, *range(taps))
        else:  # [A, *kernel, B]
            view = stored(rows, *size, lanes).permute(0, taps + 1, *range(1, taps + 1))
        return {self.target: view}


def copies_weight(kernel: Descriptor, spec: ConvSpec, weight: torch.Tensor | None) -> bool:
    """Whether an elementwise pass copies `weight` [A, B, *kernel] (WeightColumnsCopy): when
    its columns are scattered (columns_scattered) and the pass is large enough
    (tconv.configs.weight_copy_pays)."""
    return columns_scattered(kernel, spec, weight) and weight_copy_pays(spec)


def columns_scattered(kernel: Descriptor, spec: ConvSpec, weight: torch.Tensor | None) -> bool:
    """Whether an elementwise pass's columns read `weight` [A, B, *kernel] one element at a
    time: kernel.weight_columns says how they could be consecutive, and the weight is not
    stored that way already."""
    columns = kernel.weight_columns(spec)
    if not isinstance(weight, torch.Tensor) or columns is None or weight.numel() == 0:
        return False
    rows, lanes = weight.shape[:2]
    row_stride, lane_stride = weight.stride()[:2]
    if columns == "transposed":
        return rows > 1 and row_stride != 1
    taps_outside = all(stride % (rows * lanes) == 0 for stride, n in zip(weight.stride()[2:], weight.shape[2:]) if n > 1)
    return not ((lanes == 1 or lane_stride == 1) and (rows == 1 or row_stride == lanes) and taps_outside)


#: The most elements of a staged weight tile (kernels/_index.py staged_weight) a thread loads.
STAGE_ELEMENTS_PER_THREAD = 32


def weight_stage(kernel: Descriptor, spec: ConvSpec, operands: Mapping, config: KernelConfig,
                 copies: tuple[ChannelsLastCopy, ...]) -> dict:
    """{STAGE: the stage} of a pass that stages its weight (stage_elements), else {}."""
    elements = stage_elements(kernel, spec, operands, config, copies)
    if not elements:
        return {}
    weight = operands["weight"]
    return {STAGE: torch.empty(elements, dtype=weight.dtype, device=weight.device)}


def stage_elements(kernel: Descriptor, spec: ConvSpec, operands: Mapping, config: KernelConfig,
                   copies: tuple[ChannelsLastCopy, ...]) -> int:
    """The elements of the stage an elementwise pass below the weight copy's gate allocates
    when its columns would read a scattered weight (columns_scattered) along channels-last
    activations, else 0. Each program first copies its columns' weights, every tap its loop
    takes, into its own block of the stage (kernels/_index.py staged_weight), so that its
    loop's per-tap weight loads are vector-wide, as after WeightColumnsCopy, without a launch
    more: static model, sm_90, fp16, MobileNetV2's 3x3 at 14x14, 94 instructions a K step ->
    52 a tap in the forward (its tap loop then unrolled whole; one 128-bit weight load for
    eight 16-bit ones), 98 -> 81 in the input gradient. A loop gathering channels-first
    activations runs its tile along positions, one weight element a thread and tap however
    stored, so it reads the weight in place. The stage holds the grid's programs x taps x
    BLOCK_N elements: below the gate about useful multiply-adds / BLOCK_M (2 MB in 16 bits
    at BLOCK_M 64), times stride ** dims in an input gradient, whose phases' programs each
    hold every tap; it is written once and read once (tconv bench counts both in
    layout_bytes)."""
    weight, input = operands.get("weight"), operands.get("input")
    if not spec.elementwise_lanes or weight_copy_of(kernel) in copies or not columns_scattered(kernel, spec, weight):
        return 0
    if channels_first(input) and copy_of(kernel, "input") not in copies:
        return 0
    if stage_taps(spec) * config.block_n > STAGE_ELEMENTS_PER_THREAD * 32 * config.num_warps:
        return 0
    return math.prod(kernel.grid(spec, config)) * math.prod(spec.kernel_size) * config.block_n


_copies: dict[tuple[str, str], ChannelsLastCopy] = {}


def copy_of(kernel: Descriptor, operand: str) -> ChannelsLastCopy:
    """The one copy descriptor of `kernel`'s `operand`."""
    return _copies.setdefault((kernel.name, operand), ChannelsLastCopy(kernel, operand))


def padded_copy_of(kernel: Descriptor, operand: str) -> PaddedChannelsCopy:
    """The one zero-padded channels-last copy descriptor of `kernel`'s `operand`."""
    return _copies.setdefault((kernel.name, operand + " padded"), PaddedChannelsCopy(kernel, operand))


def weight_copy_of(kernel: Descriptor) -> WeightColumnsCopy:
    """The one weight-columns copy descriptor of `kernel`."""
    return _copies.setdefault((kernel.name, "weight columns"), WeightColumnsCopy(kernel))


def channels_last_copies(kernel: Descriptor, spec: ConvSpec, operands: Mapping,
                         family: str) -> tuple[ChannelsLastCopy, ...]:
    """The copies a pass of `kernel` on `family` makes before it launches: one per channels-first
    operand of `kernel.channels_last_operands` when copying those pays on the family's
    roofline (tconv.configs.copies_pay), else none; an elementwise pass copies channels-first
    activations when tconv.configs.elementwise_copy_pays, and its weight when copies_weight.
    A pass that pads channels (tconv.configs.padded_channels) copies every operand the padding
    reaches zero-padded, whatever its layout, and its other channels-first operands as above.
    A dense pass whose weight goes K-major (tconv.configs.k_major_weight) copies it so
    (WeightColumnsCopy), or reads it in place where it is stored so already."""
    dtype = next(t.dtype for t in operands.values() if isinstance(t, torch.Tensor))
    if spec.elementwise_lanes:  # elementwise loops gather per element, without tl.dot
        # with channels-first activations the loop's tile runs along positions, and takes one
        # weight element per thread and tap whatever the weight's layout (static model, sm_90)
        if channels_first(operands.get("input")):
            if not elementwise_copy_pays(kernel.name, spec, dtype, family, operands.get("input")):
                return ()
            activations = (copy_of(kernel, "input"),)
        else:
            activations = ()
        return activations + ((weight_copy_of(kernel),) if copies_weight(kernel, spec, operands.get("weight")) else ())
    padded = padded_channels(kernel.name, spec, dtype, family)
    if padded is not None:  # every operand the padding reaches; the others as below (the pass is compute-bound)
        shapes, padded_shapes = kernel.operand_shapes(spec), kernel.operand_shapes(padded)
        return tuple(padded_copy_of(kernel, operand) if padded_shapes[operand] != shapes[operand] else copy_of(kernel, operand)
                     for operand in kernel.channels_last_operands
                     if padded_shapes[operand] != shapes[operand] or channels_first(operands.get(operand)))
    copied = tuple(operand for operand in kernel.channels_last_operands if channels_first(operands.get(operand)))
    if copied and not copies_pay(kernel.name, spec, dtype, family, copied):
        copied = ()
    weight = operands.get("weight")
    if isinstance(weight, torch.Tensor):
        in_place = weight.stride(0) == 1  # stored K-major already
        if k_major_weight(kernel.name, spec, dtype, family, "weight" in copied or in_place):
            others = tuple(copy_of(kernel, operand) for operand in copied if operand != "weight")
            return others if in_place else others + (weight_copy_of(kernel),)
    return tuple(copy_of(kernel, operand) for operand in copied)


def pass_tensors(kernel: Descriptor, spec: ConvSpec, operands: Mapping, config: KernelConfig,
                 family: str) -> tuple[tuple[Descriptor, ...], dict]:
    """(the pass's launches in order, every tensor they use): the channels-last copies, then
    `kernel` and what follows it; the operands, what `kernel` allocates and the copies' buffers.
    What the launcher runs and what the ahead-of-time compile specialises."""
    copies = channels_last_copies(kernel, spec, operands, family)
    tensors = {**operands, **kernel.allocate(spec, operands, config)}
    for copy in copies:
        tensors.update(copy.allocate(spec, operands, config))
    tensors.update(weight_stage(kernel, spec, operands, config, copies))
    launches, follower = list(copies), kernel
    while follower is not None:
        launches.append(follower)
        follower = follower.then
    return tuple(launches), tensors
