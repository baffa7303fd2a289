"""asv: max and average pooling per backend x problem x dtype."""

import kernels

from .common import _KernelBenchmark, problem


class Pool2d(_KernelBenchmark):
    PROBLEMS = {
        "seed002_pool": problem("seeds", "seed002_pool"),
        "lenet5_pool1_b64": problem("lenet5", "pool1", batch=64),
        "resnet18_maxpool": problem("resnet18", "maxpool"),
        "resnet18_avgpool": problem("resnet18", "avgpool"),
    }
    params = (list(kernels.names()), list(PROBLEMS), ["float32", "float64"])
