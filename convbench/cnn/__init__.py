"""The network: a small CNN built from ``kernels``' backends, trained and timed.

``layers`` (Conv2D, pooling, Dense, activations, losses, SGD with momentum and decay),
``models`` (the seed articles' networks and LeNet-5, one table), ``data`` (the embedded digits
and IDX files), ``train`` (``convbench train``), ``step`` (one timed training step per backend,
``convbench step``, measured with the harness), ``featuremaps`` (the seed 003 plots) and
``torch_twin`` (the same network in PyTorch, the step's optional yardstick).
"""
