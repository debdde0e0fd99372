"""The layout decision: dense passes read channels-first operands through a channels-last
copy where the roofline says it pays (tconv.configs.copies_pay, tconv/descriptors/layout.py)
and gather them in place elsewhere; outputs keep torch's memory format either way."""

import math

import pytest
import torch
import torch.nn.functional as F
import triton
from tconv.perf.suites import Layer, layer_spec

import tconv
from tconv import _launch, configs
from tconv.configs import KernelConfig
from tconv.descriptors import COPIES, KERNELS
from tconv.descriptors import layout as layout_module
from tconv.descriptors.base import in_layout, make_operands
from tconv.spec import pass_specs
from tconv.testing import CONV_CASES, CONV_TRANSPOSE_CASES, assert_close

CL = {4: torch.channels_last, 5: torch.channels_last_3d}


def _forget() -> None:
    configs.heuristic_config.cache_clear()
    _launch._chosen.clear()
    _launch._passes.clear()


@pytest.fixture(params=[True, False], ids=["copied", "gathered"])
def copies(request, monkeypatch):
    """Both sides of the layout decision on the test's small (memory-bound) problems."""
    decide = lambda *args, **kwargs: request.param  # noqa: E731
    monkeypatch.setattr(configs, "copies_pay", decide)
    monkeypatch.setattr(layout_module, "copies_pay", decide)
    # elementwise: the activations of forwards and input gradients (weight gradients gather)
    decide_elementwise = lambda kernel, *args, **kwargs: request.param and kernel in ("fprop", "dgrad")  # noqa: E731
    monkeypatch.setattr(configs, "elementwise_copy_pays", decide_elementwise)
    monkeypatch.setattr(layout_module, "elementwise_copy_pays", decide_elementwise)
    _forget()
    yield request.param
    _forget()


def test_the_decision_follows_the_roofline():
    """Compute-bound passes copy on every family; depthwise ones never copy. A memory-bound
    pass copies where its gathered loop (GATHERED_SHARE) would cost more than the copies'
    bytes. On sm_90, whose gathered share was measured, ResNet-50's 256->128 1x1 layer copies
    in every pass (on an H100 its input and weight gradients gathered at 289 and 622 us,
    against 87 and 73 us given channels-last operands); its 64->64 1x1 forward, whose copy
    would move as many bytes as the pass, and the 3-channel stem's forward (its channels-last
    loop gathers too) gather, their weight gradients copy. sm_80's share is an unmeasured
    upper bound: there they all gather."""
    large = pass_specs(layer_spec(Layer("3x3", 64, 256, (14, 14), 256, (3, 3), 1, 1)))
    small = pass_specs(layer_spec(Layer("1x1", 64, 64, (56, 56), 64, (1, 1), 1, 0)))
    wide = pass_specs(layer_spec(Layer("1x1", 64, 256, (56, 56), 128, (1, 1), 1, 0)))
    stem = pass_specs(layer_spec(Layer("stem", 64, 3, (224, 224), 64, (7, 7), 2, 3)))
    depthwise = pass_specs(layer_spec(Layer("dw", 64, 256, (56, 56), 256, (3, 3), 1, 1, 1, 256)))
    for family in ("sm_90", "sm_80", "fallback"):
        measured = family == "sm_90"
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            for pass_name in ("fprop", "dgrad", "wgrad"):
                assert configs.copies_pay(*large[pass_name], dtype, family)
                assert not configs.copies_pay(*depthwise[pass_name], dtype, family)
                assert configs.copies_pay(*wide[pass_name], dtype, family) == measured
            assert not configs.copies_pay(*small["fprop"], dtype, family)
            assert configs.copies_pay(*small["wgrad"], dtype, family) == measured
            assert not configs.copies_pay(*stem["fprop"], dtype, family)
            assert configs.copies_pay(*stem["wgrad"], dtype, family) == measured


