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
