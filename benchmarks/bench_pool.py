"""asv: max and average pooling per backend x problem x dtype."""

import kernels

from .common import prepare, problem

PROBLEMS = {
    "seed002_pool": problem("seeds", "seed002_pool"),
    "resnet18_maxpool": problem("resnet18", "maxpool"),
    "resnet18_avgpool": problem("resnet18", "avgpool"),
}


class Pool2d:
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
