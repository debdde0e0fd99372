"""Backward passes, all in tconv's kernels: gradcheck, grads against torch for every
dtype, opcheck, torch.compile, autocast, determinism, double backward."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import tconv
from tconv import _launch, ops
from tconv.functional import convolution
from tconv.testing import CONV_CASES, CONV_TRANSPOSE_CASES, PADDING_MODE_CASES, ConvCase, assert_close


def _name(case: ConvCase) -> str:
    return f"conv_transpose{case.dims}d" if case.transposed else f"conv{case.dims}d"


def grads_against_torch(case: ConvCase, dtype: torch.dtype):
    input, weight, bias = case.tensors(dtype)
    leaves = [t.requires_grad_() for t in (input, weight, bias) if t is not None]
    output = getattr(tconv, _name(case))(input, weight, bias, **case.kwargs)
    grad_output = torch.randn_like(output)
    ours = torch.autograd.grad(output, leaves, grad_output)
    reference_leaves = [t.detach().double().requires_grad_() for t in leaves]
    reference_bias = reference_leaves[2] if bias is not None else None
    reference = getattr(F, _name(case))(*reference_leaves[:2], reference_bias, **case.kwargs)
    theirs = torch.autograd.grad(reference, reference_leaves, grad_output.double())
    for name, mine, expected in zip(("grad_input", "grad_weight", "grad_bias"), ours, theirs):
        assert_close(mine, expected, dtype, name)


@pytest.mark.parametrize("case", CONV_CASES + CONV_TRANSPOSE_CASES, ids=lambda c: _name(c) + " " + c.name)
def test_grads_float32(case):
    grads_against_torch(case, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("case", (CONV_CASES + CONV_TRANSPOSE_CASES)[::5], ids=lambda c: _name(c) + " " + c.name)
def test_grads_other_dtypes(case, dtype):
    grads_against_torch(case, dtype)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("case", PADDING_MODE_CASES, ids=lambda c: c.name)
def test_module_grads_padding_modes(case, mode):
    torch_type = getattr(torch.nn, f"Conv{case.dims}d")
    kwargs = dict(case.kwargs, padding_mode=mode)
    reference = torch_type(case.in_channels, case.out_channels, case.kernel_size, dtype=torch.float64, **kwargs)
    ours = getattr(tconv.nn, f"Conv{case.dims}d")(case.in_channels, case.out_channels, case.kernel_size, **kwargs)
    ours.load_state_dict(reference.state_dict())
    input = torch.randn(case.batch, case.in_channels, *case.in_size, requires_grad=True)
    reference_input = input.detach().double().requires_grad_()
    output, expected = ours(input), reference(reference_input)
    grad_output = torch.randn_like(output)
    output.backward(grad_output)
    expected.backward(grad_output.double())
    assert_close(input.grad, reference_input.grad, torch.float32, "grad_input")
    assert_close(ours.weight.grad, reference.weight.grad, torch.float32, "grad_weight")
    assert_close(ours.bias.grad, reference.bias.grad, torch.float32, "grad_bias")


GRADCHECK = [
    ("conv1d stride dil groups", lambda x, w, b: tconv.conv1d(x, w, b, stride=2, padding=2, dilation=2, groups=2),
     (2, 4, 9), (4, 2, 3)),
    ("conv2d same", lambda x, w, b: tconv.conv2d(x, w, b, padding="same"), (1, 2, 5, 4), (3, 2, 2, 3)),
    ("conv2d depthwise", lambda x, w, b: tconv.conv2d(x, w, b, padding=1, groups=3), (1, 3, 5, 5), (6, 1, 3, 3)),
    ("conv3d", lambda x, w, b: tconv.conv3d(x, w, b, stride=(1, 2, 1), padding=1), (1, 2, 3, 4, 3), (2, 2, 2, 2, 2)),
    ("conv2d reflect", lambda x, w, b: convolution("conv2d", 2, x, w, b, 1, 2, 1, 1, "reflect"), (1, 2, 4, 5), (2, 2, 3, 3)),
    ("conv2d replicate", lambda x, w, b: convolution("conv2d", 2, x, w, b, 2, (1, 2), 1, 1, "replicate"),
     (1, 2, 5, 4), (2, 2, 3, 2)),
    ("conv1d circular", lambda x, w, b: convolution("conv1d", 1, x, w, b, 1, 3, 2, 1, "circular"), (2, 2, 6), (3, 2, 3)),
    ("conv_transpose1d op", lambda x, w, b: tconv.conv_transpose1d(x, w, b, stride=3, padding=1, output_padding=2),
     (2, 2, 4), (2, 3, 3)),
    ("conv_transpose2d groups dil", lambda x, w, b: tconv.conv_transpose2d(x, w, b, stride=2, padding=1, groups=2, dilation=2),
     (1, 4, 3, 3), (4, 1, 3, 2)),
    ("conv_transpose3d", lambda x, w, b: tconv.conv_transpose3d(x, w, b, stride=2, output_padding=(1, 0, 0)),
     (1, 2, 2, 2, 2), (2, 2, 2, 2, 2)),
]


@pytest.mark.parametrize("name,function,input_shape,weight_shape", GRADCHECK, ids=[g[0] for g in GRADCHECK])
def test_gradcheck_float64(name, function, input_shape, weight_shape):
    transposed = name.startswith("conv_transpose")
    groups = 2 if "groups" in name else 1
    out_channels = weight_shape[1] * groups if transposed else weight_shape[0]
    tensors = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in (input_shape, weight_shape, (out_channels,))]
    # fast_mode: checks random projections of the Jacobian (a few interpreter runs, not
    # two per input element); still fails on any wrong gradient direction.
    assert torch.autograd.gradcheck(function, tensors, eps=1e-6, atol=1e-7, fast_mode=True)


def test_only_needed_gradients_are_computed(monkeypatch):
    calls = []
    for name in ("conv", "conv_transpose", "conv_weight_grad"):
        original = getattr(ops._launch, {"conv": "conv_fprop", "conv_transpose": "conv_dgrad",
                                          "conv_weight_grad": "conv_wgrad"}[name])
        monkeypatch.setattr(ops._launch, original.__name__,
                            lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    input = torch.randn(1, 2, 5, 5)
    weight = torch.randn(3, 2, 3, 3, requires_grad=True)
    tconv.conv2d(input, weight).sum().backward()
    assert calls == ["conv", "conv_weight_grad"]
    calls.clear()
    input.requires_grad_()
    tconv.conv2d(input, weight.detach()).sum().backward()
    assert calls == ["conv", "conv_transpose"]


def _opcheck_cases():
    x, w, b = torch.randn(2, 4, 6, 5), torch.randn(6, 2, 3, 3), torch.randn(6)
    yield ops.conv_op, (x, w, b, [1, 2], [1, 0], [1, 0], [1, 1], 2, "zeros")
    yield ops.conv_op, (x, w, None, [1, 1], [2, 1], [2, 1], [1, 1], 2, "reflect")
    yield ops.conv_transpose_op, (x, torch.randn(4, 3, 3, 3), b, [2, 2], [1, 1], [12, 10], [1, 1], 2)
    yield ops.conv_weight_grad_op, (x, torch.randn(2, 6, 6, 5), [3, 3], [1, 1], [1, 1], [1, 1], [1, 1], 2, "zeros", True)


@pytest.mark.parametrize("op,args", list(_opcheck_cases()), ids=["conv", "conv reflect", "conv_transpose", "weight_grad"])
def test_opcheck(op, args):
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


class Decoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encode = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect")
        self.depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.decode = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.head = torch.nn.Conv1d(4, 2, 3, padding="same")

    def forward(self, x):
        y = torch.relu(self.depthwise(torch.relu(self.encode(x))))
        return self.head(self.decode(y).flatten(2))


def test_torch_compile_fullgraph_forward_and_backward():
    torch.manual_seed(0)
    model = tconv.nn.convert(Decoder())
    input = torch.randn(2, 3, 8, 8)
    expected = model(input)
    expected.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    output = compiled(input)
    output.square().sum().backward()
    assert torch.allclose(output, expected, atol=1e-6)
    for grad, eager in zip((p.grad for p in model.parameters()), eager_grads):
        assert torch.allclose(grad, eager, atol=1e-5)


def test_autocast_casts_like_torch_conv():
    input, weight = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = tconv.conv2d(input, weight, padding=1)
        theirs = F.conv2d(input, weight, padding=1)
        ours_t = tconv.conv_transpose2d(input, weight.transpose(0, 1), stride=2)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert ours_t.dtype == torch.bfloat16
    reference = F.conv2d(input.bfloat16().double(), weight.bfloat16().double(), padding=1)
    assert_close(ours, reference, torch.bfloat16)


@pytest.mark.parametrize("deterministic", [False, True])
def test_gradients_are_bit_reproducible(deterministic):
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        model = tconv.nn.convert(Decoder())
        input = torch.randn(2, 3, 8, 8)
        runs = []
        for _ in range(2):
            model.zero_grad()
            model(input).square().sum().backward()
            runs.append([p.grad.clone() for p in model.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(*runs))
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("name,function,input_shape,weight_shape", GRADCHECK, ids=[g[0] for g in GRADCHECK])
def test_gradgradcheck_float64(name, function, input_shape, weight_shape):
    """Double backward: the gradients of tconv's backward (conv_weight_grad's own backward
    among them) in tconv's kernels, against finite differences of the backward."""
    transposed = name.startswith("conv_transpose")
    groups = 2 if "groups" in name else 1
    out_channels = weight_shape[1] * groups if transposed else weight_shape[0]
    tensors = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in (input_shape, weight_shape, (out_channels,))]
    assert torch.autograd.gradgradcheck(function, tensors, eps=1e-6, atol=1e-7, fast_mode=True)


