"""The eager path: memoised calls give torch's results and errors, skip the custom-op
machinery only when nothing traces them, and make no host synchronisation or
host-to-device copy on a repeated call (the CPU-visible half of CUDA-graph capture)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tconv.perf.host import stubbed_launches
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

import tconv
from tconv import _launch, functional, ops
from tconv.functional import convolution
from tconv.testing import assert_close


def test_repeated_call_is_checked_once_and_planned_once(monkeypatch):
    input, weight = torch.randn(2, 3, 7, 7), torch.randn(5, 3, 3, 3)
    tconv.conv2d(input, weight, padding=1, stride=2)  # may be memoised by an earlier test: fine
    checks, plans = [], []
    monkeypatch.setattr(functional, "conv_spec", lambda *a: checks.append(a) or None)
    monkeypatch.setattr(_launch, "_plan", lambda *a: plans.append(a) or None)
    output = tconv.conv2d(input, weight, padding=1, stride=2)
    assert checks == [] and plans == []
    assert_close(output, F.conv2d(input.double(), weight.double(), padding=1, stride=2), torch.float32)


def test_memo_keeps_torch_errors_for_lookalike_arguments():
    """True == 1 and hash(True) == hash(1), but torch refuses stride=True and
    stride=(True, 1), and takes stride=(1, True) as (1, 1): so must a memoised call."""
    input, weight = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    tconv.conv2d(input, weight, stride=1, groups=1)
    tconv.conv2d(input, weight, stride=(1, 1), dilation=[1, 1])
    for kwargs in ({"stride": True}, {"groups": True}, {"padding": (1.0, 1)}, {"stride": 1.0}, {"stride": (True, 1)},
                   {"dilation": [True, 1]}):
        with pytest.raises(TypeError):
            tconv.conv2d(input, weight, **kwargs)
        with pytest.raises(TypeError):
            F.conv2d(input, weight, **kwargs)
    for kwargs in ({"stride": (1, True)}, {"dilation": [1, True]}, {"padding": (0, False)}):
        assert_close(tconv.conv2d(input, weight, **kwargs), F.conv2d(input.double(), weight.double(), **kwargs),
                     torch.float32)


def test_same_shapes_in_other_layouts_and_dtypes():
    """The memo keys on strides and dtypes too: one problem in turn in each layout and dtype."""
    input, weight, bias = torch.randn(2, 4, 6, 6), torch.randn(6, 4, 3, 3), torch.randn(6)
    reference = F.conv2d(input.double(), weight.double(), bias.double(), padding=1)
    for _ in range(2):
        for layout in (torch.contiguous_format, torch.channels_last):
            for dtype in (torch.float32, torch.float64):
                output = tconv.conv2d(input.to(dtype, memory_format=layout), weight.to(dtype), bias.to(dtype), padding=1)
                assert_close(output, reference, dtype)
                assert output.is_contiguous(memory_format=layout)


def test_eager_calls_skip_the_custom_op_and_traced_calls_use_it(monkeypatch):
    input = torch.randn(1, 2, 5, 5, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, requires_grad=True)
    reference = tconv.conv2d(input, weight, padding=1)

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    with Seen() as seen:  # a dispatch mode (shape capture, tracing) must see tconv's ops
        traced = tconv.conv2d(input, weight, padding=1)
    assert torch.ops.tconv.conv.default in seen.ops
    assert torch.equal(traced, reference)

    def refuse(*args):
        raise AssertionError("the eager path went through the custom op")

    for name in ("conv_op", "conv_transpose_op", "conv_weight_grad_op"):
        monkeypatch.setattr(ops, name, refuse)
    output = tconv.conv2d(input, weight, padding=1)
    output.sum().backward()
    assert torch.equal(output, reference)


SYNCS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::lift_fresh", "aten::_to_copy", "aten::tolist"}


@pytest.mark.parametrize("call", [
    lambda x, w, b: tconv.conv2d(x, w, b, stride=2, padding=1),
    lambda x, w, b: convolution("conv2d", 2, x, w, b, 1, 2, 1, 1, "reflect"),
    lambda x, w, b: tconv.conv_transpose2d(x, w.transpose(0, 1), b, stride=2, padding=1, output_padding=1),
    lambda x, w, b: tconv.conv3d(x[..., None].expand(-1, -1, -1, -1, 3), w[..., None], b, padding=(1, 1, 0)),
], ids=["conv2d", "conv2d reflect", "conv_transpose2d", "conv3d"])
def test_repeated_call_makes_no_host_sync_or_copy(call):
    """What CUDA-graph capture needs of the host path, seen on the CPU with the launches
    stubbed: forward and backward of a repeated call issue no `.item()`, no nonzero, no
    tensor built from host data and no copy between devices (dgrad's phase table, for one,
    is on the device once per problem)."""
    input = torch.randn(2, 3, 6, 6, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    bias = torch.randn(4, requires_grad=True)
    with stubbed_launches():
        output = call(input, weight, bias)
        grad = torch.ones_like(output)
        torch.autograd.backward(output, grad)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            torch.autograd.backward(call(input, weight, bias), grad)
    names = {event.name for event in profiler.events()}
    assert "aten::empty" in names or "aten::empty_strided" in names  # the profile saw the call
    assert not names & SYNCS
