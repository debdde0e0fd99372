"""Launchers: allocate, pick a config, launch a kernel descriptor on the tensors' device.

CUDA tensors run the compiled kernels; CPU tensors run the very same kernel source
through Triton's interpreter, with no environment variable for the user to set.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import warnings
from collections.abc import Mapping

import torch
import triton.language as tl
from triton.language import core as tl_core
from triton.runtime.interpreter import InterpretedFunction, _patch_lang
from triton.runtime.jit import JITFunction

from . import cache
from .configs import KernelConfig, arch_family, heuristic_config, prune
from .descriptors import COLUMNS, DGRAD, FPROP, WGRAD, Descriptor
from .descriptors.base import conv_output, in_layout, numerics
from .descriptors.columns import uses_columns
from .descriptors.layout import pass_tensors
from .spec import ConvSpec

_interpreter_lock = threading.Lock()


_interpreted_copies: dict[int, InterpretedFunction] = {}


def _interpreted(function: JITFunction) -> InterpretedFunction:
    # Keyed by id: hashing a JITFunction parses its source, which fails mid-interpretation.
    copy = _interpreted_copies.get(id(function))
    if copy is None:
        copy = _interpreted_copies[id(function)] = InterpretedFunction(function.fn)
    return copy


def _call_interpreted(function: JITFunction, *args, **kwargs):
    return _interpreted(function)(*args, **kwargs)


def _language_anchor():
    """Its globals hold both tl and tl.core, so _patch_lang covers both."""
    return tl, tl_core


class _CpuKernel:
    """A kernel launched on CPU tensors through Triton's interpreter.

    The kernel source is the same as on CUDA. While it runs, every @triton.jit function
    it calls (ours and triton.language's own, such as tl.zeros) is interpreted too: a
    JITFunction called outside a compiled kernel would otherwise only raise. The
    switch is scoped to the launch and serialised, as the interpreter's state is global.
    """

    def __init__(self, function: JITFunction):
        self.function = function

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            with _interpreter_lock:
                original = JITFunction.__call__
                JITFunction.__call__ = _call_interpreted
                # Interpreted helpers patch triton.language.core (tl.zeros lives in a module
                # that sees it) without undoing it; this scope records the true originals of
                # tl and tl.core and restores them, so later GPU compiles see a clean tl.
                language_scope = _patch_lang(_language_anchor)
                try:
                    return _interpreted(self.function)[grid](*args, **kwargs)
                finally:
                    if language_scope is not None:  # a scope object since Triton 3.x's interpreter rework
                        language_scope.restore()
                    JITFunction.__call__ = original

        return launch


def launchable(function: JITFunction, device: torch.device) -> tuple[object, bool]:
    """(kernel to index with a grid, interpreting) for tensors on `device`."""
    if device.type == "cuda":
        return function, False
    if device.type == "cpu":
        return _CpuKernel(function), True
    raise NotImplementedError(f"tconv runs on CUDA tensors (compiled) and CPU tensors (interpreted), not on {device}")


def _plan(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, tensors: Mapping, compiled: bool) -> tuple:
    """(grid, arguments with None in place of tensors, (index, tensor name) slots, meta) of
    one launch: what it derives from the problem, the config and the tensors' layout. A
    copy reads the caller's operand; the pass's other kernels read its channels-last copy."""
    kernel.check_grid(spec, config)
    dtype = next(t for t in tensors.values() if isinstance(t, torch.Tensor)).dtype
    reads = kernel.reads(tensors)
    args, meta = kernel.arguments(
        spec, config, reads, numerics(dtype, compiled, torch.backends.cudnn.allow_tf32, tensors.values()))
    slots = tuple((index, name) for index, arg in enumerate(args) for name, tensor in tensors.items()
                  if isinstance(tensor, torch.Tensor) and arg is tensor)
    template = tuple(None if isinstance(arg, torch.Tensor) else arg for arg in args)  # holds no tensor alive
    return kernel.launch_grid(spec, config, reads), template, slots, meta


def _go(function, grid: tuple, template: tuple, slots: tuple, meta: dict, tensors: Mapping, device: torch.device):
    args = list(template)
    for index, name in slots:
        args[index] = tensors[name]
    if device.type == "cuda":
        with torch.cuda.device(device):
            function[grid](*args, **meta)
    else:
        function[grid](*args, **meta)


def launch(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, tensors: Mapping) -> None:
    """One launch of `kernel` on `tensors` (operands and what `kernel.allocate` made)."""
    device = next(t for t in tensors.values() if isinstance(t, torch.Tensor)).device
    function, interpreting = launchable(kernel.function, device)
    _go(function, *_plan(kernel, spec, config, tensors, not interpreting), tensors, device)


def run(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, operands: Mapping) -> dict:
    """Allocate and launch one pass of `kernel`: its operands' channels-last copies, the
    kernel and what it says follows (wgrad's reduction); returns every tensor."""
    return _run(kernel, spec, config, operands)[1]


def _run(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, operands: Mapping) -> tuple[tuple, dict]:
    device = next(t for t in operands.values() if isinstance(t, torch.Tensor)).device
    launches, tensors = pass_tensors(kernel, spec, operands, config, arch_family(device))
    for descriptor in launches:
        launch(descriptor, spec, config, tensors)
    return launches, tensors


def _capturing_or_tracing() -> bool:
    return torch.compiler.is_compiling() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


#: {(kernel, problem, dtype, device, strides): (cache generation, config)}: configs chosen
#: from a tuned entry or the heuristic, until the tuned-config cache changes.
_chosen: dict[tuple, tuple] = {}


def _chosen_key(kernel: Descriptor, spec: ConvSpec, tensor: torch.Tensor) -> tuple:
    return kernel.name, spec, tensor.dtype, tensor.device, tensor.stride()


def choose_config(kernel: Descriptor, spec: ConvSpec, tensor: torch.Tensor, operands: Mapping) -> KernelConfig:
    """The config a launch uses: its tuned entry, else (TCONV_AUTOTUNE=1, on CUDA, outside
    graph capture and tracing) one tuned now and stored, else the heuristic."""
    memo_key = _chosen_key(kernel, spec, tensor)
    memo = _chosen.get(memo_key)
    if memo is not None and memo[0] == cache.generation:
        return memo[1]
    device, dtype, layout = tensor.device, tensor.dtype, cache.layout_of(tensor)
    key = cache.entry_key(kernel.name, spec, dtype, layout)
    entry = cache.entries(device).get(key)
    if entry is not None:
        _chosen[memo_key] = (cache.generation, cache.config_from_entry(entry))
        return _chosen[memo_key][1]
    heuristic = heuristic_config(kernel, spec, dtype, arch_family(device), layout)
    if os.environ.get("TCONV_AUTOTUNE") != "1":
        if len(_chosen) > 4096:
            _chosen.clear()
        _chosen[memo_key] = (cache.generation, heuristic)
        return heuristic
    if device.type != "cuda":
        cache.warn_once("autotune", "tconv: TCONV_AUTOTUNE=1 needs a CUDA device to time configs; using the heuristic")
        return heuristic
    if _capturing_or_tracing():
        return heuristic  # never time anything inside a captured graph or a trace
    from .tune import tune_problem

    def run_config(config: KernelConfig, inputs: Mapping) -> torch.Tensor:
        return run_pass(kernel, spec, inputs, config)[kernel.result]

    operand_sets = [{name: in_layout(t.clone(), layout) if isinstance(t, torch.Tensor) else t
                     for name, t in operands.items()}]
    result = tune_problem(run_config, operand_sets, prune(kernel, spec, dtype, arch_family(device)), heuristic, dtype)
    if result is None:
        warnings.warn(f"tconv: every candidate config failed for {key}; using the heuristic", UserWarning, stacklevel=3)
        return heuristic
    cache.store(device, {key: result.entry()})
    return result.config


# ----------------------------------------------------------------- the three passes
def conv_fprop(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Forward convolution of a batched input (weight [C_out, C_in/groups, *kernel])."""
    return _one_output(FPROP, spec, {"input": input, "weight": weight, "bias": bias}, config)


def conv_dgrad(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Transposed convolution of a batched input (weight [C_in, C_out/groups, *kernel]);
    with a conv's grad_output as input and its weight, the conv's input gradient. Few
    output channels (ConvSpec.tap_columns) run the column GEMM and col2im (in slices of
    the batch when their workspace would pass tconv.configs.COLUMNS_WORKSPACE_LIMIT)."""
    kernel = COLUMNS if uses_columns(spec, weight) else DGRAD
    return _one_output(kernel, spec, {"input": input, "weight": weight, "bias": bias}, config)


def _one_output(kernel: Descriptor, spec: ConvSpec, operands: dict, config: KernelConfig | None) -> torch.Tensor:
    input = operands["input"]
    if spec.batch * spec.out_channels * math.prod(spec.out_size) == 0:
        return conv_output(spec, input, operands["weight"])
    return run_pass(kernel, spec, operands, config)["output"]


def conv_wgrad(
    input: torch.Tensor, grad_output: torch.Tensor, spec: ConvSpec, bias_grad: bool,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grad_weight [C_out, C_in/groups, *kernel], grad_bias [C_out] or None) of the forward
    convolution `spec` (batched input and grad_output). Two launches: the split-K GEMM
    into an fp32 workspace (fp64 for fp64), then the in-order reduction of the splits."""
    operands = {"input": input, "grad_output": grad_output, "bias_grad": bias_grad}
    if spec.out_channels * spec.in_channels_per_group * spec.batch * math.prod(spec.out_size) == 0:
        grad_weight = input.new_zeros((spec.out_channels, spec.in_channels_per_group, *spec.kernel_size))
        return grad_weight, input.new_zeros((spec.out_channels,)) if bias_grad else None
    tensors = run_pass(WGRAD, spec, operands, config)
    return tensors["grad_weight"], tensors["grad_bias"]


# ------------------------------------------------------------ the memoised eager pass
#: {pass signature: (allocations, launches)}: what a pass derives from its problem, dtype,
#: device, operand strides and config source (the tuned-config cache's generation among
#: them), worked out on the first call. A repeated call allocates from the recipe and
#: launches with stored arguments: no checks, no config choice, no argument building.
_passes: dict[tuple, tuple] = {}


def run_pass(kernel: Descriptor, spec: ConvSpec, operands: Mapping, config: KernelConfig | None = None) -> dict:
    """`run` of one pass on a caller's operands with `choose_config`'s config (or `config`),
    memoised per pass signature; returns every tensor."""
    first = operands["input"]
    device = first.device
    _, interpreting = launchable(kernel.function, device)
    key = [kernel.name, spec, config, first.dtype, device, interpreting, torch.backends.cudnn.allow_tf32, cache.generation]
    for name, value in operands.items():
        key += (name, value.stride() if isinstance(value, torch.Tensor) else value)
    key = tuple(key)
    prepared = _passes.get(key)
    if prepared is None:
        images = kernel.images_per_launch(spec, first.dtype)  # (a pass run in slices is never memoised whole)
        if images < spec.batch:
            return _run_in_slices(kernel, spec, operands, config or choose_config(kernel, spec, first, operands), images)
        chosen = config or choose_config(kernel, spec, first, operands)
        launches, tensors = _run(kernel, spec, chosen, operands)
        if config is not None or _settled(kernel, spec, first, chosen):
            if len(_passes) > 4096:
                _passes.clear()
            _passes[key] = _prepare(kernel, spec, chosen, launches, tensors, operands, not interpreting)
        return tensors
    allocations, launches = prepared
    tensors = dict(operands)
    for name, recipe in allocations:
        if type(recipe) is tuple:
            sizes, strides, dtype = recipe
            tensors[name] = torch.empty_strided(sizes, strides, dtype=dtype, device=device)
        else:
            tensors[name] = recipe
    for descriptor, plan in launches:
        _go(launchable(descriptor.function, device)[0], *plan, tensors, device)
    return tensors


def _run_in_slices(kernel: Descriptor, spec: ConvSpec, operands: Mapping, config: KernelConfig, images: int) -> dict:
    """run_pass over slices of `images` images of the batch (Descriptor.images_per_launch),
    with the whole batch's config, each writing its slice of one result; the tensors a
    slice allocates (its workspace) are dropped before the next slice allocates its own."""
    result = kernel.allocate_result(spec, operands)
    for start in range(0, spec.batch, images):
        count = min(images, spec.batch - start)
        sliced = {**operands, "input": operands["input"][start:start + count], kernel.result: result[start:start + count]}
        run_pass(kernel, dataclasses.replace(spec, batch=count), sliced, config)
    return {**operands, kernel.result: result}


def _settled(kernel: Descriptor, spec: ConvSpec, tensor: torch.Tensor, config: KernelConfig) -> bool:
    """Whether choose_config would choose `config` again (not a one-off heuristic while
    online tuning was off limits)."""
    return _chosen.get(_chosen_key(kernel, spec, tensor)) == (cache.generation, config)


def _prepare(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, launches: tuple, tensors: dict,
             operands: Mapping, compiled: bool) -> tuple:
    """(allocations, launches) of a pass (`launches`) just run on `tensors`: how to allocate each tensor
    the pass made ((sizes, strides, dtype) for empty_strided, or the tensor itself when it
    is one of the problem's constants, or None), and every launch's plan."""
    allocated = [name for name in tensors if name not in operands]
    allocations = tuple(
        (name, tensors[name] if name in kernel.constant_tensors or tensors[name] is None else
         (tuple(tensors[name].shape), tensors[name].stride(), tensors[name].dtype))
        for name in allocated)
    return allocations, tuple((launched, _plan(launched, spec, config, tensors, compiled)) for launched in launches)
