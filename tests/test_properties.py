"""Property-based tests: random valid argument combinations against torch."""

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tconv
from tconv.testing import assert_close

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64])


@st.composite
def conv_problems(draw, transposed: bool):
    dims = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    in_channels = groups * draw(st.integers(1, 5))
    out_channels = groups * draw(st.integers(1, 5))
    per_dim = st.integers(1, 3 if dims == 3 else 4)
    kernel = tuple(draw(per_dim) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    max_size = {1: 24, 2: 10, 3: 6}[dims]
    if transposed:
        padding = tuple(draw(st.integers(0, 2)) for _ in range(dims))
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        in_size = tuple(draw(st.integers(1, max_size // 2)) for _ in range(dims))
        out = [(i - 1) * s - 2 * p + d * (k - 1) + o + 1
               for i, s, p, d, k, o in zip(in_size, stride, padding, dilation, kernel, output_padding)]
        if min(out) < 1:
            padding = (0,) * dims
        kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
        weight_shape = (in_channels, out_channels // groups, *kernel)
    else:
        padding = draw(st.one_of(st.just("same"), st.just("valid"), st.tuples(*[st.integers(0, 3)] * dims)))
        if padding == "same":
            stride = (1,) * dims
        pad = (0,) * dims if isinstance(padding, str) else padding
        low = [d * (k - 1) + 1 - 2 * p for d, k, p in zip(dilation, kernel, pad)]
        in_size = tuple(draw(st.integers(max(1, lo), max(1, lo) + max_size)) for lo in low)
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        weight_shape = (out_channels, in_channels // groups, *kernel)
    batch = draw(st.integers(1, 2))
    return dims, (batch, in_channels, *in_size), weight_shape, draw(st.booleans()), kwargs


@SETTINGS
@given(problem=conv_problems(transposed=False), dtype=DTYPES)
def test_conv_random_arguments(problem, dtype):
    dims, input_shape, weight_shape, with_bias, kwargs = problem
    input = torch.randn(input_shape).to(dtype)
    weight = torch.randn(weight_shape).to(dtype)
    bias = torch.randn(weight_shape[0]).to(dtype) if with_bias else None
    actual = getattr(tconv, f"conv{dims}d")(input, weight, bias, **kwargs)
    reference = getattr(F, f"conv{dims}d")(input.double(), weight.double(), None if bias is None else bias.double(), **kwargs)
    assert_close(actual, reference, dtype)


@SETTINGS
@given(problem=conv_problems(transposed=True), dtype=DTYPES)
def test_conv_transpose_random_arguments(problem, dtype):
    dims, input_shape, weight_shape, with_bias, kwargs = problem
    input = torch.randn(input_shape).to(dtype)
    weight = torch.randn(weight_shape).to(dtype)
    bias = torch.randn(weight_shape[1] * kwargs["groups"]).to(dtype) if with_bias else None
    actual = getattr(tconv, f"conv_transpose{dims}d")(input, weight, bias, **kwargs)
    reference = getattr(F, f"conv_transpose{dims}d")(
        input.double(), weight.double(), None if bias is None else bias.double(), **kwargs
    )
    assert_close(actual, reference, dtype)


@SETTINGS
@given(
    dims=st.integers(1, 3),
    mode=st.sampled_from(["reflect", "replicate", "circular", "zeros"]),
    data=st.data(),
)
def test_module_padding_mode_random(dims, mode, data):
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(dims))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(dims))
    size = tuple(data.draw(st.integers(3, 7)) for _ in range(dims))
    padding = data.draw(
        st.one_of(st.just("same"), st.tuples(*[st.integers(0, min(size) - 1)] * dims))
    )
    stride = 1 if padding == "same" else tuple(data.draw(st.integers(1, 2)) for _ in range(dims))
    pads = [d * (k - 1) for d, k in zip(dilation, kernel)] if padding == "same" else [2 * p for p in padding]
    # A kernel larger than the padded input is covered by the error tests; reflect padding
    # must stay below the input size (torch's rule).
    assume(all(s + p >= d * (k - 1) + 1 for s, p, d, k in zip(size, pads, dilation, kernel)))
    assume(not (padding == "same" and mode == "reflect" and any(p - p // 2 >= s for p, s in zip(pads, size))))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=mode)
    torch_type = getattr(torch.nn, f"Conv{dims}d")
    reference = torch_type(3, 2, kernel, dtype=torch.float64, **kwargs)
    ours = getattr(tconv.nn, f"Conv{dims}d")(3, 2, kernel, **kwargs)
    ours.load_state_dict(reference.state_dict())
    input = torch.randn(2, 3, *size)
    assert_close(ours(input), reference(input.double()), torch.float32)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=st.one_of(conv_problems(transposed=False).map(lambda p: (False, p)),
                         conv_problems(transposed=True).map(lambda p: (True, p))))
def test_gradients_random_arguments(problem):
    transposed, (dims, input_shape, weight_shape, with_bias, kwargs) = problem
    name = f"conv_transpose{dims}d" if transposed else f"conv{dims}d"
    out_channels = weight_shape[1] * kwargs["groups"] if transposed else weight_shape[0]
    leaves = [torch.randn(input_shape), torch.randn(weight_shape)] + ([torch.randn(out_channels)] if with_bias else [])
    leaves = [t.requires_grad_() for t in leaves]
    output = getattr(tconv, name)(*leaves, **kwargs)
    grad_output = torch.randn_like(output)
    ours = torch.autograd.grad(output, leaves, grad_output)
    reference_leaves = [t.detach().double().requires_grad_() for t in leaves]
    reference = getattr(F, name)(*reference_leaves, **kwargs)
    theirs = torch.autograd.grad(reference, reference_leaves, grad_output.double())
    for mine, expected in zip(ours, theirs):
        assert_close(mine, expected, torch.float32, "gradient")
