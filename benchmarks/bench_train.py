"""asv: one full training step (forward, loss, backward, SGD update) per backend."""

import kernels
from convbench.cnn.layers import SGD
from convbench.cnn.models import build_model
from convbench.cnn.step import digits_batch, sgd_settings


class TrainStep:
    params = (list(kernels.names()), ["seed002-b4", "lenet5-b64"])
    param_names = ["backend", "model"]
    timeout = 300

    def setup(self, backend, model):
        name, batch = model.split("-b")
        if backend == "naive" and name == "lenet5":
            raise NotImplementedError("naive takes about 8 s per lenet5 step at batch 64")
        try:
            be = kernels.get(backend)
        except kernels.BackendUnavailable as exc:
            raise NotImplementedError(str(exc)) from None
        self.x, self.y = digits_batch(name, int(batch), "float32")
        self.net, self.optimizer = build_model(name, be, seed=0), SGD(**sgd_settings(name))
        self.net.train_step(self.x, self.y, self.optimizer)  # warm-up: numba compiles here

    def time_step(self, backend, model):
        self.net.train_step(self.x, self.y, self.optimizer)
