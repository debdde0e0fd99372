"""Measured GPU timings of every run in a bench CSV, one line per (layer, pass, dtype, layout):

    python -m perf.timing_table results/timing.csv

tconv and cuDNN medians (eager and CUDA-graph), speedups, tconv's TFLOP/s and % of roofline,
then the geometric-mean speedup per (layout, dtype, pass). Only rows that a GPU measured.
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict

from .run import geomean


def main(path: str) -> None:
    records: dict[tuple, dict] = defaultdict(dict)
    device = ""
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            records[(row["layout"], row["dtype"], row["pass"], row["layer"])][(row["source"], row["metric"])] = row["value"]
            device = row["device"] or device
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


if __name__ == "__main__":
    main(sys.argv[1])
