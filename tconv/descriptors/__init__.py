"""One descriptor per Triton kernel (see base.py): the registry every consumer looks
kernels up in. Adding a kernel is its ``@triton.jit`` file in kernels/, its descriptor
module here and one line below."""

from .base import Descriptor
from .columns import COL2IM, COLUMNS
from .dgrad import DGRAD
from .fprop import FPROP
from .gemm import GEMM
from .layout import copy_of, padded_copy_of, weight_copy_of
from .wgrad import WGRAD, WGRAD_REDUCE

#: The layout copies dense passes make of channels-first operands (fprop_input_copy, ...),
#: the zero-padded ones of passes that pad channels (fprop_input_padded_copy, ...) and the
#: weight copies of elementwise passes (fprop_weight_columns_copy, ...).
COPIES = (*(copy_of(kernel, operand) for kernel in (FPROP, DGRAD, WGRAD, COLUMNS)
            for operand in kernel.channels_last_operands),
          *(padded_copy_of(kernel, operand) for kernel in (FPROP, DGRAD, WGRAD) for operand in kernel.channels_last_operands),
          *(weight_copy_of(kernel) for kernel in (FPROP, DGRAD)))

KERNELS: dict[str, Descriptor] = {d.name: d for d in (FPROP, DGRAD, WGRAD, WGRAD_REDUCE, COLUMNS, COL2IM, GEMM, *COPIES)}
#: The kernels a conv pass launches and tunes (wgrad_reduce rides on wgrad's launch; a thin
#: transposed pass runs 'columns', fprop's loop, in dgrad's place: ConvSpec.tap_columns).
PASS_KERNELS = ("fprop", "dgrad", "wgrad")

__all__ = ["COL2IM", "COLUMNS", "COPIES", "DGRAD", "FPROP", "GEMM", "KERNELS", "PASS_KERNELS", "WGRAD", "WGRAD_REDUCE",
           "Descriptor"]
