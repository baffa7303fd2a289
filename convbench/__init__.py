"""convbench: the benchmark harness, the CNN and the command line, all built on ``kernels``."""

__version__ = "0.1.0"
