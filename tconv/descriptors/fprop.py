"""Launch contract of kernels/fprop.py: forward convolution as an implicit GEMM."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..configs import DENSE_SPACE, ELEMENTWISE_SPACE, KernelConfig
from ..kernels import fprop
from ..spec import PADDING_MODES, ConvSpec
from .base import Descriptor, group_meta, in_3d, launch_options, layout_3d, output_memory_format, tile_meta, tiles


class Fprop(Descriptor):
    """M = batch x output positions, N = out_channels / groups, K = in_channels / groups x taps;
    groups on grid axis 1 (depthwise: one launch-wide group over every output channel)."""

    name = "fprop"
    result = "output"
    function = fprop.conv_fprop_kernel
    spaces = {False: DENSE_SPACE, True: ELEMENTWISE_SPACE}
    operand_names = ("input", "weight", "bias")
    channels_last_operands = ("input", "weight")

    def operand_shapes(self, spec: ConvSpec) -> dict:
        return {
            "input": (spec.batch, spec.in_channels, *spec.in_size),
            "weight": (spec.out_channels, spec.in_channels_per_group, *spec.kernel_size),
            "bias": (spec.out_channels,),
        }

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        input, weight = tensors["input"], tensors["weight"]
        output = torch.empty((spec.batch, spec.out_channels, *spec.out_size), dtype=input.dtype, device=input.device,
                             memory_format=output_memory_format(input, weight))
        return {"output": output}

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        input, weight, bias, output = (tensors[name] for name in ("input", "weight", "bias", "output"))
        (batch, _, *in_size), in_strides = layout_3d(input)
        _, weight_strides = layout_3d(weight)
        (_, _, *out_size), out_strides = layout_3d(output)
        kernel_d, kernel_h, kernel_w = in_3d(spec.kernel_size, 1)
        args = (
            input, weight, bias, output,
            batch, *in_size, *in_strides,
            *weight_strides,
            *out_size, *out_strides,
            *in_3d(spec.stride, 1), *in_3d(spec.pad_before, 0), *in_3d(spec.dilation, 1),
            spec.in_channels_per_group, self.extents(spec)[1],
        )
        meta = dict(
            KERNEL_D=kernel_d, KERNEL_H=kernel_h, KERNEL_W=kernel_w, PADDING_MODE=PADDING_MODES[spec.padding_mode],
            HAS_BIAS=bias is not None, ELEMENTWISE_LANES=spec.elementwise_lanes, **group_meta(spec),
            GROUP_M=config.group_m,
            TAP_BITS=spec.padding_mode == "zeros" and math.prod(spec.kernel_size) < (64 if spec.packed_channels else 32),
            EVEN_K=not spec.elementwise_lanes and spec.in_channels_per_group % config.block_k == 0,
            PACKED_CHANNELS=spec.packed_channels, **tile_meta(config), **numerics, **launch_options(config),
        )
        return args, meta

    def weight_columns(self, spec: ConvSpec) -> str | None:
        """Column (output channel o, lane l) reads weight[o, l]: consecutive in [*kernel, o, l]
        storage when each output channel's lanes are exactly its group's input channels
        (depthwise included)."""
        lanes = spec.elementwise_lanes
        return "flat" if lanes and lanes == spec.in_channels_per_group else None

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        """(rows, columns, reduction per K loop): a tap's channels, or every (tap, channel)
        pair when thin groups pack them (spec.packed_channels). Elementwise layers' columns
        are every output channel's lanes (spec.elementwise_lanes)."""
        columns = spec.out_channels * spec.elementwise_lanes if spec.elementwise_lanes else spec.out_channels_per_group
        reduction = spec.in_channels_per_group * (math.prod(spec.kernel_size) if spec.packed_channels else 1)
        return spec.batch * math.prod(spec.out_size), columns, reduction

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        rows, columns, _ = self.extents(spec)
        return tiles(rows, config.block_m) * tiles(columns, config.block_n), 1 if spec.elementwise_lanes else spec.groups

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        programs = math.prod(self.grid(spec, config))
        taps = math.prod(spec.kernel_size)
        if spec.elementwise_lanes:  # one multiply-add per tile element and tap, on CUDA cores
            return programs * taps * config.block_m * config.block_n
        steps = tiles(self.extents(spec)[2], config.block_k) * (1 if spec.packed_channels else taps)
        return programs * steps * config.block_m * config.block_n * config.block_k


FPROP = Fprop()
