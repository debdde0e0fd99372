"""Forward convolution against torch (float64 reference) on fresh random data."""

import pytest
import torch
import torch.nn.functional as F

import tconv
from tconv.testing import CONV_CASES, PADDING_MODE_CASES, assert_close, check_against_torch

FUNCTIONS = {1: (tconv.conv1d, F.conv1d), 2: (tconv.conv2d, F.conv2d), 3: (tconv.conv3d, F.conv3d)}


run_case = check_against_torch


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_forward_float32(case):
    run_case(case, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("case", CONV_CASES[::3], ids=lambda c: c.name)
def test_forward_other_dtypes(case, dtype):
    run_case(case, dtype)


CL = {2: torch.channels_last, 3: torch.channels_last_3d}


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c.dims > 1][::2], ids=lambda c: c.name)
def test_channels_last_input_gives_channels_last_output(case):
    fmt = CL[case.dims]
    actual = run_case(case, torch.float32, lambda t: t.contiguous(memory_format=fmt) if t.dim() == case.dims + 2 else t)
    assert actual.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("transposed", [False, True])
def test_conv1d_on_channels_innermost_input(transposed):
    """conv1d on `x.transpose(1, 2)` (channels innermost, the layout of sequence models):
    its own layout in the tuned cache, forward and both gradients equal torch's."""
    from tconv.cache import layout_of

    input = torch.randn(3, 37, 24, dtype=torch.float64).transpose(1, 2).requires_grad_()
    weight = torch.randn(*((24, 16) if transposed else (16, 24)), 5, dtype=torch.float64, requires_grad=True)
    assert layout_of(input) == "channels_last" and layout_of(input.contiguous()) == "contiguous"
    ours, theirs = (tconv.conv_transpose1d, F.conv_transpose1d) if transposed else (tconv.conv1d, F.conv1d)
    kwargs = dict(stride=2, padding=2)
    input32, weight32 = (t.detach().float().requires_grad_() for t in (input, weight))
    assert input32.stride() == input.stride()
    actual, expected = ours(input32, weight32, **kwargs), theirs(input, weight, **kwargs)
    assert_close(actual, expected, torch.float32)
    grad = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(actual, (input32, weight32), grad.float()),
                         torch.autograd.grad(expected, (input, weight), grad)):
        assert_close(got, want, torch.float32)


@pytest.mark.parametrize("view", ["sliced", "permuted", "expanded_batch"])
def test_strided_views(view):
    input = torch.randn(4, 12, 11, 10)
    weight = torch.randn(6, 4, 3, 3)
    if view == "sliced":
        input = input[::2, 1:9:2, 1:, ::2]
    elif view == "permuted":
        input = input.permute(0, 1, 3, 2)[:, :4]
    else:
        input = input[:1, :4].expand(3, -1, -1, -1)
    weight = weight.transpose(2, 3)
    assert not input.is_contiguous()
    actual = tconv.conv2d(input, weight, padding=1, stride=(1, 2))
    assert_close(actual, F.conv2d(input.double(), weight.double(), padding=1, stride=(1, 2)), torch.float32)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_unbatched(dims):
    ours, theirs = FUNCTIONS[dims]
    input = torch.randn(3, *(6,) * dims)
    weight = torch.randn(4, 3, *(3,) * dims)
    bias = torch.randn(4)
    actual = ours(input, weight, bias, padding=1)
    assert actual.shape == (4, *(6,) * dims)
    assert_close(actual, theirs(input.double(), weight.double(), bias.double(), padding=1), torch.float32)


def test_zero_batch_and_zero_channels():
    assert tconv.conv2d(torch.randn(0, 3, 5, 5), torch.randn(4, 3, 3, 3)).shape == (0, 4, 3, 3)
    out = tconv.conv2d(torch.randn(2, 3, 5, 5), torch.randn(0, 3, 3, 3))
    assert out.shape == (2, 0, 3, 3)


