"""Config spaces, pruning, the heuristic, the tuned-config cache, model capture and
`tconv tune --dry-run`."""

import copy
import json
import math
import multiprocessing
import os
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from tconv.perf.suites import SUITES, layer_spec

import tconv
from tconv import _launch, cache, cli
from tconv.configs import FAMILIES, KERNELS, SHARED_LIMIT, KernelConfig, config_space, heuristic_config, prune, shared_bytes
from tconv.descriptors import FPROP
from tconv.descriptors import KERNELS as DESCRIPTORS
from tconv.descriptors.base import make_operands
from tconv.spec import conv_spec, forward_spec, pass_specs
from tconv.testing import TOLERANCE, assert_close
from tconv.tune import capture_layers

ALL_LAYERS = [layer for suite, layers in SUITES.items() for layer in layers]


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TCONV_CACHE_DIR", str(tmp_path))
    cache.forget()
    yield tmp_path
    cache.forget()


def _spec(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    dims = len(input_shape) - 2
    input = torch.empty(input_shape, device="meta")
    weight = torch.empty(weight_shape, device="meta")
    return conv_spec(f"conv{dims}d", dims, input, weight, None, stride, padding, dilation, groups)[0]


# ----------------------------------------------------------------------- pruning
def test_pruning_drops_tiles_far_larger_than_the_problem():
    spec = _spec((1, 3, 4, 4), (16, 3, 3, 3), padding=1)  # 16 rows, 16 columns, 3 channels
    # fprop packs its 9 taps x 3 channels into a K of 27; dgrad reduces 16 channels per tap
    for kernel, largest_k in (("fprop", 32),):  # dgrad (3 outputs) is elementwise
        kernel_spec = pass_specs(spec)[kernel][1]
        candidates = prune(kernel, kernel_spec, torch.float16, "sm_90")
        assert candidates and max(c.block_k for c in candidates) == largest_k
        assert all(c.block_m <= 32 and c.block_n == 16 and c.block_k <= largest_k for c in candidates), candidates
    big = _spec((8, 256, 28, 28), (256, 256, 3, 3), padding=1)
    assert len(prune("fprop", big, torch.float16, "sm_90")) > len(prune("fprop", spec, torch.float16, "sm_90"))
    assert any(c.block_m == 128 for c in prune("fprop", big, torch.float16, "sm_90"))


def test_pruning_respects_shared_memory_and_tl_dot(monkeypatch):
    big = _spec((8, 256, 28, 28), (256, 256, 3, 3), padding=1)
    for family in FAMILIES:
        for dtype in (torch.float16, torch.float32, torch.float64):
            for kernel in KERNELS:
                for config in prune(kernel, big, dtype, family):
                    assert shared_bytes(config, dtype) <= SHARED_LIMIT[family]
                    assert min(config.block_m, config.block_n, config.block_k) >= 16
    full = prune("fprop", big, torch.float32, "sm_90")
    monkeypatch.setitem(SHARED_LIMIT, "sm_90", 40 * 1024)
    limited = prune("fprop", big, torch.float32, "sm_90")
    assert 0 < len(limited) < len(full)
    assert all(shared_bytes(c, torch.float32) <= 40 * 1024 for c in limited)


def test_pruning_drops_empty_wgrad_splits():
    spec = _spec((1, 16, 8, 8), (16, 16, 3, 3), padding=1)  # 64 positions to reduce
    candidates = prune("wgrad", spec, torch.float16, "sm_90")
    assert candidates and all(c.split_k * c.block_k <= 64 for c in candidates)
    assert {c.split_k for c in candidates} == {0, 1}


def test_register_rule_bounds_the_accumulator_per_thread():
    """Every space config keeps its fp32 accumulator (fp64: two registers an element)
    within the dtype's budget per thread, and the rule is what shrinks the wide spaces."""
    from tconv.configs import MAX_ACCUMULATOR_REGISTERS

    for kernel in KERNELS:
        for family in FAMILIES:
            half = config_space(kernel, family, False, torch.float16)
            for dtype in (torch.float32, torch.float64):
                wide = config_space(kernel, family, False, dtype)
                # (tap runs and chunked K steps are shorter where the elements are wider)
                half_tiles = {replace(c, tap_run=1, k_step=0) for c in half}
                wide_tiles = {replace(c, tap_run=1, k_step=0) for c in wide}
                assert wide_tiles <= half_tiles, (kernel, family, dtype)
                assert wide_tiles < half_tiles or family == "fallback", (kernel, family, dtype)  # fallback: small tiles only
                for c in wide:
                    registers = c.block_m * c.block_n * (2 if dtype == torch.float64 else 1) / (32 * c.num_warps)
                    assert registers <= MAX_ACCUMULATOR_REGISTERS["wide"], (kernel, family, dtype, c)
            if family != "fallback" and kernel != "wgrad":  # the big GEMM tiles reach the 16-bit budget exactly
                assert max(c.block_m * c.block_n / (32 * c.num_warps) for c in half) == MAX_ACCUMULATOR_REGISTERS["16-bit"]
    # The tiles Hopper and Ampere GEMMs use are in the dense spaces.
    for family, stages in (("sm_90", 3), ("sm_80", 3)):
        tiles = {(c.block_m, c.block_n, c.block_k, c.num_warps) for c in config_space("fprop", family) if c.num_stages == stages}
        assert {(128, 128, 64, 8), (128, 256, 64, 8), (256, 128, 64, 8), (64, 256, 64, 8)} <= tiles, family


# ---------------------------------------------------------------------- heuristic
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.slow),
                                   torch.float32, torch.float64], ids=str)  # (bf16: slow, fp16's twin)
