"""auto: the pick is the fastest timed candidate, it is remembered on disk, and a damaged or
foreign cache is measured afresh. (Its results are verified with every other backend's.)"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from cases import rig_auto
from threadpoolctl import threadpool_limits

import kernels
from convbench.bench.suites import load_suite, suite_names
from kernels import auto
from kernels._checks import Context, check_conv2d, check_pool2d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("CONVBENCH_TUNING_CACHE", str(path))
    auto._forget()
    yield path
    auto._forget()


def conv_call(n=2, c=3, size=9, k=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    return x, w


def test_the_pick_is_the_fastest_candidate_and_is_written_to_the_cache(cache):
    x, w = conv_call()
    y, ctx = auto.conv2d_forward(x, w, padding=1)
    (key, entry), = json.loads(cache.read_text())["picks"].items()
    assert key.startswith("conv2d N=2 C=3 H=9 W=9 K=4 R=3 S=3") and "dtype=float32" in key
    assert set(entry["seconds"]) == set(auto.candidates(ctx.problem))
    assert entry["backend"] == min(entry["seconds"], key=entry["seconds"].get) == auto.pick_of(ctx)
    assert auto.picks() == {key: entry}


def test_the_backward_pass_goes_to_the_backend_that_ran_the_forward(cache):
    x, w = conv_call()
    y, ctx = auto.conv2d_forward(x, w)
    picked = kernels.get(auto.pick_of(ctx))
    _, own_ctx = picked.conv2d_forward(x, w)
    dy = np.ones_like(y)
    for got, expected in zip(auto.conv2d_backward(dy, ctx), picked.conv2d_backward(dy, own_ctx)):
        np.testing.assert_array_equal(got, expected)


def test_auto_hands_out_its_picks_own_ctx_and_its_backward_takes_no_other_kind(cache):
    x, w = conv_call()
    y, ctx = auto.conv2d_forward(x, w)
    assert type(ctx) is Context and ctx.backend == auto.pick_of(ctx) in auto.candidates(ctx.problem)
    _, pool_ctx = auto.maxpool2d_forward(x, 2)
    for bad in (pool_ctx, Context("auto", "conv2d", ctx.problem, {}), Context("reference", "conv2d", ctx.problem, {})):
        with pytest.raises(TypeError, match=r"ctx must come from auto\.conv2d_forward"):
            auto.conv2d_backward(np.ones_like(y), bad)


@pytest.mark.subprocess
def test_a_cached_pick_is_used_without_measuring_again(cache, monkeypatch):
    x, w = conv_call()
    auto.conv2d_forward(x, w)
    entry = next(iter(auto.picks().values()))
    # Another process with the same cache file measures nothing and takes the cached pick
    code = ("import numpy as np, kernels.auto as a\n"
            "a.tune = lambda *args: (_ for _ in ()).throw(AssertionError('measured again'))\n"
            "x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)\n"
            "w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)\n"
            "print(a.pick_of(a.conv2d_forward(x, w)[1]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # the subprocess draws other numbers (one generator for both), but the signature is the same
    assert out.strip() == entry["backend"]
    # and in this process, a forgotten memo is refilled from the disk
    auto._forget()
    monkeypatch.setattr(auto, "tune", lambda *args: pytest.fail("measured again"))
    assert auto.pick_of(auto.conv2d_forward(x, w)[1]) == entry["backend"]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"machine": "elsewhere", "picks": {"x": {}}}),
                                     json.dumps([1, 2])])
def test_a_damaged_or_foreign_cache_is_measured_afresh(cache, content):
    cache.write_text(content)
    x, w = conv_call()
    auto.conv2d_forward(x, w)
    data = json.loads(cache.read_text())
    assert data["machine"] == auto._machine() and len(data["picks"]) == 1


def test_an_unwritable_cache_warns_and_still_works(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CONVBENCH_TUNING_CACHE", str(blocker / "tuning.json"))  # parent is a file
    auto._forget()
    x, w = conv_call()
    with pytest.warns(RuntimeWarning, match="cannot write the tuning cache"):
        y, _ = auto.conv2d_forward(x, w)
    np.testing.assert_allclose(y, kernels.reference.conv2d_forward(x.astype(float), w.astype(float))[0], rtol=1e-4, atol=1e-4)
    auto._forget()


def test_loop_backends_are_timed_only_on_small_problems(cache):
    small = kernels.get("im2col").conv2d_forward(*conv_call())[1].problem
    large = kernels.get("im2col").conv2d_forward(*conv_call(n=8, c=16, size=56, k=64))[1].problem
    assert {"naive", "scipy"} <= set(auto.candidates(small))
    assert "naive" not in auto.candidates(large)
    assert "scipy" in auto.candidates(large)  # its FFTs take the whole batch: no loop over planes
    assert "im2col" in auto.candidates(large) and "auto" not in auto.candidates(large)


def _fake(timed: dict[str, list[float]], untimed: float = 5e-3):
    """Candidates whose timed calls take the given seconds in turn on a fake clock (their warm-up
    call, and the call before each timed one that wakes their pools, take ``untimed``), and the
    clock: no machine's load decides a tuning test."""
    durations = {name: [untimed] + [d for t in times for d in (untimed, t)] for name, times in timed.items()}
    now, calls = [0.0], {name: [] for name in durations}

    def candidate(name):
        def call():
            now[0] += durations[name][len(calls[name])]
            calls[name].append(1)
        return call

    return {name: candidate(name) for name in durations}, (lambda: now[0]), calls