@pytest.mark.parametrize("tf32", [False, True])
def test_float32_follows_tf32_switch(tf32, monkeypatch):
    """A CUDA launch of float32 uses TF32 tensor cores exactly when torch's cudnn.allow_tf32
    is set (as compiled: the specialisation a launch makes); the interpreter never does."""
    from tconv.perf.suites import Layer, layer_spec

    from tconv.aot import specialize
    from tconv.descriptors.base import numerics

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    spec = layer_spec(Layer("3x3", 2, 32, (8, 8), 32, (3, 3), 1, 1))
    from tconv.configs import KernelConfig

    _, signature, constexprs, _ = specialize("fprop", spec, "float32", "channels_last", KernelConfig(64, 32, 16), 90)
    precision = constexprs[(list(signature).index("INPUT_PRECISION"),)]
    assert precision == ("tf32" if tf32 else "ieee")
    assert numerics(torch.float32, False, tf32, [])["INPUT_PRECISION"] == "ieee"
    run_case(CONV_CASES[7], torch.float32)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("case", PADDING_MODE_CASES, ids=lambda c: c.name)
def test_module_padding_modes(case, mode):
    module_type = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[case.dims]
    ours_type = {1: tconv.nn.Conv1d, 2: tconv.nn.Conv2d, 3: tconv.nn.Conv3d}[case.dims]
    kwargs = dict(case.kwargs, padding_mode=mode, bias=case.bias)
    reference = module_type(case.in_channels, case.out_channels, case.kernel_size, dtype=torch.float64, **kwargs)
    ours = ours_type(case.in_channels, case.out_channels, case.kernel_size, **kwargs)
    ours.load_state_dict(reference.state_dict())
    input, _, _ = case.tensors(torch.float32)
    assert_close(ours(input), reference(input.double()), torch.float32)


