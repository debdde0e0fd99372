"""Tuning: time a problem's candidate configs on the GPU, capture a model's conv layers,
and the `tconv tune` sweep (or, without a GPU, its --dry-run: list and compile).

A problem is (kernel, spec, dtype, layout): tconv.spec.pass_specs turns each conv layer
into the three problems its forward, input-gradient and weight-gradient passes launch.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import math
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import _launch, cache
from .configs import KernelConfig, arch_family, heuristic_config, prune
from .spec import ConvSpec, forward_spec, pass_specs, transposed_spec
from .testing import TOLERANCE

#: Bytes of operands to rotate through while timing, so no run finds its inputs in L2
#: (H100: 50 MB of L2; do_bench also clears L2 between runs).
ROTATE_BYTES = 256 * 2**20
MAX_OPERAND_SETS = 8


# ---------------------------------------------------------------------- operands
def _shapes(kernel: str, spec: ConvSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of the two operands a launch of `kernel` reads."""
    data = (spec.batch, spec.in_channels, *spec.in_size)
    if kernel == "fprop":
        return data, (spec.out_channels, spec.in_channels_per_group, *spec.kernel_size)
    if kernel == "dgrad":
        return data, (spec.in_channels, spec.out_channels_per_group, *spec.kernel_size)
    return data, (spec.batch, spec.out_channels, *spec.out_size)  # wgrad: input, grad_output


def make_operands(kernel: str, spec: ConvSpec, dtype: torch.dtype, layout: str, device: torch.device, sets: int = 1):
    """`sets` fresh random operand pairs for a launch, in `layout`."""
    def make(shape):
        tensor = torch.randn(shape, dtype=dtype, device=device)
        if layout == "channels_last" and tensor.dim() in (4, 5):
            tensor = tensor.to(memory_format=torch.channels_last if tensor.dim() == 4 else torch.channels_last_3d)
        return tensor

    return [tuple(make(shape) for shape in _shapes(kernel, spec)) for _ in range(sets)]


def operand_sets(kernel: str, spec: ConvSpec, dtype: torch.dtype) -> int:
    """How many operand sets to rotate through when timing (at least one)."""
    element = torch.empty((), dtype=dtype).element_size()
    size = sum(math.prod(shape) for shape in _shapes(kernel, spec)) * element
    return max(1, min(MAX_OPERAND_SETS, math.ceil(ROTATE_BYTES / max(size, 1))))


def run_kernel(kernel: str, spec: ConvSpec, config: KernelConfig | None, first: torch.Tensor, second: torch.Tensor):
    """One launch of a tconv kernel (the heuristic/cached config when config is None)."""
    if kernel == "fprop":
        return _launch.conv_fprop(first, second, None, spec, config)
    if kernel == "dgrad":
        return _launch.conv_dgrad(first, second, None, spec, config)
    return _launch.conv_wgrad(first, second, spec, False, config)[0]


def median_ms(run: Callable, operands: Sequence[tuple]) -> float:
    """Median time of `run(*operands[i])` over rotating operand sets (triton's do_bench:
    warm-up, L2 cleared before each run, CUDA events)."""
    import triton.testing

    rotation = itertools.cycle(operands)
    return triton.testing.do_bench(lambda: run(*next(rotation)), warmup=25, rep=100, return_mode="median")


# ------------------------------------------------------------------------ tuning
@dataclass
class TuneResult:
    config: KernelConfig
    ms: float
    heuristic: KernelConfig
    heuristic_ms: float
    candidates: int
    rejected: list[str] = field(default_factory=list)

    def entry(self) -> dict:
        return {**self.config.as_dict(), "ms": self.ms, "heuristic_ms": self.heuristic_ms, "candidates": self.candidates}


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> bool:
    tolerance = 2 * max(TOLERANCE[dtype], TOLERANCE[torch.float16] if dtype == torch.float32 else 0)  # TF32
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    return bool(((actual.double() - expected.double()).abs().max().item() if actual.numel() else 0) <= tolerance * scale)


