"""The PNG plots of `tconv report`: one set per dtype that ran, drawn from a `Run` (never from a kernel).

Conventions, so that no plot hides data: series that share an x position are offset side by side
(never drawn on top of each other), legends sit outside the axes, and every reference line carries
its own label at its right end.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from .roofline import GPUS, gpu_peak
from .run import ARCHS, SHARE, SHARE_CAVEAT, SHARE_TITLE, Run, geomean


class Plot(NamedTuple):
    name: str  # file name beside report.md
    caption: str
    dtype: str
    kind: str  # the plot's stem, e.g. "roofline"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend_right(ax, **kwargs) -> None:
    """A legend beside the axes (never over the data)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def _legend_below(fig, columns: int = 4) -> None:
    """One legend for all panels, below the figure (under the layer names): never over a bar, a point or a
    reference line's label. A series missing from one panel is still listed once."""
    handles, labels = [], []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.tight_layout()
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=columns, frameon=False)


def _reference_line(ax, y: float, text: str, colour: str = "k", style: str = "--") -> None:
    """A horizontal reference line labelled at its right end, outside the axes."""
    ax.axhline(y, color=colour, lw=0.9, ls=style, zorder=1)
    ax.text(1.005, y, f" {text}", transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=7, color=colour)


def _layer_axis(ax, layers: list[str]) -> None:
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=75, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(layers) - 0.4)


def _bars(ax, layers: list[str], series: dict[str, list[float | None]], ylabel: str) -> None:
    """Grouped bars, one group per layer; a missing value leaves a gap (no zero-height bar)."""
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        points = [(i + (index - (len(series) - 1) / 2) * width, v) for i, v in enumerate(values) if v is not None]
        if points:
            ax.bar(*zip(*points), width, label=name)
    _layer_axis(ax, layers)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _layout_tag(run: Run, layout: str) -> str:
    """' channels_last' in a run of several layouts, '' in a run of one."""
    return f" {layout}" if len(run.layouts) > 1 else ""


