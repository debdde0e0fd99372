"""Launch plans by kernel name: the grids the descriptors launch and the multiply-adds
those grids execute (padding of partial tiles included), to compare with
ConvSpec.useful_macs. The counting lives in each kernel's descriptor."""

from __future__ import annotations

from .configs import KernelConfig, descriptor_of
from .descriptors import WGRAD
from .spec import ConvSpec


def executed_macs(kernel, spec: ConvSpec, config: KernelConfig) -> int:
    """Multiply-adds a launch of `kernel` (a descriptor or its name) executes; wgrad takes
    the forward conv's spec, for conv and, with roles swapped, for transposed conv."""
    return descriptor_of(kernel).executed_macs(spec, config)


def grid(kernel, spec: ConvSpec, config: KernelConfig) -> tuple[int, ...]:
    return descriptor_of(kernel).grid(spec, config)


def wgrad_split(spec: ConvSpec, config: KernelConfig) -> tuple[int, int]:
    """(splits, rows per split) of the weight gradient's split-K reduction."""
    return WGRAD.split(spec, config)


def wgrad_grid(spec: ConvSpec, config: KernelConfig) -> tuple[int, int, int]:
    return WGRAD.grid(spec, config)
