"""Bad input gets what torch gives: the same exception type, a message that names the
argument, raised before any kernel runs (the launchers are patched to fail if reached)."""

import pytest
import torch
import torch.nn.functional as F

import tconv
from tconv import _launch

x = torch.randn(2, 4, 8, 8)
w = torch.randn(6, 4, 3, 3)
wt = torch.randn(4, 6, 3, 3)

# (name, function name, args, kwargs, word the message must contain)
CASES = [
    ("unknown padding string", "conv2d", (x, w), {"padding": "foo"}, "padding"),
    ("same with stride", "conv2d", (x, w), {"padding": "same", "stride": 2}, "stride"),
    ("zero stride", "conv2d", (x, w), {"stride": 0}, "stride"),
    ("negative stride", "conv1d", (x[0], w[..., 0]), {"stride": -1}, "stride"),
    ("stride tuple too long", "conv2d", (x, w), {"stride": (1, 1, 1)}, "stride"),
    ("padding tuple too long", "conv2d", (x, w), {"padding": (1, 1, 1)}, "padding"),
    ("negative padding", "conv2d", (x, w), {"padding": -1}, "padding"),
    ("zero dilation", "conv2d", (x, w), {"dilation": 0}, "dilation"),
    ("zero groups", "conv2d", (x, w), {"groups": 0}, "groups"),
    ("groups vs channels", "conv2d", (x, w), {"groups": 3}, "channels"),
    ("out channels not divisible", "conv2d", (x, torch.randn(5, 2, 3, 3)), {"groups": 2}, "groups"),
    ("channel mismatch", "conv2d", (x[:, :3], w), {}, "channels"),
    ("bias length", "conv2d", (x, w, torch.randn(5)), {}, "bias"),
    ("bias rank", "conv2d", (x, w, torch.randn(6, 1)), {}, "bias"),
    ("bias dtype", "conv2d", (x, w, torch.randn(6).double()), {}, "bias"),
    ("weight dtype", "conv2d", (x.double(), w), {}, "weight"),
    ("input rank too small", "conv2d", (x[0, 0], w), {}, "input"),
    ("input rank too large", "conv2d", (x[None], w), {}, "input"),
    ("weight rank", "conv2d", (x, w[0]), {}, "weight"),
    ("kernel larger than padded input", "conv2d", (x[:, :, :2, :2], w), {}, "Kernel size"),
    ("kernel larger than input 3d", "conv3d", (torch.randn(1, 2, 2, 5, 5), torch.randn(3, 2, 3, 3, 3)), {}, "Kernel size"),
    ("float stride", "conv2d", (x, w), {"stride": 1.5}, "stride"),
    ("tensor input type", "conv2d", ([1.0], w), {}, "input"),
    ("transposed output_padding vs stride", "conv_transpose2d", (x, wt), {"stride": 2, "output_padding": 2}, "output padding"),
    ("transposed output_padding stride 1", "conv_transpose1d", (x[0], wt[..., 0]), {"output_padding": 1}, "output padding"),
    ("transposed channel mismatch", "conv_transpose2d", (x[:, :3], wt), {}, "channels"),
    ("transposed groups", "conv_transpose2d", (x, wt), {"groups": 3}, "groups"),
    ("transposed bias", "conv_transpose2d", (x, wt, torch.randn(5)), {}, "bias"),
    ("transposed negative padding", "conv_transpose2d", (x, wt), {"padding": -1}, "padding"),
    ("transposed zero stride", "conv_transpose3d", (x[:1, :, :3, :3, None], wt[:, :2, :2, :2, None]), {"stride": 0}, "stride"),
    ("transposed input rank", "conv_transpose2d", (x[0, 0], wt), {}, "input"),
]


