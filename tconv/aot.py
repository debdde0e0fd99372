"""Ahead-of-time compilation for NVIDIA targets, on any machine (no GPU needed).

triton.compile with a GPUTarget produces PTX and a cubin on a CPU-only machine; the
cuobjdump shipped inside Triton's package reads registers and stack (spills) from the
cubin, Triton's metadata gives shared memory, and the PTX shows whether tensor cores
are used (mma.sync on sm_80, wgmma on sm_90).
"""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from .configs import KernelConfig
from .kernels import dgrad, fprop, wgrad
from .spec import PADDING_MODES, ConvSpec

KERNELS = {"fprop": fprop.conv_fprop_kernel, "dgrad": dgrad.conv_dgrad_kernel, "wgrad": wgrad.conv_wgrad_kernel}
TRITON_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}
#: Shared memory one block may use (bytes), per arch (CUDA programming guide).
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
#: The config-space family each compile target stands for.
FAMILY_OF_ARCH = {80: "sm_80", 90: "sm_90"}


@dataclass(frozen=True)
class CompileReport:
    kernel: str
    arch: int
    dtype: str
    config: KernelConfig
    registers: int
    stack_bytes: int  # stack frame (cuobjdump); a few bytes need not be spills
    spill_bytes: int  # spill stores + loads (ptxas -v): registers that did not fit
    shared_bytes: int
    tensor_cores: bool

    @property
    def fits(self) -> bool:
        return self.spill_bytes == 0 and self.shared_bytes <= SHARED_LIMIT[self.arch]


def _signature(kernel, constexprs: dict, dtype: str) -> dict:
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "phases_ptr":
            signature[name] = "*i32"
        elif name == "workspace_ptr":
            signature[name] = "*fp64" if dtype == "fp64" else "*fp32"
        elif name.endswith("_ptr"):
            signature[name] = f"*{dtype}"
        else:
            signature[name] = "i32"
    return signature


@functools.cache
def compile_kernel(
    kernel: str, dtype: str, config: KernelConfig, arch: int, kernel_size: tuple[int, int, int] = (1, 3, 3),
    padding_mode: int = 0, index_64: bool = False, depthwise: bool = False,
) -> CompileReport:
    """Compile one kernel for sm_`arch` and read its resources."""
    function = KERNELS[kernel]
    tdtype = TRITON_DTYPES[dtype]
    constexprs = {
        "BLOCK_M": config.block_m, "BLOCK_N": config.block_n, "BLOCK_K": config.block_k,
        "INPUT_PRECISION": "tf32" if dtype == "float32" else "ieee",
        "ACC_DTYPE": tl.float64 if dtype == "float64" else tl.float32,
        "UPCAST_DOT": False,
        "INDEX_DTYPE": tl.int64 if index_64 else tl.int32,
    }
    if kernel in ("fprop", "wgrad"):
        constexprs.update(
            KERNEL_D=kernel_size[0], KERNEL_H=kernel_size[1], KERNEL_W=kernel_size[2], PADDING_MODE=padding_mode,
            DEPTHWISE=depthwise,
        )
    if kernel == "dgrad":
        constexprs["DEPTHWISE"] = depthwise
    if kernel == "wgrad":
        constexprs["BIAS_GRAD"] = True
    else:
        constexprs.update(HAS_BIAS=True, GROUP_M=config.group_m)
    source = ASTSource(fn=function, signature=_signature(function, constexprs, tdtype), constexprs=constexprs)
    compiled = triton.compile(
        source, target=GPUTarget("cuda", arch, 32), options={"num_warps": config.num_warps, "num_stages": config.num_stages}
    )
    ptx = compiled.asm["ptx"]
    registers, stack = _cubin_resources(compiled.asm["cubin"])
    tensor_core_op = "wgmma" if arch >= 90 else "mma.sync"
    return CompileReport(
        kernel, arch, dtype, config, registers, stack, _ptxas_spills(ptx, arch), compiled.metadata.shared,
        tensor_core_op in ptx or "mma.sync" in ptx,
    )


def _nvidia_tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _ptxas_spills(ptx: str, arch: int) -> int:
    """Spill stores + loads that ptxas reports for the PTX (the ptxas Triton itself uses
    for that arch, with its register-allocation option)."""
    ptxas = _nvidia_tool("ptxas" if arch < 90 else "ptxas-blackwell")
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as file:
            file.write(ptx)
        result = subprocess.run(
            [ptxas, "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", source, "-o", os.path.join(folder, "kernel.cubin")],
            capture_output=True, text=True, check=True,
        )
    log = result.stdout + result.stderr
    match = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if match is None:
        raise RuntimeError(f"ptxas gave no spill line:\n{log}")
    return int(match.group(1)) + int(match.group(2))


def _cubin_resources(cubin: bytes) -> tuple[int, int]:
    cuobjdump = _nvidia_tool("cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        text = subprocess.run([cuobjdump, "--dump-resource-usage", file.name], capture_output=True, text=True, check=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+)", text)
    if match is None:
        raise RuntimeError(f"cuobjdump gave no resource line:\n{text}")
    return int(match.group(1)), int(match.group(2))


def compile_args(kernel: str, spec: ConvSpec, dtype: str, config: KernelConfig, arch: int) -> tuple:
    """compile_kernel's arguments for `kernel` launched on `spec`: kernel size, padding
    mode, depthwise branch and index width are its compile-time constants (problems that
    share them share one compile)."""
    kernel_size = (1,) * (3 - spec.dims) + tuple(spec.kernel_size)
    largest = max(
        spec.batch * spec.in_channels * math.prod(spec.in_size),
        spec.batch * spec.out_channels * math.prod(spec.out_size),
    )
    padding_mode = PADDING_MODES[spec.padding_mode] if kernel != "dgrad" else 0
    return kernel, dtype, config, arch, kernel_size, padding_mode, largest >= 2**31 - 1, spec.depthwise


def compile_problem(kernel: str, spec: ConvSpec, dtype: str, config: KernelConfig, arch: int) -> CompileReport:
    """Compile `kernel` as it would be launched for `spec`."""
    return compile_kernel(*compile_args(kernel, spec, dtype, config, arch))
