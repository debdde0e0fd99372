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

import dataclasses
import functools
import itertools
import math
from dataclasses import asdict, dataclass

import torch

from .perf.roofline import GPUS, gemm_macs, min_bytes
from .spec import THIN_CHANNELS, ConvSpec, cached_field_hash, state_without_hash

KERNELS = ("fprop", "dgrad", "wgrad")


@dataclass(frozen=True)
class KernelConfig:
    """Tile shape and launch parameters of one implicit-GEMM kernel launch.

    split_k (wgrad only): how many parts the batch x positions reduction is split into;
    0 lets tconv.plan choose (two or more waves of programs on an H100, filled as best it
    can); the heuristic writes the count that does so on other GPUs (Descriptor.with_sms).
    tap_run (wgrad only): the most taps along w one program may take (descriptors/wgrad.py,
    tap_run); config_space sets it per dtype and family to the most the tile's registers and
    shared memory hold.
    k_step (fprop and dgrad): the widest K step, in channels of one tap, that chunked steps
    may take at this tile (descriptors.base.k_chunks); config_space sets it per dtype and
    family to what the family's shared memory holds (with_k_step); 0: BLOCK_K-wide steps only.
    Derived from the other fields and the family, so it is not printed.
    """

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 0
    tap_run: int = 1
    k_step: int = 0

    __hash__ = cached_field_hash  # configs key the launchers' memos on every call
    __getstate__ = state_without_hash

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
        return text + (f" split{self.split_k}" if self.split_k else "") + (f" run{self.tap_run}" if self.tap_run > 1 else "")


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
# Tiles of the sizes Hopper and Ampere GEMMs use (up to 256 on a side, BLOCK_K 64 or 128,
# 3-5 stages on sm_90, 2-4 on sm_80, 4 or 8 warps), plus the thin tiles thin layers need;
# sm_80 also 2 warps (HMMA is per warp; sm_90's HGMMA needs a warpgroup of 4).
_DENSE = {
    "sm_90": dict(block_m=(32, 64, 128, 256), block_n=(16, 32, 64, 128, 256), block_k=(16, 32, 64, 128),
                  num_warps=(4, 8), num_stages=(3, 4, 5), group_m=(8,), split_k=(0,)),
    "sm_80": dict(block_m=(32, 64, 128, 256), block_n=(16, 32, 64, 128, 256), block_k=(16, 32, 64, 128),
                  num_warps=(2, 4, 8), num_stages=(2, 3, 4), group_m=(8,), split_k=(0,)),
    "fallback": dict(block_m=(32, 64, 128), block_n=(16, 32, 64, 128), block_k=(16, 32, 64), num_warps=(4, 8),
                     num_stages=(2, 3), group_m=(8,), split_k=(0,)),
}
# Depthwise fprop/dgrad: elementwise tiles of BLOCK_M positions x BLOCK_N channels (no
# tl.dot, BLOCK_K unused beyond its one channel).
_DEPTHWISE = {
    family: dict(block_m=(32, 64, 128), block_n=(16, 32, 64), block_k=(16,), num_warps=(4, 8), num_stages=(2,),
                 group_m=(8,), split_k=(0,))
    for family in FAMILIES
}
# wgrad: BLOCK_M output channels x BLOCK_N input channels (of one tap) x BLOCK_K positions.
# Positions are plentiful, so thin tiles (32 channels a side) take 128 of them per step
# with 2 warps: the per-step loop overhead then weighs less against the tensor-core work.
_WGRAD = {
    "sm_90": dict(block_m=(16, 32, 64, 128), block_n=(16, 32, 64, 128), block_k=(16, 32, 64, 128), num_warps=(2, 4, 8),
                  num_stages=(3, 4), group_m=(8,), split_k=(0, 1, 8, 32)),
    "sm_80": dict(block_m=(16, 32, 64, 128), block_n=(16, 32, 64, 128), block_k=(16, 32, 64, 128), num_warps=(2, 4, 8),
                  num_stages=(2, 3), group_m=(8,), split_k=(0, 1, 8, 32)),
    "fallback": dict(block_m=(16, 32, 64), block_n=(16, 32, 64), block_k=(16, 32), num_warps=(4,), num_stages=(2,),
                     group_m=(8,), split_k=(0, 8)),
}
_WGRAD_DEPTHWISE = {
    family: dict(block_m=(16, 32, 64, 128), block_n=(16,), block_k=(16, 32, 64), num_warps=(4, 8), num_stages=(2,),
                 group_m=(8,), split_k=(0, 1, 8, 32))
    for family in FAMILIES
}
DENSE_SPACE, ELEMENTWISE_SPACE, WGRAD_SPACE, WGRAD_ELEMENTWISE_SPACE = _DENSE, _DEPTHWISE, _WGRAD, _WGRAD_DEPTHWISE


def descriptor_of(kernel):
    """A kernel descriptor from itself or its registered name."""
    if isinstance(kernel, str):
        from .descriptors import KERNELS

        return KERNELS[kernel]
    return kernel


#: 32-bit accumulator registers per thread a tile may take (of 255), measured as the
#: launch compiles (tconv.aot) on the extremes of every space: 16-bit tiles up to 128
#: (128x256 or 256x128 with 8 warps compile without spills); 32- and 64-bit operands
#: need more registers around the dot (TF32 128x256 and 128x64 with 4 warps, float64
#: 64x64 with 4 warps spill on 3x3 and 3x3x3 layers), so 32; elementwise (depthwise, small groups)
#: tiles hold their operand products too, so 16.
MAX_ACCUMULATOR_REGISTERS = {"16-bit": 128, "wide": 32, "elementwise": 16, "elementwise wgrad": 48,
                             "elementwise runs": 32}
#: 16-bit elementwise forward and input-gradient tiles of RUN_ROWS rows and 4 warps may take
#: MAX_ACCUMULATOR_REGISTERS["elementwise runs"]: the heuristic doubles a tile to them for
#: output runs (descriptors/base.py output_run), whose accumulators split the rows (runs of 4
#: at 128x32: 80-96 registers, no spills, sm_80 and sm_90); prune keeps them only for
#: problems that take runs at them.
RUN_ROWS = 128
#: An elementwise weight gradient's tap run (descriptors/wgrad.py tap_run) keeps one
#: [BLOCK_M, BLOCK_K] accumulator of products per tap, summed after the loop; the run's
#: accumulators take at most MAX_ACCUMULATOR_REGISTERS["elementwise wgrad"] (64x16x32 with 4
#: warps and a run of 3, 48 registers: 98-115 as the launch compiles on sm_90, no spills).
#: Every tile of its space holds a run of at least ELEMENTWISE_SPACE_RUN; none is longer than
#: ELEMENTWISE_LONGEST_RUN (a 9x9's row: the loop is unrolled per tap).
ELEMENTWISE_SPACE_RUN, ELEMENTWISE_LONGEST_RUN = 3, 9


