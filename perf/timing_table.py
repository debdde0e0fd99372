"""Measured GPU timings of every run in a bench CSV, one line per (layer, pass, dtype, layout):

    python -m perf.timing_table results/timing.csv

tconv and cuDNN medians (eager and CUDA-graph), speedups, tconv's TFLOP/s and % of roofline,
then the geometric-mean speedup per (layout, dtype, pass). Only rows that a GPU measured.
Last, the share of tensor peak the gathered main loops reached per (dtype, pass): the
passes given channels-first operands that made no layout copy, timed from CUDA graphs,
thin layers (fewer than 16 input channels per group) left out. That is where
tconv.configs.GATHERED_SHARE's measured entries come from.
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict

from tconv.spec import THIN_CHANNELS

from .roofline import gpu_peak
from .run import geomean
from .suites import SUITES


def main(path: str) -> None:
    records: dict[tuple, dict] = defaultdict(dict)
    device, suites = "", {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            records[(row["layout"], row["dtype"], row["pass"], row["layer"])][(row["source"], row["metric"])] = row["value"]
            device, suites[row["layer"]] = row["device"] or device, row["suite"]
    print(f"device: {device}")
    print(f"{'layout':13} {'dtype':8} {'pass':5} {'layer':24} {'tconv ms':>9} {'cudnn ms':>9} {'speedup':>7} "
          f"{'graph':>6} {'TFLOP/s':>7} {'%roof':>6}  config")
    summary: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for (layout, dtype, pass_name, layer), record in records.items():
        if ("tconv", "ms") not in record:
            continue
        speedup, graph = float(record[("tconv", "speedup_vs_cudnn")]), float(record[("tconv", "graph_speedup_vs_cudnn")])
        summary[(layout, dtype, pass_name)].append((speedup, graph))
        print(f"{layout:13} {dtype:8} {pass_name:5} {layer[:24]:24} {float(record[('tconv', 'ms')]):9.4f} "
              f"{float(record[('cudnn', 'ms')]):9.4f} {speedup:7.2f} {graph:6.2f} {float(record[('tconv', 'tflops')]):7.1f} "
              f"{record.get(('tconv', 'pct_roofline'), '-'):>6}  {record.get(('tconv', 'config'), '')}")
    print("geomean speedup over cuDNN (eager / CUDA graph), layers:")
    for (layout, dtype, pass_name), values in summary.items():
        print(f"  {layout:13} {dtype:8} {pass_name:5} {geomean([v[0] for v in values]):.2f}x / "
              f"{geomean([v[1] for v in values]):.2f}x  over {len(values)}")
    shares = gathered_shares(records, suites, device)
    if shares:
        print("gathered main loops' share of tensor peak (CUDA graph; geomean, min-max, layers):")
    for (dtype, pass_name), values in shares.items():
        print(f"  {dtype:8} {pass_name:5} {geomean(values):.3f}  {min(values):.3f}-{max(values):.3f}  {len(values)}")


def gathered_shares(records: dict[tuple, dict], suites: dict[str, str], device: str) -> dict[tuple, list[float]]:
    """{(dtype, pass): [share of the device's tensor peak]} of the timed channels-first passes
    that gathered in place (no layout bytes), thin layers left out (their channels-last loop
    gathers too)."""
    gpu = gpu_peak(device)
    shares: dict[tuple, list[float]] = defaultdict(list)
    if gpu is None:
        return shares
    for (layout, dtype, pass_name, layer_name), record in records.items():
        layer = next((layer for layer in SUITES.get(suites[layer_name], ()) if layer.name == layer_name), None)
        if (layout != "contiguous" or ("tconv", "graph_ms") not in record or layer is None
                or float(record.get((gpu.name, "layout_bytes"), 1)) > 0 or layer.in_channels // layer.groups < THIN_CHANNELS):
            continue
        seconds = float(record[("tconv", "graph_ms")]) * 1e-3
        shares[(dtype, pass_name)].append(float(record[("static", "flops")]) / (seconds * gpu.tensor_tflops[dtype] * 1e12))
    return shares


if __name__ == "__main__":
    main(sys.argv[1])
