"""A small CNN library on the kernel interface: layers, losses, SGD with momentum and decay.

Convolution and pooling layers call the backend they were built with, through the interface of
``kernels``; nothing else here knows which backend runs. Every layer caches what its backward
pass needs in ``forward`` (the CS231n contract) and returns the input gradient from
``backward``, storing parameter gradients in ``grads``.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import Backend


class Layer:
    """A layer with no parameters; subclasses set ``params`` and fill ``grads`` in ``backward``."""

    kind = "other"  # for the step timing's breakdown: conv, pool, dense or other

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.frozen = False
        self.need_dx = True  # False for a network's first layer: nothing uses its input gradient

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype) -> np.ndarray:
    """He initialisation, for layers followed by ReLU: N(0, 2 / fan_in)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """Glorot (Xavier) initialisation, for layers followed by softmax or sigmoid."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


class Conv2D(Layer):
    kind = "conv"

    def __init__(self, backend: Backend, in_channels: int, out_channels: int, kernel_size: int, *,
                 rng: np.random.Generator, stride: int = 1, padding: int = 0, bias: bool = True,
                 init: str = "he", dtype=np.float32):
        super().__init__()
        self.backend, self.stride, self.padding = backend, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        fan_in, fan_out = in_channels * kernel_size**2, out_channels * kernel_size**2
        self.params["w"] = (he_normal(rng, shape, fan_in, dtype) if init == "he"
                            else glorot_uniform(rng, shape, fan_in, fan_out, dtype))
        if bias:
            self.params["b"] = np.zeros(out_channels, dtype=dtype)

    def forward(self, x):
        y, self.ctx = self.backend.conv2d_forward(
            x, self.params["w"], self.params.get("b"), stride=self.stride, padding=self.padding)
        return y

    def backward(self, dy):
        dx, self.grads["w"], db = self.backend.conv2d_backward(dy, self.ctx, need_dx=self.need_dx)
        if db is not None:
            self.grads["b"] = db
        return dx


class _Pool2D(Layer):
    kind = "pool"
    op = ""

    def __init__(self, backend: Backend, kernel_size: int, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.backend, self.kernel_size, self.stride, self.padding = backend, kernel_size, stride, padding

    def forward(self, x):
        y, self.ctx = getattr(self.backend, f"{self.op}_forward")(
            x, self.kernel_size, stride=self.stride, padding=self.padding)
        return y

    def backward(self, dy):
        return getattr(self.backend, f"{self.op}_backward")(dy, self.ctx)


class MaxPool2D(_Pool2D):
    op = "maxpool2d"


class AvgPool2D(_Pool2D):
    op = "avgpool2d"


class ReLU(Layer):
    """max(x, 0), a NaN passing through as in ``torch.relu``; the gradient is dy where x > 0 and 0
    elsewhere. By np.maximum and a product with the mask: np.where branches per element and took
    1.6 ms on LeNet-5's first activations (64 x 6 x 28 x 28), these 0.3 and 0.1 ms."""

    def forward(self, x):
        self._y = np.maximum(x, 0, dtype=x.dtype)  # y > 0 exactly where x > 0 (NaN > 0 is False)
        return self._y

    def backward(self, dy):
        positive = self._y > 0
        if math.isfinite(dy.sum()):
            return dy * positive
        return np.where(positive, dy, 0).astype(dy.dtype, copy=False)  # Inf * 0 would be NaN


class Sigmoid(Layer):
    def forward(self, x):
        from scipy.special import expit  # here: importing scipy.special costs every command 0.3 s

        self._y = expit(x)  # 1 / (1 + exp(-x)) without overflow
        return self._y

    def backward(self, dy):
        return dy * self._y * (1 - self._y)


class Flatten(Layer):
    def forward(self, x):
        self._shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape(self._shape)


class Dense(Layer):
    kind = "dense"

    def __init__(self, in_features: int, out_features: int, *, rng: np.random.Generator, bias: bool = True,
                 init: str = "he", dtype=np.float32):
        super().__init__()
        shape = (in_features, out_features)
        self.params["w"] = (he_normal(rng, shape, in_features, dtype) if init == "he"
                            else glorot_uniform(rng, shape, in_features, out_features, dtype))
        if bias:
            self.params["b"] = np.zeros(out_features, dtype=dtype)

    def forward(self, x):
        self._x = x
        y = x @ self.params["w"]
        return y + self.params["b"] if "b" in self.params else y

    def backward(self, dy):
        self.grads["w"] = self._x.T @ dy
        if "b" in self.params:
            self.grads["b"] = dy.sum(axis=0)
        return dy @ self.params["w"].T


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) (N, classes) against integer labels (N,); and d/dlogits."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp cannot overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -float(log_probs[np.arange(n), labels].mean())
    grad = np.exp(log_probs)
    grad[np.arange(n), labels] -= 1
    return loss, (grad / n).astype(logits.dtype, copy=False)


def binary_log_loss(p: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log loss of probabilities p (N, 1) against 0/1 labels (N,); and d/dp (seed 000)."""
    y = labels.reshape(p.shape).astype(p.dtype)
    eps = np.finfo(p.dtype).eps  # 1 - eps must differ from 1 in p's own precision
    q = np.clip(p, eps, 1 - eps)
    loss = -float(np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    return loss, ((q - y) / (q * (1 - q)) / len(p)).astype(p.dtype, copy=False)


class SGD:
    """SGD with momentum and time-based decay, exactly as seed 002 defines it.

    At step t (from 0): ``lr_t = lr / (1 + t * decay)``, ``v = momentum * v + lr_t * grad``,
    ``w -= v``.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, decay: float = 1e-5):
        self.lr, self.momentum, self.decay = lr, momentum, decay
        self.t = 0
        self._velocity: dict[tuple[Layer, str], np.ndarray] = {}  # the layer is kept alive: no id reuse

    def step(self, layers: list[Layer]) -> None:
        lr_t = self.lr / (1 + self.t * self.decay)
        for layer in layers:
            if layer.frozen:
                continue
            for key, w in layer.params.items():
                v = self._velocity.setdefault((layer, key), np.zeros_like(w))
                v *= self.momentum
                v += lr_t * layer.grads[key]
                w -= v
        self.t += 1

    def state(self, layers: list[Layer]) -> dict[str, np.ndarray]:
        """The velocities, as ``"<layer index>.<param>"`` arrays, for a checkpoint."""
        return {f"{i}.{key}": v for i, layer in enumerate(layers) for key in layer.params
                if (v := self._velocity.get((layer, key))) is not None}

    def restore(self, layers: list[Layer], velocities: dict[str, np.ndarray], t: int) -> None:
        """Take back ``state``'s velocities and the step count ``t``."""
        self.t = t
        self._velocity = {(layer, key): np.array(velocities[f"{i}.{key}"])
                          for i, layer in enumerate(layers) for key in layer.params if f"{i}.{key}" in velocities}
