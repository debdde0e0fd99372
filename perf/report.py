"""`tconv report`: read a bench CSV, draw PNG plots (perf/plots.py) and write a Markdown report.

It only reads the CSV (never runs a kernel). The report opens with a summary per pass, dtype and
layout, then the static model, the host path, the plots per dtype and the per-layer tables. A column
that is empty for the whole run (GPU timings of a run without a GPU, say) is left out.
"""

from __future__ import annotations

import argparse
import math
import os

from tconv.arguments import UsageError

from .plots import Plot, plot_all
from .run import ARCHS, SHARE, SHARE_CAVEAT, SHARE_TITLE, Run, geomean, read_run

EMPTY = ("", "-", "- / -")


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def _pair(values, digits: int) -> str:
    """'a / b' of the sm_80 and sm_90 values; '-' when neither has one."""
    return "-" if all(v is None for v in values) else " / ".join(_fmt(v, digits) for v in values)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table without the columns that are empty in every row."""
    keep = [i for i in range(len(header)) if any(row[i].strip() not in EMPTY for row in rows)]
    lines = ["| " + " | ".join(header[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    return lines + ["| " + " | ".join(row[i] for i in keep) + " |" for row in rows]


def share_summary(run: Run, dtype: str) -> list[dict]:
    """Per arch x layout x pass: the layers with a share, geomean and minimum share, geomean of the GEMM reference."""
    summary = []
    for arch in ("sm_90", "sm_80"):
        for layout in run.layouts:
            for pass_name in run.passes:
                keys = [run.key(layer, pass_name, dtype, layout) for layer in run.layers]
                shares = [(run.value(k, arch, SHARE), k[0]) for k in keys if run.value(k, arch, SHARE) is not None]
                if not shares:
                    continue
                gemm = [run.value(k, arch, "gemm_" + SHARE) for k in keys]
                lowest = min(shares)
                summary.append({"arch": arch, "layout": layout, "pass": pass_name, "layers": len(shares),
                                "of": sum(1 for k in keys if k in run.records), "geomean": geomean([s for s, _ in shares]),
                                "min": lowest[0], "min_layer": lowest[1], "gemm": geomean([g for g in gemm if g])})
    return summary


def _check(run: Run, key: tuple) -> tuple[float, float] | None:
    """(max error, tolerance) of the layer's check against torch, if it ran."""
    for source in ("interpreter", "check"):
        error, tolerance = run.value(key, source, "max_error"), run.value(key, source, "tolerance")
        if error is not None and tolerance:
            return error, tolerance
    return None