@pytest.mark.parametrize("family", FAMILIES)
def test_heuristic_is_deterministic_and_in_the_pruned_space(family, dtype):
    """For every pass of every perf-suite layer: the same pick every time, and one the
    tuner could have chosen (a weight gradient's with the split count for the family's SMs
    written in: Descriptor.with_sms)."""
    from tconv.configs import SMS

    for layer in ALL_LAYERS:
        for pass_name, (kernel, spec) in pass_specs(layer_spec(layer)).items():
            for layout in ("channels_last", "contiguous"):
                config = heuristic_config(kernel, spec, dtype, family, layout)
                heuristic_config.cache_clear()
                assert heuristic_config(kernel, spec, dtype, family, layout) == config
                candidates = prune(kernel, spec, dtype, family)
                automatic = replace(config, split_k=0)
                assert config in candidates or (
                    automatic in candidates and DESCRIPTORS[kernel].with_sms(spec, automatic, SMS[family]) == config
                ), (layer.name, pass_name, dtype, config)



@pytest.mark.parametrize("family", ["sm_90", "sm_80"])
def test_heuristic_keeps_tile_padding_within_the_gemm_view(family):
    """Channel counts that 128-wide tiles pad (320 = 2.5 x 128) take tiles that divide them
    when one scores about as well: the weight gradient of a 320-channel 3x3x3 layer took
    128x128 tiles, 1.44x its GEMM view's multiply-adds, on sm_90. The GEMM view counts the
    taps that land in zero padding, which every implicit GEMM multiplies."""
    from tconv.perf.roofline import gemm_macs

    for channels, size in ((320, 8), (640, 32), (96, 28)):
        dims = 3 if size <= 8 else 2
        spec = _spec((2, channels, *(size,) * dims), (channels, channels, *(3,) * dims), padding=1)
        for kernel, pass_spec in pass_specs(spec).values():
            config = heuristic_config(kernel, pass_spec, torch.float16, family)
            executed = DESCRIPTORS[kernel].executed_macs(pass_spec, config)
            assert executed <= 1.05 * gemm_macs(pass_spec), (channels, kernel, family, config)


