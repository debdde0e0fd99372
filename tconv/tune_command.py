"""`tconv tune`: tune a perf suite's or a model's conv layers on the GPU, or, without one,
`--dry-run`: list each problem's pruned candidates, compile them as the launch would for
`--arch` and rank them by the static model (issue-bound share of tensor peak)."""

from __future__ import annotations

import argparse
import os

import torch

from . import _launch, cache
from .aot import FAMILY_OF_ARCH, compile_all
from .arguments import LAYOUTS, UsageError, dtype_list, int_list, pass_list, positive_int
from .configs import arch_family, descriptor_of, heuristic_config, prune
from .descriptors.base import make_operands
from .spec import ConvSpec, pass_specs
from .tune import build_on_meta, capture_layers, load_factory, operand_sets, tune_problem


def unique_problems(layers, passes) -> dict:
    """{(kernel, spec): [layer names]} over every pass of every layer."""
    problems: dict[tuple[str, ConvSpec], list[str]] = {}
    for name, spec in layers:
        for pass_name, (kernel, kernel_spec) in pass_specs(spec).items():
            if pass_name in passes:
                problems.setdefault((kernel, kernel_spec), []).append(f"{name} {pass_name}")
    return problems


def _layers_for(args: argparse.Namespace) -> list[tuple[str, ConvSpec]]:
    if args.model:
        try:
            factory = load_factory(args.model)
        except (ImportError, AttributeError, ValueError) as error:
            raise UsageError(f"--model {args.model!r}: {type(error).__name__}: {error}") from None
        try:
            model = build_on_meta(factory)
            return [(layer.name, layer.spec) for layer in capture_layers(model, args.input_shape)]
        except Exception as error:  # the user's model or its input shape, not tconv
            raise UsageError(f"--model {args.model!r} with --input-shape {','.join(map(str, args.input_shape))} "
                             f"failed on the meta device: {type(error).__name__}: {error}") from None
    from .perf.suites import SUITES, layer_spec

    return [(layer.name, layer_spec(layer)) for layer in SUITES[args.suite]]


def tune_main(args: argparse.Namespace) -> int:
    layers = _layers_for(args)
    dtypes, passes = args.dtypes, args.ops
    problems = unique_problems(layers, passes)
    print(f"tconv tune: {len(layers)} conv calls, {len(problems)} unique problems x {len(dtypes)} "
          f"dtype{'s' if len(dtypes) > 1 else ''} "
          f"({', '.join(passes)}); layout {args.layout}")
    if args.dry_run:
        return _dry_run(problems, dtypes, args)
    if not torch.cuda.is_available():
        raise UsageError("no CUDA device here, so nothing can be timed; --dry-run lists each layer's pruned "
                         "candidates and compiles them for a target GPU (--arch) without one")
    device = torch.device("cuda")
    done = cache.entries(device)
    rows = []
    bar = _bar(len(problems) * len(dtypes), "tuning")
    for (kernel_name, spec), names in problems.items():
        kernel = descriptor_of(kernel_name)
        for dtype in dtypes:
            key = cache.entry_key(kernel.name, spec, dtype, args.layout)
            if key in done and not args.force:
                entry = done[key]
                rows.append((names[0], kernel.name, str(dtype), cache.config_from_entry(entry), entry.get("ms"),
                             entry.get("heuristic_ms"), "cached"))
            else:
                operands = [make_operands(kernel, spec, dtype, args.layout, device)
                            for _ in range(operand_sets(kernel, spec, dtype))]
                run = lambda config, inputs, k=kernel, s=spec: _launch.run_pass(k, s, inputs, config)[k.result]
                heuristic = heuristic_config(kernel, spec, dtype, arch_family(device), args.layout)
                result = tune_problem(run, operands, prune(kernel, spec, dtype, arch_family(device)), heuristic, dtype)
                if result is None:
                    rows.append((names[0], kernel.name, str(dtype), heuristic, float("nan"), float("nan"), "all failed"))
                else:
                    cache.store(device, {key: result.entry()})  # incremental: an interrupted sweep resumes here
                    rows.append((names[0], kernel.name, str(dtype), result.config, result.ms, result.heuristic_ms,
                                 f"{len(result.rejected)} rejected" if result.rejected else ""))
            bar.update()
    bar.close()
    print(f"\n{'layer / pass':40} {'kernel':6} {'dtype':15} {'config':30} {'ms':>8} {'heur. ms':>8} {'speedup':>7}")
    for name, kernel, dtype, config, ms, heuristic_ms, note in rows:
        speedup = heuristic_ms / ms if ms and heuristic_ms and heuristic_ms == heuristic_ms else float("nan")
        print(f"{name[:40]:40} {kernel:6} {dtype:15} {str(config):30} {ms:8.4f} {heuristic_ms:8.4f} {speedup:7.2f} {note}")
    print(f"\ncache: {cache.cache_path(device)}")
    return 0


