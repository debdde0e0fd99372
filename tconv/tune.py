"""Tuning: time a problem's candidate configs on the GPU, and capture a model's conv layers.

The tuner is handed a callable that runs one config on one operand set (as Triton's and
quack's autotuners are); it never imports the launcher. A problem is (kernel, spec,
dtype, layout): tconv.spec.pass_specs turns each conv layer into the three problems its
forward, input-gradient and weight-gradient passes launch. `tconv tune` is in
tconv.tune_command.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .configs import KernelConfig
from .descriptors import Descriptor
from .spec import ConvSpec, forward_spec, transposed_spec
from .testing import TOLERANCE

#: Bytes of operands to rotate through while timing, so no run finds its inputs in L2
#: (H100: 50 MB of L2; do_bench also clears L2 between runs).
ROTATE_BYTES = 256 * 2**20
MAX_OPERAND_SETS = 8


# ---------------------------------------------------------------------- operands
def operand_sets(kernel: Descriptor, spec: ConvSpec, dtype: torch.dtype) -> int:
    """How many operand sets to rotate through when timing (at least one)."""
    element = torch.empty((), dtype=dtype).element_size()
    size = sum(math.prod(shape) for shape in kernel.operand_shapes(spec).values()) * element
    return max(1, min(MAX_OPERAND_SETS, math.ceil(ROTATE_BYTES / max(size, 1))))


def median_ms(run: Callable, operands: Sequence) -> float:
    """Median time of `run(operands[i])` over rotating operand sets (triton's do_bench:
    warm-up, L2 cleared before each run, CUDA events)."""
    import triton.testing

    rotation = itertools.cycle(operands)
    return triton.testing.do_bench(lambda: run(next(rotation)), warmup=25, rep=100, return_mode="median")


def graph_ms(run: Callable, operands) -> float:
    """Median time of `run(operands)` replayed from a CUDA graph (triton's
    do_bench_cudagraph): the kernels' time without the host's launch path; the L2 is not
    cleared between replays."""
    import triton.testing

    return triton.testing.do_bench_cudagraph(lambda: run(operands), rep=100, return_mode="median")


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


#: Runs one config on one operand set and returns the pass's result tensor.
RunConfig = Callable[[KernelConfig, Mapping], torch.Tensor]


def tune_problem(
    run: RunConfig, operands: Sequence[Mapping], candidates: Sequence[KernelConfig], reference: KernelConfig,
    dtype: torch.dtype,
) -> TuneResult | None:
    """Time every candidate and return the fastest correct one (None if every one failed).

    Each candidate's result is first compared with the reference config's (the first
    candidate that runs, if the reference cannot): a config the compiler gets wrong
    (pytorch#173068-style) is rejected, never timed."""
    candidates = list(candidates)
    if reference not in candidates:
        candidates.insert(0, reference)
    else:
        candidates.insert(0, candidates.pop(candidates.index(reference)))
    expected, times, rejected = None, {}, []
    for config in candidates:
        try:
            result = run(config, operands[0])
            if expected is None:
                expected = result
            if not _close(result, expected, dtype):
                rejected.append(f"{config}: wrong result")
                continue
            times[config] = median_ms(lambda inputs, c=config: run(c, inputs), operands)
        except Exception as error:  # out of shared memory / registers on this GPU
            rejected.append(f"{config}: {type(error).__name__}: {str(error)[:80]}")
    if not times:
        return None
    best = min(times, key=times.get)
    return TuneResult(best, times[best], reference, times.get(reference, float("nan")), len(candidates), rejected)


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
        raise ValueError(f"expected 'package.module:factory', got {target!r}")
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), attribute)


def build_on_meta(factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.device("meta"):
        return factory()
