"""Shared problem tables and the accuracy oracle used by tests and benchmarks.

A case is written once, in torch's own argument names; tests run it at the size given,
benchmarks may scale it up. Tolerances are per dtype and relative to the largest
magnitude of a float64 reference computed from the same (already rounded) inputs, so
they bound accumulation and output rounding, not input quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: (atol relative to max |reference|) per dtype: fp32 accumulation of up to a few thousand
#: terms, then one rounding to the output dtype (fp16 2^-11, bf16 2^-8).
TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 2e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 1.2e-2,
}
DTYPES = tuple(TOLERANCE)


@dataclass(frozen=True)
class ConvCase:
    """One convolution: input [batch, in_channels, *in_size], torch's keyword arguments."""

    name: str
    in_size: tuple[int, ...]
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    batch: int = 2
    transposed: bool = False
    bias: bool = True
    kwargs: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return len(self.in_size)

    def tensors(self, dtype: torch.dtype, device: str = "cpu", generator: torch.Generator | None = None):
        """Fresh random (input, weight, bias) for this case."""
        groups = self.kwargs.get("groups", 1)
        if self.transposed:
            weight_shape = (self.in_channels, self.out_channels // groups, *self.kernel_size)
        else:
            weight_shape = (self.out_channels, self.in_channels // groups, *self.kernel_size)
        make = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype).to(device)
        input = make(self.batch, self.in_channels, *self.in_size)
        weight = make(*weight_shape)
        bias = make(self.out_channels) if self.bias else None
        return input, weight, bias


def assert_close(actual: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype, what: str = "output") -> None:
    """|actual - reference| <= TOLERANCE[dtype] * max(|reference|, 1), elementwise."""
    assert actual.shape == reference.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(reference.shape)}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    if reference.numel() == 0:
        return
    scale = max(reference.abs().max().item(), 1.0)
    error = (actual.double() - reference.double()).abs().max().item()
    assert error <= TOLERANCE[dtype] * scale, f"{what}: max error {error:.3g} > {TOLERANCE[dtype]:.1g} * {scale:.3g}"


def check_against_torch(case: ConvCase, dtype: torch.dtype, prepare=lambda t: t) -> torch.Tensor:
    """Run `case` through tconv (inputs passed through `prepare`, e.g. a layout change)
    and compare with torch.nn.functional in float64 on the same values."""
    import torch.nn.functional as F

    import tconv

    name = f"conv_transpose{case.dims}d" if case.transposed else f"conv{case.dims}d"
    input, weight, bias = case.tensors(dtype)
    actual = getattr(tconv, name)(prepare(input), prepare(weight), bias, **case.kwargs)
    reference = getattr(F, name)(input.double(), weight.double(), None if bias is None else bias.double(), **case.kwargs)
    assert_close(actual, reference, dtype)
    return actual


def _c(name, in_size, cin, cout, kernel, **kwargs) -> ConvCase:
    options = {k: kwargs.pop(k) for k in ("batch", "bias") if k in kwargs}
    return ConvCase(name, tuple(in_size), cin, cout, tuple(kernel), kwargs=kwargs, **options)


def _t(name, in_size, cin, cout, kernel, **kwargs) -> ConvCase:
    options = {k: kwargs.pop(k) for k in ("batch", "bias") if k in kwargs}
    return ConvCase(name, tuple(in_size), cin, cout, tuple(kernel), transposed=True, kwargs=kwargs, **options)


