"""GPU readiness without a GPU: every kernel compiles for sm_80 and sm_90 in every dtype,
for the smallest and largest config of every space and for every config the heuristic
picks on the perf suites, without register spills, within shared memory, and on tensor
cores for 16-bit and TF32 inputs (depthwise and small-group layers run elementwise, without them).
`tconv bench --static` compiles every config of every space."""

import math

import pytest
import torch
from tconv.perf.suites import SUITES, Layer, layer_spec

from tconv.aot import FAMILY_OF_ARCH, compile_launch
from tconv.configs import KERNELS, config_space, descriptor_of, heuristic_config
from tconv.spec import pass_specs

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
DENSE = layer_spec(Layer("3x3", 8, 64, (28, 28), 64, (3, 3), 1, 1))
DEPTHWISE = layer_spec(Layer("depthwise 3x3", 8, 96, (28, 28), 96, (3, 3), 1, 1, 1, 96))


def _size(config):
    return config.block_m * config.block_n * config.block_k, config.num_stages, config.num_warps, config.split_k


def _extremes(arch: int, dtype: torch.dtype):
    for layer in (DENSE, DEPTHWISE):
        for kernel in KERNELS:
            space = config_space(kernel, FAMILY_OF_ARCH[arch], layer.elementwise_lanes > 0, dtype)
            for config in dict.fromkeys((min(space, key=_size), max(space, key=_size))):
                yield kernel, pass_specs(layer)[kernel][1], config


def _suite_picks(arch: int, dtype: torch.dtype, layout: str = "channels_last"):
    """Every distinct (kernel, config, elementwise lanes, packed, folded) the heuristic picks on the suites, each
    compiled for its layer with the most taps (the most registers: taps are unrolled)."""
    picks = {}
    for layers in SUITES.values():
        for layer in layers:
            for kernel, spec in pass_specs(layer_spec(layer)).values():
                config = heuristic_config(kernel, spec, dtype, FAMILY_OF_ARCH[arch], layout)
                folded = kernel == "fprop" and descriptor_of("fprop").folded_channels(spec) > 0
                key = (kernel, config, spec.elementwise_lanes, spec.packed_channels > 0, folded)
                if key not in picks or math.prod(spec.kernel_size) > math.prod(picks[key][1].kernel_size):
                    picks[key] = (kernel, spec, config)
    return list(picks.values())


def _check(kernel, spec, config, dtype, arch, layout="channels_last"):
    report = compile_launch(kernel, spec, str(dtype).removeprefix("torch."), config, arch, layout)
    where = f"{kernel} {dtype} {layout} sm_{arch} {config} kernel {spec.kernel_size}"
    assert report.spill_bytes == 0, f"{where}: {report.spill_bytes} bytes spilled"
    assert report.fits, f"{where}: {report.shared_bytes} bytes of shared memory"
    dense = not spec.elementwise_lanes
    if dense and dtype != torch.float64:
        assert report.tensor_cores, f"{where}: no tensor-core instructions"


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_space_extremes_compile_without_spills(dtype, arch):
    for kernel, spec, config in _extremes(arch, dtype):
        _check(kernel, spec, config, dtype, arch)


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype,layout", [  # (bf16: slow, the fp16 picks' twins; its extremes compile above)
    pytest.param(dtype, "channels_last", marks=[pytest.mark.slow] if dtype == torch.bfloat16 else [])
    for dtype in DTYPES] + [(torch.float16, "contiguous")], ids=str)
def test_heuristic_picks_for_the_suites_compile_without_spills(dtype, layout, arch):
    picks = _suite_picks(arch, dtype, layout)
    assert len(picks) >= 8
    for kernel, spec, config in picks:
        _check(kernel, spec, config, dtype, arch, layout)


def test_compiles_after_interpreted_launches():
    """CPU launches patch triton.language while they run; a GPU compile afterwards in the
    same process must see the real language again."""
    import tconv

    tconv.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), padding=1)
    tconv.conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 3, 2, 2), stride=2)
    config = heuristic_config("fprop", DENSE, torch.float16, "sm_90")
    report = compile_launch("fprop", DENSE, "float16", config, 90)
    assert report.tensor_cores and report.spill_bytes == 0
