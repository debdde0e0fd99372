"""Launchers: lay the problem out in 3-d, pick a config, launch on the tensors' device.

CUDA tensors run the compiled kernels; CPU tensors run the very same kernel source
through Triton's interpreter, with no environment variable for the user to set.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import torch
import triton
import triton.language as tl
from triton.language import core as tl_core
from triton.runtime.interpreter import InterpretedFunction, _patch_lang
from triton.runtime.jit import JITFunction

from .cache import choose_config
from .configs import KernelConfig
from .kernels import dgrad, fprop, wgrad
from .plan import dgrad_grid, fprop_grid, wgrad_grid, wgrad_split
from .spec import PADDING_MODES, ConvSpec, phase_steps, spec_phases

MAX_GRID_YZ = 65535
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


def _in_3d(values: tuple[int, ...], fill: int) -> tuple[int, ...]:
    return (fill,) * (3 - len(values)) + tuple(values)


def _layout_3d(tensor: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sizes and strides of an [N, C, *spatial] tensor as [N, C, D, H, W]."""
    spatial = tensor.dim() - 2
    sizes = tuple(tensor.shape[:2]) + _in_3d(tuple(tensor.shape[2:]), 1)
    strides = tuple(tensor.stride()[:2]) + _in_3d(tuple(tensor.stride()[2:]), 0)
    assert spatial <= 3
    return sizes, strides


def output_memory_format(input: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """torch's rule: a 4-d/5-d conv output is channels_last when input or weight is."""
    if input.dim() == 4:
        layout = torch.channels_last
    elif input.dim() == 5:
        layout = torch.channels_last_3d
    else:
        return torch.contiguous_format
    for tensor in (input, weight):
        if tensor.dim() == input.dim() and tensor.is_contiguous(memory_format=layout) and not tensor.is_contiguous():
            return layout
    return torch.contiguous_format


def _max_offset(tensor: torch.Tensor) -> int:
    return sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))


def _numeric_meta(interpreting: bool, *tensors: torch.Tensor) -> dict:
    """Accumulator, tensor-core precision, index width and the interpreter's bf16 workaround.

    Offsets are 32-bit unless some tensor spans 2^31 elements or more (fewer registers
    per row offset); the kernels then compute every offset in 64 bits.
    """
    dtype, device = tensors[0].dtype, tensors[0].device
    tf32 = dtype == torch.float32 and device.type == "cuda" and torch.backends.cudnn.allow_tf32
    wide = any(_max_offset(t) >= 2**31 - 1 for t in tensors if t is not None and t.numel() > 0)
    return {
        "INPUT_PRECISION": "tf32" if tf32 else "ieee",
        "ACC_DTYPE": tl.float64 if dtype == torch.float64 else tl.float32,
        "UPCAST_DOT": interpreting and dtype == torch.bfloat16,
        "INDEX_DTYPE": tl.int64 if wide else tl.int32,
    }


def _check_grid_axis(name: str, count: int) -> None:
    if count > MAX_GRID_YZ:
        raise NotImplementedError(f"tconv launches one grid row per {name}; {count} exceeds the limit of {MAX_GRID_YZ}")