def tune_problem(
    kernel: str, spec: ConvSpec, dtype: torch.dtype, layout: str, device: torch.device,
    candidates: list[KernelConfig] | None = None,
) -> TuneResult:
    """Time every candidate on `device` and return the fastest correct one.

    Each candidate's output is first compared with the heuristic config's: a config the
    compiler gets wrong (pytorch#173068-style) is rejected, never timed."""
    family = arch_family(device)
    heuristic = heuristic_config(kernel, spec, dtype, family)
    candidates = list(candidates if candidates is not None else prune(kernel, spec, dtype, family))
    if heuristic not in candidates:
        candidates.insert(0, heuristic)
    operands = make_operands(kernel, spec, dtype, layout, device, operand_sets(kernel, spec, dtype))
    reference = run_kernel(kernel, spec, heuristic, *operands[0])
    times, rejected = {}, []
    for config in candidates:
        try:
            if not _close(run_kernel(kernel, spec, config, *operands[0]), reference, dtype):
                rejected.append(f"{config}: wrong result")
                continue
            times[config] = median_ms(lambda a, b, c=config: run_kernel(kernel, spec, c, a, b), operands)
        except Exception as error:  # out of shared memory / registers on this GPU
            rejected.append(f"{config}: {type(error).__name__}: {str(error)[:80]}")
    best = min(times, key=times.get)
    return TuneResult(best, times[best], heuristic, times.get(heuristic, float("nan")), len(candidates), rejected)


# ------------------------------------------------------------- model shape capture
@dataclass(frozen=True)
class CapturedLayer:
    name: str
    spec: ConvSpec


