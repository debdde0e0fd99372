"""Launch contract of kernels/dgrad.py: transposed convolution (and conv's input gradient)
by stride phases, every phase a dense implicit GEMM in one launch."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import torch

from ..configs import DENSE_SPACE, ELEMENTWISE_SPACE, KernelConfig
from ..kernels import dgrad
from ..spec import ConvSpec, phase_steps, spec_phases
from .base import (
    STAGE,
    Descriptor,
    conv_output,
    group_meta,
    in_3d,
    k_chunks,
    launch_options,
    layout_3d,
    output_run,
    span_run,
    stage_taps,
    tap_bits_limit,
    tile_meta,
    tiles,
)
from .units import ELEMENTWISE_WEIGHT_COLUMNS, divided_strides, input_run, output_units, row_strides, tensor_unit


@functools.lru_cache(maxsize=256)
def phase_table(spec: ConvSpec) -> torch.Tensor:
    """int32 [3, max_stride, 5] phase records (first output, outputs, first tap, taps,
    first input) on the CPU; 1-d and 2-d problems get one trivial phase in their missing dims."""
    records = [[(0, 1, 0, 1, 0)]] * (3 - spec.dims) + [
        [(p.first_out, p.outputs, p.first_tap, p.taps, p.first_input) for p in dim] for dim in spec_phases(spec)
    ]
    table = torch.zeros((3, max(len(dim) for dim in records), 5), dtype=torch.int32)
    for d, dim in enumerate(records):
        table[d, : len(dim)] = torch.tensor(dim, dtype=torch.int32)
    return table


@functools.lru_cache(maxsize=256)
def device_phase_table(spec: ConvSpec, device: torch.device) -> torch.Tensor:
    """The phase table on `device`, copied there once: launches then make no host-to-device
    copy (which CUDA-graph capture would refuse)."""
    return phase_table(spec).to(device)


def phase_products(spec: ConvSpec, field: str) -> list[int]:
    """A per-dimension phase field multiplied out over every phase, in launch order (w fastest)."""
    values = [1]
    for dim in spec_phases(spec):
        values = [v * getattr(phase, field) for v in values for phase in dim]
    return values


class Dgrad(Descriptor):
    """Per phase: M = batch x the phase's outputs, N = out_channels / groups,
    K = in_channels / groups x the phase's taps; groups on axis 1, phases on axis 2."""

    name = "dgrad"
    result = "output"
    function = dgrad.conv_dgrad_kernel
    spaces = {False: DENSE_SPACE, True: ELEMENTWISE_SPACE}
    operand_names = ("input", "weight", "bias")
    channels_last_operands = ("input", "weight")
    constant_tensors = ("phases",)

    def operand_shapes(self, spec: ConvSpec) -> dict:
        return {
            "input": (spec.batch, spec.in_channels, *spec.in_size),
            "weight": (spec.in_channels, spec.out_channels_per_group, *spec.kernel_size),
            "bias": (spec.out_channels,),
        }

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        input = tensors["input"]
        return {"output": conv_output(spec, input, tensors["weight"]), "phases": device_phase_table(spec, input.device)}

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        input, weight, bias, output, phases = (tensors[name] for name in ("input", "weight", "bias", "output", "phases"))
        stage = tensors.get(STAGE)  # (descriptors/layout.py weight_stage)
        spec = self.loaded_problem(spec, input)
        (batch, _, *in_size), in_strides = layout_3d(input)
        _, weight_strides = layout_3d(weight)
        (_, _, *out_size), out_strides = layout_3d(output)
        steps = [phase_steps(s, d) for s, d in zip(in_3d(spec.stride, 1), in_3d(spec.dilation, 1))]
        # Row strides and channel counts in units, one per tensor; the output channels go with
        # the weight, whose loads along them they mask (elementwise: the group sizes are the
        # GROUP_IN, GROUP_OUT constexprs, and the columns go with the input, as in fprop).
        # A zero-padded weight copy (tconv.configs.padded_channels) has more columns than are stored.
        dense, columns = not spec.elementwise_lanes, self.extents(spec)[1]
        weight_columns = weight.shape[1] if dense else columns
        run, lanes, in_unit = input_run(self, spec, config, input, columns)  # (lanes: NCHW, spans from vectors along w)
        # (at stride 1 along w its rows are single positions of one phase: kernels/dgrad.py's epilogue)
        out_unit, out_w_unit = output_units(output, (), run == 1 and spec.stride[-1] == 1)
        column_dims = (1,) if dense else ELEMENTWISE_WEIGHT_COLUMNS  # (strides that come whole)
        weight_unit = tensor_unit(weight, (weight_columns,) if dense else (),  # (a padded copy's: 1)
                                  rows=row_strides(weight, column_dims))
        # Two-block steps where A loads along channels, and in 3-d where a thread loads at most
        # 64 of A's elements a step (3D U-Net's 3x3x3 input gradients at 128x64 and 256x32 with
        # 4 warps, sm_90: 8-24 bytes spilled, with or without the tap counter).
        elements = config.block_m * config.block_k * 2 // (32 * config.num_warps)
        two_blocks = in_strides[1] == 1 and (len(spec.kernel_size) < 3 or elements <= 64)
        chunks = 1 if spec.elementwise_lanes else k_chunks(spec.in_channels_per_group, math.prod(spec.kernel_size),
                                                              config, two_blocks)
        args = (
            input, weight, bias, output, phases, stage,
            batch, *in_size, *divided_strides(in_strides, in_unit, (4,) if lanes else (1,)),
            *divided_strides(weight_strides, weight_unit, column_dims),
            *out_size, *divided_strides(out_strides, out_unit, (4,) if out_w_unit else (1,)),
            *in_3d(spec.stride, 1), *(tap for tap, _ in steps), *(step for _, step in steps),
            phases.shape[1], spec.in_channels_per_group // (in_unit if dense else 1),
            columns // (weight_unit if dense else in_unit), weight_columns // (weight_unit if dense else in_unit),
        )
        meta = dict(HAS_BIAS=bias is not None, ELEMENTWISE_LANES=spec.elementwise_lanes, **group_meta(spec),
                    GROUP_M=config.group_m, W_RUN=run,
                    LANE_PAD=spec.kernel_size[-1] - 1 - spec.pad_before[-1] if lanes else -1,
                    TAP_BITS=run > 1 or math.prod(spec.kernel_size) < tap_bits_limit(spec, config, input.element_size()),
                    EVEN_K=not spec.elementwise_lanes and spec.in_channels_per_group % config.block_k == 0,
                    TAP_STEPS=not spec.elementwise_lanes and spec.in_channels_per_group == config.block_k * chunks,
                    K_CHUNKS=chunks,
                    PADDED=weight_columns != columns, STAGE_TAPS=stage_taps(spec) if stage is not None else 0,
                    **dict(zip(("KERNEL_D", "KERNEL_H", "KERNEL_W"), in_3d(spec.kernel_size, 1))),
                    IN_UNIT=in_unit, WEIGHT_UNIT=weight_unit, OUT_UNIT=out_unit, OUT_W_UNIT=out_w_unit,
                    **tile_meta(config), **numerics, **launch_options(config))
        return args, meta

    def output_run(self, spec: ConvSpec, config: KernelConfig, element_size: int, channels_last: bool) -> int:
        """Consecutive outputs along w that a row of a depthwise tile holds (kernels/_index.py
        output_run_loop, W_RUN; base.output_run): at stride 1 (one phase, every tap) only."""
        if any(stride != 1 for stride in spec.stride):
            return 1
        return output_run(spec, config, element_size, channels_last, (4, 2))

    def span_run(self, spec: ConvSpec, config: KernelConfig, input: torch.Tensor) -> int:
        """The output run of an NCHW depthwise input gradient taken in lanes (base.span_run), at
        stride 1 as output_run; its first column is kernel_w - 1 - pad before the run's first
        output's."""
        lane_pad = spec.kernel_size[-1] - 1 - spec.pad_before[-1]
        if any(stride != 1 for stride in spec.stride) or lane_pad < 0:
            return 1
        return span_run(spec, config, input, lane_pad)

    def weight_columns(self, spec: ConvSpec) -> str | None:
        """Column (output channel j, lane l) reads weight[input channel of (j, l), j's place in
        its group]: lanes are consecutive input channels, so [out/group, *kernel, in] storage.
        A dense loop's K is the weight's dim 0 (`in`): the same storage makes its B tiles
        K-major (tconv.configs.k_major_weight)."""
        return "transposed"

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        columns = spec.out_channels * spec.elementwise_lanes if spec.elementwise_lanes else spec.out_channels_per_group
        return max(phase_products(spec, "outputs")) * spec.batch, columns, spec.in_channels_per_group

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int, int]:
        """Axis 0 covers the largest phase's tiles, axis 1 the groups, axis 2 the phases."""
        rows, columns, _ = self.extents(spec)
        phases = len(phase_products(spec, "outputs"))
        return (tiles(rows, config.block_m) * tiles(columns, config.block_n), 1 if spec.elementwise_lanes else spec.groups,
                phases)

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        """Tiles past a phase's rows exit before the K loop, so each phase counts its own tiles."""
        _, columns, _ = self.extents(spec)
        column_tiles = tiles(columns, config.block_n)
        if spec.elementwise_lanes:
            per_step = config.block_m * config.block_n
        else:
            per_step = spec.groups * tiles(spec.in_channels_per_group, config.block_k) * math.prod(
                (config.block_m, config.block_n, config.block_k))
        return sum(
            tiles(spec.batch * outputs, config.block_m) * column_tiles * taps * per_step
            for outputs, taps in zip(phase_products(spec, "outputs"), phase_products(spec, "taps"))
        )


DGRAD = Dgrad()
