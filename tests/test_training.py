"""The CNN on every backend: gradients against finite differences, reproducibility, agreement."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from convbench.cnn.data import embedded_digits, prepare
from convbench.cnn.layers import SGD
from convbench.cnn.models import MODELS, build_model

backends = pytest.mark.parametrize("backend", kernels.names())


@pytest.fixture(scope="module")
def digits():
    return prepare(embedded_digits(), val_fraction=0.0, dtype=np.float64)


def batch(digits, n, model, start=0):
    x, y = digits.x_train[start : start + n], digits.y_train[start : start + n]
    return (x, (y % 2)) if model == "seed000" else (x, y)


def parameters(model):
    return [(layer, key) for layer in model.layers for key in layer.params]


@pytest.mark.parametrize("name", sorted(MODELS))
@backends
def test_model_gradient_matches_finite_differences(backend, name, digits):
    """The directional derivative of the loss along a random direction in parameter space."""
    model = build_model(name, kernels.get(backend), seed=3, dtype=np.float64)
    x, y = batch(digits, 2, name)
    rng = np.random.default_rng(4)
    # Biases start at 0 and standardised background pixels are exactly 0, so many ReLU inputs
    # sit exactly on the kink, where no derivative exists: move the biases off zero first.
    for layer, key in parameters(model):
        if key == "b":
            layer.params[key] += rng.uniform(0.05, 0.1, layer.params[key].shape)
    model.loss_and_gradients(x, y)
    directions = {(id(layer), key): rng.standard_normal(layer.params[key].shape) for layer, key in parameters(model)}
    norm = np.sqrt(sum(float(np.sum(d**2)) for d in directions.values()))
    directions = {k: d / norm for k, d in directions.items()}  # a unit step: stay clear of ReLU/max kinks
    analytic = sum(float(np.sum(layer.grads[key] * directions[id(layer), key])) for layer, key in parameters(model))

    def loss_at(step):
        for layer, key in parameters(model):
            layer.params[key] += step * directions[id(layer), key]
        loss = model.loss(model.forward(x), y)[0]
        for layer, key in parameters(model):
            layer.params[key] -= step * directions[id(layer), key]
        return loss

    eps = 1e-6
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-8)


def loss_curve(backend, digits, steps, model="seed002", batch_size=4, dtype=np.float64):
    net = build_model(model, backend, seed=0, dtype=dtype)
    optimizer = SGD()
    x, y = digits.x_train.astype(dtype), digits.y_train
    return np.array([net.train_step(x[i * batch_size : (i + 1) * batch_size],
                                    y[i * batch_size : (i + 1) * batch_size], optimizer)[0] for i in range(steps)])


@backends
def test_same_seed_same_backend_same_curve_bit_for_bit(backend, digits):
    be = kernels.get(backend)
    first, second = loss_curve(be, digits, 5, dtype=np.float32), loss_curve(be, digits, 5, dtype=np.float32)
    np.testing.assert_array_equal(first, second)


CURVE_STEPS = 30  # each backend's float64 curve against the reference's first steps (naive: 2.5 s)


@pytest.fixture(scope="module")
def reference_curve(digits):
    return loss_curve(kernels.reference, digits, 100)


def test_the_reference_learns(reference_curve):
    assert reference_curve[-10:].mean() < reference_curve[:10].mean() / 2


@backends
def test_backends_give_the_reference_loss_curve_in_float64(backend, digits, reference_curve):
    """Step by step the same losses as the reference (to 1e-8), so the same learning: a wrong
    gradient moves the curve within a step or two."""
    curve = loss_curve(kernels.get(backend), digits, CURVE_STEPS)
    np.testing.assert_allclose(curve, reference_curve[:CURVE_STEPS], rtol=1e-8, atol=0)


def test_seed000_freezing_leaves_a_layer_untouched(digits):
    model = build_model("seed000", kernels.get("im2col"), freeze_conv=True, dtype=np.float64)
    conv, dense = model.layers[0], model.layers[3]
    before = conv.params["w"].copy(), dense.params["w"].copy()
    x, y = batch(digits, 4, "seed000")
    model.train_step(x, y, SGD())
    np.testing.assert_array_equal(conv.params["w"], before[0])
    assert not np.array_equal(dense.params["w"], before[1])


def test_sgd_is_seed_002s_rule():
    from convbench.cnn.layers import Layer

    layer = Layer()
    layer.params["w"] = np.array([1.0])
    optimizer = SGD(lr=0.1, momentum=0.5, decay=1.0)
    v = 0.0
    w = 1.0
    for t, g in enumerate([2.0, 4.0, -1.0]):
        layer.grads["w"] = np.array([g])
        optimizer.step([layer])
        v = 0.5 * v + 0.1 / (1 + t * 1.0) * g
        w -= v
        assert layer.params["w"][0] == pytest.approx(w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_passes_nan_as_torch_does_and_no_gradient_where_x_is_not_positive(dtype):
    from convbench.cnn.layers import ReLU

    relu = ReLU()
    y = relu.forward(np.array([-1.0, 0.0, 2.0, np.nan, -np.inf, np.inf], dtype=dtype))
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 2.0, np.nan, 0.0, np.inf], dtype=dtype))
    assert y.dtype == dtype
    finite, wild = (np.array(g, dtype=dtype) for g in ([1, 2, 3, 4, 5, 6], [np.inf, np.nan, 3, 4, -np.inf, np.nan]))
    np.testing.assert_array_equal(relu.backward(finite), np.array([0, 0, 3, 0, 0, 6], dtype=dtype))
    np.testing.assert_array_equal(relu.backward(wild), np.array([0, 0, 3, 0, 0, np.nan], dtype=dtype))


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'vgg'; choose one of: seed000, seed002, lenet5"):
        build_model("vgg", kernels.get("numba"))