def _roofline(run: Run, dtype: str, plt):
    """One panel per pass (fprop, dgrad and wgrad of a layer share their intensity, so one panel would
    stack their markers): the roofline, each layer's bound hollow, measured TFLOP/s filled."""
    peak = (gpu_peak(run.meta["device"]) if run.timed else None) or GPUS["H100 SXM"]
    tensor_peak = peak.tensor_tflops[dtype]
    fig, axes = plt.subplots(1, len(run.passes), figsize=(4.2 * len(run.passes) + 2.5, 4.6), sharey=True, squeeze=False)
    sources = {("tconv", 0): ("o", "tab:blue"), ("cudnn", 0): ("s", "tab:orange"),
               ("tconv", 1): ("D", "tab:cyan"), ("cudnn", 1): ("v", "tab:red")}
    intensities = [run.value(run.key(layer, p, dtype), "static", "arithmetic_intensity")
                   for layer in run.layers for p in run.passes]
    intensities = [i for i in intensities if i]
    for ax, pass_name in zip(axes[0], run.passes):
        if not intensities:
            break
        ridge = tensor_peak / peak.bandwidth_tbs  # the line always shows both roofs, whatever the layers
        low, high = min(min(intensities) / 2, ridge / 8), max(max(intensities) * 2, ridge * 4)
        xs = [low * (high / low) ** (i / 100) for i in range(101)]
        ax.plot(xs, [min(tensor_peak, x * peak.bandwidth_tbs) for x in xs], "k-", lw=1.0, zorder=1)
        ax.text(high, tensor_peak * 1.06, f"{tensor_peak:,.0f} TFLOP/s", ha="right", va="bottom", fontsize=7)
        ax.text(ridge / 4, ridge / 4 * peak.bandwidth_tbs * 1.25, f"{peak.bandwidth_tbs} TB/s", ha="right",
                va="bottom", fontsize=7, rotation=35)
        points = [(run.value(run.key(layer, pass_name, dtype), "static", "arithmetic_intensity"), layer)
                  for layer in run.layers]
        points = [(x, layer) for x, layer in points if x]
        ax.scatter([x for x, _ in points], [min(tensor_peak, x * peak.bandwidth_tbs) for x, _ in points], marker="o",
                   s=46, facecolors="none", edgecolors="k", linewidths=0.8, zorder=2, label="layer's bound")
        for index, layout in enumerate(run.layouts):
            for source in ("tconv", "cudnn"):
                measured = [(x, run.value(run.key(layer, pass_name, dtype, layout), source, "tflops")) for x, layer in points]
                measured = [(x, y) for x, y in measured if y is not None]
                if measured:
                    marker, colour = sources.get((source, index), ("x", "tab:gray"))
                    ax.scatter(*zip(*measured), marker=marker, s=22, color=colour, zorder=3,
                               label=f"{source}{_layout_tag(run, layout)} measured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(pass_name, fontsize=9)
        ax.set_xlabel("FLOP / minimum byte")
        ax.grid(alpha=0.25, which="both")
    axes[0, 0].set_ylabel("TFLOP/s")
    _legend_right(axes[0, -1])
    fig.suptitle(f"{run.meta['suite']} {dtype}: roofline of {peak.name}"
                 + ("" if run.timed else " (no GPU timing in this run: bounds only)"), fontsize=10)
    fig.tight_layout()
    caption = (f"Roofline of {peak.name} ({dtype}, one panel per pass): the line is min(peak, intensity x bandwidth); "
               "hollow circles are each layer's bound" + ("; filled markers measured" if run.timed else
                                                          "; nothing was measured on a GPU"))
    return fig, caption


def _roofline_time(run: Run, dtype: str, plt, width: float):
    fig, ax = plt.subplots(figsize=(width, 4.5))
    one_pass = "fprop" if "fprop" in run.passes else run.passes[0]
    series = {gpu: [run.value(run.key(layer, one_pass, dtype), gpu, "roofline_us") for layer in run.layers]
              for gpu in ("H100 SXM", "A100 SXM 80GB")}
    _bars(ax, run.layers, series, "roofline-bound time (us)")
    _legend_below(fig)
    ax.set_yscale("log")
    ax.set_title(f"{run.meta['suite']} {dtype}: roofline-bound time of one pass per layer (log scale)")
    return fig, f"Roofline-bound time of one pass per layer on H100 SXM and A100 ({dtype}, static)"


def _work_ratio(run: Run, dtype: str, plt, width: float):
    fig, ax = plt.subplots(figsize=(width, 4.5))
    source = "sm_90" if any(run.value(k, "sm_90", "executed_over_useful") for k in run.keys) else "sm_80"
    layout = run.layouts[0]
    series = {p: [run.value(run.key(layer, p, dtype, layout), source, "executed_over_useful") for layer in run.layers]
              for p in run.passes}
    _bars(ax, run.layers, series, "executed / useful multiply-adds")
    _reference_line(ax, 1.0, "1 = no wasted work", style="-")
    ax.set_title(f"{run.meta['suite']} {dtype}: work of the launch plan ({source} heuristic configs"
                 + (f", {layout})" if len(run.layouts) > 1 else ")"))
    _legend_below(fig)
    return fig, f"Executed / useful multiply-adds of each pass's launch plan ({dtype}, {source} configs)"


def _registers(run: Run, dtype: str, plt, width: float):
    several = len(run.layouts) > 1
    fig, axes = plt.subplots(len(run.layouts), 1, figsize=(width, 4.5 + 3.0 * (len(run.layouts) - 1)), sharex=True,
                             squeeze=False)
    for ax, layout in zip(axes[:, 0], run.layouts):
        series = {f"{p} {arch}": [run.value(run.key(layer, p, dtype, layout), arch, "registers") for layer in run.layers]
                  for arch in ARCHS for p in run.passes}
        series = {name: values for name, values in series.items() if any(v is not None for v in values)}
        if series:
            _bars(ax, run.layers, series, "registers per thread" + (f"\n{layout}" if several else ""))
            ax.set_ylim(0, 290)  # room above the limit's line, so no bar top is hidden by it
            _reference_line(ax, 255, "255: limit per thread", colour="tab:red")
    axes[0, 0].set_title(f"{run.meta['suite']} {dtype}: registers of the compiled kernels (spills: see the table)")
    _legend_below(fig, columns=len(run.passes))
    return fig, (f"Registers per thread of the heuristic configs, compiled ahead of time ({dtype}"
                 + (", one panel per layout)" if several else ")"))


def _share(run: Run, dtype: str, plt, width: float):
    """Issue-bound share per layer, one panel per pass: each arch x layout side by side, the GEMM reference hollow."""
    passes = [p for p in run.passes if any(run.value(run.key(layer, p, dtype, layout), arch, SHARE) is not None
                                           for layer in run.layers for layout in run.layouts for arch in ARCHS)]
    archs = [arch for arch in ("sm_90", "sm_80")
             if any(run.value(k, arch, SHARE) is not None for k in run.keys if k[2] == dtype)]
    if not passes:
        return None
    colours = {("sm_90", 0): "tab:blue", ("sm_90", 1): "tab:cyan", ("sm_80", 0): "tab:red", ("sm_80", 1): "tab:orange"}
    markers = {"sm_90": "o", "sm_80": "s"}
    slots = len(archs) * (len(run.layouts) + 1)  # per arch: one slot per layout, one for the GEMM reference
    step = min(0.8 / max(1, slots), 0.16)
    fig, axes = plt.subplots(len(passes), 1, figsize=(width + 2.5, 2.6 * len(passes) + 1.2), sharex=True, squeeze=False)
    for ax, pass_name in zip(axes[:, 0], passes):
        slot = 0
        for arch in archs:
            for index, layout in enumerate(run.layouts):
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
                values = [run.value(run.key(layer, pass_name, dtype, layout), arch, "gemm_" + SHARE)
                          for layout in run.layouts]
                values = [v for v in values if v is not None]
                if values:
                    reference.append((i + offset, values[0]))
            if reference:
                ax.scatter(*zip(*reference), marker=markers[arch], s=34, facecolors="none", edgecolors="k",
                           linewidths=0.9, zorder=3, label=f"{arch} plain GEMM (same config)")
            slot += 1
        _reference_line(ax, 0.9, "0.9 target", colour="tab:green")
        for i, layer in enumerate(run.layers):
            if i:
                ax.axvline(i - 0.5, color="k", lw=0.4, alpha=0.15)
            if all(run.value(run.key(layer, pass_name, dtype, layout), arch, SHARE) is None
                   for layout in run.layouts for arch in archs):
                ax.text(i, 0.03, "no tensor-core\nloop", ha="center", va="bottom", fontsize=6, color="grey", rotation=90)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{pass_name}\nshare of peak")
        ax.grid(axis="y", alpha=0.3)
    _layer_axis(axes[-1, 0], run.layers)
    fig.suptitle(f"{run.meta['suite']} {dtype}: {SHARE_TITLE} per layer\n({SHARE_CAVEAT})", fontsize=10)
    _legend_below(fig, columns=len(run.layouts) + 1)
    return fig, (f"{SHARE_TITLE[0].upper() + SHARE_TITLE[1:]} per layer ({dtype}), {SHARE_CAVEAT}; "
                 "hollow markers: a plain GEMM at the same config; dashed: the 0.9 target")


def _layout_comparison(run: Run, dtype: str, plt, width: float):
    """The same layers given channels-first (NCHW) and channels_last: what the layout costs the main loop
    (sm_90 share ratio) and the pass as a whole (H100 roofline-bound time with the layout copies)."""
    if not {"channels_last", "contiguous"} <= set(run.layouts):
        return None
    fig, axes = plt.subplots(2, 1, figsize=(width + 2.5, 7.5), sharex=True, squeeze=False)
    share, time = {}, {}
    for p in run.passes:
        share[p] = [_ratio(run.value(run.key(layer, p, dtype, "contiguous"), "sm_90", SHARE),
                           run.value(run.key(layer, p, dtype, "channels_last"), "sm_90", SHARE)) for layer in run.layers]
        time[p] = [_ratio(run.value(run.key(layer, p, dtype, "contiguous"), "H100 SXM", "roofline_with_layout_us"),
                          run.value(run.key(layer, p, dtype, "channels_last"), "H100 SXM", "roofline_us"))
                   for layer in run.layers]
    for ax, series, label in ((axes[0, 0], share, "sm_90 share of peak\ncontiguous / channels_last"),
                              (axes[1, 0], time, "H100 bound time\ncontiguous (with copies)\n/ channels_last")):
        _bars(ax, run.layers, {p: v for p, v in series.items() if any(x is not None for x in v)}, label)
        _reference_line(ax, 1.0, "1 = the same", style="-")
        for i in range(len(run.layers)):
            if all(values[i] is None for values in series.values()):
                ax.text(i, 0.03, "no tensor-core\nloop", ha="center", va="bottom", fontsize=6, color="grey", rotation=90)
    fig.suptitle(f"{run.meta['suite']} {dtype}: the same layers given NCHW and channels_last\n"
                 "(top: main loop, static model; bottom: roofline bound, the layout copies included)", fontsize=10)
    _legend_below(fig, columns=len(run.passes))
    return fig, (f"Layout comparison ({dtype}): per layer and pass, the sm_90 issue-bound share of the NCHW launch over "
                 "the channels_last one, and the H100 roofline-bound time of the NCHW pass with its layout copies over "
                 "the channels_last pass's")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _tflops(run: Run, dtype: str, pass_name: str, plt, width: float):
    series = {f"{s}{_layout_tag(run, layout)}": [run.value(run.key(layer, pass_name, dtype, layout), s, "tflops")
                                                 for layer in run.layers]
              for layout in run.layouts for s in ("tconv", "cudnn", "torch_compile")}
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(width, 4.5))
    _bars(ax, run.layers, series, "TFLOP/s")
    ax.set_title(f"{run.meta['suite']} {pass_name} {dtype} on {run.meta['device']}")
    _legend_below(fig)
    return fig, f"{pass_name}: TFLOP/s of tconv and cuDNN per layer ({dtype})"


