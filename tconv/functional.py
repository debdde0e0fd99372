"""The functional API: each function takes exactly what its torch.nn.functional
namesake takes and returns the same thing, computed by tconv's Triton kernels."""

from __future__ import annotations

import torch

from . import ops
from .spec import IntOrTuple, conv_spec, conv_transpose_spec

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def _autocast(*tensors):
    """Under torch.autocast, convolutions run in the autocast dtype (torch's lower-precision
    op list): floating-point tensors are cast to it, as torch casts its own conv's."""
    first = tensors[0]
    if not isinstance(first, torch.Tensor) or first.device.type not in ("cpu", "cuda"):
        return tensors  # e.g. meta tensors (shape capture), which autocast knows nothing of
    if not torch.is_autocast_enabled(first.device.type):
        return tensors
    dtype = torch.get_autocast_dtype(first.device.type)
    return tuple(
        t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors
    )


def convolution(
    op: str,
    dims: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntOrTuple,
    padding: IntOrTuple | str,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: str = "zeros",
    pad_after: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Forward convolution with every torch argument, padding_mode and asymmetric
    trailing padding included (the modules use those two)."""
    input, weight, bias = _autocast(input, weight, bias)
    spec, batched = conv_spec(op, dims, input, weight, bias, stride, padding, dilation, groups, padding_mode, pad_after)
    output = ops.conv(
        input if batched else input.unsqueeze(0), weight, bias, list(spec.stride), list(spec.pad_before),
        list(spec.pad_after), list(spec.dilation), groups, padding_mode,
    )
    return output if batched else output.squeeze(0)


def transposed_convolution(
    op: str,
    dims: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> torch.Tensor:
    input, weight, bias = _autocast(input, weight, bias)
    spec, batched = conv_transpose_spec(op, dims, input, weight, bias, stride, padding, output_padding, groups, dilation)
    output = ops.conv_transpose(
        input if batched else input.unsqueeze(0), weight, bias, list(spec.stride), list(spec.pad_before),
        list(spec.out_size), list(spec.dilation), groups,
    )
    return output if batched else output.squeeze(0)


def conv1d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1, padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv1d, by tconv's kernels."""
    return convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1, padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv2d, by tconv's kernels."""
    return convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1, padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv3d, by tconv's kernels."""
    return convolution("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
    groups: int = 1, dilation: IntOrTuple = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv_transpose1d, by tconv's kernels."""
    return transposed_convolution(
        "conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose2d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
    groups: int = 1, dilation: IntOrTuple = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv_transpose2d, by tconv's kernels."""
    return transposed_convolution(
        "conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose3d(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
    groups: int = 1, dilation: IntOrTuple = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv_transpose3d, by tconv's kernels."""
    return transposed_convolution(
        "conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups, dilation
    )
