"""Launch plans: the grid each kernel is launched with, and the work that grid issues.

The launchers take their grids from here, so the counts below are the counts of what
actually runs: executed multiply-adds are whole tiles (BLOCK_M x BLOCK_N x BLOCK_K per
K step, padding of partial tiles included), to compare with ConvSpec.useful_macs.
"""

from __future__ import annotations

import math

from .configs import TARGET_PROGRAMS, KernelConfig
from .spec import ConvSpec, spec_phases


def fprop_grid(spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
    rows = spec.batch * math.prod(spec.out_size)
    if spec.depthwise:
        return math.ceil(rows / config.block_m) * math.ceil(spec.out_channels / config.block_n), 1
    return (
        math.ceil(rows / config.block_m) * math.ceil(spec.out_channels_per_group / config.block_n),
        spec.groups,
    )


def dgrad_phase_rows(spec: ConvSpec) -> list[int]:
    """GEMM rows (batch x outputs) of every stride phase, in launch order (w fastest)."""
    rows = [spec.batch]
    for dim in spec_phases(spec):
        rows = [r * phase.outputs for r in rows for phase in dim]
    return rows


def dgrad_phase_taps(spec: ConvSpec) -> list[int]:
    taps = [1]
    for dim in spec_phases(spec):
        taps = [t * phase.taps for t in taps for phase in dim]
    return taps


def dgrad_grid(spec: ConvSpec, config: KernelConfig) -> tuple[int, int, int]:
    """Axis 0 covers the largest phase's tiles, axis 1 the groups, axis 2 the phases."""
    rows = dgrad_phase_rows(spec)
    if spec.depthwise:
        return math.ceil(max(rows) / config.block_m) * math.ceil(spec.out_channels / config.block_n), 1, len(rows)
    return (
        math.ceil(max(rows) / config.block_m) * math.ceil(spec.out_channels_per_group / config.block_n),
        spec.groups,
        len(rows),
    )


MAX_SPLITS = 64


def wgrad_tiles(spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
    """(axis-0 tiles, groups) of the weight-gradient launch, for a forward-conv spec."""
    taps = math.prod(spec.kernel_size)
    if spec.depthwise:
        return math.ceil(spec.out_channels / config.block_m) * taps, 1
    return (
        math.ceil(spec.out_channels_per_group / config.block_m) * taps * math.ceil(spec.in_channels_per_group / config.block_n),
        spec.groups,
    )


def wgrad_split(spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
    """(splits, rows per split): split the batch x output-positions reduction in
    config.split_k parts or, when that is 0, so that the launch has about TARGET_PROGRAMS
    programs, keeping at least 8 K steps per split."""
    rows = spec.batch * math.prod(spec.out_size)
    if config.split_k:
        splits = max(1, min(config.split_k, MAX_SPLITS, math.ceil(rows / config.block_k)))
    else:
        tiles = math.prod(wgrad_tiles(spec, config))
        most = max(1, min(MAX_SPLITS, rows // (8 * config.block_k)))
        splits = max(1, min(most, math.ceil(TARGET_PROGRAMS / tiles)))
    rows_per_split = math.ceil(math.ceil(rows / splits) / config.block_k) * config.block_k
    return max(1, math.ceil(rows / rows_per_split)), rows_per_split


def wgrad_grid(spec: ConvSpec, config: KernelConfig) -> tuple[int, int, int]:
    return (*wgrad_tiles(spec, config), wgrad_split(spec, config)[0])


def executed_macs(kernel: str, spec: ConvSpec, config: KernelConfig) -> int:
    """Multiply-adds `kernel` in {'fprop', 'dgrad', 'wgrad'} executes (wgrad takes the
    forward conv's spec, for conv and, with roles swapped, for transposed conv)."""
    tile = config.block_m * config.block_n * config.block_k
    channel_steps = math.ceil(spec.in_channels_per_group / config.block_k)
    col_tiles = math.ceil(spec.out_channels_per_group / config.block_n)
    if kernel == "fprop":
        programs = math.prod(fprop_grid(spec, config))
        if spec.depthwise:  # one multiply-add per tile element and tap, on CUDA cores
            return programs * math.prod(spec.kernel_size) * config.block_m * config.block_n
        return programs * math.prod(spec.kernel_size) * channel_steps * tile
    if kernel == "dgrad":
        # Tiles past a phase's rows exit before the K loop.
        if spec.depthwise:
            col_tiles = math.ceil(spec.out_channels / config.block_n)
            return sum(
                math.ceil(rows / config.block_m) * col_tiles * taps * config.block_m * config.block_n
                for rows, taps in zip(dgrad_phase_rows(spec), dgrad_phase_taps(spec))
            )
        return sum(
            math.ceil(rows / config.block_m) * col_tiles * spec.groups * taps * channel_steps * tile
            for rows, taps in zip(dgrad_phase_rows(spec), dgrad_phase_taps(spec))
        )
    if kernel == "wgrad":
        splits, rows_per_split = wgrad_split(spec, config)
        rows = spec.batch * math.prod(spec.out_size)
        steps = sum(math.ceil(min(rows_per_split, rows - s * rows_per_split) / config.block_k) for s in range(splits))
        tiles = math.prod(wgrad_tiles(spec, config))
        if spec.depthwise:  # elementwise: BLOCK_M channels x BLOCK_K positions per step
            return tiles * steps * config.block_m * config.block_k
        return tiles * steps * tile
    raise ValueError(f"unknown kernel {kernel!r}")
