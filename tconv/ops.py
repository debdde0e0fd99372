"""tconv's custom ops (namespace ``tconv::``), their fake implementations and autograd.

Three ops, one per kernel, so that torch.compile(fullgraph=True) traces tconv models
forward and backward with no graph break:

- ``tconv::conv``: forward convolution (fprop kernel);
- ``tconv::conv_transpose``: transposed convolution with an explicit output size (dgrad
  kernel); it is also conv's input gradient;
- ``tconv::conv_weight_grad``: weight (and bias) gradient of a forward convolution (wgrad
  kernel); with input and grad_output swapped, transposed conv's weight gradient.

Every op is differentiable in tconv's own kernels, its backward included (double
backward): the three are linear in each tensor argument, so each one's gradients are
again these three ops.

The eager path: `conv`, `conv_transpose` and `conv_weight_grad` below call the custom ops
while torch.compile, export or a dispatch mode traces, and otherwise an
autograd.Function with the same implementation, setup and backward (the custom-op
machinery costs tens of microseconds a call; see perf/host.py). Arguments arrive
checked (tconv.functional does it with torch's errors) and batched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import _launch
from .descriptors.base import output_memory_format
from .spec import forward_spec, transposed_grad_pad_after, transposed_spec

#: Tensor types the eager path takes; subclasses (fake, functional, user tensors) go
#: through the custom ops, which dispatch them.
_PLAIN = (Tensor, torch.nn.Parameter)


def _route(*tensors: Tensor | None) -> int:
    """How a call runs: 0 through the custom op (torch.compile, export, a dispatch mode, a
    functorch transform or torch.jit.trace sees it, or a tensor is a subclass such as a
    fake one, or on a device tconv does not launch on); eagerly, 1 straight to the
    launcher, 2 through the autograd.Function when autograd records it."""
    if (torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack()
            or torch._C._are_functorch_transforms_active() or torch.jit.is_tracing()):
        return 0
    first = tensors[0]
    if not (first.is_cuda or first.is_cpu):
        return 0
    recording = False
    for tensor in tensors:
        if tensor is not None:
            if type(tensor) not in _PLAIN:
                return 0
            recording = recording or tensor.requires_grad
    return 2 if recording and torch.is_grad_enabled() else 1


def _empty_like_output(input: Tensor, weight: Tensor, shape) -> Tensor:
    return torch.empty(
        shape, dtype=input.dtype, device=input.device, memory_format=output_memory_format(input, weight)
    )


# --------------------------------------------------------------- implementations
_specs: dict[tuple, object] = {}


def _spec(make, *args):
    """`make(*args)` (forward_spec / transposed_spec), memoised: the ops see the same
    problems call after call (with tuple arguments from tconv.functional; lists, as the
    custom ops and the backward formulas pass, are converted)."""
    try:
        key = (make, *args)
        spec = _specs.get(key)
    except TypeError:  # a list among the arguments
        key = (make, *(tuple(a) if isinstance(a, list) else a for a in args))
        spec = _specs.get(key)
    if spec is None:
        if len(_specs) > 4096:
            _specs.clear()
        spec = _specs[key] = make(*args)
    return spec


def _conv(
    input: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], pad_before: list[int],
    pad_after: list[int], dilation: list[int], groups: int, padding_mode: str,
) -> Tensor:
    spec = _spec(forward_spec, input.shape, weight.shape, stride, pad_before, pad_after, dilation, groups, padding_mode)
    return _launch.conv_fprop(input, weight, bias, spec)


def _conv_transpose(
    input: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
    out_size: list[int], dilation: list[int], groups: int,
) -> Tensor:
    spec = _spec(transposed_spec, input.shape, weight.shape, stride, padding, out_size, dilation, groups)
    return _launch.conv_dgrad(input, weight, bias, spec)


def _conv_weight_grad(
    input: Tensor, grad_output: Tensor, kernel_size: list[int], stride: list[int], pad_before: list[int],
    pad_after: list[int], dilation: list[int], groups: int, padding_mode: str, bias_grad: bool,
) -> tuple[Tensor, Tensor]:
    """(grad_weight, grad_bias); grad_bias is empty when bias_grad is False."""
    weight_shape = (grad_output.shape[1], input.shape[1] // groups, *kernel_size)
    spec = _spec(forward_spec, input.shape, weight_shape, stride, pad_before, pad_after, dilation, groups, padding_mode)
    grad_weight, grad_bias = _launch.conv_wgrad(input, grad_output, spec, bias_grad)
    return grad_weight, grad_bias if grad_bias is not None else input.new_empty(0)


# ------------------------------------------------------------------ custom ops
conv_op = torch.library.custom_op("tconv::conv", _conv, mutates_args=())
conv_transpose_op = torch.library.custom_op("tconv::conv_transpose", _conv_transpose, mutates_args=())
conv_weight_grad_op = torch.library.custom_op("tconv::conv_weight_grad", _conv_weight_grad, mutates_args=())


@conv_op.register_fake
def _(input, weight, bias, stride, pad_before, pad_after, dilation, groups, padding_mode):
    spec = forward_spec(input.shape, weight.shape, stride, pad_before, pad_after, dilation, groups, padding_mode)
    return _empty_like_output(input, weight, (spec.batch, spec.out_channels, *spec.out_size))


@conv_transpose_op.register_fake
def _(input, weight, bias, stride, padding, out_size, dilation, groups):
    return _empty_like_output(input, weight, (input.shape[0], weight.shape[1] * groups, *out_size))


@conv_weight_grad_op.register_fake
def _(input, grad_output, kernel_size, stride, pad_before, pad_after, dilation, groups, padding_mode, bias_grad):
    grad_weight = input.new_empty((grad_output.shape[1], input.shape[1] // groups, *kernel_size))
    return grad_weight, input.new_empty(grad_output.shape[1] if bias_grad else 0)


# ------------------------------------------------------------------------ autograd
def _fold_padding(grad: Tensor, pad_before: list[int], pad_after: list[int], mode: str) -> Tensor:
    """Gradient w.r.t. a reflect/replicate/circular-padded input -> w.r.t. the input: each
    padded position's gradient is added to the element it was read from."""
    for dim, (before, after) in enumerate(zip(pad_before, pad_after), start=2):
        size = grad.shape[dim] - before - after
        inner = grad.narrow(dim, before, size).clone()
        left = torch.arange(before, device=grad.device)  # padded positions 0..before-1
        right = torch.arange(after, device=grad.device)  # padded positions before+size+t
        if mode == "reflect":
            left_to, right_to = before - left, size - 2 - right
        elif mode == "replicate":
            left_to, right_to = torch.zeros_like(left), torch.full_like(right, size - 1)
        else:  # circular
            left_to, right_to = size - before + left, right
        inner.index_add_(dim, left_to, grad.narrow(dim, 0, before))
        inner.index_add_(dim, right_to, grad.narrow(dim, before + size, after))
        grad = inner
    return grad


