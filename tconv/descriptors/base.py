"""What every kernel descriptor shares: the launch contract's vocabulary.

A descriptor is one object per ``@triton.jit`` kernel that says everything needed to
launch it: which tensors a launch reads and writes (and how outputs are allocated),
how (problem, config, tensors) become the kernel's arguments and compile-time
constants, the grid, the GEMM extents its tiles cover, the multiply-adds that grid
executes and its config space. The launchers (tconv._launch), the ahead-of-time
compile (tconv.aot), the tuner and the benchmarks all call the same methods, so the
compile report describes exactly what a launch compiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
import triton
import triton.language as tl
from triton.runtime.jit import JITFunction

from ..configs import KernelConfig
from ..spec import ConvSpec

#: CUDA's limit on grid axes 1 and 2.
MAX_GRID_YZ = 65535
#: Layouts a problem's 4-d/5-d tensors can be given in.
LAYOUTS = ("channels_last", "contiguous")
#: The suffix of the name of an operand's channels-last copy (descriptors/layout.py).
PACKED = ":channels_last"
#: The tensor an elementwise pass stages its weight columns through (descriptors/layout.py weight_stage).
STAGE = "weight_stage"


class Descriptor:
    """Base of the kernel descriptors (subclasses fill in every method)."""

    name: str
    function: JITFunction
    #: {elementwise: {family: axes}}: the config space, as data (see tconv.configs).
    spaces: Mapping[bool, Mapping[str, dict]] = {}
    #: Names of the tensors a caller passes (the rest are allocated by `allocate`).
    operand_names: tuple[str, ...] = ()
    #: The tensor a pass of this kernel produces (what the tuner compares between configs).
    result: str = "output"
    #: A kernel launched right after this one on the same tensors to finish the pass (wgrad's reduction).
    then: Descriptor | None = None
    #: Tensors `allocate` derives from the problem alone, the same every call (dgrad's phase table).
    constant_tensors: tuple[str, ...] = ()
    #: Operands the main loop gathers along channels: given channels-first, a pass reads
    #: them through a channels-last copy (descriptors/layout.py).
    channels_last_operands: tuple[str, ...] = ()
    #: The flag a caller passes for a pass that also takes the bias gradient (wgrad's bias_grad).
    bias_flag: str | None = None

    def operand_shapes(self, spec: ConvSpec) -> dict[str, tuple[int, ...]]:
        """Logical ([N, C, *spatial]-style) shapes of the operands a caller passes."""
        raise NotImplementedError

    def allocate(self, spec: ConvSpec, tensors: Mapping[str, torch.Tensor], config: KernelConfig) -> dict:
        """The tensors the launch writes (outputs, workspaces) or derives (tables), on the operands' device."""
        raise NotImplementedError

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        """(positional arguments, keyword meta-parameters and launch options) of one launch."""
        raise NotImplementedError

    def reads(self, tensors: Mapping) -> dict:
        """The pass's tensors as this kernel's `arguments` take them: each operand replaced
        by its channels-last copy when the pass made one."""
        view = dict(tensors)
        for name, tensor in tensors.items():
            if name.endswith(PACKED):
                view[name.removesuffix(PACKED)] = tensor
        return view

    @staticmethod
    def loaded_problem(spec: ConvSpec, input: torch.Tensor) -> ConvSpec:
        """`spec` with the reduction's channels that `input`, the tensor a forward or input
        gradient loop reads, holds: more than spec's in a zero-padded copy
        (tconv.configs.padded_channels), whose zeros add nothing."""
        if input.shape[1] == spec.in_channels:
            return spec
        return dataclasses.replace(spec, in_channels=input.shape[1])

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int, ...]:
        raise NotImplementedError

    def launch_grid(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping) -> tuple[int, ...]:
        """The grid of a launch on these tensors (the same as `grid` unless a kernel says otherwise)."""
        return self.grid(spec, config)

    def extents(self, spec: ConvSpec) -> tuple[int, int, int]:
        """(rows, columns, reduction per tap): what BLOCK_M, BLOCK_N and BLOCK_K tile."""
        raise NotImplementedError

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        """Multiply-adds the launch's grid executes (whole tiles, padding included)."""
        raise NotImplementedError

    def uses_tensor_cores(self, spec: ConvSpec) -> bool:
        return not spec.elementwise_lanes

    def loop_problem(self, spec: ConvSpec) -> tuple[Descriptor, ConvSpec]:
        """(kernel, problem) whose main loop a launch on `spec` runs, for what is decided
        by the loop (config tables, pruning, the layout decision): itself, unless the
        kernel runs another's loop on another problem (descriptors/columns.py)."""
        return self, spec

    def workspace_bytes(self, spec: ConvSpec, dtype: torch.dtype) -> int:
        """Bytes a pass moves through a workspace beyond its operands (written and read)."""
        return 0

    def images_per_launch(self, spec: ConvSpec, dtype: torch.dtype) -> int:
        """Images of the batch one run of the pass takes: all of them, unless a per-image
        workspace would grow too large; then the launcher runs slices of the batch, each on
        its slice of "input" and of the result (allocate_result), the other operands whole."""
        return spec.batch

    def launch_spec(self, spec: ConvSpec, dtype: torch.dtype) -> ConvSpec:
        """The problem one run launches on: `spec`, or its first slice (images_per_launch)."""
        images = self.images_per_launch(spec, dtype)
        return spec if images >= spec.batch else dataclasses.replace(spec, batch=images)

    def allocate_result(self, spec: ConvSpec, tensors: Mapping) -> torch.Tensor:
        """The whole batch's result, for a pass run in slices (images_per_launch)."""
        raise NotImplementedError(f"{self.name} runs the whole batch at once")

    def tiles_per_step(self, spec: ConvSpec, config: KernelConfig) -> int:
        """Output tiles one main-loop iteration multiplies (wgrad's tap runs; else 1)."""
        return 1

    def most_tiles_per_step(self, config: KernelConfig, dtype: torch.dtype) -> int:
        """The most output tiles per iteration the config's registers hold in dtype
        (config_space sets config.tap_run from it)."""
        return 1

    def with_sms(self, spec: ConvSpec, config: KernelConfig, sms: int) -> KernelConfig:
        """The config a GPU of `sms` streaming multiprocessors should launch (split-K
        kernels set their split count for it; else the config itself)."""
        return config

    def span_run(self, spec: ConvSpec, config: KernelConfig, input: torch.Tensor) -> int:
        """The output run an elementwise pass on w-innermost (NCHW) activations takes in lanes
        (module-level span_run; 1: none, or a kernel without that loop)."""
        return 1

    def weight_columns(self, spec: ConvSpec) -> str | None:
        """How an elementwise launch's weight [A, B, *kernel] is stored so that its columns
        read consecutive elements (a dense one's, where tconv.configs.k_major_weight: its K
        steps): "flat" ([*kernel, A, B]), "transposed" ([B, *kernel, A]), or None (kept as
        given); descriptors/layout.py makes the copy."""
        return None

    def check_grid(self, spec: ConvSpec, config: KernelConfig) -> None:
        """Raise NotImplementedError before a launch CUDA would refuse."""
        for axis, count in enumerate(self.grid(spec, config)[1:], start=1):
            if count > MAX_GRID_YZ:
                raise NotImplementedError(
                    f"tconv's {self.name} kernel launches {count} programs on grid axis {axis}; CUDA allows {MAX_GRID_YZ}"
                )


