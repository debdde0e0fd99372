"""Bytes the kernels load and store, counted in Triton's interpreter.

Every masked load and store the interpreter executes is counted (the elements its mask
lets through, times their size) while one pass of a layer runs on CPU tensors: the bytes
the kernels request from memory, re-reads included (a 3x3 depthwise forward loads each
input element about 9 times). Caches may serve part of it on a GPU; the minimum bytes
(perf.roofline.min_bytes) are what no kernel can avoid.

Elementwise passes (depthwise, small groups) are counted at batch 1, at most
COUNTED_CHANNELS channels (whole groups) and about COUNTED_POSITIONS positions: their
tiles do the same work per position and channel at any batch or width, so the ratio to the
minimum bytes is the layer's up to edges (a smaller image has relatively more padded taps,
which load nothing). Dense passes' ratios depend on the channel counts, and the
interpreter cannot run them at full size: they are not counted.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch
from triton.runtime import interpreter

from tconv import _launch
from tconv.configs import descriptor_of
from tconv.descriptors.base import make_operands
from tconv.spec import pass_specs

from .roofline import min_bytes
from .suites import Layer, layer_spec

#: What an elementwise layer keeps when its traffic is counted: channels (whole groups), and
#: about this many input positions (the same count per spatial dimension), so that a pass
#: runs in seconds.
COUNTED_CHANNELS, COUNTED_POSITIONS = 32, 1024


@dataclasses.dataclass
class Traffic:
    loaded: int = 0
    stored: int = 0


@contextlib.contextmanager
def counting():
    """Yields a Traffic that adds up every interpreted load and store inside the block."""
    traffic = Traffic()
    builder = interpreter.InterpreterBuilder
    load, store = builder.create_masked_load, builder.create_masked_store

    def counted_load(self, ptrs, mask, other, cache_policy, is_volatile):
        result = load(self, ptrs, mask, other, cache_policy, is_volatile)
        traffic.loaded += int(np.count_nonzero(mask.data)) * result.data.dtype.itemsize
        return result

    def counted_store(self, ptrs, value, mask, cache_policy):
        traffic.stored += int(np.count_nonzero(mask.data)) * value.data.dtype.itemsize
        return store(self, ptrs, value, mask, cache_policy)

    builder.create_masked_load, builder.create_masked_store = counted_load, counted_store
    try:
        yield traffic
    finally:
        builder.create_masked_load, builder.create_masked_store = load, store


def counted_layer(layer: Layer) -> Layer:
    """The elementwise layer at batch 1, at most COUNTED_CHANNELS channels (whole groups) and
    COUNTED_POSITIONS ** (1 / dims) positions per spatial dimension."""
    per_group = max(layer.in_channels, layer.out_channels) // layer.groups
    groups = max(1, min(layer.groups, COUNTED_CHANNELS // per_group))
    side = round(COUNTED_POSITIONS ** (1 / layer.dims))
    return dataclasses.replace(layer, batch=1, groups=groups, in_channels=layer.in_channels // layer.groups * groups,
                               out_channels=layer.out_channels // layer.groups * groups,
                               in_size=tuple(min(size, side) for size in layer.in_size))


def pass_traffic(layer: Layer, dtype: torch.dtype, layout: str) -> dict[str, Traffic]:
    """{pass: Traffic} of each elementwise pass of `layer`, run through tconv's launcher on
    random CPU operands in `layout` (its layout copies, kernel and reduction)."""
    traffic = {}
    for pass_name, (kernel, spec) in pass_specs(layer_spec(layer)).items():
        if not spec.elementwise_lanes:
            continue
        descriptor = descriptor_of(kernel)
        operands = make_operands(descriptor, spec, dtype, layout, "cpu", bias=pass_name == "fprop")
        with counting() as traffic[pass_name]:
            _launch.run_pass(descriptor, spec, operands)
    return traffic


def traffic_metrics(layer: Layer, dtype: torch.dtype, layout: str) -> dict[str, list[tuple[str, object]]]:
    """{pass: [(metric, value)]} of the elementwise passes: loaded and stored bytes of the
    counted layer, its minimum bytes and loaded / minimum."""
    counted = counted_layer(layer)
    minimum = min_bytes(layer_spec(counted), str(dtype).removeprefix("torch."))
    return {pass_name: [("counted_shape", counted.describe()), ("loaded_bytes", traffic.loaded),
                        ("stored_bytes", traffic.stored), ("counted_min_bytes", minimum),
                        ("loaded_over_min_bytes", round(traffic.loaded / max(minimum, 1), 3))]
            for pass_name, traffic in pass_traffic(counted, dtype, layout).items()}
