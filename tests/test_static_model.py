"""The compile is the launch, and the main loop read from its SASS: tconv.aot and tconv.sass.

Compiles run for sm_80/sm_90 on the CPU (no GPU needed); every check here can fail if
the AOT path drifts from what a CUDA launch would compile, or if the SASS reading
drifts from the static model's definitions (../shared/STATIC_MODEL.md)."""

import ast
import inspect

import pytest
import torch
from tconv.perf.suites import SUITES, Layer, layer_spec
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import make_backend
from triton.runtime.jit import create_function_from_signature

from tconv import _launch, aot, configs, sass, tune
from tconv.configs import KernelConfig, copies_pay, heuristic_config
from tconv.descriptors import COPIES, KERNELS
from tconv.spec import pass_specs

SASS_SNIPPET = """
        /*0100*/                   IMAD R1, R2, R3, R4 ;
        /*0110*/                   LDGSTS.E.BYPASS.128 [R5], desc[UR4][R6.64], P1 ;
        /*0120*/                   LDG.E.U16 R7, desc[UR4][R8.64] ;
        /*0130*/                   HGMMA.64x64x16.F32 R24, gdesc[UR8], R24 ;
        /*0140*/               @P3 BRA 0x110 ;
        /*0150*/                   LDG.E.64 R9, desc[UR4][R10.64] ;
        /*0160*/                   BRA 0x150 ;
        /*0170*/                   EXIT ;
        /*0180*/                   BRA 0x180;
"""


def test_sass_main_loop_is_the_innermost_tensor_core_loop():
    loop = sass.main_loop(SASS_SNIPPET)
    assert loop.instructions == 4  # 0x110 .. 0x140 inclusive
    assert loop.tensor_core_instructions == 1
    assert dict(loop.global_loads) == {128: 1, 16: 1}
    assert loop.async_copies == 1 and loop.load_bits == 16
    # Without tensor-core instructions: the innermost loop with global loads (0x150..0x160).
    loop = sass.main_loop(SASS_SNIPPET.replace("HGMMA.64x64x16.F32", "FFMA"))
    assert loop.tensor_core_instructions == 0 and loop.instructions == 2 and dict(loop.global_loads) == {64: 1}


UNROLLED_SNIPPET = "".join(
    f"""
        /*{0x100 + 0x40 * step:04x}*/                   LDGSTS.E.BYPASS.128 [R5], desc[UR4][R6.64] ;
        /*{0x110 + 0x40 * step:04x}*/                   IADD3 R1, R1, 0x10, RZ ;
        /*{0x120 + 0x40 * step:04x}*/                   WARPGROUP.ARRIVE ;
        /*{0x130 + 0x40 * step:04x}*/                   HGMMA.64x64x16.F32 R24, gdesc[UR8], R24 ;""" for step in range(6)
) + """
        /*0300*/                   EXIT ;
        /*0310*/                   BRA 0x310;
"""


def test_sass_reads_a_k_loop_unrolled_whole():
    """No loop holds tensor-core instructions (a constant trip count, unrolled): the steps are
    read from the straight-line code, a step issuing what one iteration of the same tile's
    loop issues; fewer than three steps say nothing."""
    assert sass.main_loop(UNROLLED_SNIPPET) is None
    loop = sass.unrolled_loop(UNROLLED_SNIPPET, 1)
    assert loop.unrolled and loop.instructions == 4 and loop.tensor_core_instructions == 1
    assert dict(loop.global_loads) == {128: 1} and loop.async_copies == 1
    assert sass.unrolled_loop(UNROLLED_SNIPPET, 2).instructions == 8  # 3 steps of 2 HGMMA
    assert sass.unrolled_loop(UNROLLED_SNIPPET, 3) is None  # 2 steps


STAGED_TAPS_SNIPPET = """
        /*0100*/                   LDG.E.U16 R2, desc[UR4][R4.64] ;
        /*0110*/                   STG.E.64 desc[UR4][R6.64], R2 ;
        /*0120*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;""" + "".join(
    f"""
        /*{0x130 + 0x40 * step:04x}*/                   LDG.E.128 R8, desc[UR4][R10.64] ;
        /*{0x140 + 0x40 * step:04x}*/                   LDG.E.128 R12, desc[UR4][R14.64+0x40] ;
        /*{0x150 + 0x40 * step:04x}*/                   FFMA R16, R8, R12, R16 ;
        /*{0x160 + 0x40 * step:04x}*/                   FFMA R17, R9, R13, R17 ;""" for step in range(4)
) + """
        /*0330*/                   STG.E.128 desc[UR4][R18.64], R16 ;
        /*0340*/                   EXIT ;
        /*0350*/                   BRA 0x350;
"""