def test_elementwise_decision_follows_the_issue_model():
    """A channels-first depthwise 5x5 on 7x7 outputs copies its activations in the forward and
    input gradient on every family (no run of lanes divides 7: its gathered loop issues about
    twice the channels-last loop's instructions, more than the copy's bytes cost). A 3x3 at
    stride 1 on 56x56 reads them in place in runs of lanes (descriptors/base.py span_run: its
    loop about the channels-last one's, with no copy to pay: float32 too); its weight gradient
    (two operands to copy) and a stride-2 forward (input 4x the output) gather, and so do
    loops of several lanes (small groups), short 1-d depthwise filters, memory-bound either
    way, and small passes, for which the copy's launch costs more than the loop saves."""
    def pays(layer, pass_name, family, dtype=torch.float16):
        return configs.elementwise_copy_pays(*pass_specs(layer_spec(layer))[pass_name], dtype, family)

    seven = Layer("dw1152@7 k5", 64, 1152, (7, 7), 1152, (5, 5), 1, 2, 1, 1152)
    depthwise = Layer("dw", 64, 144, (56, 56), 144, (3, 3), 1, 1, 1, 144)
    strided = Layer("dw s2", 64, 144, (56, 56), 144, (3, 3), 2, 1, 1, 144)
    grouped = Layer("4 per group", 64, 128, (56, 56), 128, (3, 3), 1, 1, 1, 32)
    causal = Layer("mamba k4", 8, 1536, (2048,), 1536, (4,), 1, 3, 1, 1536)
    for family in ("sm_90", "sm_80", "fallback"):
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            assert pays(seven, "fprop", family, dtype) and pays(seven, "dgrad", family, dtype)
            assert not pays(depthwise, "fprop", family, dtype) and not pays(depthwise, "dgrad", family, dtype)
            assert not pays(depthwise, "wgrad", family, dtype)
        assert not pays(strided, "fprop", family) and not pays(grouped, "fprop", family)
        assert not pays(causal, "fprop", family) and not pays(causal, "dgrad", family)
        assert not pays(Layer("dw960@7", 64, 960, (7, 7), 960, (3, 3), 1, 1, 1, 960), "fprop", family)
    spec = pass_specs(layer_spec(depthwise))["fprop"][1]
    input = torch.empty(spec.batch, spec.in_channels, *spec.in_size, dtype=torch.float16, device="meta")
    config = configs.heuristic_config("fprop", spec, torch.float16, "sm_90", "contiguous")
    assert KERNELS["fprop"].span_run(spec, config, input) == 8  # (why it stays in place)


