"""Triton kernels of tconv: only ``@triton.jit`` code lives in this package.

Three implicit GEMMs serve the six convolution ops and their gradients:

- :mod:`.fprop`: forward convolution (and transposed convolution's input gradient);
- :mod:`.dgrad`: input gradient of convolution, which is also transposed convolution's forward;
- :mod:`.wgrad`: weight gradient of both.

Transposed convolutions with 2-15 output channels run fprop's loop over every (channel,
tap) column, then :mod:`.col2im` (not a GEMM); :mod:`.layout` copies channels-first
operands channels-last (not a GEMM either).

Every kernel sees 3-d problems; 1-d and 2-d convolutions are passed with unit extents."""