def test_double_backward_matches_torch():
    """A gradient penalty (the gradient of a gradient's norm), as WGAN-GP trains."""
    input = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for conv in (tconv.conv2d, F.conv2d):
        output = conv(input, weight, stride=2, padding=1)
        (grad_input,) = torch.autograd.grad(output.square().sum(), input, create_graph=True)
        results.append(torch.autograd.grad(grad_input.square().sum(), (input, weight)))
    for ours, theirs in zip(*results):
        assert_close(ours, theirs, torch.float64)


WGRAD_LAYERS = [  # (input shape, weight shape, stride, padding, split): realistic layers at small batch
    # split: whether the heuristic launch splits the reduction. Every layer has fewer weight
    # tiles than two waves of programs (FULL_WAVES) at the heuristic's tile, so split-K must fill the
    # GPU (the 320-channel one has 225 tiles of 64x64 x 9 taps: two splits).
    ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, True),
    ((8, 256, 56, 56), (64, 256, 1, 1), 1, 0, True),
    ((8, 128, 56, 56), (128, 128, 3, 3), 2, 1, True),
    ((2, 320, 64, 64), (320, 320, 3, 3), 1, 1, True),
    ((2, 64, 32, 32, 32), (64, 64, 3, 3, 3), 1, 1, True),
    ((16, 128, 2048), (128, 128, 7), 1, 3, True),
    ((8, 144, 56, 56), (144, 1, 3, 3), 1, 1, True),  # depthwise (groups = 144)
]


