"""asv: conv2d per backend x problem x dtype; forward, forward+backward, peak memory, GFLOP/s."""

import time

import kernels

from .common import prepare, problem

PROBLEMS = {
    "seed002_conv": problem("seeds", "seed002_conv"),
    "lenet5_conv2": problem("lenet5", "conv2"),
    "resnet18_layer1": problem("resnet18", "layer1_conv"),
    "mobilenet_v2_dw": problem("mobilenet_v2", "block4_depthwise"),
}


class Conv2d:
    params = (list(kernels.names()), list(PROBLEMS), ["float32", "float64"])
    param_names = ["backend", "problem", "dtype"]
    timeout = 300

    def setup(self, backend, name, dtype):
        self.p = PROBLEMS[name]
        self.be, self.arrays, self.ctx = prepare(backend, self.p, dtype)

    def time_forward(self, backend, name, dtype):
        self.p.forward(self.be, self.arrays)

    def time_forward_backward(self, backend, name, dtype):
        _, ctx = self.p.forward(self.be, self.arrays)
        self.p.backward(self.be, self.arrays, ctx)

    def peakmem_forward_backward(self, backend, name, dtype):
        _, ctx = self.p.forward(self.be, self.arrays)
        self.p.backward(self.be, self.arrays, ctx)

    def track_gflops_forward(self, backend, name, dtype):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            self.p.forward(self.be, self.arrays)
            times.append(time.perf_counter() - start)
        return self.p.flops("forward") / sorted(times)[2] / 1e9

    track_gflops_forward.unit = "GFLOP/s"
