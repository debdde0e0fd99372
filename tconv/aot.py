"""Ahead-of-time compilation for NVIDIA targets on any machine, exactly as a launch compiles.

A CUDA launch goes through Triton's JIT binder, which specialises the real arguments:
integers equal to 1 become compile-time constants, integers divisible by 16 and 16-byte
aligned pointers get `tt.divisibility = 16`, and these facts decide load vectorisation
and cp.async pipelining. So the compile here builds the very arguments the launcher
passes (the kernel descriptor's `arguments`, on meta tensors of the layout: their
address 0 is aligned, as fresh CUDA allocations are) and lets Triton's own binder
(`create_function_from_signature`) and `JITFunction._pack_args` (which calls the
backend's `parse_attr`) turn them into the signature, constants and attributes. A
Triton upgrade that changes its rules changes this compile with it.

From the cubin: registers (cuobjdump), spills (ptxas -v, with Triton's register
allocation option), shared memory (Triton's metadata) and the main loop read from the
SASS (tconv.sass), with its issue-bound share of tensor peak. Each report is kept on disk
(beside the tuned-config cache, keyed by the launch's specialisation, the kernel source,
Triton's version and this analysis' code), so a second sweep of the same launches reads
them back instead of compiling.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler.compiler import make_backend
from triton.runtime.jit import create_function_from_signature

from .configs import KernelConfig, descriptor_of
from .descriptors import GEMM
from .descriptors.base import make_operands, numerics
from .descriptors.layout import pass_tensors
from .sass import (
    LoopReport,
    issue_bound_share,
    main_loop,
    narrowest_global_access,
    straight_step,
    tensor_core_instructions,
    unrolled_loop,
    unrolled_taps,
)
from .spec import ConvSpec, forward_spec

#: Shared memory one block may use (bytes), per arch (CUDA programming guide).
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
#: The config-space family each compile target stands for.
FAMILY_OF_ARCH = {80: "sm_80", 90: "sm_90"}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


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
    loop: LoopReport | None  # the main loop (None: no loop found)
    issue_bound_share: float | None  # of tensor peak; None without tensor-core instructions in the loop
    load_bits: int | None = None  # the narrowest global load of the whole kernel (None: no load)
    store_bits: int | None = None  # the narrowest global store of the whole kernel
    kernel_tensor_core_instructions: int = 0  # in the whole kernel, loop or not
    step_macs: int | None = None  # multiply-adds of a main-loop step, elementwise kernels (elementwise_step_macs)

    @property
    def tensor_cores(self) -> bool:
        return self.kernel_tensor_core_instructions > 0

    @property
    def fits(self) -> bool:
        return self.spill_bytes == 0 and self.shared_bytes <= SHARED_LIMIT[self.arch]

    @property
    def shared_stages(self) -> int:
        """Operand tiles (BLOCK_M + BLOCK_N) x BLOCK_K the shared memory holds: the pipeline's
        depth when its loads are asynchronous; 1 (loads through registers) otherwise."""
        stage = (self.config.block_m + self.config.block_n) * self.config.block_k * DTYPES[self.dtype].itemsize
        return self.shared_bytes // stage if self.pipelined else 1

    @property
    def pipelined(self) -> bool:
        """Operand loads go through asynchronous copies (cp.async or TMA) in the main loop."""
        return self.loop is not None and self.loop.async_copies > 0


# ------------------------------------------------------------------ specialisation
@functools.cache
def _binder(kernel_name: str, arch: int):
    function = descriptor_of(kernel_name).function
    backend = make_backend(GPUTarget("cuda", arch, 32))
    return backend, create_function_from_signature(function.signature, function.params, backend)


def specialize(kernel_name: str, spec: ConvSpec, dtype: str, layout: str, config: KernelConfig, arch: int,
               bias: bool = False) -> tuple:
    """(signature, constexprs, attrs, options) Triton's JIT derives for the launch the
    launcher makes on fresh `layout` tensors of `spec` (what a compile needs, and a key): a
    kernel of a pass that copies channels-first operands reads the copies, as it does there."""
    kernel = descriptor_of(kernel_name)
    torch_dtype = DTYPES[dtype]
    spec = kernel.launch_spec(spec, torch_dtype)  # a batch run in slices launches on a slice
    operands = make_operands(kernel, spec, torch_dtype, layout, "meta", bias=bias, random=False)
    _, tensors = pass_tensors(kernel, spec, operands, config, FAMILY_OF_ARCH[arch])
    args, meta = kernel.arguments(
        spec, config, kernel.reads(tensors), numerics(torch_dtype, True, torch.backends.cudnn.allow_tf32, tensors.values())
    )
    backend, binder = _binder(kernel.name, arch)
    bound, specialization, options = binder(*args, **meta)
    return kernel.function._pack_args(backend, meta, bound, specialization, options)


def specialization_key(kernel_name: str, arch: int, specialized: tuple) -> str:
    """Launches with equal keys compile to the same binary."""
    signature, constexprs, attrs, options = specialized[1], specialized[2], specialized[3], specialized[0]
    return repr((kernel_name, arch, sorted(signature.items()), sorted(constexprs.items()), sorted(attrs.items()),
                 sorted(options.__dict__.items())))


# ------------------------------------------------------------------------ compile
def compile_launch(kernel_name: str, spec: ConvSpec, dtype: str, config: KernelConfig, arch: int,
                   layout: str = "channels_last", bias: bool = False) -> CompileReport:
    """Compile `kernel_name`'s launch on `spec` for sm_`arch` and read its resources and main loop."""
    specialized = specialize(kernel_name, spec, dtype, layout, config, arch, bias)
    return _compile(specialization_key(kernel_name, arch, specialized), kernel_name, dtype, config, arch, specialized)