def _check_split(spec, config):
    """wgrad_split covers the rows with non-empty splits of whole K steps; returns it."""
    from tconv.plan import wgrad_split

    rows = spec.batch * math.prod(spec.out_size)
    splits, rows_per_split = wgrad_split(spec, config)
    assert splits >= 1, (splits, config)
    assert rows_per_split > 0 and rows_per_split % config.block_k == 0, (rows_per_split, config)
    assert splits * rows_per_split >= rows, ("rows left out", splits, rows_per_split, rows, config)
    assert (splits - 1) * rows_per_split < rows, ("empty split", splits, rows_per_split, rows, config)
    if config.split_k:
        assert splits <= config.split_k, (splits, config)
    return splits, rows_per_split


@pytest.mark.parametrize("input_shape,weight_shape,stride,padding,split", WGRAD_LAYERS)
def test_wgrad_work_close_to_useful(input_shape, weight_shape, stride, padding, split):
    from tconv.configs import heuristic_config
    from tconv.plan import executed_macs
    from tconv.spec import conv_spec

    groups = input_shape[1] // weight_shape[1]
    dims = len(input_shape) - 2
    spec, _ = conv_spec("conv", dims, torch.empty(input_shape, device="meta"), torch.empty(weight_shape, device="meta"),
                        None, stride, padding, 1, groups)
    config = heuristic_config("wgrad", spec, torch.float16)
    ratio = executed_macs("wgrad", spec, config) / spec.useful_macs
    assert ratio <= 1.25, ratio

    splits, _ = _check_split(spec, config)
    assert (splits > 1) == split, (splits, config)
    for split_k in (1, 2, 3, 8, 32, 1000):  # explicit split counts (tuned configs) too
        _check_split(spec, dataclasses.replace(config, split_k=split_k))


