"""Backends that misbehave on purpose, for testing the harness's error isolation."""

from kernels import im2col

name = "broken"
description = "im2col with a wrong forward result and a backward pass that raises"


def conv2d_forward(x, w, b=None, **params):
    y, ctx = im2col.conv2d_forward(x, w, b, **params)
    return y + 1, ctx  # off by one everywhere: a fast wrong answer


def conv2d_backward(dy, ctx, *, need_dx=True):
    raise RuntimeError("backward exploded")


def maxpool2d_forward(x, kernel_size, **params):
    return im2col.maxpool2d_forward(x, kernel_size, **params)


def maxpool2d_backward(dy, ctx):
    raise RuntimeError("pool backward exploded")


avgpool2d_forward = im2col.avgpool2d_forward
avgpool2d_backward = im2col.avgpool2d_backward