def _summary(run: Run) -> list[str]:
    """One row per pass x dtype x layout: correctness, compile health, the static model, then cost and timing."""
    several = len(run.layouts) > 1
    header = ["pass", "dtype"] + (["layout"] if several else []) + [
        "layers", "checked vs torch", "worst error / tolerance (layer)", "spilling kernels", "tensor-core loops",
        "share sm_90 geomean (min)", "share sm_80 geomean (min)", "executed / useful", "max registers sm_80 / sm_90",
        "GFLOP (x count)", "H100 bound ms", "A100 bound ms", "H100 layout copies: bytes / min bytes",
        "H100 bound ms with the copies", "tconv ms", "cuDNN ms", "geomean speedup"]
    shares_of = {dtype: {(e["arch"], e["layout"], e["pass"]): e for e in share_summary(run, dtype)} for dtype in run.dtypes}
    rows = []
    for pass_name in run.passes:
        for dtype in run.dtypes:
            checked_elsewhere = None
            for layout in run.layouts:
                keys = [k for k in run.keys if k[1] == pass_name and k[2] == dtype and k[3] == layout]
                if not keys:
                    continue

                def total(source, metric, scale=1.0, keys=keys):
                    return sum((run.value(k, source, metric) or 0) * run.info[k]["count"] * scale for k in keys)

                ratios = [run.value(k, "sm_90", "executed_over_useful") or run.value(k, "sm_80", "executed_over_useful")
                          for k in keys]
                ratios = [r for r in ratios if r]
                registers = [max([run.value(k, arch, "registers") or 0 for k in keys], default=0) for arch in ARCHS]
                compiled = sum(1 for k in keys for arch in ARCHS if run.value(k, arch, "registers") is not None)
                spilling = sum(1 for k in keys for arch in ARCHS if (run.value(k, arch, "spill_bytes") or 0) > 0)
                errors = sum(1 for k in keys for arch in ARCHS if run.value(k, arch, "compile_error"))
                tensor = sum(1 for k in keys for arch in ARCHS if run.value(k, arch, "tensor_cores"))
                oks = [run.value(k, source, "ok") for k in keys for source in ("interpreter", "check")]
                oks = [ok for ok in oks if ok is not None]
                checks = [(c[0] / c[1], c, k[0]) for k in keys if (c := _check(run, k))]
                if oks:
                    checked, checked_elsewhere = f"{int(sum(oks))} of {len(oks)}", checked_elsewhere or layout
                else:  # bench --quick checks the first layout only
                    checked = f"see {checked_elsewhere}" if checked_elsewhere else "not run"
                worst = max(checks) if checks else None
                timed = any(run.value(k, "tconv", "ms") for k in keys)
                rows.append([pass_name, dtype] + ([layout] if several else []) + [
                    str(len(keys)), checked,
                    f"{worst[1][0]:.1e} / {worst[1][1]:.2g} ({worst[2]})" if worst else "-",
                    f"{spilling} of {compiled}" + (f" ({errors} failed)" if errors else "") if compiled else "-",
                    f"{tensor} of {compiled}" if compiled else "-",
                    *(f"{e['geomean']:.2f} ({e['min']:.2f})" if (e := shares_of[dtype].get((arch, layout, pass_name)))
                      else "-" for arch in ("sm_90", "sm_80")),
                    f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-",
                    f"{registers[0]:.0f} / {registers[1]:.0f}" if compiled else "-",
                    f"{total('static', 'flops', 1e-9):,.1f}", f"{total('H100 SXM', 'roofline_us', 1e-3):,.3f}",
                    f"{total('A100 SXM 80GB', 'roofline_us', 1e-3):,.3f}",
                    *((f"{total('H100 SXM', 'layout_bytes') / total('static', 'min_bytes'):.2f}",
                       f"{total('H100 SXM', 'roofline_with_layout_us', 1e-3):,.3f}")
                      if total("H100 SXM", "layout_bytes") else ("-", "-")),
                    f"{total('tconv', 'ms'):,.3f}" if timed else "-", f"{total('cudnn', 'ms'):,.3f}" if timed else "-",
                    f"{geomean([run.value(k, 'tconv', 'speedup_vs_cudnn') for k in keys]):.2f}x" if timed else "-"])
    notes = [f"Shares: the {SHARE_TITLE} ({SHARE_CAVEAT}), geomean over the layers with a tensor-core loop and the "
             "lowest in brackets."]
    if any(row[header.index("H100 layout copies: bytes / min bytes")] != "-" for row in rows):
        notes.append("Layout copies: channels-first operands of the dense passes where the roofline says it pays "
                     "(compute-bound ones, and others whose gathered loop costs more), and the activations of depthwise "
                     "forwards and input gradients where the static issue model says it pays, are copied channels-last "
                     "before the main loop; what they move, read and written, over the pass's minimum bytes, and the "
                     "H100 bound with their time at peak bandwidth added.")
    if any(row[header.index("worst error / tolerance (layer)")] != "-" for row in rows):
        notes.append("Worst error: the largest max |tconv - torch| relative to its tolerance, at reduced size (`--quick`).")
    return ["## Summary", "", *_table(header, rows), "", " ".join(notes), ""]


