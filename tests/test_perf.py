"""perf/: suites, static numbers, `tconv bench` end to end on the CPU and `tconv report`."""

import csv
import math
import os

import pytest
import torch
from tconv.perf.report import read_run
from tconv.perf.roofline import GPUS, gemm_macs, min_bytes, roofline_us
from tconv.perf.suites import SUITES, Layer, layer_spec, scaled

from tconv import cli
from tconv.configs import INTERPRETER_FAMILY, heuristic_config
from tconv.descriptors import KERNELS
from tconv.descriptors.base import make_operands
from tconv.descriptors.layout import channels_last_copies
from tconv.spec import pass_specs

# Totals of 2 x GEMM multiply-adds x count per suite, from ../shared/perf_shapes.md.
PUBLISHED_GFLOP = {"resnet50": 523.2, "mobilenet_v2_dw": 2.7, "efficientnet_b0_dw": 4.4, "sd_unet": 532.6,
                   "sd_vae": 2471.6, "dcgan": 13.4, "hifigan": 162.2, "wavenet_tcn": 317.3, "unet3d": 1468.7}


@pytest.mark.parametrize("suite", PUBLISHED_GFLOP)
def test_suite_totals_match_the_published_tables(suite):
    total = sum(2 * gemm_macs(layer_spec(layer)) * layer.count for layer in SUITES[suite]) / 1e9
    assert round(total, 1) == PUBLISHED_GFLOP[suite]


def test_static_numbers_by_hand():
    stem = layer_spec(SUITES["resnet50"][0])
    assert stem.out_size == (112, 112)
    flops = 2 * 64 * 112 * 112 * 64 * 3 * 7 * 7
    assert 2 * gemm_macs(stem) == flops == 15_105_785_856
    traffic = 2 * (64 * 3 * 224 * 224 + 64 * 3 * 7 * 7 + 64 * 64 * 112 * 112)
    assert min_bytes(stem, "float16") == traffic == 122_046_848
    assert min_bytes(stem, "float32") == 2 * traffic
    # Compute-bound on an H100 (AI 124 < ridge 295 would be memory-bound: check which side wins).
    h100 = GPUS["H100 SXM"]
    assert roofline_us(flops, traffic, h100, "float16") == pytest.approx(max(flops / 989.4e6, traffic / 3.35e6))
    assert roofline_us(flops, traffic, h100, "float16") == pytest.approx(36.43, abs=0.01)
    # DCGAN G2, transposed 4/2/1: 4x4 -> 8x8; FLOPs in the scatter view.
    g2 = layer_spec(SUITES["dcgan"][1])
    assert g2.transposed and g2.out_size == (8, 8)
    assert 2 * gemm_macs(g2) == 2 * 64 * 4 * 4 * 256 * 512 * 16
    # 3D U-Net up4, transposed 2/2: 64^3 -> 128^3, every input element used by every tap.
    up4 = layer_spec(SUITES["unet3d"][20])
    assert up4.out_size == (128, 128, 128) and up4.useful_macs == gemm_macs(up4)
    # Depthwise 3x3 s2: one input channel per output channel.
    depthwise = layer_spec(SUITES["mobilenet_v2_dw"][1])
    assert depthwise.depthwise and depthwise.out_size == (56, 56)
    assert gemm_macs(depthwise) == 64 * 56 * 56 * 96 * 9
    assert min_bytes(depthwise, "bfloat16") == 2 * (64 * 96 * 112 * 112 + 96 * 9 + 64 * 96 * 56 * 56)


