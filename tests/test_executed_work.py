"""The work model against the kernels: tconv.plan.executed_macs (what the work-ratio
tests bound) must equal the multiply-adds the kernels really issue.

Every tl.dot the interpreter runs is counted (M x N x K of its operand tiles) while one
op runs on CPU tensors; the count must equal executed_macs for the kernel and spec that
tconv.spec.pass_specs names for that pass, with the heuristic config a CPU launch uses.
The op's result is checked against torch in float64 as well, so a launch that skipped
work would fail twice. Elementwise passes (depthwise, small output groups) must execute no tl.dot.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from triton.runtime import interpreter

import tconv
from tconv.configs import heuristic_config
from tconv.plan import executed_macs
from tconv.spec import conv_spec, conv_transpose_spec, pass_specs
from tconv.testing import assert_close

DTYPE = torch.float32


@pytest.fixture
def dot_macs(monkeypatch):
    """A list whose sum is the multiply-adds of every interpreted tl.dot since it was last
    cleared (the interpreter's builder executes tl.dot as create_dot(a, b, acc, ...))."""
    counted = []
    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, *args, **kwargs):
        a_shape, b_shape = np.shape(a.data), np.shape(b.data)
        assert a_shape[-1] == b_shape[-2], (a_shape, b_shape)
        counted.append(math.prod(a_shape[:-1]) * a_shape[-1] * b_shape[-1])
        return original(self, a, b, d, *args, **kwargs)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)
    return counted


def _layer_spec(transposed, input, weight, **kwargs):
    dims = input.dim() - 2
    meta = torch.empty(input.shape, device="meta"), torch.empty(weight.shape, device="meta")
    if transposed:
        args = (kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("output_padding", 0), kwargs.get("groups", 1),
                kwargs.get("dilation", 1))
        return conv_transpose_spec(f"conv_transpose{dims}d", dims, *meta, None, *args)[0]
    args = (kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("dilation", 1), kwargs.get("groups", 1))
    return conv_spec(f"conv{dims}d", dims, *meta, None, *args)[0]


def _modelled(pass_name, layer):
    """(kernel name, modelled multiply-adds) of one pass of a layer."""
    kernel, spec = pass_specs(layer)[pass_name]
    config = heuristic_config(kernel, spec, DTYPE, layout="contiguous")  # the layout of the tensors these tests launch
    # elementwise passes (fewer than 16 output channels per group, e.g. a 3-channel
    # stem's input gradient) must execute no tl.dot at all
    return getattr(kernel, "name", kernel), 0 if spec.elementwise_lanes else executed_macs(kernel, spec, config)


# (name, transposed, input shape, weight shape, kwargs): dense layers, tiles partly filled.
FORWARD_LAYERS = [
    ("conv2d 3x3 pad1", False, (2, 24, 9, 10), (40, 24, 3, 3), dict(padding=1)),
    ("conv2d 1x1 stride2", False, (2, 36, 11, 12), (20, 36, 1, 1), dict(stride=2)),
    ("conv_transpose2d k4 s2 p1", True, (2, 32, 6, 7), (32, 24, 4, 4), dict(stride=2, padding=1)),
    ("conv3d 3x3x3 pad1", False, (2, 16, 6, 7, 6), (24, 16, 3, 3, 3), dict(padding=1)),
    ("conv2d 3x3 groups2", False, (2, 32, 8, 8), (24, 16, 3, 3), dict(padding=1, groups=2)),
    ("conv2d RGB 7x7 stride2 packed taps", False, (2, 3, 13, 12), (20, 3, 7, 7), dict(stride=2, padding=3)),
    ("conv3d 4 per group packed taps", False, (1, 8, 5, 4, 6), (32, 4, 3, 3, 3), dict(padding=1, groups=2)),
]


@pytest.mark.parametrize("name,transposed,input_shape,weight_shape,kwargs", FORWARD_LAYERS, ids=[c[0] for c in FORWARD_LAYERS])
def test_forward_executes_modelled_macs(dot_macs, name, transposed, input_shape, weight_shape, kwargs):
    dims = len(input_shape) - 2
    function = f"conv_transpose{dims}d" if transposed else f"conv{dims}d"
    input, weight = torch.randn(input_shape, dtype=DTYPE), torch.randn(weight_shape, dtype=DTYPE)
    bias = torch.randn(weight_shape[1] * kwargs.get("groups", 1) if transposed else weight_shape[0], dtype=DTYPE)
    kernel, expected = _modelled("fprop", _layer_spec(transposed, input, weight, **kwargs))
    assert kernel == ("dgrad" if transposed else "fprop")

    output = getattr(tconv, function)(input, weight, bias, **kwargs)

    reference = getattr(F, function)(input.double(), weight.double(), bias.double(), **kwargs)
    assert_close(output, reference, DTYPE)
    assert sum(dot_macs) == expected, f"{kernel}: {len(dot_macs)} tl.dot calls, {sum(dot_macs)} MACs, modelled {expected}"