def _share_section(run: Run, plots: list[Plot]) -> list[str]:
    dtypes = [d for d in run.dtypes if share_summary(run, d)]
    if not dtypes:
        return []
    lines = [f"## Static model: {SHARE_TITLE} (an upper bound from the SASS, not a timing)", "",
             "Per layer, min(1, tensor clocks / issue clocks) of one K step of the main loop of the kernel "
             f"compiled ahead of time (tconv.sass): {SHARE_CAVEAT}; latency, memory and the epilogue are not in it. "
             "Geomean and minimum over the suite's distinct layers (unweighted); layers without a tensor-core loop "
             "(depthwise) have none. GEMM: a plain tiled GEMM compiled at the same config, the reference.", ""]
    rows = []
    for dtype in dtypes:
        for entry in share_summary(run, dtype):
            layers = f"{entry['layers']}" + (f" of {entry['of']}" if entry["of"] != entry["layers"] else "")
            rows.append([dtype, entry["arch"], entry["layout"], entry["pass"], layers, f"{entry['geomean']:.3f}",
                         f"{entry['min']:.3f} ({entry['min_layer']})",
                         "-" if math.isnan(entry["gemm"]) else f"{entry['gemm']:.3f}"])
    lines += _table(["dtype", "arch", "layout", "pass", "layers", "geomean share", "min share (layer)", "GEMM geomean"],
                    rows)
    for plot in plots:
        if plot.kind == "issue_bound_share":
            lines += ["", f"![{plot.caption}]({plot.name})", "", f"*{plot.caption}*"]
    return lines + [""]


def _measured(run: Run, source: str, metric: str) -> list[tuple]:
    """The run's keys that have `metric` from `source`."""
    return [k for k in run.keys if run.value(k, source, metric) is not None]


def _host_section(run: Run) -> list[str]:
    """Host time of eager calls (perf.host), when the run measured it."""
    keys = _measured(run, "host", "forward_us")
    if not keys:
        return []
    lines = ["## Host path of eager calls", "",
             "Microseconds per call on the host, medians of interleaved calls in one process (perf.host): tconv on CPU "
             "tensors with its kernel launches stubbed (its Python path alone, as on CUDA before Triton's launcher) "
             "against torch's own call on meta tensors (checks, shape inference, dispatch, autograd; no compute). "
             "Forward: one call; train: the call and the backward of its output. Reduced-size layers (host time does "
             "not depend on the size); module: one forward of the layer's module. CUDA (when measured): whole forward "
             "calls in a synchronised loop, launches included.", ""]
    rows = []
    for key in keys:
        value = lambda metric, key=key: run.value(key, "host", metric)
        rows.append([key[0], key[2], f"{value('forward_us'):.1f} ({value('torch_forward_us'):.1f})",
                     f"{value('forward_ratio'):.2f}", f"{value('train_us'):.1f} ({value('torch_train_us'):.1f})",
                     f"{value('train_ratio'):.2f}", f"{value('module_us'):.1f} ({value('torch_module_us'):.1f})",
                     f"{value('module_ratio'):.2f}", f"{value('forward_launches'):.0f} / {value('backward_launches'):.0f}",
                     _pair([value("tconv_cuda_call_us"), value("cudnn_cuda_call_us")], 1)])
    lines += _table(["layer", "dtype", "forward us (torch)", "ratio", "train us (torch)", "ratio", "module us (torch)",
                     "ratio", "launches fwd / bwd", "CUDA call us tconv / cuDNN"], rows)
    geomeans = [geomean([run.value(k, "host", metric) for k in keys])
                for metric in ("forward_ratio", "train_ratio", "module_ratio")]
    return lines + ["", f"Geomean ratio tconv / torch: forward {geomeans[0]:.2f}, train {geomeans[1]:.2f}, "
                    f"module {geomeans[2]:.2f}.", ""]