_compiled: dict[str, CompileReport] = {}


@functools.cache
def _tool_version() -> str:
    """What a stored report depends on besides the launch: Triton, and this analysis' code."""
    from . import sass

    sources = "".join(open(module.__file__).read() for module in (sys.modules[__name__], sass))
    return f"{triton.__version__}-{hashlib.sha256(sources.encode()).hexdigest()[:16]}"


def _report_path(key: str, kernel_name: str) -> str:
    """Where a compile's report is kept between runs: next to the tuned-config cache, named
    by the launch's specialisation, the kernel source (Triton's cache_key, its callees
    included) and _tool_version."""
    from .cache import cache_dir

    source = descriptor_of(kernel_name).function.cache_key
    digest = hashlib.sha256(f"{key}|{source}|{_tool_version()}".encode()).hexdigest()
    return os.path.join(cache_dir(), "compiled", f"{kernel_name}-{digest[:32]}.pickle")


def _load_report(path: str) -> CompileReport | None:
    try:
        with open(path, "rb") as file:
            report = pickle.load(file)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None  # absent, or written by other code: compile again
    return report if isinstance(report, CompileReport) else None


def _store_report(path: str, report: CompileReport) -> None:
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            pickle.dump(report, file)
        os.replace(temporary, path)


def _compile(key: str, kernel_name: str, dtype: str, config: KernelConfig, arch: int, specialized: tuple) -> CompileReport:
    if key in _compiled:
        return _compiled[key]
    path = _report_path(key, kernel_name)
    stored = _load_report(path)
    if stored is not None:
        _compiled[key] = stored
        return stored
    options, signature, constexprs, attrs = specialized
    function = descriptor_of(kernel_name).function
    compiled = triton.compile(ASTSource(function, signature, constexprs, attrs), target=GPUTarget("cuda", arch, 32),
                              options=options.__dict__)
    registers, stack, sass = _cubin_resources_and_sass(compiled.asm["cubin"])
    loop = main_loop(sass)
    if (loop is None or not loop.tensor_core_instructions) and kernel_name != GEMM.name:
        # A K loop of constant trip count may be unrolled whole: its steps are read from
        # the straight-line code, a step issuing what the plain GEMM's at this tile does
        # (times the tiles it multiplies: a chunked step's blocks).
        reference = reference_loop(dtype, config, arch) if tensor_core_instructions(sass) > 1 else None
        if reference is not None and reference.loop is not None:
            per_step = reference.loop.tensor_core_instructions * tiles_per_step(function, constexprs)
            loop = unrolled_loop(sass, per_step) or loop
    if loop is None and not tensor_core_instructions(sass):  # an elementwise kernel's taps, unrolled whole
        values = named_constexprs(function, constexprs)
        if values.get("ELEMENTWISE_LANES"):
            steps = values["KERNEL_D"] * values["KERNEL_H"]
            if values.get("W_RUN", 1) > 1:  # a step takes a row of taps (kernels/_index.py output_run_loop)
                loop = unrolled_taps(sass, steps) if steps > 1 else straight_step(sass)
            else:
                loop = unrolled_taps(sass, steps * values["KERNEL_W"])
    share = None
    if loop is not None and loop.tensor_core_instructions:
        share = issue_bound_share(config, loop.instructions, arch, dtype, constexprs_precision(constexprs),
                                  tiles_per_step(function, constexprs))
    report = CompileReport(kernel_name, arch, dtype, config, registers, stack, _ptxas_spills(compiled.asm["ptx"], arch),
                           compiled.metadata.shared, loop, share, *narrowest_global_access(sass),
                           tensor_core_instructions(sass), elementwise_step_macs(named_constexprs(function, constexprs)))
    _compiled[key] = report
    _store_report(path, report)
    return report


