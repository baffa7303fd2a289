"""asv: conv2d per backend x problem x dtype; forward, forward+backward, peak memory, GFLOP/s."""

import time

import kernels

from .common import _KernelBenchmark, problem


class Conv2d(_KernelBenchmark):
    PROBLEMS = {
        "seed002_conv": problem("seeds", "seed002_conv"),
        "lenet5_conv2": problem("lenet5", "conv2"),
        "resnet18_layer1": problem("resnet18", "layer1_conv"),
        "mobilenet_v2_dw": problem("mobilenet_v2", "block4_depthwise"),
    }
    params = (list(kernels.names()), list(PROBLEMS), ["float32", "float64"])

    def track_gflops_forward(self, backend, name, dtype):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            self.p.forward(self.be, self.arrays)
            times.append(time.perf_counter() - start)
        return self.p.flops("forward") / sorted(times)[2] / 1e9

    track_gflops_forward.unit = "GFLOP/s"