def _traffic_section(run: Run) -> list[str]:
    """Elementwise passes: loaded / minimum bytes counted in the interpreter (perf.traffic),
    and per layout the narrowest global load of the main loop, when the run counted them."""
    keys = _measured(run, "interpreter", "loaded_over_min_bytes")
    if not keys:
        return []
    lines = ["## Elementwise passes: bytes loaded and load widths", "",
             "Loaded / minimum: the bytes every load of the pass's kernels requests (re-reads across taps included), "
             "counted in the interpreter on the reduced layer shown, over its minimum bytes (input, weight and output "
             "once). Load bits: the narrowest global load in the main loop, or in the whole kernel where a short tap "
             "loop is unrolled (sm_80 / sm_90), per layout. Copy / minimum: what a layout's channels-last copies "
             "move (read and written, H100 decision) over the minimum bytes, on top of the loop's loads.", ""]
    rows = []
    for key in keys:
        layer, pass_name, dtype, _ = key
        widths, copies = [], []
        for layout in run.layouts:
            other = (layer, pass_name, dtype, layout)
            widths.append(_pair([run.value(other, arch, "load_bits") or run.value(other, arch, "kernel_load_bits")
                                 for arch in ARCHS], 0))
            copied, minimum = run.value(other, "H100 SXM", "layout_bytes"), run.value(other, "static", "min_bytes")
            copies.append(_fmt(copied / minimum) if copied is not None and minimum else "-")
        rows.append([layer, pass_name, dtype, run.value(key, "interpreter", "counted_shape") or "-",
                     _fmt(run.value(key, "interpreter", "loaded_over_min_bytes")), *widths, *copies])
    return lines + _table(["layer", "pass", "dtype", "counted at", "loaded / minimum",
                           *(f"load bits {layout}" for layout in run.layouts),
                           *(f"copy / minimum {layout}" for layout in run.layouts)], rows) + [""]


def _per_layer(run: Run, dtype: str) -> list[str]:
    several = len(run.layouts) > 1
    header = ["layer", "shape", "checked at (reduced)", "count", "pass", "kernel"] + (["layout"] if several else []) + [
        "GFLOP", "MB", "AI", "H100 us", "A100 us", "config (sm_90)", "exec/useful", "regs sm_80/sm_90",
        "spills sm_80/sm_90", "tensor cores sm_80/sm_90", "share sm_80/sm_90", "loop / GEMM sm_80/sm_90",
        "check err / tol", "tconv ms", "cuDNN ms", "speedup"]
    rows = []
    for key in (k for k in run.keys if k[2] == dtype):
        layer, pass_name, _, layout = key
        info = run.info[key]

        def value(source, metric, key=key):
            return run.value(key, source, metric)

        check = _check(run, key)
        tensor = [value(arch, "tensor_cores") for arch in ARCHS]
        speedup = value("tconv", "speedup_vs_cudnn")
        rows.append([
            layer, info["shape"], value("interpreter", "checked_shape") or value("check", "checked_shape") or "-",
            str(info["count"]), pass_name, info["kernel"]] + ([layout] if several else []) + [
            _fmt((value("static", "flops") or 0) / 1e9), _fmt((value("static", "min_bytes") or 0) / 1e6, 1),
            _fmt(value("static", "arithmetic_intensity"), 0), _fmt(value("H100 SXM", "roofline_us"), 1),
            _fmt(value("A100 SXM 80GB", "roofline_us"), 1), value("sm_90", "config") or value("sm_80", "config") or "-",
            _fmt(value("sm_90", "executed_over_useful") or value("sm_80", "executed_over_useful")),
            _pair([value(arch, "registers") for arch in ARCHS], 0), _pair([value(arch, "spill_bytes") for arch in ARCHS], 0),
            "-" if all(t is None for t in tensor) else " / ".join("yes" if t else ("no" if t is not None else "-")
                                                                  for t in tensor),
            _pair([value(arch, SHARE) for arch in ARCHS], 2), _pair([value(arch, "loop_over_gemm") for arch in ARCHS], 2),
            f"{check[0]:.1e} / {check[1]:.2g}" if check else "-",
            _fmt(value("tconv", "ms"), 4), _fmt(value("cudnn", "ms"), 4), _fmt(speedup) + "x" if speedup else "-"])
    return [f"### {dtype}", "", *_table(header, rows), ""]