def test_depthwise_work_is_close_to_useful():
    """Depthwise layers skip tl.dot (whose 16-wide K would be 1/16 useful): executed
    multiply-adds stay within 1.25x of the useful ones on MobileNet-like layers."""
    from tconv.configs import heuristic_config
    from tconv.plan import executed_macs
    from tconv.spec import conv_spec

    for channels, size, kernel, stride in [(144, 56, 3, 1), (96, 112, 3, 2), (672, 14, 5, 1), (32, 112, 3, 1)]:
        input = torch.empty(8, channels, size, size, device="meta")
        weight = torch.empty(channels, 1, kernel, kernel, device="meta")
        spec, _ = conv_spec("conv2d", 2, input, weight, None, stride, kernel // 2, 1, channels)
        assert spec.depthwise
        ratio = executed_macs("fprop", spec, heuristic_config("fprop", spec, torch.float16)) / spec.useful_macs
        assert ratio <= 1.25, (channels, size, kernel, stride, ratio)


@pytest.mark.parametrize("multiplier", [1, 3])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_depthwise_every_dim(dims, multiplier):
    input = torch.randn(2, 20, *(7,) * dims)
    weight = torch.randn(20 * multiplier, 1, *(3,) * dims)
    bias = torch.randn(20 * multiplier)
    ours, theirs = FUNCTIONS[dims]
    actual = ours(input, weight, bias, padding=1, stride=2, groups=20)
    assert_close(actual, theirs(input.double(), weight.double(), bias.double(), padding=1, stride=2, groups=20), torch.float32)



OUTPUT_RUN_CASES = [  # (input shape, weight shape, torch kwargs, storage, forward's run, input gradient's run)
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "channels_last", 4, 4),
    ((2, 32, 5, 14), (32, 1, 3, 3), dict(padding=1, groups=32), "channels_last", 2, 2),  # 14 wide: pairs
    ((2, 32, 9, 16), (32, 1, 3, 3), dict(stride=2, padding=1, groups=32), "channels_last", 4, 1),  # phases
    ((2, 32, 9, 14), (32, 1, 3, 3), dict(stride=2, padding=1, groups=32), "channels_last", 1, 1),  # 7 wide
    ((2, 32, 5, 12), (32, 1, 5, 5), dict(padding=2, groups=32), "channels_last", 4, 4),
    ((2, 32, 5, 12), (32, 1, 7, 7), dict(padding=3, groups=32), "channels_last", 2, 2),  # 7 x 10 bits > 63
    ((2, 16, 5, 10), (32, 1, 3, 3), dict(groups=16), "channels_last", 4, 1),  # unpadded; input gradient: 2 lanes
    ((2, 32, 5, 12), (32, 1, 3, 3), dict(padding=2, dilation=2, groups=32), "channels_last", 1, 1),
    ((2, 32, 7, 16), (32, 1, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=32), "channels_last", 4, 4),
    ((2, 32, 9, 16), (32, 1, 3, 3), dict(stride=(2, 1), padding=1, groups=32), "channels_last", 4, 1),
    ((2, 32, 5, 13), (32, 1, 3, 3), dict(padding=1, groups=32), "contiguous", 1, 1),  # gathered, odd: no lanes
    ((2, 32, 40), (32, 1, 3), dict(padding=1, groups=32), "channels_last", 4, 4),  # one row of taps
    ((2, 32, 40), (32, 1, 4), dict(padding=3, groups=32), "channels_last", 1, 4),  # causal: 43 outputs
    ((1, 32, 3, 4, 8), (32, 1, 3, 3, 3), dict(padding=1, groups=32), "channels_last", 4, 4),
    ((2, 1, 40), (32, 1, 7), dict(padding=3), "contiguous", 4, 1),  # one input channel, 32 outputs (EnCodec's)
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("input_shape, weight_shape, kwargs, storage, forward_run, input_run", OUTPUT_RUN_CASES,
                         ids=lambda value: str(value).replace(" ", ""))
def test_depthwise_output_runs(input_shape, weight_shape, kwargs, storage, forward_run, input_run, dtype,
                               monkeypatch):
    """Depthwise forwards and input gradients whose rows are runs of output positions along w
    (descriptors/base.py output_run): each input column is loaded once for the run's outputs
    that read it; the output (the bias added per run position) and the input gradient match
    float64 torch, grad_output stored as the input (as in a channels-last model)."""
    runs = _runs_against_torch(input_shape, weight_shape, kwargs, storage, dtype, monkeypatch)
    assert runs == {"conv_fprop_kernel": [forward_run], "conv_dgrad_kernel": [input_run]}, runs


def _runs_against_torch(input_shape, weight_shape, kwargs, storage, dtype, monkeypatch) -> dict:
    """The forward (with bias) and input gradient of a depthwise layer against float64 torch,
    grad_output stored like the input (as in a channels-last model); returns each kernel's
    launches' W_RUN. storage: "channels_last", "contiguous", or NCHW views: "channel_slice"
    (channels 4.. of a wider tensor) and "width_slice" (columns 1.. of rows 24 wide: rows
    aligned, not the first)."""
    from tconv import _launch

    dims = len(input_shape) - 2

    def stored(tensor: torch.Tensor) -> torch.Tensor:  # (1-d: channels innermost, a sequence model's transpose)
        if storage == "channel_slice":
            wider = torch.zeros(tensor.shape[0], tensor.shape[1] + 8, *tensor.shape[2:], dtype=tensor.dtype)
            wider[:, 4:tensor.shape[1] + 4] = tensor
            return wider[:, 4:tensor.shape[1] + 4]
        if storage == "width_slice":
            wider = torch.zeros(*tensor.shape[:-1], 24, dtype=tensor.dtype)
            wider[..., 1:tensor.shape[-1] + 1] = tensor
            return wider[..., 1:tensor.shape[-1] + 1]
        if storage == "contiguous":
            return tensor
        return tensor.transpose(1, 2).contiguous().transpose(1, 2) if dims == 1 else tensor.contiguous(
            memory_format=CL[dims])

    input = stored(torch.randn(input_shape, dtype=torch.float64))
    weight, bias = torch.randn(weight_shape, dtype=torch.float64), torch.randn(weight_shape[0], dtype=torch.float64)
    runs, original_go = {}, _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        runs.setdefault(getattr(function, "function", function).__name__, []).append(meta.get("W_RUN"))
        return original_go(function, grid, template, slots, meta, tensors, device)

    _launch._passes.clear()
    _launch._chosen.clear()
    monkeypatch.setattr(_launch, "_go", record)
    ours, theirs = FUNCTIONS[dims]
    low = stored(input.to(dtype)).requires_grad_()  # (stored again: a cast of a view is dense)
    reference = input.clone().requires_grad_()
    actual = ours(low, weight.to(dtype), bias.to(dtype), **kwargs)
    expected = theirs(reference, weight, bias, **kwargs)
    grad = stored(torch.randn_like(expected))
    (grad_input,) = torch.autograd.grad(actual, low, grad.to(dtype))
    _launch._passes.clear()
    _launch._chosen.clear()
    assert_close(actual, expected, dtype)
    assert_close(grad_input, torch.autograd.grad(expected, reference, grad)[0], dtype, "grad_input")
    return {name: launched for name, launched in runs.items() if name in ("conv_fprop_kernel", "conv_dgrad_kernel")}


LANE_RUN_CASES = [  # (input shape, weight shape, torch kwargs, storage, (forward's run, input gradient's) at
    # float16, at float32): NCHW depthwise layers whose runs take their columns from vectors along w
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "contiguous", (8, 8), (4, 4)),
    ((2, 32, 7, 32), (32, 1, 3, 3), dict(stride=2, padding=1, groups=32), "contiguous", (4, 1), (2, 1)),
    ((2, 32, 9, 32), (32, 1, 5, 5), dict(stride=2, padding=2, groups=32), "contiguous", (4, 1), (2, 1)),
    ((2, 32, 5, 14), (32, 1, 3, 3), dict(padding=1, groups=32), "contiguous", (2, 2), (2, 2)),
    ((2, 32, 5, 12), (32, 1, 5, 5), dict(padding=2, groups=32), "contiguous", (4, 4), (4, 4)),
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=(1, 2), groups=32), "contiguous", (1, 2), (1, 2)),  # 18 outputs
    ((2, 32, 5, 18), (32, 1, 3, 3), dict(groups=32), "contiguous", (2, 1), (2, 1)),  # the gradient's spans pass 16
    ((2, 16, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=16), "contiguous", (8, 1), (4, 1)),  # gradient: 2 lanes
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=2, dilation=2, groups=32), "contiguous", (1, 1), (1, 1)),
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "channel_slice", (8, 8), (4, 4)),
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "width_slice", (8, 8), (4, 4)),
    ((2, 32, 40), (32, 1, 3), dict(padding=1, groups=32), "contiguous", (8, 8), (4, 4)),
    ((1, 32, 3, 4, 8), (32, 1, 3, 3, 3), dict(padding=1, groups=32), "contiguous", (4, 4), (4, 4)),  # 9 x 6 bits
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("input_shape, weight_shape, kwargs, storage, half_runs, float_runs", LANE_RUN_CASES,
                         ids=lambda value: str(value).replace(" ", ""))
