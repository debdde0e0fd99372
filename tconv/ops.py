"""tconv's custom ops (namespace ``tconv::``), their fake implementations and autograd.

Three ops, one per kernel, so that torch.compile(fullgraph=True) traces tconv models
forward and backward with no graph break:

- ``tconv::conv``: forward convolution (fprop kernel);
- ``tconv::conv_transpose``: transposed convolution with an explicit output size (dgrad
  kernel); it is also conv's input gradient;
- ``tconv::conv_weight_grad``: weight (and bias) gradient of a forward convolution (wgrad
  kernel); with input and grad_output swapped, transposed conv's weight gradient.

Arguments arrive checked (tconv.functional does it with torch's errors) and batched.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _launch
from .spec import forward_spec, transposed_grad_pad_after, transposed_spec


def _empty_like_output(input: Tensor, weight: Tensor, shape) -> Tensor:
    return torch.empty(
        shape, dtype=input.dtype, device=input.device, memory_format=_launch.output_memory_format(input, weight)
    )


# ----------------------------------------------------------------------------- conv
@torch.library.custom_op("tconv::conv", mutates_args=())
def conv(
    input: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], pad_before: list[int],
    pad_after: list[int], dilation: list[int], groups: int, padding_mode: str,
) -> Tensor:
    spec = forward_spec(input.shape, weight.shape, stride, pad_before, pad_after, dilation, groups, padding_mode)
    return _launch.conv_fprop(input, weight, bias, spec)


@conv.register_fake
def _(input, weight, bias, stride, pad_before, pad_after, dilation, groups, padding_mode):
    spec = forward_spec(input.shape, weight.shape, stride, pad_before, pad_after, dilation, groups, padding_mode)
    return _empty_like_output(input, weight, (spec.batch, spec.out_channels, *spec.out_size))


# ------------------------------------------------------------------- conv_transpose
@torch.library.custom_op("tconv::conv_transpose", mutates_args=())
def conv_transpose(
    input: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
    out_size: list[int], dilation: list[int], groups: int,
) -> Tensor:
    spec = transposed_spec(input.shape, weight.shape, stride, padding, out_size, dilation, groups)
    return _launch.conv_dgrad(input, weight, bias, spec)


@conv_transpose.register_fake
def _(input, weight, bias, stride, padding, out_size, dilation, groups):
    return _empty_like_output(input, weight, (input.shape[0], weight.shape[1] * groups, *out_size))


# ----------------------------------------------------------------- conv_weight_grad
@torch.library.custom_op("tconv::conv_weight_grad", mutates_args=())
def conv_weight_grad(
    input: Tensor, grad_output: Tensor, kernel_size: list[int], stride: list[int], pad_before: list[int],
    pad_after: list[int], dilation: list[int], groups: int, padding_mode: str, bias_grad: bool,
) -> tuple[Tensor, Tensor]:
    """(grad_weight, grad_bias); grad_bias is empty when bias_grad is False."""
    weight_shape = (grad_output.shape[1], input.shape[1] // groups, *kernel_size)
    spec = forward_spec(input.shape, weight_shape, stride, pad_before, pad_after, dilation, groups, padding_mode)
    grad_weight, grad_bias = _launch.conv_wgrad(input, grad_output, spec, bias_grad)
    return grad_weight, grad_bias if grad_bias is not None else input.new_empty(0)


@conv_weight_grad.register_fake
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


def _conv_setup(ctx, inputs, output):
    input, weight, bias, stride, pad_before, pad_after, dilation, groups, padding_mode = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, pad_before, pad_after, dilation, groups, padding_mode)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    stride, pad_before, pad_after, dilation, groups, padding_mode = ctx.args
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        if padding_mode == "zeros":
            grad_input = conv_transpose(grad_output, weight, None, stride, pad_before, list(input.shape[2:]), dilation, groups)
        else:  # gradient of the (never materialised) padded input, then folded back
            padded = [i + b + a for i, b, a in zip(input.shape[2:], pad_before, pad_after)]
            grad_padded = conv_transpose(grad_output, weight, None, stride, [0] * len(padded), padded, dilation, groups)
            grad_input = _fold_padding(grad_padded, pad_before, pad_after, padding_mode)
    bias_grad = ctx.has_bias and ctx.needs_input_grad[2]
    if ctx.needs_input_grad[1] or bias_grad:
        grad_weight, grad_bias = conv_weight_grad(
            input, grad_output, list(weight.shape[2:]), stride, pad_before, pad_after, dilation, groups, padding_mode,
            bias_grad,
        )
        grad_weight = grad_weight if ctx.needs_input_grad[1] else None
        grad_bias = grad_bias if bias_grad else None
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


conv.register_autograd(_conv_backward, setup_context=_conv_setup)


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
    if ctx.needs_input_grad[0]:
        grad_input = conv(grad_output, weight, None, stride, padding, pad_after, dilation, groups, "zeros")
    if ctx.needs_input_grad[1]:
        grad_weight, _ = conv_weight_grad(
            grad_output, input, list(weight.shape[2:]), stride, padding, pad_after, dilation, groups, "zeros", False
        )
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_output.sum(dim=[0, *range(2, grad_output.dim())])
    return grad_input, grad_weight, grad_bias, None, None, None, None, None


conv_transpose.register_autograd(_conv_transpose_backward, setup_context=_conv_transpose_setup)


def _no_double_backward_setup(ctx, inputs, output):
    pass


def _no_double_backward(ctx, grad_weight, grad_bias):
    raise NotImplementedError("tconv does not support double backward (gradients of conv_weight_grad) yet")


conv_weight_grad.register_autograd(_no_double_backward, setup_context=_no_double_backward_setup)