@pytest.mark.parametrize("family", ["sm_90", "sm_80"])
def test_heuristic_pads_rather_than_take_a_tile_far_below_the_best(family):
    """48 channels a side fit no power-of-two tile wider than 16 without padding: a 3x3x3
    forward and input gradient took 32x16x16 (one tensor-core instruction a step, share
    0.061 on sm_90). The unpadded tiles are preferred only while one scores at least
    LEAN_SCORE_FLOOR of the best (configs.heuristic_config); here a 64-wide N tile wins, and
    the work it executes stays within the tile padding of one 64-wide tile over 48 channels."""
    from tconv.perf.roofline import gemm_macs

    from tconv.configs import HEURISTIC_SHORTLIST, LEAN_SCORE_FLOOR

    assert 0 < LEAN_SCORE_FLOOR < 1
    spec = _spec((2, 48, 32, 32, 32), (48, 48, 3, 3, 3), padding=1)
    for kernel in ("fprop", "dgrad"):
        pass_spec = pass_specs(spec)[kernel][1]
        config = heuristic_config(kernel, pass_spec, torch.float16, family)
        shares = {entry[:4]: entry[5] for entry in HEURISTIC_SHORTLIST[(kernel, family)]}
        tile = (config.block_m, config.block_n, config.block_k, config.num_warps)
        assert config.block_n == 64 and shares[tile] >= 0.7, (kernel, family, config)
        executed = DESCRIPTORS[kernel].executed_macs(pass_spec, config)
        assert executed <= 64 / 48 * 1.05 * gemm_macs(pass_spec), (kernel, family, config)