def test_depthwise_runs_in_lanes(input_shape, weight_shape, kwargs, storage, half_runs, float_runs, dtype,
                                 monkeypatch):
    """NCHW depthwise forwards and input gradients read in place in output runs whose input
    columns are the lanes of vectors along w (descriptors/base.py span_run): the run each pass
    takes, and its output and input gradient against float64 torch, dense and from views."""
    forward_run, input_run = half_runs if dtype == torch.float16 else float_runs
    runs = _runs_against_torch(input_shape, weight_shape, kwargs, storage, dtype, monkeypatch)
    assert runs == {"conv_fprop_kernel": [forward_run], "conv_dgrad_kernel": [input_run]}, runs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("storage", ["channels_last", "channel_slice", "contiguous"])
def test_folded_width_matches_torch(storage, dtype):
    """80 input channels (32 does not divide them): the kernel's width folds into the
    reduction. Channels-last storage makes the (w, channel) run one offset range (the dense
    path); a channel slice of a wider tensor, or channels-first storage, takes the strided one."""
    from tconv.descriptors import FPROP
    from tconv.spec import conv_spec

    kwargs = dict(stride=2, padding=3)
    stored = torch.randn(3, 29, 96, dtype=dtype)  # [N, L, C]: channels innermost
    input = {"channels_last": stored[..., :80].contiguous(), "channel_slice": stored[..., 8:88],
             "contiguous": stored[..., :80].contiguous()}[storage].transpose(1, 2)
    if storage == "contiguous":
        input = input.contiguous()
    weight = torch.randn(40, 7, 80, dtype=dtype).transpose(1, 2)  # [O, C, K], channels innermost
    bias = torch.randn(40, dtype=dtype)
    spec = conv_spec("conv1d", 1, input.to("meta"), weight.to("meta"), None, 2, 3, 1, 1)[0]
    assert FPROP.folded_channels(spec) == 80
    expected = F.conv1d(input.double(), weight.double(), bias.double(), **kwargs)
    assert_close(tconv.conv1d(input, weight, bias, **kwargs), expected, dtype)


