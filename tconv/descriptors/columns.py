"""Launch contracts of a transposed convolution whose groups have too few output channels
for tl.dot (ConvSpec.tap_columns): a column GEMM, then kernels/col2im.py.

The phase-decomposed kernel (descriptors/dgrad.py) makes N the output channels per group,
padded to tl.dot's 16: an RGB stem's input gradient executes 5.4x its useful work, and
its 16-wide tiles load a whole A tile per 16 columns (timed on an H100, ResNet-50's stem
input gradient: 1.39 ms against cuDNN's 0.95, about 6% of tensor peak on what it
executes). Here N is every (output channel, tap) pair instead: the GEMM
columns = input [batch x positions, C_in] @ weight [C_in, C_out x taps] is fprop's main
loop on a 1x1 problem (Columns.loop_problem), so it takes fprop's tiles, heuristic and
layout decision, and reads the weight in place through strides. Its fp32 workspace
(fp64 for fp64) is [batch, *input size, C_out x taps], channels innermost; col2im then
sums each output element's taps from it and adds the bias. The workspace's write and
read are extra bytes (workspace_bytes), counted by the benchmarks' roofline. It holds
C_out x taps fp32 values per input position (49x an fp16 RGB image for the stem's 7x7),
so a batch whose workspace would pass COLUMNS_WORKSPACE_LIMIT runs as several launch
pairs over slices of the batch (images_per_launch), each writing its slice of the output.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import torch
import triton

from .. import configs
from ..configs import KernelConfig
from ..kernels import col2im
from ..spec import ConvSpec, forward_spec
from .base import Descriptor, MemoryPass, conv_output, in_3d, layout_3d, tiles
from .dgrad import DGRAD
from .fprop import FPROP, Fprop


def column_strides(weight: torch.Tensor) -> tuple[int, tuple[int, ...]] | None:
    """(unit, per-dim multipliers) when the weight [C_in, C_out / groups, *kernel] keeps its
    dims after the first as one dense block in some order (contiguous and channels_last
    weights do): the column of (c, *taps) is then sum(index x multiplier), at that many
    units from weight[ci, 0, ...]. None otherwise (such weights take the phase kernel)."""
    dims = sorted((weight.stride(d), weight.shape[d]) for d in range(1, weight.dim()) if weight.shape[d] > 1)
    unit = dims[0][0] if dims else 1
    expected = unit
    for stride, size in dims:
        if stride != expected or stride == 0:
            return None
        expected *= size
    return unit, tuple(weight.stride(d) // unit if weight.shape[d] > 1 else 0 for d in range(1, weight.dim()))


def uses_columns(spec: ConvSpec, weight: torch.Tensor | None) -> bool:
    """Whether a transposed-convolution pass on `weight` runs Columns + Col2im."""
    return spec.tap_columns and (not isinstance(weight, torch.Tensor) or column_strides(weight) is not None)


@functools.lru_cache(maxsize=1024)
def gemm_spec(spec: ConvSpec) -> ConvSpec:
    """The column GEMM as a 1x1 forward convolution: input [N, C_in, *in], weight
    [C_out x taps, C_in, 1, ...], output the columns [N, C_out x taps, *in]."""
    ones, zeros = (1,) * spec.dims, (0,) * spec.dims
    return forward_spec((spec.batch, spec.in_channels, *spec.in_size),
                        (spec.out_channels * math.prod(spec.kernel_size), spec.in_channels, *ones),
                        ones, zeros, zeros, ones, 1)


class Columns(Fprop):
    """M = batch x input positions, N = out_channels x taps, K = in_channels: fprop's
    loop on gemm_spec, over a transposed convolution's operands."""

    name = "columns"
    channels_last_operands = ("input",)  # the weight is read in place (column_strides)

    def loop_problem(self, spec: ConvSpec) -> tuple[Descriptor, ConvSpec]:
        return FPROP, gemm_spec(spec)

    def operand_shapes(self, spec: ConvSpec) -> dict:
        return DGRAD.operand_shapes(spec)

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        input = tensors["input"]
        accumulator = torch.float64 if input.dtype == torch.float64 else torch.float32
        stored = torch.empty((spec.batch, *spec.in_size, gemm_spec(spec).out_channels), dtype=accumulator,
                             device=input.device)
        output = tensors.get("output")  # a slice of the batch's output, when run in slices
        return {"columns": stored.movedim(-1, 1), "output": self.allocate_result(spec, tensors) if output is None else output}

    def allocate_result(self, spec: ConvSpec, tensors: Mapping) -> torch.Tensor:
        return conv_output(spec, tensors["input"], tensors["weight"])

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        gemm = {"input": tensors["input"], "weight": tensors["weight"], "bias": None, "output": tensors["columns"]}
        return super().arguments(gemm_spec(spec), config, gemm, numerics)

    def weight_strides(self, weight: torch.Tensor) -> tuple[int, ...]:
        """[C_out x taps, C_in, 1, 1, 1]: a column is `unit` elements on, an input channel a weight row."""
        unit, _ = column_strides(weight)
        return unit, weight.stride(0), 0, 0, 0

    def weight_row_strides(self, weight: torch.Tensor, columns: tuple[int, ...] = (1,)) -> tuple[int, ...]:
        return self.weight_strides(weight)[:1]

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        return FPROP.extents(gemm_spec(spec))

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        return FPROP.grid(gemm_spec(spec), config)

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        return FPROP.executed_macs(gemm_spec(spec), config)

    def workspace_bytes(self, spec: ConvSpec, dtype: torch.dtype) -> int:
        """The columns workspace written once and read once."""
        return 2 * spec.batch * self.image_workspace(spec, dtype)

    def image_workspace(self, spec: ConvSpec, dtype: torch.dtype) -> int:
        """Bytes of one image's columns."""
        return math.prod(spec.in_size) * gemm_spec(spec).out_channels * (8 if dtype == torch.float64 else 4)

    def images_per_launch(self, spec: ConvSpec, dtype: torch.dtype) -> int:
        """Images per (columns, col2im) pair: the whole batch, or as many as keep the workspace
        within COLUMNS_WORKSPACE_LIMIT, a multiple of 8 from 8 on so that every slice of a
        batch starts as aligned as the batch does (8 images of any stride span a multiple of
        16 bytes), at least one."""
        fits = configs.COLUMNS_WORKSPACE_LIMIT // max(self.image_workspace(spec, dtype), 1)
        if fits >= spec.batch:
            return spec.batch
        return max(1, fits // 8 * 8 if fits >= 8 else fits)


class Col2im(MemoryPass):
    """Per stride phase, BLOCK_P output positions x BLOCK_C channels; phases fastest on axis 0."""

    name = "col2im"
    function = col2im.col2im_kernel
    operand_names = ("columns", "weight", "bias", "output")
    ELEMENTS = 1024  # per program

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        return {}

    def blocks(self, spec: ConvSpec) -> tuple[int, int]:
        block_c = triton.next_power_of_2(spec.out_channels)
        return self.ELEMENTS // block_c, block_c

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        columns, weight, bias, output = (tensors[name] for name in ("columns", "weight", "bias", "output"))
        (_, _, *in_size), column_layout = layout_3d(columns)
        (_, _, *out_size), out_strides = layout_3d(output)
        _, multipliers = column_strides(weight)
        block_p, block_c = self.blocks(spec)
        args = (
            columns, bias, output,
            spec.batch, *in_size, *out_size, spec.out_channels,
            *column_layout, multipliers[0], *in_3d(multipliers[1:], 0),
            *out_strides,
            *in_3d(spec.stride, 1), *in_3d(spec.pad_before, 0), *in_3d(spec.dilation, 1),
        )
        meta = dict(**dict(zip(("KERNEL_D", "KERNEL_H", "KERNEL_W"), in_3d(spec.kernel_size, 1))),
                    HAS_BIAS=bias is not None, BLOCK_P=block_p, BLOCK_C=block_c, ACC_DTYPE=numerics["ACC_DTYPE"],
                    INDEX_DTYPE=numerics["INDEX_DTYPE"], num_warps=4)
        return args, meta

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        """Axis 0: (tile, phase) pairs over the largest phase's positions; axis 1: channel tiles."""
        block_p, block_c = self.blocks(spec)
        phases = math.prod(spec.stride)
        positions = spec.batch * math.prod(-(-o // s) for o, s in zip(spec.out_size, spec.stride))
        return phases * tiles(positions, block_p), tiles(spec.out_channels, block_c)

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        return spec.batch * math.prod(spec.out_size), spec.out_channels, 1


COL2IM = Col2im()
COLUMNS = Columns()
COLUMNS.then = COL2IM