# (name, transposed, input shape, weight shape, kwargs) of layers whose backward passes are
# counted; the first one's weight gradient is split in 3 (the last split partly filled).
BACKWARD_LAYERS = [
    ("conv2d 3x3 pad1", False, (2, 24, 15, 13), (40, 24, 3, 3), dict(padding=1)),
    ("conv2d 3x3 stride2 pad1", False, (2, 20, 11, 9), (36, 20, 3, 3), dict(stride=2, padding=1)),
    ("conv_transpose2d k4 s2 p1", True, (2, 24, 5, 6), (24, 20, 4, 4), dict(stride=2, padding=1)),
    ("conv2d RGB 3x3 stride2 packed taps", False, (2, 3, 13, 11), (24, 3, 3, 3), dict(stride=2, padding=1)),
]


def _backward(dot_macs, pass_name, transposed, input_shape, weight_shape, kwargs):
    """Count the tl.dot work of one backward pass (only its operand requires a gradient,
    so backward runs that pass's kernel alone) and check its gradient against torch."""
    dims = len(input_shape) - 2
    function = f"conv_transpose{dims}d" if transposed else f"conv{dims}d"
    input, weight = torch.randn(input_shape, dtype=DTYPE), torch.randn(weight_shape, dtype=DTYPE)
    kernel, expected = _modelled(pass_name, _layer_spec(transposed, input, weight, **kwargs))
    leaf = weight if pass_name == "wgrad" else input
    leaf.requires_grad_()
    output = getattr(tconv, function)(input, weight, **kwargs)
    grad_output = torch.randn_like(output)
    dot_macs.clear()  # the forward's tl.dot calls

    (grad,) = torch.autograd.grad(output, leaf, grad_output)

    input64, weight64 = input.detach().double(), weight.detach().double()
    leaf64 = (weight64 if pass_name == "wgrad" else input64).requires_grad_()
    (reference,) = torch.autograd.grad(getattr(F, function)(input64, weight64, **kwargs), leaf64, grad_output.double())
    assert_close(grad, reference, DTYPE, f"{pass_name} gradient")
    assert sum(dot_macs) == expected, f"{kernel}: {len(dot_macs)} tl.dot calls, {sum(dot_macs)} MACs, modelled {expected}"
    return kernel


@pytest.mark.parametrize("name,transposed,input_shape,weight_shape,kwargs", BACKWARD_LAYERS, ids=[c[0] for c in BACKWARD_LAYERS])
def test_weight_gradient_executes_modelled_macs(dot_macs, name, transposed, input_shape, weight_shape, kwargs):
    assert _backward(dot_macs, "wgrad", transposed, input_shape, weight_shape, kwargs) == "wgrad"


@pytest.mark.parametrize("name,transposed,input_shape,weight_shape,kwargs", BACKWARD_LAYERS, ids=[c[0] for c in BACKWARD_LAYERS])
def test_input_gradient_executes_modelled_macs(dot_macs, name, transposed, input_shape, weight_shape, kwargs):
    kernel = _backward(dot_macs, "dgrad", transposed, input_shape, weight_shape, kwargs)
    assert kernel == ("fprop" if transposed else "dgrad")


def test_weight_gradient_split_k_executes_modelled_macs(dot_macs):
    """Split-K with a partial last split (a forced config: the heuristic may not split
    small layers) issues exactly the modelled multiply-adds and the right gradient."""
    from tconv import _launch
    from tconv.configs import KernelConfig
    from tconv.plan import wgrad_split

    input, weight = torch.randn(2, 16, 9, 10, dtype=DTYPE), torch.randn(24, 16, 3, 3, dtype=DTYPE)
    spec = _layer_spec(False, input, weight, padding=1)
    config = KernelConfig(32, 16, 32, split_k=3)
    splits, rows_per_split = wgrad_split(spec, config)
    rows = spec.batch * math.prod(spec.out_size)
    assert splits == 3 and splits * rows_per_split > rows, (splits, rows_per_split, rows)
    grad_output = torch.randn(2, 24, 9, 10, dtype=DTYPE)
    grad_weight, _ = _launch.conv_wgrad(input, grad_output, spec, False, config)
    assert sum(dot_macs) == executed_macs("wgrad", spec, config)
    reference = input.double(), weight.double().requires_grad_()
    (expected,) = torch.autograd.grad(F.conv2d(*reference, padding=1), reference[1], grad_output.double())
    assert_close(grad_weight, expected, DTYPE)


def test_counter_sees_the_kernels_dots(dot_macs):
    """The instrument itself: a single-tile problem issues exactly the tiles it should
    (guards against counting nothing, e.g. if the interpreter stopped using create_dot)."""
    input, weight = torch.randn(1, 16, 4, 4, dtype=DTYPE), torch.randn(16, 16, 1, 1, dtype=DTYPE)
    layer = _layer_spec(False, input, weight)
    config = heuristic_config("fprop", layer, DTYPE, layout="contiguous")
    output = tconv.conv2d(input, weight)
    assert_close(output, F.conv2d(input.double(), weight.double()), DTYPE)
    # 16 rows, 16 output channels, 16 input channels: one program, one K step of one tile.
    assert len(dot_macs) == 1
    assert sum(dot_macs) == config.block_m * config.block_n * config.block_k
