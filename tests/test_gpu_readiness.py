"""GPU readiness without a GPU: every kernel compiles for sm_80 and sm_90 in every dtype
with the heuristic's tiles, without register spills, within shared memory, and on
tensor cores for 16-bit and TF32 inputs."""

import warnings

import pytest
import torch

from tconv.aot import compile_kernel
from tconv.configs import heuristic_config
from tconv.spec import conv_spec, conv_transpose_spec

warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")


def _realistic_config(kernel: str, dtype: torch.dtype):
    # A ResNet-like 3x3 layer with 64 channels: the heuristic's largest tiles.
    input = torch.empty(8, 64, 28, 28, device="meta", dtype=dtype)
    if kernel in ("fprop", "wgrad"):
        spec, _ = conv_spec("conv2d", 2, input, torch.empty(64, 64, 3, 3, device="meta", dtype=dtype), None, 1, 1, 1, 1)
    else:
        spec, _ = conv_transpose_spec(
            "conv_transpose2d", 2, input, torch.empty(64, 64, 3, 3, device="meta", dtype=dtype), None, 2, 1, 1, 1, 1
        )
    return heuristic_config(kernel, spec, dtype)


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("kernel", ["fprop", "dgrad", "wgrad"])
def test_compiles_without_spills(kernel, dtype, arch):
    config = _realistic_config(kernel, dtype)
    report = compile_kernel(kernel, str(dtype).removeprefix("torch."), config, arch)
    assert report.spill_bytes == 0, report
    assert report.fits, report
    if dtype != torch.float64:
        assert report.tensor_cores, report


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("kernel", ["fprop", "dgrad", "wgrad"])
def test_depthwise_compiles_without_spills(kernel, dtype, arch):
    input = torch.empty(8, 96, 28, 28, device="meta", dtype=getattr(torch, dtype))
    weight = torch.empty(96, 1, 3, 3, device="meta", dtype=getattr(torch, dtype))
    spec, _ = conv_spec("conv2d", 2, input, weight, None, 1, 1, 1, 96)
    config = heuristic_config(kernel, spec, getattr(torch, dtype))
    report = compile_kernel(kernel, dtype, config, arch, depthwise=True)
    assert report.spill_bytes == 0, report


def test_compiles_after_interpreted_launches():
    """CPU launches patch triton.language while they run; a GPU compile afterwards in the
    same process must see the real language again."""
    import tconv

    tconv.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), padding=1)
    tconv.conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 3, 2, 2), stride=2)
    report = compile_kernel("fprop", "float16", _realistic_config("fprop", torch.float16), 90)
    assert report.tensor_cores and report.spill_bytes == 0
