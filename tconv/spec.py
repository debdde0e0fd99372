"""Argument checking and shape math for every tconv op, in one place.

A :class:`ConvSpec` is what a convolution is once its arguments are checked: used by the
ops, the launchers, the modules, the tuner and the benchmarks alike. Errors follow
torch's: the same exception types, messages that name the argument and its values, and
always raised before any kernel runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

IntOrTuple = int | Sequence[int]

#: padding_mode names, in the numbering of the kernels' PADDING_MODE meta-parameter.
PADDING_MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def cached_field_hash(self) -> int:
    """__hash__ of a frozen dataclass that keys hot memos: its fields' hash, computed once."""
    try:
        return self.__dict__["_hash"]
    except KeyError:
        value = hash(tuple(getattr(self, name) for name in self.__dataclass_fields__))
        object.__setattr__(self, "_hash", value)
        return value


def state_without_hash(self) -> dict:
    """__getstate__ leaving the cached hash behind: another process hashes strings differently."""
    return {name: value for name, value in self.__dict__.items() if name != "_hash"}


#: tl.dot's smallest reduction: groups with fewer input channels pack taps (ConvSpec.packed_channels).
THIN_CHANNELS = 16
#: Multiply-adds per input or output element (useful work over the elements a pass must
#: move) up to which a small-group layer runs on CUDA cores (ConvSpec.elementwise_lanes).
#: An H100 SXM does 33.5 T fp32 FMA/s and moves 3.35 TB/s: 10 per byte, 20 per 16-bit
#: element. At 32 the CUDA cores take at most 1.6x the memory time, where tl.dot would
#: execute 16 / out_channels_per_group >= 2x its useful work on thin tiles.
ELEMENTWISE_MACS_PER_ELEMENT = 32
#: The most input channels per group the elementwise path reduces (one lane each, a power of two).
ELEMENTWISE_MAX_LANES = 64


@dataclass(frozen=True)
class ConvSpec:
    """A checked convolution problem (batched; spatial tuples have `dims` entries)."""

    dims: int
    transposed: bool
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    out_size: tuple[int, ...]
    stride: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    padding_mode: str = "zeros"

    __hash__ = cached_field_hash  # specs key the launchers' memos on every call
    __getstate__ = state_without_hash

    def describe(self) -> str:
        """One line: the batched shapes and arguments, as torch names them."""
        join = lambda values: "x".join(map(str, values))
        weight = ((self.in_channels, self.out_channels_per_group) if self.transposed
                  else (self.out_channels, self.in_channels_per_group)) + self.kernel_size
        padding = join(self.pad_before) + ("" if self.pad_after == self.pad_before else f"/{join(self.pad_after)}")
        return (f"{'transposed ' if self.transposed else ''}input {join((self.batch, self.in_channels, *self.in_size))}, "
                f"weight {join(weight)} -> output {join((self.batch, self.out_channels, *self.out_size))}; "
                f"stride {join(self.stride)}, padding {padding}, dilation {join(self.dilation)}, groups {self.groups}"
                + ("" if self.padding_mode == "zeros" else f", {self.padding_mode}"))

    @property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def depthwise(self) -> bool:
        """One input channel per group (depthwise layers, and single-channel inputs such as
        mono audio or one-channel volumes): always elementwise (elementwise_lanes)."""
        return self.in_channels_per_group == 1

    @functools.cached_property
    def elementwise_lanes(self) -> int:
        """0 when the kernels multiply on tensor cores; otherwise they run one launch-wide
        group with an elementwise multiply-add per tap and this many lanes (a power of two,
        at least the input channels per group) per output channel, summed once per tile.

        Elementwise: one input channel per group (depthwise, mono audio, one-channel
        volumes: tl.dot's K of 16 would be 15/16 padding), and small groups whose
        output channels per group are fewer than tl.dot's 16 (ResNeXt's 4 per group, a
        one-channel output or its input gradient) when their useful multiply-adds per
        element moved stay within ELEMENTWISE_MACS_PER_ELEMENT: there the CUDA cores keep
        near memory speed and execute no padding."""
        reduction, outputs = self.in_channels_per_group, self.out_channels_per_group
        if reduction == 1:
            return 1
        if outputs >= THIN_CHANNELS or reduction > ELEMENTWISE_MAX_LANES:
            return 0
        elements = self.batch * (self.in_channels * math.prod(self.in_size) + self.out_channels * math.prod(self.out_size))
        if self.useful_macs > ELEMENTWISE_MACS_PER_ELEMENT * elements:
            return 0
        return 1 << (reduction - 1).bit_length()

    @property
    def packed_channels(self) -> int:
        """The input channels per group when there are 2 to 15 (an RGB stem, small groups)
        and the layer is not elementwise, else 0. The forward and weight-gradient kernels
        then pack (tap, channel) pairs into one dimension of their GEMM (im2col order inside
        a tile) rather than padding each tap's channels to tl.dot's 16."""
        channels = self.in_channels_per_group
        return channels if 1 < channels < THIN_CHANNELS and not self.elementwise_lanes else 0

    @property
    def tap_columns(self) -> bool:
        """A transposed convolution (so also a conv's input gradient) of one group with 1-15
        output channels that is not elementwise (an RGB stem's input gradient, DCGAN's
        64 -> 3 output layer, DeepSpeech's one-channel 5x20 input gradient): a GEMM over
        every (output channel, tap) pair, then a column-to-image sum
        (tconv/descriptors/columns.py), rather than the phase kernel's N padded to tl.dot's
        16 (16.8x the useful multiply-adds for that one channel)."""
        return (self.transposed and self.groups == 1 and self.out_channels < THIN_CHANNELS
                and not self.elementwise_lanes)

    @property
    def useful_macs(self) -> int:
        """Multiply-adds that pair an output with a real input element: the zeros of
        padding and of transposed convolution's zero-insertion do not count."""
        per_channel_pair = math.prod(
            _valid_pairs(o, i, k, s, p, d, self.transposed)
            for o, i, k, s, p, d in zip(
                self.out_size, self.in_size, self.kernel_size, self.stride, self.pad_before, self.dilation
            )
        )
        return self.batch * self.out_channels * self.in_channels_per_group * per_channel_pair