@pytest.mark.parametrize("family", ["sm_90", "sm_80", "fallback"])
def test_wgrad_split_fills_the_family_waves(family):
    """The heuristic's weight-gradient split makes at least FULL_WAVES waves of the family's
    SMs (unless the layer's positions cap it), at most one more, filled to 0.9 or better on
    these layers; a launch without a split count in its config (the interpreter's, an
    H100's) chooses the same for 132 SMs."""
    from tconv.configs import FULL_WAVES, SMS
    from tconv.descriptors.wgrad import MAX_SPLITS, MIN_STEPS_PER_SPLIT

    sms = SMS[family]
    for input_shape, weight_shape, stride in (((32, 128, 28, 28), (128, 128, 3, 3), 1),
                                              ((32, 256, 56, 56), (128, 256, 1, 1), 2),
                                              ((2, 320, 32, 32), (640, 320, 3, 3), 1),
                                              ((32, 512, 7, 7), (2048, 512, 1, 1), 1)):
        spec = _spec(input_shape, weight_shape, stride, padding=1 if weight_shape[-1] == 3 else 0)
        _, wgrad_spec = pass_specs(spec)["wgrad"]
        config = heuristic_config("wgrad", wgrad_spec, torch.float16, family)
        descriptor = DESCRIPTORS["wgrad"]
        tiles = math.prod(descriptor.tiles(wgrad_spec, config))
        splits = descriptor.grid(wgrad_spec, config)[-1]
        programs = tiles * splits
        rows = descriptor.extents(wgrad_spec)[2]
        capped = math.ceil(FULL_WAVES * sms / tiles) >= min(MAX_SPLITS, rows // (MIN_STEPS_PER_SPLIT * config.block_k))
        assert splits == descriptor.split(wgrad_spec, replace(config, split_k=0), sms)[0], (family, config)
        assert programs < (FULL_WAVES + 1) * sms + tiles, (family, config, tiles, splits)
        if not capped:  # (splits hold whole K steps of at least MIN_STEPS_PER_SPLIT: rounding keeps >= 8/9 of them)
            assert programs >= 8 / 9 * FULL_WAVES * sms, (family, config, tiles, splits)
            assert programs / (math.ceil(programs / sms) * sms) >= 0.9, (family, config, tiles, splits)
        if family == "sm_90":
            assert config.split_k == 0, config


# ---------------------------------------------- every config of every space is correct
def _space_tiles():
    """Every distinct config the interpreter can tell apart (warps and stages only change
    GPU code generation), over every space, family and dtype; a tile with its longest tap
    run (the problems below are 3 taps wide, so shorter runs take one tap, as tiles that
    fit no run do)."""
    seen = {}
    for kernel in KERNELS:
        for depthwise in (False, True):
            for family in FAMILIES:
                for dtype in (torch.float16, torch.float32, torch.float64):
                    for config in config_space(kernel, family, depthwise, dtype):
                        tile = KernelConfig(config.block_m, config.block_n, config.block_k, config.group_m,
                                            split_k=config.split_k)
                        key = (kernel, depthwise, tile)
                        seen[key] = max(seen.get(key, 1), config.tap_run)
    return [(kernel, depthwise, replace(tile, tap_run=run)) for (kernel, depthwise, tile), run in seen.items()]


SPACE_TILES = _space_tiles()


def _tile_problem(kernel: str, depthwise: bool, even: bool | str = False):
    if even == "packed":  # two groups of 3 input channels: 27 (tap, channel) pairs, packed
        layer = forward_spec((2, 6, 7, 5), (32, 3, 3, 3), (2, 1), (1, 1), (1, 1), (1, 1), 2)
        assert layer.packed_channels == 3
    elif even == "small":  # four groups of 4 input and 4 output channels: 4 lanes per output channel
        layer = forward_spec((2, 16, 7, 5), (16, 4, 3, 3), (2, 1), (1, 1), (1, 1), (1, 1), 4)
        assert layer.elementwise_lanes == 4
    elif even == "lines":  # an 8x8 output plane (stride 2, padding before the input): wgrad K steps of whole lines
        layer = forward_spec((1, 24, 16, 16), (24, 12, 3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 2)
    elif even == "folded":  # 24 channels, one group: the width folds into K (72 (kw, channel) pairs a row)
        layer = forward_spec((2, 24, 7, 5), (16, 24, 3, 3), (2, 1), (1, 1), (1, 1), (1, 1), 1)
        assert FPROP.folded_channels(layer) == 24
    elif even:  # whole channel blocks of every BLOCK_K (the loops' EVEN_K path), stride-2 phases
        layer = forward_spec((2, 64, 5, 6), (64, 64, 3, 3), (2, 1), (1, 1), (1, 1), (1, 1), 1)
    elif depthwise:
        layer = forward_spec((1, 20, 7, 5), (20, 1, 3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 20)
    elif kernel == "wgrad":  # 30 positions: split-K parts of 1 and 2 K steps
        layer = forward_spec((2, 24, 6, 5), (24, 12, 3, 3), (2, 1), (1, 1), (1, 1), (1, 1), 2)
    else:  # two groups; 36 rows (ragged 32-row tiles), 17 channels (two blocks of 16), 16 columns (tensor cores)
        layer = forward_spec((2, 34, 5, 6), (32, 17, 3, 3), (2, 1), (1, 1), (1, 1), (1, 1), 2)
    return pass_specs(layer)[kernel][1]


# Dense fprop/dgrad tiles also run on channels_last operands with whole channel blocks, and
# the kernels that pack thin groups' taps (fprop's K, wgrad's N) on each (BLOCK_N, BLOCK_K);
# elementwise tiles also reduce small groups' lanes.
_PACKED_TILES = {(k, c.block_n, c.block_k): c for k, d, c in SPACE_TILES if k in ("fprop", "wgrad") and not d}
SPACE_CASES = [(k, d, c, False) for k, d, c in SPACE_TILES] + [
    (k, d, c, True) for k, d, c in SPACE_TILES if k != "wgrad" and not d] + [
    (k, False, c, "packed") for (k, _, _), c in _PACKED_TILES.items()] + [
    ("fprop", False, c, "folded") for k, d, c in SPACE_TILES if k == "fprop" and not d] + [
    ("wgrad", False, c, "lines") for k, d, c in SPACE_TILES
    if k == "wgrad" and not d and c.block_k <= 64 and not c.split_k] + [  # (the split counts run above)
    (k, True, c, "small") for k, d, c in SPACE_TILES if d]
_MODES = {False: "", True: "-even", "packed": "-packed", "small": "-small", "folded": "-folded", "lines": "-lines"}
# A weight gradient's split counts cut its K (positions) alone, whatever the tile's M and N:
# each count runs on every BLOCK_K with the narrowest tile of its mode, on the others (slow) too.
def _narrowest_tiles() -> dict:
    narrowest = {}
    for kernel, depthwise, config, even in SPACE_CASES:
        tile = (config.block_m, config.block_n)
        narrowest[kernel, depthwise, even] = min(narrowest.get((kernel, depthwise, even), tile), tile)
    return narrowest


_NARROWEST = _narrowest_tiles()


def _space_case(kernel, depthwise, config, even):
    wider = config.split_k and (config.block_m, config.block_n) != _NARROWEST[kernel, depthwise, even]
    return pytest.param(kernel, depthwise, config, even, marks=[pytest.mark.slow] if wider else [],
                        id=f"{kernel}-{'dw' if depthwise else 'dense'}{_MODES[even]}-{config}")


@pytest.mark.parametrize("kernel,depthwise,config,even", [_space_case(*case) for case in SPACE_CASES])
def test_every_space_config_is_correct(kernel, depthwise, config, even):
    spec = _tile_problem(kernel, depthwise, even)
    descriptor = DESCRIPTORS[kernel]
    # (folded: the dense run; lines: the flat grad_output)
    layout = "channels_last" if even in (True, "folded", "lines") else "contiguous"
    if even == "lines":
        from tconv.descriptors.wgrad import line_steps

        assert line_steps(spec, config, (1, *spec.out_size), False, True), config
    operands = make_operands(descriptor, spec, torch.float32, layout,
                             torch.device("cpu"))
    actual = _launch.run(descriptor, spec, config, operands)[descriptor.result]
    first, second = (t for t in operands.values() if isinstance(t, torch.Tensor))
    stride, pad, dilation, groups = list(spec.stride), list(spec.pad_before), list(spec.dilation), spec.groups
    if kernel == "fprop":
        expected = F.conv2d(first.double(), second.double(), None, stride, pad, dilation, groups)
    elif kernel == "dgrad":
        expected = F.conv_transpose2d(first.double(), second.double(), None, stride, pad, list(spec.output_padding),
                                      groups, dilation)
    else:
        weight = torch.zeros(spec.out_channels, spec.in_channels_per_group, *spec.kernel_size, dtype=torch.float64,
                             requires_grad=True)
        output = F.conv2d(first.double(), weight, None, stride, pad, dilation, groups)
        (expected,) = torch.autograd.grad(output, weight, second.double())
    assert_close(actual, expected, torch.float32)


# ------------------------------------------------------------------------- cache
def _recording_grids(monkeypatch):
    """The configs of every fprop launch from now on (the launchers' memo of earlier calls
    is dropped with the cache generation, so every pass launches through `launch` once)."""
    cache.forget()
    used = []
    original = _launch.launch

    def record(kernel, spec, config, tensors):
        if kernel.name == "fprop":
            used.append(config)
        return original(kernel, spec, config, tensors)

    monkeypatch.setattr(_launch, "launch", record)
    return used


def test_cache_round_trip_is_read_by_the_ops(cache_folder, monkeypatch):
    input, weight = torch.randn(2, 6, 9, 9), torch.randn(10, 6, 3, 3)
    spec = conv_spec("conv2d", 2, input, weight, None, 1, 1, 1, 1)[0]
    tuned = KernelConfig(32, 16, 16, group_m=4, num_warps=4, num_stages=2)
    assert tuned != heuristic_config("fprop", spec, torch.float32, layout="contiguous")
    key = cache.entry_key("fprop", spec, torch.float32, "contiguous")
    path = cache.store(torch.device("cpu"), {key: {**tuned.as_dict(), "ms": 0.5}})
    assert path.startswith(str(cache_folder)) and os.path.exists(path)
    cache.forget()  # read back from disk, as a new process would
    used = _recording_grids(monkeypatch)
    output = tconv.conv2d(input, weight, padding=1)
    assert used == [tuned]
    assert_close(output, F.conv2d(input.double(), weight.double(), padding=1), torch.float32)
    # A layout the cache has no entry for falls back to the heuristic.
    tconv.conv2d(input.to(memory_format=torch.channels_last), weight, padding=1)
    assert used[-1] == heuristic_config("fprop", spec, torch.float32)


def _writer(folder: str, worker: int) -> None:
    os.environ["TCONV_CACHE_DIR"] = folder
    cache.forget()
    for index in range(10):
        cache.store(torch.device("cpu"), {f"worker{worker}-entry{index}": KernelConfig(16, 16, 16).as_dict()})


def test_concurrent_writers_keep_every_entry(cache_folder):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_writer, args=(str(cache_folder), worker)) for worker in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    cache.forget()
    entries = cache.entries(torch.device("cpu"))
    assert len(entries) == 40
    assert not [name for name in os.listdir(cache_folder) if name.endswith(".tmp")]


def test_corrupt_cache_warns_and_falls_back(cache_folder, monkeypatch):
    path = cache.cache_path(torch.device("cpu"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        file.write('{"format": 1, "entries": {"trunc')
    used = _recording_grids(monkeypatch)
    input, weight = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)
    with pytest.warns(UserWarning, match="unreadable tuned-config cache"):
        output = tconv.conv2d(input, weight)
    spec = conv_spec("conv2d", 2, input, weight, None, 1, 0, 1, 1)[0]
    assert used == [heuristic_config("fprop", spec, torch.float32, layout="contiguous")]
    assert_close(output, F.conv2d(input.double(), weight.double()), torch.float32)
    # Storing over a corrupt file replaces it with a valid one.
    cache.store(torch.device("cpu"), {"k": KernelConfig(16, 16, 16).as_dict()})
    with open(path) as file:
        assert json.load(file)["entries"]["k"]["block_m"] == 16


def test_version_change_invalidates(cache_folder, monkeypatch):
    cpu = torch.device("cpu")
    cache.store(cpu, {"key": KernelConfig(16, 16, 16).as_dict()})
    old_path = cache.cache_path(cpu)
    monkeypatch.setattr(tconv, "__version__", "9.9.9")
    cache.forget()
    assert cache.cache_path(cpu) != old_path
    assert cache.entries(cpu) == {}
    # A file carried over under the new name still says which versions wrote it: stale.
    os.replace(old_path, cache.cache_path(cpu))
    cache.forget()
    with pytest.warns(UserWarning, match="stale tuned-config cache"):
        assert cache.entries(cpu) == {}


def test_autotune_without_gpu_warns_and_uses_the_heuristic(cache_folder, monkeypatch):
    monkeypatch.setenv("TCONV_AUTOTUNE", "1")
    input, weight = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)
    with pytest.warns(UserWarning, match="TCONV_AUTOTUNE=1 needs a CUDA device"):
        output = tconv.conv2d(input, weight)
    assert_close(output, F.conv2d(input.double(), weight.double()), torch.float32)
    assert cache.entries(torch.device("cpu")) == {}


# ----------------------------------------------------------- pass specs and capture
def _launched_problems(monkeypatch):
    cache.forget()  # a memoised pass would not ask choose_config again
    seen = []
    original = _launch.choose_config

    def record(kernel, spec, tensor, operands):
        seen.append((kernel.name, spec))
        return original(kernel, spec, tensor, operands)

    monkeypatch.setattr(_launch, "choose_config", record)
    return seen


@pytest.mark.parametrize("make", [
    lambda: torch.nn.Conv2d(4, 6, 3, stride=2, padding=1),
    lambda: torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, padding_mode="reflect"),
    lambda: torch.nn.Conv1d(4, 4, 5, padding=2, groups=4),
    lambda: torch.nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1),
], ids=["conv", "reflect", "depthwise1d", "transposed"])
def test_pass_specs_are_what_training_launches(make, monkeypatch):
    """The tuner and the bench key their problems by pass_specs; training must launch
    exactly those problems, or tuned entries would never be found."""
    module = make()
    input = torch.randn(2, 4, *([7] * (module.weight.dim() - 2)), requires_grad=True)
    (captured,) = capture_layers(copy.deepcopy(module), input.shape)
    module = tconv.nn.convert(torch.nn.Sequential(module))[0]
    seen = _launched_problems(monkeypatch)
    module(input).sum().backward()
    assert sorted(seen, key=str) == sorted(pass_specs(captured.spec).values(), key=str)