def test_sass_reads_elementwise_taps_unrolled_whole():
    """An elementwise kernel whose tap loop is unrolled whole (no loop holds a load): the
    steps follow the weight stage's barrier (the first after a global store; the stage's
    one-element loads are not the loop's), counted from the first step's first global load
    to the last step's over taps - 1 steps; an epilogue's barrier (before the output's
    stores) does not end the steps."""
    assert sass.main_loop(STAGED_TAPS_SNIPPET) is None
    loop = sass.unrolled_taps(STAGED_TAPS_SNIPPET, 4)
    assert loop.unrolled and loop.tensor_core_instructions == 0
    assert loop.instructions == 4 and dict(loop.global_loads) == {128: 2} and loop.load_bits == 128
    no_stage = STAGED_TAPS_SNIPPET.replace("BAR.SYNC.DEFER_BLOCKING 0x0", "NOP")
    assert sass.unrolled_taps(no_stage, 4).load_bits == 16  # the one-element loads are then the steps'
    unstaged = no_stage.replace("STG.E.64 desc[UR4][R6.64], R2", "NOP")
    epilogue = unstaged.replace("/*0330*/                   STG", "/*0330*/ BAR.SYNC.DEFER_BLOCKING 0x0 ;\n/*0338*/ STG")
    assert sass.unrolled_taps(epilogue, 4) == sass.unrolled_taps(unstaged, 4) != sass.unrolled_taps(STAGED_TAPS_SNIPPET, 4)
    assert sass.unrolled_taps(STAGED_TAPS_SNIPPET, 2) is None



STRAIGHT_SNIPPET = """
        /*0100*/                   LDG.E R2, desc[UR4][R4.64] ;
        /*0110*/               @P0 LDG.E.128 R8, desc[UR4][R10.64] ;
        /*0120*/                   LDG.E R3, desc[UR4][R4.64+0x4] ;
        /*0130*/              @!P1 LDG.E.128 R12, desc[UR4][R14.64] ;
        /*0140*/                   FFMA R16, R8, R12, R16 ;
        /*0150*/                   FFMA R17, R9, R13, R17 ;
        /*0160*/                   STG.E.128 desc[UR4][R18.64], R16 ;
        /*0170*/                   EXIT ;
        /*0180*/                   BRA 0x180;
"""


def test_sass_reads_a_straight_step():
    """A kernel whose one step is straight-line code (1-d output runs): the step runs from
    the first masked load (a tile's; an unmasked one before it is the prologue's) through
    the last store (the tile's epilogue, stores interleaved with the step's last work
    included); an unmasked load scheduled among the step's is the step's too."""
    assert sass.main_loop(STRAIGHT_SNIPPET) is None
    loop = sass.straight_step(STRAIGHT_SNIPPET)
    assert loop.unrolled and loop.instructions == 6 and dict(loop.global_loads) == {128: 2, 32: 1}
    unmasked = STRAIGHT_SNIPPET.replace("@P0 LDG", "LDG")
    assert sass.straight_step(unmasked).instructions == 4 and sass.straight_step(unmasked).load_bits == 128
    interleaved = STRAIGHT_SNIPPET.replace("/*0150*/                   FFMA R17, R9, R13, R17 ;",
                                           "/*0150*/                   STG.E desc[UR4][R20.64], R16 ;\n"
                                           "        /*0158*/                   FFMA R17, R9, R13, R17 ;")
    assert sass.straight_step(interleaved).instructions == 7
    assert sass.straight_step(STRAIGHT_SNIPPET.replace("STG.E.128 desc[UR4][R18.64], R16", "NOP")) is None
    assert sass.straight_step(unmasked.replace("@!P1 LDG", "LDG")) is None  # no tile load



def test_issue_bound_share_formula():
    config = KernelConfig(128, 64, 32, num_warps=8)
    # (128*64*32 / 2048) tensor clocks / (8 * 74 / 4) issue clocks: the calibration point 0.86.
    assert sass.issue_bound_share(config, 74, 90, "float16") == pytest.approx(128 / 148)
    assert sass.issue_bound_share(config, 89, 80, "float16") == 1.0  # capped
    small = KernelConfig(64, 32, 32, num_warps=4)  # (64*32*32 / 2048) / (4 * 72 / 4) = 0.44
    assert sass.issue_bound_share(small, 72, 90, "float16") == pytest.approx(32 / 72)
    # TF32's peak is half: the same loop leaves twice the share of it.
    assert sass.issue_bound_share(small, 72, 90, "float32") == pytest.approx(64 / 72)
    with pytest.raises(ValueError):
        sass.issue_bound_share(config, 74, 90, "float32", "ieee")


# The calibration points of the static model: a plain tiled GEMM's loop.
CALIBRATION = [(90, KernelConfig(128, 64, 32, num_warps=8, num_stages=3), 74, 2),
               (90, KernelConfig(64, 32, 32, num_warps=4, num_stages=3), 72, 2),
               (90, KernelConfig(128, 128, 64, num_warps=8, num_stages=3), 106, 4),
               (80, KernelConfig(128, 64, 32, num_warps=8, num_stages=3), 89, 16)]


@pytest.mark.parametrize("arch,config,instructions,tensor_core", CALIBRATION, ids=lambda v: str(v))
def test_plain_gemm_loop_matches_the_calibration(arch, config, instructions, tensor_core):
    report = aot.reference_loop("float16", config, arch)
    loop = report.loop
    assert loop.tensor_core_instructions == tensor_core
    assert abs(loop.instructions - instructions) <= 0.15 * instructions, loop
    assert report.pipelined and loop.load_bits == 128 and report.spill_bytes == 0