def _valid_pairs(out_size: int, in_size: int, kernel: int, stride: int, pad: int, dilation: int, transposed: bool) -> int:
    """(output, tap) pairs of one dimension that read a real input element."""
    if not transposed:
        return sum(1 for o in range(out_size) for k in range(kernel) if 0 <= o * stride - pad + k * dilation < in_size)
    return sum(
        1
        for o in range(out_size)
        for k in range(kernel)
        if (o + pad - k * dilation) % stride == 0 and 0 <= (o + pad - k * dilation) // stride < in_size
    )


def as_tuple(value: IntOrTuple, dims: int, name: str) -> tuple[int, ...]:
    """torch's expansion of an int-or-sequence argument to one entry per spatial dim."""
    if isinstance(value, bool) or not isinstance(value, (int, Sequence, torch.Size)) or isinstance(value, str):
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, but got {name}={value!r}")
    if isinstance(value, int):
        return (value,) * dims
    values = tuple(value)
    # torch's parser refuses a sequence led by a bool, and takes later bools as 0 / 1
    if not all(isinstance(v, int) for v in values) or (values and isinstance(values[0], bool)):
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, but got {name}={value!r}")
    values = tuple(map(int, values))
    if len(values) == 1:
        return values * dims
    if len(values) != dims:
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of {dims} values to match the "
            f"convolution dimensions, but got {name}={list(values)}"
        )
    return values


def _check_tensors(op: str, dims: int, input, weight, bias) -> bool:
    """Types, ranks, dtypes and devices; returns whether the input is batched."""
    for name, tensor in (("input", input), ("weight", weight)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{op}(): argument '{name}' must be Tensor, not {type(tensor).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{op}(): argument 'bias' must be Tensor or None, not {type(bias).__name__}")
    if input.dim() not in (dims + 1, dims + 2):
        raise RuntimeError(
            f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to {op}, "
            f"but got input of size: {list(input.shape)}"
        )
    if weight.dim() != dims + 2:
        raise RuntimeError(
            f"Expected {dims + 2}-dimensional weight for {op}, but got weight of size {list(weight.shape)}"
        )
    # Mismatched dtypes first: torch raises RuntimeError for those whatever the dtypes are.
    if weight.dtype != input.dtype:
        raise RuntimeError(f"{op}: input dtype ({input.dtype}) and weight dtype ({weight.dtype}) should be the same")
    if bias is not None and bias.dtype != input.dtype:
        raise RuntimeError(f"{op}: input dtype ({input.dtype}) and bias dtype ({bias.dtype}) should be the same")
    if input.dtype not in SUPPORTED_DTYPES:
        raise NotImplementedError(
            f"{op}: input dtype {input.dtype} is not supported; tconv supports float16, bfloat16, float32, float64"
        )
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.device != input.device:
            raise RuntimeError(
                f"{op}: expected input and {name} to be on the same device, "
                f"but got input on {input.device} and {name} on {tensor.device}"
            )
    return input.dim() == dims + 2


def _check_positive(name: str, values: tuple[int, ...], what: str) -> None:
    if any(v <= 0 for v in values):
        raise RuntimeError(f"non-positive {what} is not supported, but got {name}={list(values)}")


def _check_groups(groups) -> None:
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"groups must be an int, but got groups={groups!r}")
    if groups <= 0:
        raise RuntimeError(f"non-positive groups is not supported, but got groups={groups}")


def _check_bias(bias, weight, out_channels: int) -> None:
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_channels):
        raise RuntimeError(
            f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
            f"{out_channels} elements, but got bias of size {list(bias.shape)} instead"
        )