def elementwise_tap_run(config: KernelConfig, dtype: torch.dtype) -> int:
    """The most taps an elementwise weight-gradient program at `config` takes (config.tap_run)."""
    per_tap = accumulator_registers(dataclasses.replace(config, block_n=config.block_k), dtype)
    return max(1, min(ELEMENTWISE_LONGEST_RUN, int(MAX_ACCUMULATOR_REGISTERS["elementwise wgrad"] // per_tap)))


def accumulator_registers(config: KernelConfig, dtype: torch.dtype) -> float:
    """fp32 (fp64: two registers each) accumulator registers per thread of a tile."""
    return config.block_m * config.block_n * (2 if dtype == torch.float64 else 1) / (32 * config.num_warps)


def _fits_registers(config: KernelConfig, kernel: str, elementwise: bool, dtype: torch.dtype) -> bool:
    if elementwise and kernel == "wgrad":
        return elementwise_tap_run(config, dtype) >= ELEMENTWISE_SPACE_RUN
    sixteen = dtype in (torch.float16, torch.bfloat16)
    budget = "elementwise" if elementwise else "16-bit" if sixteen else "wide"
    if elementwise and sixteen and config.block_m >= RUN_ROWS and config.num_warps == 4:
        budget = "elementwise runs"
    return accumulator_registers(config, dtype) <= MAX_ACCUMULATOR_REGISTERS[budget]


@functools.cache
def config_space(kernel, family: str, elementwise: bool = False, dtype: torch.dtype = torch.float16) -> tuple:
    """Every config of a kernel's space (a descriptor or its name) that fits the
    registers, before any problem is known."""
    kernel = descriptor_of(kernel)
    axes = kernel.spaces[elementwise][family]
    names = list(axes)
    configs = (KernelConfig(**dict(zip(names, values))) for values in itertools.product(*axes.values()))
    fitting = (c for c in configs if _fits_registers(c, kernel.name, elementwise, dtype)
               and shared_bytes(c, dtype) <= SHARED_LIMIT[family])
    if elementwise:
        if kernel.name == "wgrad":
            return tuple(dataclasses.replace(c, tap_run=elementwise_tap_run(c, dtype)) for c in fitting)
        return tuple(fitting)
    configs = (with_tap_run(kernel, c, dtype, family) for c in fitting)
    return tuple(with_k_step(c, dtype, family) if kernel.name in ("fprop", "dgrad") else c for c in configs)


def with_tap_run(kernel, config: KernelConfig, dtype: torch.dtype, family: str) -> KernelConfig:
    """The config with the longest tap run its registers (the descriptor's rule) and the
    family's shared memory hold."""
    for run in range(kernel.most_tiles_per_step(config, dtype), 1, -1):
        longer = dataclasses.replace(config, tap_run=run)
        if shared_bytes(longer, dtype) <= SHARED_LIMIT[family]:
            return longer
    return config


#: Widest chunked K step (kernels' K_CHUNKS x BLOCK_K), in channels.
CHUNKED_STEP_LIMIT = 256


def with_k_step(config: KernelConfig, dtype: torch.dtype, family: str) -> KernelConfig:
    """The config with the widest chunked K step (descriptors.base.k_chunks) whose pipelined
    tiles the family's shared memory holds at its tile and stages, a multiple of BLOCK_K of
    at most CHUNKED_STEP_LIMIT channels; unchanged where that is less than two blocks, and
    for 32- and 64-bit operands, whose fragments take twice the registers (sm_80 TF32 chunked
    forwards of 96 channels spilled 12-20 bytes)."""
    if dtype.itemsize > 2:
        return config
    fits = SHARED_LIMIT[family] * config.block_k // shared_bytes(config, dtype)  # channels of K
    step = min(CHUNKED_STEP_LIMIT, fits) // config.block_k * config.block_k
    return dataclasses.replace(config, k_step=step) if step >= 2 * config.block_k else config


# ------------------------------------------------------------------------ pruning
def _next_pow2(value: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, value))))


def shared_bytes(config: KernelConfig, dtype: torch.dtype) -> int:
    """Shared memory of the pipelined operand tiles, num_stages deep (a tap run's further
    B tiles included: wgrad loads one per tap)."""
    return config.num_stages * (config.block_m + config.block_n * config.tap_run) * config.block_k * dtype.itemsize


def prune(kernel, spec: ConvSpec, dtype: torch.dtype, family: str) -> list[KernelConfig]:
    """The candidates worth running for one problem, in space order."""
    kernel, spec = descriptor_of(kernel).loop_problem(spec)
    rows, columns, reduction = kernel.extents(spec)
    candidates = []
    lanes = spec.elementwise_lanes if kernel.name != "wgrad" else 0
    largest_m, largest_n, largest_k = max(32, _next_pow2(rows)), max(16, _next_pow2(columns)), max(16, _next_pow2(reduction))
    for config in config_space(kernel, family, spec.elementwise_lanes > 0, dtype):
        if min(config.block_m, config.block_n, config.block_k) < 16:
            continue  # tl.dot needs every tile dimension >= 16
        if config.block_n < lanes:
            continue  # an elementwise column tile holds whole output channels' lanes
        if config.block_m > largest_m:
            continue  # tiles far larger than the problem: pure padding
        if config.block_n > largest_n:
            continue
        if config.block_k > largest_k:
            continue  # (wgrad's reduction is every position: its K tiles are never pruned here)
        if shared_bytes(config, dtype) > SHARED_LIMIT[family]:
            continue
        if config.split_k * config.block_k > reduction:
            continue  # splits that would be empty
        if (lanes and accumulator_registers(config, dtype) > MAX_ACCUMULATOR_REGISTERS["elementwise"]
                and kernel.output_run(spec, config, dtype.itemsize, True) == 1):
            continue  # tiles sized for output runs, on a problem that takes none
        candidates.append(config)
    return candidates


# ----------------------------------------------------------------------- heuristic
#: Streaming multiprocessors a family's programs spread over (H100 SXM, A100; fallback: an RTX 4090-class GPU).
SMS = {"sm_90": 132, "sm_80": 108, "fallback": 128}
#: Waves of programs that fill a GPU. A split-K launch without a split count in its config
#: takes at least FULL_WAVES waves on an H100 (the interpreter's family too), the split
#: that fills them best (descriptors/wgrad.py); the heuristic writes the count that does
#: so on other families' SMs (Descriptor.with_sms).
FULL_WAVES = 2