def _recorded_launch(monkeypatch, kernel_name, spec, dtype, layout, config):
    """The arguments tconv's launcher really passes to `kernel_name` for `spec` on CPU
    tensors (recorded, not run; the layout copies before it and a reduction after it are
    not recorded)."""
    from tconv.descriptors.base import make_operands

    recorded = []
    kernel = KERNELS[kernel_name]

    class Recorder:
        def __init__(self, function):
            self.function = function

        def __getitem__(self, grid):
            return lambda *args, **kwargs: recorded.append((self.function, args, kwargs))

    monkeypatch.setattr(_launch, "launchable", lambda function, device: (Recorder(function), False))
    passed = kernel.kernel if kernel in COPIES else kernel  # a copy runs in its pass
    _launch.run(passed, spec, config, make_operands(passed, spec, dtype, layout, "cpu"))
    (launch,) = [(args, kwargs) for function, args, kwargs in recorded
                 if function is kernel.function
                 and (kernel not in COPIES or tuple(args[0].shape) == kernel.operand_shapes(spec)[kernel.operand])]
    return launch


@pytest.mark.parametrize("kernel_name,layout,channels", [(kernel, layout, 32) for kernel in ("fprop", "dgrad", "wgrad", "columns")
                                                          for layout in ("channels_last", "contiguous")]
                         + [(kernel, "contiguous", 256) for kernel in ("fprop", "dgrad", "wgrad", "columns")]
                         + [(kernel, "channels_last", 40) for kernel in ("fprop", "dgrad", "wgrad")]
                         + [(copy.name, "contiguous", 256) for copy in COPIES if copy.name.endswith("_weight_copy")
                            or copy.name.endswith("_input_copy") or copy.name.endswith("_grad_output_copy")])
def test_aot_specialises_exactly_what_the_launcher_passes(kernel_name, layout, channels, monkeypatch):
    """Triton's binder on the launcher's real arguments (CPU tensors, 64-byte aligned
    like CUDA's) gives the signature, constants and attributes the AOT compile uses; NCHW
    with 32 channels gathers in place, with 256 (compute-bound) it reads layout copies;
    40 channels pass their row strides in units of 8 (IN_UNIT, WEIGHT_UNIT, OUT_UNIT).
    The column GEMM (fprop's loop, the weight read through strides) is the input gradient
    of a 3-channel 7x7 layer."""
    columns = kernel_name.startswith("columns")
    layer = layer_spec(Layer("3x3", 8 if channels > 32 else 2, 3 if columns else channels,
                             (28, 28) if channels > 32 else (9, 9), channels + 16, (7, 7) if columns else (3, 3), 1, 1))
    pass_name = "dgrad" if columns else KERNELS[kernel_name].kernel.name if kernel_name.endswith("_copy") else kernel_name
    spec = pass_specs(layer)[pass_name][1]
    assert pass_specs(layer)[pass_name][0] == ("columns" if columns else pass_name)
    _assert_aot_matches_launch(kernel_name, spec, layout, KernelConfig(64, 32, 32, num_warps=4, num_stages=3), monkeypatch)


@pytest.mark.parametrize("kernel_name", [copy.name for copy in COPIES if copy.name.endswith("_weight_columns_copy")])
def test_aot_specialises_the_weight_columns_copy_as_launched(kernel_name, monkeypatch):
    """A depthwise pass on channels_last activations copies its weight (the size gate lowered)."""
    monkeypatch.setattr(configs, "WEIGHT_COPY_MIN_MACS", 0)
    layer = layer_spec(Layer("dw", 2, 32, (9, 9), 32, (3, 3), 1, 1, 1, 32))
    spec = pass_specs(layer)[KERNELS[kernel_name].kernel.name][1]
    config = heuristic_config(KERNELS[kernel_name].kernel.name, spec, torch.float16, "sm_90", "channels_last")
    _assert_aot_matches_launch(kernel_name, spec, "channels_last", config, monkeypatch)


@pytest.mark.parametrize("kernel_name", ["fprop", "dgrad"])
def test_aot_specialises_the_weight_stage_as_launched(kernel_name, monkeypatch):
    """A small depthwise pass on channels_last activations stages its weight (STAGE_TAPS)."""
    layer = layer_spec(Layer("dw", 2, 32, (9, 9), 32, (3, 3), 2, 1, 1, 32))
    spec = pass_specs(layer)[kernel_name][1]
    config = heuristic_config(kernel_name, spec, torch.float16, "sm_90", "channels_last")
    args, kwargs = _recorded_launch(monkeypatch, kernel_name, spec, torch.float16, "channels_last", config)
    assert kwargs["STAGE_TAPS"] == 16
    _assert_aot_matches_launch(kernel_name, spec, "channels_last", config, monkeypatch)


@pytest.mark.parametrize("arch", [80, 90])
def test_depthwise_loops_load_128_bits(arch):
    """Depthwise layers, fp16, channels_last: below the weight copy's gate (MobileNetV2's
    3x3s, EfficientNet's 5x5 at 14x14) each program stages its weight columns, so the
    forward's taps (unrolled whole for a 3x3) and the input gradient's loop load 128 bits
    only, without spills; past it (MobileNetV3's 120 and 72 channels, which 16 does not
    divide) the weight's copy reaches the kernels with its tap strides in units of 8, the
    columns' stride whole, and loads 128 bits as well."""
    layers = [(next(layer for layer in SUITES[suite] if layer.name == name), False)
              for suite, name in (("mobilenet_v2_dw", "dw960@7 s1"), ("mobilenet_v2_dw", "dw576@14 s2"),
                                  ("efficientnet_b0_dw", "dw672@14 k5 s2"))]
    layers += [(Layer("mnv3 dw120 5x5", 64, 120, (28, 28), 120, (5, 5), 1, 2, 1, 120), True),
               (Layer("mnv3 dw72 5x5 s2", 64, 72, (56, 56), 72, (5, 5), 2, 2, 1, 72), True)]
    for layer, copied in layers:
        for pass_name in ("fprop", "dgrad"):
            kernel, spec = pass_specs(layer_spec(layer))[pass_name]
            assert configs.weight_copy_pays(spec) == copied
            config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
            report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
            assert report.loop.load_bits == 128 and report.spill_bytes == 0, (layer.name, pass_name)
            unrolled = pass_name == "fprop" and spec.kernel_size == (3, 3) and not copied
            assert report.loop.unrolled == unrolled, (layer.name, pass_name)