def _input_grad(grad_output: Tensor, weight: Tensor, in_size, stride, pad_before, pad_after, dilation, groups,
                padding_mode: str) -> Tensor:
    """The gradient w.r.t. a conv's input: the transposed conv of grad_output by weight."""
    if padding_mode == "zeros":
        return conv_transpose(grad_output, weight, None, stride, pad_before, list(in_size), dilation, groups)
    # the gradient of the (never materialised) padded input, then folded back
    padded = [i + b + a for i, b, a in zip(in_size, pad_before, pad_after)]
    grad_padded = conv_transpose(grad_output, weight, None, stride, [0] * len(padded), padded, dilation, groups)
    return _fold_padding(grad_padded, pad_before, pad_after, padding_mode)


def _in_backward_format(grad_output: Tensor, weight: Tensor, layout: torch.memory_format) -> Tensor:
    """grad_output in the memory format torch's conv backward computes in, `layout`: the
    forward output's (channels_last when input or weight is, output_memory_format), so that
    the input gradient the transposed pass writes in grad_output's format is torch's. One copy
    where the two differ (an NCHW or expanded grad_output of a channels-last layer), as torch
    makes it."""
    if output_memory_format(grad_output, weight) != layout:
        return grad_output.contiguous(memory_format=layout)
    return grad_output


def _weight_grad_format(grad_weight: Tensor, layout: torch.memory_format) -> Tensor:
    """grad_weight in torch's format, `layout` (as _in_backward_format's): the weight gradient
    kernel writes it contiguous, so a channels-last layer's takes one copy (the one autograd
    makes otherwise for a channels-last parameter's .grad)."""
    return grad_weight if layout == torch.contiguous_format else grad_weight.contiguous(memory_format=layout)


def _conv_setup(ctx, inputs, output):
    input, weight, bias, stride, pad_before, pad_after, dilation, groups, padding_mode = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, pad_before, pad_after, dilation, groups, padding_mode)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    stride, pad_before, pad_after, dilation, groups, padding_mode = ctx.args
    grad_input = grad_weight = grad_bias = None
    layout = output_memory_format(input, weight)
    grad_output = _in_backward_format(grad_output, weight, layout)
    if ctx.needs_input_grad[0]:
        grad_input = _input_grad(grad_output, weight, input.shape[2:], *ctx.args)
    bias_grad = ctx.has_bias and ctx.needs_input_grad[2]
    if ctx.needs_input_grad[1] or bias_grad:
        grad_weight, grad_bias = conv_weight_grad(
            input, grad_output, list(weight.shape[2:]), stride, pad_before, pad_after, dilation, groups, padding_mode,
            bias_grad,
        )
        grad_weight = _weight_grad_format(grad_weight, layout) if ctx.needs_input_grad[1] else None
        grad_bias = grad_bias if bias_grad else None
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