#: The heuristic's candidates per (kernel, family): (BLOCK_M, BLOCK_N, BLOCK_K, warps,
#: stages, issue-bound share[, share with a tap run]). The share is the static model of the tile's main loop,
#: compiled as a launch compiles (fp16, channels_last), the worst over a padded 3x3 layer
#: (128 channels, 28x28, batch 32) and a padded 3x3x3 one (64 channels, 16^3, batch 2).
#: Every entry compiled without spills and with cp.async pipelining on both; the tiles
#: that spilled 16-200 bytes on the 3x3x3 layer are left out (fprop sm_90 128x128x64 w4
#: and 32x64x64; dgrad 256x128x64 and 128x128x64 w4 on both archs, sm_80 128x64x64 w4 and
#: 64x64x16). The last entries of each table are thin tiles for 32-channel layers (a 32-wide
#: N or M, the K step of one 32-channel tap), so they no longer fall to 64x32x32 / 32x32x32;
#: 256x32x32 with 8 warps is left out: its 32x32 operand tile spread over 256 threads loads
#: 64 bits per thread (128 with 4 warps). On sm_90, 256x32 tiles with 4 warps too: 256x32x64
#: for fprop (64 -> 32 channels, 3x3x3: share 0.85 -> 1.0; dgrad's and sm_80's spill 600-1,300
#: bytes) and 256x32x32 for both (32 -> 32 channels, 3x3x3: 0.62 -> 0.88, 0.59 -> 0.86), and
#: wgrad has 2-warp tiles of 128 positions per step for 32 channels on a side (taken only for
#: layers of at most THIN_TILE_EXTENT channels a side). A wgrad entry may carry a second share:
#: the tile's loop with a run of 3 taps per program (descriptors/wgrad.py, tap_run: each K
#: step's position split and grad_output tile serve the run), used where the layer's kernel
#: width allows one; the first share is measured on the same layers one tap wide. Among equal
#: scores the heuristic takes the tile with the longer run: on sm_80, 128x64x64 with 8 warps
#: and a run of 3 loads fewer bytes per multiply-add than 128x128x64 (which fits no run), and
#: its loop is 0.7x a GEMM's per tensor-core instruction. sm_90's 32-wide fprop and dgrad tiles also
#: come with BLOCK_K 128 (8 HGMMA per step rather than 4 amortise the step's fixed cost):
#: HiFi-GAN up1's input gradient, 512 x 512 outputs over K = 4,096, takes 64x32 tiles to
#: fill 132 SMs, share 0.615 at BLOCK_K 64 and 0.82 at 128. sm_80 takes 32x64x128 before
#: 32x64x64 (both share 1.0 there; equal scores keep the table's order): a 3x3 layer's loop
#: per HMMA is then 1.06-1.13x a GEMM's rather than 1.33-1.38x. (sm_90's 32x64x128 is left
#: out: a 32-bit operand's pick scales it to 32x64x64, which spills 16-20 bytes on sm_90.)
#: Measured by `python -m tconv.perf.derive_shortlist` (rerun it when a main loop changes).
#: The fallback family uses sm_80's. sm_90's tables were then reordered and cut to 3 stages
#: by GPU times (perf.probe on an H100, ResNet-50's dense layers, fp16, channels_last,
#: CUDA-graph medians, 2026-11-24): 3 stages beat 4 in 92 of 134 tile-layer pairs (5%
#: geomean); 128x128x64 with 8 warps came within 4% of the fastest forward tile on every
#: layer (first among equal fprop scores); wgrad's 128x64x64 with 4 warps (one tap) within
#: 4% everywhere, so it comes first, and sm_90's wgrad table leaves out the tiles that took
#: 1.26-1.83x its time on every layer tried: 128x128x64 / 128x128x32 with 8 warps (heavier
#: splits) and 128x64x64 with 8 warps and a run of 3 taps (1.64-1.78x). 64x64x64 with a run
#: of 3 matched it (1.00-1.03x).
HEURISTIC_SHORTLIST: dict[tuple[str, str], tuple[tuple, ...]] = {
    ("fprop", "sm_90"): (
        (128, 128, 64, 8, 3, 1.000),
        (256, 128, 64, 8, 3, 1.000),
        (128, 256, 64, 8, 3, 1.000),
        (128, 128, 32, 4, 3, 1.000),
        (128, 64, 64, 4, 3, 1.000),
        (128, 64, 64, 8, 3, 1.000),
        (64, 128, 64, 4, 3, 1.000),
        (128, 64, 32, 4, 3, 1.000),
        (64, 64, 64, 4, 3, 1.000),
        (64, 64, 32, 4, 3, 0.771),
        (128, 32, 64, 4, 3, 0.859),
        (64, 32, 64, 4, 3, 0.571),
        (64, 32, 32, 4, 3, 0.386),
        (32, 32, 32, 4, 3, 0.225),
        (128, 16, 64, 4, 3, 0.432),
        (64, 16, 32, 4, 3, 0.188),
        (128, 128, 16, 8, 3, 0.810),
        (128, 64, 16, 4, 3, 0.727),
        (64, 64, 16, 4, 3, 0.416),
        (64, 32, 16, 4, 3, 0.200),
        (32, 16, 16, 4, 3, 0.061),
        (256, 32, 64, 8, 3, 0.853),
        (128, 32, 32, 4, 3, 0.604),
        (256, 32, 64, 4, 3, 1.000),
        (256, 32, 32, 4, 3, 0.889),
        (64, 32, 128, 4, 3, 0.703),
        (128, 32, 128, 4, 3, 0.948),
    ),
    ("dgrad", "sm_90"): (
        (128, 256, 64, 8, 3, 1.000),
        (128, 128, 64, 8, 3, 1.000),
        (128, 128, 32, 4, 3, 1.000),
        (128, 64, 64, 4, 3, 1.000),
        (128, 64, 64, 8, 3, 1.000),
        (64, 128, 64, 4, 3, 1.000),
        (128, 64, 32, 4, 3, 1.000),
        (64, 64, 64, 4, 3, 1.000),
        (64, 64, 32, 4, 3, 0.719),
        (128, 32, 64, 4, 3, 0.831),
        (64, 32, 64, 4, 3, 0.557),
        (32, 64, 64, 4, 3, 0.621),
        (64, 32, 32, 4, 3, 0.364),
        (32, 32, 32, 4, 3, 0.239),
        (128, 16, 64, 4, 3, 0.418),
        (64, 16, 32, 4, 3, 0.182),
        (128, 128, 16, 8, 3, 0.810),
        (128, 64, 16, 4, 3, 0.727),
        (64, 64, 16, 4, 3, 0.421),
        (64, 32, 16, 4, 3, 0.208),
        (32, 16, 16, 4, 3, 0.062),
        (256, 32, 64, 8, 3, 0.826),
        (128, 32, 32, 4, 3, 0.587),
        (256, 32, 32, 4, 3, 0.859),
        (64, 32, 128, 4, 3, 0.634),
        (128, 32, 128, 4, 3, 0.886),
    ),
    ("wgrad", "sm_90"): (
        (128, 64, 64, 4, 3, 1.000),
        (128, 64, 32, 4, 3, 1.000),
        (64, 128, 64, 4, 3, 0.901),
        (64, 64, 64, 4, 3, 0.723, 1.000),
        (64, 64, 32, 4, 3, 0.598, 1.000),
        (128, 32, 64, 4, 3, 0.853, 1.000),
        (64, 32, 64, 4, 3, 0.492, 0.990),
        (64, 32, 32, 4, 3, 0.376, 0.774),
        (32, 32, 32, 4, 3, 0.232, 0.358),
        (64, 16, 32, 4, 3, 0.188, 0.390),
        (32, 16, 32, 4, 3, 0.119, 0.222),
        (32, 64, 64, 4, 3, 0.358, 0.683),
        (32, 32, 64, 4, 3, 0.296, 0.471),
        (128, 32, 32, 4, 3, 0.674, 1.000),
        (32, 32, 128, 2, 3, 0.395, 0.655),
        (32, 64, 128, 2, 3, 0.453),
        # 16 input channels a tap (80 = 5 x 16), a whole A tile per step
        (128, 16, 64, 4, 3, 0.508, 0.946),
    ),
    ("fprop", "sm_80"): (
        (256, 128, 64, 8, 3, 1.000),
        (128, 256, 64, 8, 3, 1.000),
        (128, 128, 64, 8, 3, 1.000),
        (128, 128, 64, 4, 3, 1.000),
        (128, 128, 32, 4, 3, 1.000),
        (128, 64, 64, 4, 3, 1.000),
        (128, 64, 64, 8, 3, 1.000),
        (64, 128, 64, 4, 3, 1.000),
        (128, 64, 32, 4, 3, 1.000),
        (64, 64, 64, 4, 3, 1.000),
        (64, 64, 32, 4, 3, 1.000),
        (128, 32, 64, 4, 3, 1.000),
        (64, 32, 64, 4, 3, 0.955),
        (32, 64, 128, 4, 3, 1.000),  # before 32x64x64: equal shares take the deeper K step
        (32, 64, 64, 4, 3, 0.962),
        (64, 32, 32, 4, 3, 0.660),
        (32, 32, 32, 4, 3, 0.372),
        (128, 16, 64, 4, 3, 0.790),
        (64, 16, 32, 4, 3, 0.327),
        (128, 128, 16, 8, 3, 1.000),
        # 2 stages: at 3, 48-channel 3x3x3 and 16-per-group k128 forwards spilled 8 and 60 bytes
        # (118 and 151 instructions per 16 HMMA; at 2: 86 and 116, none; Inception's 5x5 93 -> 80)
        (128, 64, 16, 4, 2, 0.914),
        (64, 64, 16, 4, 3, 0.598),
        (64, 32, 16, 4, 3, 0.305),
        (32, 16, 16, 4, 3, 0.095),
        (256, 32, 64, 8, 3, 1.000),
        (128, 32, 32, 4, 3, 1.000),
        (64, 32, 128, 4, 3, 1.000),
        (128, 32, 128, 4, 3, 1.000),
    ),
    ("dgrad", "sm_80"): (
        (128, 256, 64, 8, 3, 1.000),
        (128, 128, 64, 8, 3, 1.000),
        (128, 128, 32, 4, 3, 1.000),
        (128, 64, 64, 8, 3, 1.000),
        (64, 128, 64, 4, 3, 1.000),
        (128, 64, 32, 4, 3, 1.000),
        (64, 64, 64, 4, 3, 1.000),
        (64, 64, 32, 4, 3, 1.000),
        (128, 32, 64, 4, 3, 1.000),
        (64, 32, 64, 4, 3, 0.941),
        (32, 64, 128, 4, 3, 1.000),  # before 32x64x64: equal shares take the deeper K step
        (32, 64, 64, 4, 3, 1.000),
        (64, 32, 32, 4, 3, 0.621),
        (32, 32, 32, 4, 3, 0.386),
        (128, 16, 64, 4, 3, 0.780),
        (64, 16, 32, 4, 3, 0.344),
        (128, 128, 16, 8, 3, 1.000),
        # 2 stages: 3 spilled 12 bytes on EfficientNet-B0's 672 -> 112 1x1 input gradient, whose
        # 112-channel K takes 16-wide steps (2 stages: 88 instructions per 16 HMMA, 3: 115)
        (128, 64, 16, 4, 2, 0.977),
        (64, 32, 16, 4, 3, 0.320),
        (32, 16, 16, 4, 3, 0.105),
        (256, 32, 64, 8, 3, 1.000),
        (128, 32, 32, 4, 3, 0.934),
        # 2 warps for 16 input channels a tap (80 = 5 x 16) in small layers: twice each warp's
        # tensor-core work per step (HMMA; on sm_90 2 warps would forgo HGMMA, which needs 4)
        (128, 16, 64, 2, 3, 0.973),
        (64, 32, 128, 4, 3, 1.000),
        (128, 32, 128, 4, 3, 1.000),
    ),
    ("wgrad", "sm_80"): (
        (128, 128, 64, 8, 3, 1.000),
        (128, 128, 32, 8, 3, 1.000),
        (128, 64, 64, 4, 3, 1.000),
        (128, 64, 32, 4, 3, 1.000),
        (64, 128, 64, 4, 3, 1.000),
        (64, 64, 64, 4, 3, 1.000, 1.000),
        (64, 64, 32, 4, 3, 1.000, 1.000),
        (128, 32, 64, 4, 3, 1.000, 1.000),
        (64, 32, 64, 4, 3, 0.889, 1.000),
        (64, 32, 32, 4, 3, 0.681, 1.000),
        (32, 32, 32, 4, 3, 0.464, 0.857),
        (64, 16, 32, 4, 3, 0.421, 0.932),
        (32, 16, 32, 4, 3, 0.235, 0.495),
        (32, 64, 64, 4, 3, 0.656, 1.000),
        (32, 32, 64, 4, 3, 0.520, 0.975),
        (128, 32, 32, 4, 3, 1.000, 1.000),
        (32, 32, 128, 2, 3, 0.713, 1.000),
        (32, 64, 128, 2, 3, 0.853),
        (128, 64, 64, 8, 3, 1.000, 1.000),
        # 16 input channels a tap (80 = 5 x 16), a whole A tile per step
        (128, 16, 64, 4, 3, 0.970, 1.000),
    ),
}


