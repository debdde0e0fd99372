"""One bench run read back from the CSV `tconv bench` writes: what `tconv report` and its plots draw from."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

from tconv.arguments import UsageError

PASSES = ("fprop", "dgrad", "wgrad")
ARCHS = ("sm_80", "sm_90")
SHARE = "issue_bound_share"
SHARE_TITLE = "issue-bound share of tensor peak"
SHARE_CAVEAT = "a static upper bound from the compiled SASS main loop, not a timing"


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


def geomean(values: list[float]) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")