class _ConvRecorder(TorchDispatchMode):
    """Records every convolution a model runs (aten's, or tconv's own ops)."""

    def __init__(self):
        super().__init__()
        self.specs: list[tuple[str, ConvSpec]] = []
        self.module_stack: list[tuple[str, torch.nn.Module, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = self.module_stack[-1][0] if self.module_stack else "(functional)"
        if func is torch.ops.aten.convolution.default:
            input, weight, _, stride, padding, dilation, transposed, output_padding, groups = args
            spec = self._module_spec() if not transposed else None
            if spec is None:
                spec = _aten_spec(input.shape, weight.shape, stride, padding, dilation, transposed, output_padding, groups)
            self.specs.append((name, spec))
        elif func is torch.ops.tconv.conv.default:
            input, weight, _, stride, pad_before, pad_after, dilation, groups, padding_mode = args
            self.specs.append((name, forward_spec(input.shape, weight.shape, stride, pad_before, pad_after, dilation,
                                                  groups, padding_mode)))
        elif func is torch.ops.tconv.conv_transpose.default:
            input, weight, _, stride, padding, out_size, dilation, groups = args
            self.specs.append((name, transposed_spec(input.shape, weight.shape, stride, padding, out_size, dilation, groups)))
        return func(*args, **kwargs)

    def _module_spec(self) -> ConvSpec | None:
        """A padding_mode module pads its input before aten sees it; tconv does not, so
        record the module's own problem."""
        if not self.module_stack:
            return None
        _, module, inputs = self.module_stack[-1]
        if getattr(module, "padding_mode", "zeros") == "zeros" or not inputs:
            return None
        pads = module._reversed_padding_repeated_twice
        dims = len(module.kernel_size)
        before = [pads[2 * (dims - 1 - d)] for d in range(dims)]
        after = [pads[2 * (dims - 1 - d) + 1] for d in range(dims)]
        shape = inputs[0].shape if inputs[0].dim() == dims + 2 else (1, *inputs[0].shape)
        return forward_spec(shape, module.weight.shape, module.stride, before, after, module.dilation, module.groups,
                            module.padding_mode)


def _aten_spec(input_shape, weight_shape, stride, padding, dilation, transposed, output_padding, groups) -> ConvSpec:
    if not transposed:
        return forward_spec(input_shape, weight_shape, stride, padding, padding, dilation, groups)
    out_size = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, s, p, d, k, op in zip(input_shape[2:], stride, padding, dilation, weight_shape[2:], output_padding)
    ]
    return transposed_spec(input_shape, weight_shape, stride, padding, out_size, dilation, groups)


def _pop(stack: list) -> None:
    stack.pop()  # and return None: a forward hook's return value would replace the output


def capture_layers(model: torch.nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> list[CapturedLayer]:
    """Every convolution `model` runs on an input of `input_shape`, found by running it on
    the meta device (no compute, no memory): one entry per call, in call order."""
    model = model.to(device="meta", dtype=dtype)
    recorder = _ConvRecorder()
    conv_types = (torch.nn.modules.conv._ConvNd,)
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, conv_types):
            handles.append(module.register_forward_pre_hook(
                lambda m, inputs, name=name: recorder.module_stack.append((name, m, inputs))))
            handles.append(module.register_forward_hook(lambda m, inputs, output: _pop(recorder.module_stack)))
    try:
        with torch.no_grad(), recorder:
            model(torch.empty(tuple(input_shape), device="meta", dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    return [CapturedLayer(name, spec) for name, spec in recorder.specs]


def load_factory(target: str) -> Callable[[], torch.nn.Module]:
    """'pkg.module:factory' -> the factory (a class or a function returning a model)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--model must look like 'package.module:factory', got {target!r}")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), attribute)


def build_on_meta(factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.device("meta"):
        return factory()


# ------------------------------------------------------------------------ sweep
def unique_problems(layers: Sequence[tuple[str, ConvSpec]], passes: Sequence[str]) -> dict:
    """{(kernel, spec): [layer names]} over every pass of every layer."""
    problems: dict[tuple[str, ConvSpec], list[str]] = {}
    for name, spec in layers:
        for pass_name, (kernel, kernel_spec) in pass_specs(spec).items():
            if pass_name in passes:
                problems.setdefault((kernel, kernel_spec), []).append(f"{name} {pass_name}")
    return problems


def _compile_job(args: tuple):
    from .aot import compile_kernel

    try:
        return compile_kernel(*args), None
    except Exception as error:  # a config this Triton cannot build: dropped, with the reason
        return None, f"{type(error).__name__}: {str(error)[:100]}"


def compile_all(jobs: Sequence[tuple], workers: int, description: str) -> dict:
    """{compile_args: (report, error)} for (kernel, spec, dtype name, config, arch) jobs;
    jobs that compile the same kernel build once. Parallel across `workers` processes."""
    from .aot import compile_args

    args_of = {job: compile_args(*job) for job in jobs}
    unique = list(dict.fromkeys(args_of.values()))
    bar = _progress(len(unique), description)
    results = {}
    if workers <= 1 or len(unique) <= 1:
        for args in unique:
            results[args] = _compile_job(args)
            if bar:
                bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for args, result in zip(unique, pool.map(_compile_job, unique, chunksize=1)):
                results[args] = result
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return {job: results[args] for job, args in args_of.items()}


def _progress(total: int, description: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=description, file=sys.stderr, disable=total == 0)
    except ImportError:  # pragma: no cover
        return None


def _layers_for(args: argparse.Namespace) -> list[tuple[str, ConvSpec]]:
    if args.model:
        shape = [int(v) for v in args.input_shape.split(",")]
        model = build_on_meta(load_factory(args.model))
        return [(layer.name, layer.spec) for layer in capture_layers(model, shape)]
    from .perf.suites import SUITES, layer_spec

    if args.suite not in SUITES:
        raise SystemExit(f"tconv tune: unknown suite {args.suite!r}; suites: {', '.join(SUITES)}")
    return [(layer.name, layer_spec(layer)) for layer in SUITES[args.suite]]


def tune_main(args: argparse.Namespace) -> int:
    layers = _layers_for(args)
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    passes = args.ops.split(",")
    problems = unique_problems(layers, passes)
    print(f"tconv tune: {len(layers)} conv calls, {len(problems)} unique problems x {len(dtypes)} dtypes "
          f"({', '.join(passes)}); layout {args.layout}")
    if args.dry_run:
        return _dry_run(problems, dtypes, args)
    if not torch.cuda.is_available():
        print("tconv tune: no CUDA device here, so nothing can be timed. Run with --dry-run to list each layer's "
              "pruned candidates and compile them for a target GPU (--arch) without one.")
        return 2
    device = torch.device("cuda")
    done = cache.entries(device)
    rows = []
    bar = _progress(len(problems) * len(dtypes), "tuning")
    for (kernel, spec), names in problems.items():
        for dtype in dtypes:
            key = cache.entry_key(kernel, spec, dtype, args.layout)
            if key in done and not args.force:
                entry = done[key]
                rows.append((names[0], kernel, str(dtype), cache.config_from_entry(entry), entry.get("ms"),
                             entry.get("heuristic_ms"), "cached"))
            else:
                result = tune_problem(kernel, spec, dtype, args.layout, device)
                cache.store(device, {key: result.entry()})  # incremental: an interrupted sweep resumes here
                rows.append((names[0], kernel, str(dtype), result.config, result.ms, result.heuristic_ms,
                             f"{len(result.rejected)} rejected" if result.rejected else ""))
            if bar:
                bar.update()
    if bar:
        bar.close()
    print(f"\n{'layer / pass':40} {'kernel':6} {'dtype':15} {'config':30} {'ms':>8} {'heur. ms':>8} {'speedup':>7}")
    for name, kernel, dtype, config, ms, heuristic_ms, note in rows:
        speedup = heuristic_ms / ms if ms and heuristic_ms and heuristic_ms == heuristic_ms else float("nan")
        print(f"{name[:40]:40} {kernel:6} {dtype:15} {str(config):30} {ms:8.4f} {heuristic_ms:8.4f} {speedup:7.2f} {note}")
    print(f"\ncache: {cache.cache_path(device)}")
    return 0


def _dry_run(problems: dict, dtypes: list[torch.dtype], args: argparse.Namespace) -> int:
    from .aot import FAMILY_OF_ARCH

    arch = args.arch
    family = FAMILY_OF_ARCH[arch]
    listing, jobs = [], []
    for (kernel, spec), names in problems.items():
        for dtype in dtypes:
            candidates = prune(kernel, spec, dtype, family)
            heuristic = heuristic_config(kernel, spec, dtype, family)
            listing.append((names, kernel, spec, dtype, candidates, heuristic))
            if args.compile:
                jobs += [(kernel, spec, str(dtype).removeprefix("torch."), config, arch) for config in candidates]
    results = compile_all(jobs, args.workers, f"compiling for sm_{arch}")
    kept_total = dropped_total = 0
    for names, kernel, spec, dtype, candidates, heuristic in listing:
        name = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        print(f"\n{name}: {kernel} {str(dtype).removeprefix('torch.')}, {len(candidates)} candidates for {family}, "
              f"heuristic {heuristic}")
        for config in candidates:
            if not args.compile:
                print(f"    {config}")
                continue
            report, error = results[(kernel, spec, str(dtype).removeprefix("torch."), config, arch)]
            if report is not None and report.fits:
                kept_total += 1
                print(f"    {str(config):32} keep: {report.registers} registers, 0 spills, {report.shared_bytes} B shared"
                      f"{', tensor cores' if report.tensor_cores else ''}")
            else:
                dropped_total += 1
                why = error or f"{report.spill_bytes} B spilled, {report.shared_bytes} B shared"
                print(f"    {str(config):32} drop: {why}")
    if args.compile:
        print(f"\n{kept_total} candidates kept, {dropped_total} dropped (spills or failed compiles) for sm_{arch}.")
    print("No GPU timing was taken (dry run).")
    return 0


def add_parser(commands) -> None:
    tune = commands.add_parser("tune", help="tune tile configs for a perf suite or a model's conv layers")
    source = tune.add_mutually_exclusive_group()
    source.add_argument("--suite", default="resnet50", help="a perf suite (default resnet50)")
    source.add_argument("--model", help="package.module:factory building the model to tune")
    tune.add_argument("--input-shape", default="1,3,224,224", help="model input shape, e.g. 32,3,224,224")
    tune.add_argument("--dtypes", default="float16", help="comma-separated torch dtypes")
    tune.add_argument("--ops", default="fprop,dgrad,wgrad", help="passes to tune: fprop, dgrad, wgrad")
    tune.add_argument("--layout", default="channels_last", choices=["channels_last", "contiguous"])
    tune.add_argument("--force", action="store_true", help="retune problems already in the cache")
    tune.add_argument("--dry-run", action="store_true", help="list (and compile) candidates; no GPU needed")
    tune.add_argument("--arch", type=int, default=90, choices=[80, 90], help="dry-run compile target")
    tune.add_argument("--no-compile", dest="compile", action="store_false", help="dry run: list candidates only")
    tune.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel compiles in a dry run")
    tune.set_defaults(run=tune_main)