def test_of_two_candidates_whose_times_overlap_the_tuning_picks_the_faster(monkeypatch):
    """B's fastest call (0.8 ms) beats every one of A's, and B's first timed call beats A's: a pick
    by one call or by the fastest would be B. A's median (1.0 ms) is the better, and wins."""
    a = [1.0e-3, 1.05e-3, 0.95e-3, 1.0e-3, 1.02e-3, 0.98e-3, 1.0e-3, 1.01e-3, 0.99e-3]
    b = [0.8e-3, 1.3e-3, 1.25e-3, 0.85e-3, 1.3e-3, 1.2e-3, 1.3e-3, 1.25e-3, 1.3e-3]
    calls, clock, made = _fake({"A": a, "B": b})
    tuned = auto.tune(calls, clock=clock, settle=lambda: None, turn_seconds=0)
    assert auto._entry(tuned)["backend"] == "A"
    assert tuned["turns"] >= auto.MIN_TURNS and tuned["seconds"]["A"] == pytest.approx(1.0e-3)
    assert len(made["A"]) == len(made["B"]) == 1 + 2 * tuned["turns"]  # the warm-up and wake-ups outside the timing


def test_a_candidate_over_3x_the_best_median_leaves_the_turns_and_a_close_one_is_named():
    durations = {"fast": [0.01] * 10, "close": [0.0102] * 10, "slow": [0.05] * 10}
    calls, clock, made = _fake(durations)
    tuned = auto.tune(calls, clock=clock, settle=lambda: None, turn_seconds=0)
    entry = auto._entry(tuned)
    assert entry["backend"] == "fast" and entry["close"] == ["close"]
    assert len(made["slow"]) == 3  # the warm-up, a wake-up and one timed call
    assert len(made["fast"]) == len(made["close"]) == 1 + 2 * tuned["turns"] >= 1 + 2 * auto.MIN_TURNS


def test_a_turn_is_calls_back_to_back_so_a_stall_after_the_wake_up_does_not_decide_the_pick():
    """A pooled candidate whose first timed call of every turn stalls (2.5 ms, its pool's thread
    waking) and whose calls then take 0.2 ms, against a steady one at 0.5 ms: one call a turn would
    pick the steady one; turns of 2 ms pick the pooled one, as a training step would run it."""
    now, made = [0.0], {"pooled": [], "steady": []}

    def call(name):
        def run():
            after_wake = made[name][-2:] == ["settled", "called"]  # the first call after the waking one
            made[name].append("called")
            now[0] += 0.5e-3 if name == "steady" else 2.5e-3 if after_wake else 0.2e-3
        return run

    def settle():
        for name in made:
            made[name].append("settled")

    calls = {name: call(name) for name in made}
    one_call = auto.tune(calls, clock=lambda: now[0], settle=settle, turn_seconds=0)
    assert auto._entry(one_call)["backend"] == "steady"
    tuned = auto.tune(calls, clock=lambda: now[0], settle=settle)
    assert auto._entry(tuned)["backend"] == "pooled" and tuned["seconds"]["pooled"] == pytest.approx(0.2e-3)


def test_every_timed_call_waits_for_the_pools_of_the_one_before():
    settled = []
    calls, clock, made = _fake({"a": [1e-3] * 10, "b": [2e-3] * 10})
    tuned = auto.tune(calls, clock=clock, settle=lambda: settled.append(1), turn_seconds=0)
    assert len(settled) == (sum(map(len, made.values())) - 2) // 2  # before every timed call and its waking call


