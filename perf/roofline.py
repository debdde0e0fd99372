"""Work, traffic and roofline-bound time of a conv pass, on GPUs whose peaks we know."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tconv.spec import ConvSpec


@dataclass(frozen=True)
class GpuPeak:
    name: str
    tensor_tflops: dict  # dense tensor-core peak per input dtype; float32 means TF32
    bandwidth_tbs: float
    source: str


#: Dense (non-sparse) peaks: the datasheets quote sparsity figures at twice these.
GPUS = {
    "H100 SXM": GpuPeak(
        "H100 SXM", {"float16": 989.4, "bfloat16": 989.4, "float32": 494.7, "float64": 66.9}, 3.35,
        "NVIDIA H100 Tensor Core GPU datasheet (SXM5): FP16/BF16 1,979 and TF32 989 TFLOPS with sparsity, "
        "FP64 tensor core 67 TFLOPS, HBM3 3.35 TB/s",
    ),
    "A100 SXM 80GB": GpuPeak(
        "A100 SXM 80GB", {"float16": 312.0, "bfloat16": 312.0, "float32": 156.0, "float64": 19.5}, 2.039,
        "NVIDIA A100 Tensor Core GPU datasheet: FP16/BF16 312, TF32 156, FP64 tensor core 19.5 TFLOPS, "
        "HBM2e 2,039 GB/s",
    ),
    "H200 SXM": GpuPeak(
        "H200 SXM", {"float16": 989.4, "bfloat16": 989.4, "float32": 494.7, "float64": 66.9}, 4.8,
        "NVIDIA H200 datasheet: same tensor cores as H100 SXM, HBM3e 4.8 TB/s",
    ),
}
STATIC_GPUS = ("H100 SXM", "A100 SXM 80GB")
ELEMENT_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def gpu_peak(device_name: str) -> GpuPeak | None:
    """The peak table entry for a CUDA device name, if we know it."""
    for key, short in (("H200", "H200 SXM"), ("H100", "H100 SXM"), ("A100", "A100 SXM 80GB")):
        if key in device_name:
            return GPUS[short]
    return None


def gemm_macs(layer: ConvSpec) -> int:
    """Multiply-adds of the layer's GEMM view, the count benchmarks conventionally use:
    every output position x every tap (padding taps included); for transposed conv every
    input position x every tap (the scatter view). All three passes do this many."""
    taps = math.prod(layer.kernel_size)
    positions = math.prod(layer.in_size if layer.transposed else layer.out_size)
    channel_pairs = layer.out_channels * layer.in_channels // layer.groups
    return layer.batch * positions * channel_pairs * taps


def min_bytes(layer: ConvSpec, dtype: str) -> int:
    """Each of input, weight and output read or written once: the HBM traffic floor of
    every pass (fprop reads input+weight, writes output; dgrad and wgrad permute roles)."""
    weight = layer.out_channels * (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
    input = layer.batch * layer.in_channels * math.prod(layer.in_size)
    output = layer.batch * layer.out_channels * math.prod(layer.out_size)
    return (input + weight + output) * ELEMENT_BYTES[dtype]


def roofline_us(flops: float, bytes_moved: float, gpu: GpuPeak, dtype: str) -> float:
    """max(compute time at the tensor-core peak, memory time at peak bandwidth), in us."""
    return max(flops / (gpu.tensor_tflops[dtype] * 1e12), bytes_moved / (gpu.bandwidth_tbs * 1e12)) * 1e6
