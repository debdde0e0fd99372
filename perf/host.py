"""Host time of tconv's eager calls against torch's own dispatch of the same calls.

What a convolution costs on the host before its kernel runs (checks, memo lookups,
allocation, autograd), measured on any machine:

- tconv: the call on CPU tensors with every kernel launch replaced by a no-op
  (`stubbed_launches`), so only tconv's Python path counts, as it would on CUDA
  (Triton's own launcher then adds its few microseconds);
- torch: the same torch.nn.functional call on meta tensors: argument checks, shape
  inference, dispatch and autograd, no compute.

Both run in the same process, interleaved in rounds, and each is the median over many
calls; the ratio is tconv / torch. "forward" is one call, "train" one call and the
backward of its output (input, weight and bias gradients). The stub also counts kernel
launches per forward and per backward. On a CUDA device, `cuda_call_us` times whole
calls (launches included) of tconv and of torch (cuDNN) in a loop between two
torch.cuda.synchronize().

    python -m tconv.perf.host [--suite tiny] [--calls 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from tconv import _launch

from .suites import SUITES, Layer


class _NoOpKernel:
    """Stands for a kernel on any device: indexing with a grid gives a launch that only counts."""

    def __init__(self):
        self.launches = 0

    def __getitem__(self, grid):
        return self._launch

    def _launch(self, *args, **kwargs):
        self.launches += 1


@contextlib.contextmanager
def stubbed_launches():
    """Every tconv launch inside is a no-op counted on the yielded object ('compiled'
    numerics, as on CUDA)."""
    kernel = _NoOpKernel()
    original = _launch.launchable
    _launch.launchable = lambda function, device: (kernel, False)
    try:
        yield kernel
    finally:
        _launch.launchable = original


def _operands(layer: Layer, device: str, requires_grad: bool, dtype: torch.dtype = torch.float32) -> tuple:
    shapes = ((layer.batch, layer.in_channels, *layer.in_size), layer.weight_shape, (layer.out_channels,))
    return tuple(torch.randn(shape, device=device, dtype=dtype).requires_grad_(requires_grad) for shape in shapes)


def _modules(layer: Layer, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(tconv's module on the CPU, torch's on the meta device) for the layer."""
    import tconv

    name = f"{'ConvTranspose' if layer.transposed else 'Conv'}{layer.dims}d"
    arguments = (layer.in_channels, layer.out_channels, layer.kernel_size)
    options = {**layer.kwargs, "dtype": dtype}
    return getattr(tconv.nn, name)(*arguments, **options), getattr(torch.nn, name)(*arguments, **options, device="meta")


def _median_us(calls: dict[str, object], count: int, rounds: int = 10) -> dict[str, float]:
    """Median microseconds per call of each callable, measured in interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e6 for name, values in times.items()}


def host_times(layer: Layer, calls: int = 3000, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """{metric: value} for one layer: forward and train host microseconds of tconv and
    torch, their ratios, and tconv's launches per forward and per backward."""
    ours, theirs = layer.functions()
    kwargs = layer.kwargs
    frozen = _operands(layer, "cpu", False, dtype)
    meta = tuple(t.to("meta") for t in frozen)
    trained = _operands(layer, "cpu", True, dtype)
    module, torch_module = _modules(layer, dtype)
    meta_trained = tuple(t.detach().to("meta").requires_grad_() for t in trained)
    with stubbed_launches() as kernel:
        grad = torch.randn_like(ours(*frozen, **kwargs))
        grad_meta = grad.to("meta")
        for _ in range(20):  # first calls fill the memos
            ours(*frozen, **kwargs)
            torch.autograd.backward(ours(*trained, **kwargs), grad)
        kernel.launches = 0
        output = ours(*trained, **kwargs)
        forward_launches = kernel.launches
        torch.autograd.backward(output, grad)
        backward_launches = kernel.launches - forward_launches
        medians = _median_us({
            "forward_us": lambda: ours(*frozen, **kwargs),
            "torch_forward_us": lambda: theirs(*meta, **kwargs),
            "train_us": lambda: torch.autograd.backward(ours(*trained, **kwargs), grad),
            "torch_train_us": lambda: torch.autograd.backward(theirs(*meta_trained, **kwargs), grad_meta),
            "module_us": lambda: module(frozen[0]),
            "torch_module_us": lambda: torch_module(meta[0]),
        }, calls)
    return {**{name: round(value, 2) for name, value in medians.items()},
            "forward_ratio": round(medians["forward_us"] / medians["torch_forward_us"], 3),
            "train_ratio": round(medians["train_us"] / medians["torch_train_us"], 3),
            "module_ratio": round(medians["module_us"] / medians["torch_module_us"], 3),
            "forward_launches": forward_launches, "backward_launches": backward_launches}


def cuda_call_us(layer: Layer, calls: int = 200, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Whole eager calls on the GPU, launches included: microseconds per forward call of
    tconv and of torch (cuDNN), from a loop between two synchronizes (after a warm-up)."""
    ours, theirs = layer.functions()
    kwargs = layer.kwargs
    operands = _operands(layer, "cuda", False, dtype)
    result = {}
    for name, function in (("tconv_cuda_call_us", ours), ("cudnn_cuda_call_us", theirs)):
        for _ in range(10):
            function(*operands, **kwargs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            function(*operands, **kwargs)
        torch.cuda.synchronize()
        result[name] = round((time.perf_counter() - start) / calls * 1e6, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tconv.perf.host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="tiny", choices=sorted(SUITES), help="layers to measure")
    parser.add_argument("--calls", type=int, default=3000, help="calls per measurement (median)")
    args = parser.parse_args(argv)
    print("| layer | forward us (torch) | ratio | train us (torch) | ratio | module us (torch) | ratio | launches fwd / bwd |")
    print("|---|---|---|---|---|---|---|---|")
    for layer in SUITES[args.suite]:
        m = host_times(layer, args.calls)
        print(f"| {layer.name} | {m['forward_us']:.1f} ({m['torch_forward_us']:.1f}) | {m['forward_ratio']:.2f} "
              f"| {m['train_us']:.1f} ({m['torch_train_us']:.1f}) | {m['train_ratio']:.2f} "
              f"| {m['module_us']:.1f} ({m['torch_module_us']:.1f}) | {m['module_ratio']:.2f} "
              f"| {m['forward_launches']} / {m['backward_launches']} |")
        if torch.cuda.is_available():
            print(f"|   on {torch.cuda.get_device_name()}: {cuda_call_us(layer)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
