"""Modules: torch's constructor, parameters and state_dict; convert(); and proof that
no padded copy of the input is made for any padding_mode."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

import tconv
from tconv import _launch
from tconv.testing import assert_close

PAIRS = [
    (torch.nn.Conv1d, tconv.nn.Conv1d, 1),
    (torch.nn.Conv2d, tconv.nn.Conv2d, 2),
    (torch.nn.Conv3d, tconv.nn.Conv3d, 3),
    (torch.nn.ConvTranspose1d, tconv.nn.ConvTranspose1d, 1),
    (torch.nn.ConvTranspose2d, tconv.nn.ConvTranspose2d, 2),
    (torch.nn.ConvTranspose3d, tconv.nn.ConvTranspose3d, 3),
]


@pytest.mark.parametrize("torch_type,ours_type,dims", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_state_dict_round_trip_and_forward(torch_type, ours_type, dims):
    kwargs = dict(stride=2, padding=1, groups=2, bias=True, dtype=torch.float64)
    theirs = torch_type(4, 6, 3, **kwargs)
    ours = ours_type(4, 6, 3, **kwargs)
    assert isinstance(ours, torch_type)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(ours.state_dict()[k].shape == v.shape for k, v in theirs.state_dict().items())
    ours.load_state_dict(theirs.state_dict())  # torch -> tconv
    input = torch.randn(2, 4, *(5,) * dims, dtype=torch.float64)
    assert_close(ours(input), theirs(input), torch.float64)
    back = torch_type(4, 6, 3, **kwargs)
    back.load_state_dict(ours.state_dict())  # tconv -> torch
    assert_close(back(input), theirs(input), torch.float64)


def test_constructor_device_dtype_and_init_match_torch():
    torch.manual_seed(3)
    theirs = torch.nn.Conv2d(3, 5, (2, 3), padding="same", padding_mode="reflect", device="cpu", dtype=torch.float16)
    torch.manual_seed(3)
    ours = tconv.nn.Conv2d(3, 5, (2, 3), padding="same", padding_mode="reflect", device="cpu", dtype=torch.float16)
    assert ours.weight.dtype == torch.float16
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    assert repr(ours).replace("tconv.nn.", "") == repr(theirs)


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.body = torch.nn.Sequential(
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
            torch.nn.Conv2d(8, 16, 1),
        )
        self.up = torch.nn.ConvTranspose2d(16, 4, 4, stride=2, padding=1)
        self.head = torch.nn.Conv1d(4, 2, 3, padding="same")

    def forward(self, x):
        y = self.up(self.body(self.stem(x)))
        return self.head(y.flatten(2))


def test_convert_small_model():
    model = SmallNet().double()
    input = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = model(input)
    weight = model.stem.weight
    assert tconv.nn.convert(model) is model
    types = [type(m) for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert types == [tconv.nn.Conv2d, tconv.nn.Conv2d, tconv.nn.Conv2d, tconv.nn.ConvTranspose2d, tconv.nn.Conv1d]
    assert model.stem.weight is weight  # same parameters: an optimizer keeps working
    assert_close(model(input), expected, torch.float64)


def test_convert_leaves_user_subclasses_alone():
    class MyConv(torch.nn.Conv2d):
        pass

    model = torch.nn.Sequential(MyConv(2, 2, 1))
    tconv.nn.convert(model)
    assert type(model[0]) is MyConv


class AtenLog(TorchDispatchMode):
    """Records every aten op; kernel launches are recorded as one entry with the tensors
    they receive (the interpreter's own host-copy mechanics are not logged)."""

    def __init__(self):
        super().__init__()
        self.ops = []
        self.launches = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_no_padded_copy_for_any_padding_mode(mode, dims, monkeypatch):
    def no_pad(*args, **kwargs):
        raise AssertionError("F.pad was called")

    monkeypatch.setattr(F, "pad", no_pad)
    log = AtenLog()
    original_getitem = _launch._CpuKernel.__getitem__

    def logged_getitem(self, grid):
        launch = original_getitem(self, grid)

        def run(*args, **kwargs):
            log.launches.append([a for a in args if isinstance(a, torch.Tensor)])
            with _disable_current_modes():
                return launch(*args, **kwargs)

        return run

    monkeypatch.setattr(_launch._CpuKernel, "__getitem__", logged_getitem)
    module = getattr(tconv.nn, f"Conv{dims}d")(3, 4, 3, padding=2, padding_mode=mode)
    input = torch.randn(2, 3, *(5,) * dims)
    with torch.no_grad(), log:
        output = module(input)
    # The module dispatches exactly one op, tconv::conv (no pad, no copy, no aten
    # convolution around it), which makes one launch that reads the caller's input itself
    # (same memory, same shape) and writes the returned output directly.
    assert log.ops == ["conv"], log.ops
    assert len(log.launches) == 1
    kernel_input, _, _, kernel_output = log.launches[0][:4]  # input, weight, bias, output
    assert kernel_input.data_ptr() == input.data_ptr() and kernel_input.shape == input.shape
    assert kernel_output.data_ptr() == output.data_ptr()
    torch_module = getattr(torch.nn, f"Conv{dims}d")(3, 4, 3, padding=2, padding_mode=mode, dtype=torch.float64)
    monkeypatch.undo()
    torch_module.load_state_dict(module.state_dict())
    assert_close(output, torch_module(input.double()), torch.float32)


def test_module_padding_changed_after_construction_is_used():
    """torch's forward reads module.padding at every call; so does tconv's."""
    input = torch.randn(1, 3, 6, 6)
    theirs, ours = torch.nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64), tconv.nn.Conv2d(3, 4, 3, padding=1)
    ours.load_state_dict(theirs.state_dict())
    theirs.padding = ours.padding = (2, 2)
    assert_close(ours(input), theirs(input.double()), torch.float32)
