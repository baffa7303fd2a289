"""asv: one full training step (forward, loss, backward, SGD update) per backend."""

import kernels

try:
    from convbench.cnn.layers import SGD
    from convbench.cnn.models import build_model
    from convbench.cnn.step import digits_batch, sgd_settings
except ImportError as exc:  # a commit from before convbench/cnn/ (asv runs this file on old commits)
    MISSING = f"this commit has no training step to time ({exc})"
else:
    MISSING = None


class TrainStep:
    params = (list(kernels.names()), ["seed002-b4", "lenet5-b64"])
    param_names = ["backend", "model"]
    timeout = 300

    def setup(self, backend, model):
        if MISSING:
            raise NotImplementedError(MISSING)
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
