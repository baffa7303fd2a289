"""Picks in context: a network on auto bound to the picks that make its whole step fastest."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from convbench.bench.results import RunDirectory
from convbench.cnn import tune
from convbench.cnn.layers import SGD
from convbench.cnn.models import build_model
from convbench.cnn.step import digits_batch, run_steps, sgd_settings
from kernels import auto


def maker(model="lenet5", dtype="float64"):
    return lambda: (build_model(model, auto, dtype=dtype), SGD(**sgd_settings(model)))


def lenet_batch():
    """Two digits, and auto's pick for each of LeNet-5's layers alone on them (the session's
    tuning cache: made once), from which the step tuning starts."""
    x, y = digits_batch("lenet5", 2, "float64")
    net, optimizer = maker()()
    net.train_step(x, y, optimizer)
    return x, y


def kernel_layers(net):
    return [i for i, layer in enumerate(net.layers) if hasattr(layer, "backend")]


def test_a_bound_network_takes_the_same_step_as_the_reference():
    x, y = lenet_batch()
    bound = tune.tune_step(maker(), x, y, budget=0.01)
    assert set(bound) == set(kernel_layers(maker()()[0]))
    net, optimizer = maker()()
    tune.bind(net, bound)
    reference = build_model("lenet5", kernels.reference, dtype="float64")
    assert net.train_step(x, y, optimizer)[0] == pytest.approx(
        reference.train_step(x, y, SGD(**sgd_settings("lenet5")))[0], rel=1e-10)
    for layer, expected in zip(net.layers, reference.layers):
        for key in layer.grads:
            np.testing.assert_allclose(layer.grads[key], expected.grads[key], rtol=1e-9, atol=1e-12)


def test_each_layer_keeps_the_candidate_whose_steps_were_fastest(monkeypatch):
    """Every candidate auto timed alone is timed in whole steps, costliest layer first (the
    loop-bound ones only within CONTEXT of the best): a layer timed alone can be misread by a
    stall. What the step timing finds clearly fastest is bound, whichever auto picked alone."""
    x, y = lenet_batch()
    alone = {"numba": 1.0, "im2col": 1.2, "scipy": 20.0, "naive": 1.6}  # naive is loop-bound, over 1.5x
    monkeypatch.setattr(auto, "tuning", lambda ctx: {"backend": "numba", "seconds": alone})
    timed = []

    def in_steps(calls, **kw):
        timed.append(sorted(calls))
        for call in calls.values():
            call()  # a whole step with the candidate bound
        return {"samples": {"numba": [2.0, 2.1, 2.2], "im2col": [3.0, 3.0, 3.0], "scipy": [1.0, 1.9, 1.1]}}

    monkeypatch.setattr(auto, "tune", in_steps)
    bound = tune.tune_step(maker(), x, y)
    assert timed == [["im2col", "numba", "scipy"]] * 4
    assert tune.describe(bound) == " ".join(f"{i}:scipy" for i in kernel_layers(maker()()[0]))


@pytest.mark.parametrize(("numba", "scipy", "bound"), [
    ([2.0, 2.1, 2.2], [1.0, 1.9, 1.1], "scipy"),  # every turn of scipy's beat every one of the pick's
    ([2.0, 2.5, 3.0], [1.0, 2.2, 1.1], "numba"),  # a faster median, but the turns overlap: the pick stays
    ([2.0, 2.1, 2.2], [2.1, 2.1, 2.1], "numba"),
])
def test_the_fastest_in_steps_replaces_the_pick_only_where_its_turns_all_beat_the_picks(numba, scipy, bound):
    assert tune._beats({"numba": numba, "scipy": scipy}, "numba") == bound


def test_a_layer_whose_other_candidates_are_far_loop_bound_ones_keeps_autos_pick_without_timing_steps(monkeypatch):
    x, y = lenet_batch()
    monkeypatch.setattr(auto, "tuning", lambda ctx: {"backend": "numba", "seconds": {"numba": 1.0, "naive": 2.0}})
    monkeypatch.setattr(auto, "tune", lambda *args, **kw: pytest.fail("timed steps"))
    assert {b.pick.name for b in tune.tune_step(maker(), x, y).values()} == {"numba"}


def test_a_step_row_on_auto_names_each_layers_pick(tmp_path):
    run = RunDirectory(tmp_path / "steps")
    run.create({"command": "step"})
    run_steps(run, [("seed002", 4)], ["auto"], threads=1, rounds=2)
    rows = {r["direction"]: r for r in run.rows()}
    layers = rows.pop("step")["picks"].split()
    assert [layer.split(":")[0] for layer in layers] == ["0", "2"]  # seed002's conv and max-pool
    assert {kernels.traits(layer.split(":")[1]).contender for layer in layers} == {True}
    assert {r.get("picks") for r in rows.values()} == {None}  # forward, backward, update: only the step row names them


def test_a_bound_layer_asks_auto_for_inputs_of_another_shape(monkeypatch):
    """An evaluation batch of another size gets auto's pick for it, not the one tuned for training."""
    im2col = kernels.get("im2col")
    x = np.ones((2, 1, 8, 8), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    bound = tune.Bound(im2col, x.shape)
    assert bound.conv2d_forward(x, w)[1].backend == "im2col"
    asked = []
    monkeypatch.setattr(auto, "conv2d_forward", lambda *args, **kw: asked.append(args[0].shape) or im2col.conv2d_forward(*args, **kw))
    y, ctx = bound.conv2d_forward(x[:1], w)
    assert asked == [(1, 1, 8, 8)]
    dx, dw, _ = bound.conv2d_backward(np.ones_like(y), ctx)
    assert dx.shape == (1, 1, 8, 8) and dw.shape == w.shape
