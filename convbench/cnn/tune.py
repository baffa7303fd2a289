"""Picks in context: a network on auto gets the backends that make its whole training step fastest.

auto picks each layer's backend by timing that layer's forward+backward alone
(``kernels.auto``). Inside a step the layers share the caches and the thread pools the step
really uses, and every auto call reads the thread counts and looks its arguments up (3-6 µs
between real kernels on an AMD EPYC, 2-4 % of seed002's 0.5 ms step). ``tune_step`` starts from
auto's per-layer picks and, costliest layer first, times whole steps with each candidate auto
timed alone (the loop-bound ones only within ``CONTEXT`` of the best: naive's calls take 100-1000x
the others'), in interleaved turns with auto's statistics (``kernels.auto.tune``, which drops a
candidate over 3x the best after a turn). Not only the close ones: a layer timed alone can be
misread (a stall of the host made numba's 2-thread max-pool read 1.7 ms against 0.08 ms, and
auto picked im2col). The fastest in steps replaces the pick only where every one of its turns
beat every one of the pick's (``_beats``). ``bind`` then hands each layer its pick as a ``Bound``
backend, which dispatches by one comparison of the input's shape.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable

import kernels
from convbench.cnn.layers import SGD
from convbench.cnn.models import Model
from kernels import Backend, auto, get

CONTEXT = 1.5  # a loop-bound candidate (naive) within 1.5x of the pick alone is timed in steps too
STEP_BUDGET = 0.5  # seconds of timed steps to settle one layer's pick, all its candidates together
STEP_TURN = 0.005  # a candidate's turn: steps back to back for this long (three at least)


class Bound:
    """One layer's backend after ``tune_step``: ``pick`` for inputs of the ``shape`` it was tuned
    on, auto for any other (an evaluation batch of another size); backward passes go to the
    backend whose forward made the ctx, through auto."""

    def __init__(self, pick: Backend, shape: tuple[int, ...]):
        self.pick, self.shape = pick, shape
        self.name = f"auto:{pick.name}"

    def _for(self, x) -> Backend:
        return self.pick if x.shape == self.shape else auto

    def conv2d_forward(self, x, w, b=None, **kw):
        return self._for(x).conv2d_forward(x, w, b, **kw)

    def maxpool2d_forward(self, x, kernel_size, **kw):
        return self._for(x).maxpool2d_forward(x, kernel_size, **kw)

    def avgpool2d_forward(self, x, kernel_size, **kw):
        return self._for(x).avgpool2d_forward(x, kernel_size, **kw)

    conv2d_backward = staticmethod(auto.conv2d_backward)
    maxpool2d_backward = staticmethod(auto.maxpool2d_backward)
    avgpool2d_backward = staticmethod(auto.avgpool2d_backward)


def tune_step(make: Callable[[], tuple[Model, SGD]], x, y, budget: float = STEP_BUDGET) -> dict[int, Bound]:
    """The backend of each kernel layer (by index) that makes a training step on ``x, y`` fastest,
    found on a network ``make()`` builds on auto (its weights move; the caller's do not). Run it
    with the thread limits the steps will run with; ``bind`` gives the picks to a network."""
    net, optimizer = make()
    net.train_step(x, y, optimizer)  # auto tunes each layer alone here
    ctxs = {i: layer.ctx for i, layer in enumerate(net.layers) if getattr(layer, "ctx", None) is not None}
    alone = {i: t for i, ctx in ctxs.items() if (t := auto.tuning(ctx)) is not None}  # each layer timed alone
    bound = {i: Bound(get(t["backend"]), _input_shape(ctxs[i])) for i, t in alone.items()}
    bind(net, bound)
    for i in sorted(bound, key=lambda i: -min(alone[i]["seconds"].values())):
        choices, shape = _choices(alone[i]["seconds"]), bound[i].shape
        if len(choices) > 1:
            calls = {n: functools.partial(_step_with, net, optimizer, x, y, i, Bound(get(n), shape)) for n in choices}
            best = _beats(auto.tune(calls, budget=budget, turn_seconds=STEP_TURN)["samples"], bound[i].pick.name)
            bound[i] = net.layers[i].backend = Bound(get(best), shape)
    return bound


def _choices(seconds: dict[str, float]) -> list[str]:
    """The candidates to time in steps, from their seconds alone: all but loop-bound ones over
    ``CONTEXT`` times the best."""
    best = min(seconds.values())
    return [name for name, t in seconds.items() if not kernels.traits(name).loop_bound or t <= CONTEXT * best]


def _beats(samples: dict[str, list[float]], pick: str) -> str:
    """The candidate whose steps were fastest, where every one of its turns beat every one of
    ``pick``'s; else ``pick``. A step's noise (10-20 % on a shared host) is larger than many a
    layer's share of it: switching on medians alone bound LeNet-5's conv1 to im2col (2.6 ms a
    step slower, alone) in some processes of each of three runs."""
    best = min(samples, key=lambda name: statistics.median(samples[name]))
    return best if max(samples[best]) < min(samples[pick]) else pick


def _input_shape(ctx) -> tuple[int, int, int, int]:
    p = ctx.problem
    return (p.N, p.C, p.H, p.W)


def _step_with(net: Model, optimizer: SGD, x, y, index: int, backend: Bound) -> None:
    net.layers[index].backend = backend
    net.train_step(x, y, optimizer)


def describe(bound: dict[int, Bound]) -> str:
    """The picks as a row records them: ``0:numba 2:im2col`` (layer index: backend)."""
    return " ".join(f"{i}:{backend.pick.name}" for i, backend in sorted(bound.items()))


def bind(net: Model, bound: dict[int, Bound]) -> None:
    """Give each layer of ``net`` in ``bound`` (by index) its ``Bound`` backend."""
    for i, backend in bound.items():
        net.layers[i].backend = backend
