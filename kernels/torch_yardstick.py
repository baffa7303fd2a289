"""PyTorch's CPU convolution and pooling behind the kernel interface: an outside yardstick.

Optional and never required: it is listed by ``kernels.yardsticks()``, not ``kernels.names()``,
and loads only where torch is installed. Forward calls ``torch.nn.functional``; backward asks
autograd for the gradients, as a PyTorch training step would. Arrays cross as zero-copy views
(``torch.from_numpy``) where numpy allows, so the timing is PyTorch's, not a copy's.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from importlib import metadata
from types import ModuleType

import numpy as np

from kernels._checks import Context, check_backward, check_conv2d, check_pool2d, output_size

if importlib.util.find_spec("torch") is None:  # the registry reports the backend unavailable, with this
    raise ImportError("No module named 'torch'")

name = "torch"
description = f"PyTorch {metadata.version('torch')} CPU (torch.nn.functional + autograd); an outside yardstick"


@functools.cache
def torch() -> ModuleType:
    """torch itself, imported at the first call rather than with this module: it takes seconds,
    and a report or a listing that only names this backend never calls it. The harness's thread
    limits import it before they apply (``convbench.bench.timing.threads``)."""
    import torch
    import torch.nn.functional  # noqa: F401 (makes torch.nn.functional an attribute)

    return torch


def _tensor(a: np.ndarray, grad: bool = True):
    a = a if a.flags.writeable and a.flags.c_contiguous else np.array(a)  # from_numpy wants a writable buffer
    return torch().from_numpy(a).requires_grad_(grad)


def _numpy(t) -> np.ndarray | None:
    return None if t is None else t.detach().numpy().copy()


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    inputs = (_tensor(x), _tensor(w), None if b is None else _tensor(b))
    xt, padding = _padded(inputs[0], p)
    y = torch().nn.functional.conv2d(xt, *inputs[1:], stride=p.stride, padding=padding, dilation=p.dilation,
                                     groups=p.groups)
    return _numpy(y), Context(name, "conv2d", p, {"inputs": inputs, "y": y})


def _padded(xt, p, value: float = 0.0):
    """(input, padding) for a torch function, which takes the same padding on both sides of an
    axis: ``p``'s top and left there when the same at the bottom and right gives the same output
    (the rows beyond the last window are read by none), else an explicit ``F.pad`` first."""
    top, bottom, left, right = p.padding
    (R, S), (dh, dw) = getattr(p, "kernel_size", None) or (p.R, p.S), getattr(p, "dilation", (1, 1))
    if (output_size(p.H, top, R, dh, p.stride[0]), output_size(p.W, left, S, dw, p.stride[1])) == (p.out_h, p.out_w):
        return xt, (top, left)
    return torch().nn.functional.pad(xt, (left, right, top, bottom), value=value), (0, 0)


def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    x, *rest = ctx.saved["inputs"]
    wanted = ([x] if need_dx else []) + [t for t in rest if t is not None]
    grads = list(map(_numpy, torch().autograd.grad(ctx.saved["y"], wanted, _tensor(dy, grad=False), retain_graph=True)))
    dx = grads.pop(0) if need_dx else None
    return dx, grads[0], grads[1] if p.has_bias else None


def _pool_forward(op: str, fn, x, kernel_size, stride, padding):
    p = check_pool2d(x, kernel_size, stride, padding)
    xt = _tensor(x)
    padded, padding = _padded(xt, p, -math.inf if op == "maxpool2d" else 0.0)
    y = fn(padded, p.kernel_size, stride=p.stride, padding=padding)
    return _numpy(y), Context(name, op, p, {"x": xt, "y": y})


def _pool_backward(op: str, dy, ctx):
    check_backward(dy, ctx, name, op)
    (dx,) = torch().autograd.grad(ctx.saved["y"], [ctx.saved["x"]], _tensor(dy, grad=False), retain_graph=True)
    return _numpy(dx)


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    return _pool_forward("maxpool2d", torch().nn.functional.max_pool2d, x, kernel_size, stride, padding)


def maxpool2d_backward(dy, ctx):
    return _pool_backward("maxpool2d", dy, ctx)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    return _pool_forward("avgpool2d", torch().nn.functional.avg_pool2d, x, kernel_size, stride, padding)


def avgpool2d_backward(dy, ctx):
    return _pool_backward("avgpool2d", dy, ctx)