@pytest.mark.parametrize("arch", [80, 90])
def test_depthwise_output_runs_load_each_column_once(arch):
    """Depthwise forwards and input gradients in output runs, fp16, channels_last: a step
    (a row of taps) loads each of the run's input columns once and the row's weights, all
    128 bits, without spills; a 1-d run is one straight step."""
    layers = {layer.name: layer for suite in ("mobilenet_v2_dw", "efficientnet_b0_dw", "wavenet_tcn")
              for layer in SUITES[suite]}
    cases = [("dw144@56 s1", "fprop", 4, 3 * 6), ("dw144@56 s1", "dgrad", 4, 3 * 6), ("dw96@112 s2", "fprop", 4, 3 * 9),
             ("dw240@28 k5 s1", "dgrad", 4, 5 * 8), ("dw384@14 s1", "fprop", 2, 3 * 4),
             ("inductor #175280 dw k3", "fprop", 4, 6)]
    for name, pass_name, run, columns in cases:
        kernel, spec = pass_specs(layer_spec(layers[name]))[pass_name]
        config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
        assert KERNELS[kernel].output_run(spec, config, 2, True) == run, name
        report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
        rows = spec.kernel_size[0] if spec.dims > 1 else 1  # the loop's steps: a row of taps each
        loads = (columns + rows * spec.kernel_size[-1]) // rows
        assert dict(report.loop.global_loads) == {128: loads} and report.spill_bytes == 0, (name, pass_name, report.loop)
        assert report.loop.unrolled == (spec.dims == 1), (name, pass_name)

@pytest.mark.parametrize("arch", [80, 90])
def test_nchw_depthwise_weight_gradients_load_positions_in_chunks(arch):
    """Depthwise weight gradients of NCHW activations, fp16, as the launch compiles: each
    thread loads its chunks of grad_output and the input spans they start at as whole vectors
    (no element-wise gather), plus at most one narrower load a side a chunk (the halo lanes a
    tap reaches past the span), without spills, and the loop issues fewer instructions per
    2,048 multiply-adds than the same layer's channels-last loop."""
    from tconv.descriptors.base import make_operands
    from tconv.descriptors.wgrad import position_lanes

    layers = {layer.name: layer for suite in ("mobilenet_v2_dw", "efficientnet_b0_dw") for layer in SUITES[suite]}
    cases = [("dw144@56 s1", 8, 2), ("dw96@112 s2", 4, 1), ("dw240@28 k5 s1", 4, 2)]  # (layer, chunk, halo sides)
    family = aot.FAMILY_OF_ARCH[arch]
    for name, chunk, sides in cases:
        kernel, spec = pass_specs(layer_spec(layers[name]))["wgrad"]
        config = heuristic_config(kernel, spec, torch.float16, family, "contiguous")
        operands = make_operands(KERNELS[kernel], spec, torch.float16, "contiguous", torch.device("meta"))
        assert position_lanes(spec, config, operands["input"], operands["grad_output"]) == chunk, name
        report = aot.compile_launch(kernel, spec, "float16", config, arch, "contiguous")
        per_thread = config.block_m * config.block_k // (32 * config.num_warps * chunk)  # chunks a thread
        wide = {}
        for bits in (16 * chunk, 16 * chunk * spec.stride[-1]):  # grad_output's chunks, the input's spans
            wide[bits] = wide.get(bits, 0) + per_thread
        loads = dict(report.loop.global_loads)
        narrow = {bits: count for bits, count in loads.items() if bits < 16 * chunk}
        assert {bits: loads.get(bits) for bits in wide} == wide and sum(narrow.values()) == sides * per_thread, (
            name, report.loop)
        assert report.spill_bytes == 0, name
        last = aot.compile_launch(kernel, spec, "float16", heuristic_config(kernel, spec, torch.float16, family),
                                  arch, "channels_last")
        assert report.loop.instructions / report.step_macs < last.loop.instructions / last.step_macs, name


