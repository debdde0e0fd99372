"""The main loop of a kernel, read from its SASS, and the static issue bound it implies.

Definitions (../shared/STATIC_MODEL.md): a loop is a backward branch (a BRA to a lower
address); the main loop is the innermost loop holding tensor-core instructions (HGMMA
on sm_90, HMMA on sm_80, DMMA for float64), or, in a kernel without them (depthwise),
the innermost loop holding global loads. Per iteration (one BLOCK_K step) it counts
every instruction from the branch target to the branch, inclusive.

The issue-bound share of tensor peak: an SM issues 4 warp-instructions per clock and
does `peak` dense multiply-adds per clock, so a K step needs at least
BLOCK_M * BLOCK_N * BLOCK_K / peak clocks of tensor work and num_warps * instructions / 4
clocks of issue; the share is min(1, the first / the second). It is an upper bound on
the fraction of tensor peak the loop can reach: latency, memory and the epilogue are
not in it. It is not a timing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .configs import KernelConfig

#: Dense multiply-adds per clock per SM. sm_90 / sm_80 16-bit and TF32 from the
#: architecture whitepapers; float64 (DMMA) from the datasheets' FP64 tensor-core peaks
#: (H100 SXM 67 TFLOPS at 132 SMs x 1.98 GHz; A100 19.5 TFLOPS at 108 SMs x 1.41 GHz).
TENSOR_MACS_PER_CLOCK = {
    90: {"16-bit": 2048, "tf32": 1024, "float64": 128},
    80: {"16-bit": 1024, "tf32": 512, "float64": 64},
}
WARP_INSTRUCTIONS_PER_CLOCK = 4
TENSOR_CORE_OPCODES = ("HGMMA", "HMMA", "DMMA")

_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_TARGET = re.compile(r"0x([0-9a-f]+)\s*$")
_WIDTHS = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}


@dataclass(frozen=True)
class LoopReport:
    instructions: int  # per iteration, branch target to branch inclusive
    tensor_core_instructions: int
    global_loads: tuple[tuple[int, int], ...]  # (bits, count) of LDG and LDGSTS, widest first
    async_copies: int  # LDGSTS (cp.async) + UTMALDG (TMA)
    tma_loads: int
    unrolled: bool = False  # no loop: the compiler unrolled the K loop whole (unrolled_loop)

    @property
    def load_bits(self) -> int:
        """The narrowest global load in the loop (128 when every operand comes by TMA)."""
        return min((bits for bits, _ in self.global_loads), default=128 if self.tma_loads else 0)

    def loads_of(self, bits: int) -> int:
        return dict(self.global_loads).get(bits, 0)


def _instructions(sass: str) -> list[tuple[int, str]]:
    """(address, instruction text without predicate) of every SASS line."""
    result = []
    for match in _LINE.finditer(sass):
        text = match.group(2)
        if text.startswith("@"):
            text = text.split(None, 1)[1] if " " in text else text
        result.append((int(match.group(1), 16), text))
    return result


def _opcode(text: str) -> str:
    return text.split(None, 1)[0]


def _load_bits(opcode: str, kinds: tuple[str, ...] = ("LDG", "LDGSTS")) -> int | None:
    parts = opcode.split(".")
    if parts[0] not in kinds:
        return None
    return next((_WIDTHS[p] for p in parts[1:] if p in _WIDTHS), 32)


def _load_widths(opcodes: list[str]) -> dict[int, int]:
    """{bits: count} of the global loads (LDG and LDGSTS) among `opcodes`."""
    widths: dict[int, int] = {}
    for opcode in opcodes:
        bits = _load_bits(opcode)
        if bits is not None:
            widths[bits] = widths.get(bits, 0) + 1
    return widths


def narrowest_global_access(sass: str) -> tuple[int | None, int | None]:
    """(narrowest global load, narrowest global store) in bits over the whole kernel, None
    where it has none: what a loop-free kernel (the layout copy) is judged by."""
    opcodes = [_opcode(text) for _, text in _instructions(sass)]
    loads = [bits for op in opcodes if (bits := _load_bits(op)) is not None]
    stores = [bits for op in opcodes if (bits := _load_bits(op, ("STG",))) is not None]
    return min(loads, default=None), min(stores, default=None)


def tensor_core_instructions(sass: str) -> int:
    """Tensor-core instructions anywhere in the kernel (a K loop of one step is unrolled away)."""
    return sum(_opcode(text).split(".")[0] in TENSOR_CORE_OPCODES for _, text in _instructions(sass))


def main_loop(sass: str) -> LoopReport | None:
    instructions = _instructions(sass)
    loops = []
    for address, text in instructions:
        opcode = _opcode(text)
        if opcode.split(".")[0] == "BRA":
            target = _TARGET.search(text)
            if target and int(target.group(1), 16) < address:
                loops.append((int(target.group(1), 16), address))

    def body(loop):
        return [_opcode(text) for address, text in instructions if loop[0] <= address <= loop[1]]

    def has(loop, predicate):
        return any(predicate(opcode) for opcode in body(loop))

    tensor = [loop for loop in loops if has(loop, lambda op: op.split(".")[0] in TENSOR_CORE_OPCODES)]
    loading = [loop for loop in loops if has(loop, lambda op: _load_bits(op) is not None or op.startswith("UTMALDG"))]
    candidates = tensor or loading
    if not candidates:
        return None
    loop = min(candidates, key=lambda span: span[1] - span[0])
    opcodes = body(loop)
    tma = sum(op.startswith("UTMALDG") for op in opcodes)
    return LoopReport(
        instructions=len(opcodes),
        tensor_core_instructions=sum(op.split(".")[0] in TENSOR_CORE_OPCODES for op in opcodes),
        global_loads=tuple(sorted(_load_widths(opcodes).items(), reverse=True)),
        async_copies=sum(op.startswith("LDGSTS") for op in opcodes) + tma,
        tma_loads=tma,
    )


def unrolled_loop(sass: str, tensor_core_per_step: int) -> LoopReport | None:
    """The main loop of a kernel whose K loop the compiler unrolled whole (a constant trip
    count: a patch embedding's 48 folded K steps on sm_90), where no loop holds tensor-core
    instructions but the straight-line code does. A step issues `tensor_core_per_step` of
    them (what one iteration of a loop at the same tile issues: the plain GEMM's); per step
    it counts the instructions and loads from the first step's first tensor-core
    instruction up to the last step's, divided by the steps between them. None with fewer
    than three steps."""
    opcodes = [_opcode(text) for _, text in _instructions(sass)]
    tensor = [i for i, op in enumerate(opcodes) if op.split(".")[0] in TENSOR_CORE_OPCODES]
    steps = len(tensor) // max(tensor_core_per_step, 1)
    if steps < 3:
        return None
    between = steps - 1
    span = opcodes[tensor[0]:tensor[between * tensor_core_per_step]]
    widths = _load_widths(span)
    return LoopReport(
        instructions=round(len(span) / between),
        tensor_core_instructions=tensor_core_per_step,
        global_loads=tuple((bits, max(1, round(count / between))) for bits, count in sorted(widths.items(), reverse=True)),
        async_copies=round(sum(op.startswith(("LDGSTS", "UTMALDG")) for op in span) / between),
        tma_loads=round(sum(op.startswith("UTMALDG") for op in span) / between),
        unrolled=True,
    )


def unrolled_taps(sass: str, taps: int) -> LoopReport | None:
    """The main loop of an elementwise kernel (no tensor cores) whose tap loop the compiler
    unrolled whole (a constant trip count: a depthwise 3x3 forward with its weight staged,
    kernels/_index.py staged_weight). The steps' code follows the stage's barrier when the
    kernel has one, each loading a taps-th of the loads there; per step it counts
    the instructions and loads from the first step's first load to the last step's, divided
    by the steps between them (taps - 1), as unrolled_loop does. None with fewer than three
    taps or fewer loads than taps there."""
    if taps < 3:
        return None
    after = _after_stage(sass)
    loads = [i for i, op in enumerate(after) if _load_bits(op) is not None]
    if len(loads) < taps:
        return None
    between = taps - 1
    span = after[loads[0]:loads[len(loads) - len(loads) // taps]]
    widths = _load_widths(span)
    return LoopReport(
        instructions=round(len(span) / between),
        tensor_core_instructions=0,
        global_loads=tuple((bits, max(1, round(count / between))) for bits, count in sorted(widths.items(), reverse=True)),
        async_copies=round(sum(op.startswith(("LDGSTS", "UTMALDG")) for op in span) / between),
        tma_loads=0,
        unrolled=True,
    )


def _stage_end(opcodes: list[str]) -> int:
    """Where an elementwise kernel's code after its weight stage starts (0 without a stage).
    The stage's barrier is the first after a global store that global loads follow: an
    epilogue converting the output's layout through shared memory has barriers between its
    stores, with no load after them."""
    stored = next((i for i, op in enumerate(opcodes) if op.startswith("STG")), len(opcodes))
    last_load = max((i for i, op in enumerate(opcodes) if _load_bits(op) is not None), default=-1)
    stage = next((i for i, op in enumerate(opcodes[stored:last_load], stored) if op.startswith("BAR.SYNC")), None)
    return stage + 1 if stage is not None else 0


def _after_stage(sass: str) -> list[str]:
    """The opcodes after an elementwise kernel's weight stage (_stage_end)."""
    opcodes = [_opcode(text) for _, text in _instructions(sass)]
    return opcodes[_stage_end(opcodes):]


def straight_step(sass: str) -> LoopReport | None:
    """The one step of an elementwise kernel whose loop has a single step (1-d output runs:
    kernels/_index.py output_run_loop, one row of taps), which the compiler leaves as
    straight-line code: after the weight stage, from the first masked (predicated) global
    load, a tile's, through the last store (earlier unmasked loads are the prologue's: an
    input gradient's phase table). A tile takes one step, so the epilogue that stores it
    counts with it: the compiler may start storing before the step's last multiply-add, and a
    cut at the first store would count more of it where the stores are fewer and later. None
    without such a load before a store."""
    masked = [text.startswith("@") for text in (match.group(2) for match in _LINE.finditer(sass))]
    opcodes = [_opcode(text) for _, text in _instructions(sass)]
    start = _stage_end(opcodes)
    first = next((i for i in range(start, len(opcodes)) if masked[i] and _load_bits(opcodes[i]) is not None), None)
    stores = [i for i in range(first, len(opcodes)) if opcodes[i].startswith("STG")] if first else []
    if not stores:
        return None
    span = opcodes[first:stores[-1] + 1]
    return LoopReport(
        instructions=len(span),
        tensor_core_instructions=0,
        global_loads=tuple(sorted(_load_widths(span).items(), reverse=True)),
        async_copies=sum(op.startswith(("LDGSTS", "UTMALDG")) for op in span),
        tma_loads=0,
        unrolled=True,
    )


def peak_macs_per_clock(arch: int, dtype: str, precision: str = "tf32") -> int:
    """Dense tensor-core multiply-adds per clock per SM for `dtype` operands."""
    if dtype in ("float16", "bfloat16"):
        return TENSOR_MACS_PER_CLOCK[arch]["16-bit"]
    if dtype == "float64":
        return TENSOR_MACS_PER_CLOCK[arch]["float64"]
    if precision != "tf32":
        raise ValueError("float32 without TF32 does not run on tensor cores")
    return TENSOR_MACS_PER_CLOCK[arch]["tf32"]


def issue_bound_share(config: KernelConfig, loop_instructions: int, arch: int, dtype: str, precision: str = "tf32",
                      tiles_per_step: int = 1) -> float:
    """min(1, tensor clocks / issue clocks) of one K step (an upper bound, not a timing);
    a step that multiplies `tiles_per_step` tiles (wgrad's tap runs) does that many times
    BLOCK_M x BLOCK_N x BLOCK_K multiply-adds."""
    macs = config.block_m * config.block_n * config.block_k * tiles_per_step
    tensor_clocks = macs / peak_macs_per_clock(arch, dtype, precision)
    issue_clocks = config.num_warps * loop_instructions / WARP_INSTRUCTIONS_PER_CLOCK
    return min(1.0, tensor_clocks / issue_clocks)