def conv_spec(
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
) -> tuple[ConvSpec, bool]:
    """Check a forward convolution's arguments; returns (spec, batched).

    `padding` is what torch.nn.functional takes; `pad_after` (modules only) gives
    asymmetric trailing padding, as torch's modules do for 'same' with non-zeros modes.
    """
    batched = _check_tensors(op, dims, input, weight, bias)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(PADDING_MODES)}, but got padding_mode={padding_mode!r}")
    stride = as_tuple(stride, dims, "stride")
    dilation = as_tuple(dilation, dims, "dilation")
    _check_groups(groups)
    _check_positive("stride", stride, "stride")
    _check_positive("dilation", dilation, "dilation")
    kernel_size = tuple(weight.shape[2:])
    if isinstance(padding, str):
        if padding == "valid":
            pad_before = pad_after = (0,) * dims
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError(f"padding='same' is not supported for strided convolutions, but got stride={list(stride)}")
            total = tuple(d * (k - 1) for d, k in zip(dilation, kernel_size))
            pad_before = tuple(t // 2 for t in total)
            pad_after = tuple(t - b for t, b in zip(total, pad_before))
        else:
            raise RuntimeError(f"Invalid padding string: {padding!r}, expected 'same' or 'valid'")
    else:
        pad_before = as_tuple(padding, dims, "padding")
        pad_after = pad_before if pad_after is None else pad_after
    if any(p < 0 for p in pad_before + pad_after):
        raise RuntimeError(f"negative padding is not supported, but got padding={list(pad_before)}")

    shape = tuple(input.shape) if batched else (1, *input.shape)
    in_channels, in_size = shape[1], shape[2:]
    out_channels = weight.shape[0]
    if out_channels % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight.shape)} instead"
        )
    if in_channels != weight.shape[1] * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input{list(input.shape)} "
            f"to have {weight.shape[1] * groups} channels, but got {in_channels} channels instead"
        )
    _check_bias(bias, weight, out_channels)
    padded = tuple(i + b + a for i, b, a in zip(in_size, pad_before, pad_after))
    dilated_kernel = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel_size))
    if any(p < k for p, k in zip(padded, dilated_kernel)):
        raise RuntimeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
            f"Kernel size: ({' x '.join(map(str, dilated_kernel))}). Kernel size can't be greater than actual input size"
        )
    if padding_mode == "reflect" and any(p >= i for p, i in zip(pad_before + pad_after, in_size * 2)):
        raise RuntimeError(
            f"padding_mode='reflect': padding size should be less than the corresponding input dimension, "
            f"but got padding {list(pad_before)}/{list(pad_after)} for input size {list(in_size)}"
        )
    if padding_mode == "circular" and any(p > i for p, i in zip(pad_before + pad_after, in_size * 2)):
        raise RuntimeError(
            f"padding_mode='circular': padding value causes wrapping around more than once "
            f"(padding {list(pad_before)}/{list(pad_after)}, input size {list(in_size)})"
        )
    if padding_mode in ("reflect", "replicate", "circular") and any(i == 0 for i in in_size):
        raise RuntimeError(f"padding_mode={padding_mode!r} needs non-empty spatial dims, got input size {list(in_size)}")
    out_size = tuple((p - k) // s + 1 for p, k, s in zip(padded, dilated_kernel, stride))
    spec = forward_spec(shape, tuple(weight.shape), stride, pad_before, pad_after, dilation, groups, padding_mode)
    assert spec.out_size == out_size
    return spec, batched


def conv_transpose_spec(
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
) -> tuple[ConvSpec, bool]:
    """Check a transposed convolution's arguments; returns (spec, batched)."""
    batched = _check_tensors(op, dims, input, weight, bias)
    if isinstance(padding, str):
        raise TypeError(f"{op}(): padding must be an int or a tuple of ints, but got padding={padding!r}")
    stride = as_tuple(stride, dims, "stride")
    padding = as_tuple(padding, dims, "padding")
    output_padding = as_tuple(output_padding, dims, "output_padding")
    dilation = as_tuple(dilation, dims, "dilation")
    _check_groups(groups)
    _check_positive("stride", stride, "stride")
    _check_positive("dilation", dilation, "dilation")
    if any(p < 0 for p in padding):
        raise RuntimeError(f"negative padding is not supported, but got padding={list(padding)}")
    if any(p < 0 for p in output_padding):
        raise RuntimeError(f"negative output_padding is not supported, but got output_padding={list(output_padding)}")
    if any(op_ >= s and op_ >= d for op_, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(
            f"output padding must be smaller than either stride or dilation, but got "
            f"output_padding={list(output_padding)}, stride={list(stride)}, dilation={list(dilation)}"
        )
    shape = tuple(input.shape) if batched else (1, *input.shape)
    in_channels, in_size = shape[1], shape[2:]
    if weight.shape[0] % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight.shape)} instead"
        )
    if in_channels != weight.shape[0]:
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(weight.shape)}, expected input{list(input.shape)} "
            f"to have {weight.shape[0]} channels, but got {in_channels} channels instead"
        )
    out_channels = weight.shape[1] * groups
    _check_bias(bias, weight, out_channels)
    kernel_size = tuple(weight.shape[2:])
    out_size = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + op_ + 1
        for i, s, p, d, k, op_ in zip(in_size, stride, padding, dilation, kernel_size, output_padding)
    )
    if any(o < 0 for o in out_size):
        raise RuntimeError(
            f"{op}: calculated output size {list(out_size)} is negative for input size {list(in_size)}, "
            f"kernel {list(kernel_size)}, stride {list(stride)}, padding {list(padding)}, dilation {list(dilation)}"
        )
    return transposed_spec(shape, tuple(weight.shape), stride, padding, out_size, dilation, groups), batched