def test_torch_compile_dynamic_shapes_and_unbatched():
    model = tconv.nn.convert(torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), torch.nn.ConvTranspose2d(4, 2, 2, stride=2)
    ))
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    for size in [(6, 6), (5, 7)]:
        input = torch.randn(2, 3, *size, requires_grad=True)
        output = compiled(input)
        output.square().sum().backward()
        assert torch.allclose(output, model(input.detach()), atol=1e-6)
        assert input.grad.shape == input.shape
    unbatched = torch.compile(lambda t: tconv.conv1d(t, torch.ones(2, 3, 3)), fullgraph=True, backend="aot_eager")
    assert unbatched(torch.randn(3, 7)).shape == (2, 5)


def _layer_spec(input, weight, kwargs):
    """The ConvSpec of conv{dims}d(input, weight, **kwargs)."""
    from tconv.spec import conv_spec

    dims = input.dim() - 2
    return conv_spec(f"conv{dims}d", dims, input, weight, None, kwargs.get("stride", 1), kwargs.get("padding", 0),
                     kwargs.get("dilation", 1), kwargs.get("groups", 1))[0]


def _assert_weight_and_bias_grads(input, weight, bias, kwargs):
    """tconv's weight and bias gradients of conv{dims}d(input, weight, bias, **kwargs) match
    float64 torch's for a fresh random grad_output."""
    dims = input.dim() - 2
    output = getattr(tconv, f"conv{dims}d")(input, weight, bias, **kwargs)
    grad_output = torch.randn_like(output)
    ours = torch.autograd.grad(output, (weight, bias), grad_output)
    reference_leaves = [t.detach().double().requires_grad_() for t in (input, weight, bias)]
    reference = getattr(F, f"conv{dims}d")(*reference_leaves, **kwargs)
    theirs = torch.autograd.grad(reference, reference_leaves[1:], grad_output.double())
    for name, mine, expected in zip(("grad_weight", "grad_bias"), ours, theirs):
        assert_close(mine, expected, input.dtype, name)


TAP_RUN_LAYERS = [  # (input shape, weight shape, torch kwargs, taps per program): weight gradients of tap runs
    ((2, 16, 9, 11), (24, 16, 3, 3), dict(padding=1), 3),
    ((2, 16, 9, 11), (24, 16, 3, 3), dict(padding=2, dilation=2), 3),
    ((2, 16, 9, 11), (24, 16, 3, 3), dict(stride=2, padding=1), 3),
    ((2, 16, 6, 32), (24, 16, 3, 3), dict(padding=1), 3),  # width 32: each K step in one output line
    ((2, 16, 9, 10), (24, 16, 4, 4), dict(stride=2, padding=1), 2),
    ((2, 16, 9, 10), (24, 16, 3, 6), dict(padding=(1, 4)), 3),  # two runs per kernel row, w taps past the input
    ((2, 16, 5, 6, 7), (24, 16, 3, 3, 3), dict(padding=1), 3),
    ((2, 16, 33), (24, 16, 3), dict(padding=1), 3),
    ((2, 32, 9, 11), (32, 16, 3, 3), dict(padding=1, groups=2), 3),
    # elementwise layers (tconv.configs.elementwise_tap_run): a [BLOCK_M, BLOCK_K] accumulator per tap
    ((2, 16, 9, 11), (16, 1, 3, 3), dict(padding=1, groups=16), 3),
    ((2, 16, 8, 8), (16, 1, 3, 12), dict(padding=(1, 6), groups=16), 6),  # two runs a row
    ((2, 16, 33), (16, 1, 4), dict(padding=3, groups=16), 4),
    ((2, 16, 5, 6, 7), (16, 1, 3, 3, 3), dict(padding=1, groups=16), 3),
    ((2, 16, 9, 10), (16, 1, 5, 5), dict(padding=2, groups=16), 5),
    ((2, 16, 9, 12), (16, 1, 3, 7), dict(padding=(1, 3), dilation=(1, 2), groups=16), 7),  # taps past the input
    # gathered input tiles (descriptors/wgrad.py, GATHERED_TAP_COST): two columns a channel, two lanes a column, one
    # input channel for 32 outputs
    ((2, 8, 9, 11), (16, 1, 3, 4), dict(stride=2, padding=2, dilation=2, groups=8), 2),
    ((2, 8, 9, 11), (8, 2, 3, 4), dict(padding=(1, 2), groups=4), 2),
    ((2, 1, 5, 6, 7), (32, 1, 3, 3, 3), dict(padding=1), 1),
]


