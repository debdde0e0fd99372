"""Launch contract of kernels/layout.py, and where a dense pass uses it.

Given channels-first operands (PyTorch's default NCHW), a dense main loop gathers its
reduction dimension one element at a time, without cp.async: 2-3x a GEMM's instructions
(static model, sm_90). When the arch's roofline says it pays (tconv.configs.copies_pay:
compute-bound passes, and others whose gathered loop would cost more than the copies'
bytes), the pass first copies those operands channels-last, into buffers named operand +
PACKED, and its kernels read them in the operands' place (Descriptor.reads): the main
loops are then the channels-last ones. The output keeps torch's memory format, written by
the epilogue. Depthwise passes (no channel reduction to gather) read operands in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import triton

from ..configs import KernelConfig, copies_pay
from ..kernels import layout
from ..spec import ConvSpec
from .base import PACKED, Descriptor, layout_3d, tiles
from .wgrad import flat_row_stride


def channels_first(tensor: torch.Tensor | None) -> bool:
    """A batched operand whose channels (dim 1, more than one) are not innermost."""
    return (isinstance(tensor, torch.Tensor) and tensor.dim() >= 3 and tensor.shape[1] > 1 and tensor.stride(1) != 1
            and tensor.numel() > 0)


def dense_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """An uninitialised [N, C, *spatial] tensor like `tensor`, channels innermost and dense."""
    order = (0, *range(2, tensor.dim()), 1)
    stored = torch.empty([tensor.shape[d] for d in order], dtype=tensor.dtype, device=tensor.device)
    return stored.permute(0, tensor.dim() - 1, *range(1, tensor.dim() - 1))


class ChannelsLastCopy(Descriptor):
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

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        source, target = tensors[self.operand], tensors[self.target]
        (_, channels, *size), strides = layout_3d(source)
        position_stride = flat_row_stride(size, strides[2:])
        block_p, block_c = self.blocks(tuple(source.shape))
        args = (source, target, channels, *size, math.prod(size), *strides, position_stride or 0)
        meta = dict(FLAT=position_stride is not None, BLOCK_P=block_p, BLOCK_C=block_c,
                    INDEX_DTYPE=numerics["INDEX_DTYPE"], num_warps=4)
        return args, meta

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        shape = self.kernel.operand_shapes(spec)[self.operand]
        block_p, block_c = self.blocks(shape)
        return shape[0] * tiles(math.prod(shape[2:]), block_p), tiles(shape[1], block_c)

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        shape = self.kernel.operand_shapes(spec)[self.operand]
        return shape[0] * math.prod(shape[2:]), shape[1], 1

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        return 0

    def uses_tensor_cores(self, spec: ConvSpec) -> bool:
        return False

    def moved_bytes(self, spec: ConvSpec, element_bytes: int) -> int:
        """What the copy reads and writes: the operand twice."""
        return 2 * math.prod(self.kernel.operand_shapes(spec)[self.operand]) * element_bytes


_copies: dict[tuple[str, str], ChannelsLastCopy] = {}


def copy_of(kernel: Descriptor, operand: str) -> ChannelsLastCopy:
    """The one copy descriptor of `kernel`'s `operand`."""
    return _copies.setdefault((kernel.name, operand), ChannelsLastCopy(kernel, operand))


def channels_last_copies(kernel: Descriptor, spec: ConvSpec, operands: Mapping,
                         family: str) -> tuple[ChannelsLastCopy, ...]:
    """The copies a pass of `kernel` on `family` makes before it launches: one per channels-first
    operand of `kernel.channels_last_operands` when copying those pays on the family's
    roofline (tconv.configs.copies_pay; never for elementwise problems), else none."""
    if spec.elementwise_lanes:  # elementwise loops gather per element, without tl.dot
        return ()
    copied = tuple(operand for operand in kernel.channels_last_operands if channels_first(operands.get(operand)))
    dtype = next(t.dtype for t in operands.values() if isinstance(t, torch.Tensor))
    if not copied or not copies_pay(kernel.name, spec, dtype, family, copied):
        return ()
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
    launches, follower = list(copies), kernel
    while follower is not None:
        launches.append(follower)
        follower = follower.then
    return tuple(launches), tensors
