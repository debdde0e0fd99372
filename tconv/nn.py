"""torch.nn convolution modules computed by tconv's kernels.

Each class subclasses its torch namesake and replaces only the convolution: same
constructor, parameters, initialisation and state_dict, so weights load both ways.
"""

from __future__ import annotations

import torch
from torch import nn

from .functional import convolution, transposed_convolution
from .spec import PADDING_MODES

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "convert"]


class _ConvMixin:
    _dims: int
    _op: str

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # As torch's forward: zeros padding reads self.padding at every call (so changing it
        # after construction counts, and bad values raise torch's errors) ...
        if self.padding_mode == "zeros":
            return convolution(self._op, self._dims, input, weight, bias, self.stride, self.padding, self.dilation,
                               self.groups)
        if self.padding_mode not in PADDING_MODES:  # torch's F.pad raises this type
            raise NotImplementedError(
                f"Unrecognised padding_mode {self.padding_mode!r}: expected one of {sorted(PADDING_MODES)}"
            )
        # ... the other modes pad by [last_before, last_after, ..., first_before, first_after],
        # fixed at construction for every padding (int, tuple or 'same': its asymmetric split).
        pairs = self._reversed_padding_repeated_twice
        pad_before = tuple(pairs[2 * i] for i in reversed(range(self._dims)))
        pad_after = tuple(pairs[2 * i + 1] for i in reversed(range(self._dims)))
        return convolution(
            self._op, self._dims, input, weight, bias, self.stride, pad_before, self.dilation, self.groups,
            self.padding_mode, pad_after,
        )


class Conv1d(_ConvMixin, nn.Conv1d):
    """torch.nn.Conv1d with tconv's kernels."""

    _dims, _op = 1, "conv1d"


class Conv2d(_ConvMixin, nn.Conv2d):
    """torch.nn.Conv2d with tconv's kernels."""

    _dims, _op = 2, "conv2d"


class Conv3d(_ConvMixin, nn.Conv3d):
    """torch.nn.Conv3d with tconv's kernels."""

    _dims, _op = 3, "conv3d"


class _ConvTransposeMixin:
    _dims: int
    _op: str

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding mode is supported for {type(self).__name__}")
        # torch's own rule for output_size -> output_padding (and its errors).
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, self._dims, self.dilation
        )
        return transposed_convolution(
            self._op, self._dims, input, self.weight, self.bias, self.stride, self.padding, output_padding,
            self.groups, self.dilation,
        )


class ConvTranspose1d(_ConvTransposeMixin, nn.ConvTranspose1d):
    """torch.nn.ConvTranspose1d with tconv's kernels."""

    _dims, _op = 1, "conv_transpose1d"


class ConvTranspose2d(_ConvTransposeMixin, nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d with tconv's kernels."""

    _dims, _op = 2, "conv_transpose2d"


class ConvTranspose3d(_ConvTransposeMixin, nn.ConvTranspose3d):
    """torch.nn.ConvTranspose3d with tconv's kernels."""

    _dims, _op = 3, "conv_transpose3d"


_REPLACEMENTS = {
    nn.Conv1d: Conv1d,
    nn.Conv2d: Conv2d,
    nn.Conv3d: Conv3d,
    nn.ConvTranspose1d: ConvTranspose1d,
    nn.ConvTranspose2d: ConvTranspose2d,
    nn.ConvTranspose3d: ConvTranspose3d,
}


def convert(model: nn.Module) -> nn.Module:
    """Make every torch convolution module in `model` a tconv one, in place; returns `model`.

    Only modules whose type is exactly a torch conv class are converted (a user's
    subclass may override forward, so it is left alone). The module objects are kept:
    their class is switched, so parameters, buffers, hooks and references held by an
    optimizer all stay valid.
    """
    for module in model.modules():
        replacement = _REPLACEMENTS.get(type(module))
        if replacement is not None:
            module.__class__ = replacement
    return model
