"""The main-loop targets, read from `tconv bench` CSVs: per arch, pass and dtype, over the
compute-bound layers (arithmetic intensity above the arch's roofline ridge; in a layout that
makes channels-last copies, their bytes count), the static model's figures for the
heuristic's picks.

    python -m tconv.perf.targets results/bench.csv [--layout channels_last] [--dtypes float16,bfloat16]

Takes, per suite, the latest run in the file. Targets (issue #11): issue-bound share
geomean >= 0.9 and no layer below 0.7; loop instructions per tensor-core instruction
<= 1.25x a plain GEMM's at the same config; pipelined loops with 128-bit loads; no
spills; executed / useful multiply-adds <= 1.05 on dense layers. "Useful" leaves out taps
that land in zero padding, which an implicit GEMM multiplies like any other; the GEMM-view
column counts them (tile and split waste only).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict

from .roofline import GPUS

#: The GPU whose roofline ridge says which layers are compute-bound for an arch.
RIDGE_GPU = {"sm_90": "H100 SXM", "sm_80": "A100 SXM 80GB"}
PASSES = ("fprop", "dgrad", "wgrad")


def ridge(arch: str, dtype: str) -> float:
    """FLOPs per byte above which the arch's reference GPU is compute-bound."""
    gpu = GPUS[RIDGE_GPU[arch]]
    return gpu.tensor_tflops[dtype] / gpu.bandwidth_tbs


def latest_runs(paths: list[str], layout: str) -> dict[tuple, dict]:
    """{(suite, layer, pass, dtype): {(source, metric): value}} from each suite's latest run."""
    rows = [row for path in paths for row in csv.DictReader(open(path, newline=""))]
    latest = {}
    for row in rows:
        latest[row["suite"]] = max(latest.get(row["suite"], ""), row["run"])
    records: dict[tuple, dict] = defaultdict(dict)
    for row in rows:
        if row["run"] == latest[row["suite"]] and row["layout"] == layout and not row["layer"].startswith("space"):
            records[(row["suite"], row["layer"], row["pass"], row["dtype"])][(row["source"], row["metric"])] = row["value"]
    return records


def _geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def summarize(records: dict[tuple, dict], dtypes: list[str], layout_bytes: bool = True) -> list[dict]:
    table = []
    for arch in RIDGE_GPU:
        for pass_name in PASSES:
            for dtype in dtypes:
                picked = []
                for (suite, layer, p, d), record in records.items():
                    intensity = record.get(("static", "arithmetic_intensity"))
                    copied = record.get((RIDGE_GPU[arch], "layout_bytes"))
                    if layout_bytes and copied:  # the bytes of the layout copies this arch makes count
                        intensity = float(record[("static", "flops")]) / (
                            float(record[("static", "min_bytes")]) + float(copied))
                    if p != pass_name or d != dtype or intensity is None or (arch, "issue_bound_share") not in record:
                        continue
                    if float(intensity) > ridge(arch, dtype):
                        picked.append((f"{suite}/{layer}", record))
                if not picked:
                    continue

                def values(metric, picked=picked, arch=arch):
                    return [(name, float(r[(arch, metric)])) for name, r in picked if (arch, metric) in r]

                shares = values("issue_bound_share")
                ratios = values("loop_over_gemm")
                worst = min(shares, key=lambda item: item[1])
                table.append({
                    "arch": arch, "pass": pass_name, "dtype": dtype, "layers": len(picked),
                    "share_geomean": _geomean([v for _, v in shares]), "share_min": worst[1], "share_min_layer": worst[0],
                    "loop_over_gemm_geomean": _geomean([v for _, v in ratios]),
                    "loop_over_gemm_max": max((v for _, v in ratios), default=float("nan")),
                    "unpipelined": sum(1 for _, v in values("pipelined") if not v),
                    "narrow_loads": sum(1 for _, v in values("load_bits") if v < 128),
                    "spilling": sum(1 for _, v in values("spill_bytes") if v > 0),
                    "executed_over_useful_max": max(v for _, v in values("executed_over_useful")),
                    "executed_over_gemm_max": max(
                        float(r[(arch, "executed_over_useful")]) * float(r[("static", "useful_flops")])
                        / float(r[("static", "flops")]) for _, r in picked),
                })
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tconv.perf.targets", description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", nargs="+", help="tconv bench CSV files")
    parser.add_argument("--layout", default="channels_last")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--min-bytes", action="store_true",
                        help="say compute-bound by the minimum bytes alone, without the layout copies' bytes")
    args = parser.parse_args(argv)
    table = summarize(latest_runs(args.csv, args.layout), args.dtypes.split(","), not args.min_bytes)
    print("| arch | pass | dtype | compute-bound layers | share geomean | share min (layer) | loop/GEMM geomean | "
          "loop/GEMM max | not pipelined | < 128-bit loads | spilling | executed/useful max | executed/GEMM view max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e in table:
        print(f"| {e['arch']} | {e['pass']} | {e['dtype']} | {e['layers']} | {e['share_geomean']:.3f} "
              f"| {e['share_min']:.3f} ({e['share_min_layer']}) | {e['loop_over_gemm_geomean']:.2f} "
              f"| {e['loop_over_gemm_max']:.2f} | {e['unpipelined']} | {e['narrow_loads']} | {e['spilling']} "
              f"| {e['executed_over_useful_max']:.3f} | {e['executed_over_gemm_max']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
