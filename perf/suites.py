"""Benchmark shape suites: the conv layers of real models, as data.

Shapes, batch sizes and per-pass counts follow ../shared/perf_shapes.md (which cites the
model sources: torchvision ResNet-50 v1.5 and MobileNetV2, EfficientNet-B0, diffusers'
Stable Diffusion 1.5 UNet and VAE, pytorch/examples DCGAN, HiFi-GAN config_v1, WaveNet /
TCN / Mamba, MLPerf 3D U-Net; the thin suite's first layers: torchvision MobileNetV2's stem,
EnCodec's SEANet encoder input conv, ResNeXt-50 32x4d's grouped 3x3, and the patch embeddings of
timm / CLIP vision transformers (ViT-B/16, ViT-L/14) and Swin-T). `count` is how often the layer runs in one forward pass.
Tests reuse these tables through `scaled()`, at a size the interpreter runs quickly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from tconv.spec import ConvSpec, conv_spec, conv_transpose_spec


@dataclass(frozen=True)
class Layer:
    """One conv layer: input [batch, in_channels, *in_size], torch's arguments."""

    name: str
    batch: int
    in_channels: int
    in_size: tuple[int, ...]
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False
    count: int = 1

    @property
    def dims(self) -> int:
        return len(self.in_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """torch's weight layout: [C_out, C_in/groups, *kernel], transposed [C_in, C_out/groups, *kernel]."""
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def kwargs(self) -> dict:
        """The layer's keyword arguments to its torch.nn.functional / tconv function."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    def functions(self) -> tuple:
        """(tconv's function, torch.nn.functional's) for this kind of layer."""
        import tconv

        name = f"{'conv_transpose' if self.transposed else 'conv'}{self.dims}d"
        return getattr(tconv, name), getattr(torch.nn.functional, name)

    def describe(self) -> str:
        size = "x".join(map(str, self.in_size))
        kernel = "x".join(map(str, self.kernel_size))
        kind = "convT" if self.transposed else "conv"
        return (f"{kind} N{self.batch} C{self.in_channels} {size} -> K{self.out_channels}; {kernel} s{self.stride} "
                f"p{self.padding} d{self.dilation} g{self.groups}")


def layer_spec(layer: Layer) -> ConvSpec:
    """The checked ConvSpec of a layer (through tconv's own argument checks)."""
    dtype = torch.float16
    input = torch.empty((layer.batch, layer.in_channels, *layer.in_size), device="meta", dtype=dtype)
    weight = torch.empty(layer.weight_shape, device="meta", dtype=dtype)
    if layer.transposed:
        name = f"conv_transpose{layer.dims}d"
        return conv_transpose_spec(name, layer.dims, input, weight, None, layer.stride, layer.padding, 0, layer.groups,
                                   layer.dilation)[0]
    return conv_spec(f"conv{layer.dims}d", layer.dims, input, weight, None, layer.stride, layer.padding, layer.dilation,
                     layer.groups)[0]


def scaled(layer: Layer, channels: int = 24, positions: int = 64) -> Layer:
    """The same layer kind (kernel, stride, padding, dilation, depthwise or not) at a size
    the interpreter runs in about a second: batch 1, at most `channels` channels per
    side, about `positions` input positions (never below what the kernel needs)."""
    depthwise = layer.groups == layer.in_channels and layer.groups > 1
    in_channels = min(layer.in_channels, channels)
    out_channels = min(layer.out_channels, channels)
    groups = in_channels if depthwise else math.gcd(layer.groups, math.gcd(in_channels, out_channels))
    if depthwise:
        out_channels = in_channels * (layer.out_channels // layer.in_channels)
    side = max(2, round(positions ** (1 / layer.dims)))
    in_size = []
    for size, kernel in zip(layer.in_size, layer.kernel_size):
        needed = 1 if layer.transposed else max(1, layer.dilation * (kernel - 1) + 1 - 2 * layer.padding)
        in_size.append(min(size, max(side, needed + layer.stride)))
    return dataclasses.replace(layer, batch=1, in_channels=in_channels, out_channels=out_channels, groups=groups,
                               in_size=tuple(in_size))


def _c(name, batch, in_channels, size, out_channels, kernel, stride=1, padding=0, dilation=1, groups=1, count=1):
    size = size if isinstance(size, tuple) else (size,)
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * len(size)
    return Layer(name, batch, in_channels, size, out_channels, kernel, stride, padding, dilation, groups, False, count)


def _t(name, batch, in_channels, size, out_channels, kernel, stride=1, padding=0, count=1):
    size = size if isinstance(size, tuple) else (size,)
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * len(size)
    return Layer(name, batch, in_channels, size, out_channels, kernel, stride, padding, 1, 1, True, count)


def _dw(name, batch, channels, size, kernel, stride, count=1):
    return _c(name, batch, channels, (size, size), channels, kernel, stride, kernel // 2, 1, channels, count)


RESNET50 = [  # v1.5 (stride on the 3x3), N=64
    _c("stem 7x7 s2", 64, 3, (224, 224), 64, 7, 2, 3),
    _c("l1.c1(b1) 1x1", 64, 64, (56, 56), 64, 1),
    _c("l1.c2 3x3", 64, 64, (56, 56), 64, 3, 1, 1, count=3),
    _c("l1.c3+ds 1x1 64->256", 64, 64, (56, 56), 256, 1, count=4),
    _c("l1.c1(b2,3) 1x1 256->64", 64, 256, (56, 56), 64, 1, count=2),
    _c("l2.c1(b1) 1x1 256->128", 64, 256, (56, 56), 128, 1),
    _c("l2.c2 3x3 s2", 64, 128, (56, 56), 128, 3, 2, 1),
    _c("l2.c3 1x1 128->512", 64, 128, (28, 28), 512, 1, count=4),
    _c("l2.ds 1x1 s2", 64, 256, (56, 56), 512, 1, 2),
    _c("l2.c1(b2-4) 1x1 512->128", 64, 512, (28, 28), 128, 1, count=3),
    _c("l2.c2 3x3", 64, 128, (28, 28), 128, 3, 1, 1, count=3),
    _c("l3.c1(b1) 1x1 512->256", 64, 512, (28, 28), 256, 1),
    _c("l3.c2 3x3 s2", 64, 256, (28, 28), 256, 3, 2, 1),
    _c("l3.c3 1x1 256->1024", 64, 256, (14, 14), 1024, 1, count=6),
    _c("l3.ds 1x1 s2", 64, 512, (28, 28), 1024, 1, 2),
    _c("l3.c1(b2-6) 1x1 1024->256", 64, 1024, (14, 14), 256, 1, count=5),
    _c("l3.c2 3x3", 64, 256, (14, 14), 256, 3, 1, 1, count=5),
    _c("l4.c1(b1) 1x1 1024->512", 64, 1024, (14, 14), 512, 1),
    _c("l4.c2 3x3 s2", 64, 512, (14, 14), 512, 3, 2, 1),
    _c("l4.c3 1x1 512->2048", 64, 512, (7, 7), 2048, 1, count=3),
    _c("l4.ds 1x1 s2", 64, 1024, (14, 14), 2048, 1, 2),
    _c("l4.c1(b2,3) 1x1 2048->512", 64, 2048, (7, 7), 512, 1, count=2),
    _c("l4.c2 3x3", 64, 512, (7, 7), 512, 3, 1, 1, count=2),
]

MOBILENET_V2_DW = [  # depthwise 3x3, N=64
    _dw("dw32@112 s1", 64, 32, 112, 3, 1),
    _dw("dw96@112 s2", 64, 96, 112, 3, 2),
    _dw("dw144@56 s1", 64, 144, 56, 3, 1),
    _dw("dw144@56 s2", 64, 144, 56, 3, 2),
    _dw("dw192@28 s1", 64, 192, 28, 3, 1, count=2),
    _dw("dw192@28 s2", 64, 192, 28, 3, 2),
    _dw("dw384@14 s1", 64, 384, 14, 3, 1, count=4),
    _dw("dw576@14 s1", 64, 576, 14, 3, 1, count=2),
    _dw("dw576@14 s2", 64, 576, 14, 3, 2),
    _dw("dw960@7 s1", 64, 960, 7, 3, 1, count=3),
]

EFFICIENTNET_B0_DW = [  # depthwise 3x3 and 5x5, N=64
    _dw("dw32@112 k3 s1", 64, 32, 112, 3, 1),
    _dw("dw96@112 k3 s2", 64, 96, 112, 3, 2),
    _dw("dw144@56 k3 s1", 64, 144, 56, 3, 1),
    _dw("dw144@56 k5 s2", 64, 144, 56, 5, 2),
    _dw("dw240@28 k5 s1", 64, 240, 28, 5, 1),
    _dw("dw240@28 k3 s2", 64, 240, 28, 3, 2),
    _dw("dw480@14 k3 s1", 64, 480, 14, 3, 1, count=2),
    _dw("dw480@14 k5 s1", 64, 480, 14, 5, 1),
    _dw("dw672@14 k5 s1", 64, 672, 14, 5, 1, count=2),
    _dw("dw672@14 k5 s2", 64, 672, 14, 5, 2),
    _dw("dw1152@7 k5 s1", 64, 1152, 7, 5, 1, count=3),
    _dw("dw1152@7 k3 s1", 64, 1152, 7, 3, 1),
]

EFFICIENTNET_B0_PW = [  # the MBConv blocks' pointwise (1x1) expand and project layers, N=64
    _c("s1 project 32->16 @112", 64, 32, (112, 112), 16, 1),
    _c("s2 expand 16->96 @112", 64, 16, (112, 112), 96, 1),
    _c("s2 project 96->24 @56", 64, 96, (56, 56), 24, 1),
    _c("s2,3 expand 24->144 @56", 64, 24, (56, 56), 144, 1, count=2),
    _c("s2 project 144->24 @56", 64, 144, (56, 56), 24, 1),
    _c("s3 project 144->40 @28", 64, 144, (28, 28), 40, 1),
    _c("s3,4 expand 40->240 @28", 64, 40, (28, 28), 240, 1, count=2),
    _c("s3 project 240->40 @28", 64, 240, (28, 28), 40, 1),
    _c("s4 project 240->80 @14", 64, 240, (14, 14), 80, 1),
    _c("s4,5 expand 80->480 @14", 64, 80, (14, 14), 480, 1, count=3),
    _c("s4 project 480->80 @14", 64, 480, (14, 14), 80, 1, count=2),
    _c("s5 project 480->112 @14", 64, 480, (14, 14), 112, 1),
    _c("s5,6 expand 112->672 @14", 64, 112, (14, 14), 672, 1, count=3),
    _c("s5 project 672->112 @14", 64, 672, (14, 14), 112, 1, count=2),
    _c("s6 project 672->192 @7", 64, 672, (7, 7), 192, 1),
    _c("s6,7 expand 192->1152 @7", 64, 192, (7, 7), 1152, 1, count=4),
    _c("s6 project 1152->192 @7", 64, 1152, (7, 7), 192, 1, count=3),
    _c("s7 project 1152->320 @7", 64, 1152, (7, 7), 320, 1),
    _c("head 320->1280 @7", 64, 320, (7, 7), 1280, 1),
]

SD_VAE_DECODER = [  # 512x512 output, N=1
    _c("post_quant_conv 1x1", 1, 4, (64, 64), 4, 1),
    _c("conv_in", 1, 4, (64, 64), 512, 3, 1, 1),
    _c("mid+up0 resnet 3x3", 1, 512, (64, 64), 512, 3, 1, 1, count=10),
    _c("up0 upsample conv", 1, 512, (128, 128), 512, 3, 1, 1),
    _c("up1 resnet 3x3", 1, 512, (128, 128), 512, 3, 1, 1, count=6),
    _c("up1 upsample conv", 1, 512, (256, 256), 512, 3, 1, 1),
    _c("up2 resnet0 conv1 512->256", 1, 512, (256, 256), 256, 3, 1, 1),
    _c("up2 shortcut 1x1 512->256", 1, 512, (256, 256), 256, 1),
    _c("up2 resnet 3x3 256", 1, 256, (256, 256), 256, 3, 1, 1, count=5),
    _c("up2 upsample conv", 1, 256, (512, 512), 256, 3, 1, 1),
    _c("up3 resnet0 conv1 256->128", 1, 256, (512, 512), 128, 3, 1, 1),
    _c("up3 shortcut 1x1 256->128", 1, 256, (512, 512), 128, 1),
    _c("up3 resnet 3x3 128", 1, 128, (512, 512), 128, 3, 1, 1, count=5),
    _c("conv_out", 1, 128, (512, 512), 3, 3, 1, 1),
]

SD_UNET = [  # SD 1.5, latent 64x64, N=2 (classifier-free guidance)
    _c("conv_in", 2, 4, (64, 64), 320, 3, 1, 1),
    _c("res 320@64", 2, 320, (64, 64), 320, 3, 1, 1, count=4),
    _c("down s2 320", 2, 320, (64, 64), 320, 3, 2, 1),
    _c("res 320->640@32", 2, 320, (32, 32), 640, 3, 1, 1),
    _c("res 640@32", 2, 640, (32, 32), 640, 3, 1, 1, count=3),
    _c("down s2 640", 2, 640, (32, 32), 640, 3, 2, 1),
    _c("res 640->1280@16", 2, 640, (16, 16), 1280, 3, 1, 1),
    _c("res 1280@16", 2, 1280, (16, 16), 1280, 3, 1, 1, count=3),
    _c("down s2 1280", 2, 1280, (16, 16), 1280, 3, 2, 1),
    _c("res 1280@8", 2, 1280, (8, 8), 1280, 3, 1, 1, count=8),
    _c("up res 2560->1280@8", 2, 2560, (8, 8), 1280, 3, 1, 1, count=3),
    _c("up upsample conv 1280@16", 2, 1280, (16, 16), 1280, 3, 1, 1),
    _c("up res 2560->1280@16", 2, 2560, (16, 16), 1280, 3, 1, 1, count=2),
    _c("up res 1920->1280@16", 2, 1920, (16, 16), 1280, 3, 1, 1),
    _c("up res 1920->640@32", 2, 1920, (32, 32), 640, 3, 1, 1),
    _c("up res 1280->640@32", 2, 1280, (32, 32), 640, 3, 1, 1),
    _c("up res 960->640@32", 2, 960, (32, 32), 640, 3, 1, 1),
    _c("up res 960->320@64", 2, 960, (64, 64), 320, 3, 1, 1),
    _c("up res 640->320@64", 2, 640, (64, 64), 320, 3, 1, 1, count=2),
    _c("conv_out", 2, 320, (64, 64), 4, 3, 1, 1),
]

DCGAN_GENERATOR = [  # nz=100, ngf=64, batch 64, 64x64 output
    _t("G1 nz->512 4x4 s1 p0", 64, 100, (1, 1), 512, 4, 1, 0),
    _t("G2 512->256 k4 s2 p1", 64, 512, (4, 4), 256, 4, 2, 1),
    _t("G3 256->128 k4 s2 p1", 64, 256, (8, 8), 128, 4, 2, 1),
    _t("G4 128->64 k4 s2 p1", 64, 128, (16, 16), 64, 4, 2, 1),
    _t("G5 64->3 k4 s2 p1", 64, 64, (32, 32), 3, 4, 2, 1),
]

HIFIGAN_V1 = [  # batch 16, 8192-sample segments (32 mel frames)
    _c("conv_pre k7", 16, 80, 32, 512, 7, 1, 3),
    _t("up1 512->256 k16 s8 p4", 16, 512, 32, 256, 16, 8, 4),
    _t("up2 256->128 k16 s8 p4", 16, 256, 256, 128, 16, 8, 4),
    _t("up3 128->64 k4 s2 p1", 16, 128, 2048, 64, 4, 2, 1),
    _t("up4 64->32 k4 s2 p1", 16, 64, 4096, 32, 4, 2, 1),
] + [  # multi-receptive-field resblocks: kernels 3/7/11 x dilations 1/3/5 at each stage
    _c(f"mrf C{channels} k{kernel} d{dilation}", 16, channels, length, channels, kernel, 1, dilation * (kernel - 1) // 2,
       dilation)
    for channels, length in ((256, 256), (128, 2048), (64, 4096), (32, 8192))
    for kernel in (3, 7, 11)
    for dilation in (1, 3, 5)
]

WAVENET_TCN = [
    *(_c(f"wavenet k2 d{2 ** i}", 8, 64, 16000, 128, 2, 1, 0, 2**i, count=3) for i in range(10)),
    _c("tcn k7 p6", 32, 150, 1024, 150, 7, 1, 6),
    _c("mamba causal dw k4", 8, 1536, 2048, 1536, 4, 1, 3, 1, 1536),
    _c("inductor #174752 k3", 3072, 128, 202, 384, 3),
    _c("inductor #175280 dw k3", 3072, 128, 202, 128, 3, 1, 0, 1, 128),
]

UNET3D = [  # MLPerf image_segmentation, 128^3 patch, N=2
    _c("in conv1 1->32", 2, 1, (128, 128, 128), 32, 3, 1, 1),
    _c("in conv2 32->32", 2, 32, (128, 128, 128), 32, 3, 1, 1),
    _c("down1 32->64 s2", 2, 32, (128, 128, 128), 64, 3, 2, 1),
    _c("d1 conv 64", 2, 64, (64, 64, 64), 64, 3, 1, 1),
    _c("down2 64->128 s2", 2, 64, (64, 64, 64), 128, 3, 2, 1),
    _c("d2 conv 128", 2, 128, (32, 32, 32), 128, 3, 1, 1),
    _c("down3 128->256 s2", 2, 128, (32, 32, 32), 256, 3, 2, 1),
    _c("d3 conv 256", 2, 256, (16, 16, 16), 256, 3, 1, 1),
    _c("down4 256->320 s2", 2, 256, (16, 16, 16), 320, 3, 2, 1),
    _c("d4 conv 320", 2, 320, (8, 8, 8), 320, 3, 1, 1),
    _c("bottleneck 320 s2", 2, 320, (8, 8, 8), 320, 3, 2, 1),
    _c("bottleneck conv 320@4", 2, 320, (4, 4, 4), 320, 3, 1, 1),
    _t("up0 320->320 k2 s2", 2, 320, (4, 4, 4), 320, 2, 2),
    _c("u0 conv 640->320@8", 2, 640, (8, 8, 8), 320, 3, 1, 1),
    _t("up1 320->256 k2 s2", 2, 320, (8, 8, 8), 256, 2, 2),
    _c("u1 conv 512->256@16", 2, 512, (16, 16, 16), 256, 3, 1, 1),
    _t("up2 256->128 k2 s2", 2, 256, (16, 16, 16), 128, 2, 2),
    _c("u2 conv 256->128@32", 2, 256, (32, 32, 32), 128, 3, 1, 1),
    _t("up3 128->64 k2 s2", 2, 128, (32, 32, 32), 64, 2, 2),
    _c("u3 conv 128->64@64", 2, 128, (64, 64, 64), 64, 3, 1, 1),
    _t("up4 64->32 k2 s2", 2, 64, (64, 64, 64), 32, 2, 2),
    _c("u4 conv 64->32@128", 2, 64, (128, 128, 128), 32, 3, 1, 1),
    _c("out 1x1x1 32->3", 2, 32, (128, 128, 128), 3, 1),
]

THIN = [  # first layers (RGB, mono audio, one-channel volumes) and 4-channel groups: K per tap < 16
    _c("resnet50 stem 3->64 7x7 s2", 64, 3, (224, 224), 64, 7, 2, 3),
    _c("mobilenet_v2 stem 3->32 3x3 s2", 64, 3, (224, 224), 32, 3, 2, 1),
    _c("encodec conv1d 1->32 k7", 8, 1, 24000, 32, 7, 1, 3),
    _c("unet3d in conv1 1->32", 2, 1, (128, 128, 128), 32, 3, 1, 1),
    _c("resnext50 32x4d l1 3x3 g32", 64, 128, (56, 56), 128, 3, 1, 1, 1, 32, count=3),
    # Patch embeddings (kernel = stride, no padding): ViT-B/16 and CLIP ViT-L/14, Swin-T's 4x4
    _c("vit-b16 patch 3->768 16x16 s16", 64, 3, (224, 224), 768, 16, 16),
    _c("vit-l14 patch 3->1024 14x14 s14", 64, 3, (224, 224), 1024, 14, 14),
    _c("swin-t patch 3->96 4x4 s4", 64, 3, (224, 224), 96, 4, 4),
]

#: DeepBench's convolution training set (baidu-research/DeepBench, code/kernels/conv_problems.h),
#: in its tuple order (W, H, C, N, K, S, R, pad_w, pad_h, stride_w, stride_h): S is the filter's
#: width, R its height. Speech (DeepSpeech's 20x5 and 10x5 filters on 700x161 and 341x79
#: spectrograms, one input channel), face and speaker recognition (480x48, 108x108, 350x80),
#: VGG, GoogLeNet and ResNet layers at batch 4-32, with odd sizes (27x27, 341x79) and a 1x1
#: filter with padding 3; rows the file lists twice appear once.
DEEPBENCH_TRAINING_SET = (
    (700, 161, 1, 4, 32, 20, 5, 0, 0, 2, 2), (700, 161, 1, 8, 32, 20, 5, 0, 0, 2, 2),
    (700, 161, 1, 16, 32, 20, 5, 0, 0, 2, 2), (700, 161, 1, 32, 32, 20, 5, 0, 0, 2, 2),
    (341, 79, 32, 4, 32, 10, 5, 0, 0, 2, 2), (341, 79, 32, 8, 32, 10, 5, 0, 0, 2, 2),
    (341, 79, 32, 16, 32, 10, 5, 0, 0, 2, 2), (341, 79, 32, 32, 32, 10, 5, 0, 0, 2, 2),
    (480, 48, 1, 16, 16, 3, 3, 1, 1, 1, 1), (240, 24, 16, 16, 32, 3, 3, 1, 1, 1, 1),
    (120, 12, 32, 16, 64, 3, 3, 1, 1, 1, 1), (60, 6, 64, 16, 128, 3, 3, 1, 1, 1, 1),
    (108, 108, 3, 8, 64, 3, 3, 1, 1, 2, 2), (54, 54, 64, 8, 64, 3, 3, 1, 1, 1, 1),
    (27, 27, 128, 8, 128, 3, 3, 1, 1, 1, 1), (14, 14, 128, 8, 256, 3, 3, 1, 1, 1, 1),
    (7, 7, 256, 8, 512, 3, 3, 1, 1, 1, 1), (224, 224, 3, 8, 64, 3, 3, 1, 1, 1, 1),
    (112, 112, 64, 8, 128, 3, 3, 1, 1, 1, 1), (56, 56, 128, 8, 256, 3, 3, 1, 1, 1, 1),
    (28, 28, 256, 8, 512, 3, 3, 1, 1, 1, 1), (14, 14, 512, 8, 512, 3, 3, 1, 1, 1, 1),
    (7, 7, 512, 8, 512, 3, 3, 1, 1, 1, 1), (224, 224, 3, 16, 64, 3, 3, 1, 1, 1, 1),
    (112, 112, 64, 16, 128, 3, 3, 1, 1, 1, 1), (56, 56, 128, 16, 256, 3, 3, 1, 1, 1, 1),
    (28, 28, 256, 16, 512, 3, 3, 1, 1, 1, 1), (14, 14, 512, 16, 512, 3, 3, 1, 1, 1, 1),
    (7, 7, 512, 16, 512, 3, 3, 1, 1, 1, 1), (224, 224, 3, 16, 64, 7, 7, 3, 3, 2, 2),
    (28, 28, 192, 16, 32, 5, 5, 2, 2, 1, 1), (28, 28, 192, 16, 64, 1, 1, 0, 0, 1, 1),
    (14, 14, 512, 16, 48, 5, 5, 2, 2, 1, 1), (14, 14, 512, 16, 192, 1, 1, 0, 0, 1, 1),
    (7, 7, 832, 16, 256, 1, 1, 0, 0, 1, 1), (7, 7, 832, 16, 128, 5, 5, 2, 2, 1, 1),
    (56, 56, 64, 8, 64, 3, 3, 1, 1, 1, 1), (56, 56, 64, 8, 256, 1, 1, 0, 0, 2, 2),
    (28, 28, 128, 8, 128, 3, 3, 1, 1, 1, 1), (28, 28, 128, 8, 512, 1, 1, 0, 0, 2, 2),
    (14, 14, 256, 8, 256, 1, 1, 0, 0, 1, 1), (14, 14, 256, 8, 256, 3, 3, 1, 1, 1, 1),
    (14, 14, 256, 8, 1024, 1, 1, 0, 0, 2, 2), (7, 7, 512, 8, 512, 1, 1, 0, 0, 1, 1),
    (7, 7, 2048, 8, 512, 1, 1, 3, 3, 2, 2), (56, 56, 64, 16, 64, 3, 3, 1, 1, 1, 1),
    (56, 56, 64, 16, 256, 1, 1, 0, 0, 2, 2), (28, 28, 128, 16, 128, 3, 3, 1, 1, 1, 1),
    (28, 28, 128, 16, 512, 1, 1, 0, 0, 2, 2), (14, 14, 256, 16, 256, 1, 1, 0, 0, 1, 1),
    (14, 14, 256, 16, 256, 3, 3, 1, 1, 1, 1), (14, 14, 256, 16, 1024, 1, 1, 0, 0, 2, 2),
    (7, 7, 512, 16, 512, 1, 1, 0, 0, 1, 1), (7, 7, 2048, 16, 512, 1, 1, 3, 3, 2, 2),
    (700, 161, 1, 16, 64, 5, 5, 1, 1, 2, 2), (350, 80, 64, 16, 64, 3, 3, 1, 1, 1, 1),
    (350, 80, 64, 16, 128, 5, 5, 1, 1, 2, 2), (175, 40, 128, 16, 128, 3, 3, 1, 1, 1, 1),
    (175, 40, 128, 16, 256, 5, 5, 1, 1, 2, 2), (84, 20, 256, 16, 256, 3, 3, 1, 1, 1, 1),
    (84, 20, 256, 16, 512, 5, 5, 1, 1, 2, 2), (42, 10, 512, 16, 512, 3, 3, 1, 1, 1, 1),
    (112, 112, 64, 8, 64, 1, 1, 0, 0, 1, 1), (56, 56, 64, 8, 256, 1, 1, 0, 0, 1, 1),
    (56, 56, 256, 8, 64, 1, 1, 0, 0, 1, 1), (56, 56, 256, 8, 128, 1, 1, 0, 0, 2, 2),
    (28, 28, 128, 8, 512, 1, 1, 0, 0, 1, 1), (28, 28, 512, 8, 128, 1, 1, 0, 0, 1, 1),
    (28, 28, 512, 8, 256, 1, 1, 0, 0, 2, 2), (14, 14, 256, 8, 1024, 1, 1, 0, 0, 1, 1),
    (28, 28, 512, 8, 1024, 1, 1, 0, 0, 2, 2), (14, 14, 1024, 8, 256, 1, 1, 0, 0, 1, 1),
    (14, 14, 1024, 8, 512, 1, 1, 0, 0, 2, 2), (7, 7, 512, 8, 2048, 1, 1, 0, 0, 1, 1),
    (14, 14, 1024, 8, 2048, 1, 1, 0, 0, 2, 2), (7, 7, 2048, 8, 512, 1, 1, 0, 0, 1, 1),
    (112, 112, 64, 16, 64, 1, 1, 0, 0, 1, 1), (56, 56, 64, 16, 256, 1, 1, 0, 0, 1, 1),
    (56, 56, 256, 16, 64, 1, 1, 0, 0, 1, 1), (56, 56, 256, 16, 128, 1, 1, 0, 0, 2, 2),
    (28, 28, 128, 16, 512, 1, 1, 0, 0, 1, 1), (28, 28, 512, 16, 128, 1, 1, 0, 0, 1, 1),
    (28, 28, 512, 16, 256, 1, 1, 0, 0, 2, 2), (14, 14, 256, 16, 1024, 1, 1, 0, 0, 1, 1),
    (28, 28, 512, 16, 1024, 1, 1, 0, 0, 2, 2), (14, 14, 1024, 16, 256, 1, 1, 0, 0, 1, 1),
    (14, 14, 1024, 16, 512, 1, 1, 0, 0, 2, 2), (7, 7, 512, 16, 2048, 1, 1, 0, 0, 1, 1),
    (14, 14, 1024, 16, 2048, 1, 1, 0, 0, 2, 2), (7, 7, 2048, 16, 512, 1, 1, 0, 0, 1, 1),
)


#: Dense layers of shapes the model suites lack. Channel counts 64 (some 32) does not divide,
#: where tile padding and thin tiles trade off (configs.LEAN_SCORE_FLOOR): torchvision's
#: Inception-v3 (299x299) and MobileNetV2 (inverted-residual 1x1s), wav2vec2's positional
#: conv (48 channels a group), a 3-d U-Net level of 48 channels; 32-63 padded taps (a dense
#: 7x7, wav2letter's k48 first layer on 40 MFCCs); a dilated TCN block of 256 at long length.
ODD_SHAPES = [
    _c("inception-v3 5x5 48->64 @35", 32, 48, (35, 35), 64, 5, 1, 2),
    _c("inception-v3 3x3 64->96 @35", 32, 64, (35, 35), 96, 3, 1, 1),
    _c("inception-v3 3x3 96->96 @35", 32, 96, (35, 35), 96, 3, 1, 1),
    _c("inception-v3 3x3 s2 192->320 @17", 32, 192, (17, 17), 320, 3, 2),
    _c("mobilenet_v2 expand 1x1 96->576 @14", 64, 96, (14, 14), 576, 1),
    _c("mobilenet_v2 project 1x1 384->96 @14", 64, 384, (14, 14), 96, 1),
    _c("wav2vec2 posconv 768 k128 g16", 4, 768, (499,), 768, 128, 1, 64, 1, 16),
    _c("3d 3x3x3 48 @32^3", 2, 48, (32, 32, 32), 48, 3, 1, 1),
    _c("tcn 1d k3 d3 256 @8192", 4, 256, (8192,), 256, 3, 1, 3, 3),
    _c("dense 7x7 s2 p3 64->128 @112", 16, 64, (112, 112), 128, 7, 2, 3),
    _c("wav2letter k48 s2 40->250", 16, 40, (1000,), 250, 48, 2, 23),
    _c("conformer pointwise conv1d 256->512 @1000", 16, 256, (1000,), 512, 1),
]


def _deepbench(w, h, c, n, k, s, r, pad_w, pad_h, stride_w, stride_h) -> Layer:
    assert pad_w == pad_h and stride_w == stride_h, "every training row pads and strides both dims alike"
    return _c(f"{c}->{k} {r}x{s} s{stride_h} p{pad_h} @{h}x{w} n{n}", n, c, (h, w), k, (r, s), stride_h, pad_h)


DEEPBENCH = [_deepbench(*row) for row in DEEPBENCH_TRAINING_SET]

#: A few small layers of every kind, for end-to-end tests of the bench itself.
TINY = [
    _c("tiny 3x3", 2, 16, (8, 8), 16, 3, 1, 1),
    _c("tiny 1x1 s2", 2, 16, (8, 8), 32, 1, 2),
    _dw("tiny dw 3x3", 2, 16, 8, 3, 1),
    _t("tiny convT 4/2/1", 2, 16, (4, 4), 8, 4, 2, 1),
]

SUITES = {
    "resnet50": RESNET50,
    "mobilenet_v2_dw": MOBILENET_V2_DW,
    "efficientnet_b0_dw": EFFICIENTNET_B0_DW,
    "efficientnet_b0_pw": EFFICIENTNET_B0_PW,
    "sd_unet": SD_UNET,
    "sd_vae": SD_VAE_DECODER,
    "dcgan": DCGAN_GENERATOR,
    "hifigan": HIFIGAN_V1,
    "wavenet_tcn": WAVENET_TCN,
    "unet3d": UNET3D,
    "thin": THIN,
    "deepbench": DEEPBENCH,
    "odd_shapes": ODD_SHAPES,
    "tiny": TINY,
}