@pytest.mark.parametrize("arch", [80, 90])
def test_nchw_depthwise_runs_load_their_spans_as_vectors(arch):
    """Depthwise forwards and input gradients of NCHW activations in runs of lanes, fp16, as
    the launch compiles: a (kd, kh) row's step loads each row's span (run x stride columns)
    as one vector, and otherwise only the halo lanes (at most one load a side a span) and
    the row's weights, narrower, without spills; the loops issue what the copy decision
    counts for them (configs.ELEMENTWISE_LANE_STEP_INSTRUCTIONS, within 5%); each run's outputs
    store as one vector (kernels/_index.py store_run), as wide as the run."""
    layers = {layer.name: layer for layer in SUITES["mobilenet_v2_dw"]}
    cases = [("dw144@56 s1", "fprop", 8, 2), ("dw144@56 s1", "dgrad", 8, 2), ("dw192@28 s1", "fprop", 4, 2),
             ("dw96@112 s2", "fprop", 4, 1)]  # (layer, pass, run, halo sides)
    for name, pass_name, run, sides in cases:
        kernel, spec = pass_specs(layer_spec(layers[name]))[pass_name]
        config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "contiguous")
        assert not configs.elementwise_copy_pays(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch]), name
        report = aot.compile_launch(kernel, spec, "float16", config, arch, "contiguous")
        own = run * spec.stride[-1]
        spans = config.block_m // run * config.block_n // (32 * config.num_warps)  # a thread's, a step
        loads = dict(report.loop.global_loads)
        narrow = sum(count for bits, count in loads.items() if bits < 16 * own)
        assert loads.get(16 * own) == spans and set(loads) <= {16 * own} | {bits for bits in loads if bits < 16 * own}
        assert narrow <= sides * spans + spec.kernel_size[-1] and report.spill_bytes == 0, (name, report.loop)
        assert report.store_bits == 16 * run, (name, report.store_bits)
        counted = configs.ELEMENTWISE_LANE_STEP_INSTRUCTIONS[(run, spec.stride[-1])]
        assert abs(report.loop.instructions * 2048 / report.step_macs - counted) <= 0.05 * counted, (name, report.loop)


def _assert_aot_matches_launch(kernel, spec, layout, config, monkeypatch):
    args, kwargs = _recorded_launch(monkeypatch, kernel, spec, torch.float16, layout, config)
    function = KERNELS[kernel].function
    backend = make_backend(GPUTarget("cuda", 90, 32))
    binder = create_function_from_signature(function.signature, function.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    from_launch = function._pack_args(backend, kwargs, bound, specialization, options)
    from_aot = aot.specialize(kernel, spec, "float16", layout, config, 90)
    assert from_aot[1] == from_launch[1]  # signature
    assert from_aot[2] == from_launch[2]  # compile-time constants (integers equal to 1 among them)
    assert from_aot[3] == from_launch[3]  # divisibility attributes
    assert from_aot[0].__dict__ == from_launch[0].__dict__  # options: warps, stages, ...


@pytest.mark.parametrize("arch", [80, 90])
def test_nchw_outputs_store_positions_as_vectors(arch):
    """Forwards and input gradients writing an NCHW output from the epilogue, fp16, as the
    launch compiles: with the output's width and (n, c, d, h) strides in one unit
    (descriptors/units.py output_units), each thread's positions store as vectors along w,
    as wide as the unit (ResNet-50's 56-wide outputs: 8 elements, 28-wide: 4), also at batch 1
    and 2 (the rows' count then a visible multiple too: SD's VAE, 3D U-Net); a 7-wide output,
    and an input gradient at stride 2 (its phases' positions are 2 apart), store one element
    at a time. Channels-last outputs store along channels, 128 bits."""
    cases = [("resnet50", "l1.c2 3x3", "fprop", 128), ("resnet50", "l1.c2 3x3", "dgrad", 128),
             ("resnet50", "l1.c1(b1) 1x1", "fprop", 128), ("resnet50", "l2.c2 3x3", "fprop", 64),
             ("sd_vae", "up1 resnet 3x3", "dgrad", 128), ("unet3d", "d4 conv 320", "fprop", 128),
             ("resnet50", "l4.c2 3x3", "fprop", 16), ("resnet50", "l2.c2 3x3 s2", "dgrad", 16)]
    for suite, name, pass_name, bits in cases:
        layer = next(layer for layer in SUITES[suite] if layer.name == name)
        kernel, spec = pass_specs(layer_spec(layer))[pass_name]
        for layout, expected in (("contiguous", bits), ("channels_last", 128)):
            config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], layout)
            report = aot.compile_launch(kernel, spec, "float16", config, arch, layout)
            assert report.store_bits == expected and report.spill_bytes == 0, (name, pass_name, layout, report)


@pytest.mark.parametrize("arch", [80, 90])
def test_fp16_fprop_is_pipelined_with_wide_loads_in_either_layout(arch):
    """The default config of a ResNet-50 3x3 layer, fp16: cp.async (LDGSTS) with 128-bit
    operand loads, no spills. Given NCHW, the pass (compute-bound) copies input and weight
    channels-last (128-bit loads and stores, no spills) and its main loop is the
    channels_last one; a memory-bound 1x1 layer keeps its minimum bytes and gathers."""
    layer = next(layer for layer in SUITES["resnet50"] if layer.name == "l2.c2 3x3")  # 28x28: 784 = 49 x 16 positions
    spec = pass_specs(layer_spec(layer))["fprop"][1]
    family = aot.FAMILY_OF_ARCH[arch]
    one_by_one = pass_specs(layer_spec(next(layer for layer in SUITES["resnet50"] if layer.name == "l1.c1(b1) 1x1")))
    assert copies_pay("fprop", spec, torch.float16, family)
    assert not copies_pay("fprop", one_by_one["fprop"][1], torch.float16, family)
    for layout in ("channels_last", "contiguous"):
        config = heuristic_config("fprop", spec, torch.float16, family, layout)
        report = aot.compile_launch("fprop", spec, "float16", config, arch, layout)
        assert report.pipelined and report.loop.load_bits == 128 and report.spill_bytes == 0, layout
        assert report.tensor_cores and 0 < report.issue_bound_share <= 1
        if layout == "channels_last":
            channels_last = report
    assert report.issue_bound_share >= 0.9 * channels_last.issue_bound_share  # fprop keeps 32 accumulators for NCHW
    for copy in ("fprop_input_copy", "fprop_weight_copy"):
        copied = aot.compile_launch(copy, spec, "float16", config, arch, "contiguous")
        assert copied.spill_bytes == 0 and copied.store_bits == 128, copy
    assert aot.compile_launch("fprop_input_copy", spec, "float16", config, arch, "contiguous").load_bits == 128