#: Stages of the heuristic's float64 picks (correctness, no speed target): at 3, ptxas held
#: sm_90's 64x16x16 column GEMM of DeepSpeech's one-channel input gradient to 64 registers
#: and spilled 24 bytes; at 2 it took 71 and spilled none.
FLOAT64_STAGES = 2
#: Stages of sm_80's 32-bit picks of the column GEMM (thin transposed convolutions, their
#: weight read in place): at 3, ptxas held ViT-B/16's patch-embedding input gradient
#: (768 columns, TF32, 32x64x64 with 4 warps) to 96 registers and spilled 24 bytes; at 2
#: it spilled none (151 loop instructions per 32 HMMA, share 1.0).
COLUMNS_FLOAT32_STAGES_SM80 = 2
#: Accumulator registers per thread of the heuristic's 32- and 64-bit picks: at 32
#: (the space's bound) a few layers (TF32 3x3x3 on sm_80, float64 7x7) spill 24 bytes.
HEURISTIC_WIDE_ACCUMULATOR = 16
#: Accumulator registers per thread of fprop and dgrad picks whose output is channels-first
#: (layout "contiguous"; the main loop reads channels-last copies either way). The epilogue
#: then stores one element per address: positions are not provably contiguous, so every
#: accumulator register carries a 64-bit address, and 64 spill (sm_90 fp16, dcgan: 128x64x64
#: w4 552 bytes, 128x128x64 w8 328 bytes; dgrad on resnet50, 128x256x64 w8 9,252 bytes,
#: 64x128x64 w4 800 bytes; 0 in channels_last). wgrad writes its fp32 workspace.
CHANNELS_FIRST_OUTPUT_ACCUMULATOR = 32
#: Gathered main loops (channels-first operands read in place: one-element loads, no
#: cp.async) keep tiles whose K step is at most 64 bytes, with at most 32 accumulator
#: registers and 64 rows: larger ones spill (128x32x32 dgrad 360 bytes on a 3x3x3 layer:
#: each row's gathered addresses and masks live in registers).
GATHERED_LIMITS = {"k_step_bytes": 64, "accumulator": 32, "block_m": 64}
#: sm_80 forward tiles of 128 fp32 accumulator registers a thread (256x128 and 128x256 with 8
#: warps, 128x128 with 4) are left out for loops of more than 16 taps: there 256x128 and
#: 128x128 spilled (DeepBench's 5x5 speech layers, 64 -> 128 channels at 80x350: 64-80 bytes
#: and 80-112; a 7x7 there: 48) and 128x256 took 240 registers, where the suites' 3x3 and 4x4
#: loops fit. sm_90 compiled them without spills.
LONG_TAP_LOOP = {"accumulator": 128, "taps": 16}
#: sm_90 input-gradient tiles of 128 fp32 accumulator registers a thread (128x256 with 8 warps)
#: are left out for loops over one kernel row (1-d, 1xk), whose tap offsets are carried
#: (kernels/dgrad.py, CARRIED): a 1-d k7 and k3 d3 layer at 512 and 256 channels took 255
#: registers and spilled 248-256 bytes there, 128x128x64 with 8 warps 208 and none. Also
#: for every 1-d layer, whose output torch keeps channels-first (no 3-d memory format), so
#: the epilogue stores element by element: a pointwise (k1) conv1d's at 256 <-> 512
#: channels spilled 112-128 bytes (255 registers), where the 2-d 1x1 took 222-236 and none.
CARRIED_DGRAD_ACCUMULATOR_SM90 = 128
#: Share of tensor peak the gathered main loops reach, per family and kernel. sm_90:
#: measured on an H100 (tconv bench, ResNet-50 at batch 64, fp16, CUDA-graph replay of every
#: pass that gathered: 11 forward, 8 input-gradient and 11 weight-gradient 1x1 and 3x3 s2
#: layers, the stem left out; geomean, ranges 0.047-0.092, 0.028-0.048 and 0.007-0.046, as
#: `python -m perf.timing_table` prints them from the run's CSV). Their
#: issue-bound share was 0.38 / 0.34 / 0.25: unpipelined one-element loads leave the load
#: latency exposed, so these loops run at a fifth to a ninth of it. sm_80: the issue-bound share
#: (geomean over the compute-bound layers of the resnet50, sd_vae, dcgan and unet3d suites, fp16,
#: tconv bench --layouts contiguous); no A100 has timed them, so it is still an upper bound.
GATHERED_SHARE = {"sm_90": {"fprop": 0.074, "dgrad": 0.039, "wgrad": 0.029},
                  "sm_80": {"fprop": 0.74, "dgrad": 0.66, "wgrad": 0.51}}