def _speedup(run: Run, dtype: str, plt, width: float):
    series = {}
    for layout in run.layouts:
        for p in run.passes:
            values = [run.value(run.key(layer, p, dtype, layout), "tconv", "speedup_vs_cudnn") for layer in run.layers]
            if any(v is not None for v in values):
                series[f"{p}{_layout_tag(run, layout)} (geomean {geomean([v for v in values if v]):.2f}x)"] = values
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(width, 4.5))
    _bars(ax, run.layers, series, "speedup over cuDNN (x)")
    _reference_line(ax, 1.0, "1 = cuDNN's time", style="-")
    ax.set_title(f"{run.meta['suite']} {dtype}: speedup of tconv over cuDNN (geomean per pass in the legend)")
    _legend_below(fig, columns=3)
    return fig, f"Speedup of tconv over cuDNN per layer ({dtype}), geomean per pass in the legend"


def plot_all(run: Run, folder: str) -> list[Plot]:
    """Write every plot for every dtype of the run; file names end in the dtype."""
    plt = _plt()
    width = max(8, 0.35 * len(run.layers) + 3)
    plots = []
    for dtype in run.dtypes:
        drawn = [("roofline", _roofline(run, dtype, plt)), ("roofline_time", _roofline_time(run, dtype, plt, width)),
                 ("work_ratio", _work_ratio(run, dtype, plt, width)), ("registers", _registers(run, dtype, plt, width)),
                 ("issue_bound_share", _share(run, dtype, plt, width)),
                 ("layout_comparison", _layout_comparison(run, dtype, plt, width))]
        if run.timed:
            drawn += [(f"tflops_{p}", _tflops(run, dtype, p, plt, width)) for p in run.passes]
            drawn.append(("speedup", _speedup(run, dtype, plt, width)))
        for kind, figure in drawn:
            if figure is None:
                continue
            fig, caption = figure
            name = f"{kind}_{dtype}.png"
            fig.savefig(os.path.join(folder, name), dpi=110, bbox_inches="tight")
            plt.close(fig)
            plots.append(Plot(name, caption, dtype, kind))
    return plots

