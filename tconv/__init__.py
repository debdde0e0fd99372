"""tconv: convolution for PyTorch written in Triton.

``tconv.conv2d(...)`` takes what ``torch.nn.functional.conv2d(...)`` takes and returns the
same thing; ``tconv.nn.Conv2d`` is ``torch.nn.Conv2d`` with tconv's kernels.
"""

from . import nn
from .functional import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d

__version__ = "0.1.0"
__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "nn"]
