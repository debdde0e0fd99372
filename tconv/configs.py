"""Kernel configurations as data, and the instant heuristic that picks one."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .spec import ConvSpec


@dataclass(frozen=True)
class KernelConfig:
    """Tile shape and launch parameters of one implicit-GEMM kernel launch."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3

    def meta(self) -> dict:
        """Meta-parameters as the kernels name them."""
        return {
            "BLOCK_M": self.block_m,
            "BLOCK_N": self.block_n,
            "BLOCK_K": self.block_k,
            "GROUP_M": self.group_m,
            "num_warps": self.num_warps,
            "num_stages": self.num_stages,
        }


def _pow2_clamp(value: int, low: int, high: int) -> int:
    power = 1
    while power < value:
        power *= 2
    return max(low, min(high, power))


def _tile_for(count: int, largest: int) -> int:
    """The largest power-of-two tile (16..largest) that pads `count` by at most 1/8."""
    tile = largest
    while tile > 16 and math.ceil(count / tile) * tile > 1.125 * count:
        tile //= 2
    return tile


@functools.lru_cache(maxsize=4096)
def heuristic_config(kernel: str, spec: ConvSpec, dtype: torch.dtype) -> KernelConfig:
    """A deterministic config from shape and dtype alone (no benchmarking).

    tl.dot needs every tile dimension >= 16. BLOCK_N follows the group's output channels
    and BLOCK_K its input channels, so thin layers (few channels per group) do not
    multiply padding. Tiles stop at 64 x 64 x 32 with 4 warps: the largest shape whose
    sm_80 and sm_90 builds of both kernels have no register spills today (larger
    gather tiles spill; see tconv.aot). The interpreter uses the same choice.
    """
    rows = spec.batch * math.prod(spec.out_size)  # GEMM rows (for dgrad: all phases)
    cols = spec.out_channels_per_group
    wide = dtype == torch.float64  # no tensor cores, twice the registers per element
    if kernel == "wgrad":
        # rows: output channels of a group; cols: input channels of one tap; K: positions.
        if spec.depthwise:
            return KernelConfig(_tile_for(spec.out_channels, 32 if wide else 64), 16, 32)
        return KernelConfig(
            _pow2_clamp(spec.out_channels_per_group, 16, 32 if wide else 64),
            _pow2_clamp(spec.in_channels_per_group, 16, 32),
            16 if wide else 32,
        )
    if kernel in ("fprop", "dgrad") and spec.depthwise:
        # Depthwise: one group spanning every output channel, an elementwise gather per
        # tap; 64 x 32 (32 x 32 in fp64) is the largest tile that does not spill.
        return KernelConfig(32 if wide or rows <= 32 else 64, _tile_for(spec.out_channels, 32), 16)
    block_n = _pow2_clamp(cols, 16, 32 if wide else 64)
    block_k = _pow2_clamp(spec.in_channels_per_group, 16, 16 if wide else 32)
    block_m = 32 if rows <= 32 else 64
    return KernelConfig(block_m, block_n, block_k, num_warps=4, num_stages=3)
