"""`tconv bench`: one suite's layers x passes x dtypes, as long-format CSV rows.

Three parts, each a list of rows (one number or label per row):

- static, on any machine: FLOPs, minimum bytes, arithmetic intensity and roofline-bound
  time on the GPUs in perf.roofline; for each compile target (sm_80, sm_90) the config
  the heuristic picks, the executed / useful multiply-adds of that launch plan, and the
  kernel compiled ahead of time exactly as the launch compiles (tconv.aot): registers,
  spills, shared memory and its main loop read from the SASS (instructions, tensor-core
  instructions, load widths, asynchronous copies) with the issue-bound share of tensor
  peak, beside a plain GEMM's at the same config (tconv.sass; an upper bound, not a
  timing). `--static` adds a compile sweep of every config space.
- `--quick`: every layer, scaled down (perf.suites.scaled), run through tconv forward
  and backward (the interpreter on CPU) and compared with torch in float64.
- on a CUDA device: tconv and cuDNN (torch.backends.cudnn.benchmark=True), optionally
  torch.compile(mode="max-autotune"), timed with triton.testing.do_bench on rotating
  operands (median ms), as TFLOP/s, GB/s, % of the roofline and speedup over cuDNN.
- traffic, on any machine (unless `--no-traffic`): the bytes elementwise passes load and
  store, counted in the interpreter on a reduced layer (perf.traffic), and loaded / minimum.
- host, on any machine (unless `--no-host`): per layer at reduced size, the host time of
  tconv's eager forward and forward + backward (launches stubbed) against torch's
  dispatch of the same calls, and launches per call (perf.host).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import subprocess
import time

import torch
import triton

import tconv
from tconv import _launch
from tconv.aot import FAMILY_OF_ARCH, compile_all, progress, reference_loop
from tconv.arguments import arch_list, dtype_list, layout_list, pass_list, positive_int
from tconv.configs import FAMILY_GPU, config_space, descriptor_of, heuristic_config
from tconv.descriptors import PASS_KERNELS
from tconv.descriptors.base import make_operands
from tconv.descriptors.layout import channels_last_copies, stage_elements
from tconv.plan import executed_macs
from tconv.spec import pass_specs
from tconv.testing import TOLERANCE
from tconv.tune import MAX_OPERAND_SETS, ROTATE_BYTES, graph_ms, median_ms, operand_sets

from .host import cuda_call_us, host_times
from .roofline import ELEMENT_BYTES, GPUS, STATIC_GPUS, gemm_macs, gpu_peak, min_bytes, roofline_us
from .suites import SUITES, Layer, layer_spec, scaled
from .traffic import traffic_metrics

COLUMNS = ["run", "commit", "tconv", "torch", "triton", "device", "suite", "layer", "count", "shape", "pass", "kernel",
           "dtype", "layout", "source", "metric", "value"]
PASSES = ("fprop", "dgrad", "wgrad")
#: The config family whose layout decision a GPU's roofline rows describe.
GPU_FAMILY = {gpu: next(f for f, g in FAMILY_GPU.items() if g == gpu) for gpu in STATIC_GPUS}


def run_metadata() -> dict:
    """Columns every row of one run shares: when, which code, which machine."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (no GPU)"
    return {"run": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": commit,
            "tconv": tconv.__version__, "torch": torch.__version__, "triton": triton.__version__, "device": device}


class Rows:
    """Collects rows with the shared columns filled in."""

    def __init__(self, meta: dict, suite: str, layout: str):
        self.meta, self.suite, self.layout, self.rows = meta, suite, layout, []

    def add(self, layer: Layer, pass_name: str, kernel: str, dtype: str, source: str, metric: str, value) -> None:
        self.rows.append({**self.meta, "suite": self.suite, "layer": layer.name, "count": layer.count,
                          "shape": layer.describe(), "pass": pass_name, "kernel": kernel, "dtype": dtype,
                          "layout": self.layout, "source": source, "metric": metric, "value": value})


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


