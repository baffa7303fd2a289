"""The seed models and LeNet-5, built on any backend: ``build_model("lenet5", kernels.get("numba"))``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from convbench.cnn.layers import (
    SGD,
    Conv2D,
    Dense,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    Sigmoid,
    binary_log_loss,
    softmax_cross_entropy,
)
from kernels import Backend

__all__ = ["MODELS", "Model", "ModelSpec", "build_model", "model_spec"]


class Model:
    """Layers in sequence and a loss; ``train_step`` is one forward, loss, backward and SGD update."""

    def __init__(self, name: str, layers: list[Layer], loss: Callable, binary: bool):
        self.name, self.layers, self.loss, self.binary = name, layers, loss, binary
        if layers:  # as frameworks do: the input's gradient is never asked for
            layers[0].need_dx = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: np.ndarray) -> None:
        for layer in reversed(self.layers):
            dy = layer.backward(dy)

    def loss_and_gradients(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward, loss and backward (gradients left in each layer's ``grads``); returns (loss, output)."""
        out = self.forward(x)
        loss, dout = self.loss(out, labels)
        self.backward(dout)
        return loss, out

    def train_step(self, x: np.ndarray, labels: np.ndarray, optimizer: SGD) -> tuple[float, float]:
        """One step of training; returns (loss, accuracy) on this batch."""
        loss, out = self.loss_and_gradients(x, labels)
        optimizer.step(self.layers)
        return loss, float(np.mean(self.predictions(out) == labels))

    def predictions(self, out: np.ndarray) -> np.ndarray:
        return (out[:, 0] > 0.5).astype(np.int64) if self.binary else out.argmax(axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predictions(self.forward(x))


def _seed000(be, rng, dtype, freeze_conv=False, freeze_dense=False) -> Model:
    """Seed 000: one 3x3 filter with same padding and no bias, ReLU, dense 784 -> 1, sigmoid."""
    conv = Conv2D(be, 1, 1, 3, padding=1, bias=False, rng=rng, dtype=dtype)
    dense = Dense(28 * 28, 1, bias=False, init="glorot", rng=rng, dtype=dtype)
    conv.frozen, dense.frozen = freeze_conv, freeze_dense
    return Model("seed000", [conv, ReLU(), Flatten(), dense, Sigmoid()], binary_log_loss, binary=True)


def _seed002(be, rng, dtype) -> Model:
    """Seed 002: conv 5x5x3 -> max-pool 3x3 stride 2 -> dense 84 -> dense 10 with softmax."""
    return Model("seed002", [
        Conv2D(be, 1, 3, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2D(be, 3, stride=2), Flatten(),
        Dense(3 * 11 * 11, 84, rng=rng, dtype=dtype), ReLU(),
        Dense(84, 10, init="glorot", rng=rng, dtype=dtype),
    ], softmax_cross_entropy, binary=False)


def _lenet5(be, rng, dtype) -> Model:
    """LeNet-5 with ReLU and max-pooling, on 28x28 input padded to 32x32 by the first conv."""
    return Model("lenet5", [
        Conv2D(be, 1, 6, 5, padding=2, rng=rng, dtype=dtype), ReLU(), MaxPool2D(be, 2),
        Conv2D(be, 6, 16, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2D(be, 2), Flatten(),
        Dense(16 * 5 * 5, 120, rng=rng, dtype=dtype), ReLU(),
        Dense(120, 84, rng=rng, dtype=dtype), ReLU(),
        Dense(84, 10, init="glorot", rng=rng, dtype=dtype),
    ], softmax_cross_entropy, binary=False)


@dataclass(frozen=True)
class ModelSpec:
    """A model: how to build it, and how its article trains it (flags left out take these)."""

    build: Callable[..., Model]
    lr: float
    momentum: float
    decay: float  # lr_t = lr / (1 + t * decay)
    batch_size: int
    preprocess: str  # standardise (seed 000's per pixel) or scale (x / 255)

    def training(self) -> dict:
        """The training settings (everything but ``build``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "build"}

    def sgd(self) -> dict:
        """The optimizer's settings: ``SGD(**spec.sgd())``."""
        return {"lr": self.lr, "momentum": self.momentum, "decay": self.decay}


# The one table of models: the CLI's choices, help and defaults all come from here.
MODELS = {
    "seed000": ModelSpec(_seed000, lr=0.001, momentum=0.0, decay=0.0, batch_size=1, preprocess="standardise"),
    "seed002": ModelSpec(_seed002, lr=0.01, momentum=0.9, decay=1e-5, batch_size=4, preprocess="scale"),
    "lenet5": ModelSpec(_lenet5, lr=0.01, momentum=0.9, decay=1e-5, batch_size=64, preprocess="scale"),
}


def model_spec(name: str) -> ModelSpec:
    """The table's entry for ``name``; ValueError naming the choices for any other name."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, backend: Backend, *, seed: int = 0, dtype=np.float32, **options) -> Model:
    """A freshly initialised model; the same name, seed and dtype give the same weights."""
    return model_spec(name).build(backend, np.random.default_rng(seed), np.dtype(dtype), **options)
