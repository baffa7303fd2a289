"""FLOP formulas, bytes, probes and descriptors of a Problem."""

from __future__ import annotations

import pytest

from convbench.bench.problems import Problem

SEED002_CONV = Problem("seed002_conv", "conv2d", 4, 1, 28, 28, 3, 5, 5)
SEED002_POOL = Problem("seed002_pool", "maxpool2d", 4, 3, 24, 24, 3, 3, 3, stride=(2, 2))


def test_conv_flops():
    forward = 2 * 4 * 3 * 24 * 24 * 1 * 5 * 5  # 2 x N K Ho Wo (C/g) R S
    assert SEED002_CONV.flops("forward") == forward == 345_600
    assert SEED002_CONV.flops("backward") == 2 * forward
    assert SEED002_CONV.flops("forward+backward") == 3 * forward


def test_grouped_conv_flops_count_only_the_group_channels():
    depthwise = Problem("dw", "conv2d", 1, 32, 112, 112, 32, 3, 3, padding=(1, 1), groups=32)
    assert depthwise.flops() == 2 * 32 * 112 * 112 * 1 * 9


def test_pool_flops():
    windows = 4 * 3 * 11 * 11
    assert SEED002_POOL.flops("forward") == windows * 9
    assert SEED002_POOL.flops("backward") == windows
    avg = Problem("gap", "avgpool2d", 1, 512, 7, 7, 512, 7, 7, stride=(7, 7))
    assert avg.flops("forward") == avg.flops("backward") == 512 * 49


def test_bytes_moved():
    x, w, y = 4 * 28 * 28, 3 * 25, 4 * 3 * 24 * 24
    assert SEED002_CONV.bytes_moved("forward", 4) == 4 * (x + w + y)
    assert SEED002_CONV.bytes_moved("backward", 8) == 8 * (y + w + x + x + w)


def test_probe_is_a_smaller_problem_with_the_same_channels_and_kernel():
    big = Problem("l1", "conv2d", 8, 64, 56, 56, 64, 3, 3, stride=(2, 2), padding=(1, 1))
    small, ratio = big.probe()
    assert (small.N, small.C, small.K, small.R, small.stride) == (1, 64, 64, 3, (2, 2))
    assert (small.out_h, small.out_w) == (8, 8)
    assert ratio == pytest.approx(8 * 28 * 28 / 64)


def test_a_small_problem_is_its_own_probe():
    assert SEED002_POOL.with_batch(1).probe(outputs=16) == (SEED002_POOL.with_batch(1), 1.0)


def test_descriptor():
    assert SEED002_CONV.descriptor() == 'mb4ic1ih28iw28oc3oh24ow24kh5kw5sh1sw1ph0pw0n"seed002_conv"'


@pytest.mark.parametrize("fields, message", [
    (dict(op="conv1d"), "op must be one of"),
    (dict(op="maxpool2d", K=5), "a pooling problem has K == C"),
    (dict(R=40), "the kernel is larger than the padded input"),
])
def test_invalid_problems(fields, message):
    base = dict(name="p", op="conv2d", N=1, C=3, H=8, W=8, K=3, R=3, S=3)
    with pytest.raises(ValueError, match=message):
        Problem(**{**base, **fields})