#: Compile metrics written per (layer, pass, dtype, layout, arch).
def compile_metrics(report, reference) -> list[tuple[str, object]]:
    loop = report.loop
    metrics = [("registers", report.registers), ("spill_bytes", report.spill_bytes),
               ("shared_bytes", report.shared_bytes), ("tensor_cores", int(report.tensor_cores)),
               ("pipelined", int(report.pipelined)), ("shared_stages", report.shared_stages)]
    if loop is not None:
        metrics += [("loop_instructions", loop.instructions),
                    ("loop_tensor_core_instructions", loop.tensor_core_instructions),
                    ("async_copies", loop.async_copies), ("load_bits", loop.load_bits),
                    ("loads_128", loop.loads_of(128)), ("loads_16", loop.loads_of(16)),
                    ("loop_unrolled", int(loop.unrolled))]
    if report.load_bits is not None:  # the whole kernel, loop or not (a short tap loop may be unrolled)
        metrics += [("kernel_load_bits", report.load_bits), ("kernel_store_bits", report.store_bits)]
    if loop is not None and report.step_macs:  # (elementwise loops: instructions per 2,048 multiply-adds, a 64x32 tap)
        metrics += [("step_macs", report.step_macs),
                    ("instructions_per_2048_macs", round(loop.instructions * 2048 / report.step_macs, 1))]
    if report.issue_bound_share is not None:
        metrics.append(("issue_bound_share", round(report.issue_bound_share, 4)))
    if reference is not None and reference.issue_bound_share is not None:
        metrics.append(("gemm_issue_bound_share", round(reference.issue_bound_share, 4)))
        if loop is not None and loop.tensor_core_instructions:
            per_mma = loop.instructions / loop.tensor_core_instructions
            gemm_per_mma = reference.loop.instructions / reference.loop.tensor_core_instructions
            metrics.append(("loop_over_gemm", round(per_mma / gemm_per_mma, 3)))
    return metrics