def test_capture_finds_every_conv_layer_on_meta():
    from tconv.testing import small_model

    model = small_model()
    layers = capture_layers(model, (2, 3, 16, 16))
    names = [layer.name for layer in layers]
    assert names == ["0", "2", "3", "4", "5"]
    specs = [layer.spec for layer in layers]
    assert specs[0] == forward_spec((2, 3, 16, 16), (8, 3, 3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 1)
    assert specs[1] == forward_spec((2, 8, 16, 16), (8, 8, 3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 1, "reflect")
    assert specs[2].out_size == (8, 8) and specs[3].depthwise
    assert specs[4].transposed and specs[4].out_size == (16, 16) and specs[4].in_channels == 16
    # The model itself was not run on real memory, and tconv models capture the same way.
    assert all(p.device.type == "meta" for p in model.parameters())
    converted = capture_layers(tconv.nn.convert(small_model()), (2, 3, 16, 16))
    assert [layer.spec for layer in converted] == specs


def test_resnet18_has_torchvisions_conv_layers():
    from tconv.testing import resnet18

    model = resnet18()
    # torchvision's resnet18() has 11,689,512 parameters; the same structure has the same count.
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    layers = capture_layers(model, (8, 3, 224, 224))
    assert len(layers) == 20  # stem, 16 3x3 convs, 3 strided 1x1 projections
    assert layers[0].spec == forward_spec((8, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3), (3, 3), (1, 1), 1)
    assert layers[-1].spec.out_size == (7, 7) and layers[-1].spec.out_channels == 512
    assert sum(layer.spec.kernel_size == (1, 1) for layer in layers) == 3


def test_capture_sees_functional_calls():
    class Functional(torch.nn.Module):
        def forward(self, x):
            return F.conv1d(x, torch.ones(5, 4, 3, device=x.device), stride=2)

    (layer,) = capture_layers(Functional(), (3, 4, 20))
    assert layer.name == "(functional)"
    assert layer.spec == forward_spec((3, 4, 20), (5, 4, 3), (2,), (0,), (0,), (1,), 1)


# --------------------------------------------------------------------- tconv tune
def test_tune_dry_run_lists_and_compiles_every_layer(capsys):
    code = cli.main(["tune", "--dry-run", "--model", "tconv.testing:small_model", "--input-shape", "2,3,16,16",
                     "--ops", "fprop", "--dtypes", "float16", "--arch", "90", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "5 conv calls, 5 unique problems" in out
    for name in ("0 fprop", "2 fprop", "3 fprop", "4 fprop", "5 fprop"):
        assert f"  for: {name}\n" in out
    # each problem's header gives its kernel, dtype and shapes
    assert "fprop kernel, float16: input 2x3x16x16, weight 8x3x3x3 -> output 2x8x16x16; stride 1x1, padding 1x1" in out
    assert out.count("keep:") >= 5 and "No GPU timing was taken" in out
    kept = int(out.split(" candidates kept")[0].rsplit("\n", 1)[-1])
    assert kept == out.count("keep:")


def test_tune_lists_all_passes_without_compiling(capsys):
    code = cli.main(["tune", "--dry-run", "--no-compile", "--model", "tconv.testing:small_model",
                     "--input-shape", "2,3,16,16", "--dtypes", "float16,float32"])
    out = capsys.readouterr().out
    assert code == 0 and "15 unique problems x 2 dtypes" in out
    assert out.count("candidates for sm_90") == 30
    assert "split auto (" in out  # the weight gradient's automatic split-K is named, with its count


def test_tolerances_cover_tf32_in_the_tuner_gate():
    from tconv.tune import _close

    reference = torch.randn(100, dtype=torch.float32)
    assert _close(reference + 1e-3 * reference.abs().max(), reference, torch.float32)
    assert not _close(reference + 0.1 * reference.abs().max(), reference, torch.float32)
    # TF32 rounds operands to 10 mantissa bits: an fp16-sized error must pass the gate.
    assert _close(reference + 1.5 * TOLERANCE[torch.float16] * reference.abs().max(), reference, torch.float32)
