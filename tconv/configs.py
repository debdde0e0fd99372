"""Kernel configurations as data: the spaces the tuner searches, the rules that prune
them per problem, and the instant heuristic used whenever nothing tuned is cached.

A space is a table of axes per (kernel, GPU architecture family); its configs are the
Cartesian product of the axes, less what the pruning rules below remove. Every config a
space can produce is run through the interpreter by the test suite (tile shapes, swizzle
and split-K are what the interpreter can check; warps and pipeline stages only change
GPU code generation, so `tconv tune` also checks each candidate's output on the GPU
before it may win).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass

import torch

from .spec import ConvSpec

KERNELS = ("fprop", "dgrad", "wgrad")


@dataclass(frozen=True)
class KernelConfig:
    """Tile shape and launch parameters of one implicit-GEMM kernel launch.

    split_k (wgrad only): how many parts the batch x positions reduction is split into;
    0 lets tconv.plan choose (about two waves of programs on an H100).
    """

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 0

    def meta(self) -> dict:
        """Meta-parameters as the fprop and dgrad kernels name them."""
        return {
            "BLOCK_M": self.block_m,
            "BLOCK_N": self.block_n,
            "BLOCK_K": self.block_k,
            "GROUP_M": self.group_m,
            "num_warps": self.num_warps,
            "num_stages": self.num_stages,
        }

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        text = f"{self.block_m}x{self.block_n}x{self.block_k} w{self.num_warps} s{self.num_stages} g{self.group_m}"
        return text + (f" split{self.split_k}" if self.split_k else "")


# ------------------------------------------------------------------- architectures
#: Architecture families with their own spaces. sm_90: H100/H200; sm_80: A100;
#: fallback: every other GPU (sm_75/86/89 have ~100 KiB of shared memory per block,
#: Blackwell's tensor-core path is not tuned for yet).
FAMILIES = ("sm_90", "sm_80", "fallback")
#: Shared memory one block may use, bytes (CUDA programming guide: 227 KiB on sm_90,
#: 163 KiB on sm_80, 99 KiB on sm_86/89).
SHARED_LIMIT = {"sm_90": 227 * 1024, "sm_80": 163 * 1024, "fallback": 99 * 1024}
#: What CPU tensors (the interpreter) assume, so CPU runs choose what an H100 would.
INTERPRETER_FAMILY = "sm_90"


def arch_family(device: torch.device) -> str:
    """The config-space family of a device (CPU: the interpreter's stand-in)."""
    if device.type != "cuda":
        return INTERPRETER_FAMILY
    major, minor = torch.cuda.get_device_capability(device)
    return {(9, 0): "sm_90", (8, 0): "sm_80"}.get((major, minor), "fallback")


# ------------------------------------------------------------------------- spaces
_DENSE = {
    "sm_90": dict(block_m=(32, 64, 128), block_n=(16, 32, 64, 128), block_k=(16, 32, 64), num_warps=(4, 8),
                  num_stages=(3, 4), group_m=(8,), split_k=(0,)),
    "sm_80": dict(block_m=(32, 64, 128), block_n=(16, 32, 64, 128), block_k=(16, 32, 64), num_warps=(4, 8),
                  num_stages=(2, 3), group_m=(8,), split_k=(0,)),
    "fallback": dict(block_m=(32, 64), block_n=(16, 32, 64), block_k=(16, 32), num_warps=(4,),
                     num_stages=(2,), group_m=(8,), split_k=(0,)),
}
# Depthwise fprop/dgrad: elementwise tiles of BLOCK_M positions x BLOCK_N channels (no
# tl.dot, BLOCK_K unused beyond its one channel).
_DEPTHWISE = {
    family: dict(block_m=(32, 64, 128), block_n=(16, 32, 64), block_k=(16,), num_warps=(4, 8), num_stages=(2,),
                 group_m=(8,), split_k=(0,))
    for family in FAMILIES
}
# wgrad: BLOCK_M output channels x BLOCK_N input channels (of one tap) x BLOCK_K positions.
_WGRAD = {
    "sm_90": dict(block_m=(16, 32, 64, 128), block_n=(16, 32, 64), block_k=(16, 32, 64), num_warps=(4, 8),
                  num_stages=(3,), group_m=(8,), split_k=(0, 1, 8, 32)),
    "sm_80": dict(block_m=(16, 32, 64, 128), block_n=(16, 32, 64), block_k=(16, 32, 64), num_warps=(4, 8),
                  num_stages=(2, 3), group_m=(8,), split_k=(0, 1, 8, 32)),
    "fallback": dict(block_m=(16, 32, 64), block_n=(16, 32), block_k=(16, 32), num_warps=(4,), num_stages=(2,),
                     group_m=(8,), split_k=(0, 8)),
}
_WGRAD_DEPTHWISE = {
    family: dict(block_m=(16, 32, 64, 128), block_n=(16,), block_k=(16, 32, 64), num_warps=(4, 8), num_stages=(2,),
                 group_m=(8,), split_k=(0, 1, 8, 32))
    for family in FAMILIES
}
SPACES = {
    ("fprop", False): _DENSE, ("dgrad", False): _DENSE, ("wgrad", False): _WGRAD,
    ("fprop", True): _DEPTHWISE, ("dgrad", True): _DEPTHWISE, ("wgrad", True): _WGRAD_DEPTHWISE,
}


def _fits_registers(config: KernelConfig, kernel: str, depthwise: bool, dtype: torch.dtype) -> bool:
    """Per-thread tile elements within what compiled without spills (tconv.aot sweeps on
    sm_80/sm_90), in 32-bit registers: accumulator <= 32 (16 for elementwise depthwise
    tiles), each operand tile (BLOCK_M x BLOCK_K and BLOCK_K x BLOCK_N) <= 16. 8 warps
    only where 4 would not fit: the same tile with more warps is not another candidate
    worth compiling."""
    accumulator_scale = 2 if dtype == torch.float64 else 1  # 32-bit registers per accumulator
    operand_scale = 1 if dtype in (torch.float16, torch.bfloat16) else 2  # 16-bit values pack in pairs

    def fits(warps: int) -> bool:
        threads = 32 * warps
        accumulator = config.block_m * config.block_n * accumulator_scale / threads
        if depthwise and kernel != "wgrad":
            return accumulator <= 16
        operands = max(config.block_m, config.block_n) * config.block_k * operand_scale / threads
        return accumulator <= 32 and operands <= 16

    return fits(config.num_warps) and (config.num_warps == 4 or not fits(4))


@functools.cache
def config_space(kernel: str, family: str, depthwise: bool = False, dtype: torch.dtype = torch.float16) -> tuple:
    """Every config of a space that fits the registers, before any problem is known."""
    axes = SPACES[(kernel, depthwise)][family]
    names = list(axes)
    configs = (KernelConfig(**dict(zip(names, values))) for values in itertools.product(*axes.values()))
    return tuple(
        c for c in configs
        if _fits_registers(c, kernel, depthwise, dtype) and shared_bytes(c, dtype) <= SHARED_LIMIT[family]
    )


# ------------------------------------------------------------------------ pruning
def _next_pow2(value: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, value))))