def _bar(total: int, description: str):
    from .aot import progress

    return progress(total, description)


def _label(kernel: str, spec: ConvSpec, config) -> str:
    """A config as the dry run lists it; a weight-gradient config without a split count
    lets the launch choose one (two to three waves of an H100's programs): say how many it chooses."""
    if kernel != "wgrad" or config.split_k:
        return str(config)
    return f"{config} split auto ({descriptor_of(kernel).split(spec, config)[0]})"


def _dry_run(problems: dict, dtypes: list[torch.dtype], args: argparse.Namespace) -> int:
    arch = args.arch
    family = FAMILY_OF_ARCH[arch]
    listing, jobs = [], []
    for (kernel, spec), names in problems.items():
        for dtype in dtypes:
            candidates = prune(kernel, spec, dtype, family)
            heuristic = heuristic_config(kernel, spec, dtype, family, args.layout)
            listing.append((names, kernel, spec, dtype, candidates, heuristic))
            if args.compile:
                name = str(dtype).removeprefix("torch.")
                jobs += [(kernel, spec, name, config, arch, args.layout) for config in candidates]
    results = compile_all(jobs, args.workers, f"compiling for sm_{arch}")
    kept_total = dropped_total = 0
    for names, kernel, spec, dtype, candidates, heuristic in listing:
        label = lambda config, kernel=kernel, spec=spec: _label(kernel, spec, config)
        print(f"\n{kernel} kernel, {str(dtype).removeprefix('torch.')}: {spec.describe()}\n"
              f"  for: {', '.join(names)}\n"
              f"  {len(candidates)} candidates for {family}, heuristic {label(heuristic)}")
        if not args.compile:
            for config in candidates:
                print(f"    {label(config)}")
            continue
        dtype_name = str(dtype).removeprefix("torch.")
        reports = [(config, *results[(kernel, spec, dtype_name, config, arch, args.layout)]) for config in candidates]
        # Best static-model share first (an upper bound from the SASS, not a timing).
        reports.sort(key=lambda r: -(r[1].issue_bound_share or 0) if r[1] is not None else 1)
        for config, report, error in reports:
            if report is not None and report.fits:
                kept_total += 1
                share = "n/a" if report.issue_bound_share is None else f"{report.issue_bound_share:.2f}"
                mark = " (heuristic)" if config == heuristic else ""
                print(f"    {label(config):40} keep: issue-bound share {share}, {report.loop.instructions if report.loop else 0}"
                      f" loop instructions, {report.registers} registers, 0 spills, {report.shared_bytes} B shared"
                      f"{', pipelined' if report.pipelined else ''}{mark}")
            else:
                dropped_total += 1
                why = error or f"{report.spill_bytes} B spilled, {report.shared_bytes} B shared"
                print(f"    {label(config):40} drop: {why}")
    if args.compile:
        print(f"\n{kept_total} candidates kept, {dropped_total} dropped (spills or failed compiles) for sm_{arch}.")
        print("Issue-bound share: the static upper bound on the fraction of tensor peak the main loop can reach "
              "(tconv.sass), not a timing.")
    print("No GPU timing was taken (dry run).")
    return 0


def add_parser(commands) -> None:
    from .perf.suites import SUITES

    tune = commands.add_parser("tune", help="tune tile configs for a perf suite or a model's conv layers")
    source = tune.add_mutually_exclusive_group()
    source.add_argument("--suite", default="resnet50", choices=list(SUITES), metavar="SUITE",
                        help=f"a perf suite: one of {', '.join(SUITES)}")
    source.add_argument("--model", help="package.module:factory building the model to tune")
    tune.add_argument("--input-shape", type=int_list, default="1,3,224,224", help="model input shape, comma-separated")
    tune.add_argument("--dtypes", type=dtype_list, default="float16",
                      help="comma-separated dtypes (torch names or fp16, bf16, fp32, fp64)")
    tune.add_argument("--ops", type=pass_list, default="fprop,dgrad,wgrad", help="passes to tune, comma-separated")
    tune.add_argument("--layout", default="channels_last", choices=list(LAYOUTS), help="memory layout of the operands")
    tune.add_argument("--force", action="store_true", help="retune problems already in the cache")
    tune.add_argument("--dry-run", action="store_true", help="list (and compile) candidates; no GPU needed")
    tune.add_argument("--arch", type=int, default=90, choices=[80, 90], help="dry-run compile target")
    tune.add_argument("--no-compile", dest="compile", action="store_false",
                      help="dry run: list candidates only, without compiling them")
    tune.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel compiles in a dry run")
    tune.set_defaults(run=tune_main)