#: The GPU whose roofline stands for a family in the layout decision.
FAMILY_GPU = {"sm_90": "H100 SXM", "sm_80": "A100 SXM 80GB", "fallback": "A100 SXM 80GB"}


def aligned_channels(spec: ConvSpec, dtype: torch.dtype) -> bool:
    """Whether every channel run of the operands starts 16-byte aligned in channels_last
    (channel counts, total and per group, a multiple of 16 bytes). Otherwise the loads are
    one element wide, as in a gathered loop, and larger tiles spill (a 150-channel conv1d,
    k=7, sm_90: 128x32x32 168 bytes, 256x32x64 1,280 bytes), so GATHERED_LIMITS apply."""
    element = torch.empty((), dtype=dtype).element_size()
    counts = (spec.in_channels, spec.out_channels, spec.in_channels_per_group, spec.out_channels_per_group)
    return all(count * element % 16 == 0 for count in counts)


#: What a zero-padded channel copy rounds channel counts up to (elements): a multiple of 16
#: keeps every row 32 bytes aligned in 16-bit storage and lets Triton's specialisation see
#: the counts and strides as divisible by 16 (no stride units).
PADDED_CHANNELS_MULTIPLE = 16
#: The channel counts each pass's main loop loads along (fprop: its reduction's; dgrad: its
#: reduction's and its weight's columns; wgrad: both of its operands').
LOADED_CHANNELS = {"fprop": ("in_channels",), "dgrad": ("in_channels", "out_channels"),
                   "wgrad": ("in_channels", "out_channels")}


