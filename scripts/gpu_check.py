"""Correctness of tconv's kernels compiled for a real GPU (the suite runs them in the interpreter).

    python scripts/gpu_check.py [tests folder] [every Nth space config]

Forward, input and weight gradients against float64 torch for fp16 / bf16 / fp32 (TF32) on
channels_last and contiguous operands, wgrad determinism, and a sample of every config space.
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "tests")
import tconv  # noqa: E402
from tconv import _launch  # noqa: E402
from tconv.descriptors import KERNELS  # noqa: E402
from tconv.descriptors.base import make_operands  # noqa: E402
from tconv.testing import TOLERANCE  # noqa: E402

dev = torch.device(os.environ.get("TCONV_CHECK_DEVICE", "cuda"))
failures = 0


def check(name, actual, expected, dtype):
    global failures
    scale = max(expected.abs().max().item(), 1.0)
    err = (actual.detach().double().cpu() - expected.detach().double().cpu()).abs().max().item() / scale
    tol = 2 * max(TOLERANCE[dtype], TOLERANCE[torch.float16] if dtype == torch.float32 else 0)
    if not err <= tol:
        failures += 1
        print("FAIL", name, dtype, err, tol, flush=True)


start = time.time()
cases = [
    ("2d 3x3", (4, 64, 14, 15), (96, 64, 3, 3), dict(stride=1, padding=1)),
    ("2d 3x3 s2 d2 g2", (4, 64, 14, 15), (96, 32, 3, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    ("2d 1x1", (4, 128, 9, 10), (64, 128, 1, 1), dict()),
    ("2d 7x7 s2 rgb", (2, 3, 32, 32), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ("2d odd ch", (3, 20, 11, 9), (36, 20, 3, 5), dict(stride=(2, 1), padding=(1, 2))),
    ("dw", (2, 32, 12, 12), (32, 1, 3, 3), dict(padding=1, groups=32)),
    ("3d", (2, 32, 6, 7, 8), (48, 32, 3, 3, 3), dict(padding=1)),
    ("1d k11", (4, 64, 50), (64, 64, 11), dict(padding=5)),
]
conv = {3: (tconv.conv1d, F.conv1d), 4: (tconv.conv2d, F.conv2d), 5: (tconv.conv3d, F.conv3d)}
convt = {3: (tconv.conv_transpose1d, F.conv_transpose1d), 4: (tconv.conv_transpose2d, F.conv_transpose2d),
         5: (tconv.conv_transpose3d, F.conv_transpose3d)}
SMOKE = os.environ.get("TCONV_CHECK_SMOKE") == "1"  # one case per part, to try the script itself on a CPU
for dtype in (torch.float32,) if SMOKE else (torch.float16, torch.bfloat16, torch.float32):
    for name, xs, ws, kw in cases[-1:] if SMOKE else cases:
        for cl in (False, True):
            x64 = torch.randn(xs, dtype=torch.float64)
            w64 = torch.randn(ws, dtype=torch.float64) / ws[1] ** 0.5
            x = x64.to(dev, dtype)
            if cl and x.dim() in (4, 5):
                x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
            elif cl:
                x = x.transpose(1, 2).contiguous().transpose(1, 2)
            x.requires_grad_()
            w = w64.to(dev, dtype).requires_grad_()
            ours, ref = conv[x.dim()]
            out = ours(x, w, **kw)
            x64r, w64r = x64.clone().requires_grad_(), w64.clone().requires_grad_()
            expected = ref(x64r, w64r, **kw)
            check(f"{name} cl={cl} fwd", out, expected, dtype)
            g64 = torch.randn_like(expected)
            gx, gw = torch.autograd.grad(out, (x, w), g64.to(dev, dtype))
            ex, ew = torch.autograd.grad(expected, (x64r, w64r), g64)
            check(f"{name} cl={cl} dgrad", gx, ex, dtype)
            check(f"{name} cl={cl} wgrad", gw, ew, dtype)
            gw2 = torch.autograd.grad(ours(x, w, **kw), w, g64.to(dev, dtype))[0]
            if not torch.equal(gw, gw2):
                failures += 1
                print("FAIL nondeterministic wgrad", name, dtype, flush=True)
    # transposed
    for name, xs, ws, kw in [("t 4x4 s2", (4, 64, 8, 9), (64, 32, 4, 4), dict(stride=2, padding=1)),
                             ("t 3x3 s2 op1", (3, 40, 7, 6), (40, 24, 3, 3), dict(stride=2, padding=1, output_padding=1)),
                             ("t 1d k16 s8", (2, 64, 12), (64, 32, 16), dict(stride=8, padding=4))]:
        x64 = torch.randn(xs, dtype=torch.float64)
        w64 = torch.randn(ws, dtype=torch.float64) / ws[0] ** 0.5
        ours, ref = convt[len(xs)]
        check(f"{name} fwd", ours(x64.to(dev, dtype), w64.to(dev, dtype), **kw), ref(x64, w64, **kw), dtype)
print(f"functional checks done in {time.time() - start:.0f}s, failures so far {failures}", flush=True)

# Every config of the spaces on the tile problems (a sample: every `step`-th one).
from test_tuning import SPACE_CASES, _tile_problem  # noqa: E402

step = int(sys.argv[2]) if len(sys.argv) > 2 else 3
done = 0
for index, (kernel, depthwise, config, even) in enumerate(SPACE_CASES):
    if index % step:
        continue
    spec = _tile_problem(kernel, depthwise, even)
    descriptor = KERNELS[kernel]
    operands = make_operands(descriptor, spec, torch.float32, "channels_last" if even else "contiguous", dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    actual = _launch.run(descriptor, spec, config, operands)[descriptor.result]
    first, second = (t.double().cpu() for t in operands.values() if t is not None)
    stride, pad, dilation, groups = list(spec.stride), list(spec.pad_before), list(spec.dilation), spec.groups
    if kernel == "fprop":
        expected = F.conv2d(first, second, None, stride, pad, dilation, groups)
    elif kernel == "dgrad":
        expected = F.conv_transpose2d(first, second, None, stride, pad, list(spec.output_padding), groups, dilation)
    else:
        weight = torch.zeros(spec.out_channels, spec.in_channels_per_group, *spec.kernel_size, dtype=torch.float64,
                             requires_grad=True)
        (expected,) = torch.autograd.grad(F.conv2d(first, weight, None, stride, pad, dilation, groups), weight, second)
    check(f"space {kernel} dw={depthwise} even={even} {config}", actual, expected, torch.float32)
    done += 1
print(f"space configs checked: {done}; failures {failures}; {time.time() - start:.0f}s", flush=True)
sys.exit(1 if failures else 0)
