"""Thin layers (fewer than 16 input channels per group): the work their launches execute.

Forward and weight-gradient kernels pack (tap, channel) pairs into one GEMM dimension
(ConvSpec.packed_channels); one input channel per group runs elementwise (no tl.dot).
The modelled multiply-adds are checked against what the interpreter executes in
test_executed_work.py; here the heuristic's launches of real first layers (the thin
suite, full size) must stay within 1.25x of the useful work on every family and layout.
Correctness of these layers is covered by the shared case table (tconv.testing).
"""

import pytest
import torch
from tconv.perf.suites import SUITES, Layer, layer_spec

from tconv.configs import FAMILIES, heuristic_config
from tconv.plan import executed_macs
from tconv.spec import pass_specs

#: The thin suite's layers whose forward and weight gradient pack or run elementwise
#: (RGB stems, one-channel audio and volumes); ResNeXt's 4-channel groups also have 4
#: output channels per group, a thin N no packing of K removes.
STEMS = [layer for layer in SUITES["thin"] if layer.in_channels // layer.groups < 4]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("pass_name", ["fprop", "wgrad"])
@pytest.mark.parametrize("layer", STEMS, ids=lambda layer: layer.name)
def test_thin_layers_execute_close_to_their_useful_work(layer, pass_name, dtype):
    kernel, spec = pass_specs(layer_spec(layer))[pass_name]
    assert spec.packed_channels or spec.depthwise, spec
    for family in FAMILIES:
        for layout in ("channels_last", "contiguous"):
            config = heuristic_config(kernel, spec, dtype, family, layout)
            ratio = executed_macs(kernel, spec, config) / spec.useful_macs
            assert ratio <= 1.25, (family, layout, str(config), ratio)


def test_packing_follows_the_channels_per_group():
    def spec(in_channels, groups):
        return layer_spec(Layer("3x3", 2, in_channels, (9, 9), 16 * groups, (3, 3), 1, 1, 1, groups))

    assert [spec(c, 1).packed_channels for c in (1, 2, 3, 15, 16, 64)] == [0, 2, 3, 15, 0, 0]
    assert spec(1, 1).depthwise and spec(4, 4).depthwise and not spec(8, 4).depthwise
    assert spec(8, 4).packed_channels == 2
