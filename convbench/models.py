"""The seed models and LeNet-5, built on any backend: ``build_model("lenet5", kernels.get("numba"))``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convbench.nn import (
    SGD, Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU, Sigmoid, binary_log_loss,
    softmax_cross_entropy,
)
from kernels import Backend

__all__ = ["MODELS", "Model", "build_model"]


class Model:
    """Layers in sequence and a loss; ``train_step`` is one forward, loss, backward and SGD update."""

    def __init__(self, name: str, layers: list[Layer], loss: Callable, binary: bool):
        self.name, self.layers, self.loss, self.binary = name, layers, loss, binary

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


MODELS = {"seed000": _seed000, "seed002": _seed002, "lenet5": _lenet5}


def build_model(name: str, backend: Backend, *, seed: int = 0, dtype=np.float32, **options) -> Model:
    """A freshly initialised model; the same name, seed and dtype give the same weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](backend, np.random.default_rng(seed), np.dtype(dtype), **options)
