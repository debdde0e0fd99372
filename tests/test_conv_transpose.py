"""Transposed convolution against torch (float64 reference), and its work accounting."""

import math

import pytest
import torch
import torch.nn.functional as F

import tconv
from tconv.configs import KernelConfig, heuristic_config
from tconv.plan import executed_macs
from tconv.spec import conv_transpose_spec
from tconv.testing import CONV_TRANSPOSE_CASES, assert_close, check_against_torch

FUNCTIONS = {
    1: (tconv.conv_transpose1d, F.conv_transpose1d),
    2: (tconv.conv_transpose2d, F.conv_transpose2d),
    3: (tconv.conv_transpose3d, F.conv_transpose3d),
}


run_case = check_against_torch


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=lambda c: c.name)
def test_transposed_float32(case):
    run_case(case, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES[1::3], ids=lambda c: c.name)
def test_transposed_other_dtypes(case, dtype):
    run_case(case, dtype)


@pytest.mark.parametrize("case", [c for c in CONV_TRANSPOSE_CASES if c.dims > 1][::3], ids=lambda c: c.name)
def test_transposed_channels_last(case):
    fmt = torch.channels_last if case.dims == 2 else torch.channels_last_3d
    actual = run_case(case, torch.float32, lambda t: t.contiguous(memory_format=fmt) if t.dim() == case.dims + 2 else t)
    assert actual.is_contiguous(memory_format=fmt)


def test_transposed_strided_view_and_unbatched():
    input = torch.randn(3, 10, 7, 9)[:, ::2, :, 1::2]
    weight = torch.randn(5, 4, 3, 3).transpose(2, 3)
    actual = tconv.conv_transpose2d(input, weight, stride=2, padding=1)
    assert_close(actual, F.conv_transpose2d(input.double(), weight.double(), stride=2, padding=1), torch.float32)
    single = input[0]
    assert_close(
        tconv.conv_transpose2d(single, weight, stride=(2, 3)),
        F.conv_transpose2d(single.double(), weight.double(), stride=(2, 3)),
        torch.float32,
    )


def test_transposed_zero_batch_and_zero_output():
    weight = torch.randn(3, 4, 3, 3)
    assert tconv.conv_transpose2d(torch.randn(0, 3, 4, 4), weight, stride=2).shape == (0, 4, 9, 9)
    # padding that crops everything: torch returns an empty spatial extent
    assert tconv.conv_transpose2d(torch.randn(1, 3, 2, 2), weight, padding=2).shape == (1, 4, 0, 0)


MODULES = {1: (tconv.nn.ConvTranspose1d, torch.nn.ConvTranspose1d), 2: (tconv.nn.ConvTranspose2d, torch.nn.ConvTranspose2d),
           3: (tconv.nn.ConvTranspose3d, torch.nn.ConvTranspose3d)}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("extra", [0, 1, "full", "unbatched"])