def _launched(monkeypatch) -> list[str]:
    names = []
    original = _launch.launch

    def record(kernel, spec, config, tensors):
        names.append(kernel.name)
        return original(kernel, spec, config, tensors)

    _launch._passes.clear()  # memoised passes launch without `launch`
    monkeypatch.setattr(_launch, "launch", record)
    return names


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "weight_only", "depthwise"])
def test_each_pass_copies_exactly_its_channels_first_operands(layout, copies, monkeypatch):
    channels = 6 if layout == "depthwise" else 16  # dense passes: 16 a side, so no pass is small-output
    groups = 6 if layout == "depthwise" else 1
    input = torch.randn(2, channels, 7, 7, dtype=torch.float64)
    weight = torch.randn(channels, channels // groups, 3, 3, dtype=torch.float64)
    if layout in ("channels_last", "weight_only"):
        input = input.to(memory_format=torch.channels_last)
    if layout == "channels_last":
        weight = weight.to(memory_format=torch.channels_last)
    input.requires_grad_(), weight.requires_grad_()
    names = _launched(monkeypatch)
    output = tconv.conv2d(input, weight, padding=1, groups=groups)
    torch.autograd.grad(output, (input, weight), torch.randn_like(output))
    expected = {
        "contiguous": ["fprop_input_copy", "fprop_weight_copy", "fprop", "dgrad_input_copy", "dgrad_weight_copy", "dgrad",
                       "wgrad_input_copy", "wgrad_grad_output_copy", "wgrad", "wgrad_reduce"],
        # torch gives a channels_last output (and grad_output) when the input is channels_last
        "weight_only": ["fprop_weight_copy", "fprop", "dgrad_weight_copy", "dgrad", "wgrad", "wgrad_reduce"],
        "channels_last": ["fprop", "dgrad", "wgrad", "wgrad_reduce"],
        "depthwise": ["fprop_input_copy", "fprop", "dgrad_input_copy", "dgrad", "wgrad", "wgrad_reduce"],
    }[layout]
    if not copies:
        expected = [name for name in expected if not name.endswith("_copy")]
    assert sorted(names) == sorted(expected)  # autograd may run the two gradients in either order
    for name in names:
        if name.endswith("_copy"):
            kernel = name.split("_")[0]
            assert names.index(name) < names.index(kernel)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("view", ["dense", "spatial_slice", "channel_slice", "permuted_spatial", "expanded", "in_units"])
def test_copy_kernel_is_an_exact_channels_last_copy(view, dtype, monkeypatch):
    """Every element copied bit for bit, from any strides (flat positions or not); 24
    channels over 6 x 10 positions pass their counts and strides in units (8 or 4 channels,
    4 positions)."""
    source = torch.randn(3, 20, 9, 13).to(dtype)
    source = {"dense": source, "spatial_slice": source[:, :, 1::2, :11], "channel_slice": source[:, 3:17],
              "permuted_spatial": source.transpose(2, 3), "expanded": source[:1].expand(3, -1, -1, -1),
              "in_units": torch.randn(3, 24, 6, 10).to(dtype)}[view]
    metas = []
    original = _launch._go
    monkeypatch.setattr(_launch, "_go", lambda function, grid, template, slots, meta, *rest: (
        metas.append(meta), original(function, grid, template, slots, meta, *rest)))
    copy = next(c for c in COPIES if c.name == "fprop_input_copy")
    layer = Layer("copy", source.shape[0], source.shape[1], tuple(source.shape[2:]), 8, (3, 3), 1, 1)
    spec = pass_specs(layer_spec(layer))["fprop"][1]
    tensors = _launch.run(copy, spec, KernelConfig(16, 16, 16), {"input": source})
    target = tensors[copy.target]
    assert target.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(target, source)
    if view == "in_units":
        assert [(meta["POSITION_UNIT"], meta["CHANNEL_UNIT"]) for meta in metas] == [(4, 16 // source.element_size())]


CASES = {
    "conv1d_ncl": (tconv.conv1d, F.conv1d, (3, 18, 29), (10, 18, 5), dict(stride=2, padding=2)),
    "conv2d_spatial_slice": (tconv.conv2d, F.conv2d, (2, 24, 15, 17), (16, 24, 3, 3), dict(padding=1)),
    "conv2d_grouped": (tconv.conv2d, F.conv2d, (2, 24, 12, 12), (18, 8, 3, 3), dict(padding=1, groups=3)),
    "conv3d_ncdhw": (tconv.conv3d, F.conv3d, (1, 16, 5, 6, 7), (8, 16, 3, 3, 3), dict(padding=1, stride=(1, 2, 1))),
    "conv_transpose2d": (tconv.conv_transpose2d, F.conv_transpose2d, (2, 20, 7, 8), (20, 12, 4, 4),
                         dict(stride=2, padding=1)),
    "depthwise2d": (tconv.conv2d, F.conv2d, (2, 12, 9, 8), (12, 1, 3, 3), dict(padding=1, groups=12)),
    "depthwise3d_dilated": (tconv.conv3d, F.conv3d, (1, 8, 5, 6, 7), (8, 1, 3, 3, 3), dict(padding=2, dilation=2, groups=8)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_channels_first_operands_copied_or_gathered(name, dtype, copies):
    """Forward and both gradients of channels-first (and non-flat) operands against torch in
    float64, through the copies and gathered in place, and the output in torch's memory format."""
    ours, theirs, input_shape, weight_shape, kwargs = CASES[name]
    input = torch.randn(input_shape, dtype=torch.float64)
    if name == "conv2d_spatial_slice":
        input = torch.randn(2, 24, 16, 19, dtype=torch.float64)[:, :, 1:, 2:]  # positions do not flatten
    weight = torch.randn(weight_shape, dtype=torch.float64)
    input_ours, weight_ours = (t.to(dtype).requires_grad_() for t in (input, weight))
    input, weight = input.requires_grad_(), weight.requires_grad_()
    actual, expected = ours(input_ours, weight_ours, **kwargs), theirs(input, weight, **kwargs)
    assert_close(actual, expected, dtype)
    assert actual.is_contiguous() == expected.is_contiguous()
    if actual.dim() in CL:
        assert actual.is_contiguous(memory_format=CL[actual.dim()]) == expected.is_contiguous(memory_format=CL[actual.dim()])
    grad = torch.randn_like(expected)
    for got, want, what in zip(torch.autograd.grad(actual, (input_ours, weight_ours), grad.to(dtype)),
                               torch.autograd.grad(expected, (input, weight), grad), ("grad_input", "grad_weight")):
        assert_close(got, want, dtype, what)


def _memory_format(tensor: torch.Tensor) -> str:
    if tensor.dim() in CL and tensor.is_contiguous(memory_format=CL[tensor.dim()]) and not tensor.is_contiguous():
        return "channels_last"
    return "contiguous" if tensor.is_contiguous() else "strided"


MIXED_CASES = {  # widths of 16: NCHW operands take runs in lanes (depthwise) or store along w (dense)
    "depthwise1d": (tconv.conv1d, F.conv1d, (2, 16, 32), (16, 1, 3), dict(padding=1, groups=16)),
    "depthwise2d": (tconv.conv2d, F.conv2d, (2, 16, 5, 16), (16, 1, 3, 3), dict(padding=1, groups=16)),
    "dense2d": (tconv.conv2d, F.conv2d, (2, 16, 5, 16), (8, 16, 3, 3), dict(padding=1)),
    "dense3d": (tconv.conv3d, F.conv3d, (1, 8, 3, 4, 8), (8, 8, 3, 3, 3), dict(padding=1, stride=(1, 1, 2))),
    "conv_transpose2d": (tconv.conv_transpose2d, F.conv_transpose2d, (2, 16, 5, 8), (16, 8, 4, 4),
                         dict(stride=2, padding=1)),
}


@pytest.mark.parametrize("layouts", ["nchw_input_cl_grad", "cl_input_nchw_grad", "cl_weight_nchw_grad",
                                     "cl_input_expanded_grad"])
@pytest.mark.parametrize("name", list(MIXED_CASES))
def test_gradients_in_torchs_memory_format(name, layouts, copies):
    """Operands in different layouts (channels innermost in a 1-d one): the output, input
    gradient and weight gradient in torch's memory formats (channels_last wherever input
    or weight is: grad_output is read in that format), and against float64 torch, forward
    and both gradients; an expanded grad_output (a sum's) included."""
    ours, theirs, input_shape, weight_shape, kwargs = MIXED_CASES[name]
    input = torch.randn(input_shape, dtype=torch.float64)
    weight = torch.randn(weight_shape, dtype=torch.float64)
    if layouts.startswith("cl_input"):
        input = _channels_innermost(input)
    if layouts.startswith("cl_weight"):
        weight = _channels_innermost(weight)
    input_ours, weight_ours = (t.to(torch.float16).requires_grad_() for t in (input, weight))
    input, weight = input.requires_grad_(), weight.requires_grad_()
    actual, expected = ours(input_ours, weight_ours, **kwargs), theirs(input, weight, **kwargs)
    assert_close(actual, expected, torch.float16)
    if layouts.endswith("expanded_grad"):
        grad = torch.randn((), dtype=torch.float64).expand(expected.shape)
    else:
        grad = torch.randn(expected.shape, dtype=torch.float64)
        grad = _channels_innermost(grad) if layouts.endswith("cl_grad") else grad
    got = torch.autograd.grad(actual, (input_ours, weight_ours), grad.to(torch.float16))
    want = torch.autograd.grad(expected, (input, weight), grad)
    # 3-d: torch on the CPU keeps contiguous where its cuDNN path (whose rule tconv follows,
    # descriptors/base.py output_memory_format) goes channels_last_3d; the gradients then
    # take the output's format there
    layout = _memory_format(expected) if actual.dim() < 5 else _memory_format(actual)
    assert _memory_format(actual) == layout
    for mine, reference, what in zip(got, want, ("grad_input", "grad_weight")):
        assert_close(mine, reference, torch.float16, what)
        assert _memory_format(mine) == (_memory_format(reference) if actual.dim() < 5 else layout), what


# ------------------------------------------------- elementwise passes' weight copies
@pytest.mark.parametrize("stride", [1, 2])
def test_elementwise_passes_with_channels_first_activations_read_the_weight_in_place(stride, weight_copies,
                                                                                     monkeypatch):
    """NCHW elementwise loops that gather (16-bit depthwise at stride 2; weight gradients)
    take one weight element per thread and tap in any layout: no weight copy. Those that
    copy their activations channels-last (stride 1, 7 wide: no run of lanes divides it) then
    copy the weight as channels-last loops do."""
    monkeypatch.setattr(configs, "EXTRA_LAUNCH_SECONDS", 0)  # the test's problem is small
    input = torch.randn(2, 12, 9, 7, dtype=torch.float16, requires_grad=True)
    weight = torch.randn(12, 1, 3, 3, dtype=torch.float16, requires_grad=True)
    names = _launched(monkeypatch)
    output = tconv.conv2d(input, weight, padding=1, groups=12, stride=stride)
    torch.autograd.grad(output, (input, weight), torch.randn_like(output))
    copied = ["fprop_input_copy", "fprop_weight_columns_copy", "dgrad_input_copy", "dgrad_weight_columns_copy"]
    assert sorted(names) == sorted(["fprop", "dgrad", "wgrad", "wgrad_reduce"] + (copied if stride == 1 else []))


def test_large_elementwise_passes_copy_their_weight():
    """Depthwise and small-group passes past WEIGHT_COPY_MIN_MACS copy their weight where
    the copy makes the columns contiguous (forward: lanes are the group's input channels;
    input gradient: always); small passes (batch-1 inference) keep one launch."""
    def copied(layer, pass_name):
        kernel, spec = pass_specs(layer_spec(layer))[pass_name]
        descriptor = configs.descriptor_of(kernel)
        operands = make_operands(descriptor, spec, torch.float16, "channels_last", "meta", random=False)
        copies = layout_module.channels_last_copies(descriptor, spec, operands, "sm_90")
        return [copy.name for copy in copies] == [f"{descriptor.name}_weight_columns_copy"]

    depthwise = Layer("dw", 64, 144, (56, 56), 144, (3, 3), 1, 1, 1, 144)
    grouped = Layer("4 per group", 64, 128, (56, 56), 128, (3, 3), 1, 1, 1, 32)
    head = Layer("20->2 1x1", 64, 20, (256, 256), 2, (1, 1), 1, 0, 1, 2)  # forward: 10 input channels on 16 lanes
    assert copied(depthwise, "fprop") and copied(depthwise, "dgrad")
    assert copied(grouped, "fprop") and copied(grouped, "dgrad")
    assert not copied(head, "fprop") and copied(head, "dgrad")
    small = Layer("dw batch 1", 1, 144, (56, 56), 144, (3, 3), 1, 1, 1, 144)
    assert not copied(small, "fprop") and not copied(small, "dgrad")


def test_small_elementwise_passes_stage_their_weight():
    """Below WEIGHT_COPY_MIN_MACS, a depthwise pass on channels-last activations stages its
    weight: a block of taps x BLOCK_N elements per program; channels-first activations that
    are gathered, not copied, read it in place, and so does a pass past the gate (copied)
    and a dense one."""
    def staged(layer, pass_name, layout="channels_last"):
        kernel, spec = pass_specs(layer_spec(layer))[pass_name]
        descriptor = configs.descriptor_of(kernel)
        operands = make_operands(descriptor, spec, torch.float16, layout, "meta", random=False)
        copies = layout_module.channels_last_copies(descriptor, spec, operands, "sm_90")
        config = configs.heuristic_config(kernel, spec, torch.float16, "sm_90", layout)
        elements = layout_module.stage_elements(descriptor, spec, operands, config, copies)
        assert elements in (0, math.prod(descriptor.grid(spec, config)) * math.prod(spec.kernel_size) * config.block_n)
        return elements > 0

    small = Layer("dw batch 1", 1, 144, (56, 56), 144, (3, 3), 1, 1, 1, 144)
    strided = Layer("dw s2 batch 1", 1, 144, (56, 56), 144, (5, 5), 2, 2, 1, 144)
    assert staged(small, "fprop") and staged(small, "dgrad") and staged(strided, "dgrad")
    assert not staged(small, "fprop", "contiguous") and not staged(small, "wgrad")
    assert not staged(Layer("dw", 64, 144, (56, 56), 144, (3, 3), 1, 1, 1, 144), "fprop")  # copied
    assert not staged(Layer("3x3", 1, 64, (56, 56), 64, (3, 3), 1, 1), "fprop")


@pytest.fixture
def forgetting():
    """Chosen configs and memoised passes forgotten before and after the test (which changes
    what they depend on)."""
    _forget()
    yield
    _forget()


@pytest.fixture
def weight_copies(monkeypatch, forgetting):
    """Every elementwise pass copies its weight where it can (the tests' problems are small)."""
    monkeypatch.setattr(configs, "WEIGHT_COPY_MIN_MACS", 0)


ELEMENTWISE_CASES = {
    "depthwise2d": (tconv.conv2d, F.conv2d, (2, 12, 9, 8), (12, 1, 3, 3), dict(padding=1, groups=12), True),
    "depthwise2d_multiplier": (tconv.conv2d, F.conv2d, (2, 6, 9, 8), (18, 1, 3, 3), dict(stride=2, padding=1, groups=6),
                               True),
    "depthwise1d_dilated": (tconv.conv1d, F.conv1d, (2, 16, 21), (16, 1, 4), dict(padding=3, dilation=2, groups=16), True),
    "depthwise3d": (tconv.conv3d, F.conv3d, (1, 8, 5, 6, 5), (8, 1, 3, 3, 3), dict(padding=1, groups=8), True),
    "four_per_group": (tconv.conv2d, F.conv2d, (2, 16, 7, 9), (16, 4, 3, 3), dict(padding=1, groups=4), True),
    "one_output_head": (tconv.conv2d, F.conv2d, (2, 20, 8, 8), (2, 10, 1, 1), dict(groups=2), False),
    "transposed_depthwise": (tconv.conv_transpose2d, F.conv_transpose2d, (2, 8, 6, 7), (8, 1, 4, 4),
                             dict(stride=2, padding=1, groups=8), True),
}


def _staged_taps(monkeypatch) -> dict[str, set[int]]:
    """Every conv kernel launch's STAGE_TAPS (descriptors/layout.py weight_stage), by kernel function."""
    staged: dict[str, set[int]] = {}
    original = _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        if "STAGE_TAPS" in meta:
            staged.setdefault(getattr(function, "function", function).__name__, set()).add(meta["STAGE_TAPS"])
        return original(function, grid, template, slots, meta, tensors, device)

    monkeypatch.setattr(_launch, "_go", record)
    return staged


@pytest.mark.parametrize("mode", ["copied", "staged"])
@pytest.mark.parametrize("weight_layout", ["contiguous", "channels_last", "sliced", "columns"])
@pytest.mark.parametrize("name", list(ELEMENTWISE_CASES))
def test_elementwise_weight_columns(name, weight_layout, mode, forgetting, monkeypatch):
    """Forward and both gradients against torch in float64 with the weight's columns read
    consecutive (channels-innermost activations), from any weight strides: through the
    columns copy ("copied": the size gate lowered; a channels_last weight with 4 per group,
    whose channels do not flatten into one stride, is copied as runs of 4), or, below the
    gate (the tests' problems are small), staged by each program (weight_stage); a weight
    already stored that way is read in place."""
    if mode == "copied":
        monkeypatch.setattr(configs, "WEIGHT_COPY_MIN_MACS", 0)
    ours, theirs, input_shape, weight_shape, kwargs, forward_copies = ELEMENTWISE_CASES[name]
    input = in_layout(torch.randn(input_shape, dtype=torch.float64), "channels_last")
    weight = torch.randn(weight_shape, dtype=torch.float64)
    if weight_layout == "channels_last" and weight.dim() in CL:
        weight = weight.to(memory_format=CL[weight.dim()])
    elif weight_layout == "sliced":  # every other kernel position of a larger weight
        weight = torch.randn(*weight_shape[:2], *(2 * k for k in weight_shape[2:]), dtype=torch.float64)[..., ::2]
        weight = weight[(...,) + tuple(slice(0, k) for k in weight_shape[2:-1]) + (slice(None),)]
    elif weight_layout == "columns":  # [*kernel, A, B] storage: what the forward copy makes
        dims = weight.dim()
        weight = weight.permute(*range(2, dims), 0, 1).contiguous().permute(dims - 2, dims - 1, *range(dims - 2))
    assert weight.shape == weight_shape
    ours_input, ours_weight = input.clone().requires_grad_(), weight.clone().requires_grad_()
    input, weight = input.requires_grad_(), weight.requires_grad_()
    names, staged = _launched(monkeypatch), _staged_taps(monkeypatch)
    actual, expected = ours(ours_input, ours_weight, **kwargs), theirs(input, weight, **kwargs)
    assert_close(actual, expected, torch.float64)
    grad = in_layout(torch.randn_like(expected), "channels_last")  # channels innermost, as the input (1-d too)
    for got, want, what in zip(torch.autograd.grad(actual, (ours_input, ours_weight), grad),
                               torch.autograd.grad(expected, (input, weight), grad), ("grad_input", "grad_weight")):
        assert_close(got, want, torch.float64, what)
    forward, backward = ("dgrad", "fprop") if "transposed" in name else ("fprop", "dgrad")
    scattered = {forward: forward_copies and weight_layout != "columns",
                 backward: not (weight_layout == "columns" and weight_shape[1] == 1)}
    for kernel, columns_scattered in scattered.items():
        taps = staged[f"conv_{kernel}_kernel"] - {0}
        if mode == "copied":
            assert (f"{kernel}_weight_columns_copy" in names) == columns_scattered and not taps, (kernel, names, taps)
        else:
            assert f"{kernel}_weight_columns_copy" not in names, (kernel, names)
            assert taps == ({triton.next_power_of_2(math.prod(weight_shape[2:]))} if columns_scattered else set()), kernel


# ------------------------------------------------- row strides in units of their alignment
UNIT_CASES = [case for case in CONV_CASES + CONV_TRANSPOSE_CASES if "in units" in case.name]


def _stride_units(monkeypatch) -> dict[str, set[tuple[int, ...]]]:
    """Every conv kernel launch's (IN_UNIT, WEIGHT_UNIT, OUT_UNIT, GRAD_UNIT), 0 for those
    it does not take, by kernel function."""
    units: dict[str, set[tuple[int, ...]]] = {}
    original = _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        if "IN_UNIT" in meta:
            used = tuple(meta.get(name, 0) for name in ("IN_UNIT", "WEIGHT_UNIT", "OUT_UNIT", "GRAD_UNIT"))
            units.setdefault(getattr(function, "function", function).__name__, set()).add(used)
        return original(function, grid, template, slots, meta, tensors, device)

    _launch._passes.clear()
    monkeypatch.setattr(_launch, "_go", record)
    return units


def _channels_innermost(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.movedim(1, -1).contiguous().movedim(-1, 1)


def _check_forward_and_grads(ours, theirs, input, weight, bias, kwargs, dtype):
    inputs = [t.to(dtype).requires_grad_() for t in (input, weight)]
    expected_inputs = [t.detach().double().requires_grad_() for t in (input, weight)]
    actual = ours(*inputs, None if bias is None else bias.to(dtype), **kwargs)
    expected = theirs(*expected_inputs, None if bias is None else bias.double(), **kwargs)
    assert_close(actual, expected, dtype)
    grad = _channels_innermost(torch.randn(expected.shape, dtype=torch.float64))  # (torch's CPU output may not be)
    for got, want, what in zip(torch.autograd.grad(actual, inputs, grad.to(dtype)),
                               torch.autograd.grad(expected, expected_inputs, grad), ("grad_input", "grad_weight")):
        assert_close(got, want, dtype, what)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("case", UNIT_CASES, ids=lambda case: case.name)
def test_channels_last_rows_in_units_of_their_alignment(case, dtype, monkeypatch):
    """Channel counts that 16 does not divide (40, 24, 56 channels; 20 per group): the conv
    kernels take channels-last row strides and channel counts divided by the largest power
    of two, up to 16 bytes of elements, that divides them all, and multiply them back by
    their unit constexprs (what lets Triton prove 16-byte rows; one per tensor, so a depthwise
    weight's 9-element rows leave the activations' unit whole). Forward and both
    gradients against torch in float64, and every forward, input-gradient and
    weight-gradient launch ran with a unit above 1 (16 bytes of elements, or 4 where 20
    channels per group decide it)."""
    units = _stride_units(monkeypatch)
    name = f"conv_transpose{case.dims}d" if case.transposed else f"conv{case.dims}d"
    input, weight, bias = case.tensors(torch.float64)
    _check_forward_and_grads(getattr(tconv, name), getattr(F, name), _channels_innermost(input),
                             _channels_innermost(weight), bias, case.kwargs, dtype)
    assert set(units) == {"conv_fprop_kernel", "conv_dgrad_kernel", "conv_wgrad_kernel"}
    element = torch.empty((), dtype=dtype).element_size()
    expected = 16 // element  # (a tensor whose values 16 divides: 1; 20 channels per group: 4)
    for kernel, used in units.items():
        assert {max(launch) for launch in used} <= ({4, expected} if "groups" in case.name else {expected}), (kernel, used)
    if "depthwise" in case.name:  # the weight's 9-element rows: its unit is 1, the activations' whole
        assert units["conv_fprop_kernel"] == {(expected, 1, expected, 0)}, units


def test_one_element_dims_do_not_decide_the_unit(monkeypatch):
    """A one-element dim's stride never moves an address that is read, so an odd one (a
    view's) leaves the unit at 8 and the results exact."""
    units = _stride_units(monkeypatch)
    stored = torch.randn(2, 9, 40, dtype=torch.float64)
    input = stored.as_strided((2, 40, 1, 9), (360, 1, 3, 40))
    weight = _channels_innermost(torch.randn(24, 40, 1, 3, dtype=torch.float64))
    _check_forward_and_grads(tconv.conv2d, F.conv2d, input, weight, None, dict(padding=(0, 1)), torch.float16)
    assert {launch[0] for launch in units["conv_fprop_kernel"]} == {8}


# ------------------------------------------------------- zero-padded channel copies
def test_unaligned_channels_pad_where_the_pass_is_compute_bound():
    """A compute-bound dense pass loading along a channel count whose rows are not 8 bytes
    aligned (the TCN's 150 fp16 channels) loads zero-padded copies of 160 channels instead:
    the forward its reduction's, the input gradient and weight gradient both counts. Not
    where 64-bit loads are possible already (150 fp32 channels, DCGAN's 100 latent ones),
    memory-bound passes, groups, thin channels or fp64."""
    tcn = pass_specs(layer_spec(Layer("tcn", 32, 150, (1024,), 150, (7,), 1, 6)))
    for family in ("sm_90", "sm_80"):
        for dtype in (torch.float16, torch.bfloat16):
            padded = {name: configs.padded_channels(kernel, spec, dtype, family) for name, (kernel, spec) in tcn.items()}
            assert [(p.in_channels, p.out_channels) for p in padded.values()] == [(160, 150), (160, 160), (160, 160)]
        for dtype in (torch.float32, torch.float64):
            assert all(configs.padded_channels(*tcn[name], dtype, family) is None for name in tcn)
    others = [Layer("latent", 64, 100, (4, 4), 512, (4, 4), 1, 3),  # 100 channels: 64-bit rows
              Layer("memory-bound 1x1", 64, 150, (56, 56), 150, (1, 1), 1, 0),
              Layer("groups", 32, 150, (1024,), 150, (7,), 1, 6, 1, 2),
              Layer("thin", 64, 6, (224, 224), 150, (7, 7), 2, 3)]
    for layer in others:
        for name, (kernel, spec) in pass_specs(layer_spec(layer)).items():
            assert configs.padded_channels(kernel, spec, torch.float16, "sm_90") is None, (layer.name, name)


PADDED_CASES = {  # (function, input, weight, kwargs, layout): compute-bound on an H100, channels 8 bytes misaligned
    "conv1d_17_19_k41": ("conv1d", (2, 17, 1024), (19, 17, 41), dict(padding=20), "channels_last"),
    "conv2d_21_23_7x7_nchw": ("conv2d", (2, 21, 24, 24), (23, 21, 7, 7), dict(padding=3), "contiguous"),
    "conv_transpose2d_21_19_7x7": ("conv_transpose2d", (2, 21, 24, 24), (21, 19, 7, 7), dict(padding=3),
                                   "channels_last"),
}


@pytest.mark.parametrize("name,dtype", [  # (fp32 of the 1-d and transposed layers: slow, the copies' twins in fp16)
    pytest.param(name, dtype, marks=[pytest.mark.slow] if dtype == torch.float32 and "nchw" not in name else [],
                 id=f"{name}-{dtype}")
    for name in PADDED_CASES for dtype in (torch.float16, torch.float32)])
def test_passes_on_zero_padded_channel_copies(name, dtype, monkeypatch):
    """Forward and every gradient (bias included) of layers whose passes pad channels,
    against torch in float64: each pass launched its zero-padded copies (the operands'
    rows and channels past their own are zeros, stored nowhere) and the output keeps
    torch's memory format."""
    function, input_shape, weight_shape, kwargs, layout = PADDED_CASES[name]
    launched = []
    original = _launch.launch
    monkeypatch.setattr(_launch, "launch", lambda descriptor, *args: (launched.append(descriptor.name),
                                                                      original(descriptor, *args)))
    _forget()
    input = in_layout(torch.randn(input_shape, dtype=torch.float64), layout)
    weight, bias = torch.randn(weight_shape, dtype=torch.float64) / 8, torch.randn(weight_shape[1 if "transpose" in name
                                                                                                else 0], dtype=torch.float64)
    ours = [t.to(dtype).requires_grad_() for t in (input, weight, bias)]
    theirs = [t.detach().clone().requires_grad_() for t in (input, weight, bias)]
    actual, expected = getattr(tconv, function)(*ours, **kwargs), getattr(F, function)(*theirs, **kwargs)
    assert_close(actual, expected, dtype)
    if actual.dim() in CL:
        assert actual.is_contiguous(memory_format=CL[actual.dim()]) == input.is_contiguous(memory_format=CL[actual.dim()])
    grad = torch.randn(expected.shape, dtype=torch.float64)
    for got, want, what in zip(torch.autograd.grad(actual, ours, grad.to(dtype)), torch.autograd.grad(expected, theirs, grad),
                               ("grad_input", "grad_weight", "grad_bias")):
        assert_close(got, want, dtype, what)
    padded = {copy.split("_")[0] for copy in launched if copy.endswith("_padded_copy")}
    assert padded == {"fprop", "dgrad", "wgrad"}, launched
    _forget()


# ------------------------------------------------- TF32 input gradients: the weight K-major
def test_tf32_input_gradients_read_their_weight_k_major_on_sm_90(monkeypatch):
    """sm_90's tensor cores take float32 (TF32) operands K-major only, and a dense input
    gradient's K is its weight's dim 0: a large enough pass copies a channels-last weight
    K-major, and a channels-first one it copies anyway goes K-major instead of channels-last.
    Not on sm_80 (its loads are 128-bit either way), not for 16-bit operands, without TF32,
    for small passes, for channel counts 16 does not divide, nor for a weight already K-major."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)

    def copies(layer, dtype=torch.float32, family="sm_90", layout="channels_last", k_major=False):
        kernel, spec = pass_specs(layer_spec(layer))["dgrad"]
        descriptor = configs.descriptor_of(kernel)
        operands = make_operands(descriptor, spec, dtype, layout, "meta", random=False)
        if k_major:  # [B, *kernel, A] storage
            weight = operands["weight"]
            dims = weight.dim()
            stored = torch.empty((weight.shape[1], *weight.shape[2:], weight.shape[0]), dtype=dtype, device="meta")
            operands["weight"] = stored.permute(dims - 1, 0, *range(1, dims - 1))
        return [copy.name for copy in layout_module.channels_last_copies(descriptor, spec, operands, family)]

    large = Layer("3x3", 64, 256, (14, 14), 256, (3, 3), 1, 1)
    assert copies(large) == ["dgrad_weight_columns_copy"]
    assert copies(large, layout="contiguous") == ["dgrad_input_copy", "dgrad_weight_columns_copy"]
    assert copies(large, family="sm_80") == [] and copies(large, dtype=torch.float16) == []
    assert copies(large, family="sm_80", layout="contiguous") == ["dgrad_input_copy", "dgrad_weight_copy"]
    assert copies(large, k_major=True) == []
    assert copies(Layer("small", 1, 64, (8, 8), 64, (3, 3), 1, 1)) == []
    assert copies(Layer("24 channels", 64, 64, (56, 56), 24, (3, 3), 1, 1)) == []
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert copies(large) == []


K_MAJOR_CASES = {
    "conv2d_strided_groups": (tconv.conv2d, F.conv2d, (2, 32, 9, 8), (32, 16, 3, 3), dict(stride=2, padding=1, groups=2)),
    "conv1d_dilated": (tconv.conv1d, F.conv1d, (2, 16, 21), (32, 16, 5), dict(padding=4, dilation=2)),
    "conv3d": (tconv.conv3d, F.conv3d, (1, 16, 5, 6, 5), (16, 16, 3, 3, 3), dict(padding=1)),
    "conv_transpose2d": (tconv.conv_transpose2d, F.conv_transpose2d, (2, 32, 6, 7), (32, 16, 4, 4),
                         dict(stride=2, padding=1)),
}


@pytest.mark.parametrize("weight_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", list(K_MAJOR_CASES))
def test_k_major_weight_copy(name, weight_layout, monkeypatch):
    """Forward and both gradients against torch in float64 with every dense input-gradient
    kernel (a transposed convolution's forward too) reading its weight through the K-major
    copy (1-3 d, stride phases, dilation, groups), from contiguous and channels-last weights."""
    k_major = lambda kernel, spec, *args: configs.descriptor_of(kernel).name == "dgrad"  # noqa: E731
    monkeypatch.setattr(layout_module, "k_major_weight", k_major)
    ours, theirs, input_shape, weight_shape, kwargs = K_MAJOR_CASES[name]
    input = in_layout(torch.randn(input_shape, dtype=torch.float64), "channels_last")
    weight = torch.randn(weight_shape, dtype=torch.float64)
    if weight_layout == "channels_last" and weight.dim() in CL:
        weight = weight.to(memory_format=CL[weight.dim()])
    ours_input, ours_weight = input.clone().requires_grad_(), weight.clone().requires_grad_()
    input, weight = input.requires_grad_(), weight.requires_grad_()
    names = _launched(monkeypatch)
    actual, expected = ours(ours_input, ours_weight, **kwargs), theirs(input, weight, **kwargs)
    assert_close(actual, expected, torch.float64)
    grad = in_layout(torch.randn_like(expected), "channels_last")
    for got, want, what in zip(torch.autograd.grad(actual, (ours_input, ours_weight), grad),
                               torch.autograd.grad(expected, (input, weight), grad), ("grad_input", "grad_weight")):
        assert_close(got, want, torch.float64, what)
    assert "dgrad_weight_columns_copy" in names, names
    _launch._passes.clear()