def forward_spec(
    input_shape: Sequence[int], weight_shape: Sequence[int], stride: Sequence[int], pad_before: Sequence[int],
    pad_after: Sequence[int], dilation: Sequence[int], groups: int, padding_mode: str = "zeros",
) -> ConvSpec:
    """The spec of checked (or internally derived) forward-conv arguments; batched shapes.

    pad_after may be negative here: backward passes use it to cut the output at a size."""
    batch, in_channels, *in_size = input_shape
    kernel_size = tuple(weight_shape[2:])
    out_size = tuple(
        (i + b + a - d * (k - 1) - 1) // s + 1
        for i, b, a, d, k, s in zip(in_size, pad_before, pad_after, dilation, kernel_size, stride)
    )
    dims = len(in_size)
    return ConvSpec(
        dims, False, batch, in_channels, weight_shape[0], groups, tuple(in_size), kernel_size, out_size,
        tuple(stride), tuple(pad_before), tuple(pad_after), tuple(dilation), (0,) * dims, padding_mode,
    )


def transposed_spec(
    input_shape: Sequence[int], weight_shape: Sequence[int], stride: Sequence[int], padding: Sequence[int],
    out_size: Sequence[int], dilation: Sequence[int], groups: int,
) -> ConvSpec:
    """The spec of a transposed conv with an explicit output size (output_padding, or the
    input size a conv's input gradient must have); batched shapes."""
    batch, in_channels, *in_size = input_shape
    kernel_size = tuple(weight_shape[2:])
    output_padding = tuple(
        o - ((i - 1) * s - 2 * p + d * (k - 1) + 1)
        for o, i, s, p, d, k in zip(out_size, in_size, stride, padding, dilation, kernel_size)
    )
    return ConvSpec(
        len(in_size), True, batch, in_channels, weight_shape[1] * groups, groups, tuple(in_size), kernel_size,
        tuple(out_size), tuple(stride), tuple(padding), tuple(padding), tuple(dilation), output_padding,
    )