@pytest.mark.parametrize("input_shape,weight_shape,kwargs,run", TAP_RUN_LAYERS)
def test_wgrad_tap_runs_match_torch(input_shape, weight_shape, kwargs, run):
    """A weight-gradient program takes `run` taps along w (descriptors/wgrad.py, tap_run):
    each further tap's input tile is the first one's moved along w, masked where it reaches
    the padding; the weight and bias gradients match float64 torch. float16: dense runs are
    for 16-bit operands (descriptors/wgrad.py, most_taps)."""
    from tconv.configs import heuristic_config
    from tconv.descriptors.wgrad import tap_run

    dtype = torch.float16
    input = torch.randn(input_shape, dtype=dtype, requires_grad=True)
    weight = torch.randn(weight_shape, dtype=dtype, requires_grad=True)
    bias = torch.randn(weight_shape[0], dtype=dtype, requires_grad=True)
    spec = _layer_spec(input, weight, kwargs)
    assert tap_run(spec, heuristic_config("wgrad", spec, dtype, layout="contiguous")) == run
    _assert_weight_and_bias_grads(input, weight, bias, kwargs)


LANE_LAYERS = [  # (input shape, weight shape, torch kwargs, input storage, chunk at float16, at float32): NCHW
    # elementwise weight gradients (descriptors/wgrad.py, position_lanes)
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "dense", 8, 4),
    ((2, 32, 5, 12), (32, 1, 3, 3), dict(padding=1, groups=32), "dense", 4, 4),  # 12 wide: chunks of 4
    ((2, 32, 7, 32), (32, 1, 3, 3), dict(stride=2, padding=1, groups=32), "dense", 4, 2),  # spans of 8 (float32: 4)
    ((2, 32, 9, 32), (32, 1, 5, 5), dict(stride=2, padding=2, groups=32), "dense", 4, 2),  # a halo after the span too
    ((2, 32, 5, 16), (32, 1, 5, 5), dict(padding=2, groups=32), "dense", 8, 4),
    ((3, 32, 5, 8), (32, 1, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=32), "dense", 8, 4),  # a partial step
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "channel_slice", 8, 4),
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=32), "width_slice", 8, 4),  # rows 24 apart, from column 1
    ((1, 32, 3, 4, 8), (32, 1, 3, 3, 3), dict(padding=1, groups=32), "dense", 8, 4),
    ((2, 32, 40), (32, 1, 3), dict(padding=1, groups=32), "dense", 8, 4),
    ((2, 32, 40), (32, 1, 4), dict(padding=3, groups=32), "dense", 0, 0),  # causal: 43 outputs
    ((2, 32, 5, 14), (32, 1, 3, 3), dict(padding=1, groups=32), "dense", 2, 2),  # 14 wide: pairs
    ((2, 32, 5, 7), (32, 1, 3, 3), dict(padding=1, groups=32), "dense", 0, 0),  # 7 wide
    ((2, 32, 5, 16), (32, 1, 3, 3), dict(padding=2, dilation=2, groups=32), "dense", 0, 0),
    ((2, 16, 5, 16), (32, 1, 3, 3), dict(padding=1, groups=16), "dense", 0, 0),  # a channel multiplier: one tap a run
    ((2, 16, 5, 16), (16, 4, 1, 1), dict(groups=4), "dense", 0, 0),  # one tap wide: its positions load as vectors anyway
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("input_shape,weight_shape,kwargs,storage,half_chunk,float_chunk", LANE_LAYERS,
                         ids=lambda value: str(value).replace(" ", ""))
