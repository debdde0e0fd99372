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

from tconv.arguments import UsageError

from .roofline import GPUS, gpu_peak

PASSES = ("fprop", "dgrad", "wgrad")
NOT_MEASURED = "not measured"


class Run:
    """One bench run: {(layer, pass, dtype, layout): {(source, metric): value}} in CSV order.

    A run may hold several layouts (bench writes channels_last and contiguous rows under one
    run id); `layouts` lists them in CSV order, and `meta["layout"]` joins them for headings.
    """

    def __init__(self, rows: list[dict]):
        self.meta = {key: rows[0].get(key, "") for key in ("run", "commit", "tconv", "torch", "triton", "device", "suite")}
        self.records: dict[tuple, dict] = defaultdict(dict)
        self.info: dict[tuple, dict] = {}
        for row in rows:
            key = (row["layer"], row["pass"], row["dtype"], row.get("layout") or "")
            self.records[key][(row["source"], row["metric"])] = row["value"]
            self.info.setdefault(key, {"count": int(row["count"]), "shape": row["shape"], "kernel": row["kernel"]})
        self.keys = [key for key in self.records if not key[0].startswith("space ")]
        self.layers = list(dict.fromkeys(key[0] for key in self.keys))
        self.passes = [p for p in PASSES if any(key[1] == p for key in self.keys)]
        self.dtypes = list(dict.fromkeys(key[2] for key in self.keys))
        self.layouts = list(dict.fromkeys(key[3] for key in self.keys or self.records))
        self.meta["layout"] = ", ".join(self.layouts)
        self.timed = any(source == "tconv" and metric == "ms" for record in self.records.values() for source, metric in record)

    def key(self, layer: str, pass_name: str, dtype: str, layout: str | None = None) -> tuple:
        """The record key; `layout` defaults to the run's first layout."""
        return (layer, pass_name, dtype, self.layouts[0] if layout is None else layout)

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
        raise UsageError(f"--csv: no rows in {path}" + (f" for suite {suite!r}" if suite else ""))
    chosen = run or max(r["run"] for r in rows)
    selected = [r for r in rows if r["run"] == chosen]
    if not selected:
        raise UsageError(f"--run: no run {chosen!r} in {path}")
    return Run(selected)


def _geomean(values: list[float]) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, labels: list[str], series: dict[str, list[float]], ylabel: str, legend: bool = True) -> None:
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(positions, [v if v is not None else 0 for v in values], width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=75, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel)
    if legend:
        _legend_right(ax)
    ax.grid(axis="y", alpha=0.3)


