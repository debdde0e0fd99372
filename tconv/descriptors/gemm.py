"""Launch contract of kernels/gemm.py: a 1x1 convolution (stride 1, no padding, one group)
as a plain GEMM, for inputs whose positions flatten into rows with one stride (channels_last,
or batch 1). It is the static model's reference loop (tconv.aot.reference_loop)."""

from __future__ import annotations

from collections.abc import Mapping

from ..configs import DENSE_SPACE, KernelConfig
from ..kernels import gemm
from ..spec import ConvSpec
from .base import launch_options, tile_meta, tiles
from .fprop import Fprop


def _row_stride(tensor) -> int:
    """The one stride that walks an [N, C, *spatial] tensor's positions, batch included."""
    row_dims = [0, *range(2, tensor.dim())]
    for outer, inner in zip(row_dims, row_dims[1:]):
        if tensor.shape[outer] > 1 and tensor.stride(outer) != tensor.stride(inner) * tensor.shape[inner]:
            raise NotImplementedError("tconv's gemm kernel needs positions that flatten into rows (channels_last, or "
                                      f"batch 1), not strides {tensor.stride()} for shape {tuple(tensor.shape)}")
    return tensor.stride(row_dims[-1])


class Gemm(Fprop):
    """M = batch x positions, N = out_channels, K = in_channels; the forward conv's
    operands, output allocation and work model, with a gather-free main loop."""

    name = "gemm"
    function = gemm.gemm_kernel
    spaces = {False: DENSE_SPACE}
    channels_last_operands = ()  # its operands must already be channels_last (see _row_stride)

    @staticmethod
    def same_tile(config: KernelConfig) -> KernelConfig:
        """A convolution config's tile, warps and stages, without its split or tap run: the
        GEMM a main loop is compared with."""
        return KernelConfig(config.block_m, config.block_n, config.block_k, config.group_m, config.num_warps,
                            config.num_stages)

    @staticmethod
    def supports(spec: ConvSpec) -> bool:
        return (spec.groups == 1 and not spec.transposed and spec.padding_mode == "zeros"
                and all(k == 1 for k in spec.kernel_size) and all(s == 1 for s in spec.stride)
                and not any(spec.pad_before + spec.pad_after))

    def arguments(self, spec: ConvSpec, config: KernelConfig, tensors: Mapping, numerics: Mapping) -> tuple[tuple, dict]:
        assert self.supports(spec), spec
        input, weight, bias, output = (tensors[name] for name in ("input", "weight", "bias", "output"))
        rows, columns, reduction = self.extents(spec)
        args = (
            input, weight, bias, output, rows, columns, reduction,
            _row_stride(input), input.stride(1), weight.stride(1), weight.stride(0),
            _row_stride(output), output.stride(1),
        )
        meta = dict(HAS_BIAS=bias is not None, GROUP_M=config.group_m, **tile_meta(config), **numerics,
                    **launch_options(config))
        return args, meta

    def grid(self, spec: ConvSpec, config: KernelConfig) -> tuple[int]:
        rows, columns, _ = self.extents(spec)
        return (tiles(rows, config.block_m) * tiles(columns, config.block_n),)


GEMM = Gemm()