def test_module_output_size(dims, extra):
    ours_type, torch_type = MODULES[dims]
    reference = torch_type(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    ours = ours_type(3, 4, 3, stride=2, padding=1)
    ours.load_state_dict(reference.state_dict())
    input = torch.randn(2, 3, *(4,) * dims)
    size = [8] * dims if extra == 1 else [7] * dims
    if extra == "full":
        size = [2, 4, *size]
    if extra == "unbatched":
        input = input[0]
    actual = ours(input, output_size=size)
    assert_close(actual, reference(input.double(), output_size=size), torch.float32)


def test_module_output_size_unreachable():
    ours = tconv.nn.ConvTranspose2d(3, 4, 3, stride=2)
    with pytest.raises(ValueError, match="output size"):
        ours(torch.randn(1, 3, 4, 4), output_size=(20, 20))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_module_rejects_non_zeros_padding_mode_like_torch(dims, mode):
    """torch's constructor refuses the mode, so it is set afterwards: forward must refuse it
    as torch's does (ValueError naming 'zeros'), not silently compute a zero-padded result."""
    ours_type, torch_type = MODULES[dims]
    theirs, ours = torch_type(3, 4, 3, stride=2, padding=1), ours_type(3, 4, 3, stride=2, padding=1)
    input = torch.randn(2, 3, *(4,) * dims)
    for module in (theirs, ours):
        module.padding_mode = mode
    with pytest.raises(ValueError, match="zeros"):
        theirs(input)
    with pytest.raises(ValueError, match="zeros"):
        ours(input)
    with pytest.raises(ValueError, match="zeros"):
        ours(input, output_size=[8] * dims)


def test_module_zeros_padding_mode_after_reset():
    """Setting padding_mode back to 'zeros' computes torch's result again."""
    reference = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    ours = tconv.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
    ours.load_state_dict(reference.state_dict())
    ours.padding_mode = "reflect"
    ours.padding_mode = "zeros"
    input = torch.randn(2, 3, 5, 4)
    assert_close(ours(input), reference(input.double()), torch.float32)


def _work_ratio(in_size, in_channels, out_channels, kernel, stride, batch=8):
    dims = len(in_size)
    input = torch.empty(batch, in_channels, *in_size, device="meta")
    weight = torch.empty(in_channels, out_channels, *(kernel,) * dims, device="meta")
    spec, _ = conv_transpose_spec("conv_transpose", dims, input, weight, None, stride, (kernel - stride + 1) // 2, 0, 1, 1)
    config = heuristic_config("dgrad", spec, torch.float16)
    return executed_macs("dgrad", spec, config) / spec.useful_macs


@pytest.mark.parametrize(
    "in_size,kernel,stride",
    [((16, 16), 2, 2), ((16, 16), 3, 2), ((16, 16), 4, 2), ((8, 8, 8), 2, 2), ((64,), 16, 8)],
)
@pytest.mark.parametrize("channels", [64, 128])
def test_strided_work_close_to_useful(in_size, kernel, stride, channels):
    """Zeros of the zero-insertion are never multiplied: executed tensor-core MACs stay
    within 1.25x of the useful ones, not stride^dims x."""
    ratio = _work_ratio(in_size, channels, channels, kernel, stride)
    assert ratio <= 1.25, ratio


def test_executed_macs_counts_a_known_launch():
    # 2d k2 s2 p0, 4x4 -> 8x8, C_in 32 -> C_out 16, batch 1: four phases of 16 rows with
    # one tap each; BLOCK 16x16x32 tiles: 4 phases x 1 tile x 1 tap x 1 channel step.
    input = torch.empty(1, 32, 4, 4, device="meta")
    weight = torch.empty(32, 16, 2, 2, device="meta")
    spec, _ = conv_transpose_spec("t", 2, input, weight, None, 2, 0, 0, 1, 1)
    assert spec.useful_macs == 1 * 16 * 32 * 16 * 4
    assert executed_macs("dgrad", spec, KernelConfig(16, 16, 32)) == 4 * 16 * 16 * 32
    assert math.isclose(executed_macs("dgrad", spec, KernelConfig(16, 16, 32)) / spec.useful_macs, 1.0)


@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_depthwise_transposed(dims, multiplier):
    input = torch.randn(2, 6, *(4,) * dims)
    weight = torch.randn(6, multiplier, *(3,) * dims)
    bias = torch.randn(6 * multiplier)
    ours, theirs = FUNCTIONS[dims]
    actual = ours(input, weight, bias, stride=2, padding=1, output_padding=1, groups=6)
    expected = theirs(input.double(), weight.double(), bias.double(), stride=2, padding=1, output_padding=1, groups=6)
    assert_close(actual, expected, torch.float32)


def test_depthwise_transposed_work_close_to_useful():
    """A depthwise conv's input gradient (and depthwise transposed conv) skips tl.dot."""
    for channels, size in [(144, 28), (96, 56), (32, 112)]:
        input = torch.empty(8, channels, size, size, device="meta")
        weight = torch.empty(channels, 1, 3, 3, device="meta")
        spec, _ = conv_transpose_spec("t", 2, input, weight, None, 2, 1, 1, channels, 1)
        ratio = executed_macs("dgrad", spec, heuristic_config("dgrad", spec, torch.float16)) / spec.useful_macs
        assert ratio <= 1.25, (channels, size, ratio)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("input_shape, kernel, padding, runs", [
    ((2, 32, 5, 16), 3, 1, (8, 8)), ((2, 32, 5, 16), 5, 2, (8, 8)), ((2, 32, 40), 3, 1, (8, 8)),
    ((2, 32, 5, 16), 3, 2, (2, 1)),  # 14 outputs; its input gradient's spans would pass them
])
def test_depthwise_transposed_runs_in_lanes(input_shape, kernel, padding, runs, dtype, monkeypatch):
    """An NCHW depthwise transposed convolution at stride 1 (its forward is the input-gradient
    kernel, its input gradient the forward kernel) takes runs in lanes: `runs` at float16 (at
    most 4 in float32, a span of 16 bytes); the output and both gradients match float64 torch."""
    from tconv import _launch

    launched, original_go = {}, _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        launched.setdefault(getattr(function, "function", function).__name__, []).append((meta.get("W_RUN"),
                                                                                      meta.get("LANE_PAD", -1)))
        return original_go(function, grid, template, slots, meta, tensors, device)

    _launch._passes.clear()
    _launch._chosen.clear()
    monkeypatch.setattr(_launch, "_go", record)
    dims = len(input_shape) - 2
    ours, theirs = FUNCTIONS[dims]
    input = torch.randn(input_shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(input_shape[1], 1, *(kernel,) * dims, dtype=torch.float64, requires_grad=True)
    low = [tensor.detach().to(dtype).requires_grad_() for tensor in (input, weight)]
    actual = ours(*low, None, 1, padding, 0, input_shape[1])
    expected = theirs(input, weight, None, 1, padding, 0, input_shape[1])
    grad = torch.randn_like(expected)
    assert_close(actual, expected, dtype)
    for name, mine, want in zip(("grad_input", "grad_weight"), torch.autograd.grad(actual, low, grad.to(dtype)),
                                torch.autograd.grad(expected, (input, weight), grad)):
        assert_close(mine, want, dtype, name)
    _launch._passes.clear()
    _launch._chosen.clear()
    for kernel_name, run in zip(("conv_dgrad_kernel", "conv_fprop_kernel"), runs):
        (launched_run, lane_pad), = launched[kernel_name]
        assert launched_run == (run if dtype == torch.float16 else min(run, 4)), (kernel_name, launched)
        assert (lane_pad >= 0) == (run > 1), (kernel_name, launched)