@pytest.mark.parametrize("changed", ["code_identity", "_cpu"])
def test_a_pick_made_on_other_code_or_another_cpu_is_measured_again(cache, monkeypatch, changed):
    x, w = conv_call()
    auto.conv2d_forward(x, w)
    (key, before), = auto.picks().items()
    assert before["code"] == auto.code_identity() and before["cpu"] == auto._cpu()
    auto._forget()
    monkeypatch.setattr(auto, changed, lambda: "changed")  # a backend edited, or the cache carried to another CPU
    tuned = []
    real_tune = auto.tune
    monkeypatch.setattr(auto, "tune", lambda calls: tuned.append(1) or real_tune(calls))
    auto.conv2d_forward(x, w)
    assert tuned == [1] and auto.picks()[key][{"code_identity": "code", "_cpu": "cpu"}[changed]] == "changed"
    auto._forget()
    auto.conv2d_forward(x, w)  # measured once for this code: cached from then on
    assert tuned == [1]


def test_editing_any_module_of_the_kernels_changes_the_code_identity(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    for module in Path(auto.__file__).parent.glob("*.py"):
        shutil.copy(module, tmp_path)
    monkeypatch.setattr(auto, "__file__", str(tmp_path / "auto.py"))
    identities = []
    for edit in ("", "# a comment\n", "# a comment\n"):
        with open(tmp_path / "numba_jit.py", "a") as f:
            f.write(edit)
        auto.code_identity.cache_clear()
        identities.append(auto.code_identity())
    auto.code_identity.cache_clear()
    assert len(set(identities)) == 3 and all(len(i) == 16 for i in identities)


def test_once_picked_a_call_validates_nothing_before_its_pick_which_validates_it(cache, monkeypatch):
    x, w = conv_call()
    auto.conv2d_forward(x, w, stride=1)
    monkeypatch.setattr(auto, "check_conv2d", lambda *args: pytest.fail("validated before the memo"))
    monkeypatch.setattr(auto, "tune", lambda *args: pytest.fail("tuned again"))
    y, ctx = auto.conv2d_forward(x, w, stride=1)
    assert y.shape == (2, 4, 7, 7) and ctx.backend == auto.pick_of(ctx) != "auto"
    with pytest.raises(kernels.ShapeError, match="stride"):  # hashes as 1: the memo hits, the pick refuses it
        auto.conv2d_forward(x, w, stride=True)
    monkeypatch.setattr(auto, "check_conv2d", check_conv2d)
    with pytest.raises(TypeError):  # not an array: never memoised, validated by auto itself
        auto.conv2d_forward(x.tolist(), w)


@pytest.mark.parametrize("dtype", [np.int32, np.complex64])
def test_a_dtype_as_wide_as_a_picked_one_gets_the_picks_error_and_float64_its_own_pick(cache, dtype):
    """The memo tells dtypes apart by itemsize (float32 from float64): a refused dtype of the same
    width hits a pick's entry and that pick refuses it, as every backend does."""
    x, w = conv_call()
    wide = np.float32 if np.dtype(dtype).itemsize == 4 else np.float64
    auto.conv2d_forward(x.astype(wide), w.astype(wide))
    with pytest.raises(TypeError, match="float32 or float64"):
        auto.conv2d_forward(x.astype(dtype), w.astype(dtype))
    other = np.float64 if wide is np.float32 else np.float32
    auto.conv2d_forward(x.astype(other), w.astype(other))
    assert len(auto.picks()) == 2


def _kernel_problem(p):
    """``kernels``' own problem of a catalogue layer, from zero-stride arrays (no memory)."""
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (p.N, p.C, p.H, p.W), (0, 0, 0, 0))
    if p.op != "conv2d":
        return check_pool2d(x, (p.R, p.S), p.stride, p.padding)
    w = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (p.K, p.C // p.groups, p.R, p.S), (0, 0, 0, 0))
    return check_conv2d(x, w, None, p.stride, p.padding, p.dilation, p.groups)


def test_a_loop_backend_is_not_timed_on_few_outputs_of_wide_windows(cache):
    """naive's cost hint counts the window product too: ResNet-18's layer4_conv_s2 at batch 1 has
    only 25,088 output elements, but each sums 2,304 products (1.1 s a call), and auto's
    tuning once timed it four times in every run that met the layer."""
    layer = next(p for p in load_suite("resnet18") if p.name == "layer4_conv_s2")
    assert "naive" not in auto.candidates(_kernel_problem(layer))
    assert not layer.worth_timing("naive")


@pytest.mark.parametrize("batch", [1, 8])
def test_the_harness_and_auto_read_the_cost_hint_alike(batch):
    """Every layer of every suite: the harness's ``worth_timing`` and auto's candidates agree."""
    for suite in suite_names():
        for layer in load_suite(suite, batch):
            for backend in auto.candidates(_kernel_problem(layer.with_batch(1))) + ["naive"]:
                assert layer.worth_timing(backend) == (backend in auto.candidates(_kernel_problem(layer))), (
                    suite, layer.name, backend)


def test_each_signature_and_thread_count_is_tuned_on_its_own(cache, monkeypatch):
    x, w = conv_call()
    auto.conv2d_forward(x, w)
    auto.conv2d_forward(x, w, padding=1)
    auto.maxpool2d_forward(x, 2)
    monkeypatch.setattr(auto, "_read_numba", lambda: 99)
    monkeypatch.setattr(auto, "_read_blas", lambda: 1)
    auto.conv2d_forward(x, w)
    keys = list(auto.picks())
    assert len(keys) == 4 and sum(k.endswith("threads=99 blas=1") for k in keys) == 1


def test_picks_made_with_other_blas_threads_are_kept_apart(cache):
    """A training step on auto gives BLAS one thread beside numba's pool (``timing.one_pool``):
    the picks it makes are timed with the pools it runs and kept apart from a run's."""
    x, w = conv_call()
    for blas in (1, 2):
        with threadpool_limits(limits=blas, user_api="blas"):
            auto.conv2d_forward(x, w)
    assert sorted(key.rsplit(" ", 1)[-1] for key in auto.picks()) == ["blas=1", "blas=2"]


def test_clear_forgets_every_pick(cache):
    auto.conv2d_forward(*conv_call())
    auto.clear()
    assert auto.picks() == {} and not cache.exists() and not auto._memo and not auto._calls


def _key_of(x, w) -> str:
    _, ctx = kernels.reference.conv2d_forward(x, w)
    return auto._key("conv2d", ctx.problem, auto._threads())


@pytest.mark.parametrize("damage", ["a bare name", "auto itself", "a yardstick", "deep", "not an object"])
def test_any_cache_content_is_measured_afresh_not_obeyed(cache, damage):
    """The class behind three crashes: a cache entry is used only if it names a candidate."""
    x, w = conv_call()
    entry = {"a bare name": "numba", "auto itself": {"backend": "auto"}, "a yardstick": {"backend": "torch"},
             "not an object": [1, 2]}.get(damage)
    content = ("[" * 100_000 if damage == "deep"
               else json.dumps({"machine": auto._machine(), "picks": {_key_of(x, w): entry}}))
    cache.write_text(content)
    y, ctx = auto.conv2d_forward(x, w)
    assert auto.pick_of(ctx) in auto.candidates(ctx.problem)


@pytest.mark.subprocess
def test_processes_sharing_the_cache_keep_each_others_picks(cache):
    cache.write_text(json.dumps({"machine": auto._machine(),
                                 "picks": {f"old {i}": {"backend": "im2col"} for i in range(3_000)}}))
    code = ("import sys, kernels.auto as a\n"
            "for i in range(20): a._store(f'{sys.argv[1]} {i}', {'backend': 'numba'})\n")
    writers = [subprocess.Popen([sys.executable, "-c", code, name]) for name in ("left", "right")]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    keys = set(auto.picks())
    assert {f"{name} {i}" for name in ("left", "right") for i in range(20)} <= keys and len(keys) == 3_040


def test_a_cache_that_cannot_be_replaced_leaves_no_temporary_file(cache):
    cache.mkdir()  # os.replace cannot put a file where a folder is
    x, w = conv_call()
    with pytest.warns(RuntimeWarning, match="cannot write the tuning cache"):
        auto.conv2d_forward(x, w)
    assert list(cache.parent.glob("*.tmp")) == []


def test_bind_hands_out_the_pick_timed_on_forward_backward_or_on_the_forward_alone(cache, monkeypatch):
    """A forward-only caller (inference, a forward row) gets the fastest forward pass, timed and
    cached apart from the signature's pick, and its tuning runs no backward pass."""
    x, w = conv_call()
    backwards = rig_auto(monkeypatch, {"forward+backward": "numba", "forward": "im2col"})
    forward = lambda be: be.conv2d_forward(x, w, padding=1)  # noqa: E731
    assert auto.bind(forward).name == "numba" and len(backwards) == 2  # auto's own pick, on forward+backward
    assert auto.bind(forward, "forward").name == "im2col" and len(backwards) == 2
    keys = sorted(auto.picks())
    assert [k.split(" N=")[0] for k in keys] == ["conv2d", "conv2d forward"]
    assert auto.picks()[keys[1]]["backend"] == "im2col" and auto.bind(forward, "forward").name == "im2col"
    with pytest.raises(ValueError, match="timed must be .*'backward'"):
        auto.bind(forward, "backward")