def _conv_transpose_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, out_size, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _conv_transpose_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.args
    out_size = grad_output.shape[2:]
    pad_after = transposed_grad_pad_after(input.shape[2:], out_size, weight.shape[2:], stride, padding, dilation)
    grad_input = grad_weight = grad_bias = None
    layout = output_memory_format(input, weight)
    grad_output = _in_backward_format(grad_output, weight, layout)
    if ctx.needs_input_grad[0]:
        grad_input = conv(grad_output, weight, None, stride, padding, pad_after, dilation, groups, "zeros")
    if ctx.needs_input_grad[1]:
        grad_weight, _ = conv_weight_grad(
            grad_output, input, list(weight.shape[2:]), stride, padding, pad_after, dilation, groups, "zeros", False
        )
        grad_weight = _weight_grad_format(grad_weight, layout)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_output.sum(dim=[0, *range(2, grad_output.dim())])
    return grad_input, grad_weight, grad_bias, None, None, None, None, None


def _conv_weight_grad_setup(ctx, inputs, output):
    input, grad_output, kernel_size, stride, pad_before, pad_after, dilation, groups, padding_mode, bias_grad = inputs
    ctx.save_for_backward(input, grad_output)
    ctx.args = (stride, pad_before, pad_after, dilation, groups, padding_mode)
    ctx.bias_grad = bias_grad


def _conv_weight_grad_backward(ctx, grad_grad_weight, grad_grad_bias):
    """grad_weight is bilinear in (input, grad_output) and grad_bias linear in grad_output:
    w.r.t. input, the conv input gradient of grad_output by grad_grad_weight; w.r.t.
    grad_output, the conv of input by grad_grad_weight with grad_grad_bias as its bias."""
    input, grad_output = ctx.saved_tensors
    stride, pad_before, pad_after, dilation, groups, padding_mode = ctx.args
    grad_input = grad_grad_output = None
    if ctx.needs_input_grad[0]:
        grad_input = _input_grad(grad_output, grad_grad_weight, input.shape[2:], *ctx.args)
    if ctx.needs_input_grad[1]:
        bias = grad_grad_bias if ctx.bias_grad else None
        grad_grad_output = conv(input, grad_grad_weight, bias, stride, pad_before, pad_after, dilation, groups,
                                padding_mode)
    return grad_input, grad_grad_output, None, None, None, None, None, None, None, None


def _autograd_function(name: str, tensors: int, implementation, setup_context, backward) -> Callable:
    """The apply of the eager twin of a custom op: the same implementation, setup and backward. Its
    apply takes the `tensors` leading tensor arguments and the rest as one tuple (apply
    walks every argument), and forward sets ctx up itself (a separate setup_context makes
    every apply bind its arguments through inspect.signature: tens of microseconds)."""

    def forward(ctx, *args):
        args = args[:tensors] + args[tensors]
        output = implementation(*args)
        setup_context(ctx, args, output)
        return output

    def backward_(ctx, *grads):
        return backward(ctx, *grads)[:tensors] + (None,)

    function = type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                        "backward": staticmethod(backward_)})
    # Function.apply's Python wrapper only matters under functorch transforms, which _route
    # sends to the custom ops: call the C++ apply beneath it (a few microseconds less).
    return super(torch.autograd.Function, function).apply


conv_op.register_autograd(_conv_backward, setup_context=_conv_setup)
conv_transpose_op.register_autograd(_conv_transpose_backward, setup_context=_conv_transpose_setup)
conv_weight_grad_op.register_autograd(_conv_weight_grad_backward, setup_context=_conv_weight_grad_setup)
_apply_conv = _autograd_function("Conv", 3, _conv, _conv_setup, _conv_backward)
_apply_conv_transpose = _autograd_function("ConvTranspose", 3, _conv_transpose, _conv_transpose_setup, _conv_transpose_backward)
_apply_conv_weight_grad = _autograd_function("ConvWeightGrad", 2, _conv_weight_grad, _conv_weight_grad_setup,
                                     _conv_weight_grad_backward)


# ------------------------------------------------------------------ what callers call
def conv(input, weight, bias, stride, pad_before, pad_after, dilation, groups, padding_mode) -> Tensor:
    """tconv::conv (same arguments)."""
    rest = (stride, pad_before, pad_after, dilation, groups, padding_mode)
    route = _route(input, weight, bias)
    if route == 1:
        return _conv(input, weight, bias, *rest)
    return _apply_conv(input, weight, bias, rest) if route else conv_op(input, weight, bias, *rest)


def conv_transpose(input, weight, bias, stride, padding, out_size, dilation, groups) -> Tensor:
    """tconv::conv_transpose (same arguments)."""
    rest = (stride, padding, out_size, dilation, groups)
    route = _route(input, weight, bias)
    if route == 1:
        return _conv_transpose(input, weight, bias, *rest)
    return _apply_conv_transpose(input, weight, bias, rest) if route else conv_transpose_op(input, weight, bias, *rest)


def conv_weight_grad(input, grad_output, kernel_size, stride, pad_before, pad_after, dilation, groups, padding_mode,
                     bias_grad) -> tuple[Tensor, Tensor]:
    """tconv::conv_weight_grad (same arguments)."""
    rest = (kernel_size, stride, pad_before, pad_after, dilation, groups, padding_mode, bias_grad)
    route = _route(input, grad_output)
    if route == 1:
        return _conv_weight_grad(input, grad_output, *rest)
    return _apply_conv_weight_grad(input, grad_output, rest) if route else conv_weight_grad_op(input, grad_output, *rest)