def gemm_extents(kernel: str, spec: ConvSpec) -> tuple[int, int, int]:
    """(rows, columns, reduction per tap) the kernel's BLOCK_M / BLOCK_N / BLOCK_K tile."""
    positions = spec.batch * math.prod(spec.out_size)
    if kernel == "wgrad":  # rows: output channels; columns: input channels of a tap
        if spec.depthwise:
            return spec.out_channels, 1, positions
        return spec.out_channels_per_group, spec.in_channels_per_group, positions
    columns = spec.out_channels if spec.depthwise else spec.out_channels_per_group
    return positions, columns, spec.in_channels_per_group


def shared_bytes(config: KernelConfig, dtype: torch.dtype) -> int:
    """Shared memory of the pipelined operand tiles, num_stages deep."""
    element = torch.empty((), dtype=dtype).element_size()
    return config.num_stages * (config.block_m + config.block_n) * config.block_k * element


def prune(kernel: str, spec: ConvSpec, dtype: torch.dtype, family: str) -> list[KernelConfig]:
    """The candidates worth running for one problem, in space order."""
    rows, columns, reduction = gemm_extents(kernel, spec)
    candidates = []
    for config in config_space(kernel, family, spec.depthwise, dtype):
        if min(config.block_m, config.block_n, config.block_k) < 16:
            continue  # tl.dot needs every tile dimension >= 16
        if config.block_m > max(32, _next_pow2(rows)):
            continue  # tiles far larger than the problem: pure padding
        if config.block_n > max(16, _next_pow2(columns)):
            continue
        if kernel != "wgrad" and config.block_k > max(16, _next_pow2(reduction)):
            continue
        if shared_bytes(config, dtype) > SHARED_LIMIT[family]:
            continue
        if kernel == "wgrad" and config.split_k * config.block_k > reduction:
            continue  # splits that would be empty
        candidates.append(config)
    return candidates


