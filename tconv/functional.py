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


class _Unmemoisable(Exception):
    pass


def _frozen(value):
    """A hashable stand-in for an int / int-sequence / str argument that equals another
    call's only when torch treats the two alike. True == 1, but torch refuses stride=True
    and a sequence led by a bool, and takes later bools in a sequence as 0 / 1: bare bools,
    sequences led by one and other types are left to the full check."""
    kind = type(value)
    if kind is int or kind is str:
        return value
    if kind is not tuple and kind is not list and kind is not torch.Size or (value and type(value[0]) is not int):
        raise _Unmemoisable
    for item in value:
        if type(item) is not int and type(item) is not bool:
            raise _Unmemoisable
    return tuple(value)


#: {call's arguments: (spec, batched, the op's argument tuples)} of checked calls: a repeated
#: call skips the checks and the shape arithmetic (each entry was checked once, as torch would).
_checked: dict[tuple, tuple] = {}


def _memoised(check, key: tuple, *args) -> tuple:
    entry = _checked.get(key)
    if entry is None:
        spec, batched = check(*args)
        if len(_checked) > 4096:
            _checked.clear()
        entry = _checked[key] = (spec, batched, spec.stride, spec.pad_before, spec.pad_after, spec.dilation, spec.out_size)
    return entry


def _key(op: str, input, weight, bias, *arguments) -> tuple | None:
    """The memo key of a call, or None to check it in full (and while torch.compile traces:
    its shapes may be symbolic, and the trace must not depend on this process's memo)."""
    if torch.compiler.is_compiling():
        return None
    try:
        return (op, input.shape, input.dtype, input.device, weight.shape, weight.dtype, weight.device,
                None if bias is None else (bias.shape, bias.dtype, bias.device), *map(_frozen, arguments))
    except (AttributeError, _Unmemoisable):  # not tensors, or unusual argument types: check them in full
        return None


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
    arguments = (op, dims, input, weight, bias, stride, padding, dilation, groups, padding_mode, pad_after)
    key = _key(op, input, weight, bias, stride, padding, dilation, groups, padding_mode,
               () if pad_after is None else pad_after)
    if key is None:
        spec, batched = conv_spec(*arguments)
        stride, pad_before, pad_after, dilation = spec.stride, spec.pad_before, spec.pad_after, spec.dilation
    else:
        spec, batched, stride, pad_before, pad_after, dilation, _ = _memoised(conv_spec, key, *arguments)
    output = ops.conv(input if batched else input.unsqueeze(0), weight, bias, stride, pad_before, pad_after, dilation,
                      groups, padding_mode)
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
    arguments = (op, dims, input, weight, bias, stride, padding, output_padding, groups, dilation)
    key = _key(op, input, weight, bias, stride, padding, output_padding, groups, dilation)
    if key is None:
        spec, batched = conv_transpose_spec(*arguments)
        stride, padding, out_size, dilation = spec.stride, spec.pad_before, spec.out_size, spec.dilation
    else:
        spec, batched, stride, padding, _, dilation, out_size = _memoised(conv_transpose_spec, key, *arguments)
    output = ops.conv_transpose(input if batched else input.unsqueeze(0), weight, bias, stride, padding, out_size,
                                dilation, groups)
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