#: Forward convolutions: every argument kind, 1d/2d/3d, odd sizes, channel counts that
#: are not multiples of the tiles, 1x1 and large kernels.
CONV_CASES = [
    _c("1d basic", (17,), 5, 7, (3,)),
    _c("1d stride pad dil", (40,), 6, 9, (5,), stride=3, padding=4, dilation=2),
    _c("1d large kernel", (50,), 3, 4, (11,), padding=5),
    _c("1d same even kernel dil", (23,), 4, 6, (4,), padding="same", dilation=3, bias=False),
    _c("1d valid", (19,), 4, 4, (6,), padding="valid"),
    _c("1d depthwise causal-like", (30,), 8, 8, (4,), padding=3, groups=8),
    _c("1d wide channels", (9,), 70, 20, (3,), padding=1),
    _c("2d basic", (9, 9), 5, 7, (3, 3), padding=1),
    _c("2d 1x1", (7, 6), 33, 18, (1, 1), batch=3),
    _c("2d 1x1 stride", (9, 9), 16, 32, (1, 1), stride=2, bias=False),
    _c("2d stem-like", (23, 21), 3, 16, (7, 7), stride=2, padding=3),
    _c("2d asym kernel", (11, 13), 4, 6, (1, 5), padding=(0, 2)),
    _c("2d asym stride pad dil", (15, 12), 5, 3, (3, 2), stride=(2, 1), padding=(2, 0), dilation=(1, 3)),
    _c("2d same even", (10, 9), 4, 5, (4, 2), padding="same"),
    _c("2d same dil", (12, 12), 3, 4, (3, 3), padding="same", dilation=2),
    _c("2d groups", (8, 8), 6, 9, (3, 3), padding=1, groups=3),
    _c("2d depthwise", (10, 10), 12, 12, (3, 3), padding=1, groups=12),
    _c("2d depthwise multiplier", (9, 7), 4, 12, (5, 5), padding=2, stride=2, groups=4),
    _c("2d channels > tile", (5, 5), 67, 130, (3, 3), batch=1, padding=1),
    _c("2d many rows", (24, 24), 3, 5, (3, 3), batch=3),
    _c("2d kernel == input", (5, 5), 4, 3, (5, 5)),
    _c("2d pad > kernel", (4, 4), 2, 3, (2, 2), padding=3),
    _c("3d basic", (5, 6, 7), 3, 4, (3, 3, 3), padding=1),
    _c("3d stride", (9, 8, 7), 4, 6, (3, 3, 3), stride=2, padding=1),
    _c("3d asym dil groups", (6, 9, 8), 4, 6, (2, 3, 1), padding=(1, 0, 2), dilation=(2, 1, 1), groups=2),
    _c("3d 1x1x1", (4, 5, 3), 10, 3, (1, 1, 1), bias=False),
    _c("3d same", (5, 5, 6), 2, 3, (2, 3, 4), padding="same"),
    # Thin layers at real channel counts: K per tap below tl.dot's 16.
    _c("2d RGB stem 3x3 s2", (15, 14), 3, 32, (3, 3), stride=2, padding=1),
    _c("1d mono k7", (33,), 1, 16, (7,), padding=3),
    _c("3d one channel", (6, 5, 7), 1, 8, (3, 3, 3), padding=1, bias=False),
    _c("2d 4 per group", (7, 8), 32, 32, (3, 3), padding=1, groups=8),
    # Small groups and one output channel (elementwise over (output channel, lane) pairs):
    # a segmentation head, lanes that are not a power of two, a channel multiplier.
    _c("2d one output channel", (9, 8), 32, 1, (3, 3), padding=1),
    _c("2d 20->2 head", (6, 7), 20, 2, (1, 1)),
    _c("1d 2 per group x2 dilated", (26,), 12, 24, (3,), padding=2, dilation=2, groups=6),
    # Channels 32 does not divide: the kernel's width folds into the reduction (HiFi-GAN's
    # 80-channel conv_pre, EfficientNet-like 48 channels with a stride).
    _c("1d 80 channels k7 folded", (21,), 80, 24, (7,), padding=3),
    _c("2d 48 channels s2 folded", (9, 10), 48, 20, (3, 3), stride=2, padding=1),
    # Channel counts that 8 (40, 24, 56) or 4 (20 per group) divide but 16 does not: channels-last
    # row strides reach the kernels divided by their power-of-two unit (IN_UNIT, WEIGHT_UNIT, ...).
    _c("2d 40->24 strided rows in units", (7, 9), 40, 24, (3, 3), stride=(1, 2), padding=1),
    _c("1d 56->40 dilated rows in units", (19,), 56, 40, (3,), padding=2, dilation=2),
    _c("3d 40->32 groups rows in units", (3, 5, 6), 40, 32, (1, 3, 3), padding=(0, 1, 1), groups=2, bias=False),
    _c("2d depthwise 24 rows in units", (7, 6), 24, 24, (3, 3), stride=(2, 1), padding=1, groups=24),
    # An input gradient of 3 channels past the elementwise rule: the column GEMM and col2im.
    _c("2d 3->40 asym stride dil columns", (13, 11), 3, 40, (5, 3), stride=(2, 1), padding=(2, 1), dilation=(1, 2)),
    # DeepBench's speech layers: 17-31 taps in one word of tap bits (5x5, padding 1, stride 2;
    # a 1-d k21), and one input channel under a 5x20 filter (100 taps: an elementwise launch
    # that checks bounds at every step, in 32-row tiles).
    _c("2d 5x5 s2 p1 speech", (11, 14), 32, 24, (5, 5), stride=2, padding=1),
    _c("1d k21 tap bits", (30,), 32, 8, (21,), padding=10, bias=False),
    _c("2d one channel 5x20 s2", (9, 27), 1, 8, (5, 20), stride=2),
    # 32-63 padded taps keep their bits in a 64-bit word (descriptors.base.tap_bits_limit).
    _c("2d 7x7 s2 p3 64-bit tap bits", (13, 12), 16, 24, (7, 7), stride=2, padding=3),
    _c("1d k41 64-bit tap bits", (47,), 16, 8, (41,), padding=20, bias=False),
    # No padding at 50 taps (DeepSpeech's second layer): row deltas, one mask for the loop.
    _c("2d 5x10 s2 unpadded", (9, 25), 32, 16, (5, 10), stride=2),
    # Thin and unpadded: patch embeddings (whose 16-long (kw, channel) runs fold, or which
    # pack), a strided thin 3-d conv.
    _c("2d RGB patch 4x4 s4", (16, 12), 3, 24, (4, 4), stride=4),
    _c("2d 4 channel patch 4x4 s4 folded", (12, 16), 4, 24, (4, 4), stride=4),
    _c("3d 2 channels 2x3x3 s(1,2,2) unpadded", (3, 7, 9), 2, 16, (2, 3, 3), stride=(1, 2, 2), bias=False),
]