def test_wgrad_position_lanes_match_torch(input_shape, weight_shape, kwargs, storage, half_chunk, float_chunk, dtype,
                                          monkeypatch):
    """Elementwise weight gradients of channels-first activations load positions along w, a
    chunk of them a thread (the kernel's LANES), each tap's products taken from the chunk's
    input window shifted by the tap: the chunk the launch takes is the expected one, and the
    weight and bias gradients match float64 torch, dense and from views (a channel slice; a
    slice of wider lines starting at column 1, whose rows stay aligned but not the first)."""
    chunks, original_go = [], _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        if getattr(function, "function", function).__name__ == "conv_wgrad_kernel":
            chunks.append(meta["LANES"])
        return original_go(function, grid, template, slots, meta, tensors, device)

    _launch._passes.clear()
    _launch._chosen.clear()
    monkeypatch.setattr(_launch, "_go", record)
    batch, channels, *size = input_shape
    if storage == "channel_slice":
        input = torch.randn(batch, channels + 8, *size, dtype=dtype)[:, 4:channels + 4]
    elif storage == "width_slice":
        input = torch.randn(batch, channels, *size[:-1], 24, dtype=dtype)[..., 1:size[-1] + 1]
    else:
        input = torch.randn(input_shape, dtype=dtype)
    input.requires_grad_()
    weight = torch.randn(weight_shape, dtype=dtype, requires_grad=True)
    bias = torch.randn(weight_shape[0], dtype=dtype, requires_grad=True)
    _assert_weight_and_bias_grads(input, weight, bias, kwargs)
    _launch._passes.clear()
    _launch._chosen.clear()
    assert chunks == [half_chunk if dtype == torch.float16 else float_chunk]


