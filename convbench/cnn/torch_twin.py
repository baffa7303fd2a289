"""The same models natively in PyTorch, as a yardstick for ``convbench step`` (optional).

The torch network is built from our model's own layers and initial weights, so its first
training step is checked against the float64 reference like every backend's (``convbench.cnn.step``
does the checking and the timing); the update is seed 002's SGD rule with torch's in-place ops.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import kernels
from convbench.cnn import layers as ours
from convbench.cnn.models import build_model


def _torch_layer(layer):
    if isinstance(layer, ours.Conv2D):
        w = layer.params["w"]
        conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], stride=layer.stride, padding=layer.padding,
                               bias="b" in layer.params)
        conv.weight.data = torch.from_numpy(w.copy())
        if "b" in layer.params:
            conv.bias.data = torch.from_numpy(layer.params["b"].copy())
        return conv
    if isinstance(layer, ours.Dense):
        w = layer.params["w"]
        dense = torch.nn.Linear(w.shape[0], w.shape[1], bias="b" in layer.params)
        dense.weight.data = torch.from_numpy(w.T.copy())
        if "b" in layer.params:
            dense.bias.data = torch.from_numpy(layer.params["b"].copy())
        return dense
    pool = {ours.MaxPool2D: torch.nn.MaxPool2d, ours.AvgPool2D: torch.nn.AvgPool2d}.get(type(layer))
    if pool is not None:
        return pool(layer.kernel_size, stride=layer.stride, padding=layer.padding)
    simple = {ours.ReLU: torch.nn.ReLU, ours.Flatten: torch.nn.Flatten, ours.Sigmoid: torch.nn.Sigmoid}
    return simple[type(layer)]()


def torch_model(name: str, seed: int, dtype: str):
    """(torch.nn.Sequential with our model's initial weights, its loss function)."""
    model = build_model(name, kernels.reference, seed=seed, dtype=dtype)
    net = torch.nn.Sequential(*map(_torch_layer, model.layers))
    if model.binary:
        return net, lambda out, y: torch.nn.functional.binary_cross_entropy(out[:, 0], y.to(out.dtype))
    return net, torch.nn.functional.cross_entropy


def torch_step(name: str, x: np.ndarray, y: np.ndarray, dtype: str, sgd: dict, seed: int = 0):
    """A function that runs one training step of the PyTorch network and returns the seconds of
    its forward (with the loss), backward and update, and the loss (as ``convbench.cnn.step`` wants)."""
    net, loss_fn = torch_model(name, seed, dtype)
    params = list(net.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    t = 0

    def step(instrumented: bool = True) -> dict:  # PyTorch's layers are not split by kind
        nonlocal t
        t0 = time.perf_counter()
        loss = loss_fn(net(xt), yt)
        t1 = time.perf_counter()
        for p in params:
            p.grad = None
        loss.backward()
        t2 = time.perf_counter()
        lr_t = sgd["lr"] / (1 + t * sgd["decay"])
        with torch.no_grad():
            for p, v in zip(params, velocity):
                v.mul_(sgd["momentum"]).add_(p.grad, alpha=lr_t)
                p.sub_(v)
        t += 1
        t3 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2, "step": t3 - t0, "loss": loss.item()}

    return step