def static_rows(rows: Rows, layers: list[Layer], passes, dtypes, archs, workers: int) -> None:
    jobs, picks = [], []
    for layer in layers:
        spec = layer_spec(layer)
        flops = 2 * gemm_macs(spec)
        for pass_name in passes:
            kernel, kernel_spec = pass_specs(spec)[pass_name]
            for dtype in dtypes:
                name = _dtype_name(dtype)
                traffic = min_bytes(spec, name)
                rows.add(layer, pass_name, kernel, name, "static", "flops", flops)
                rows.add(layer, pass_name, kernel, name, "static", "useful_flops", 2 * kernel_spec.useful_macs)
                rows.add(layer, pass_name, kernel, name, "static", "min_bytes", traffic)
                rows.add(layer, pass_name, kernel, name, "static", "arithmetic_intensity", round(flops / traffic, 2))
                operands = make_operands(descriptor_of(kernel), kernel_spec, dtype, rows.layout, "meta", random=False)
                workspace = descriptor_of(kernel).workspace_bytes(kernel_spec, dtype)
                if workspace:  # a workspace written and read besides the operands (descriptors/columns.py)
                    rows.add(layer, pass_name, kernel, name, "static", "workspace_bytes", workspace)
                    # what one slice of the batch holds at once (written once, read once)
                    held = descriptor_of(kernel).workspace_bytes(descriptor_of(kernel).launch_spec(kernel_spec, dtype), dtype)
                    rows.add(layer, pass_name, kernel, name, "static", "workspace_held_bytes", held // 2)
                for gpu in STATIC_GPUS:  # the layout copies this GPU's family makes: their bytes, and time at peak
                    copies = channels_last_copies(descriptor_of(kernel), kernel_spec, operands, GPU_FAMILY[gpu])
                    extra = sum(copy.moved_bytes(kernel_spec, ELEMENT_BYTES[name]) for copy in copies)
                    # a staged weight (written once, read once): what torch's weight layout costs the pass
                    config = heuristic_config(kernel, kernel_spec, dtype, GPU_FAMILY[gpu], rows.layout)
                    extra += 2 * ELEMENT_BYTES[name] * stage_elements(descriptor_of(kernel), kernel_spec, operands,
                                                                      config, copies)
                    bound = roofline_us(flops, traffic, GPUS[gpu], name)
                    rows.add(layer, pass_name, kernel, name, gpu, "roofline_us", round(bound, 3))
                    rows.add(layer, pass_name, kernel, name, gpu, "layout_bytes", extra)
                    rows.add(layer, pass_name, kernel, name, gpu, "roofline_with_layout_us",
                             round(bound + extra / (GPUS[gpu].bandwidth_tbs * 1e6), 3))
                    if workspace:
                        rows.add(layer, pass_name, kernel, name, gpu, "roofline_with_workspace_us",
                                 round(bound + (extra + workspace) / (GPUS[gpu].bandwidth_tbs * 1e6), 3))
                for arch in archs:
                    config = heuristic_config(kernel, kernel_spec, dtype, FAMILY_OF_ARCH[arch], rows.layout)
                    copies = channels_last_copies(descriptor_of(kernel), kernel_spec, operands, FAMILY_OF_ARCH[arch])
                    picks.append((layer, pass_name, kernel, name, arch, config, kernel_spec, copies))
                    jobs.append((kernel, kernel_spec, name, config, arch, rows.layout))
                    jobs += [(copy.name, kernel_spec, name, config, arch, rows.layout) for copy in copies]
    results = compile_all(jobs, workers, f"compiling ({rows.layout}) for " + ", ".join(f"sm_{a}" for a in archs))
    for layer, pass_name, kernel, name, arch, config, kernel_spec, copies in picks:
        source = f"sm_{arch}"
        copy_reports = [results[(copy.name, kernel_spec, name, config, arch, rows.layout)][0] for copy in copies]
        if copy_reports and None not in copy_reports:  # what the layout copies load and store, at their narrowest
            rows.add(layer, pass_name, kernel, name, source, "copy_load_bits", min(r.load_bits for r in copy_reports))
            rows.add(layer, pass_name, kernel, name, source, "copy_store_bits", min(r.store_bits for r in copy_reports))
            rows.add(layer, pass_name, kernel, name, source, "copy_spill_bytes", sum(r.spill_bytes for r in copy_reports))
        rows.add(layer, pass_name, kernel, name, source, "config", str(config))
        rows.add(layer, pass_name, kernel, name, source, "executed_over_useful",
                 round(executed_macs(kernel, kernel_spec, config) / max(kernel_spec.useful_macs, 1), 4))
        report, error = results[(kernel, kernel_spec, name, config, arch, rows.layout)]
        if report is None:
            rows.add(layer, pass_name, kernel, name, source, "compile_error", error)
            continue
        reference = reference_loop(name, config, arch) if report.tensor_cores else None
        for metric, value in compile_metrics(report, reference):
            rows.add(layer, pass_name, kernel, name, source, metric, value)


def space_rows(rows: Rows, dtypes, archs, workers: int) -> None:
    """`--static`: compile every config of every space, on a 3x3 layer (and a depthwise one)."""
    dense = Layer("space 3x3", 8, 64, (28, 28), 64, (3, 3), 1, 1)
    depthwise = Layer("space depthwise 3x3", 8, 96, (28, 28), 96, (3, 3), 1, 1, 1, 96)
    jobs, entries = [], []
    for layer in (dense, depthwise):
        spec = layer_spec(layer)
        for kernel in PASS_KERNELS:
            kernel_spec = pass_specs(spec)[kernel][1]  # a conv layer's pass is named after its kernel
            for dtype in dtypes:
                for arch in archs:
                    for config in config_space(kernel, FAMILY_OF_ARCH[arch], spec.elementwise_lanes > 0, dtype):
                        jobs.append((kernel, kernel_spec, _dtype_name(dtype), config, arch, rows.layout))
                        entries.append((layer, kernel, _dtype_name(dtype), arch, config, kernel_spec))
    results = compile_all(jobs, workers, "compiling every config space")
    for layer, kernel, name, arch, config, kernel_spec in entries:
        report, error = results[(kernel, kernel_spec, name, config, arch, rows.layout)]
        source = f"sm_{arch}"
        row_layer = Layer(f"{layer.name} [{config}]", layer.batch, layer.in_channels, layer.in_size, layer.out_channels,
                          layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.groups)
        if report is None:
            rows.add(row_layer, kernel, kernel, name, source, "compile_error", error)
            continue
        for metric, value in compile_metrics(report, None):
            rows.add(row_layer, kernel, kernel, name, source, metric, value)


def quick_rows(rows: Rows, layers: list[Layer], passes, dtypes, device: torch.device, bar=None) -> int:
    """Forward and backward of every layer at reduced size through tconv, against torch
    in float64; returns the number of failed checks."""
    failures = 0
    for layer in layers:
        small = scaled(layer)
        spec = layer_spec(layer)
        ours, theirs = small.functions()
        kwargs = small.kwargs
        for dtype in dtypes:
            name = _dtype_name(dtype)
            input = torch.randn(small.batch, small.in_channels, *small.in_size, dtype=torch.float64).to(dtype)
            weight = torch.randn(small.weight_shape, dtype=torch.float64).to(dtype)
            if layer.dims >= 2 and rows.layout == "channels_last":
                layout = torch.channels_last if layer.dims == 2 else torch.channels_last_3d
                input, weight = input.to(memory_format=layout), weight.to(memory_format=layout)
            input, weight = input.to(device).requires_grad_(), weight.to(device).requires_grad_()
            start = time.perf_counter()
            output = ours(input, weight, **kwargs)
            grad_output = torch.randn_like(output)
            grad_input, grad_weight = torch.autograd.grad(output, (input, weight), grad_output)
            seconds = time.perf_counter() - start
            references = [t.detach().double().cpu().requires_grad_() for t in (input, weight)]
            expected = theirs(*references, **kwargs)
            expected_grads = torch.autograd.grad(expected, references, grad_output.double().cpu())
            results = {"fprop": (output, expected), "dgrad": (grad_input, expected_grads[0]),
                       "wgrad": (grad_weight, expected_grads[1])}
            for pass_name in passes:
                actual, reference = results[pass_name]
                scale = max(reference.abs().max().item(), 1.0)
                error = (actual.detach().double().cpu() - reference).abs().max().item() / scale
                ok = error <= TOLERANCE[dtype]
                failures += not ok
                kernel = pass_specs(spec)[pass_name][0]
                source = "interpreter" if device.type == "cpu" else "check"
                for metric, value in (("checked_shape", small.describe()), ("max_error", f"{error:.3g}"),
                                      ("tolerance", TOLERANCE[dtype]), ("ok", int(ok)),
                                      ("seconds_fwd_bwd", round(seconds, 3))):
                    rows.add(layer, pass_name, kernel, name, source, metric, value)
            if bar:
                bar.update()
    return failures


def traffic_rows(rows: Rows, layers: list[Layer], passes, dtype: torch.dtype, bar=None) -> None:
    """Loaded and stored bytes of every elementwise pass, counted in the interpreter on a
    reduced layer (perf.traffic), and loaded / minimum bytes."""
    for layer in layers:
        kernels = {pass_name: kernel for pass_name, (kernel, _) in pass_specs(layer_spec(layer)).items()}
        for pass_name, metrics in traffic_metrics(layer, dtype, rows.layout).items():
            if pass_name in passes:
                for metric, value in metrics:
                    rows.add(layer, pass_name, kernels[pass_name], _dtype_name(dtype), "interpreter", metric, value)
        if bar:
            bar.update()


def host_rows(rows: Rows, layers: list[Layer], dtype: torch.dtype, calls: int, bar=None) -> None:
    """Host time of the eager path per layer (reduced size; it does not depend on the
    size), beside torch's dispatch; on a CUDA device also whole calls against cuDNN."""
    for layer in layers:
        small = scaled(layer)
        kernel = pass_specs(layer_spec(layer))["fprop"][0]
        metrics = host_times(small, calls, dtype)
        if torch.cuda.is_available():
            metrics.update(cuda_call_us(small, dtype=dtype))
        for metric, value in metrics.items():
            rows.add(layer, "fprop", kernel, _dtype_name(dtype), "host", metric, value)
        if bar:
            bar.update()


def _cudnn_pass(layer: Layer, pass_name: str, dtype: torch.dtype, layout: str, device: torch.device):
    """(run, operand sets) timing torch's convolution (cuDNN) for one pass of a layer."""
    spec = layer_spec(layer)
    stride, padding, dilation = list(spec.stride), list(spec.pad_before), list(spec.dilation)
    output_padding = list(spec.output_padding)
    weight_shape = ((spec.in_channels, spec.out_channels_per_group) if spec.transposed else
                    (spec.out_channels, spec.in_channels_per_group)) + tuple(spec.kernel_size)
    shapes = [(spec.batch, spec.in_channels, *spec.in_size), weight_shape, (spec.batch, spec.out_channels, *spec.out_size)]
    element = torch.empty((), dtype=dtype).element_size()
    size = sum(math.prod(s) for s in shapes) * element
    sets = max(1, min(MAX_OPERAND_SETS, math.ceil(ROTATE_BYTES / size)))  # as tconv.tune.operand_sets
    memory = {4: torch.channels_last, 5: torch.channels_last_3d}
    make = lambda shape: torch.randn(shape, dtype=dtype, device=device).to(
        memory_format=memory.get(len(shape), torch.contiguous_format) if layout == "channels_last" else torch.contiguous_format)
    operands = [tuple(make(shape) for shape in shapes) for _ in range(sets)]
    aten = torch.ops.aten
    if pass_name == "fprop":
        run = lambda x, w, g: aten.convolution(x, w, None, stride, padding, dilation, spec.transposed, output_padding,
                                               spec.groups)
    else:
        mask = [pass_name == "dgrad", pass_name == "wgrad", False]
        run = lambda x, w, g: aten.convolution_backward(g, x, w, None, stride, padding, dilation, spec.transposed,
                                                        output_padding, spec.groups, mask)
    return run, operands


def timing_rows(rows: Rows, layers: list[Layer], passes, dtypes, device: torch.device, with_compile: bool, bar=None):
    """tconv vs cuDNN (and optionally torch.compile max-autotune) on a CUDA device."""
    torch.backends.cudnn.benchmark = True
    peak = gpu_peak(torch.cuda.get_device_name(device))
    for layer in layers:
        spec = layer_spec(layer)
        flops = 2 * gemm_macs(spec)
        for pass_name in passes:
            kernel, kernel_spec = pass_specs(spec)[pass_name]
            for dtype in dtypes:
                name = _dtype_name(dtype)
                traffic = min_bytes(spec, name)
                descriptor = descriptor_of(kernel)
                operands = [make_operands(descriptor, kernel_spec, dtype, rows.layout, device)
                            for _ in range(operand_sets(descriptor, kernel_spec, dtype))]
                config = _launch.choose_config(descriptor, kernel_spec, operands[0]["input"], operands[0])
                run = lambda inputs, d=descriptor, ks=kernel_spec, c=config: _launch.run_pass(d, ks, inputs, c)
                times = {"tconv": median_ms(run, operands)}
                reference, reference_operands = _cudnn_pass(layer, pass_name, dtype, rows.layout, device)
                reference_run = lambda tensors, r=reference: r(*tensors)
                times["cudnn"] = median_ms(reference_run, reference_operands)
                # The same launches replayed from a CUDA graph: kernel time alone, without
                # the host path (which the eager times include whenever it is the slower side).
                graph = {"tconv": graph_ms(run, operands[0]), "cudnn": graph_ms(reference_run, reference_operands[0])}
                for source, ms in graph.items():
                    rows.add(layer, pass_name, kernel, name, source, "graph_ms", round(ms, 5))
                rows.add(layer, pass_name, kernel, name, "tconv", "graph_speedup_vs_cudnn",
                         round(graph["cudnn"] / graph["tconv"], 3))
                if with_compile and pass_name == "fprop":
                    compiled = torch.compile(reference, mode="max-autotune", dynamic=False)
                    times["torch_compile"] = median_ms(lambda tensors, c=compiled: c(*tensors), reference_operands)
                for source, ms in times.items():
                    rows.add(layer, pass_name, kernel, name, source, "ms", round(ms, 5))
                    rows.add(layer, pass_name, kernel, name, source, "tflops", round(flops / ms / 1e9, 2))
                    rows.add(layer, pass_name, kernel, name, source, "gbps", round(traffic / ms / 1e6, 1))
                    if peak is not None:
                        bound = roofline_us(flops, traffic, peak, name)
                        rows.add(layer, pass_name, kernel, name, source, "pct_roofline", round(100 * bound / (ms * 1e3), 1))
                rows.add(layer, pass_name, kernel, name, "tconv", "speedup_vs_cudnn", round(times["cudnn"] / times["tconv"], 3))
                rows.add(layer, pass_name, kernel, name, "tconv", "config", str(config))
                if bar:
                    bar.update()


def write_csv(path: str, rows: list[dict]) -> None:
    """Append rows (a header first when the file is new)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _bar(total: int, description: str):
    return progress(total, description)


def bench_main(args: argparse.Namespace) -> int:
    layers = SUITES[args.suite]
    layouts, passes, dtypes, archs = args.layouts, args.ops, args.dtypes, args.archs
    meta = run_metadata()
    print(f"tconv bench: suite {args.suite} ({len(layers)} layers), passes {', '.join(passes)}, dtypes "
          f"{', '.join(map(_dtype_name, dtypes))} (float32 runs on TF32 tensor cores on CUDA), layouts {', '.join(layouts)}; "
          f"device: {meta['device']}")
    failures, written = 0, []
    for index, layout in enumerate(layouts):
        rows = Rows(meta, args.suite, layout)
        static_rows(rows, layers, passes, dtypes, archs, args.workers)
        if args.static and index == 0:
            space_rows(rows, dtypes, archs, args.workers)
        if not args.no_traffic and index == 0:  # element counts do not depend on the layout
            counted = [layer for layer in layers
                       if any(spec.elementwise_lanes for _, spec in pass_specs(layer_spec(layer)).values())]
            bar = _bar(len(counted), f"counting elementwise passes' bytes ({layout}, interpreter)") if counted else None
            traffic_rows(rows, counted, passes, dtypes[0], bar)
            if bar:
                bar.close()
        if not args.no_host and index == 0 and "fprop" in passes:
            bar = _bar(len(layers), "host time of eager calls vs torch's dispatch")
            host_rows(rows, layers, dtypes[0], args.host_calls, bar)
            bar.close()
        if args.quick and index == 0:  # correctness does not depend on the layout's speed: check it once
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            bar = _bar(len(layers) * len(dtypes), f"checking against torch ({layout}"
                       + (", interpreter)" if device.type == "cpu" else ")"))
            failures = quick_rows(rows, layers, passes, dtypes, device, bar)
            bar.close()
        if torch.cuda.is_available() and not args.no_timing:
            bar = _bar(len(layers) * len(passes) * len(dtypes), f"timing tconv vs cuDNN ({layout})")
            timing_rows(rows, layers, passes, dtypes, torch.device("cuda"), args.torch_compile, bar)
            bar.close()
        written += rows.rows
    if torch.cuda.is_available() and not args.no_timing:
        timed = "GPU timings taken"
    else:
        timed = "no GPU here: no timing was taken, only the static analysis"
        timed += " and the interpreter check" if args.quick else ""
    write_csv(args.out, written)
    print(f"{len(written)} rows appended to {args.out} ({timed}).")
    if args.quick:
        checks = len(layers) * len(dtypes) * len(passes)
        print(f"check against torch ({layouts[0]}): {checks - failures} of {checks} passed")
    _summary(written, archs, layouts, passes)
    return 1 if failures else 0


def _summary(rows: list[dict], archs, layouts, passes) -> None:
    """Host time of eager calls against torch's dispatch (geomean ratios); per arch: spills /
    compile errors of the heuristic picks, and the issue-bound share (geomean and minimum
    over layers) per layout and pass."""
    ratios = {metric: [float(r["value"]) for r in rows if r["source"] == "host" and r["metric"] == metric]
              for metric in ("forward_ratio", "train_ratio", "module_ratio")}
    if ratios["forward_ratio"]:
        geomean = {m: math.exp(sum(map(math.log, v)) / len(v)) for m, v in ratios.items()}
        print(f"host time of eager calls / torch's dispatch (geomean over {len(ratios['forward_ratio'])} layers): "
              f"forward {geomean['forward_ratio']:.2f}, forward + backward {geomean['train_ratio']:.2f}, "
              f"module {geomean['module_ratio']:.2f}")
    for arch in archs:
        source = f"sm_{arch}"
        picked = [r for r in rows if r["source"] == source and not r["layer"].startswith("space")]
        spills = sum(1 for r in picked if r["metric"] == "spill_bytes" and int(r["value"]) > 0)
        errors = sum(1 for r in picked if r["metric"] == "compile_error")
        compiled = sum(1 for r in picked if r["metric"] == "registers")
        tensor = sum(1 for r in picked if r["metric"] == "tensor_cores" and int(r["value"]))
        print(f"{source}: {compiled} kernels compiled, {errors} failed, {spills} spill, {tensor} use tensor cores")
        for layout in layouts:
            for pass_name in passes:
                shares = [float(r["value"]) for r in picked if r["metric"] == "issue_bound_share"
                          and r["layout"] == layout and r["pass"] == pass_name]
                if shares:
                    geomean = math.exp(sum(map(math.log, shares)) / len(shares))
                    print(f"  {layout:13} {pass_name:5} issue-bound share of tensor peak (static upper bound): "
                          f"geomean {geomean:.2f}, min {min(shares):.2f} over {len(shares)}")


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="benchmark a shape suite (static analysis everywhere, timing on a GPU)")
    bench.add_argument("--suite", default="resnet50", choices=list(SUITES), metavar="SUITE",
                       help=f"the layers: one of {', '.join(SUITES)}")
    bench.add_argument("--ops", type=pass_list, default="fprop,dgrad,wgrad", help="passes, comma-separated")
    bench.add_argument("--dtypes", type=dtype_list, default="float16,bfloat16,float32",
                       help="comma-separated dtypes (torch names or fp16, bf16, fp32, fp64)")
    bench.add_argument("--layouts", type=layout_list, default="channels_last,contiguous",
                       help="input layouts, comma-separated (--quick checks the first only)")
    bench.add_argument("--archs", type=arch_list, default="80,90",
                       help="ahead-of-time compile targets, comma-separated ('' for none)")
    bench.add_argument("--static", action="store_true", help="also compile every config of every space")
    bench.add_argument("--quick", action="store_true", help="check every layer at reduced size against torch")
    bench.add_argument("--torch-compile", action="store_true", help="also time torch.compile(mode='max-autotune') (fprop)")
    bench.add_argument("--no-timing", action="store_true", help="skip GPU timing even on a CUDA machine")
    bench.add_argument("--no-host", action="store_true", help="skip the host-time measurement of eager calls")
    bench.add_argument("--no-traffic", action="store_true",
                       help="skip counting elementwise passes' loaded bytes in the interpreter")
    bench.add_argument("--host-calls", type=positive_int, default=600, help="calls per host-time median")
    bench.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel ahead-of-time compiles")
    bench.add_argument("--out", default="results/bench.csv", help="CSV to append to")
    bench.set_defaults(run=bench_main)