def _legend_right(ax, **kwargs) -> None:
    """A legend beside the axes (never over the bars)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


ARCHS = ("sm_80", "sm_90")
SHARE = "issue_bound_share"
SHARE_TITLE = "issue-bound share of tensor peak"
SHARE_CAVEAT = "a static upper bound from the compiled SASS main loop, not a timing"


def _layout_tag(run: Run, layout: str) -> str:
    """' channels_last' in a run of several layouts, '' in a run of one."""
    return f" {layout}" if len(run.layouts) > 1 else ""


def share_dtype(run: Run) -> str | None:
    """The dtype the issue-bound share is shown for: float16 when it has shares, else the first that has."""
    having = [d for d in run.dtypes
              if any(run.value(k, arch, SHARE) is not None for k in run.keys if k[2] == d for arch in ARCHS)]
    if not having:
        return None
    return "float16" if "float16" in having else having[0]


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
                                "of": sum(1 for k in keys if k in run.records), "geomean": _geomean([s for s, _ in shares]),
                                "min": lowest[0], "min_layer": lowest[1], "gemm": _geomean([g for g in gemm if g])})
    return summary


def _share_plot(run: Run, dtype: str, plt, width: float):
    """Issue-bound share per layer, one panel per pass: sm_90 / sm_80 x layouts, the GEMM reference hollow."""
    passes = [p for p in run.passes
              if any(run.value(run.key(layer, p, dtype, layout), arch, SHARE) is not None
                     for layer in run.layers for layout in run.layouts for arch in ARCHS)]
    archs = [arch for arch in ("sm_90", "sm_80")
             if any(run.value(k, arch, SHARE) is not None for k in run.keys if k[2] == dtype)]
    colours = {("sm_90", 0): "tab:blue", ("sm_90", 1): "tab:cyan", ("sm_80", 0): "tab:red", ("sm_80", 1): "tab:orange"}
    markers = {"sm_90": "o", "sm_80": "s"}
    series = [(arch, layout, index) for arch in archs for index, layout in enumerate(run.layouts)]
    slots = len(series) + len(archs)  # one slot per measured series, one per arch for the GEMM reference
    step = min(0.8 / max(1, slots), 0.16)
    fig, axes = plt.subplots(len(passes), 1, figsize=(width + 2.5, 2.6 * len(passes) + 1.2), sharex=True, squeeze=False)
    for ax, pass_name in zip(axes[:, 0], passes):
        slot = 0
        for arch in archs:
            for layout_arch, layout, index in series:
                if layout_arch != arch:
                    continue
                offset = (slot - (slots - 1) / 2) * step
                points = [(i + offset, run.value(run.key(layer, pass_name, dtype, layout), arch, SHARE))
                          for i, layer in enumerate(run.layers)]
                points = [(x, y) for x, y in points if y is not None]
                if points:
                    ax.scatter(*zip(*points), marker=markers[arch], s=28, color=colours.get((arch, index), "tab:gray"),
                               edgecolors="k", linewidths=0.3, zorder=3, label=f"{arch}{_layout_tag(run, layout)}")
                slot += 1
            offset = (slot - (slots - 1) / 2) * step
            reference = []
            for i, layer in enumerate(run.layers):
                values = [run.value(run.key(layer, pass_name, dtype, layout), arch, "gemm_" + SHARE) for layout in run.layouts]
                values = [v for v in values if v is not None]
                if values:
                    reference.append((i + offset, values[0]))
            if reference:
                ax.scatter(*zip(*reference), marker=markers[arch], s=34, facecolors="none", edgecolors="k",
                           linewidths=0.9, zorder=3, label=f"{arch} plain GEMM (same config)")
            slot += 1
        ax.axhline(0.9, color="tab:green", lw=1.0, ls="--", zorder=1, label="0.9 target")
        ax.text(1.0, 0.9, " 0.9 target", transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=7,
                color="tab:green")
        for i, layer in enumerate(run.layers):
            if i:
                ax.axvline(i - 0.5, color="k", lw=0.4, alpha=0.15)
            if all(run.value(run.key(layer, pass_name, dtype, layout), arch, SHARE) is None
                   for layout in run.layouts for arch in archs):
                ax.text(i, 0.03, "no tensor-core\nloop", ha="center", va="bottom", fontsize=6, color="grey", rotation=90)
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-0.6, len(run.layers) - 0.4)
        ax.set_ylabel(f"{pass_name}\nshare of peak")
        ax.grid(axis="y", alpha=0.3)
    bottom = axes[-1, 0]
    bottom.set_xticks(range(len(run.layers)))
    bottom.set_xticklabels(run.layers, rotation=75, ha="right", fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[1:, 0]:  # a pass may lack a series the first panel has
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.suptitle(f"{run.meta['suite']} {dtype}: {SHARE_TITLE} per layer\n({SHARE_CAVEAT})", fontsize=10)
    fig.tight_layout()
    # Below the figure, under the layer names: never over a point.
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(run.layouts) + 1,
               frameon=False)
    return fig


def plot_all(run: Run, folder: str) -> list[tuple[str, str]]:
    """Write the PNGs; returns (file name, caption) pairs."""
    plt = _plt()
    dtype = "float16" if "float16" in run.dtypes else run.dtypes[0]
    first = run.layouts[0]
    several = len(run.layouts) > 1
    figures = []
    width = max(8, 0.35 * len(run.layers) + 3)

    def save(fig, name, caption):
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=110, bbox_inches="tight")
        plt.close(fig)
        figures.append((name, caption))

    # Roofline: every pass's bound on the H100 (or the measured GPU), measured points on top.
    peak = gpu_peak(run.meta["device"]) if run.timed else None
    peak = peak or GPUS["H100 SXM"]
    fig, ax = plt.subplots(figsize=(7, 5))
    intensities = [run.value(run.key(layer, p, dtype), "static", "arithmetic_intensity")
                   for layer in run.layers for p in run.passes]
    intensities = [i for i in intensities if i]
    if intensities:
        low, high = min(intensities) / 2, max(intensities) * 2
        xs = [low * (high / low) ** (i / 100) for i in range(101)]
        ax.plot(xs, [min(peak.tensor_tflops[dtype], x * peak.bandwidth_tbs) for x in xs], "k-", label=f"{peak.name} roofline")
        colours = {("tconv", 0): "tab:blue", ("cudnn", 0): "tab:orange", ("tconv", 1): "tab:cyan", ("cudnn", 1): "tab:red"}
        for pass_name, marker in zip(run.passes, "os^"):
            points = [(run.value(run.key(layer, pass_name, dtype), "static", "arithmetic_intensity"), layer)
                      for layer in run.layers]
            points = [(x, layer) for x, layer in points if x]
            ax.scatter([x for x, _ in points], [min(peak.tensor_tflops[dtype], x * peak.bandwidth_tbs) for x, _ in points],
                       marker=marker, facecolors="none", edgecolors="grey", label=f"{pass_name} bound")
            for index, layout in enumerate(run.layouts):
                for source in ("tconv", "cudnn"):
                    measured = [(x, run.value(run.key(layer, pass_name, dtype, layout), source, "tflops")) for x, layer in points]
                    measured = [(x, y) for x, y in measured if y is not None]
                    if measured:
                        ax.scatter(*zip(*measured), marker=marker, color=colours.get((source, index), "tab:gray"),
                                   label=f"{pass_name} {source}{_layout_tag(run, layout)}")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / minimum byte)")
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"{run.meta['suite']} {dtype}: roofline" + ("" if run.timed else " (no GPU timing measured)"))
    _legend_right(ax)
    save(fig, "roofline.png", f"Roofline of {peak.name} ({dtype}); hollow markers are each pass's bound"
         + (", filled ones measured" + (" (per layout)" if several else "") if run.timed else "; nothing was measured on a GPU"))

    fig, ax = plt.subplots(figsize=(width, 4.5))
    one_pass = "fprop" if "fprop" in run.passes else run.passes[0]
    series = {gpu: [run.value(run.key(layer, one_pass, dtype), gpu, "roofline_us") for layer in run.layers]
              for gpu in ("H100 SXM", "A100 SXM 80GB")}
    _bars(ax, run.layers, series, "roofline-bound time (us)")
    ax.set_yscale("log")
    ax.set_title(f"{run.meta['suite']} {dtype}: roofline-bound time per layer (one pass)")
    save(fig, "roofline_time.png", "Roofline-bound time per layer on H100 SXM and A100 (static)")

    fig, ax = plt.subplots(figsize=(width, 4.5))
    source = "sm_90" if any(run.value(k, "sm_90", "executed_over_useful") for k in run.keys) else "sm_80"
    series = {p: [run.value(run.key(layer, p, dtype), source, "executed_over_useful") for layer in run.layers]
              for p in run.passes}
    _bars(ax, run.layers, series, "executed / useful multiply-adds")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_title(f"{run.meta['suite']} {dtype}: work of the launch plan ({source} heuristic configs"
                 + (f", {first})" if several else ")"))
    save(fig, "work_ratio.png", "Executed / useful multiply-adds of each pass's launch plan" + (f" ({first})" if several else ""))

    fig, axes = plt.subplots(len(run.layouts), 1, figsize=(width, 4.5 + 3.0 * (len(run.layouts) - 1)), sharex=True,
                             squeeze=False)
    for ax, layout in zip(axes[:, 0], run.layouts):
        series = {f"{p} {arch}": [run.value(run.key(layer, p, dtype, layout), arch, "registers") for layer in run.layers]
                  for arch in ARCHS for p in run.passes}
        series = {name: values for name, values in series.items() if any(v is not None for v in values)}
        if series:
            _bars(ax, run.layers, series, "registers per thread" + (f"\n{layout}" if several else ""), legend=False)
            ax.axhline(255, color="r", lw=0.8, label="255 (limit)")
            if ax is axes[0, 0]:
                _legend_right(ax)
    axes[0, 0].set_title(f"{run.meta['suite']} {dtype}: registers of the compiled kernels (spills: see table)")
    save(fig, "registers.png", "Registers per thread of the heuristic configs, compiled ahead of time"
         + (" (one panel per layout)" if several else ""))

    shares = share_dtype(run)
    if shares:
        fig = _share_plot(run, shares, plt, width)
        save(fig, "issue_bound_share.png", f"{SHARE_TITLE[0].upper() + SHARE_TITLE[1:]} per layer ({shares}), "
             f"{SHARE_CAVEAT}; hollow markers: a plain GEMM at the same config; dashed: the 0.9 target")

    if run.timed:
        for pass_name in run.passes:
            fig, ax = plt.subplots(figsize=(width, 4.5))
            series = {f"{s}{_layout_tag(run, layout)}": [run.value(run.key(layer, pass_name, dtype, layout), s, "tflops")
                                                         for layer in run.layers]
                      for layout in run.layouts for s in ("tconv", "cudnn", "torch_compile")}
            _bars(ax, run.layers, {k: v for k, v in series.items() if any(x is not None for x in v)}, "TFLOP/s")
            ax.set_title(f"{run.meta['suite']} {pass_name} {dtype} on {run.meta['device']}")
            save(fig, f"tflops_{pass_name}.png", f"{pass_name}: TFLOP/s of tconv and cuDNN per layer"
                 + (" and layout" if several else ""))
        fig, ax = plt.subplots(figsize=(width, 4.5))
        series = {}
        for layout in run.layouts:
            for p in run.passes:
                values = [run.value(run.key(layer, p, dtype, layout), "tconv", "speedup_vs_cudnn") for layer in run.layers]
                if any(v is not None for v in values):
                    series[f"{p}{_layout_tag(run, layout)} (geomean {_geomean([v for v in values if v]):.2f}x)"] = values
        _bars(ax, run.layers, series, "speedup over cuDNN (x)")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_title(f"{run.meta['suite']} {dtype}: speedup of tconv over cuDNN (geomean per pass in the legend)")
        save(fig, "speedup.png", f"Speedup of tconv over cuDNN per layer ({dtype}), geomean per pass"
             + (" and layout" if several else ""))
    return figures


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def _pair(values, digits: int) -> str:
    """'a / b' of the sm_80 and sm_90 values."""
    return " / ".join(_fmt(v, digits) for v in values)


def _share_section(run: Run, figures: list[tuple[str, str]]) -> list[str]:
    dtype = share_dtype(run)
    if dtype is None:
        return []
    lines = [f"## Static model: {SHARE_TITLE} (an upper bound from the SASS, not a timing)", "",
             f"Per layer ({dtype}), min(1, tensor clocks / issue clocks) of one K step of the main loop of the kernel "
             f"compiled ahead of time (tconv.sass): {SHARE_CAVEAT}; latency, memory and the epilogue are not in it. "
             "Geomean and minimum over the suite's distinct layers (unweighted); layers without a tensor-core loop "
             "(depthwise) have none. GEMM: a plain tiled GEMM compiled at the same config, the reference.", "",
             "| arch | layout | pass | layers | geomean share | min share (layer) | GEMM geomean |",
             "|---|---|---|---|---|---|---|"]
    for entry in share_summary(run, dtype):
        layers = f"{entry['layers']}" + (f" of {entry['of']}" if entry["of"] != entry["layers"] else "")
        gemm = "-" if math.isnan(entry["gemm"]) else f"{entry['gemm']:.3f}"
        lines.append(f"| {entry['arch']} | {entry['layout']} | {entry['pass']} | {layers} | {entry['geomean']:.3f} "
                     f"| {entry['min']:.3f} ({entry['min_layer']}) | {gemm} |")
    for name, caption in figures:
        if name == "issue_bound_share.png":
            lines += ["", f"![{caption}]({name})", "", f"*{caption}*"]
    return lines + [""]


def _host_section(run: Run) -> list[str]:
    """Host time of eager calls (perf.host), when the run measured it."""
    keys = [k for k in run.keys if run.value(k, "host", "forward_us") is not None]
    if not keys:
        return []
    cuda = any(run.value(k, "host", "tconv_cuda_call_us") is not None for k in keys)
    lines = ["## Host path of eager calls", "",
             "Microseconds per call on the host, medians of interleaved calls in one process (perf.host): tconv on CPU "
             "tensors with its kernel launches stubbed (its Python path alone, as on CUDA before Triton's launcher) "
             "against torch's own call on meta tensors (checks, shape inference, dispatch, autograd; no compute). "
             "Forward: one call; train: the call and the backward of its output. Reduced-size layers (host time does "
             "not depend on the size); module: one forward of the layer's module. "
             + ("CUDA: whole forward calls in a synchronised loop, launches included." if cuda else ""), "",
             "| layer | dtype | forward us (torch) | ratio | train us (torch) | ratio | module us (torch) | ratio "
             "| launches fwd / bwd |" + (" CUDA call us tconv / cuDNN |" if cuda else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if cuda else "")]
    for key in keys:
        value = lambda metric, key=key: run.value(key, "host", metric)
        cells = (f"| {key[0]} | {key[2]} | {value('forward_us'):.1f} ({value('torch_forward_us'):.1f}) "
                 f"| {value('forward_ratio'):.2f} | {value('train_us'):.1f} ({value('torch_train_us'):.1f}) "
                 f"| {value('train_ratio'):.2f} | {value('module_us'):.1f} ({value('torch_module_us'):.1f}) "
                 f"| {value('module_ratio'):.2f} | {value('forward_launches'):.0f} / {value('backward_launches'):.0f} |")
        if cuda:
            cells += f" {_fmt(value('tconv_cuda_call_us'), 1)} / {_fmt(value('cudnn_cuda_call_us'), 1)} |"
        lines.append(cells)
    geomeans = [_geomean([run.value(k, "host", metric) for k in keys])
                for metric in ("forward_ratio", "train_ratio", "module_ratio")]
    lines += ["", f"Geomean ratio tconv / torch: forward {geomeans[0]:.2f}, train {geomeans[1]:.2f}, "
              f"module {geomeans[2]:.2f}.", ""]
    return lines


def write_markdown(run: Run, folder: str, figures: list[tuple[str, str]]) -> str:
    meta = run.meta
    several = len(run.layouts) > 1
    lines = [f"# tconv benchmark report: {meta['suite']}", "",
             f"Run {meta['run']}, commit {meta['commit']}; tconv {meta['tconv']}, torch {meta['torch']}, "
             f"triton {meta['triton']}; device: {meta['device']}; layout{'s' if several else ''} {meta['layout']}.", ""]
    if run.timed:
        lines += [f"GPU timings measured on {meta['device']} with triton.testing.do_bench (median, rotating operands); "
                  "float32 on TF32 tensor cores for both tconv and cuDNN.", ""]
    else:
        lines += ["**No GPU timing was taken in this run** (no GPU): the timing columns say "
                  f"'{NOT_MEASURED}'. What is reported is static (FLOPs, minimum bytes, roofline-bound time, "
                  "the work of the launch plan, ahead-of-time compile resources for sm_80 and sm_90) and, "
                  "where the run had `--quick`, every layer checked against torch at reduced size.", ""]
    layout_head, layout_rule = ("layout | ", "---|") if several else ("", "")
    lines += ["## Summary", "",
              f"| pass | dtype | {layout_head}layers | GFLOP (x count) | H100 bound ms | A100 bound ms | tconv ms | cuDNN ms | "
              "geomean speedup | executed/useful | max registers sm_80 / sm_90 | spilling kernels | tensor cores | "
              "checked vs torch |",
              "|---|---|" + layout_rule + "---|---|---|---|---|---|---|---|---|---|---|---|"]
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
                spilling = sum(1 for k in keys for arch in ARCHS if (run.value(k, arch, "spill_bytes") or 0) > 0)
                errors = sum(1 for k in keys for arch in ARCHS if run.value(k, arch, "compile_error"))
                tensor = sum(1 for k in keys for arch in ARCHS if run.value(k, arch, "tensor_cores"))
                compiled = sum(1 for k in keys for arch in ARCHS if run.value(k, arch, "registers") is not None)
                checks = [run.value(k, source, "ok") for k in keys for source in ("interpreter", "check")]
                checks = [c for c in checks if c is not None]
                timed = run.timed and any(run.value(k, "tconv", "ms") for k in keys)
                ours = f"{total('tconv', 'ms'):,.3f}" if timed else NOT_MEASURED
                theirs = f"{total('cudnn', 'ms'):,.3f}" if timed else NOT_MEASURED
                speedup = f"{_geomean([run.value(k, 'tconv', 'speedup_vs_cudnn') for k in keys]):.2f}x" if timed else NOT_MEASURED
                ratio_range = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
                failed = f" ({errors} failed)" if errors else ""
                if checks:
                    checked, checked_elsewhere = f"{int(sum(checks))} of {len(checks)}", checked_elsewhere or layout
                else:  # bench --quick checks the first layout only
                    checked = f"see {checked_elsewhere}" if checked_elsewhere else "not run"
                layout_cell = f"{layout} | " if several else ""
                lines.append(
                    f"| {pass_name} | {dtype} | {layout_cell}{len(keys)} | {total('static', 'flops', 1e-9):,.1f} "
                    f"| {total('H100 SXM', 'roofline_us', 1e-3):,.3f} | {total('A100 SXM 80GB', 'roofline_us', 1e-3):,.3f} "
                    f"| {ours} | {theirs} | {speedup} | {ratio_range} | {registers[0]:.0f} / {registers[1]:.0f} "
                    f"| {spilling} of {compiled}{failed} | {tensor} of {compiled} | {checked} |"
                )
    lines.append("")
    lines += _host_section(run)
    lines += _share_section(run, figures)
    lines += ["## Plots", ""]
    for name, caption in figures:
        if name != "issue_bound_share.png":  # shown in its own section
            lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    has_share = any(run.value(k, arch, SHARE) is not None for k in run.keys for arch in ARCHS)
    has_loop = any(run.value(k, arch, "loop_over_gemm") is not None for k in run.keys for arch in ARCHS)
    extra_head = ((" issue-bound share sm_80/sm_90 (static bound, not a timing) |" if has_share else "")
                  + (" loop / GEMM sm_80/sm_90 |" if has_loop else ""))
    columns = 20 + several + has_share + has_loop
    lines += ["## Per layer", "",
              f"| layer | shape | count | pass | kernel | dtype | {layout_head}GFLOP | MB | AI | H100 us | A100 us | "
              "config (sm_90) | exec/useful | regs sm_80/sm_90 | spills | TC |" + extra_head
              + " check err / tol | tconv ms | cuDNN ms | speedup |",
              "|" + "---|" * columns]
    for key in run.keys:
        layer, pass_name, dtype, layout = key
        info = run.info[key]

        def value(source, metric, key=key):
            return run.value(key, source, metric)

        spills = [value(arch, "spill_bytes") for arch in ARCHS]
        tensor = [value(arch, "tensor_cores") for arch in ARCHS]
        error = value("interpreter", "max_error") or value("check", "max_error")
        tolerance = value("interpreter", "tolerance") or value("check", "tolerance")
        check = f"{error:.1e} / {tolerance:.2g}" if error is not None and tolerance else "-"
        timing = [value("tconv", "ms"), value("cudnn", "ms"), value("tconv", "speedup_vs_cudnn")]
        extra = ((f" {_pair([value(arch, SHARE) for arch in ARCHS], 2)} |" if has_share else "")
                 + (f" {_pair([value(arch, 'loop_over_gemm') for arch in ARCHS], 2)} |" if has_loop else ""))
        layout_cell = f"{layout} | " if several else ""
        lines.append(
            f"| {layer} | {info['shape']} | {info['count']} | {pass_name} | {info['kernel']} | {dtype} | {layout_cell}"
            f"{_fmt((value('static', 'flops') or 0) / 1e9)} | {_fmt((value('static', 'min_bytes') or 0) / 1e6, 1)} "
            f"| {_fmt(value('static', 'arithmetic_intensity'), 0)} | {_fmt(value('H100 SXM', 'roofline_us'), 1)} "
            f"| {_fmt(value('A100 SXM 80GB', 'roofline_us'), 1)} | {value('sm_90', 'config') or value('sm_80', 'config') or '-'} "
            f"| {_fmt(value('sm_90', 'executed_over_useful') or value('sm_80', 'executed_over_useful'))} "
            f"| {_pair([value(arch, 'registers') for arch in ARCHS], 0)} "
            f"| {_pair(spills, 0)} "
            f"| {' / '.join('yes' if t else ('no' if t is not None else '-') for t in tensor)} |{extra}"
            f" {check} | {_fmt(timing[0], 4) if timing[0] is not None else NOT_MEASURED} "
            f"| {_fmt(timing[1], 4) if timing[1] is not None else NOT_MEASURED} "
            f"| {_fmt(timing[2]) + 'x' if timing[2] is not None else NOT_MEASURED} |"
        )
    lines += ["", "Roofline bounds use the dense tensor-core peaks and HBM bandwidths of perf/roofline.py "
              "(datasheet figures; float32 at the TF32 peak) and the minimum traffic (input, weight and output once). "
              "FLOPs follow the GEMM view (2 x M x N x K, padding taps included; the scatter view for transposed conv)."]
    if several:
        lines.append("The check against torch (`--quick`) runs on the first layout only.")
    if has_share:
        lines.append(f"Issue-bound share: {SHARE_CAVEAT}; loop / GEMM: main-loop instructions per tensor-core "
                     "instruction over a plain GEMM's at the same config.")
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
    figures = plot_all(run, folder)
    path = write_markdown(run, folder, figures)
    print(f"tconv report: {len(run.keys)} (layer, pass, dtype, layout) rows of run {run.meta['run']} ({run.meta['suite']}, "
          f"{run.meta['layout']}); {len(figures)} plots and {path}"
          + ("" if run.timed else " (no GPU timing in this run: marked not measured)"))
    return 0


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="plots and a Markdown report from a bench CSV")
    report.add_argument("--csv", default="results/bench.csv", help="the CSV `tconv bench` wrote")
    report.add_argument("--run", dest="run_id", help="run id (the 'run' column); default: the latest")
    report.add_argument("--suite", help="only rows of this suite (its latest run)")
    report.add_argument("--out", help="folder for the PNGs and report.md (default: beside the CSV)")
    report.set_defaults(run=report_main)