@dataclass(frozen=True)
class Phase:
    """One residue class of one output dimension of a transposed convolution."""

    first_out: int  # first output index o0 with (o0 + pad) % stride == residue
    outputs: int  # outputs o0, o0 + stride, ... below the output size
    first_tap: int  # first tap k0 with (k0 * dilation) % stride == residue
    taps: int  # taps k0, k0 + tap_step, ... below the kernel size
    first_input: int  # input index of (o0, k0): (o0 + pad - k0 * dilation) / stride


def phase_steps(stride: int, dilation: int) -> tuple[int, int]:
    """(tap_step, in_step): consecutive taps of a phase are tap_step apart, and the
    input index they read moves by in_step."""
    common = math.gcd(stride, dilation)
    return stride // common, dilation // common


def phases(out_size: int, kernel: int, stride: int, pad: int, dilation: int) -> list[Phase]:
    """Phase records of one transposed-convolution dimension, one per residue."""
    tap_step, _ = phase_steps(stride, dilation)
    records = []
    for residue in range(stride):
        first_out = (residue - pad) % stride
        outputs = max(0, -(-(out_size - first_out) // stride))
        first_tap = next((k for k in range(tap_step) if (k * dilation) % stride == residue), kernel)
        taps = max(0, -(-(kernel - first_tap) // tap_step)) if first_tap < kernel else 0
        first_tap = min(first_tap, kernel)
        first_input = (first_out + pad - first_tap * dilation) // stride
        records.append(Phase(first_out, outputs, first_tap, taps, first_input))
    return records


def spec_phases(spec: ConvSpec) -> list[list[Phase]]:
    """Phase records of every dimension of a transposed convolution."""
    return [
        phases(o, k, s, p, d)
        for o, k, s, p, d in zip(spec.out_size, spec.kernel_size, spec.stride, spec.pad_before, spec.dilation)
    ]


def transposed_grad_pad_after(
    in_size: Sequence[int], out_size: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], dilation: Sequence[int],
) -> list[int]:
    """Trailing padding of the forward conv over a transposed conv's grad_output that
    lands exactly on its input size: (out + pad + pad_after - dilated kernel) // stride + 1 == in."""
    return [
        (i - 1) * s + d * (k - 1) + 1 - o - p
        for i, o, k, s, p, d in zip(in_size, out_size, kernel_size, stride, padding, dilation)
    ]


def pass_specs(layer: ConvSpec) -> dict[str, tuple[str, ConvSpec]]:
    """{pass: (kernel, spec)} for a layer's forward ('fprop'), input gradient ('dgrad')
    and weight gradient ('wgrad'): the specs tconv.ops launches each kernel with (so
    the tuner and the benchmarks key and time exactly what training runs). Transposed
    convolutions with few output channels run 'columns' (ConvSpec.tap_columns) where
    others run 'dgrad'."""
    if layer.transposed:
        grad_output_shape = (layer.batch, layer.out_channels, *layer.out_size)
        weight_shape = (layer.in_channels, layer.out_channels_per_group, *layer.kernel_size)
        pad_after = transposed_grad_pad_after(
            layer.in_size, layer.out_size, layer.kernel_size, layer.stride, layer.pad_before, layer.dilation
        )
        backward = forward_spec(
            grad_output_shape, weight_shape, layer.stride, layer.pad_before, pad_after, layer.dilation, layer.groups
        )
        forward = "columns" if layer.tap_columns else "dgrad"
        return {"fprop": (forward, layer), "dgrad": ("fprop", backward), "wgrad": ("wgrad", backward)}
    grad_output_shape = (layer.batch, layer.out_channels, *layer.out_size)
    weight_shape = (layer.out_channels, layer.in_channels_per_group, *layer.kernel_size)
    if layer.padding_mode == "zeros":
        pad, in_size = layer.pad_before, layer.in_size
    else:  # the gradient of the padded input, folded back afterwards
        pad = (0,) * layer.dims
        in_size = tuple(i + b + a for i, b, a in zip(layer.in_size, layer.pad_before, layer.pad_after))
    input_grad = transposed_spec(grad_output_shape, weight_shape, layer.stride, pad, in_size, layer.dilation, layer.groups)
    backward = "columns" if input_grad.tap_columns else "dgrad"
    return {"fprop": ("fprop", layer), "dgrad": (backward, input_grad), "wgrad": ("wgrad", layer)}
