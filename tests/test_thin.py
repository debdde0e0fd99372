"""Thin layers (fewer than 16 input channels per group): the work their launches execute.

Forward and weight-gradient kernels pack (tap, channel) pairs into one GEMM dimension
(ConvSpec.packed_channels); one input channel per group runs elementwise (no tl.dot);
input gradients (transposed convolutions) with 2-15 output channels past the elementwise
rule run a GEMM over every (channel, tap) pair, then col2im (ConvSpec.tap_columns).
The modelled multiply-adds are checked against what the interpreter executes in
test_executed_work.py; here the heuristic's launches of real first layers (the thin
suite, full size) must stay within 1.25x of the useful work on every family and layout.
Correctness of these layers is covered by the shared case table (tconv.testing).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from tconv.perf.suites import SUITES, Layer, layer_spec

import tconv
from tconv import _launch, configs
from tconv.configs import FAMILIES, heuristic_config
from tconv.descriptors.columns import COLUMNS, Columns, column_strides, uses_columns
from tconv.plan import executed_macs
from tconv.spec import ELEMENTWISE_MACS_PER_ELEMENT, conv_transpose_spec, pass_specs
from tconv.testing import assert_close

#: Every pass of the thin suite that packs or runs elementwise: RGB stems' forward and
#: weight gradient, every pass of one-channel audio and volumes and of ResNeXt's 4-channel
#: groups, and the input gradients with a one- or three-channel output (small-output groups,
#: or the 7x7 stem's column GEMM).
THIN_PASSES = [(layer, pass_name) for layer in SUITES["thin"] for pass_name, (_, spec) in pass_specs(layer_spec(layer)).items()
               if spec.packed_channels or spec.elementwise_lanes or spec.tap_columns]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("layer,pass_name", THIN_PASSES, ids=lambda value: getattr(value, "name", value))
def test_thin_layers_execute_close_to_their_useful_work(layer, pass_name, dtype):
    kernel, spec = pass_specs(layer_spec(layer))[pass_name]
    for family in FAMILIES:
        for layout in ("channels_last", "contiguous"):
            config = heuristic_config(kernel, spec, dtype, family, layout)
            ratio = executed_macs(kernel, spec, config) / spec.useful_macs
            assert ratio <= 1.25, (family, layout, str(config), ratio)


def test_no_thin_pass_pads_tensor_cores():
    """Every thin-suite pass packs, runs elementwise or takes the column GEMM. The 7x7 RGB
    stem's input gradient (64 input channels, 3 outputs: 3,136 useful multiply-adds per
    pixel moved, past the elementwise rule) once padded tl.dot's N from 3 to 16; it now
    multiplies its 147 (channel, tap) columns."""
    kept = [(layer.name, pass_name) for layer in SUITES["thin"]
            for pass_name in ("fprop", "dgrad", "wgrad") if (layer, pass_name) not in THIN_PASSES]
    assert kept == []
    kernel, stem_dgrad = pass_specs(layer_spec(SUITES["thin"][0]))["dgrad"]
    assert kernel == "columns" and stem_dgrad.tap_columns and not stem_dgrad.elementwise_lanes
    elements = stem_dgrad.batch * (math.prod(stem_dgrad.in_size) * 64 + math.prod(stem_dgrad.out_size) * 3)
    assert stem_dgrad.useful_macs > ELEMENTWISE_MACS_PER_ELEMENT * elements


def test_column_gemm_reads_the_weight_in_place_or_steps_aside():
    """Contiguous and channels_last weights are read in place (a column is a fixed number
    of elements on); a weight whose trailing dims are not one dense block takes the phase
    kernel, and both give torch's result."""
    weight = torch.randn(64, 3, 7, 7)
    assert column_strides(weight) == (1, (49, 7, 1))
    assert column_strides(weight.to(memory_format=torch.channels_last)) == (1, (1, 21, 3))
    sliced = torch.randn(64, 3, 13, 13)[:, :, ::2, ::2]
    assert column_strides(sliced) is None
    input = torch.randn(2, 64, 5, 6)
    spec, _ = conv_transpose_spec("conv_transpose2d", 2, input, sliced, None, 2, 3, 1, 1, 1)
    assert spec.tap_columns and uses_columns(spec, weight) and not uses_columns(spec, sliced)
    for w in (weight, sliced):
        output = tconv.conv_transpose2d(input, w, stride=2, padding=3, output_padding=1)
        reference = F.conv_transpose2d(input.double(), w.double(), stride=2, padding=3, output_padding=1)
        assert_close(output, reference, torch.float32)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_column_workspace_stays_within_its_limit(monkeypatch, layout):
    """A batch whose columns workspace would pass COLUMNS_WORKSPACE_LIMIT runs the column
    GEMM and col2im over slices of the batch, no slice's workspace past the limit: a
    transposed conv's forward (with bias) and an RGB conv's input gradient through
    autograd, against torch in float64."""
    to_layout = (lambda t: t.to(memory_format=torch.channels_last)) if layout == "channels_last" else (lambda t: t)
    input, weight, bias = to_layout(torch.randn(5, 64, 5, 6)), torch.randn(64, 3, 5, 5), torch.randn(3)
    spec, _ = conv_transpose_spec("conv_transpose2d", 2, input, weight, bias, 2, 1, 1, 1, 1)
    image = COLUMNS.image_workspace(spec, torch.float32)
    monkeypatch.setattr(configs, "COLUMNS_WORKSPACE_LIMIT", 2 * image + image // 2)  # 2 of 5 images fit
    batches, workspaces = [], []
    run_pass, allocate = _launch.run_pass, Columns.allocate

    def recording_run_pass(kernel, spec, operands, config=None):
        batches.append((kernel.name, spec.batch))
        return run_pass(kernel, spec, operands, config)

    def recording_allocate(self, spec, tensors, config):
        allocated = allocate(self, spec, tensors, config)
        workspaces.append(allocated["columns"].numel() * allocated["columns"].element_size())
        return allocated

    monkeypatch.setattr(_launch, "run_pass", recording_run_pass)
    monkeypatch.setattr(Columns, "allocate", recording_allocate)
    output = tconv.conv_transpose2d(input, weight, bias, stride=2, padding=1, output_padding=1)
    reference = F.conv_transpose2d(input.double(), weight.double(), bias.double(), stride=2, padding=1, output_padding=1)
    assert_close(output, reference, torch.float32)
    assert batches == [("columns", 5), ("columns", 2), ("columns", 2), ("columns", 1)]
    assert workspaces and max(workspaces) <= configs.COLUMNS_WORKSPACE_LIMIT

    batches.clear()
    image = to_layout(torch.randn(5, 3, 9, 8, dtype=torch.float64)).requires_grad_()
    stem = torch.randn(64, 3, 5, 5, dtype=torch.float64)
    grad = torch.randn(5, 64, 5, 4, dtype=torch.float64)
    (expected,) = torch.autograd.grad(F.conv2d(image, stem, stride=2, padding=2), image, grad)
    (actual,) = torch.autograd.grad(tconv.conv2d(image, stem, stride=2, padding=2), image, grad)
    assert_close(actual, expected, torch.float64, "grad_input")
    # fp64 columns, 8 bytes a value: one image per slice
    assert [run for run in batches if run[0] == "columns"] == [("columns", 5)] + [("columns", 1)] * 5
    assert max(workspaces) <= configs.COLUMNS_WORKSPACE_LIMIT


def test_packing_follows_the_channels_per_group():
    def spec(in_channels, groups):
        return layer_spec(Layer("3x3", 2, in_channels, (9, 9), 16 * groups, (3, 3), 1, 1, 1, groups))

    assert [spec(c, 1).packed_channels for c in (1, 2, 3, 15, 16, 64)] == [0, 2, 3, 15, 0, 0]
    assert spec(1, 1).depthwise and spec(4, 4).depthwise and not spec(8, 4).depthwise
    assert spec(8, 4).packed_channels == 2
    # 2 input channels and 16 outputs per group: packed; 4 and 4 (ResNeXt): four lanes each
    assert spec(8, 4).elementwise_lanes == 0
    grouped = layer_spec(Layer("g", 2, 32, (9, 9), 32, (3, 3), 1, 1, 1, 8))
    assert grouped.elementwise_lanes == 4 and grouped.packed_channels == 0


PATCH_LAYERS = [  # (channels, kernel, stride, input size): patch embeddings and an unpadded strided thin conv
    (3, (16, 16), (16, 16), (32, 48)),  # ViT-B/16's: 48-long runs fold
    (4, (4, 4), (4, 4), (12, 16)),  # 16-long runs fold
    (3, (4, 4), (4, 4), (12, 16)),  # Swin-T's: 12-long runs pack
    (2, (2, 4, 4), (2, 4, 4), (4, 8, 8)),  # 3-d, 8-long runs pack (aligned: dense columns)
    (3, (3, 3), (2, 2), (9, 11)),  # overlapping taps, unpadded
    (4, (2, 2), (4, 4), (9, 13)),  # gaps between patches: 8-long runs at 16-element steps
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("channels,kernel,stride,size", PATCH_LAYERS, ids=lambda value: str(value).replace(" ", ""))
def test_unpadded_thin_layers_fold_or_read_dense_columns(channels, kernel, stride, size, layout, dtype, monkeypatch):
    """Thin layers without padding: the forward folds the kernel's width into K where the
    (kw, channel) runs are whole 16-wide steps starting 16-byte aligned, else packs, either
    way masking rows alone; the weight gradient of a channels-last input reads B as position
    plus column offsets (PACKED_DENSE). Forward and both gradients against torch in float64."""
    launched: dict[str, dict] = {}
    original = _launch._go

    def record(function, grid, template, slots, meta, tensors, device):
        launched.setdefault(getattr(function, "function", function).__name__, meta)
        return original(function, grid, template, slots, meta, tensors, device)

    _launch._passes.clear()
    monkeypatch.setattr(_launch, "_go", record)
    dims = len(kernel)
    input = torch.randn(2, channels, *size, dtype=torch.float64)
    weight = torch.randn(24, channels, *kernel, dtype=torch.float64)
    bias = torch.randn(24, dtype=torch.float64)
    if layout == "channels_last":
        input, weight = (t.movedim(1, -1).contiguous().movedim(-1, 1) for t in (input, weight))
    conv = getattr(tconv, f"conv{dims}d")
    ours = [t.to(dtype).requires_grad_() for t in (input, weight, bias)]
    reference = [t.detach().clone().requires_grad_() for t in (input, weight, bias)]
    actual = conv(*ours, stride=stride)
    expected = getattr(F, f"conv{dims}d")(*reference, stride=stride)
    assert_close(actual, expected, dtype)
    grad = torch.randn(expected.shape, dtype=torch.float64)
    for got, want, what in zip(torch.autograd.grad(actual, ours, grad.to(dtype)),
                               torch.autograd.grad(expected, reference, grad), ("input", "weight", "bias")):
        assert_close(got, want, dtype, f"grad_{what}")
    run = kernel[-1] * channels
    folds = run % 16 == 0 and stride[-1] * channels % 8 == 0
    forward = launched["conv_fprop_kernel"]
    assert (forward["FOLD_CHANNELS"], forward["PACKED_CHANNELS"]) == ((channels, 0) if folds else (0, channels))
    assert forward["UNPADDED"] and forward["TAP_BITS"]  # no padding: rows masked by their range alone
    aligned = run % 8 == 0 and stride[-1] * channels % 8 == 0
    assert launched["conv_wgrad_kernel"]["PACKED_DENSE"] == (layout == "channels_last" and aligned)
