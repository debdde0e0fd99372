"""`tconv report`: read a bench CSV, draw PNG plots and write a Markdown report.

It only reads the CSV (never runs a kernel). Timing columns that the run did not
measure (no GPU) are marked "not measured"; the static results (roofline-bound times,
work ratios, compile resources) and the interpreter check are reported either way.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from collections import defaultdict

from .roofline import GPUS, gpu_peak

PASSES = ("fprop", "dgrad", "wgrad")
NOT_MEASURED = "not measured"


class Run:
    """One bench run: {(layer, pass, dtype): {(source, metric): value}} in CSV order."""

    def __init__(self, rows: list[dict]):
        self.meta = {key: rows[0][key] for key in ("run", "commit", "tconv", "torch", "triton", "device", "suite", "layout")}
        self.records: dict[tuple, dict] = defaultdict(dict)
        self.info: dict[tuple, dict] = {}
        for row in rows:
            key = (row["layer"], row["pass"], row["dtype"])
            self.records[key][(row["source"], row["metric"])] = row["value"]
            self.info.setdefault(key, {"count": int(row["count"]), "shape": row["shape"], "kernel": row["kernel"]})
        self.keys = [key for key in self.records if not key[0].startswith("space ")]
        self.layers = list(dict.fromkeys(key[0] for key in self.keys))
        self.passes = [p for p in PASSES if any(key[1] == p for key in self.keys)]
        self.dtypes = list(dict.fromkeys(key[2] for key in self.keys))
        self.timed = any(source == "tconv" and metric == "ms" for record in self.records.values() for source, metric in record)

    def value(self, key: tuple, source: str, metric: str, default=None):
        value = self.records.get(key, {}).get((source, metric))
        if value in (None, ""):
            return default
        try:
            return float(value)
        except ValueError:
            return value


def read_run(path: str, run: str | None = None, suite: str | None = None) -> Run:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if suite:
        rows = [r for r in rows if r["suite"] == suite]
    if not rows:
        raise SystemExit(f"tconv report: no rows in {path}" + (f" for suite {suite}" if suite else ""))
    chosen = run or max(r["run"] for r in rows)
    selected = [r for r in rows if r["run"] == chosen]
    if not selected:
        raise SystemExit(f"tconv report: no run {chosen!r} in {path}")
    return Run(selected)


def _geomean(values: list[float]) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, labels: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(positions, [v if v is not None else 0 for v in values], width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_all(run: Run, folder: str) -> list[tuple[str, str]]:
    """Write the PNGs; returns (file name, caption) pairs."""
    plt = _plt()
    dtype = "float16" if "float16" in run.dtypes else run.dtypes[0]
    figures = []
    width = max(8, 0.35 * len(run.layers) + 3)

    def save(fig, name, caption):
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=110)
        plt.close(fig)
        figures.append((name, caption))

    # Roofline: every pass's bound on the H100 (or the measured GPU), measured points on top.
    peak = gpu_peak(run.meta["device"]) if run.timed else None
    peak = peak or GPUS["H100 SXM"]
    fig, ax = plt.subplots(figsize=(7, 5))
    intensities = [run.value((layer, p, dtype), "static", "arithmetic_intensity") for layer in run.layers for p in run.passes]
    intensities = [i for i in intensities if i]
    if intensities:
        low, high = min(intensities) / 2, max(intensities) * 2
        xs = [low * (high / low) ** (i / 100) for i in range(101)]
        ax.plot(xs, [min(peak.tensor_tflops[dtype], x * peak.bandwidth_tbs) for x in xs], "k-", label=f"{peak.name} roofline")
        for pass_name, marker in zip(run.passes, "os^"):
            points = [(run.value((layer, pass_name, dtype), "static", "arithmetic_intensity"), layer) for layer in run.layers]
            ax.scatter([x for x, _ in points], [min(peak.tensor_tflops[dtype], x * peak.bandwidth_tbs) for x, _ in points],
                       marker=marker, facecolors="none", edgecolors="grey", label=f"{pass_name} bound")
            for source, color in (("tconv", "tab:blue"), ("cudnn", "tab:orange")):
                measured = [(x, run.value((layer, pass_name, dtype), source, "tflops")) for x, layer in points]
                measured = [(x, y) for x, y in measured if y is not None]
                if measured:
                    ax.scatter(*zip(*measured), marker=marker, color=color, label=f"{pass_name} {source}")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / minimum byte)")
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"{run.meta['suite']} {dtype}: roofline" + ("" if run.timed else " (no GPU timing measured)"))
    ax.legend(fontsize=7)
    save(fig, "roofline.png", f"Roofline of {peak.name} ({dtype}); hollow markers are each pass's bound"
         + (", filled ones measured" if run.timed else "; nothing was measured on a GPU"))

    fig, ax = plt.subplots(figsize=(width, 4.5))
    series = {gpu: [run.value((layer, "fprop" if "fprop" in run.passes else run.passes[0], dtype), gpu, "roofline_us")
                    for layer in run.layers] for gpu in ("H100 SXM", "A100 SXM 80GB")}
    _bars(ax, run.layers, series, "roofline-bound time (us)")
    ax.set_yscale("log")
    ax.set_title(f"{run.meta['suite']} {dtype}: roofline-bound time per layer (one pass)")
    save(fig, "roofline_time.png", "Roofline-bound time per layer on H100 SXM and A100 (static)")

    fig, ax = plt.subplots(figsize=(width, 4.5))
    source = "sm_90" if any(run.value(k, "sm_90", "executed_over_useful") for k in run.keys) else "sm_80"
    series = {p: [run.value((layer, p, dtype), source, "executed_over_useful") for layer in run.layers] for p in run.passes}
    _bars(ax, run.layers, series, "executed / useful multiply-adds")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_title(f"{run.meta['suite']} {dtype}: work of the launch plan ({source} heuristic configs)")
    save(fig, "work_ratio.png", "Executed / useful multiply-adds of each pass's launch plan")

    fig, ax = plt.subplots(figsize=(width, 4.5))
    series = {f"{p} {arch}": [run.value((layer, p, dtype), arch, "registers") for layer in run.layers]
              for arch in ("sm_80", "sm_90") for p in run.passes}
    series = {name: values for name, values in series.items() if any(v is not None for v in values)}
    if series:
        _bars(ax, run.layers, series, "registers per thread")
        ax.axhline(255, color="r", lw=0.8, label="255 (limit)")
    ax.set_title(f"{run.meta['suite']} {dtype}: registers of the compiled kernels (spills: see table)")
    save(fig, "registers.png", "Registers per thread of the heuristic configs, compiled ahead of time")

    if run.timed:
        for pass_name in run.passes:
            fig, ax = plt.subplots(figsize=(width, 4.5))
            series = {s: [run.value((layer, pass_name, dtype), s, "tflops") for layer in run.layers]
                      for s in ("tconv", "cudnn", "torch_compile")}
            _bars(ax, run.layers, {k: v for k, v in series.items() if any(x is not None for x in v)}, "TFLOP/s")
            ax.set_title(f"{run.meta['suite']} {pass_name} {dtype} on {run.meta['device']}")
            save(fig, f"tflops_{pass_name}.png", f"{pass_name}: TFLOP/s of tconv and cuDNN per layer")
        fig, ax = plt.subplots(figsize=(width, 4.5))
        series = {p: [run.value((layer, p, dtype), "tconv", "speedup_vs_cudnn") for layer in run.layers] for p in run.passes}
        _bars(ax, run.layers, series, "speedup over cuDNN (x)")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_title(" | ".join(f"{p} geomean {_geomean([v for v in series[p] if v]):.2f}x" for p in run.passes))
        save(fig, "speedup.png", f"Speedup of tconv over cuDNN per layer ({dtype}), geomean per pass")
    return figures


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def write_markdown(run: Run, folder: str, figures: list[tuple[str, str]]) -> str:
    meta = run.meta
    lines = [f"# tconv benchmark report: {meta['suite']}", "",
             f"Run {meta['run']}, commit {meta['commit']}; tconv {meta['tconv']}, torch {meta['torch']}, "
             f"triton {meta['triton']}; device: {meta['device']}; layout {meta['layout']}.", ""]
    if run.timed:
        lines += [f"GPU timings measured on {meta['device']} with triton.testing.do_bench (median, rotating operands); "
                  "float32 on TF32 tensor cores for both tconv and cuDNN.", ""]
    else:
        lines += ["**No GPU timing was taken in this run** (no GPU): the timing columns say "
                  f"'{NOT_MEASURED}'. What is reported is static (FLOPs, minimum bytes, roofline-bound time, "
                  "the work of the launch plan, ahead-of-time compile resources for sm_80 and sm_90) and, "
                  "where the run had `--quick`, every layer checked against torch at reduced size.", ""]
    lines += ["## Summary", "",
              "| pass | dtype | layers | GFLOP (x count) | H100 bound ms | A100 bound ms | tconv ms | cuDNN ms | "
              "geomean speedup | executed/useful | max registers sm_80 / sm_90 | spilling kernels | tensor cores | "
              "checked vs torch |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pass_name in run.passes:
        for dtype in run.dtypes:
            keys = [k for k in run.keys if k[1] == pass_name and k[2] == dtype]
            def total(source, metric, scale=1.0, keys=keys):
                return sum((run.value(k, source, metric) or 0) * run.info[k]["count"] * scale for k in keys)

            ratios = [run.value(k, "sm_90", "executed_over_useful") or run.value(k, "sm_80", "executed_over_useful")
                      for k in keys]
            ratios = [r for r in ratios if r]
            registers = [max([run.value(k, arch, "registers") or 0 for k in keys], default=0) for arch in ("sm_80", "sm_90")]
            spilling = sum(1 for k in keys for arch in ("sm_80", "sm_90") if (run.value(k, arch, "spill_bytes") or 0) > 0)
            errors = sum(1 for k in keys for arch in ("sm_80", "sm_90") if run.value(k, arch, "compile_error"))
            tensor = sum(1 for k in keys for arch in ("sm_80", "sm_90") if run.value(k, arch, "tensor_cores"))
            compiled = sum(1 for k in keys for arch in ("sm_80", "sm_90") if run.value(k, arch, "registers") is not None)
            checks = [run.value(k, source, "ok") for k in keys for source in ("interpreter", "check")]
            checks = [c for c in checks if c is not None]
            timed = run.timed and any(run.value(k, "tconv", "ms") for k in keys)
            ours = f"{total('tconv', 'ms'):,.3f}" if timed else NOT_MEASURED
            theirs = f"{total('cudnn', 'ms'):,.3f}" if timed else NOT_MEASURED
            speedup = f"{_geomean([run.value(k, 'tconv', 'speedup_vs_cudnn') for k in keys]):.2f}x" if timed else NOT_MEASURED
            ratio_range = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            failed = f" ({errors} failed)" if errors else ""
            checked = f"{int(sum(checks))} of {len(checks)}" if checks else "not run"
            lines.append(
                f"| {pass_name} | {dtype} | {len(keys)} | {total('static', 'flops', 1e-9):,.1f} "
                f"| {total('H100 SXM', 'roofline_us', 1e-3):,.3f} | {total('A100 SXM 80GB', 'roofline_us', 1e-3):,.3f} "
                f"| {ours} | {theirs} | {speedup} | {ratio_range} | {registers[0]:.0f} / {registers[1]:.0f} "
                f"| {spilling} of {compiled}{failed} | {tensor} of {compiled} | {checked} |"
            )
    lines += ["", "## Plots", ""]
    for name, caption in figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["## Per layer", "",
              "| layer | shape | count | pass | kernel | dtype | GFLOP | MB | AI | H100 us | A100 us | config (sm_90) | "
              "exec/useful | regs sm_80/sm_90 | spills | TC | check err / tol | tconv ms | cuDNN ms | speedup |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in run.keys:
        layer, pass_name, dtype = key
        info = run.info[key]
        def value(source, metric, key=key):
            return run.value(key, source, metric)

        spills = [value(arch, "spill_bytes") for arch in ("sm_80", "sm_90")]
        tensor = [value(arch, "tensor_cores") for arch in ("sm_80", "sm_90")]
        error = value("interpreter", "max_error") or value("check", "max_error")
        tolerance = value("interpreter", "tolerance") or value("check", "tolerance")
        check = f"{error:.1e} / {tolerance:.0e}" if error is not None and tolerance else "-"
        timing = [value("tconv", "ms"), value("cudnn", "ms"), value("tconv", "speedup_vs_cudnn")]
        lines.append(
            f"| {layer} | {info['shape']} | {info['count']} | {pass_name} | {info['kernel']} | {dtype} "
            f"| {_fmt((value('static', 'flops') or 0) / 1e9)} | {_fmt((value('static', 'min_bytes') or 0) / 1e6, 1)} "
            f"| {_fmt(value('static', 'arithmetic_intensity'), 0)} | {_fmt(value('H100 SXM', 'roofline_us'), 1)} "
            f"| {_fmt(value('A100 SXM 80GB', 'roofline_us'), 1)} | {value('sm_90', 'config') or value('sm_80', 'config') or '-'} "
            f"| {_fmt(value('sm_90', 'executed_over_useful') or value('sm_80', 'executed_over_useful'))} "
            f"| {_fmt(value('sm_80', 'registers'), 0)} / {_fmt(value('sm_90', 'registers'), 0)} "
            f"| {' / '.join(_fmt(s, 0) for s in spills)} "
            f"| {' / '.join('yes' if t else ('no' if t is not None else '-') for t in tensor)} "
            f"| {check} | {_fmt(timing[0], 4) if timing[0] is not None else NOT_MEASURED} "
            f"| {_fmt(timing[1], 4) if timing[1] is not None else NOT_MEASURED} "
            f"| {_fmt(timing[2]) + 'x' if timing[2] is not None else NOT_MEASURED} |"
        )
    lines += ["", "Roofline bounds use the dense tensor-core peaks and HBM bandwidths of perf/roofline.py "
              "(datasheet figures; float32 at the TF32 peak) and the minimum traffic (input, weight and output once). "
              "FLOPs follow the GEMM view (2 x M x N x K, padding taps included; the scatter view for transposed conv)."]
    path = os.path.join(folder, "report.md")
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def report_main(args: argparse.Namespace) -> int:
    run = read_run(args.csv, args.run_id, args.suite)
    folder = args.out or os.path.dirname(os.path.abspath(args.csv))
    os.makedirs(folder, exist_ok=True)
    figures = plot_all(run, folder)
    path = write_markdown(run, folder, figures)
    print(f"tconv report: {len(run.keys)} (layer, pass, dtype) rows of run {run.meta['run']} ({run.meta['suite']}); "
          f"{len(figures)} plots and {path}" + ("" if run.timed else " (no GPU timing in this run: marked not measured)"))
    return 0


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="plots and a Markdown report from a bench CSV")
    report.add_argument("--csv", default="results/bench.csv")
    report.add_argument("--run", dest="run_id", help="run id (the 'run' column); default: the latest")
    report.add_argument("--suite", help="only rows of this suite (its latest run)")
    report.add_argument("--out", help="folder for the PNGs and report.md (default: beside the CSV)")
    report.set_defaults(run=report_main)