#: Forward convolutions through the modules with each padding_mode (zeros included).
PADDING_MODE_CASES = [
    _c("1d pad3", (11,), 3, 4, (5,), padding=3),
    _c("2d pad1", (8, 9), 3, 5, (3, 3), padding=1),
    _c("2d asym pad stride dil", (10, 9), 4, 3, (3, 4), padding=(2, 3), stride=(1, 2), dilation=(2, 1)),
    _c("2d same even", (7, 8), 2, 3, (4, 2), padding="same"),
    _c("2d groups pad full", (6, 6), 4, 4, (3, 3), padding=5, groups=2),
    _c("2d 4 per group pad", (7, 6), 16, 16, (3, 3), padding=2, stride=2, groups=4),
    _c("3d pad", (5, 4, 6), 2, 3, (3, 3, 3), padding=(1, 2, 1)),
    _c("2d 3->80 pad2 columns", (9, 8), 3, 80, (3, 3), padding=2),
]

#: Transposed convolutions: stride > kernel, kernel > stride, stride 1, output_padding,
#: dilation, groups, crops larger than a stride.
CONV_TRANSPOSE_CASES = [
    _t("1d basic", (9,), 5, 7, (3,)),
    _t("1d stride 4 kernel 8", (10,), 4, 6, (8,), stride=4, padding=2),
    _t("1d stride > kernel", (7,), 3, 5, (2,), stride=3, output_padding=1),
    _t("1d dilated", (12,), 4, 4, (3,), stride=2, dilation=3, padding=1, output_padding=2),
    _t("1d hifigan-like", (8,), 16, 8, (16,), stride=8, padding=4),
    _t("2d dcgan k4 s2 p1", (5, 5), 8, 6, (4, 4), stride=2, padding=1),
    _t("2d k3 s2 p1 op1", (6, 5), 5, 7, (3, 3), stride=2, padding=1, output_padding=1),
    _t("2d k2 s2", (6, 7), 6, 4, (2, 2), stride=2, bias=False),
    _t("2d stride 1", (6, 6), 3, 5, (3, 3), padding=1),
    _t("2d stride > kernel", (4, 5), 3, 4, (2, 3), stride=(3, 4), output_padding=(2, 1)),
    _t("2d asym", (5, 7), 4, 6, (3, 5), stride=(2, 3), padding=(2, 1), dilation=(1, 2), output_padding=(1, 0)),
    _t("2d groups", (5, 5), 6, 9, (3, 3), stride=2, padding=1, groups=3),
    _t("2d depthwise", (6, 6), 8, 8, (4, 4), stride=2, padding=1, groups=8),
    _t("2d wide channels", (3, 3), 70, 130, (3, 3), stride=2, batch=1),
    _t("2d dilation > stride", (5, 5), 3, 3, (3, 3), stride=2, dilation=4, padding=2),
    _t("2d big crop", (6, 6), 3, 4, (5, 5), stride=2, padding=4),
    _t("3d k2 s2", (3, 4, 3), 4, 5, (2, 2, 2), stride=2),
    _t("3d k3 s2 p1 op1", (3, 3, 4), 3, 4, (3, 3, 3), stride=2, padding=1, output_padding=1),
    _t("3d asym groups", (4, 3, 5), 4, 6, (2, 3, 3), stride=(1, 2, 3), padding=(0, 1, 1), groups=2),
    _t("2d one input channel", (5, 6), 1, 8, (4, 4), stride=2, padding=1),
    _t("2d 4 per group", (5, 4), 16, 16, (4, 4), stride=2, padding=1, groups=4),
    _t("1d one output channel", (9,), 24, 1, (5,), stride=3, padding=1),
    _t("2d 24->40 k3 s2 op1 rows in units", (5, 6), 24, 40, (3, 3), stride=2, padding=1, output_padding=1),
    # 1-15 output channels past the elementwise rule (ConvSpec.tap_columns): DCGAN's output
    # layer, one output channel (a one-channel input's gradient: DeepSpeech's 5x20 filter),
    # a dilated 1d with output_padding, a 3d one.
    _t("2d 64->3 k4 s2 p1 columns", (6, 5), 64, 3, (4, 4), stride=2, padding=1),
    _t("2d 72->1 k3x5 s2 columns", (5, 6), 72, 1, (3, 5), stride=2, padding=(1, 2)),
    _t("1d 96->2 k7 s3 dil2 op1 columns", (11,), 96, 2, (7,), stride=3, padding=2, dilation=2, output_padding=1),
    _t("3d 32->5 k3 s2 op1 columns", (3, 4, 3), 32, 5, (3, 3, 3), stride=2, padding=1, output_padding=1),
]


def small_model() -> torch.nn.Module:
    """A small encoder-decoder with every conv kind the tuner captures (for `tconv tune
    --model tconv.testing:small_model --input-shape 2,3,16,16` and its tests)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        torch.nn.Conv2d(8, 16, 1, stride=2),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16),
        torch.nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
    )


class _BasicBlock(torch.nn.Module):
    """Two 3x3 convs and the identity (or a strided 1x1 projection), as in ResNet-18/34."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)
        self.shortcut = torch.nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                                torch.nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def resnet18(num_classes: int = 1000) -> torch.nn.Module:
    """ResNet-18's layer structure (the conv layers torchvision's has), without torchvision: for
    `tconv tune --dry-run --model tconv.testing:resnet18 --input-shape 8,3,224,224`."""
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False), torch.nn.BatchNorm2d(64),
                                     torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1)]
    in_channels = 64
    for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(in_channels, channels, stride), _BasicBlock(channels, channels, 1)]
        in_channels = channels
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(512, num_classes)]
    return torch.nn.Sequential(*layers)

