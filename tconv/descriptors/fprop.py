"""Launch contract of kernels/fprop.py: forward convolution as an implicit GEMM."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..configs import DENSE_SPACE, ELEMENTWISE_SPACE, KernelConfig
from ..kernels import fprop
from ..spec import PADDING_MODES, ConvSpec
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
from .units import (
    ELEMENTWISE_WEIGHT_COLUMNS,
    divided_strides,
    input_run,
    output_units,
    row_strides,
    tensor_unit,
    thin_runs_aligned,
)


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
        return {"output": conv_output(spec, tensors["input"], tensors["weight"])}

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        input, weight, bias, output = (tensors[name] for name in ("input", "weight", "bias", "output"))
        stage = tensors.get(STAGE)  # (descriptors/layout.py weight_stage)
        spec = self.loaded_problem(spec, input)
        (batch, _, *in_size), in_strides = layout_3d(input)
        weight_strides = self.weight_strides(weight)
        (_, _, *out_size), out_strides = layout_3d(output)
        kernel_d, kernel_h, kernel_w = in_3d(spec.kernel_size, 1)
        folded = self.folded_channels(spec)
        reduction = self.extents(spec)[2]
        # Row strides and channel counts in units, one per tensor. Elementwise launches take their
        # group sizes as the GROUP_IN, GROUP_OUT constexprs, and their columns mask the input's
        # loads along channels: the column count goes with the input there.
        dense, columns = not spec.elementwise_lanes, self.extents(spec)[1]
        # No padding: every tap of every output position reads the input (the output size
        # leaves no tap past the end), so the main loop (a folded width's, packed steps') masks
        # rows by their range alone.
        unpadded = not any(spec.pad_before + spec.pad_after)
        dense_taps = not (spec.elementwise_lanes or folded or self.packed_channels(spec))
        # Two-block steps where A loads along channels, and in 3-d where the output is
        # channels-last too (3D U-Net's 128-channel forwards written channels-first spilled 16-24 bytes).
        two_blocks = in_strides[1] == 1 and (len(spec.kernel_size) < 3 or out_strides[1] == 1)
        chunks = k_chunks(reduction, self.loop_taps(spec), config, two_blocks) if dense_taps else 1
        run, lanes, in_unit = input_run(self, spec, config, input, columns)  # (lanes: NCHW, spans from vectors along w)
        out_unit, out_w_unit = output_units(output, (columns,) if dense else (), run == 1)
        # One lane a column (depthwise): the columns' weight stride comes whole (the copy's is
        # 1). Several: in units like a row stride, its value then a constant multiple (the
        # copy's is the lanes), so a column's lanes are provably consecutive.
        column_dims = ELEMENTWISE_WEIGHT_COLUMNS if spec.elementwise_lanes == 1 else (1,)
        weight_unit = tensor_unit(weight, rows=self.weight_row_strides(weight, column_dims))
        # One K step per tap (the loop drops its channel counter), where a thread loads at
        # most 64 elements of A a step: sm_90's 256x32x64 3x3x3 loop (4 warps) spilled 2.6 KB
        # without its counter, 0 with it.
        tap_steps = (not spec.elementwise_lanes and reduction == config.block_k * chunks
                     and config.block_m * config.block_k * chunks <= 64 * 32 * config.num_warps)
        args = (
            input, weight, bias, output, stage,
            batch, *in_size, *divided_strides(in_strides, in_unit, (4,) if lanes else (1,)),
            *divided_strides(weight_strides, weight_unit, column_dims),
            *out_size, *divided_strides(out_strides, out_unit, (4,) if out_w_unit else (1,)),
            *in_3d(spec.stride, 1), *in_3d(spec.pad_before, 0), *in_3d(spec.dilation, 1),
            spec.in_channels_per_group // (in_unit if dense else 1), columns // (out_unit if dense else in_unit),
        )
        meta = dict(
            KERNEL_D=kernel_d, KERNEL_H=kernel_h, KERNEL_W=kernel_w, PADDING_MODE=PADDING_MODES[spec.padding_mode],
            HAS_BIAS=bias is not None, ELEMENTWISE_LANES=spec.elementwise_lanes, **group_meta(spec),
            GROUP_M=config.group_m,
            TAP_BITS=run > 1 or self.tap_bits(spec, config, input.element_size()),  # (runs: their own word)
            UNPADDED=unpadded and not lanes,  # (lanes: every span masked by its bits)
            W_RUN=run, RUN_STRIDE_W=spec.stride[-1] if run > 1 else 1, LANE_PAD=spec.pad_before[-1] if lanes else -1,
            EVEN_K=not spec.elementwise_lanes and reduction % config.block_k == 0,
            TAP_STEPS=tap_steps,
            K_CHUNKS=chunks,
            # Base pointers moved first (kernels/fprop.py) where a thread loads at most 16
            # elements of 16-bit channels-last A a step with a channel counter: over ten suites
            # 6 loops 1-20 instructions shorter (3-d 320 channels, sm_80: 134 -> 114), 2 two
            # longer; larger tiles, tap steps, TF32 and gathered channels-first loops lengthened.
            BASE_FIRST=(self.loop_taps(spec) > 1 and not tap_steps and input.element_size() == 2 and in_strides[1] == 1
                        and config.block_m * config.block_k * chunks <= 16 * 32 * config.num_warps),
            PACKED_CHANNELS=self.packed_channels(spec), STAGE_TAPS=stage_taps(spec) if stage is not None else 0,
            FOLD_CHANNELS=folded,
            FOLD_DENSE=bool(folded) and dense_run(in_strides, folded) and dense_run(weight_strides, folded),
            IN_UNIT=in_unit, WEIGHT_UNIT=weight_unit, OUT_UNIT=out_unit, OUT_W_UNIT=out_w_unit,
            **tile_meta(config), **numerics, **launch_options(config),
        )
        return args, meta

    def tap_bits(self, spec: ConvSpec, config: KernelConfig, element_size: int) -> bool:
        """Whether the loop keeps a bit per tap and row (kernels/fprop.py TAP_BITS): no padding,
        or zeros padding with fewer taps than tap_bits_limit."""
        unpadded = not any(spec.pad_before + spec.pad_after)
        return unpadded or (spec.padding_mode == "zeros" and self.loop_taps(spec) < tap_bits_limit(
            spec, config, element_size, packed=bool(self.packed_channels(spec))))

    def output_run(self, spec: ConvSpec, config: KernelConfig, element_size: int, channels_last: bool) -> int:
        """Consecutive output positions along w that a row of a depthwise tile holds
        (kernels/_index.py output_run_loop, W_RUN; 1: rows are single positions): at stride 1
        or 2 along w, zeros padding or none (base.output_run; at stride 2 only runs of 4,
        whose pairs cost more instructions than they save: 175 against 153 per 3 taps, sm_90)."""
        if spec.stride[-1] > 2 or (spec.padding_mode != "zeros" and any(spec.pad_before + spec.pad_after)):
            return 1
        return output_run(spec, config, element_size, channels_last, (4, 2) if spec.stride[-1] == 1 else (4,))

    def span_run(self, spec: ConvSpec, config: KernelConfig, input: torch.Tensor) -> int:
        """The output run of an NCHW depthwise forward taken in lanes (base.span_run), under
        output_run's strides and padding."""
        if spec.stride[-1] > 2 or (spec.padding_mode != "zeros" and any(spec.pad_before + spec.pad_after)):
            return 1
        return span_run(spec, config, input, spec.pad_before[-1])

    def weight_strides(self, weight: torch.Tensor) -> tuple[int, ...]:
        """The kernel's [out, in, D, H, W] weight strides (the weight's own here)."""
        return layout_3d(weight)[1]

    def weight_row_strides(self, weight: torch.Tensor, columns: tuple[int, ...] = (1,)) -> tuple[int, ...]:
        """The weight's strides that decide its unit (tconv.descriptors.units.row_strides)."""
        return row_strides(weight, columns)

    def folded_channels(self, spec: ConvSpec) -> int:
        """The input channels when the kernel's width folds into the reduction, else 0: K
        steps then run over the (kd, kh) taps and, within each, over the KERNEL_W x channels
        (kw, channel) pairs of the row, which channels-last storage keeps contiguous (dilation
        1 along w, one group, zeros padding, (kd, kh) taps within TAP_BITS).

        Dense layers whose channels 32 does not divide: each tap's channels alone would take
        16-wide K steps (HiFi-GAN's 80 channels x 7 taps, sm_80: issue-bound share 0.615 at
        64x64x16), or pad them. Their channel runs must start 16-byte aligned in 16-bit
        storage (a multiple of 8): unaligned runs load one element at a time either way, and
        there the per-element test costs more than the padding it saves (a 150-channel k7
        conv1d, sm_90: share 0.165 -> 0.102).

        Thin layers (2-15 channels) without padding whose runs are whole 16-wide K steps
        starting 16-byte aligned, such as ViT-B/16's patch embedding (3 -> 768, 16x16 at
        stride 16: 48-long runs): every tap of a row is real, so the fold's K steps mask rows
        only and load 128 bits along the run, where packing (tap, channel) pairs gathers them
        one element at a time (sm_90: share 0.10, unpipelined). Other thin layers pack: a
        14x14 patch's 42-long runs folded loaded 16 bits, unpipelined, and a 4x4 patch's
        12-long ones would pad K by a third."""
        channels, kernel_w = spec.in_channels_per_group, spec.kernel_size[-1]
        if spec.elementwise_lanes or spec.groups != 1 or spec.padding_mode != "zeros":
            return 0
        if kernel_w == 1 or spec.dilation[-1] != 1 or math.prod(spec.kernel_size) // kernel_w >= 32:
            return 0
        if spec.packed_channels:  # runs of whole 16-wide K steps, starting 16-byte aligned
            whole_steps = (kernel_w * channels) % 16 == 0 and thin_runs_aligned(spec)
            return channels if whole_steps and not any(spec.pad_before + spec.pad_after) else 0
        if channels % 32 == 0 or channels % 8:
            return 0
        return channels

    def packed_channels(self, spec: ConvSpec) -> int:
        """The channels whose (tap, channel) pairs the K loop packs (ConvSpec.packed_channels),
        0 where the width folds instead (folded_channels)."""
        return 0 if self.folded_channels(spec) else spec.packed_channels

    def loop_taps(self, spec: ConvSpec) -> int:
        """The taps the K loop walks: every kernel position, less the width when it folds."""
        taps = math.prod(spec.kernel_size)
        return taps // spec.kernel_size[-1] if self.folded_channels(spec) else taps

    def weight_columns(self, spec: ConvSpec) -> str | None:
        """Column (output channel o, lane l) reads weight[o, l]: consecutive in [*kernel, o, l]
        storage when each output channel's lanes are exactly its group's input channels
        (depthwise included)."""
        lanes = spec.elementwise_lanes
        return "flat" if lanes and lanes == spec.in_channels_per_group else None

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        """(rows, columns, reduction per K loop): a tap's channels, every (tap, channel)
        pair when thin groups pack them (spec.packed_channels), or a row's (kw, channel)
        pairs when the width folds (folded_channels). Elementwise layers' columns
        are every output channel's lanes (spec.elementwise_lanes)."""
        columns = spec.out_channels * spec.elementwise_lanes if spec.elementwise_lanes else spec.out_channels_per_group
        reduction = spec.in_channels_per_group * (math.prod(spec.kernel_size) if self.packed_channels(spec) else 1)
        if self.folded_channels(spec):
            reduction *= spec.kernel_size[-1]
        return spec.batch * math.prod(spec.out_size), columns, reduction

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        rows, columns, _ = self.extents(spec)
        return tiles(rows, config.block_m) * tiles(columns, config.block_n), 1 if spec.elementwise_lanes else spec.groups

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        programs = math.prod(self.grid(spec, config))
        taps = self.loop_taps(spec)
        if spec.elementwise_lanes:  # one multiply-add per tile element and tap, on CUDA cores
            return programs * taps * config.block_m * config.block_n
        steps = tiles(self.extents(spec)[2], config.block_k) * (1 if self.packed_channels(spec) else taps)
        return programs * steps * config.block_m * config.block_n * config.block_k


def dense_run(strides: tuple[int, ...], channels: int) -> bool:
    """Whether an [N, C, D, H, W] tensor's strides store (w, channel) as one run: channel
    stride 1, w stride the channel count (a folded width's offsets are then its K index)."""
    return strides[1] == 1 and strides[4] == channels


FPROP = Fprop()
