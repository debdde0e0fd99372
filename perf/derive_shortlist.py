"""Measure the heuristic's shortlist: compile each candidate tile of each kernel as the
launch compiles it (tconv.aot) on representative channels_last fp16 layers, for sm_90 and
sm_80, and print the table tconv/configs.py keeps as HEURISTIC_SHORTLIST (the worst
issue-bound share over the layers, and whether any spilled or was not pipelined).

    python -m tconv.perf.derive_shortlist [--workers 2]

It takes a few minutes on a CPU; rerun it after changing a kernel's main loop.
"""

from __future__ import annotations

import argparse
import os

import torch

from tconv.aot import compile_all
from tconv.configs import SHARED_LIMIT, KernelConfig, descriptor_of, shared_bytes, with_tap_run
from tconv.spec import pass_specs

from .suites import Layer, layer_spec

#: Representative layers: a padded 3x3 and a padded 3x3x3, stride 1 (a tile is ranked by its
#: worst share over them, and marked if it spills on any).
LAYERS = [Layer("3x3", 32, 128, (28, 28), 128, (3, 3), 1, 1), Layer("3x3x3", 2, 64, (16, 16, 16), 64, (3, 3, 3), 1, 1)]
#: The same layers one tap wide (the same gathers and bounds checks): wgrad programs there
#: take one tap, on the 3-wide layers a run of taps where the tiles fit. A wgrad entry has the
#: one-tap share and, when the tile takes a run, the run's share after it.
ONE_TAP_LAYERS = [Layer("3x1", 32, 128, (28, 28), 128, (3, 1), 1, 1),
                  Layer("3x3x1", 2, 64, (16, 16, 16), 64, (3, 3, 1), 1, 1)]
TILES = {
    "dense": [(256, 128, 64, 8), (128, 256, 64, 8), (128, 128, 64, 8), (128, 128, 64, 4), (128, 128, 32, 4),
              (128, 64, 64, 4), (128, 64, 64, 8), (64, 128, 64, 4), (128, 64, 32, 4), (64, 64, 64, 4), (64, 64, 32, 4),
              (128, 32, 64, 4), (64, 32, 64, 4), (32, 64, 64, 4), (64, 32, 32, 4), (32, 32, 32, 4), (128, 16, 64, 4),
              (64, 16, 32, 4), (128, 128, 16, 8), (128, 64, 16, 4), (64, 64, 16, 4), (64, 32, 16, 4), (32, 16, 16, 4),
              # thin tiles for 32 output channels (or 32 input channels in dgrad): long in M, the K
              # step of one 32-channel tap
              (256, 32, 64, 8), (128, 32, 32, 4), (256, 32, 64, 4), (256, 32, 32, 4),
              # 32-wide tiles with twice the tensor-core work per step, to amortise its fixed cost
              (64, 32, 128, 4), (128, 32, 128, 4), (32, 64, 128, 4)],
    "wgrad": [(128, 128, 64, 8), (128, 128, 32, 8), (128, 64, 64, 4), (128, 64, 32, 4), (64, 128, 64, 4), (64, 64, 64, 4),
              (64, 64, 32, 4), (128, 32, 64, 4), (64, 32, 64, 4), (64, 32, 32, 4), (32, 32, 32, 4), (64, 16, 32, 4),
              (32, 16, 32, 4),
              # 32 output channels (M), or 32 input channels per tap (N) with many output channels
              (32, 64, 64, 4), (32, 32, 64, 4), (128, 32, 32, 4),
              # 32 channels on a side, 128 positions per step, 2 warps
              (32, 32, 128, 2), (32, 64, 128, 2), (128, 64, 64, 8)],
}
#: Pipeline depths tried, deepest first. sm_90 was 4: an H100 ran 3 faster (configs.py's
#: HEURISTIC_SHORTLIST comment), where sm_90's tables also take an order and run shares
#: from GPU times that this static ranking does not give; keep those when pasting.
STAGES = {90: (3, 2), 80: (3, 2)}


def with_stages(kernel: str, tile, arch: int) -> KernelConfig:
    """The deepest pipeline of the arch's preference that fits shared memory (fp16), with
    the tap run config_space gives the tile."""
    family = f"sm_{arch}"
    configs = [with_tap_run(descriptor_of(kernel), KernelConfig(*tile[:3], num_warps=tile[3], num_stages=stages),
                            torch.float16, family) for stages in STAGES[arch]]
    return next((c for c in configs if shared_bytes(c, torch.float16) <= SHARED_LIMIT[family]), configs[-1])


def tiles_of(kernel: str, arch: int) -> list[tuple]:
    """The tiles measured for a kernel on an arch: those whose BLOCK_K the arch's space holds."""
    block_ks = descriptor_of(kernel).spaces[False][f"sm_{arch}"]["block_k"]
    return [tile for tile in TILES["wgrad" if kernel == "wgrad" else "dense"] if tile[2] in block_ks]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    jobs = []
    for arch in (90, 80):
        for kernel in ("fprop", "dgrad", "wgrad"):
            for tile in tiles_of(kernel, arch):
                for layer in LAYERS + (ONE_TAP_LAYERS if kernel == "wgrad" else []):
                    spec = pass_specs(layer_spec(layer))[kernel][1]
                    jobs.append((kernel, spec, "float16", with_stages(kernel, tile, arch), arch, "channels_last"))
    results = compile_all(jobs, args.workers, "compiling the shortlist")
    for arch in (90, 80):
        for kernel in ("fprop", "dgrad", "wgrad"):
            print(f'    ("{kernel}", "sm_{arch}"): (')
            for tile in tiles_of(kernel, arch):
                config = with_stages(kernel, tile, arch)
                ours = [job for job in jobs if job[0] == kernel and job[4] == arch and job[3] == config]
                reports = [results[job][0] for job in ours]
                if any(r is None for r in reports):
                    print(f"        # {config}: compile failed")
                    continue
                one_tap = [results[job][0] for job in ours if descriptor_of(kernel).tiles_per_step(job[1], config) == 1]
                runs = [r for r in reports if r not in one_tap]
                shares = f"{min(r.issue_bound_share or 0 for r in one_tap):.3f}"
                if runs:
                    shares += f", {min(r.issue_bound_share or 0 for r in runs):.3f}"
                spills = max(r.spill_bytes for r in reports)
                pipelined = all(r.pipelined for r in reports)
                note = "" if not spills and pipelined else f"  # spills {spills} B, pipelined {pipelined}"
                print(f"        ({tile[0]}, {tile[1]}, {tile[2]}, {tile[3]}, {config.num_stages}, {shares}),{note}")
            print("    ),")


if __name__ == "__main__":
    main()