def test_width_folds_only_where_it_applies():
    from tconv.descriptors import FPROP
    from tconv.spec import conv_spec

    def folded(channels=80, kernel=(7,), groups=1, padding_mode="zeros", dilation=1):
        input = torch.empty(2, channels, *(16,) * len(kernel), device="meta")
        weight = torch.empty(64, channels // groups, *kernel, device="meta")
        dims = len(kernel)
        return FPROP.folded_channels(conv_spec(f"conv{dims}d", dims, input, weight, None, 1, 1, dilation, groups,
                                               padding_mode)[0])

    assert folded() == 80 and folded(48, (3, 3)) == 48 and folded(24, (3, 3, 3)) == 24
    assert folded(64) == 0 and folded(96, (3, 3)) == 0  # 32 divides: each tap's channels make whole K steps
    assert folded(80, (1, 1)) == 0 and folded(80, (7, 1)) == 0  # no width to fold
    assert folded(160, groups=2) == 0 and folded(dilation=2) == 0 and folded(padding_mode="reflect") == 0
    assert folded(3) == 0  # thin: packed (tap, channel) pairs instead
    assert folded(150) == 0  # unaligned channel runs: one-element loads either way


def check_forward_and_gradients(name: str, input: torch.Tensor, weight: torch.Tensor, kwargs: dict,
                                dtype: torch.dtype) -> None:
    """tconv's `name` on float64 `input` and `weight` cast to `dtype`, forward and both
    gradients, against torch.nn.functional's in float64."""
    ours = [t.to(dtype).requires_grad_() for t in (input, weight)]
    reference = [t.clone().requires_grad_() for t in (input, weight)]
    actual = getattr(tconv, name)(*ours, **kwargs)
    expected = getattr(F, name)(*reference, **kwargs)
    assert_close(actual, expected, dtype)
    grad = torch.randn(expected.shape, dtype=torch.float64)
    for got, want, what in zip(torch.autograd.grad(actual, ours, grad.to(dtype)),
                               torch.autograd.grad(expected, reference, grad), ("grad_input", "grad_weight")):
        assert_close(got, want, dtype, what)


def launches_with(monkeypatch, flag: str, kernels: tuple[str, ...], least: int = 1, **fields) -> set[str]:
    """The kernel functions later launched with meta-parameter `flag` at `least` or more (a
    set filled as they run; True counts 1), with the heuristic's dense configs of `kernels`
    changed by `fields`; the launcher's memos are emptied (the caller empties them again)."""
    import dataclasses

    from tconv import _launch

    launched = set()
    original_go, original_config = _launch._go, _launch.heuristic_config

    def record(function, grid, template, slots, meta, tensors, device):
        if meta.get(flag, 0) >= least:
            launched.add(getattr(function, "function", function).__name__)
        return original_go(function, grid, template, slots, meta, tensors, device)

    def changed(kernel, spec, *args, **kwargs):
        config = original_config(kernel, spec, *args, **kwargs)
        dense = kernel.name in kernels and not spec.elementwise_lanes
        return dataclasses.replace(config, **fields) if dense else config

    _launch._passes.clear()
    _launch._chosen.clear()
    monkeypatch.setattr(_launch, "_go", record)
    monkeypatch.setattr(_launch, "heuristic_config", changed)
    return launched


TAP_STEP_CASES = [  # (dims, in/out channels, kernel, kwargs): 32 channels per group, one K step per tap
    (1, 32, 5, dict(stride=2, padding=3, dilation=2)),
    (2, 32, 3, dict(stride=2, padding=1)),
    (2, 64, 3, dict(stride=3, padding=2, dilation=2, groups=2)),
    (3, 32, 3, dict(padding=1)),
    (3, 32, (2, 3, 3), dict(stride=(1, 2, 2), padding=(0, 1, 1))),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("dims, channels, kernel, kwargs", TAP_STEP_CASES,
                         ids=lambda value: str(value).replace(" ", ""))
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_one_channel_block_per_tap(dims, channels, kernel, kwargs, transposed, dtype, monkeypatch):
    """A group of exactly BLOCK_K channels makes every K step a new tap (TAP_STEPS): the
    tap counters, the weight offset, input delta and tap bit carried across steps move
    every step (also across stride phases whose tap counts differ, dilated taps and
    groups). Forward and both gradients against torch in float64, with the forward and
    input-gradient kernels' BLOCK_K set to the 32 channels of a group, and both ran such a loop."""
    from tconv import _launch

    launched = launches_with(monkeypatch, "TAP_STEPS", ("fprop", "dgrad"), block_k=32)
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * dims
    groups = kwargs.get("groups", 1)
    input = torch.randn(2, channels, *(7,) * dims, dtype=torch.float64)
    weight = torch.randn(channels, channels // groups, *kernel, dtype=torch.float64)
    check_forward_and_gradients(f"conv_transpose{dims}d" if transposed else f"conv{dims}d", input, weight, kwargs, dtype)
    assert {"conv_fprop_kernel", "conv_dgrad_kernel"} <= launched, launched
    _launch._passes.clear()
    _launch._chosen.clear()


CHUNKED_CASES = [  # (dims, in/out channels, kernel, kwargs, BLOCK_K, layout): 2, 3 or 5 whole blocks a tap
    (2, 96, 3, dict(padding=1), 32, "channels_last"),
    (2, 64, 3, dict(stride=2, padding=2, dilation=2), 32, "channels_last"),  # two blocks: channels-last only
    (3, 64, 3, dict(padding=1, groups=2), 16, "channels_last"),
    (1, 64, 3, dict(padding=1), 32, "channels_last"),
    (2, 96, 3, dict(stride=2, padding=1, groups=2), 16, "contiguous"),
    (1, 96, 5, dict(padding=4, dilation=2, groups=2), 16, "channels_last"),
    (2, 80, 3, dict(padding=2, dilation=2), 16, "contiguous"),
    (3, 48, 3, dict(stride=(1, 2, 2), padding=1, groups=1, dilation=(1, 1, 2)), 16, "channels_last"),
]


BF16_SLOW = [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.slow)]  # (the fp16 case's twin)


@pytest.mark.parametrize("dtype", BF16_SLOW, ids=str)
@pytest.mark.parametrize("dims, channels, kernel, kwargs, block_k, layout", CHUNKED_CASES,
                         ids=lambda value: str(value).replace(" ", ""))
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_chunked_k_steps(dims, channels, kernel, kwargs, block_k, layout, transposed, dtype, monkeypatch):
    """A tap's channels in 2 (channels-last), 3 or 5 whole BLOCK_K blocks take one K step of that many
    tl.dots (K_CHUNKS, descriptors.base.k_chunks), the blocks' tiles at constant offsets
    from the tap's: forward and both gradients against torch in float64 (stride phases,
    dilation, groups, 1-3 d, channels-last and gathered channels-first inputs), with the
    forward and input-gradient kernels' BLOCK_K set, and both ran chunked loops."""
    from tconv import _launch
    from tconv.descriptors.base import in_layout

    launched = launches_with(monkeypatch, "K_CHUNKS", ("fprop", "dgrad"), least=2, block_k=block_k, num_stages=2)
    groups = kwargs.get("groups", 1)
    input = in_layout(torch.randn(2, channels, *(6,) * dims, dtype=torch.float64), layout)
    weight = torch.randn(channels, channels // groups, *(kernel,) * dims, dtype=torch.float64) / 4
    check_forward_and_gradients(f"conv_transpose{dims}d" if transposed else f"conv{dims}d", input, weight, kwargs, dtype)
    if channels // groups == 2 * block_k:  # two blocks: only the pass reading the channels-last input (the
        # gradient pass gathers the channels-first grad_output the check passes)
        assert ("conv_dgrad_kernel" if transposed else "conv_fprop_kernel") in launched, launched
    else:
        assert {"conv_fprop_kernel", "conv_dgrad_kernel"} <= launched, launched
    _launch._passes.clear()
    _launch._chosen.clear()


# (dims, in/out channels, kernel, kwargs): 2-4 blocks of 16 channels a tap, none folded and not two
# whole blocks (those take one chunked step, without the channel counter)
BASE_FIRST_CASES = [
    (2, 64, 3, dict(padding=1)),
    (2, 40, 3, dict(stride=2, padding=2, dilation=2, groups=2)),
    (1, 64, 5, dict(stride=2, padding=3)),
    (3, 64, 3, dict(padding=1, stride=(1, 2, 1))),
]


@pytest.mark.parametrize("dtype", BF16_SLOW, ids=str)
@pytest.mark.parametrize("dims, channels, kernel, kwargs", BASE_FIRST_CASES, ids=lambda value: str(value).replace(" ", ""))
def test_forward_moves_base_pointers_first(dims, channels, kernel, kwargs, dtype, monkeypatch):
    """Small forward tiles of 16-bit channels-last operands with a channel counter move the
    base pointers by the step's scalar and add offset tiles built once (BASE_FIRST): forward
    and both gradients against torch in float64, with the forward kernel's tile set to
    32x32x16 and such a loop run."""
    from tconv import _launch
    from tconv.descriptors.base import in_layout

    launched = launches_with(monkeypatch, "BASE_FIRST", ("fprop",), block_m=32, block_n=32, block_k=16, num_stages=2)
    groups = kwargs.get("groups", 1)
    input = in_layout(torch.randn(2, channels, *(7,) * dims, dtype=torch.float64), "channels_last")
    weight = torch.randn(channels, channels // groups, *(kernel,) * dims, dtype=torch.float64) / 4
    check_forward_and_gradients(f"conv{dims}d", input, weight, kwargs, dtype)
    assert launched == {"conv_fprop_kernel"}, launched
    _launch._passes.clear()
    _launch._chosen.clear()


PLANE_STEP_CASES = [  # (input shape, kernel, kwargs, layout, output plane): one whole output plane a K step
    ((2, 16, 8, 8), 3, dict(padding=1), "channels_last", 64),  # an image a step: h and w checked, no d
    ((3, 16, 5, 4, 4), 3, dict(padding=1), "channels_last", 16),  # planes whose d tap is padding
    ((2, 16, 9, 8, 8), 3, dict(stride=2, padding=1), "channels_last", 16),
    ((2, 16, 4, 8), (3, 5), dict(padding=(2, 4), dilation=2), "channels_last", 32),  # taps past both ends
    ((2, 32, 4, 4), 3, dict(padding=1, groups=2), "channels_last", 16),
    ((2, 16, 6, 6), 3, dict(), "channels_last", 16),  # every tap inside: nothing checked
    ((1, 16, 4, 8), 3, dict(padding=1), "contiguous", 32),  # one image: grad_output flat, the input gathered
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("input_shape, kernel, kwargs, layout, plane", PLANE_STEP_CASES,
                         ids=lambda value: str(value).replace(" ", ""))
def test_weight_gradient_steps_of_whole_planes(input_shape, kernel, kwargs, layout, plane, dtype, monkeypatch):
    """A weight-gradient K step that is one whole (n, d) output plane (LINE_STEPS 2,
    descriptors/wgrad.py line_steps) checks its positions' h and w once per tile and its
    plane's d once a step: forward and both gradients against torch in float64 (3-d planes
    whose d tap is padding, stride, dilation, groups, tap runs in float16), with the weight
    gradient's BLOCK_K set to the plane and such a loop run."""
    from tconv import _launch
    from tconv.descriptors.base import in_layout

    launched = launches_with(monkeypatch, "LINE_STEPS", ("wgrad",), least=2, block_k=plane)
    dims = len(input_shape) - 2
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * dims
    input = in_layout(torch.randn(input_shape, dtype=torch.float64), layout)
    weight = torch.randn(24, input_shape[1] // kwargs.get("groups", 1), *kernel, dtype=torch.float64) / 4
    check_forward_and_gradients(f"conv{dims}d", input, weight, kwargs, dtype)
    assert launched == {"conv_wgrad_kernel"}, launched
    _launch._passes.clear()
    _launch._chosen.clear()


def test_chunks_only_where_they_apply():
    """Chunked steps take 3 or 5 whole blocks a tap, or 2 where the caller allows
    (two_blocks), never a 1x1 kernel's single tap, and at most the config's k_step: what
    its family's shared memory holds at its tile and stages for 16-bit operands
    (configs.with_k_step), 256 channels at most."""
    from tconv.configs import KernelConfig, with_k_step
    from tconv.descriptors.base import k_chunks

    fp16 = {family: with_k_step(KernelConfig(128, 32, 32, num_stages=3), torch.float16, family)
            for family in ("sm_90", "sm_80", "fallback")}
    assert [config.k_step for config in fp16.values()] == [224, 160, 96]  # 227, 163, 99 KB over 3 x 160 x 2 bytes
    tile = fp16["fallback"]
    assert k_chunks(96, 9, tile) == 3 and k_chunks(96, 1, tile) == 1  # one tap: the loop would run one step
    assert k_chunks(160, 9, tile) == 1 and k_chunks(160, 9, fp16["sm_80"]) == 5  # the family's shared memory
    assert k_chunks(224, 9, fp16["sm_90"]) == 1 and k_chunks(192, 9, fp16["sm_90"]) == 1  # 7 or 6 blocks
    assert k_chunks(192, 9, with_k_step(KernelConfig(64, 64, 64), torch.float16, "sm_90")) == 3
    assert k_chunks(64, 9, tile) == 1 and k_chunks(64, 9, tile, two_blocks=True) == 2  # where the caller allows
    assert k_chunks(128, 9, fp16["sm_90"], two_blocks=True) == 1  # four blocks: a wider BLOCK_K
    two = with_k_step(KernelConfig(128, 64, 64, num_stages=3), torch.float16, "sm_80")  # 163 KB over 3 x 192 x 2 bytes
    assert two.k_step == 128 and k_chunks(128, 27, two, two_blocks=True) == 2  # two blocks fit, not three
    assert k_chunks(100, 9, tile) == 1  # not whole blocks
    assert k_chunks(96, 9, KernelConfig(128, 32, 32)) == 1  # no k_step: BLOCK_K-wide steps
    for dtype in (torch.float32, torch.float64):  # 16-bit operands only
        assert with_k_step(KernelConfig(64, 32, 32, num_stages=2), dtype, "sm_90").k_step == 0
    assert with_k_step(KernelConfig(64, 64, 16, num_stages=3), torch.float16, "sm_90").k_step == 256  # the limit


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dims, kernel, kwargs", [
    (2, (7, 7), dict(stride=2, padding=3)),
    (1, (41,), dict(padding=20)),
    (3, (3, 3, 5), dict(padding=(1, 0, 2), dilation=(1, 1, 2))),
    (2, (5, 10), dict(stride=(1, 2), padding=(1, 4))),
], ids=["7x7", "k41", "3x3x5", "5x10"])
def test_tap_bits_in_64_bit_words(dims, kernel, kwargs, dtype, monkeypatch):
    """32-63 padded taps keep a bit per tap and row in a 64-bit word (16-bit tl.dot loops,
    descriptors.base.tap_bits_limit), in the forward and its transposed kernel (stride
    phases: a bit per kernel tap): forward and both gradients against torch in float64, and
    both kernels ran with the bits."""
    from tconv import _launch

    launched = set()
    original_go = _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        if meta.get("TAP_BITS") and meta.get("KERNEL_D", 1) * meta.get("KERNEL_H", 1) * meta.get("KERNEL_W", 1) > 31:
            launched.add(getattr(function, "function", function).__name__)
        return original_go(function, grid, template, slots, meta, tensors, device)

    _launch._passes.clear()
    monkeypatch.setattr(_launch, "_go", record)
    input = torch.randn(2, 16, *((11,) * dims if dims < 3 else (5, 6, 9)), dtype=torch.float64)
    weight = torch.randn(24, 16, *kernel, dtype=torch.float64)
    check_forward_and_gradients(f"conv{dims}d", input, weight, kwargs, dtype)
    assert {"conv_fprop_kernel", "conv_dgrad_kernel"} <= launched, launched
    _launch._passes.clear()