def channel_padded(kernel_name: str, spec: ConvSpec, element_size: int) -> ConvSpec:
    """`spec` with each channel count a pass's main loop loads along (LOADED_CHANNELS) whose
    rows would not start 8-byte aligned rounded up to PADDED_CHANNELS_MULTIPLE."""
    counts = {name: getattr(spec, name) for name in LOADED_CHANNELS.get(kernel_name, ())}
    multiple = PADDED_CHANNELS_MULTIPLE
    return dataclasses.replace(spec, **{name: -(-count // multiple) * multiple for name, count in counts.items()
                                        if count * element_size % 8})


@functools.lru_cache(maxsize=4096)
def padded_channels(kernel, spec: ConvSpec, dtype: torch.dtype, family: str = INTERPRETER_FAMILY) -> ConvSpec | None:
    """The problem a compute-bound dense pass (one group of 16 or more channels) loads when a
    channel count it loads along leaves rows less than 8 bytes aligned (a 150-channel fp16
    layer: 32-bit loads at best), else None: channel_padded(spec). The pass then reads
    zero-padded channels-last copies of its operands (descriptors/layout.py,
    PaddedChannelsCopy) and stores only the real channels; the zeros add nothing to any
    sum. Memory-bound passes read their operands as given: there the copies' bytes would
    cost more than the narrower loads."""
    name = descriptor_of(kernel).name
    element = torch.empty((), dtype=dtype).element_size()
    if spec.groups != 1 or min(spec.in_channels, spec.out_channels) < THIN_CHANNELS or element > 4:
        return None
    padded = channel_padded(name, spec, element)
    if padded == spec:
        return None
    compute, memory = roofline_seconds(spec, dtype, family)
    return padded if compute > memory else None


def roofline_seconds(spec: ConvSpec, dtype: torch.dtype, family: str) -> tuple[float, float]:
    """(tensor-core time at peak, minimum bytes' time) of a pass on the family's GPU (FAMILY_GPU)."""
    gpu, name = GPUS[FAMILY_GPU[family]], str(dtype).removeprefix("torch.")
    return 2 * gemm_macs(spec) / (gpu.tensor_tflops[name] * 1e12), min_bytes(spec, name) / (gpu.bandwidth_tbs * 1e12)


@functools.lru_cache(maxsize=4096)
def copies_pay(kernel, spec: ConvSpec, dtype: torch.dtype, family: str = INTERPRETER_FAMILY,
               copied: tuple[str, ...] | None = None) -> bool:
    """Whether a dense pass given channels-first operands (`copied`, by default every one of
    the kernel's channels_last_operands) copies them channels-last first
    (tconv.descriptors.layout) rather than gathering them in place, on the family's roofline.

    With C the tensor-core time at peak, M the minimum bytes' time and L the copies' time
    (each copied operand read and written once): copy when the pass is compute-bound
    (C > M: there the loop is what counts, and the gathered one, unpipelined with
    one-element loads, is far slower than the channels-last one), or when the copy's
    estimate max(C, M) + L beats the gather's max(C / GATHERED_SHARE, M). On sm_90 that
    share is measured (about 0.03-0.07), so most memory-bound passes copy too: a gathered
    1x1 layer ran at 2-18x its roofline time on an H100. A memory-bound forward whose
    groups pack taps (2-15 channels, ConvSpec.packed_channels) gathers: its channels-last
    loop gathers (tap, channel) pairs as well (ResNet-50's stem forward on the H100:
    0.267 ms gathered, 0.265 ms given channels-last input).
    """
    descriptor, spec = descriptor_of(kernel).loop_problem(spec)
    if spec.elementwise_lanes or not descriptor.channels_last_operands:
        return False
    gpu = GPUS[FAMILY_GPU[family]]
    element = torch.empty((), dtype=dtype).element_size()
    shapes = descriptor.operand_shapes(spec)
    if copied is None:  # contiguous operands: channels innermost already when one channel or one position
        copied = tuple(o for o in descriptor.channels_last_operands if shapes[o][1] > 1 and math.prod(shapes[o][2:]) > 1)
    copied_bytes = sum(2 * math.prod(shapes[operand]) * element for operand in copied)
    compute, memory = roofline_seconds(spec, dtype, family)
    copies = copied_bytes / (gpu.bandwidth_tbs * 1e12)
    gathered_share = GATHERED_SHARE.get(family, GATHERED_SHARE["sm_80"])[descriptor.name]
    if compute > memory:
        return True
    if descriptor.name == "fprop" and descriptor.packed_channels(spec):  # its channels-last loop gathers too
        return False
    return max(compute, memory) + copies < max(compute / gathered_share, memory)


#: Useful multiply-adds from which an elementwise pass copies its weight first, so that its
#: per-tap weight loads are vector-wide (descriptors/layout.py, WeightColumnsCopy). Static
#: model, MobileNetV2's 144-channel 3x3 on sm_90: the loop goes from 103 to 85 instructions
#: per step, about 20 to 24 multiply-adds per clock per SM, so an H100 saves ~3.5e-14 s per
#: multiply-add; an extra launch is assumed to cost ~2 us (EXTRA_LAUNCH_SECONDS), repaid
#: from about 6e7 multiply-adds. Smaller passes (batch-1 inference) keep one launch.
WEIGHT_COPY_MIN_MACS = 2**26
#: What a memory-bound elementwise pass is assumed to pay for one more launch: an assumption,
#: not a measurement (no GPU has timed one).
EXTRA_LAUNCH_SECONDS = 2e-6


#: Main-loop instructions per K step of the elementwise forward and input-gradient loops
#: at their heuristic tile (64 positions x 32 columns, 4 warps: one tap, 2,048 multiply-
#: adds), as `tconv bench --suite mobilenet_v2_dw` compiles them for sm_90 (sm_80 within 2%)
#: on the 144-channel 3x3 at 56x56 and 28x28: (channels-first activations, 17 one-element
#: loads per step; channels-last ones, two 128-bit loads, and the weight's 128-bit load,
#: copied, WEIGHT_COPY_MIN_MACS, or staged, descriptors/layout.py weight_stage; with the
#: weight read in torch's layout, 8 one-element loads, it was 94 / 98).
ELEMENTWISE_STEP_INSTRUCTIONS = {"fprop": (163, 76), "dgrad": (181, 81)}
#: The channels-last loops' count in output runs (descriptors/base.py output_run), per 2,048
#: multiply-adds, by (run, stride along w), as `tconv bench` compiles the depthwise suites for
#: sm_90 (sm_80 within 2%; forwards and input gradients alike): 3x3 and 5x5 at stride 1 in runs
#: of 4 (128x32 tiles: 249 per 3 taps, 391 per 5), forwards at stride 2 (291-300, 448), and
#: runs of 2 at 64x32 (158 per 3 taps, 261 per 5, a 7x7's 371 per 7).
ELEMENTWISE_RUN_STEP_INSTRUCTIONS = {(4, 1): 41, (4, 2): 48, (2, 1): 53}
#: The channels-first (NCHW) loops' count in lanes (descriptors/base.py span_run: a run's input
#: columns taken from vectors along w), per 2,048 multiply-adds, by (run, stride along w), as
#: `tconv bench` compiles MobileNetV2's 3x3 forwards and input gradients for sm_90 at the
#: gathered 64x32 tile (the input gradient's, 1-3 more, where both take runs; sm_80 within 3%):
#: runs of 8 at 56x56 (134 per 3 taps), 4 at 28x28 (169), 2 at 14x14 (239), and forwards at
#: stride 2 in runs of 4 (158) and 2 (197). 5x5s issue fewer per multiply-add (runs of 4 and 2
#: at stride 1: 46 and 58, at stride 2: 71).
ELEMENTWISE_LANE_STEP_INSTRUCTIONS = {(8, 1): 45, (4, 1): 56, (2, 1): 80, (4, 2): 53, (2, 2): 66}
ELEMENTWISE_STEP_WARP_MACS = 2048 / 4
#: Dense 16-bit tensor-core multiply-adds per clock per SM, which with the GPU's tensor peak
#: gives its SM-clocks per second (4 warp instructions issue per SM-clock).
TENSOR_MACS_PER_CLOCK = {"sm_90": 2048, "sm_80": 1024, "fallback": 1024}


def elementwise_copy_pays(kernel, spec: ConvSpec, dtype: torch.dtype, family: str = INTERPRETER_FAMILY,
                          input: torch.Tensor | None = None) -> bool:
    """Whether an elementwise forward or input-gradient pass given channels-first activations
    (`input`, else a contiguous one) copies them channels-last first (its loop then loads 128
    bits along channels, with 40-46% fewer instructions than the gather, ELEMENTWISE_STEP_INSTRUCTIONS,
    and in output runs 67-77% fewer, ELEMENTWISE_RUN_STEP_INSTRUCTIONS) rather than reading
    them in place, in runs of lanes where it can (ELEMENTWISE_LANE_STEP_INSTRUCTIONS,
    descriptors/base.py span_run). Static model on the family's GPU:
    the loop takes max(issue time, minimum bytes' time), the issue time being its steps'
    warp instructions at 4 per SM-clock; the copy adds its bytes (the activations read and
    written) at peak bandwidth, and its launches (EXTRA_LAUNCH_SECONDS; the weight's copy
    too when it pays). A stride-1 depthwise 3x3 reads in place in runs of lanes (MobileNetV2's
    144 channels at 56x56, batch 64, H100: ~34.5 us, its minimum bytes', against ~73 us copied
    in output runs); one whose outputs are 7 a line (no run of lanes) copies, a stride-2 one,
    whose input is 4x its output, does not, nor do small passes (the launch). The counts are
    the 16-bit loops' (float32 copies move twice the bytes). No GPU has timed either loop. Weight gradients (two operands to copy,
    29-39% fewer instructions a tap than their element-wise gather) gather in place, mostly in vector chunks of
    positions (descriptors/wgrad.py position_lanes: fewer instructions than channels-last), and so do loops of
    several lanes (small groups: not compiled for this model)."""
    descriptor = descriptor_of(kernel)
    if descriptor.name not in ELEMENTWISE_STEP_INSTRUCTIONS or spec.elementwise_lanes != 1:
        return False
    gpu = GPUS[FAMILY_GPU[family]]
    element = torch.empty((), dtype=dtype).element_size()
    warp_issue_rate = 4 * gpu.tensor_tflops["float16"] * 1e12 / (2 * TENSOR_MACS_PER_CLOCK[family])
    # The channels-last loop's weight loads are vector-wide, copied (a launch more) or staged
    # by each program (descriptors/layout.py weight_stage).
    gathered, channels_last = ELEMENTWISE_STEP_INSTRUCTIONS[descriptor.name]
    # (the gathered pass's loop in lanes, where it takes them: `input`, or a contiguous one)
    if input is None:
        input = torch.empty(descriptor.operand_shapes(spec)["input"], dtype=dtype, device="meta")
    lanes = descriptor.span_run(spec, _elementwise_config(descriptor, spec, dtype, True), input)
    gathered = ELEMENTWISE_LANE_STEP_INSTRUCTIONS.get((lanes, spec.stride[-1]), gathered)
    # (the copied pass's loop in output runs, where its tile takes them)
    run = descriptor.output_run(spec, _elementwise_config(descriptor, spec, dtype), element, True)
    channels_last = ELEMENTWISE_RUN_STEP_INSTRUCTIONS.get((run, spec.stride[-1]), channels_last)
    launches = 2 if weight_copy_pays(spec) else 1
    warp_steps = gemm_macs(spec) / ELEMENTWISE_STEP_WARP_MACS
    _, memory = roofline_seconds(spec, dtype, family)
    activations = math.prod(descriptor.operand_shapes(spec)["input"]) * element
    copy = 2 * activations / (gpu.bandwidth_tbs * 1e12) + launches * EXTRA_LAUNCH_SECONDS
    return max(warp_steps * channels_last / warp_issue_rate, memory) + copy < max(warp_steps * gathered / warp_issue_rate,
                                                                                 memory)


#: Largest columns workspace (bytes) a transposed convolution with few output channels
#: allocates at once (descriptors/columns.py): larger batches run in slices of images.
#: ResNet-50's stem input gradient (fp32 columns of 3 x 49 per 112x112 position, 7.4 MB an
#: image) takes 32 images per slice (236 MB), where batch 64 would hold 472 MB at once and
#: batch 256 1.9 GB; a slice is still 400k GEMM rows, tens of waves on any GPU.
COLUMNS_WORKSPACE_LIMIT = 2**28


def weight_copy_pays(spec: ConvSpec) -> bool:
    """Whether an elementwise pass is large enough to copy its weight (WEIGHT_COPY_MIN_MACS)."""
    return spec.useful_macs >= WEIGHT_COPY_MIN_MACS


#: Families whose tensor cores take float32 (TF32) operands K-major only: sm_90's wgmma (its
#: 16-bit operands may be either way round).
TF32_K_MAJOR_FAMILIES = ("sm_90",)
#: What a K-major weight saves a TF32 input-gradient loop on sm_90, in units of its tensor-core
#: time at peak (static model: issue-bound share 0.69 -> 0.84 on 3x3 layers, 1/0.69 - 1/0.84,
#: 185 -> 153 instructions per 8 HGMMA on ResNet-50's at 14x14; 1x1 layers 0.81 -> 1.0).
K_MAJOR_WEIGHT_SAVING = 0.25


def k_major_weight(kernel, spec: ConvSpec, dtype: torch.dtype, family: str, copied: bool) -> bool:
    """Whether a dense input-gradient pass (the kernel of a transposed convolution's forward
    too) reads its weight [A, B, *kernel] K-major, stored [B, *kernel, A] (descriptors/layout.py,
    WeightColumnsCopy): float32 on a TF32_K_MAJOR_FAMILIES family with TF32 allowed
    (torch.backends.cudnn.allow_tf32, as the kernels' precision). Its K is A, the forward's
    output channels, which torch's layouts keep apart (channels-last: B innermost), so wgmma's
    K-major tiles were gathered by 32-bit asynchronous copies. Where the weight is copied
    anyway (`copied`: a channels-first weight the pass copies) the copy only changes order;
    otherwise the pass must be large enough that K_MAJOR_WEIGHT_SAVING of its tensor-core time
    repays the launch and the weight's bytes. A's count must be a multiple of 16, so that
    the copy's rows stay 16-byte aligned as the launch specialisation sees them."""
    descriptor = descriptor_of(kernel)
    if (descriptor.name != "dgrad" or spec.elementwise_lanes or family not in TF32_K_MAJOR_FAMILIES
            or dtype != torch.float32 or not torch.backends.cudnn.allow_tf32 or spec.in_channels_per_group % 16):
        return False
    if copied:
        return True
    gpu = GPUS[FAMILY_GPU[family]]
    compute, _ = roofline_seconds(spec, dtype, family)
    weight_bytes = math.prod(descriptor.operand_shapes(spec)["weight"]) * dtype.itemsize
    return compute * K_MAJOR_WEIGHT_SAVING > EXTRA_LAUNCH_SECONDS + 2 * weight_bytes / (gpu.bandwidth_tbs * 1e12)


#: Largest rows and columns (channels a side) for which the heuristic takes a 2-warp tile,
#: unless the layer is small: its 64x64 output tiles make at most SMALL_LAYER_WAVES waves
#: (there the tile is sized for waves, and 2 warps double each warp's work per step).
THIN_TILE_EXTENT = 64
SMALL_LAYER_WAVES = 2
#: Executed multiply-adds the heuristic accepts when any candidate stays within them: first
#: MAX_TILE_WASTE times the GEMM view's (tile and split padding only: taps that land in the
#: zero padding are work every implicit GEMM does), else MAX_WORK_RATIO times the useful
#: ones. The share is an upper bound; padded work is certain tensor-core time. (A 320-channel
#: 3x3x3 weight gradient took 128x128 tiles, 1.44x its GEMM view, on a wave-count tie.)
MAX_TILE_WASTE = 1.05
MAX_WORK_RATIO = 1.25
#: ...unless the best such candidate scores below this share of the best of all: 48 channels
#: a side fit only 16-wide tiles with no padding (3x3x3, sm_90: 32x16x16, share 0.061, one
#: HGMMA a step), where 128x64x16 pads N by a third at share 0.67 (score 0.06 against 0.46).
LEAN_SCORE_FLOOR = 0.5  # (compute-bound layers of 16 or more channels a group, both sides)


def feed_share(config: KernelConfig, family: str) -> float:
    """Share of tensor peak that shared memory can feed a tile at on sm_90: each K step
    writes both operand tiles there (the asynchronous copy) and wgmma reads them back,
    2 x (BLOCK_M + BLOCK_N) x BLOCK_K elements at 128 bytes per clock per SM, against
    BLOCK_M x BLOCK_N x BLOCK_K multiply-adds at 2,048 16-bit (1,024 TF32) per clock: the
    same ratio for either. 64x64 tiles get 0.5, 128x64 0.67, 128x128 and larger 1. Measured
    on an H100 (perf.probe, ResNet-50's dense layers, fp16, 2026-11-24), 64x64 and 128x64
    tiles ran at about 0.6 and 0.8 of 128x128's rate per program; the issue-bound share
    alone scored them equal. Other families: 1, and the heuristic applies it to 16-bit
    operands only (TF32 was not measured)."""
    if family != "sm_90":
        return 1.0
    return min(1.0, config.block_m * config.block_n / (64 * (config.block_m + config.block_n)))


def _wave_efficiency(programs: int, sms: int) -> float:
    """Busy share of the SMs over the waves a grid takes (1 for full waves)."""
    return programs / (math.ceil(programs / sms) * sms)


def _tile_for(count: int, largest: int) -> int:
    """The largest power-of-two tile (16..largest) that pads `count` by at most 1/8."""
    tile = largest
    while tile > 16 and math.ceil(count / tile) * tile > 1.125 * count:
        tile //= 2
    return tile


#: Taps from which an elementwise launch keeps no per-row tap bits (32 fit one int32 word) and,
#: when padded, checks its rows' bounds at every step instead, which holds more registers per
#: row. (The 8-byte spill it answers was measured before unpadded forwards masked rows once;
#: DeepSpeech's unpadded 5x20 forward now fits 64 rows, 146 registers, yet still takes 32.)
ELEMENTWISE_BOUNDS_TAPS = 32


def _elementwise_config(descriptor, spec: ConvSpec, dtype: torch.dtype, gathered: bool = False) -> KernelConfig:
    """Elementwise tiles (no tensor cores, so no issue-bound share to rank by); fprop and
    dgrad column tiles hold whole output channels' lanes, at most 2,048 elements. A weight
    gradient takes the most rows (of 64, 32, 16) among the tiles whose tap run is longest
    (elementwise_tap_run, descriptors/wgrad.py tap_run: one grad_output tile a K step for
    every tap of the run)."""
    rows, columns, _ = descriptor.extents(spec)
    lanes, taps = spec.elementwise_lanes, math.prod(spec.kernel_size)
    wide = dtype == torch.float64
    positions_k = 32 if dtype in (torch.float16, torch.bfloat16) else 16
    if descriptor.name == "wgrad":
        largest = _tile_for(rows, 32 if wide else 64)
        tiles = [KernelConfig(largest >> halved, 16, positions_k, num_stages=2)
                 for halved in range(largest.bit_length() - 4)]  # largest, ..., 16 rows
        tiles = [dataclasses.replace(config, tap_run=elementwise_tap_run(config, dtype)) for config in tiles]
        longest = max(descriptor.tiles_per_step(spec, config) for config in tiles)
        return next(config for config in tiles if descriptor.tiles_per_step(spec, config) == longest)
    block_n = max(lanes, _tile_for(columns, 32))
    # 32 rows when a column tile holds one or two output channels' 32+ lanes (the gathered
    # (NCHW) 3x3x3 input gradient of a one-channel volume spilled at 64 on sm_80), and from
    # ELEMENTWISE_BOUNDS_TAPS taps on (DeepSpeech's one-channel 5x20 forward spilled 8 bytes at 64 on sm_90)
    block_m = 32 if wide or rows <= 32 or block_n > 32 or lanes >= 32 or taps >= ELEMENTWISE_BOUNDS_TAPS else 64
    warps = 8 if wide and block_n > 32 else 4  # within the elementwise register budget
    config = KernelConfig(block_m, block_n, 16, num_warps=warps, num_stages=2)
    # Output runs (forwards and input gradients, descriptors/base.py output_run) give each
    # thread a 16-byte vector of a column only in twice the positions: runs of 4 at 128 rows
    # (not 64), of 2 (a 7x7) at 64. (`gathered`: channels-first activations read in place take no runs.)
    longer = dataclasses.replace(config, block_m=2 * block_m)
    element = torch.empty((), dtype=dtype).element_size()
    # (16-bit only: a float32 128x16 input gradient in runs of 4 spilled 8 bytes on sm_80.)
    if (descriptor.name in ("fprop", "dgrad") and block_m <= 64 and not gathered and element == 2
            and descriptor.output_run(spec, longer, element, True) > descriptor.output_run(spec, config, element, True)):
        return longer
    return config


@functools.lru_cache(maxsize=4096)
def heuristic_config(kernel, spec: ConvSpec, dtype: torch.dtype, family: str = INTERPRETER_FAMILY,
                     layout: str = "channels_last") -> KernelConfig:
    """A deterministic config from shape, dtype and architecture (no benchmarking).

    Among the shortlist's tiles (for 32- and 64-bit inputs with BLOCK_K scaled to the same
    bytes per step) that the problem's pruned space holds (deepest pipeline that fits the
    dtype's shared memory) and that execute at most MAX_TILE_WASTE times the GEMM view's
    multiply-adds (when any does, scoring at least LEAN_SCORE_FLOOR of the best; else at most MAX_WORK_RATIO
    times the useful ones, likewise), the one with the highest
    issue-bound share (on sm_90 16-bit forward and input-gradient tiles, at most
    feed_share; of equal scores the higher share) x wave efficiency on the family's SMs x
    useful / executed multiply-adds: the static model's best loop, given enough programs
    to fill the GPU and little padding. Given channels-first operands (`layout`
    "contiguous"), a pass whose copies pay (copies_pay) reads channels-last copies, and its
    fprop or dgrad output,
    written channels-first, bounds the accumulator (CHANNELS_FIRST_OUTPUT_ACCUMULATOR);
    otherwise its loops gather in place and keep within GATHERED_LIMITS, as do loops whose
    channel runs are not 16-byte aligned (aligned_channels) unless the pass pads them
    (padded_channels: the config is then the padded problem's).
    Depthwise layers (no tensor cores) keep elementwise tiles sized by their channels. A
    kernel that runs another's loop on another problem (Descriptor.loop_problem: the column
    GEMM of a thin transposed convolution) takes that loop's config for that problem.
    CPU tensors make the same choice as an H100 (INTERPRETER_FAMILY).
    """
    descriptor, spec = descriptor_of(kernel).loop_problem(spec)
    if spec.elementwise_lanes:
        gathered = (layout != "channels_last" and spec.in_channels > 1  # (one channel: any layout reads it in place)
                    and not elementwise_copy_pays(descriptor, spec, dtype, family))
        return _elementwise_config(descriptor, spec, dtype, gathered)
    rows, columns, _ = descriptor.extents(spec)
    padded = padded_channels(descriptor.name, spec, dtype, family)
    spec = padded or spec  # (the loop then loads zero-padded copies, aligned)
    table = HEURISTIC_SHORTLIST[(descriptor.name, "sm_80" if family == "fallback" else family)]
    candidates = prune(descriptor, spec, dtype, family)
    gathered = (layout != "channels_last" and not copies_pay(descriptor.name, spec, dtype, family)) or not (
        padded or aligned_channels(spec, dtype))
    # A small layer: 64x64 output tiles make at most SMALL_LAYER_WAVES waves (wgrad splits K to fill the GPU).
    small = descriptor.name != "wgrad" and math.prod(descriptor.grid(spec, KernelConfig(64, 64, 64))) <= (
        SMALL_LAYER_WAVES * SMS[family])
    scored = []
    element = torch.empty((), dtype=dtype).element_size()
    for block_m, block_n, block_k, warps, stages, share, *run_share in table:
        block_k = max(16, block_k * 2 // element)  # the bytes per K step the 16-bit tile was measured with
        stages = min(stages, FLOAT64_STAGES) if element == 8 else stages
        if element == 4 and family != "sm_90" and descriptor_of(kernel).name == "columns":
            stages = min(stages, COLUMNS_FLOAT32_STAGES_SM80)
        accumulator = accumulator_registers(KernelConfig(block_m, block_n, block_k, num_warps=warps), dtype)
        if element > 2 and accumulator > HEURISTIC_WIDE_ACCUMULATOR:
            continue
        if (descriptor.name == "fprop" and family != "sm_90" and accumulator >= LONG_TAP_LOOP["accumulator"]
                and descriptor.loop_taps(spec) > LONG_TAP_LOOP["taps"]):
            continue
        if (descriptor.name == "dgrad" and family == "sm_90" and accumulator >= CARRIED_DGRAD_ACCUMULATOR_SM90
                and (spec.dims == 1 or math.prod(spec.kernel_size[:-1]) == 1 < spec.kernel_size[-1])):
            continue
        if gathered and (block_k * element > GATHERED_LIMITS["k_step_bytes"] or block_m > GATHERED_LIMITS["block_m"]
                         or accumulator > GATHERED_LIMITS["accumulator"]):
            continue
        if layout != "channels_last" and descriptor.name != "wgrad" and accumulator > CHANNELS_FIRST_OUTPUT_ACCUMULATOR:
            continue
        if block_n == 16 and columns % 32 == 0:
            continue  # 16 wide only for channels 32 does not divide (80 = 5 x 16): else it re-reads A more (not in the share)
        if warps < 4 and max(rows, columns) > THIN_TILE_EXTENT and not small:
            continue  # 2-warp tiles serve thin or small layers: wider ones re-read each operand more (not in the share)
        fitting = [c for c in candidates if (c.block_m, c.block_n, c.block_k, c.num_warps, c.split_k)
                   == (block_m, block_n, block_k, warps, 0) and c.num_stages <= stages]
        if not fitting:
            continue
        config = descriptor.with_sms(spec, max(fitting, key=lambda c: c.num_stages), SMS[family])
        if run_share and descriptor.tiles_per_step(spec, config) > 1:
            share = run_share[0]  # the loop with a tap run (wgrad) multiplies several tiles per step
        programs = math.prod(descriptor.grid(spec, config))
        executed = max(1, descriptor.executed_macs(spec, config))
        work = spec.useful_macs / executed
        bound = min(share, feed_share(config, family)) if descriptor.name != "wgrad" and element == 2 else share
        scored.append((config, bound * _wave_efficiency(programs, SMS[family]) * work, executed, share))
    top = max((entry[1] for entry in scored), default=0.0)
    tiers = ([entry for entry in scored if entry[2] <= MAX_TILE_WASTE * gemm_macs(spec)],
             [entry for entry in scored if entry[2] <= MAX_WORK_RATIO * spec.useful_macs], scored)
    # (thin layers keep the first tier, their loops gather: the table's shares overstate the padded
    # tiles'; so do memory-bound layers, whose time the bytes set, not the loop)
    compute, memory = roofline_seconds(spec, dtype, family)
    dense = min(spec.in_channels_per_group, spec.out_channels_per_group) >= THIN_CHANNELS
    floor = LEAN_SCORE_FLOOR if dense and compute > memory else 0
    lean = next((tier for tier in tiers if tier and max(entry[1] for entry in tier) >= floor * top), [])
    best, best_key = None, (-1.0, 0, 0.0)
    for config, score, _, share in lean:  # of equal scores the longer tap run, the higher share, the table's order
        key = (round(score, 9), descriptor.tiles_per_step(spec, config), share)
        if key > best_key:
            best, best_key = config, key
    if best is None:  # nothing of the shortlist fits (a tiny problem): the smallest candidate
        return min(candidates, key=lambda c: (c.block_m * c.block_n * c.block_k, c.num_warps, -c.num_stages))
    return best