@pytest.fixture(autouse=True)
def no_kernel_launch(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a kernel was reached with bad input")

    monkeypatch.setattr(_launch, "conv_fprop", fail)
    monkeypatch.setattr(_launch, "conv_dgrad", fail)


@pytest.mark.parametrize("name,function,args,kwargs,word", CASES, ids=[c[0] for c in CASES])
def test_bad_input_matches_torch(name, function, args, kwargs, word):
    with pytest.raises(Exception) as theirs:
        getattr(F, function)(*args, **kwargs)
    with pytest.raises(Exception) as ours:
        getattr(tconv, function)(*args, **kwargs)
    assert isinstance(ours.value, type(theirs.value)), (type(ours.value), type(theirs.value), str(theirs.value))
    assert word.lower() in str(ours.value).lower(), str(ours.value)


def test_unsupported_dtype_is_a_clear_not_implemented_error():
    with pytest.raises(NotImplementedError, match="int64"):
        tconv.conv2d(x.long(), w.long())


def test_mismatched_dtypes_raise_plain_runtime_error_as_torch_does():
    """An int input with a float weight: torch's RuntimeError itself, not a subclass."""
    for input, weight in ((x.long(), w), (x, w.long())):
        with pytest.raises(RuntimeError) as theirs:
            F.conv2d(input, weight)
        with pytest.raises(RuntimeError) as ours:
            tconv.conv2d(input, weight)
        assert type(ours.value) is type(theirs.value) is RuntimeError, ours.value
        assert "dtype" in str(ours.value)


def _set(**attributes):
    return lambda module: [setattr(module, name, value) for name, value in attributes.items()]


# (name, constructor kwargs, attributes set after construction, word the message must contain).
# tconv's modules are torch's subclasses, so torch's constructor checks every argument; an
# attribute changed afterwards is checked by the forward pass only, which tconv replaces.
MODULE_ATTRIBUTE_CASES = [
    ("unknown padding_mode", {"padding": 1}, _set(padding_mode="foo"), "padding.mode"),
    ("groups do not divide", {}, _set(groups=4), "groups"),
    ("groups vs in channels", {}, _set(groups=2), "channels"),
    ("zero groups", {}, _set(groups=0), "groups"),
    ("zero stride", {}, _set(stride=(0, 0)), "stride"),
    ("stride tuple too long", {}, _set(stride=(1, 1, 1)), "stride"),
    ("zero dilation", {}, _set(dilation=(0, 0)), "dilation"),
    ("unknown padding string", {}, _set(padding="bar"), "padding"),
    ("same with stride", {"padding": "same"}, _set(stride=(2, 2)), "stride"),
    ("negative padding", {}, _set(padding=(-1, -1)), "padding"),
]
@pytest.mark.parametrize(
    "name,kwargs,change,word",
    [pytest.param(*case, id=case[0]) for case in MODULE_ATTRIBUTE_CASES],
)
def test_module_bad_attribute_is_torch_error(name, kwargs, change, word):
    """A bad module argument (set after construction, past torch's constructor checks) gives
    torch's exception type from forward, with a message naming the argument."""
    _raise_alike(torch.nn.Conv2d(8, 6, 3, **kwargs), tconv.nn.Conv2d(8, 6, 3, **kwargs), change,
                 torch.randn(2, 8, 8, 8), word)


def _raise_alike(theirs_module, ours_module, change, input, word):
    """After `change` on both, tconv's forward raises torch's exception type, naming `word`."""
    for module in (theirs_module, ours_module):
        change(module)
    with pytest.raises(Exception) as theirs:
        theirs_module(input)
    with pytest.raises(type(theirs.value), match=f"(?i){word}"):
        ours_module(input)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_module_bad_attribute_every_dims(dims):
    """The same forward check in every tconv.nn.Conv*d (groups that do not divide C_out)."""
    input = torch.randn(2, 8, *(5,) * dims)
    theirs_module = getattr(torch.nn, f"Conv{dims}d")(8, 6, 3)
    ours_module = getattr(tconv.nn, f"Conv{dims}d")(8, 6, 3)
    for module in (theirs_module, ours_module):
        module.groups = 4
    with pytest.raises(RuntimeError, match="groups") as theirs:
        theirs_module(input)
    with pytest.raises(RuntimeError, match="groups") as ours:
        ours_module(input)
    assert type(ours.value) is type(theirs.value)


@pytest.mark.parametrize(
    "change,word",
    [(_set(groups=3), "groups"), (_set(stride=(0, 0)), "stride"), (_set(output_padding=(2, 2)), "output padding"),
     (_set(padding=(-1, -1)), "padding"), (_set(dilation=(0, 0)), "dilation")],
    ids=["groups", "stride", "output_padding", "padding", "dilation"],
)
def test_transposed_module_bad_attribute_is_torch_error(change, word):
    _raise_alike(torch.nn.ConvTranspose2d(8, 6, 3, stride=2), tconv.nn.ConvTranspose2d(8, 6, 3, stride=2), change,
                 torch.randn(2, 8, 5, 5), word)


@pytest.mark.parametrize("mode,padding", [("reflect", 8), ("circular", 9)])
def test_padding_mode_too_large(mode, padding):
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.Conv2d(4, 6, 3, padding=padding, padding_mode=mode)(x)
    with pytest.raises(RuntimeError, match=mode) as ours:
        tconv.nn.Conv2d(4, 6, 3, padding=padding, padding_mode=mode)(x)
    assert isinstance(ours.value, type(theirs.value))


def test_device_mismatch_named():
    with pytest.raises(RuntimeError, match="device"):
        tconv.conv2d(x, w.to("meta"))


def test_transposed_negative_output_size():
    with pytest.raises(RuntimeError, match="output size"):
        tconv.conv_transpose2d(torch.randn(1, 4, 2, 2), wt, padding=5)