@pytest.mark.parametrize("suite", [s for s in SUITES if s != "tiny"])
def test_scaled_layers_keep_their_kind(suite):
    for layer in SUITES[suite]:
        small = scaled(layer)
        spec, full = layer_spec(small), layer_spec(layer)
        assert spec.kernel_size == full.kernel_size and spec.stride == full.stride and spec.dilation == full.dilation
        assert spec.transposed == full.transposed and spec.depthwise == full.depthwise
        assert small.batch == 1 and max(small.in_channels, small.out_channels) <= 24
        assert math.prod(spec.out_size) >= 1 and math.prod(spec.in_size) <= max(600, math.prod(full.in_size))
        assert set(pass_specs(spec)) == {"fprop", "dgrad", "wgrad"}


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_bench_and_report_end_to_end_on_cpu(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    code = cli.main(["bench", "--suite", "tiny", "--dtypes", "float32,bfloat16", "--quick", "--archs", "90",
                     "--layouts", "channels_last", "--workers", "2", "--host-calls", "40", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "no timing was taken" in printed and "check against torch (channels_last): 24 of 24 passed" in printed
    rows = _rows(out)
    layers = {row["layer"] for row in rows}
    assert layers == {layer.name for layer in SUITES["tiny"]}
    checks = [row for row in rows if row["source"] == "interpreter" and row["metric"] == "ok"]
    assert len(checks) == 4 * 3 * 2 and all(row["value"] == "1" for row in checks)
    spills = [row for row in rows if row["source"] == "sm_90" and row["metric"] == "spill_bytes"]
    assert len(spills) == 24 and all(row["value"] == "0" for row in spills)
    assert all(row["device"] == "cpu (no GPU)" and row["commit"] for row in rows)
    assert not [row for row in rows if row["metric"] == "ms"]  # nothing timed without a GPU
    flops = {row["layer"]: float(row["value"]) for row in rows if row["metric"] == "flops"}
    assert flops["tiny 3x3"] == 2 * 2 * 8 * 8 * 16 * 16 * 9
    host = {(row["layer"], row["metric"]): float(row["value"]) for row in rows if row["source"] == "host"}
    for layer in SUITES["tiny"]:  # each pass's kernel and what follows it (wgrad's reduction, col2im), and before
        launches = {}  # it the layout copies of its channels-first (host: NCHW) operands, at the size host_rows times
        for pass_name, (kernel, spec) in pass_specs(layer_spec(scaled(layer))).items():
            operands = make_operands(KERNELS[kernel], spec, torch.float32, "contiguous", "meta", random=False)
            chain = 1 + (KERNELS[kernel].then is not None)
            launches[pass_name] = chain + len(channels_last_copies(KERNELS[kernel], spec, operands, INTERPRETER_FAMILY))
        assert host[(layer.name, "forward_launches")] == launches["fprop"]
        assert host[(layer.name, "backward_launches")] == launches["dgrad"] + launches["wgrad"]
        assert host[(layer.name, "forward_us")] > 0 and host[(layer.name, "torch_train_us")] > 0

    assert cli.main(["report", "--csv", str(out)]) == 0
    report = (tmp_path / "report.md").read_text()
    for kind in ("roofline", "roofline_time", "work_ratio", "registers", "issue_bound_share"):
        for dtype in ("float32", "bfloat16"):  # a set of plots per dtype that ran
            name = f"{kind}_{dtype}.png"
            assert os.path.getsize(tmp_path / name) > 1000 and report.count(f"]({name})") == 1
    assert not list(tmp_path.glob("*_float16.png"))  # float16 did not run
    assert "No GPU timing was taken" in report and "not measured and left out" in report
    summary = report.split("## Summary")[1].split("## ")[0]
    header = summary.splitlines()[2]
    for column in ("checked vs torch", "worst error / tolerance (layer)", "spilling kernels", "share sm_90 geomean (min)"):
        assert column in header
    for column in ("tconv ms", "cuDNN ms", "speedup", "share sm_80"):  # empty for the whole run: left out
        assert column not in header
    assert "| fprop | float32 | 4 | 4 of 4 |" in summary and "| wgrad | bfloat16 | 4 | 4 of 4 |" in summary
    per_layer = report.split("## Per layer")[1]
    assert "### float32" in per_layer and "### bfloat16" in per_layer and "tconv ms" not in per_layer
    row = next(line for line in per_layer.splitlines() if line.startswith("| tiny 3x3 |"))
    shape, checked = row.split(" | ")[1:3]
    assert shape.startswith("conv N") and checked.startswith("conv N") and checked != shape  # reduced size beside it
    assert "## Host path of eager calls" in report and "| tiny convT 4/2/1 | float32 |" in report
    # the depthwise layer's passes (the only elementwise ones) counted in the interpreter, float32 (the first dtype)
    counted = {(row["layer"], row["pass"], row["dtype"]): float(row["value"]) for row in rows
               if row["metric"] == "loaded_over_min_bytes"}
    assert set(counted) == {("tiny dw 3x3", p, "float32") for p in ("fprop", "dgrad", "wgrad")}
    assert all(1 < ratio < 20 for ratio in counted.values())
    traffic = report.split("## Elementwise passes")[1].split("## ")[0]
    assert "| tiny dw 3x3 | fprop | float32 |" in traffic and "load bits channels_last" in traffic


#: Issue-bound shares of the hand-made CSV per (arch, layout): layers a and b (fprop; wgrad is 0.9 x).
SHARES = {("sm_90", "channels_last"): (0.5, 0.8), ("sm_90", "contiguous"): (0.25, 0.4),
          ("sm_80", "channels_last"): (1.0, 0.64), ("sm_80", "contiguous"): (0.3, 0.6)}
GEMM_SHARES = {"sm_90": 0.9, "sm_80": 0.95}


def _compile_values(arch, layout, pass_name, index, depthwise):
    """What bench writes per compile target: resources, the SASS main loop and the issue-bound share."""
    values = [(arch, "config", "64x64x32 w4 s3 g8"), (arch, "registers", 200 if arch == "sm_90" else 168),
              (arch, "spill_bytes", 0), (arch, "shared_bytes", 49152), (arch, "tensor_cores", 0 if depthwise else 1),
              (arch, "pipelined", 1), (arch, "executed_over_useful", 1.1), (arch, "loop_instructions", 120 + index),
              (arch, "async_copies", 8), (arch, "load_bits", 128 if layout == "channels_last" else 16),
              (arch, "loads_128", 8 if layout == "channels_last" else 0),
              (arch, "loads_16", 0 if layout == "channels_last" else 64)]
    if not depthwise:  # no tensor-core loop: no share
        share = SHARES[(arch, layout)][index] * (0.9 if pass_name == "wgrad" else 1.0)
        values += [(arch, "loop_tensor_core_instructions", 16), (arch, "issue_bound_share", round(share, 4)),
                   (arch, "gemm_issue_bound_share", GEMM_SHARES[arch]), (arch, "loop_over_gemm", 1.25 + index)]
    return values


def _timed_csv(path, layouts=("channels_last",), depthwise=False):
    """A small CSV as a GPU run would write it: static rows, sm_80 / sm_90 compile rows and tconv / cuDNN
    timings, for each of `layouts` under one run id (contiguous: tconv twice as slow); `depthwise` adds a
    depthwise layer c (no tensor-core loop, so no issue-bound share; speedup 1x)."""
    meta = {"run": "2026-01-01T00:00:00Z", "commit": "abc", "tconv": "0", "torch": "2", "triton": "3",
            "device": "NVIDIA H100 80GB HBM3", "suite": "handmade"}
    layers = [(Layer("a", 8, 64, (28, 28), 64, (3, 3), 1, 1), 0.5, 1.0),
              (Layer("b", 8, 64, (28, 28), 64, (3, 3), 1, 1), 2.0, 1.0)]
    if depthwise:
        layers.append((Layer("c", 8, 64, (28, 28), 64, (3, 3), 1, 1, 1, 64), 1.0, 1.0))
    rows = []
    for layout in layouts:
        for index, (layer, tconv_ms, cudnn_ms) in enumerate(layers):
            tconv_ms *= 2 if layout == "contiguous" else 1
            spec = layer_spec(layer)
            for pass_name in ("fprop", "wgrad"):
                common = {**meta, "layer": layer.name, "count": 1, "shape": layer.describe(), "pass": pass_name,
                          "kernel": pass_name, "dtype": "float16", "layout": layout}
                values = [("static", "flops", 2 * gemm_macs(spec)), ("static", "min_bytes", min_bytes(spec, "float16")),
                          ("static", "arithmetic_intensity", 100 + index), ("H100 SXM", "roofline_us", 3.0),
                          ("A100 SXM 80GB", "roofline_us", 9.0)]
                copied = layout == "contiguous" and not spec.depthwise  # the layout copies' bytes and time
                values += [("H100 SXM", "layout_bytes", min_bytes(spec, "float16") // 2 if copied else 0),
                           ("H100 SXM", "roofline_with_layout_us", 4.5 if copied else 3.0)]
                for arch in ("sm_80", "sm_90"):
                    values += _compile_values(arch, layout, pass_name, index, spec.depthwise)
                values += [("tconv", "ms", tconv_ms), ("cudnn", "ms", cudnn_ms), ("tconv", "tflops", 10.0 / tconv_ms),
                           ("cudnn", "tflops", 5.0), ("tconv", "speedup_vs_cudnn", cudnn_ms / tconv_ms)]
                rows += [{**common, "source": s, "metric": m, "value": v} for s, m, v in values]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_report_with_gpu_timings(tmp_path):
    path = tmp_path / "timed.csv"
    _timed_csv(path)
    run = read_run(str(path))
    assert run.timed and run.layers == ["a", "b"] and run.passes == ["fprop", "wgrad"]
    assert cli.main(["report", "--csv", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    for name in ("speedup_float16.png", "tflops_fprop_float16.png", "tflops_wgrad_float16.png", "roofline_float16.png"):
        assert os.path.getsize(tmp_path / "out" / name) > 1000 and f"]({name})" in report
    assert "not measured" not in report.split("## Plots")[0]
    header = report.split("## Summary")[1].splitlines()[2]
    assert "tconv ms" in header and "geomean speedup" in header
    assert "| 1.00x |" in report  # geomean of 2x and 0.5x


def test_report_with_two_layouts_and_the_static_model(tmp_path):
    path = tmp_path / "two.csv"
    _timed_csv(path, layouts=("channels_last", "contiguous"), depthwise=True)
    run = read_run(str(path))
    assert run.layouts == ["channels_last", "contiguous"] and run.layers == ["a", "b", "c"]
    assert len(run.keys) == 3 * 2 * 2  # layer x pass x layout: neither layout overwrites the other
    assert run.value(run.key("a", "fprop", "float16", "contiguous"), "sm_90", "issue_bound_share") == 0.25
    assert run.value(run.key("a", "fprop", "float16"), "sm_90", "issue_bound_share") == 0.5  # the first layout
    assert run.value(run.key("c", "fprop", "float16"), "sm_90", "issue_bound_share") is None  # depthwise

    out = tmp_path / "out"
    assert cli.main(["report", "--csv", str(path), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in ("issue_bound_share_float16.png", "registers_float16.png", "speedup_float16.png",
                 "tflops_fprop_float16.png"):
        assert os.path.getsize(out / name) > 1000 and f"]({name})" in report
    assert report.count("](issue_bound_share_float16.png)") == 1
    assert os.path.getsize(out / "layout_comparison_float16.png") > 1000 and "](layout_comparison_float16.png)" in report

    summary, rest = report.split("## Static model: issue-bound share of tensor peak")
    # Summary per pass x dtype x layout: contiguous tconv is twice as slow (speedups 1x, 0.25x, 0.5x).
    assert "| fprop | float16 | channels_last | 3 |" in summary and "| fprop | float16 | contiguous | 3 |" in summary
    assert "| 1.00x |" in summary and "| 0.50x |" in summary
    assert "H100 layout copies: bytes / min bytes" in summary and "| 0.34 | 0.012 |" in summary  # a, b: half; 4.5 + 4.5 + 3 us
    static = rest.split("## Plots")[0]
    assert "not a timing" in static and "](issue_bound_share_float16.png)" in static
    # geomean(0.5, 0.8) = 0.632, minimum 0.5 at layer a, GEMM reference 0.9; c (depthwise) has no share.
    assert "| sm_90 | channels_last | fprop | 2 of 3 | 0.632 | 0.500 (a) | 0.900 |" in static
    assert "| sm_90 | contiguous | fprop | 2 of 3 | 0.316 | 0.250 (a) | 0.900 |" in static  # sqrt(0.25 x 0.4)
    assert "| sm_80 | channels_last | wgrad | 2 of 3 | 0.720 | 0.576 (b) | 0.950 |" in static  # 0.9 x sqrt(1 x 0.64)
    assert static.count("| sm_") == 2 * 2 * 2  # arch x layout x pass
    per_layer = report.split("## Per layer")[1]
    assert "| layout |" in per_layer and "| share sm_80/sm_90 |" in per_layer and "loop / GEMM" in per_layer
    row = next(line for line in per_layer.splitlines() if line.startswith("| a |") and "| contiguous |" in line
               and "| fprop |" in line)
    assert "| 0.30 / 0.25 |" in row and "| 1.25 / 1.25 |" in row
    header, rule = [line for line in per_layer.splitlines() if line.startswith("|")][:2]
    assert header.count("|") == rule.count("|") == row.count("|")


def test_report_of_one_layout_has_no_layout_column(tmp_path):
    path = tmp_path / "one.csv"
    _timed_csv(path)
    assert cli.main(["report", "--csv", str(path), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    summary, per_layer = report.split("## Summary")[1].split("## Static model")[0], report.split("## Per layer")[1]
    assert "| layout |" not in summary + per_layer and "layout channels_last;" in report
    assert "| sm_90 | channels_last | fprop | 2 | 0.632 | 0.500 (a) | 0.900 |" in report
    assert os.path.getsize(tmp_path / "issue_bound_share_float16.png") > 1000


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_traffic_counts_a_depthwise_forward_by_hand(layout):
    """perf.traffic counts what the kernels load: a 3x3 depthwise forward (zeros padding 1)
    reads each channel's input once per valid tap, (3n - 2) per dimension of size n, and
    the weight (9 taps) and bias once per row tile and channel; channels-last activations
    (the weight staged, descriptors/layout.py weight_stage) read the weight twice and store
    it once more, per row tile."""
    from tconv.perf.traffic import counted_layer, pass_traffic

    layer = Layer("dw", 4, 80, (40, 9), 80, (3, 3), 1, 1, 1, 80)
    counted = counted_layer(layer)
    assert (counted.batch, counted.in_channels, counted.groups, counted.in_size) == (1, 32, 32, (32, 9))
    kernel, spec = pass_specs(layer_spec(counted))["fprop"]
    config = heuristic_config(kernel, spec, torch.float16, INTERPRETER_FAMILY, layout)
    row_tiles, channels, staged = math.ceil(32 * 9 / config.block_m), 32, layout == "channels_last"
    expected = 2 * (channels * (3 * 32 - 2) * (3 * 9 - 2) + row_tiles * channels * (9 * (1 + staged) + 1))
    traffic = pass_traffic(counted, torch.float16, layout)
    assert traffic["fprop"].loaded == expected
    assert traffic["fprop"].stored == 2 * (channels * 32 * 9 + staged * row_tiles * channels * 9)
    assert set(traffic) == {"fprop", "dgrad", "wgrad"} and traffic["wgrad"].loaded > traffic["fprop"].loaded


@pytest.mark.parametrize("pass_name", ["fprop", "dgrad", "wgrad"])
def test_probe_times_the_heuristic_and_a_gemm_of_the_pass_work(pass_name):
    """perf.probe's plain-GEMM baseline does the pass's multiply-adds, and its configs are
    the heuristic's pick first, then candidates of the pruned space."""
    from tconv.perf import probe

    from tconv.configs import prune

    for layer in SUITES["resnet50"]:
        spec = layer_spec(layer)
        m, n, k = probe.gemm_extents(spec, pass_name)
        assert abs(m * n * k / gemm_macs(spec) - 1) < 0.01, (layer.name, m, n, k)
        kernel, kernel_spec = pass_specs(spec)[pass_name]
        configs = probe.candidates(kernel, kernel_spec, torch.float16, "sm_90")
        assert configs[0] == heuristic_config(kernel, kernel_spec, torch.float16, "sm_90")
        assert set(configs[1:]) <= set(prune(kernel, kernel_spec, torch.float16, "sm_90"))
        if "3x3" in layer.name and pass_name != "wgrad":  # the probe's other tiles fit these layers' spaces
            assert len(configs) > 1, (layer.name, configs)
        assert probe.gemm_spec(m, n, k).useful_macs == m * n * k


def test_timing_table_derives_the_gathered_share_from_timed_gathers(tmp_path, capsys):
    """perf.timing_table's gathered share (where GATHERED_SHARE's measured entries come from):
    the layer's GEMM flops over graph time x the device's peak, for channels-first passes
    that made no layout copy; copied, thin and channels_last passes are left out."""
    from tconv.perf import timing_table

    flops, graph_ms, peak = 1.0e11, 0.5, GPUS["H100 SXM"].tensor_tflops["float16"] * 1e12
    rows = []
    for layer, layout, layout_bytes in (("l2.c1(b1) 1x1 256->128", "contiguous", 0), ("l1.c2 3x3", "contiguous", 10),
                                        ("stem 7x7 s2", "contiguous", 0), ("l3.c2 3x3", "channels_last", 0)):
        common = {"device": "NVIDIA H100 80GB HBM3", "suite": "resnet50", "layer": layer, "pass": "dgrad",
                  "dtype": "float16", "layout": layout}
        for source, metric, value in (("static", "flops", flops), ("H100 SXM", "layout_bytes", layout_bytes),
                                      ("tconv", "graph_ms", graph_ms), ("cudnn", "graph_ms", 0.25),
                                      ("tconv", "ms", 1.0), ("cudnn", "ms", 0.5), ("tconv", "tflops", 2.0),
                                      ("tconv", "speedup_vs_cudnn", 0.5), ("tconv", "graph_speedup_vs_cudnn", 0.5)):
            rows.append({**common, "source": source, "metric": metric, "value": value})
    path = tmp_path / "timing.csv"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    timing_table.main(str(path))
    printed = capsys.readouterr().out.split("gathered main loops' share of tensor peak")[1].splitlines()[1].split()
    share = flops / (graph_ms * 1e-3 * peak)
    assert printed[:2] == ["float16", "dgrad"] and math.isclose(float(printed[2]), share, abs_tol=5e-4)
    assert printed[-1] == "1"  # one layer: the copied, thin and channels_last passes are not gathers