def conv_fprop(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Forward convolution of a batched input (weight [C_out, C_in/groups, *kernel])."""
    output = torch.empty(
        (spec.batch, spec.out_channels, *spec.out_size), dtype=input.dtype, device=input.device,
        memory_format=output_memory_format(input, weight),
    )
    if output.numel() == 0:
        return output
    config = config or choose_config("fprop", spec, input)
    kernel, interpreting = launchable(fprop.conv_fprop_kernel, input.device)
    (batch, _, *in_size), in_strides = _layout_3d(input)
    _, weight_strides = _layout_3d(weight)
    (_, _, *out_size), out_strides = _layout_3d(output)
    kernel_size = _in_3d(spec.kernel_size, 1)
    grid = fprop_grid(spec, config)
    _check_grid_axis("group", grid[1])
    depthwise = spec.depthwise
    with torch.cuda.device(input.device) if input.is_cuda else contextlib.nullcontext():
        kernel[grid](
            input, weight, bias, output,
            batch, *in_size, *in_strides,
            *weight_strides,
            *out_size, *out_strides,
            *_in_3d(spec.stride, 1), *_in_3d(spec.pad_before, 0), *_in_3d(spec.dilation, 1),
            spec.in_channels_per_group, spec.out_channels if depthwise else spec.out_channels_per_group,
            spec.out_channels_per_group,
            KERNEL_D=kernel_size[0], KERNEL_H=kernel_size[1], KERNEL_W=kernel_size[2],
            PADDING_MODE=PADDING_MODES[spec.padding_mode], HAS_BIAS=bias is not None, DEPTHWISE=depthwise,
            **_numeric_meta(interpreting, input, weight, output), **config.meta(),
        )
    return output


@functools.lru_cache(maxsize=256)
def _phase_table(spec: ConvSpec) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """int32 [3, max_stride, 5] phase records (on the CPU) and the per-dimension tap and
    input steps; 1-d and 2-d problems get one trivial phase in their missing dims."""
    records = [[(0, 1, 0, 1, 0)]] * (3 - spec.dims) + [
        [(p.first_out, p.outputs, p.first_tap, p.taps, p.first_input) for p in dim] for dim in spec_phases(spec)
    ]
    table = torch.zeros((3, max(len(dim) for dim in records), 5), dtype=torch.int32)
    for d, dim in enumerate(records):
        table[d, : len(dim)] = torch.tensor(dim, dtype=torch.int32)
    steps = [phase_steps(s, d) for s, d in zip(_in_3d(spec.stride, 1), _in_3d(spec.dilation, 1))]
    return table, tuple(t for t, _ in steps), tuple(i for _, i in steps)


def conv_dgrad(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Transposed convolution of a batched input (weight [C_in, C_out/groups, *kernel]);
    with a conv's grad_output as input and its weight, the conv's input gradient."""
    output = torch.empty(
        (spec.batch, spec.out_channels, *spec.out_size), dtype=input.dtype, device=input.device,
        memory_format=output_memory_format(input, weight),
    )
    if output.numel() == 0:
        return output
    config = config or choose_config("dgrad", spec, input)
    kernel, interpreting = launchable(dgrad.conv_dgrad_kernel, input.device)
    table, tap_steps, in_steps = _phase_table(spec)
    (batch, _, *in_size), in_strides = _layout_3d(input)
    _, weight_strides = _layout_3d(weight)
    _, out_strides = _layout_3d(output)
    grid = dgrad_grid(spec, config)
    _check_grid_axis("group", grid[1])
    _check_grid_axis("stride phase", grid[2])
    depthwise = spec.depthwise
    with torch.cuda.device(input.device) if input.is_cuda else contextlib.nullcontext():
        kernel[grid](
            input, weight, bias, output, table.to(input.device, non_blocking=True),
            batch, *in_size, *in_strides,
            *weight_strides,
            *out_strides,
            *_in_3d(spec.stride, 1), *tap_steps, *in_steps,
            table.shape[1], spec.in_channels_per_group, spec.out_channels if depthwise else spec.out_channels_per_group,
            spec.out_channels_per_group,
            HAS_BIAS=bias is not None, DEPTHWISE=depthwise,
            **_numeric_meta(interpreting, input, weight, output), **config.meta(),
        )
    return output



REDUCE_BLOCK = 1024


def conv_wgrad(
    input: torch.Tensor, grad_output: torch.Tensor, spec: ConvSpec, bias_grad: bool,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grad_weight [C_out, C_in/groups, *kernel], grad_bias [C_out] or None) of the forward
    convolution `spec` (batched input and grad_output). Two launches: the split-K GEMM
    into an fp32 workspace (fp64 for fp64), then the in-order reduction of the splits."""
    dtype, device = input.dtype, input.device
    taps = math.prod(spec.kernel_size)
    weight_numel = spec.out_channels * spec.in_channels_per_group * taps
    grad_weight = torch.empty(
        (spec.out_channels, spec.in_channels_per_group, *spec.kernel_size), dtype=dtype, device=device
    )
    grad_bias = torch.empty((spec.out_channels,), dtype=dtype, device=device) if bias_grad else None
    rows = spec.batch * math.prod(spec.out_size)
    if weight_numel == 0 or rows == 0:
        grad_weight.zero_()
        if grad_bias is not None:
            grad_bias.zero_()
        return grad_weight, grad_bias
    config = config or choose_config("wgrad", spec, input)
    splits, rows_per_split = wgrad_split(spec, config)
    grid = wgrad_grid(spec, config)
    _check_grid_axis("split", splits)
    split_stride = weight_numel + (spec.out_channels if bias_grad else 0)  # bias partials only when asked
    workspace = torch.empty((splits, split_stride), dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                            device=device)
    kernel, interpreting = launchable(wgrad.conv_wgrad_kernel, device)
    reduce, _ = launchable(wgrad.wgrad_reduce_kernel, device)
    (batch, _, *in_size), in_strides = _layout_3d(input)
    (_, _, *out_size), grad_strides = _layout_3d(grad_output)
    kernel_size = _in_3d(spec.kernel_size, 1)
    depthwise = spec.depthwise
    meta = _numeric_meta(interpreting, input, grad_output, workspace)
    with torch.cuda.device(device) if input.is_cuda else contextlib.nullcontext():
        kernel[grid](
            input, grad_output, workspace,
            batch, *in_size, *in_strides,
            *out_size, *grad_strides,
            *_in_3d(spec.stride, 1), *_in_3d(spec.pad_before, 0), *_in_3d(spec.dilation, 1),
            spec.in_channels_per_group, spec.out_channels if depthwise else spec.out_channels_per_group,
            spec.out_channels_per_group, rows_per_split, split_stride, weight_numel,
            KERNEL_D=kernel_size[0], KERNEL_H=kernel_size[1], KERNEL_W=kernel_size[2],
            PADDING_MODE=PADDING_MODES[spec.padding_mode], BIAS_GRAD=bias_grad, DEPTHWISE=depthwise,
            BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
            num_warps=config.num_warps, num_stages=config.num_stages, **meta,
        )
        reduce[(triton.cdiv(split_stride, REDUCE_BLOCK),)](
            workspace, grad_weight, grad_bias, splits, split_stride, weight_numel,
            BIAS_GRAD=bias_grad, BLOCK=REDUCE_BLOCK,
        )
    return grad_weight, grad_bias
