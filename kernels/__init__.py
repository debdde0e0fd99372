"""Triton kernels of tconv: only ``@triton.jit`` code lives in this package.

Three implicit GEMMs serve the six convolution ops and their gradients:

- :mod:`.fprop`: forward convolution (and transposed convolution's input gradient);
- :mod:`.dgrad`: input gradient of convolution, which is also transposed convolution's forward;
- :mod:`.wgrad`: weight gradient of both.

Every kernel sees 3-d problems; 1-d and 2-d convolutions are passed with unit extents."""