@pytest.mark.parametrize("arch", [80, 90])
def test_channel_counts_16_does_not_divide_load_128_bits(arch):
    """EfficientNet-B0's 24-channel pointwise layers (24 x 2 bytes: rows 16-byte aligned,
    yet not a multiple of 16 elements, which is all Triton's launch specialisation sees):
    their row strides and channel counts reach the kernels in units of 8, so every pass's
    loop at the heuristic's config loads 128 bits, pipelined, without spills (they loaded
    16 bits unpipelined, and the forward spilled 448 bytes on sm_90), and the forward's and
    input gradient's epilogues store 128 bits (they stored 16 into 24 channels)."""
    family = aot.FAMILY_OF_ARCH[arch]
    for name in ("s2,3 expand 24->144 @56", "s2 project 144->24 @56"):
        layer = next(layer for layer in SUITES["efficientnet_b0_pw"] if layer.name == name)
        for pass_name, (kernel, spec) in pass_specs(layer_spec(layer)).items():
            config = heuristic_config(kernel, spec, torch.float16, family, "channels_last")
            report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
            assert report.pipelined and report.loop.load_bits == 128 and report.spill_bytes == 0, (name, pass_name, report)
            assert pass_name == "wgrad" or report.store_bits == 128, (name, pass_name, report)


@pytest.mark.parametrize("arch", [80, 90])
def test_weight_gradient_takes_the_bias_on_tensor_cores(arch):
    """A 16-bit dense weight gradient that also takes the bias gradient gets grad_output's row
    sums as A @ ones on the tensor cores (kernels/wgrad.py, BIAS_ON_TENSOR_CORES). Summed across
    threads every step, they took sm_90's loop from 165 to 310 instructions on a 3x3 and from
    138 to 342 on a 1x1 (issue-bound share 1.0 -> 0.75); now within a quarter of the loop
    without the bias, and without spills on sm_90 (sm_80's run-of-3 tiles sit at its register
    limit either way)."""
    family = aot.FAMILY_OF_ARCH[arch]
    for layer in (Layer("3x3", 64, 256, (14, 14), 256, (3, 3), 1, 1), Layer("1x1", 8, 512, (64, 64), 512, (1, 1))):
        kernel, spec = pass_specs(layer_spec(layer))["wgrad"]
        config = heuristic_config(kernel, spec, torch.float16, family, "channels_last")
        plain = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
        biased = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last", bias=True)
        assert biased.loop.instructions <= 1.25 * plain.loop.instructions, (layer.name, plain.loop, biased.loop)
        assert biased.loop.tensor_core_instructions > plain.loop.tensor_core_instructions, layer.name
        assert arch == 80 or (biased.spill_bytes == 0 and biased.issue_bound_share == plain.issue_bound_share), layer.name


@pytest.mark.parametrize("arch", [80, 90])
def test_deepbench_speech_layers_compile_without_spills(arch):
    """DeepBench's speech layers (suite `deepbench`): a 5x5 filter at stride 2 with padding 1
    on 350x80 (25 taps), whose forward sm_80 took 256x128x64 with 8 warps and spilled 80
    bytes (configs.LONG_TAP_LOOP now leaves such tiles out), and DeepSpeech's one-channel
    5x20 filter (100 taps, an elementwise launch), which spilled 8 on sm_90 in 64-row tiles
    (it now takes 32). Every pass at the heuristic's config compiles without spills."""
    family = aot.FAMILY_OF_ARCH[arch]
    layers = {layer.name: layer for layer in SUITES["deepbench"]}
    for name in ("64->128 5x5 s2 p1 @80x350 n16", "1->32 5x20 s2 p0 @161x700 n4"):
        for pass_name, (kernel, spec) in pass_specs(layer_spec(layers[name])).items():
            config = heuristic_config(kernel, spec, torch.float16, family, "channels_last")
            report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
            assert report.spill_bytes == 0, (name, pass_name, config, report.spill_bytes)


@pytest.mark.parametrize("arch", [80, 90])
def test_unpadded_forward_masks_rows_once(arch):
    """Without padding every tap of an output position reads the input, so the forward's
    main loop takes row deltas at any tap count and masks only rows past the last
    (UNPADDED). DeepSpeech's 32 -> 32 5x10 layer at stride 2 (50 taps: no tap bits)
    checked every row's bounds at every step: sm_90 246 loop instructions per 8 HGMMA, 2.0x
    a GEMM's, issue-bound share 0.52; sm_80 176 per 16 HMMA, 1.83x. Padded layers keep
    their per-tap masks."""
    layers = {layer.name: layer for layer in SUITES["deepbench"]}
    kernel, spec = pass_specs(layer_spec(layers["32->32 5x10 s2 p0 @79x341 n16"]))["fprop"]
    config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
    report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
    gemm = aot.reference_loop("float16", config, arch).loop
    ratio = (report.loop.instructions / report.loop.tensor_core_instructions) / (
        gemm.instructions / gemm.tensor_core_instructions)
    assert report.issue_bound_share == 1.0 and ratio <= 1.25 and report.spill_bytes == 0, (config, report, ratio)
    padded = layer_spec(Layer("3x3", 8, 64, (28, 28), 64, (3, 3), 1, 1))
    for problem, unpadded in ((spec, True), (padded, False)):
        constexprs = aot.specialize("fprop", problem, "float16", "channels_last", config, arch)[2]
        names = configs.descriptor_of("fprop").function.arg_names
        values = {names[key[0]]: value for key, value in constexprs.items()}
        assert values["UNPADDED"] is unpadded and values["TAP_BITS"], problem


