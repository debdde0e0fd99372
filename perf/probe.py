"""Where the time goes on a GPU, per layer and pass: tconv at its heuristic config and at a
few larger tiles, a plain Triton GEMM of the same M x N x K (kernels/gemm.py) at the same
configs, cuBLAS (torch.matmul) on that GEMM, and cuDNN on the convolution.

    python -m perf.probe --suite resnet50 --layers "l3.c2 3x3;l4.c2 3x3" --dtype float16 \
        --layout channels_last --workers 14 --out results/probe.csv

tconv / GEMM at the same config says what the implicit gather costs (the static model's
loop/GEMM, measured); GEMM / cuBLAS what Triton's tile at that config costs; best / heuristic
what the heuristic leaves. Kernels are compiled first in `--workers` processes (Triton's disk
cache), so the timing loop never waits on the JIT. Times: every side replayed from a CUDA
graph (tconv.tune.graph_ms: median, the host path left out, the L2 not cleared).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import multiprocessing
import os

import torch

from tconv import _launch
from tconv.configs import KernelConfig, arch_family, descriptor_of, heuristic_config, prune
from tconv.descriptors.base import make_operands
from tconv.descriptors.gemm import GEMM
from tconv.spec import ConvSpec, pass_specs
from tconv.tune import graph_ms

from .bench import _cudnn_pass
from .roofline import gemm_macs
from .suites import SUITES, Layer, layer_spec

#: Tiles tried besides the heuristic's: (block_m, block_n, block_k, num_warps), each at 3 and 4 stages.
TILES = ((128, 128, 64, 8), (128, 256, 64, 8), (256, 128, 64, 8), (128, 128, 64, 4), (128, 64, 64, 4))
STAGES = (3, 4)


def gemm_extents(spec: ConvSpec, pass_name: str) -> tuple[int, int, int]:
    """M x N x K of a dense (one group) layer's pass as one GEMM with the pass's useful
    multiply-adds (a strided input gradient's K is its taps per phase, on average)."""
    macs = gemm_macs(spec)
    inputs, outputs = spec.batch * math.prod(spec.in_size), spec.batch * math.prod(spec.out_size)
    m, n = {"fprop": (outputs, spec.out_channels), "dgrad": (inputs, spec.in_channels),
            "wgrad": (spec.out_channels, spec.in_channels * math.prod(spec.kernel_size))}[pass_name]
    return m, n, max(1, round(macs / (m * n)))


def gemm_spec(m: int, n: int, k: int) -> ConvSpec:
    """A 1x1 conv1d of batch 1 whose GEMM view is M x N x K: kernels/gemm.py's problem."""
    return layer_spec(Layer("gemm", 1, k, (m,), n, (1,)))


def candidates(kernel: str, spec: ConvSpec, dtype: torch.dtype, family: str) -> list[KernelConfig]:
    """The heuristic's config first, then TILES x STAGES where the pruned space holds them
    (wgrad's split as the heuristic's, its tap run as the heuristic's or 1)."""
    heuristic = heuristic_config(kernel, spec, dtype, family, "channels_last")
    # (the space's own config of each tile: its chunked K step, k_step, depends on the tile)
    space = {dataclasses.replace(c, k_step=0): c for c in prune(kernel, spec, dtype, family)}
    chosen = [heuristic]
    for block_m, block_n, block_k, warps in TILES:
        for stages in STAGES:
            for tap_run in dict.fromkeys((heuristic.tap_run, 1)):
                config = space.get(dataclasses.replace(heuristic, block_m=block_m, block_n=block_n, block_k=block_k,
                                                       num_warps=warps, num_stages=stages, tap_run=tap_run, k_step=0))
                if config is not None and config not in chosen:
                    chosen.append(config)
    return chosen


def problems(layers: list[Layer], dtype: torch.dtype, family: str):
    """(layer, pass, kernel, kernel spec, configs, GEMM extents) for every dense layer and pass."""
    for layer in layers:
        spec = layer_spec(layer)
        if spec.groups != 1 or spec.transposed:
            continue
        for pass_name, (kernel, kernel_spec) in pass_specs(spec).items():
            yield layer, pass_name, kernel, kernel_spec, candidates(kernel, kernel_spec, dtype, family), \
                gemm_extents(spec, pass_name)


def _launch_once(job) -> str:
    """Compile (and run once) one kernel: a worker's job."""
    kernel, spec, config, dtype, layout = job
    try:
        descriptor = GEMM if kernel == "gemm" else descriptor_of(kernel)
        operands = make_operands(descriptor, spec, dtype, layout, "cuda")
        _launch.run(descriptor, spec, config, operands)
        torch.cuda.synchronize()
        return ""
    except Exception as error:  # reported, then the timing loop skips it
        return f"{kernel} {config}: {type(error).__name__}: {str(error)[:120]}"


def _time(descriptor, spec: ConvSpec, config: KernelConfig, dtype: torch.dtype, layout: str) -> float:
    """Kernel time: the pass replayed from a CUDA graph (the host path left out)."""
    operands = make_operands(descriptor, spec, dtype, layout, "cuda")
    try:
        return graph_ms(lambda inputs: _launch.run_pass(descriptor, spec, inputs, config), operands)
    except Exception:  # out of resources on this GPU
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="resnet50")
    parser.add_argument("--layers", default="", help="layer names separated by ; (default: every dense layer)")
    parser.add_argument("--passes", default="fprop,dgrad,wgrad")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--layout", default="channels_last")
    parser.add_argument("--workers", type=int, default=min(14, os.cpu_count() or 1))
    parser.add_argument("--out", default="results/probe.csv")
    args = parser.parse_args()
    dtype, device = getattr(torch, args.dtype), torch.device("cuda")
    names = set(filter(None, args.layers.split(";")))
    layers = [layer for layer in SUITES[args.suite] if not names or layer.name in names]
    family = arch_family(device)
    chosen = [p for p in problems(layers, dtype, family) if p[1] in args.passes.split(",")]
    jobs = [(kernel, spec, config, dtype, args.layout) for _, _, kernel, spec, configs, _ in chosen for config in configs]
    jobs += [("gemm", gemm_spec(*extents), GEMM.same_tile(c), dtype, "channels_last")
             for _, _, _, _, configs, extents in chosen for c in configs]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        errors = [e for e in pool.map(_launch_once, jobs, chunksize=1) if e]
    print(f"{len(jobs)} kernels compiled in {args.workers} processes; {len(errors)} failed", *errors[:5], sep="\n  ")

    torch.backends.cudnn.benchmark = True
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["layer", "pass", "M", "N", "K", "config", "tconv_ms", "gemm_ms", "heuristic", "cublas_ms",
                         "cudnn_ms"])
        for layer, pass_name, kernel, spec, configs, (m, n, k) in chosen:
            g = gemm_spec(m, n, k)
            a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
            cublas = graph_ms(lambda pair: torch.matmul(*pair), (a, b))
            reference, reference_operands = _cudnn_pass(layer, pass_name, dtype, args.layout, device)
            cudnn = graph_ms(lambda tensors, r=reference: r(*tensors), reference_operands[0])
            rows = []
            for index, config in enumerate(configs):
                ours = _time(descriptor_of(kernel), spec, config, dtype, args.layout)
                gemm = _time(GEMM, g, GEMM.same_tile(config), dtype, "channels_last")
                rows.append([layer.name, pass_name, m, n, k, str(config), round(ours, 5), round(gemm, 5), int(index == 0),
                             round(cublas, 5), round(cudnn, 5)])
            writer.writerows(rows)
            file.flush()
            heuristic, best = rows[0], min(rows, key=lambda r: r[6] if r[6] == r[6] else math.inf)
            flops = 2 * m * n * k / 1e9
            print(f"{layer.name[:22]:22} {pass_name:5} heur {heuristic[5][:24]:24} {heuristic[6]:.4f} "
                  f"(gemm {heuristic[7]:.4f}) best {best[5][:24]:24} {best[6]:.4f} (gemm {best[7]:.4f}) "
                  f"cublas {cublas:.4f} cudnn {cudnn:.4f}  best TFLOP/s {flops / best[6]:.0f}", flush=True)


if __name__ == "__main__":
    main()