def elementwise_step_macs(values: dict) -> int | None:
    """Multiply-adds one main-loop step of an elementwise kernel does per program, to compare
    loops of different tiles (`values`: the compile's named constants): a forward's or
    input gradient's tile at a tap, or at a row of taps in output runs (W_RUN); a weight
    gradient's [BLOCK_M, BLOCK_K] tile at each tap of its run. None for tl.dot kernels."""
    if values.get("ELEMENTWISE_LANES"):
        return values["BLOCK_M"] * values["BLOCK_N"] * (values["KERNEL_W"] if values.get("W_RUN", 1) > 1 else 1)
    if values.get("ELEMENTWISE"):
        return values["BLOCK_M"] * values["BLOCK_K"] * values.get("TAP_RUN", 1)
    return None


def tiles_per_step(function, constexprs: dict) -> int:
    """BLOCK_M x BLOCK_N x BLOCK_K products one main-loop iteration multiplies: the
    kernel's TAP_RUN (wgrad's output tiles) or K_CHUNKS (fprop's and dgrad's channel blocks
    a step), else 1."""
    values = named_constexprs(function, constexprs)
    return values.get("TAP_RUN", 1) * values.get("K_CHUNKS", 1)


def named_constexprs(function, constexprs: dict) -> dict:
    """A compile's constants by argument name (ASTSource keys them by argument index)."""
    names = function.arg_names
    return {names[key[0] if isinstance(key, tuple) else key]: value for key, value in constexprs.items()}


def constexprs_precision(constexprs: dict) -> str:
    """The tl.dot input precision a compile used ('ieee' when the kernel has no such constant)."""
    return next((value for value in constexprs.values() if value in ("tf32", "ieee")), "ieee")


#: A 1x1 channels_last convolution as a plain GEMM, large enough for every tile of every space.
REFERENCE_GEMM = forward_spec((1, 512, 64, 64), (512, 512, 1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 1)


def reference_loop(dtype: str, config: KernelConfig, arch: int) -> CompileReport:
    """The plain tiled GEMM (kernels/gemm.py) at `config`: what a gather-free loop costs."""
    return compile_launch(GEMM.name, REFERENCE_GEMM, dtype, GEMM.same_tile(config), arch, "channels_last")


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


def _cubin_resources_and_sass(cubin: bytes) -> tuple[int, int, str]:
    """(registers, stack bytes, SASS text) of a cubin, from the cuobjdump in Triton's package."""
    cuobjdump = _nvidia_tool("cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        text = subprocess.run([cuobjdump, "--dump-resource-usage", "--dump-sass", file.name], capture_output=True,
                              text=True, check=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+)", text)
    if match is None:
        raise RuntimeError(f"cuobjdump gave no resource line:\n{text[:2000]}")
    return int(match.group(1)), int(match.group(2)), text


# --------------------------------------------------------------- many at a time
#: A compile job: (kernel name, spec, dtype name, config, arch, layout).
Job = tuple


def _compile_job(job: Job) -> tuple[CompileReport | None, str | None]:
    try:
        return compile_launch(*job), None
    except Exception as error:  # a config this Triton cannot build: dropped, with the reason
        return None, f"{type(error).__name__}: {str(error)[:160]}"


def compile_all(jobs: Sequence[Job], workers: int, description: str) -> dict:
    """{job: (report, error)} for compile jobs; jobs whose launches specialise alike
    compile once. Parallel across `workers` processes, with a progress bar."""
    keys = {}
    for job in dict.fromkeys(jobs):
        kernel_name, spec, dtype, config, arch, layout = job
        keys[job] = specialization_key(kernel_name, arch, specialize(kernel_name, spec, dtype, layout, config, arch))
    first_job_of = {}
    for job, key in keys.items():
        first_job_of.setdefault(key, job)
    unique = list(first_job_of.items())
    bar = progress(len(unique), description)
    results = {}
    if workers <= 1 or len(unique) <= 1:
        for key, job in unique:
            results[key] = _compile_job(job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for (key, _), result in zip(unique, pool.map(_compile_job, [job for _, job in unique], chunksize=1)):
                results[key] = result
                bar.update()
    bar.close()
    return {job: results[key] for job, key in keys.items()}


class _NoBar:
    def update(self, count: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, description: str):
    """A tqdm bar with an ETA on stderr (a no-op without tqdm or with nothing to do)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, desc=description, file=sys.stderr, disable=total == 0)