def test_tuner_is_handed_a_callable_and_never_imports_the_launcher():
    tree = ast.parse(inspect.getsource(tune))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "_launch" not in imported and "tconv._launch" not in imported

    def failing(config, operands):
        raise RuntimeError("out of resources")

    candidates = [KernelConfig(32, 16, 16), KernelConfig(64, 16, 16)]
    assert tune.tune_problem(failing, [{}], candidates, candidates[0], torch.float16) is None


def test_gemm_kernel_is_a_1x1_convolution():
    """The fourth kernel, registered with one line: a channels_last 1x1 conv as a plain GEMM."""
    from tconv.descriptors import GEMM
    from tconv.descriptors.base import make_operands
    from tconv.testing import assert_close

    spec = layer_spec(Layer("1x1", 3, 40, (5, 7), 24, (1, 1)))
    assert GEMM.supports(spec)
    operands = make_operands(GEMM, spec, torch.float32, "channels_last", "cpu", bias=True)
    output = _launch.run(GEMM, spec, KernelConfig(32, 16, 16), operands)["output"]
    input, weight, bias = (operands[name].double() for name in ("input", "weight", "bias"))
    assert_close(output, torch.nn.functional.conv2d(input, weight, bias), torch.float32)


# The main loops at a GEMM's cost: the K step of an implicit-GEMM convolution (gather
# included) against a plain GEMM's at the same config, on ResNet-50's 3x3 layers (stride 1
# and 2) and a 1x1, compiled as the launch compiles them.
LOOP_LAYERS = ["l1.c2 3x3", "l2.c2 3x3 s2", "l1.c1(b1) 1x1"]
LOOP_CONFIG = KernelConfig(128, 128, 64, num_warps=8, num_stages=3)
#: Instructions per tensor-core instruction over the GEMM's: issue #11's target. The weight
#: gradients at batch 64 take BLOCK_K images a step (BATCH_STEPS): 1.02x on sm_80, 0.90x on
#: sm_90, where splitting each position (two multiply-highs, bounds, a 3-term offset) cost 1.28-1.6x.
LOOP_OVER_GEMM = {"fprop": 1.25, "dgrad": 1.25, "wgrad": 1.25}


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("pass_name", ["fprop", "dgrad", "wgrad"])
def test_conv_main_loops_cost_about_a_gemm_loop(pass_name, arch):
    reference = aot.reference_loop("float16", LOOP_CONFIG, arch).loop
    gemm_per_mma = reference.instructions / reference.tensor_core_instructions
    for name in LOOP_LAYERS:
        layer = next(layer for layer in SUITES["resnet50"] if layer.name == name)
        kernel, spec = pass_specs(layer_spec(layer))[pass_name]
        report = aot.compile_launch(kernel, spec, "float16", LOOP_CONFIG, arch, "channels_last")
        loop = report.loop
        assert report.pipelined and loop.load_bits == 128 and report.spill_bytes == 0, (name, report)
        per_mma = loop.instructions / loop.tensor_core_instructions
        assert per_mma <= LOOP_OVER_GEMM[pass_name] * gemm_per_mma, (name, loop, reference)


def test_compile_reports_are_kept_on_disk(monkeypatch):
    """A second sweep of the same launches reads the reports back (no compile); an
    unreadable stored report is compiled again."""
    spec = layer_spec(Layer("3x3", 2, 32, (9, 9), 48, (3, 3), 1, 1))
    config = KernelConfig(64, 32, 32, num_warps=4, num_stages=3)
    job = ("fprop", spec, "float16", config, 90, "channels_last")
    first = aot.compile_launch(*job)
    key = aot.specialization_key("fprop", 90, aot.specialize("fprop", spec, "float16", "channels_last", config, 90))
    original = aot.triton.compile

    def refuse(*args, **kwargs):
        raise AssertionError("compiled again")

    aot._compiled.clear()
    monkeypatch.setattr(aot.triton, "compile", refuse)
    assert aot.compile_launch(*job) == first
    with open(aot._report_path(key, "fprop"), "wb") as file:
        file.write(b"not a report")
    aot._compiled.clear()
    monkeypatch.setattr(aot.triton, "compile", original)
    assert aot.compile_launch(*job) == first