def write_markdown(run: Run, folder: str, plots: list[Plot]) -> str:
    meta = run.meta
    several = len(run.layouts) > 1
    lines = [f"# tconv benchmark report: {meta['suite']}", "",
             f"Run {meta['run']}, commit {meta['commit']}; tconv {meta['tconv']}, torch {meta['torch']}, "
             f"triton {meta['triton']}; device: {meta['device']}; layout{'s' if several else ''} {meta['layout']}; "
             f"dtypes {', '.join(run.dtypes)}.", ""]
    if run.timed:
        lines += [f"GPU timings measured on {meta['device']} with triton.testing.do_bench (median, rotating operands); "
                  "float32 on TF32 tensor cores for both tconv and cuDNN.", ""]
    else:
        lines += ["**No GPU timing was taken in this run** (no GPU), so the timing columns (tconv ms, cuDNN ms, "
                  "speedup) are not measured and left out. What is reported is static (FLOPs, minimum bytes, "
                  "roofline-bound time, the work of the launch plan, ahead-of-time compile resources and the SASS "
                  "static model for sm_80 and sm_90) and, where the run had `--quick`, every layer checked against "
                  "torch at reduced size.", ""]
    lines += _summary(run)
    lines += _share_section(run, plots)
    lines += _host_section(run)
    lines += _traffic_section(run)
    lines += ["## Plots", ""]
    for dtype in run.dtypes:
        shown = [p for p in plots if p.dtype == dtype and p.kind != "issue_bound_share"]  # shares: their own section
        if shown:
            lines += [f"### {dtype}", ""]
        for plot in shown:
            lines += [f"![{plot.caption}]({plot.name})", "", f"*{plot.caption}*", ""]
    lines += ["## Per layer", "",
              "Shape: the layer at full size (what the static columns describe); checked at: the reduced size at "
              "which `--quick` compared it with torch (the error column)."
              + (" The check runs on the first layout only." if several else ""), ""]
    for dtype in run.dtypes:
        lines += _per_layer(run, dtype)
    lines += ["Roofline bounds use the dense tensor-core peaks and HBM bandwidths of perf/roofline.py "
              "(datasheet figures; float32 at the TF32 peak) and the minimum traffic (input, weight and output once). "
              "FLOPs follow the GEMM view (2 x M x N x K, padding taps included; the scatter view for transposed conv). "
              f"Share: {SHARE_CAVEAT}; loop / GEMM: main-loop instructions per tensor-core instruction over a plain "
              "GEMM's at the same config."]
    path = os.path.join(folder, "report.md")
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def report_main(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.csv):
        raise UsageError(f"--csv: no such file {args.csv!r} (write one with `tconv bench`)")
    try:
        run = read_run(args.csv, args.run_id, args.suite)
    except (KeyError, ValueError) as error:
        raise UsageError(f"--csv: {args.csv!r} is not a tconv bench CSV ({type(error).__name__}: {error})") from None
    folder = args.out or os.path.dirname(os.path.abspath(args.csv))
    os.makedirs(folder, exist_ok=True)
    plots = plot_all(run, folder)
    path = write_markdown(run, folder, plots)
    print(f"tconv report: {len(run.keys)} (layer, pass, dtype, layout) rows of run {run.meta['run']} ({run.meta['suite']}, "
          f"{run.meta['layout']}); {len(plots)} plots and {path}"
          + ("" if run.timed else " (no GPU timing in this run: timing columns left out)"))
    return 0


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="plots and a Markdown report from a bench CSV")
    report.add_argument("--csv", default="results/bench.csv", help="the CSV `tconv bench` wrote")
    report.add_argument("--run", dest="run_id", help="run id (the 'run' column); default: the latest")
    report.add_argument("--suite", help="only rows of this suite (its latest run)")
    report.add_argument("--out", help="folder for the PNGs and report.md (default: beside the CSV)")
    report.set_defaults(run=report_main)