# ----------------------------------------------------------------------- heuristic
def _tile_for(count: int, largest: int) -> int:
    """The largest power-of-two tile (16..largest) that pads `count` by at most 1/8."""
    tile = largest
    while tile > 16 and math.ceil(count / tile) * tile > 1.125 * count:
        tile //= 2
    return tile


#: Programs for a full GPU: two waves on an H100's 132 SMs (A100: 108).
TARGET_PROGRAMS = 264


@functools.lru_cache(maxsize=4096)
def heuristic_config(kernel: str, spec: ConvSpec, dtype: torch.dtype, family: str = INTERPRETER_FAMILY) -> KernelConfig:
    """A deterministic config from shape, dtype and architecture (no benchmarking).

    BLOCK_N follows the output channels of a group and BLOCK_K its input channels, so
    thin layers do not multiply padding; BLOCK_K is 16 for 32-bit inputs (the same bytes
    per step as 32 16-bit channels). 128-row tiles (8 warps) only where the problem
    still gives two waves of programs. Every choice is spill-free on sm_80 and sm_90
    (tests/test_gpu_readiness.py compiles the picks for the perf suites). CPU tensors
    make the same choice as an H100 (INTERPRETER_FAMILY).
    """
    rows, columns, reduction = gemm_extents(kernel, spec)
    wide = dtype == torch.float64  # no tensor cores, twice the registers per element
    small = family == "fallback"
    if kernel == "wgrad":
        positions_k = 32 if dtype in (torch.float16, torch.bfloat16) else 16  # same bytes per K step
        if spec.depthwise:
            return KernelConfig(_tile_for(rows, 32 if wide else 64), 16, positions_k, num_stages=2)
        # 16-row tiles spill a few bytes at some kernel sizes (ptxas on sm_90): 32 at least.
        block_m = max(32, _tile_for(rows, 32 if wide else 64))
        block_n = _tile_for(columns, 32)
        return KernelConfig(block_m, block_n, positions_k, num_stages=2 if small else 3)
    if spec.depthwise:
        return KernelConfig(32 if wide or rows <= 32 else 64, _tile_for(columns, 32), 16, num_stages=2)
    # float32 operands take twice the registers of 16-bit ones: 64 x 64 spills on 7x7 (sm_90).
    block_n = _tile_for(columns, 32 if dtype in (torch.float32, torch.float64) else 64)
    block_k = 16 if wide or dtype == torch.float32 else _tile_for(reduction, 32)
    block_m = 32 if rows <= 32 else 64
    programs_at_128 = math.ceil(rows / 128) * math.ceil(columns / 64) * spec.groups
    # 16-bit only: the float32 build spills on 7x7 kernels (sm_90).
    if dtype in (torch.float16, torch.bfloat16) and not small and block_n == 64 and programs_at_128 >= TARGET_PROGRAMS:
        return KernelConfig(128, 64, block_k, num_warps=8, num_stages=3)
    return KernelConfig(block_m, block_n, block_k, num_warps=4, num_stages=2 if small else 3)