class MemoryPass(Descriptor):
    """A kernel that multiplies nothing: it moves or sums memory (layout copies, wgrad's split
    reduction, col2im)."""

    def executed_macs(self, spec: ConvSpec, config: KernelConfig) -> int:
        return 0

    def uses_tensor_cores(self, spec: ConvSpec) -> bool:
        return False


# ------------------------------------------------------------------- shared helpers
def in_3d(values: tuple[int, ...], fill: int) -> tuple[int, ...]:
    """A 1-d or 2-d tuple padded at the front to 3 entries."""
    return (fill,) * (3 - len(values)) + tuple(values)


def layout_3d(tensor: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sizes and strides of an [N, C, *spatial] tensor as [N, C, D, H, W]."""
    sizes = tuple(tensor.shape[:2]) + in_3d(tuple(tensor.shape[2:]), 1)
    strides = tuple(tensor.stride()[:2]) + in_3d(tuple(tensor.stride()[2:]), 0)
    return sizes, strides


def channels_innermost(tensor: torch.Tensor) -> bool:
    """Whether an activation's channels are its innermost dimension, or it has one channel:
    what output_run asks of a pass's input (its `channels_last`)."""
    return tensor.stride(1) == 1 or tensor.shape[1] == 1


def conv_output(spec: ConvSpec, input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """An uninitialised [N, C_out, *out] output of `spec` in torch's memory format."""
    return torch.empty((spec.batch, spec.out_channels, *spec.out_size), dtype=input.dtype, device=input.device,
                       memory_format=output_memory_format(input, weight))


def output_memory_format(input: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """torch's rule: a 4-d/5-d conv output is channels_last when input or weight is."""
    layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(input.dim())
    if layout is None:
        return torch.contiguous_format
    for tensor in (input, weight):
        if tensor.dim() == input.dim() and tensor.is_contiguous(memory_format=layout) and not tensor.is_contiguous():
            return layout
    return torch.contiguous_format


def in_layout(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """`tensor` in `layout`. 'channels_last' is the memory format for 4-d and 5-d tensors; a
    3-d [N, C, L] tensor gets channels innermost, as conv1d sees `x.transpose(1, 2)` of a
    contiguous [N, L, C] (torch has no memory format for it); other tensors stay contiguous."""
    if layout == "channels_last" and tensor.dim() in (4, 5):
        return tensor.contiguous(memory_format=torch.channels_last if tensor.dim() == 4 else torch.channels_last_3d)
    if layout == "channels_last" and tensor.dim() == 3:
        return tensor.transpose(1, 2).contiguous().transpose(1, 2)
    return tensor.contiguous()


def _max_offset(tensor: torch.Tensor) -> int:
    return sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))


def numerics(dtype: torch.dtype, compiled: bool, tf32: bool, tensors) -> dict:
    """Accumulator, tensor-core precision, index width and the interpreter's bf16 workaround.

    `compiled`: a CUDA launch (False: Triton's interpreter on the CPU). float32 uses TF32
    tensor cores on CUDA when `tf32` (torch.backends.cudnn.allow_tf32 for a launch).
    Offsets are 32-bit unless some tensor spans 2^31 elements or more.
    """
    wide = any(_max_offset(t) >= 2**31 - 1 for t in tensors if isinstance(t, torch.Tensor) and t.numel() > 0)
    return {
        "INPUT_PRECISION": "tf32" if dtype == torch.float32 and compiled and tf32 else "ieee",
        "ACC_DTYPE": tl.float64 if dtype == torch.float64 else tl.float32,
        "UPCAST_DOT": not compiled and dtype == torch.bfloat16,
        "INDEX_DTYPE": tl.int64 if wide else tl.int32,
    }


def launch_options(config: KernelConfig) -> dict:
    return {"num_warps": config.num_warps, "num_stages": config.num_stages}


def tile_meta(config: KernelConfig) -> dict:
    return {"BLOCK_M": config.block_m, "BLOCK_N": config.block_n, "BLOCK_K": config.block_k}


def tiles(count: int, block: int) -> int:
    return math.ceil(count / block)


def stage_taps(spec: ConvSpec) -> int:
    """The rows of a program's staged weight tile (kernels/_index.py staged_weight): the
    kernel's taps rounded up to a power of two."""
    return triton.next_power_of_2(math.prod(spec.kernel_size))


#: Bytes of the vector each thread loads of an output run's input column (output_run), and the most a
#: span in lanes may take (lane_span_fits): a run's rows are BLOCK_M / run, and tiles of less than a
#: 16-byte vector a thread are replicated across threads.
RUN_VECTOR_BYTES = 16


def output_run(spec: ConvSpec, config: KernelConfig, element_size: int, channels_last: bool,
               runs: tuple[int, ...]) -> int:
    """The output run of a depthwise forward or input gradient (kernels/_index.py
    output_run_loop, W_RUN; 1: rows are single positions): the first of `runs` that divides
    the output's width (the grid and the tile's BLOCK_M positions are then the single
    positions'), whose (kd, kh, input column) bits fit a 64-bit word, and whose
    [BLOCK_M / run, BLOCK_N] input tiles still hold a 16-byte vector a thread
    (RUN_VECTOR_BYTES). One input channel a column (spec.elementwise_lanes 1) and dilation 1
    along w: a run's outputs then share all but stride x (run - 1) of their input columns.
    Loops that read channels-first input in place (not `channels_last`: channels not
    innermost, and more than one) take runs in lanes instead (span_run): gathering each
    column across channels, MobileNetV2's stride-2 forward took 246 registers in runs of 4
    (sm_90)."""
    kernel_w, stride_w = spec.kernel_size[-1], spec.stride[-1]
    if spec.elementwise_lanes != 1 or not channels_last or kernel_w == 1 or spec.dilation[-1] != 1:
        return 1
    outer_taps = math.prod(spec.kernel_size) // kernel_w
    for run in runs:
        span = (run - 1) * stride_w + kernel_w
        vectors = config.block_m // run * config.block_n // (RUN_VECTOR_BYTES // element_size)
        if spec.out_size[-1] % run == 0 and outer_taps * span < 64 and vectors >= 32 * config.num_warps:
            return run
    return 1


def elementwise_run(kernel: Descriptor, spec: ConvSpec, config: KernelConfig, input: torch.Tensor) -> tuple[int, bool]:
    """(W_RUN, whether in lanes) of a forward or input gradient on `input`: its output run
    where the activations' channels are innermost (kernel.output_run), else its run in lanes
    where one applies (kernel.span_run), else 1."""
    run = kernel.output_run(spec, config, input.element_size(), channels_innermost(input))
    lanes = kernel.span_run(spec, config, input) if run == 1 else 1
    return (lanes, True) if lanes > 1 else (run, False)


#: Outputs a run of lanes (span_run) or a weight gradient's chunk (descriptors/wgrad.py
#: position_lanes) may hold, longest first: 16, 8 and 4 bytes of 16-bit storage at stride 1
#: (pairs: 32-bit loads, still about a third fewer instructions than the gather, MobileNetV2's
#: 384-channel 3x3 weight gradient at 14x14, sm_90: 302 -> 192 a step).
SPAN_RUNS = (8, 4, 2)


def lane_span_fits(run: int, stride_w: int, kernel_w: int, pad_w: int, out_width: int, in_width: int,
                   element_size: int) -> bool:
    """Whether `run` consecutive outputs along w (stride_w apart in the input, dilation 1) take
    their input columns from vectors along w: the run divides the output's width, and its own
    span (run x stride_w input columns) is one vector of at most RUN_VECTOR_BYTES, a thread's
    whole (a 16-bit stride-2 span of 8 outputs, 32 bytes over two threads, went through shared
    memory: 76 shared-memory instructions in MobileNetV2's 96-channel stride-2 weight gradient,
    sm_90), inside one line (the input's width a multiple of it, the output no wider than the
    input over the stride); the kernel row reaches at most a span before it (pad_w, the
    padding before the run's first column) and after it."""
    own = run * stride_w
    return (out_width % run == 0 and own * element_size <= RUN_VECTOR_BYTES and in_width % own == 0
            and out_width * stride_w <= in_width and pad_w <= own and kernel_w - 1 - pad_w < stride_w * (run + 1))


def span_run(spec: ConvSpec, config: KernelConfig, input: torch.Tensor, pad_w: int) -> int:
    """The output run of a depthwise forward or input gradient whose activations store w
    innermost (NCHW), its columns taken from vectors along w (kernels/_index.py
    output_run_loop's lanes), 1 where none applies: the first of SPAN_RUNS whose span fits
    (lane_span_fits; pad_w, the padding before the run's first column), starting at a multiple
    of itself (the input's other row strides multiples of it), whose (kd, kh, column) bits fit
    a 64-bit word, and whose tile holds a span a thread. One input channel a column, dilation 1
    along w, a kernel wider than one tap."""
    kernel_w, stride_w = spec.kernel_size[-1], spec.stride[-1]
    sizes, strides = layout_3d(input)
    if (spec.elementwise_lanes != 1 or kernel_w == 1 or spec.dilation[-1] != 1 or strides[4] != 1
            or channels_innermost(input)):
        return 1
    outer_taps = math.prod(spec.kernel_size) // kernel_w
    rows = [stride for dim, (size, stride) in enumerate(zip(sizes, strides)) if dim != 4 and size > 1]
    for run in SPAN_RUNS:
        own, span = run * stride_w, (run - 1) * stride_w + kernel_w
        if (lane_span_fits(run, stride_w, kernel_w, pad_w, spec.out_size[-1], sizes[4], input.element_size())
                and outer_taps * span < 64 and all(stride % own == 0 for stride in rows)
                and config.block_m // run * config.block_n >= 32 * config.num_warps):
            return run
    return 1


def tap_bits_limit(spec: ConvSpec, config: KernelConfig, element_size: int, packed: bool = False) -> int:
    """Taps below which a padded loop keeps a bit per tap and row (kernels' valid_taps): 64 in
    a 64-bit word for packed thin steps (kernels/fprop.py packed_step) and for 16-bit tl.dot
    loops of at most 128 rows (a 7x7 forward at 64 channels,
    sm_90: 101 instructions per 4 HGMMA with them, 169 without), else 32. Rows' 64-bit words
    hold twice the registers: a 256-row input gradient of DeepSpeech's 5x10 layer spilled
    952 bytes with them (sm_90), a TF32 7x7 forward 4 (sm_80 32x64x64), and elementwise
    loops keep 32 (configs.ELEMENTWISE_BOUNDS_TAPS)."""
    wide = not spec.elementwise_lanes and element_size == 2 and config.block_m <= 128
    return 64 if packed or wide else 32


def k_chunks(channels: int, taps: int, config: KernelConfig, two_blocks: bool = False) -> int:
    """Channel blocks one K step of a tap-major loop takes (kernels/fprop.py K_CHUNKS): all
    of a tap's `channels` when they are 3 or 5 whole BLOCK_K-wide blocks (96 = 3 x 32,
    48 = 3 x 16, 160 = 5 x 32; no power-of-two K step spans them unpadded) and at most the
    config's k_step (what its family's shared memory holds for 16-bit operands:
    configs.with_k_step); else 1. Each block of such a step otherwise pays the step's fixed
    cost (counters, row mask, pointers) alone: 96->96 3x3 forward, sm_90, 128x32x32: 102
    loop instructions per 4 HGMMA. Six and seven blocks keep one a step: six spilled 120
    bytes (sm_80, a 192-channel input gradient at 64x32x32 written channels-first). A single
    tap (1x1) keeps one block a step: its loop would run one step, which the compiler
    unrolls whole. Two blocks (128 = 2 x 64) where the caller allows (two_blocks: A loads
    along channels): the step's fixed cost is then shared by two tl.dots rather than taken
    by a wider BLOCK_K, whose larger fragments spilled (3D U-Net's 128->64 3x3x3 forward,
    sm_80, 128x64: 239 instructions per 64 HMMA; 128-deep BLOCK_K 387 per 128 and 24
    bytes spilled; two 64-wide blocks 312 per 128). Gathered channels-first A lost: 64x64x32
    sm_80 loops of 16-bit loads went from 150-173 instructions per 16 HMMA to 337-413 per 32."""
    chunks = channels // config.block_k
    if taps == 1 or channels % config.block_k or chunks not in ((2, 3, 5) if two_blocks else (3, 5)):
        return 1
    return chunks if channels <= config.k_step else 1


def group_meta(spec: ConvSpec) -> dict:
    """The group constexprs of an elementwise launch (tconv.spec.ConvSpec.elementwise_lanes):
    input and output channels per group, constant so that channel runs stay provably
    contiguous; both 0 for tl.dot launches (they read the runtime arguments)."""
    if not spec.elementwise_lanes:
        return {"GROUP_IN": 0, "GROUP_OUT": 0}
    return {"GROUP_IN": spec.in_channels_per_group, "GROUP_OUT": spec.out_channels_per_group}


def make_operands(kernel: Descriptor, spec: ConvSpec, dtype: torch.dtype, layout: str, device, *, bias: bool = False,
                  random: bool = True) -> dict:
    """The operands a caller passes to one launch of `kernel`, in `layout`: fresh random
    values, or uninitialised (`random=False`, e.g. on the meta device for a compile)."""
    operands = {}
    for name, shape in kernel.operand_shapes(spec).items():
        if name == "bias" and not bias:
            operands[name] = None
            continue
        make = torch.randn if random else torch.empty
        operands[name] = in_layout(make(shape, dtype=dtype, device=device), layout)
    if kernel.bias_flag is not None:
        operands[kernel.bias_flag] = bias
    return operands
