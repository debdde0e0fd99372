"""tconv's benchmarks (installed as tconv.perf): shape suites as data, `tconv bench`
(static analysis, interpreter check, GPU timing against cuDNN) and `tconv report`."""