@pytest.mark.parametrize("arch", [80, 90])
def test_patch_embedding_loads_its_runs_wide(arch):
    """ViT-B/16's patch embedding (3 -> 768, 16x16 at stride 16): the forward folds each
    patch row's 48 (kw, channel) pairs into 16-wide K steps masked by rows alone, the weight
    gradient reads B as position plus column offsets; both pipelined with 128-bit loads (they
    were one-element gathers, unpipelined, at an issue-bound share of 0.10 / 0.19 on sm_90).
    sm_90 unrolls the forward's 48 constant steps whole: its main loop is read from them."""
    layers = {layer.name: layer for layer in SUITES["thin"]}
    passes = pass_specs(layer_spec(layers["vit-b16 patch 3->768 16x16 s16"]))
    for pass_name in ("fprop", "wgrad"):
        kernel, spec = passes[pass_name]
        config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
        report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
        assert report.pipelined and report.loop.load_bits == 128 and report.spill_bytes == 0, (pass_name, report)
        assert report.issue_bound_share >= (0.9 if pass_name == "fprop" else 0.75), (pass_name, report)
        constexprs = aot.specialize(kernel, spec, "float16", "channels_last", config, arch)[2]
        names = configs.descriptor_of(kernel).function.arg_names
        values = {names[key[0]]: value for key, value in constexprs.items()}
        if pass_name == "fprop":
            assert values["FOLD_CHANNELS"] == 3 and values["UNPADDED"] and values["FOLD_DENSE"], values
        else:
            assert values["PACKED_DENSE"], values


@pytest.mark.parametrize("arch", [80, 90])
def test_one_block_per_tap_loops_drop_their_channel_counter(arch):
    """3D U-Net's 32-channel 3x3x3 layers: each K step is a whole tap (TAP_STEPS), whose
    weight offset, input delta and tap bit are carried from step to step, masked with one
    AND per row. sm_80 input gradient 133 -> 119 instructions per 16 HMMA (1.39x -> 1.24x a
    GEMM's), forward 118 -> 115; sm_90 input gradient 149 -> 130."""
    layers = {layer.name: layer for layer in SUITES["unet3d"]}
    for pass_name, (kernel, spec) in pass_specs(layer_spec(layers["in conv2 32->32"])).items():
        if pass_name == "wgrad":
            continue
        config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
        constexprs = aot.specialize(kernel, spec, "float16", "channels_last", config, arch)[2]
        names = configs.descriptor_of(kernel).function.arg_names
        assert {names[key[0]]: value for key, value in constexprs.items()}["TAP_STEPS"], (pass_name, config)
        report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
        gemm = aot.reference_loop("float16", config, arch).loop
        ratio = (report.loop.instructions / report.loop.tensor_core_instructions) / (
            gemm.instructions / gemm.tensor_core_instructions)
        assert ratio <= 1.25 and report.spill_bytes == 0 and report.loop.load_bits == 128, (pass_name, report, ratio)


@pytest.mark.parametrize("arch", [80, 90])
def test_chunked_steps_pay_the_step_once_per_tap(arch):
    """Inception-v3's 96-channel 3x3 (odd_shapes): a tap's 96 channels are three 32-wide
    blocks of one chunked K step (K_CHUNKS 3) in the forward and input gradient: the loop
    issues three times the tensor-core instructions of a one-block step (sm_90 forward: 102
    instructions per 4 HGMMA -> 165 per 12) and costs less per tensor-core instruction than
    a plain GEMM loop at its tile."""
    layer = next(layer for layer in SUITES["odd_shapes"] if layer.name == "inception-v3 3x3 96->96 @35")
    for pass_name, (kernel, spec) in pass_specs(layer_spec(layer)).items():
        if pass_name == "wgrad":
            continue
        config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
        constexprs = aot.specialize(kernel, spec, "float16", "channels_last", config, arch)[2]
        names = configs.descriptor_of(kernel).function.arg_names
        assert {names[key[0]]: value for key, value in constexprs.items()}["K_CHUNKS"] == 3, (pass_name, config)
        report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
        gemm = aot.reference_loop("float16", config, arch).loop
        assert report.loop.tensor_core_instructions == 3 * gemm.tensor_core_instructions, (pass_name, report)
        ratio = (report.loop.instructions / report.loop.tensor_core_instructions) / (
            gemm.instructions / gemm.tensor_core_instructions)
        assert ratio < 1 and report.issue_bound_share == 1.0 and report.spill_bytes == 0, (pass_name, report, ratio)
        assert report.pipelined and report.loop.load_bits == 128, (pass_name, report)


@pytest.mark.parametrize("arch", [80, 90])
def test_thin_weight_gradients_take_image_block_steps(arch):
    """ResNet-50's RGB stem (thin suite, batch 64): the weight gradient's K steps are 32
    images at one output position (BATCH_STEPS), so each packed (tap, channel) column's
    input index, padding check and offset are one vector a step, not a split of every
    position (sm_80: 189 -> 103 instructions per 8 HMMA, 2.82x -> 1.54x a GEMM's; sm_90:
    209 -> 111 per 2, 3.32x -> 1.76x)."""
    layer = next(layer for layer in SUITES["thin"] if layer.name == "resnet50 stem 3->64 7x7 s2")
    kernel, spec = pass_specs(layer_spec(layer))["wgrad"]
    config = heuristic_config(kernel, spec, torch.float16, aot.FAMILY_OF_ARCH[arch], "channels_last")
    constexprs = aot.specialize(kernel, spec, "float16", "channels_last", config, arch)[2]
    names = configs.descriptor_of(kernel).function.arg_names
    meta = {names[key[0]]: value for key, value in constexprs.items()}
    assert meta["BATCH_STEPS"] and meta["PACKED_CHANNELS"] == 3, (config, meta)
    report = aot.compile_launch(kernel, spec, "float16", config, arch, "channels_last")
    gemm = aot.reference_loop("float16", config, arch).loop
    ratio = (report.loop.instructions / report.loop.tensor_core_instructions) / (
        gemm.instructions / gemm.tensor_core_instructions)
    assert ratio < 1.8 and report.spill_bytes == 0 and report.pipelined, (report, ratio)
