"""The `tconv` console script.

`tconv demo` runs a few convolutions of every kind through tconv's Triton kernels (on
the GPU when there is one, else through Triton's interpreter on the CPU), forward in
three dtypes and backward in float32, checks each against torch's float64 result and
prints the work the forward launch issued against the useful work. `tconv tune`
(tconv.tune_command), `tconv bench` and `tconv report` (tconv.perf) live beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from . import functional
from .arguments import Parser, UsageError, dtype_list
from .configs import heuristic_config
from .plan import executed_macs
from .spec import conv_spec, conv_transpose_spec, pass_specs
from .testing import TOLERANCE, ConvCase

DEMO_CASES = [
    ConvCase("conv1d dilated (WaveNet-like)", (64,), 16, 32, (2,), kwargs={"dilation": 4}),
    ConvCase("conv2d 3x3 (ResNet-like)", (14, 14), 32, 32, (3, 3), kwargs={"padding": 1}),
    ConvCase("conv2d 7x7 s2 stem", (32, 32), 3, 16, (7, 7), kwargs={"stride": 2, "padding": 3}),
    ConvCase("conv2d depthwise 5x5 s2", (16, 16), 24, 24, (5, 5), kwargs={"stride": 2, "padding": 2, "groups": 24}),
    ConvCase("conv2d 'same' dilated", (12, 12), 8, 8, (3, 3), kwargs={"padding": "same", "dilation": 2}),
    ConvCase("conv3d 3x3x3", (6, 6, 6), 8, 16, (3, 3, 3), kwargs={"padding": 1}),
    ConvCase("conv_transpose2d 4/2/1 (DCGAN)", (8, 8), 32, 16, (4, 4), transposed=True, kwargs={"stride": 2, "padding": 1}),
    ConvCase("conv_transpose1d 16/8/4 (HiFi-GAN)", (16,), 32, 16, (16,), transposed=True, kwargs={"stride": 8, "padding": 4}),
    ConvCase("conv_transpose3d 2/2 (3D U-Net)", (4, 4, 4), 16, 8, (2, 2, 2), transposed=True, kwargs={"stride": 2}),
]


def _demo(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = "compiled, on " + torch.cuda.get_device_name() if device.type == "cuda" else "Triton interpreter, on the CPU"
    print(f"tconv demo: {len(DEMO_CASES)} convolutions through tconv's Triton kernels ({where})")
    dtypes = args.dtypes
    failures = 0
    header = f"{'case':38} {'dtype':9} {'output':>18} {'max err/scale':>13} {'tolerance':>9} {'exec/useful MACs':>16} {'s':>6}"
    print(header)
    print("-" * len(header))
    for case in DEMO_CASES:
        for dtype in dtypes:
            input, weight, bias = case.tensors(dtype, device=str(device))
            name = f"conv_transpose{case.dims}d" if case.transposed else f"conv{case.dims}d"
            start = time.perf_counter()
            actual = getattr(functional, name)(input, weight, bias, **case.kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            reference = getattr(torch.nn.functional, name)(input.double(), weight.double(), bias.double(), **case.kwargs)
            scale = max(reference.abs().max().item(), 1.0)
            error = (actual.double() - reference).abs().max().item() / scale
            ok = error <= TOLERANCE[dtype]
            failures += not ok
            if case.transposed:
                spec, _ = conv_transpose_spec(name, case.dims, input, weight, bias, groups=1, output_padding=0, dilation=1,
                                              stride=case.kwargs["stride"], padding=case.kwargs.get("padding", 0))
            else:
                spec, _ = conv_spec(name, case.dims, input, weight, bias, case.kwargs.get("stride", 1),
                                    case.kwargs.get("padding", 0), case.kwargs.get("dilation", 1), case.kwargs.get("groups", 1))
            kernel = pass_specs(spec)["fprop"][0]  # the kernel the forward launches
            ratio = executed_macs(kernel, spec, heuristic_config(kernel, spec, dtype, layout="contiguous")) / spec.useful_macs
            shape = "x".join(map(str, actual.shape))
            print(
                f"{case.name:38} {str(dtype).removeprefix('torch.'):9} {shape:>18} {error:13.2e} {TOLERANCE[dtype]:9.2g} "
                f"{ratio:16.2f} {seconds:6.2f} {'ok' if ok else 'FAIL'}"
            )
    print("-" * len(header))
    backward_failures = _demo_backward(device)
    total = len(DEMO_CASES) * (len(dtypes) + 1)
    failures += backward_failures
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


def _demo_backward(device: torch.device) -> int:
    """Gradients of every demo case (float32) against torch's float64 ones."""
    print("\nbackward (float32): dgrad, wgrad + split-K reduction, bias; max error / max |reference|")
    header = f"{'case':38} {'grad_input':>11} {'grad_weight':>11} {'grad_bias':>11} {'s':>6}"
    print(header)
    print("-" * len(header))
    failures = 0
    for case in DEMO_CASES:
        tensors = [t.requires_grad_() for t in case.tensors(torch.float32, device=str(device))]
        name = f"conv_transpose{case.dims}d" if case.transposed else f"conv{case.dims}d"
        start = time.perf_counter()
        output = getattr(functional, name)(*tensors, **case.kwargs)
        grad_output = torch.randn_like(output)
        ours = torch.autograd.grad(output, tensors, grad_output)
        seconds = time.perf_counter() - start
        references = [t.detach().double().requires_grad_() for t in tensors]
        reference = getattr(torch.nn.functional, name)(*references, **case.kwargs)
        theirs = torch.autograd.grad(reference, references, grad_output.double())
        errors = [
            (mine.double() - expected).abs().max().item() / max(expected.abs().max().item(), 1.0)
            for mine, expected in zip(ours, theirs)
        ]
        ok = max(errors) <= TOLERANCE[torch.float32]
        failures += not ok
        print(f"{case.name:38} {errors[0]:11.2e} {errors[1]:11.2e} {errors[2]:11.2e} {seconds:6.2f} {'ok' if ok else 'FAIL'}")
    print("-" * len(header))
    return failures


def _version() -> str:
    import triton

    from . import __version__

    return f"tconv {__version__} (torch {torch.__version__}, triton {triton.__version__})"


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit status (2 for a usage error, with one line on stderr)."""
    # Triton 3.9 warns on every compile unless this is set; 1 keeps its current default.
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    parser = Parser(prog="tconv", description="Convolution for PyTorch written in Triton")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    demo = commands.add_parser("demo", help="run convolutions through tconv's kernels and check them against torch")
    demo.add_argument("--dtypes", type=dtype_list, default="float32,float16,bfloat16",
                      help="comma-separated dtypes (torch names or fp16, bf16, fp32, fp64)")
    demo.set_defaults(run=_demo)
    from .perf import bench, report
    from .tune_command import add_parser as add_tune

    add_tune(commands)
    bench.add_parser(commands)
    report.add_parser(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version (0) or a bad argument (2, already printed)
        return exit.code if isinstance(exit.code, int) else 2
    try:
        return args.run(args)
    except UsageError as error:
        print(f"tconv {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