LINE_STEP_LAYERS = [  # (input shape, weight shape, torch kwargs): weight gradients whose K steps are whole lines
    ((2, 16, 8, 8), (24, 16, 3, 3), dict(padding=1)),  # an 8x8 plane a step
    ((2, 16, 16, 16), (24, 16, 3, 3), dict(stride=2, padding=1)),  # taps in the padding before the input only
    ((2, 16, 16, 8), (24, 16, 3, 5), dict(padding=(2, 4), dilation=2)),  # 16x8 planes, several steps each
    ((2, 16, 8, 8, 8), (24, 16, 3, 3, 3), dict(padding=1)),  # whole planes whose d tap is padding
    ((2, 16, 8, 9), (24, 16, 3, 2), dict(padding=(1, 0))),  # nothing to check along w
    ((2, 32, 8, 8), (32, 16, 3, 3), dict(padding=1, groups=2)),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("input_shape,weight_shape,kwargs", LINE_STEP_LAYERS)
def test_wgrad_line_steps_match_torch(input_shape, weight_shape, kwargs, dtype):
    """Output planes that K steps cover in whole lines (descriptors/wgrad.py, line_steps):
    each position's line, column, w check and offset within its step are computed once per
    tile and every step adds its plane's and first line's offset; weight and bias gradients
    match float64 torch, channels-last operands (the flat grad_output the mode needs)."""
    from tconv.configs import heuristic_config
    from tconv.descriptors.wgrad import line_steps

    dims = len(input_shape) - 2
    memory_format = torch.channels_last if dims == 2 else torch.channels_last_3d
    input = torch.randn(input_shape, dtype=dtype).to(memory_format=memory_format).requires_grad_()
    weight = torch.randn(weight_shape, dtype=dtype, requires_grad=True)
    bias = torch.randn(weight_shape[0], dtype=dtype, requires_grad=True)
    spec = _layer_spec(input, weight, kwargs)
    out_size = (1,) * (3 - dims) + tuple(spec.out_size)
    config = heuristic_config("wgrad", spec, dtype)
    assert out_size[2] % config.block_k != 0 and line_steps(spec, config, out_size, False, True), config
    _assert_weight_and_bias_grads(input, weight, bias, kwargs)


BATCH_STEP_LAYERS = [  # (input shape, weight shape, convolution's arguments, channels-last): batch 32
    ((32, 16, 5, 6), (24, 16, 3, 3), dict(padding=1), True),  # taps in the padding on every side, runs of 3
    ((32, 16, 7, 7), (24, 16, 4, 4), dict(stride=2, padding=1), False),  # runs of 2, strided
    ((32, 16, 6, 5), (24, 16, 3, 5), dict(padding=(2, 4), dilation=2), True),  # one tap a program
    ((32, 16, 3, 4, 5), (24, 16, 3, 3, 3), dict(padding=1), True),  # planes whose d tap is padding
    ((32, 16, 20), (24, 16, 3), dict(padding=1), False),
    ((32, 32, 5, 5), (32, 16, 3, 3), dict(padding=1, groups=2), True),
    ((32, 16, 5, 6), (24, 16, 3, 3), dict(padding=1, padding_mode="reflect"), True),
    ((32, 16, 4, 6), (24, 16, 3, 3), dict(stride=2, padding=1, padding_mode="circular"), False),
    ((32, 3, 9, 9), (16, 3, 3, 3), dict(stride=2, padding=1), True),  # thin: (tap, channel) columns
    ((32, 3, 8, 8), (16, 3, 4, 4), dict(stride=4), True),  # a patch embedding's dense runs
    ((32, 2, 20), (16, 2, 7), dict(padding=3), False),
    ((32, 8, 6, 6), (64, 2, 3, 3), dict(padding=1, groups=4), True),  # thin groups
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("input_shape,weight_shape,kwargs,channels_last", BATCH_STEP_LAYERS)
def test_wgrad_batch_steps_match_torch(input_shape, weight_shape, kwargs, channels_last, dtype):
    """Weight gradients whose K steps are BLOCK_K images at one output position (descriptors/
    wgrad.py, batch_steps: positions image-fastest, so a step's coordinates and padding checks
    are scalars; thin layers' columns: a vector over the columns), at a 64-wide tile (two
    positions a thread, as the mode asks for dense layers): weight and
    bias gradients match float64 torch in every padding mode, with channels-last operands
    and gathered channels-first ones, in one split and in two."""
    from tconv.configs import descriptor_of, heuristic_config
    from tconv.descriptors.base import make_operands
    from tconv.descriptors.wgrad import batch_steps

    dims = len(input_shape) - 2
    mode = kwargs.get("padding_mode", "zeros")
    stride, padding, dilation, groups = (kwargs.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1),
                                                                        ("groups", 1)))
    input = torch.empty(input_shape, dtype=dtype)
    spec = dataclasses.replace(_layer_spec(input, torch.empty(weight_shape, dtype=dtype), kwargs), padding_mode=mode)
    layout = "channels_last" if channels_last else "contiguous"
    config = dataclasses.replace(heuristic_config("wgrad", spec, dtype, layout=layout), block_n=64, num_warps=4)
    assert all(batch_steps(spec, config, input_shape[0], input.element_size(), False, False, runs)
               for runs in (False, True)), config  # (whether packed columns load as dense runs)
    descriptor = descriptor_of("wgrad")
    for splits in (1, 2):
        operands = make_operands(descriptor, spec, dtype, layout, torch.device("cpu"))
        split = dataclasses.replace(config, split_k=splits)
        assert descriptor.split(spec, split)[0] == splits
        result = _launch.run(descriptor, spec, split, {**operands, "bias_grad": True})
        first, second = (operands[name].double() for name in ("input", "grad_output"))
        if mode != "zeros":  # torch's modules pad first, then convolve unpadded
            first, padding = F.pad(first, [p for p in reversed(spec.pad_before) for _ in range(2)], mode=mode), 0
        expected = getattr(torch.nn.grad, f"conv{dims}d_weight")(first, weight_shape, second, stride, padding,
                                                                dilation, groups)
        assert_close(result["grad_weight"], expected, dtype, f"grad_weight ({splits} splits)")
        assert_close(result["grad_bias"], second.sum([0, *range(2, dims + 2)]), dtype, f"grad_bias ({splits} splits)")
