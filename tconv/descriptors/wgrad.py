"""Launch contracts of kernels/wgrad.py: the split-K weight-gradient GEMM into an fp32
workspace, and the in-order reduction of its splits (deterministic, no atomics)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch

from ..configs import FULL_WAVES, SMS, WGRAD_ELEMENTWISE_SPACE, WGRAD_SPACE, KernelConfig
from ..kernels import wgrad
from ..spec import PADDING_MODES, ConvSpec
from .base import (
    SPAN_RUNS,
    Descriptor,
    MemoryPass,
    group_meta,
    in_3d,
    lane_span_fits,
    launch_options,
    layout_3d,
    tile_meta,
    tiles,
)
from .units import divided_strides, lane_unit, row_strides, tensor_unit, thin_runs_aligned

#: Most split-K parts; each keeps at least MIN_STEPS_PER_SPLIT K steps when chosen automatically.
MAX_SPLITS = 64
MIN_STEPS_PER_SPLIT = 8


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def magic_dimensions(batch: int, out_size, batch_steps: bool = False) -> int:
    """The kernel's MAGIC bits (1: width, 2: height, 4: depth, 8: batch, for BATCH_STEPS):
    output dimensions longer than 1 whose divisions of flat positions may use multiply-high
    by ceil(2**32 / size), exact while every dividend x satisfies x * size < 2**32 (x <
    batch x positions)."""
    out_depth, out_height, out_width = out_size
    rows = batch * out_depth * out_height * out_width
    if rows * max(*out_size, batch if batch_steps else 1) >= 2**32:
        return 0
    sizes = ((1, out_width), (2, out_height), (4, out_depth), (8, batch if batch_steps else 1))
    return sum(bit for bit, size in sizes if size > 1)


def line_steps(spec: ConvSpec, config: KernelConfig, out_size, row_steps: bool, grad_flat: bool) -> int:
    """The kernel's LINE_STEPS: each K step is whole output lines of one (n, d) plane (the
    width divides BLOCK_K, BLOCK_K divides the plane), so its positions' place in their
    step is the same every step (1); 2 where a step is the whole plane, so its positions'
    h and w checks are the same every step too and only its d is checked (3D U-Net's
    256->320 stride-2 8x8x8 weight gradient at 64x128x64 on sm_80: 263 -> 229 loop
    instructions per 64 HMMA, the GEMM's 190). Zeros padding (the step's offsets are then
    linear in h and w) and a flat grad_output (A needs no per-position split)."""
    _, out_height, out_width = out_size
    lines = (not row_steps and grad_flat and spec.padding_mode == "zeros" and not spec.packed_channels
             and config.block_k % out_width == 0 and (out_height * out_width) % config.block_k == 0)
    return 0 if not lines else 2 if config.block_k == out_height * out_width else 1


def batch_steps(spec: ConvSpec, config: KernelConfig, batch: int, element_size: int, row_steps: bool,
                line_steps: int, dense_runs: bool) -> bool:
    """The kernel's BATCH_STEPS: where neither ROW_STEPS nor LINE_STEPS applies, K steps
    walk positions image-fastest when BLOCK_K images make whole steps (batch a multiple of
    BLOCK_K), so a step is one output position of BLOCK_K images: its coordinates, tap
    indices and padding checks are scalars instead of a split of every position (ResNet-50's
    7x7 3x3 weight gradient at batch 64, 128x128x64 on sm_80: 237 -> 189 loop instructions
    per 64 HMMA, the GEMM's 185). Its scalars cost about 30 instructions a step, what
    splitting two positions does, so it is taken only where a thread gathers at least that
    much of B a step: two positions' vectors (32 bytes) where rows load along channels or
    dense runs (Inception's 48-channel 5x5 at 64x16x32, one a thread: 76 -> 92; a TF32
    ViT-B/16 patch's runs at 64x32x16: 88 -> 95), four elements where thin layers' packed
    columns gather one at a time, each at its own tap (a column's tap index, check and
    offset are then one vector a step: ResNet-50's RGB stem, 189 -> 103 on sm_80; a TF32
    Swin patch's two elements: 80 -> 82). Not where the output has one position (nothing
    to split) nor for elementwise layers."""
    threads = 32 * config.num_warps
    elements = config.block_k * config.block_n / threads  # of B, a thread's a step
    pays = elements >= 4 if spec.packed_channels and not dense_runs else elements * element_size >= 32
    return (pays and not row_steps and not line_steps and not spec.elementwise_lanes and batch % config.block_k == 0
            and math.prod(spec.out_size) > 1)


def padded_dimensions(spec: ConvSpec, in_size, out_size) -> int:
    """The kernel's BOUNDS bits (1: width, 2: height, 4: depth): dimensions ([D, H, W]
    sizes of the launch's tensors) where some tap of some output position falls outside
    the input, before or after it."""
    bits = 0
    geometry = zip(in_size, out_size, in_3d(spec.kernel_size, 1), in_3d(spec.stride, 1), in_3d(spec.pad_before, 0),
                   in_3d(spec.dilation, 1))
    for bit, (size, out, kernel, stride, pad, dilation) in zip((4, 2, 1), geometry):
        if pad > 0 or (out - 1) * stride - pad + (kernel - 1) * dilation >= size:
            bits |= bit
    return bits


#: Registers per thread a tap run's accumulators (fp32) and input tiles (B, two 16-bit
#: elements a register) may take, and its accumulators alone: measured as the launch
#: compiles, 64x64x64 with 4 warps and a run of 3 (144, 96) uses 192 / 217 registers on
#: sm_90 / sm_80 without spilling; 32x64x128 with 2 warps and a run of 3 (288, 96) spilled
#: 160 / 8 bytes, 128x128x32 with 8 warps and a run of 2 (144, 128) 224-272 bytes on sm_90.
TAP_RUN_REGISTERS, TAP_RUN_ACCUMULATORS = 144, 96


def most_taps(config: KernelConfig, dtype: torch.dtype) -> int:
    """The longest run (3, 2 or 1 taps) whose tiles fit TAP_RUN_REGISTERS and
    TAP_RUN_ACCUMULATORS: config_space stores it as config.tap_run. 16-bit operands only:
    float32 runs that fit the same budget in registers spilled 100-900 bytes as the launch
    compiles (64x16x128 and 128x16x64 with 2 warps, 128x32x64 with 4: the A tile, shared by
    the run, is 2-4x its 16-bit size), so 32- and 64-bit weight gradients take one tap."""
    if dtype.itemsize != 2:
        return 1
    threads = 32 * config.num_warps
    accumulators = config.block_m * config.block_n / threads
    per_tap = accumulators + config.block_k * config.block_n / 2 / threads
    for run in (3, 2):
        if run * per_tap <= TAP_RUN_REGISTERS and run * accumulators <= TAP_RUN_ACCUMULATORS:
            return run
    return 1


#: Registers a tap of an elementwise run takes where its input tile is gathered, against a
#: depthwise tap's: rows that do not each meet their own input channel (small groups,
#: channel multipliers, one input channel for many outputs) load it one element at a time,
#: each element with its own address and value register besides its accumulator. Measured
#: as the launch compiles: 3D U-Net's 1->32 3x3x3 at 32x16x32 with a run of 3 spilled 56
#: bytes on sm_90 (80 registers), one tap 64 registers and no spill.
GATHERED_TAP_COST = 4


def tap_run(spec: ConvSpec, config: KernelConfig) -> int:
    """Taps along w one program takes (the kernel's TAP_RUN): the longest run of at most
    config.tap_run taps (dense tiles: most_taps; elementwise ones: tconv.configs.elementwise_tap_run,
    over GATHERED_TAP_COST where the input tile is gathered) that divides the kernel's width,
    for zeros-padded layers that do not pack taps; else 1. Each K step then splits its
    positions and loads grad_output once for the whole run, and only moves the input's w
    index per tap."""
    if spec.packed_channels or spec.padding_mode != "zeros":
        return 1
    most = config.tap_run
    if spec.elementwise_lanes and (spec.in_channels_per_group, spec.out_channels_per_group) != (1, 1):
        most = max(1, most // GATHERED_TAP_COST)
    return next(run for run in range(min(most, spec.kernel_size[-1]), 0, -1) if spec.kernel_size[-1] % run == 0)


def position_lanes(spec: ConvSpec, config: KernelConfig, input: torch.Tensor, grad_output: torch.Tensor) -> int:
    """The kernel's LANES: the chunk of positions (the first of base.SPAN_RUNS that fits) an
    elementwise weight gradient whose activations store w innermost (NCHW) loads along w,
    one vector a thread, instead of gathering each row's positions one element at a time
    (MobileNetV2's 144-channel 3x3 at 56x56, NCHW, sm_90: 169 -> 79 loop instructions a
    step); 0 where none applies. Kernels one tap wide share nothing across taps, and their
    positions load as vectors without chunks where they are contiguous (3D U-Net's 32->3
    1x1x1: 52 -> 58 loop instructions in chunks, sm_90). A chunk's outputs, and the input span
    they start at, must be aligned vectors inside one line (base.lane_span_fits), a chunk a
    thread in the tile, and the window's lanes static: a run of the whole kernel row
    (tap_run), zeros padding, stride 1 or 2 and dilation 1 along w, and BLOCK_K and the other
    row and channel strides multiples of the chunk."""
    kernel_w, pad_w, stride_w = spec.kernel_size[-1], spec.pad_before[-1], spec.stride[-1]
    (_, _, *in_size), in_strides = layout_3d(input)
    (_, _, *out_size), grad_strides = layout_3d(grad_output)
    if not (spec.elementwise_lanes > 0 and kernel_w > 1 and tap_run(spec, config) == kernel_w
            and spec.padding_mode == "zeros" and stride_w <= 2 and spec.dilation[-1] == 1
            and in_strides[4] == 1 and grad_strides[4] == 1):
        return 0
    values = (config.block_k, *row_strides(input, (4,)), *row_strides(grad_output, (4,)))
    threads = 32 * config.num_warps
    return next((chunk for chunk in SPAN_RUNS if all(value % chunk == 0 for value in values)
                 and lane_span_fits(chunk, stride_w, kernel_w, pad_w, out_size[2], in_size[2], input.element_size())
                 and config.block_m * config.block_k >= threads * chunk), 0)


def bias_mode(spec: ConvSpec, dtype: torch.dtype) -> int:
    """The kernel's BIAS_GRAD for a pass that takes the bias gradient: on the tensor cores
    for 16-bit tiles with tl.dot (their row sums are exact products by one, summed in
    float32), else row sums added every step (float32 and float64, whose tl.dot would round
    to TF32 or run without tensor cores; elementwise tiles sum their products after the loop)."""
    if dtype.itemsize == 2 and not spec.elementwise_lanes:
        return wgrad.BIAS_ON_TENSOR_CORES
    return wgrad.BIAS_ROW_SUMS


def packed_dense(spec: ConvSpec, in_strides: tuple[int, ...], bounds: int) -> bool:
    """Whether a thin layer's packed columns read one contiguous run per (kd, kh) row (the
    kernel's PACKED_DENSE): one group, zeros padding that no tap reaches (bounds 0), dilation
    1 along w, an input storing (w, channel) as one run (channels-last), and runs that start
    16-byte aligned in 16-bit storage (ViT-B/16's 48-long runs at 48-element steps, sm_90: 343
    -> 83 loop instructions, 128-bit loads). Unaligned runs load one element at a time
    either way, and there the split offsets cost a few instructions more (ViT-L/14's
    42-long runs: 199 -> 213)."""
    return (bool(spec.packed_channels) and thin_runs_aligned(spec) and spec.groups == 1
            and spec.padding_mode == "zeros" and bounds == 0 and spec.dilation[-1] == 1 and in_strides[1] == 1
            and in_strides[4] == spec.in_channels_per_group)


def flat_row_stride(sizes, strides) -> int | None:
    """The stride of one flat output position when grad_output's (n, d, h, w) strides
    flatten into one (channels_last, or a single image of a dense layout), else None.
    Dimensions of size 1 may have any stride."""
    row_stride, span = None, 1
    for size, stride in zip(reversed(sizes), reversed(strides)):  # innermost first
        if size > 1:
            if row_stride is None:
                row_stride = stride  # every dimension inside it has size 1
            elif stride != row_stride * span:
                return None
        span *= size
    return 0 if row_stride is None else row_stride


class Wgrad(Descriptor):
    """Takes the forward conv's spec. M = out_channels / groups, N = in_channels / groups
    (one tap per column tile; thin groups: the (tap, channel) pairs), K = batch x output positions split across grid axis 2."""

    name = "wgrad"
    result = "grad_weight"
    function = wgrad.conv_wgrad_kernel
    spaces = {False: WGRAD_SPACE, True: WGRAD_ELEMENTWISE_SPACE}
    operand_names = ("input", "grad_output")
    channels_last_operands = ("input", "grad_output")
    bias_flag = "bias_grad"

    def tiles_per_step(self, spec: ConvSpec, config: KernelConfig) -> int:
        return tap_run(spec, config)

    def most_tiles_per_step(self, config: KernelConfig, dtype: torch.dtype) -> int:
        return most_taps(config, dtype)

    def operand_shapes(self, spec: ConvSpec) -> dict:
        return {"input": (spec.batch, spec.in_channels, *spec.in_size),
                "grad_output": (spec.batch, spec.out_channels, *spec.out_size)}

    @staticmethod
    def split_stride(spec: ConvSpec, bias_grad: bool) -> int:
        """Workspace elements per split: the weight, then (only when asked) the bias."""
        return spec.out_channels * spec.in_channels_per_group * math.prod(spec.kernel_size) + (
            spec.out_channels if bias_grad else 0)

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        """The split partials' workspace, and the results the reduction writes into."""
        input, bias_grad = tensors["input"], bool(tensors.get("bias_grad", False))
        splits, _ = self.split(spec, config)
        workspace = torch.empty((splits, self.split_stride(spec, bias_grad)), dtype=accumulator_dtype(input.dtype),
                                device=input.device)
        grad_weight = torch.empty((spec.out_channels, spec.in_channels_per_group, *spec.kernel_size), dtype=input.dtype,
                                  device=input.device)
        grad_bias = torch.empty((spec.out_channels,), dtype=input.dtype, device=input.device) if bias_grad else None
        return {"workspace": workspace, "grad_weight": grad_weight, "grad_bias": grad_bias}

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        input, grad_output, workspace = tensors["input"], tensors["grad_output"], tensors["workspace"]
        bias_grad = bool(tensors.get("bias_grad", False))
        (batch, _, *in_size), in_strides = layout_3d(input)
        (_, _, *out_size), grad_strides = layout_3d(grad_output)
        kernel_d, kernel_h, kernel_w = in_3d(spec.kernel_size, 1)
        _, rows_per_split = self.split(spec, config)
        row_stride = flat_row_stride((batch, *out_size), (grad_strides[0], *grad_strides[2:]))
        row_steps = out_size[2] % config.block_k == 0 and not spec.packed_channels
        lines = line_steps(spec, config, out_size, row_steps, row_stride is not None)
        runs = packed_dense(spec, in_strides, padded_dimensions(spec, in_size, out_size))
        lanes = position_lanes(spec, config, input, grad_output)
        if lanes:  # (chunks along w replace the other step modes, and split positions by chunks)
            row_steps, lines, row_stride = False, 0, None
            lane_size = (*out_size[:2], out_size[2] // lanes)
        images = batch_steps(spec, config, batch, input.element_size(), row_steps, lines, runs)  # image-fastest steps
        # Row strides and channel counts in units, one per tensor; the rows (output channels, or a
        # depthwise layer's channels) go with grad_output (elementwise group sizes are the GROUP_IN,
        # GROUP_OUT constexprs). Packed thin columns and small groups'
        # (output, input channel) rows gather one element at a time whatever the strides: no
        # units (SD's 4-channel layers, sm_90: 397 -> 414 and 89 -> 106 loop instructions with them).
        # Zero-padded copies (tconv.configs.padded_channels) hold more channels than are stored:
        # those wrap the loads (and set the units: a padded copy's are 1).
        dense, rows = not spec.elementwise_lanes, self.extents(spec)[0]
        loaded_rows, loaded_columns = ((grad_output.shape[1] // spec.groups, input.shape[1] // spec.groups) if dense
                                       else (rows, 0))
        gathers = spec.packed_channels or spec.elementwise_lanes > 1
        if lanes:  # w's stride stays whole (1) and the channel strides join the units
            in_unit, grad_unit = lane_unit(input), lane_unit(grad_output, (rows,))
        else:
            in_unit = 1 if gathers else tensor_unit(input, (loaded_columns,) if dense else ())
            grad_unit = 1 if gathers else tensor_unit(grad_output, (loaded_rows, row_stride or 0))
        strided = (4,) if lanes else (1,)
        args = (
            input, grad_output, workspace,
            batch, *in_size, *divided_strides(in_strides, in_unit, strided),
            *out_size, *divided_strides(grad_strides, grad_unit, strided), (row_stride or 0) // grad_unit,
            *in_3d(spec.stride, 1), *in_3d(spec.pad_before, 0), *in_3d(spec.dilation, 1),
            spec.in_channels_per_group // (in_unit if dense else 1), rows // grad_unit,
            loaded_columns // in_unit, loaded_rows // grad_unit,
            rows_per_split, workspace.shape[1], self.split_stride(spec, False),
        )
        meta = dict(
            KERNEL_D=kernel_d, KERNEL_H=kernel_h, KERNEL_W=kernel_w, PADDING_MODE=PADDING_MODES[spec.padding_mode],
            BIAS_GRAD=bias_mode(spec, input.dtype) if bias_grad else 0, ELEMENTWISE=spec.elementwise_lanes > 0,
            **group_meta(spec),
            PACKED_CHANNELS=spec.packed_channels,
            PACKED_DENSE=runs,
            ROW_STEPS=row_steps, LINE_STEPS=lines, BATCH_STEPS=images,
            MAGIC=magic_dimensions(batch, lane_size if lanes else out_size, images),
            BOUNDS=padded_dimensions(spec, in_size, out_size), GRAD_FLAT=row_stride is not None and not images,
            TAP_RUN=tap_run(spec, config),
            LANES=lanes, LANE_PAD=spec.pad_before[-1] if lanes else 0, LANE_STRIDE=spec.stride[-1] if lanes else 1,
            IN_UNIT=in_unit, GRAD_UNIT=grad_unit,
            PADDED=dense and (loaded_rows, loaded_columns) != (rows, spec.in_channels_per_group),
            **tile_meta(config), **numerics, **launch_options(config),
        )
        return args, meta

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        """(rows, columns per tap, positions); thin groups' columns are every (tap, channel) pair,
        elementwise layers' rows every (output channel, input channel) pair of the weight."""
        positions = spec.batch * math.prod(spec.out_size)
        if spec.elementwise_lanes:
            return spec.out_channels * spec.in_channels_per_group, 1, positions
        if spec.packed_channels:
            return spec.out_channels_per_group, spec.in_channels_per_group * math.prod(spec.kernel_size), positions
        return spec.out_channels_per_group, spec.in_channels_per_group, positions

    def tiles(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
        """(axis-0 tiles, groups): output-channel tiles x tap runs x input-channel tiles (thin
        groups: x column tiles of the packed pairs)."""
        rows, columns, _ = self.extents(spec)
        taps = 1 if spec.packed_channels else math.prod(spec.kernel_size) // self.tiles_per_step(spec, config)
        if spec.elementwise_lanes:
            return tiles(rows, config.block_m) * taps, 1
        return tiles(rows, config.block_m) * taps * tiles(columns, config.block_n), spec.groups

    def requested_splits(self, spec: ConvSpec, config: KernelConfig, sms: int = SMS["sm_90"]) -> int:
        """config.split_k parts or, when that is 0, the count whose programs fill whole waves
        of `sms` programs best, from FULL_WAVES waves up to one more (fewer parts among
        equals), each part keeping at least MIN_STEPS_PER_SPLIT K steps (before rounding to
        whole K steps). Aiming at a fixed count instead (264) filled 0.81 of the waves of 64
        weight tiles in 5 parts on an H100, and on an A100 sent 3x3 weight gradients from
        128x64 tiles with a run of 3 (0.81 of the waves) to 32x32 ones, which re-read each
        operand 2-4x more."""
        rows = self.extents(spec)[2]
        if config.split_k:
            return max(1, min(config.split_k, MAX_SPLITS, tiles(rows, config.block_k)))
        most = max(1, min(MAX_SPLITS, rows // (MIN_STEPS_PER_SPLIT * config.block_k)))
        count = math.prod(self.tiles(spec, config))
        fewest = tiles(FULL_WAVES * sms, count)
        if fewest >= most:
            return most

        def filled(splits: int) -> float:
            return round(count * splits / (tiles(count * splits, sms) * sms), 6)

        return max(range(fewest, min(most, tiles((FULL_WAVES + 1) * sms, count)) + 1), key=lambda s: (filled(s), -s))

    def split(self, spec: ConvSpec, config: KernelConfig, sms: int = SMS["sm_90"]) -> tuple[int, int]:
        """(splits, rows per split) of whole K steps, from requested_splits."""
        rows = self.extents(spec)[2]
        splits = self.requested_splits(spec, config, sms)
        rows_per_split = tiles(tiles(rows, splits), config.block_k) * config.block_k
        return max(1, tiles(rows, rows_per_split)), rows_per_split

    def with_sms(self, spec: ConvSpec, config: KernelConfig, sms: int) -> KernelConfig:
        """An automatic split chosen for `sms` rather than an H100's 132, written into the
        config where the two differ."""
        if config.split_k or self.split(spec, config, sms) == self.split(spec, config):
            return config
        return dataclasses.replace(config, split_k=self.requested_splits(spec, config, sms))

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, int, int]:
        return (*self.tiles(spec, config), self.split(spec, config)[0])

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        splits, rows_per_split = self.split(spec, config)
        rows = self.extents(spec)[2]
        steps = sum(tiles(min(rows_per_split, rows - s * rows_per_split), config.block_k) for s in range(splits))
        columns = (1 if spec.elementwise_lanes else config.block_n) * self.tiles_per_step(spec, config)
        per_step = config.block_m * config.block_k * columns
        return math.prod(self.tiles(spec, config)) * steps * per_step


class WgradReduce(MemoryPass):
    """Sums the split partials of the workspace in split order, casts once and writes
    grad_weight (contiguous) and grad_bias. Launched right after Wgrad, on the tensors
    Wgrad.allocate made."""

    name = "wgrad_reduce"
    function = wgrad.wgrad_reduce_kernel
    operand_names = ("workspace", "grad_weight", "grad_bias")
    BLOCK = 1024

    def allocate(self, spec: ConvSpec, tensors: Mapping, config: KernelConfig) -> dict:
        return {}

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        workspace, grad_weight, grad_bias = tensors["workspace"], tensors["grad_weight"], tensors["grad_bias"]
        args = (workspace, grad_weight, grad_bias, workspace.shape[0], workspace.shape[1], grad_weight.numel())
        return args, {"BIAS_GRAD": grad_bias is not None, "BLOCK": self.BLOCK, "num_warps": 4}

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int]:
        """Covers a workspace row with bias partials; without them the last block's
        bias lanes are masked off."""
        return (tiles(WGRAD.split_stride(spec, True), self.BLOCK),)

    def launch_grid(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping) -> tuple[int]:
        return (tiles(tensors["workspace"].shape[1], self.BLOCK),)

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        return WGRAD.split_stride(spec, True), 1, 1


WGRAD_REDUCE = WgradReduce()
WGRAD = Wgrad()
WGRAD.then = WGRAD_REDUCE
