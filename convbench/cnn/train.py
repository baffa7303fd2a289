"""Training a model on digits with a chosen backend: the loop, evaluation, and what it records.

``train(config)`` returns a result dict (model, backend, accuracies, wall times, per-epoch
history) and reports progress through an optional callback; it never prints.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import kernels
from convbench.bench import limits, timing
from convbench.bench.errors import clip
from convbench.cnn.data import (
    DataError,
    Digits,
    embedded_digits,
    load_idx,
    prepare,
    select_classes,
)
from convbench.cnn.layers import SGD
from convbench.cnn.models import build_model, model_spec
from convbench.cnn.tune import bind, tune_step

EMBEDDED_HOLDOUT = 1000  # test images held out of the 5,000 embedded digits


@dataclass
class TrainConfig:
    """What to train and how; fields left None take the model's own (``models.MODELS``)."""

    model: str = "lenet5"
    backend: str = "numba"
    epochs: int = 1
    iterations: int | None = None  # stop after this many steps instead (seed 002: 2,000)
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    decay: float | None = None
    preprocess: str | None = None  # standardise (seed 000's per-pixel) or scale (x / 255)
    seed: int = 0
    dtype: str = "float32"
    classes: tuple[int, ...] | None = None
    val_fraction: float = 0.1
    data_dir: str | None = None
    holdout: int | None = None  # test on the last N images of the data, train on the rest
    freeze_conv: bool = False
    freeze_dense: bool = False

    def __post_init__(self):
        for key, value in model_spec(self.model).training().items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        limits.whole("epochs", self.epochs, 1, limits.MAX_EPOCHS)
        limits.whole("batch-size", self.batch_size)
        if self.iterations is not None:
            limits.whole("iterations", self.iterations)
        if self.holdout is not None:
            limits.whole("holdout", self.holdout)
        limits.whole("seed", self.seed, 0)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}")
        limits.number("lr", self.lr, 0, limits.MAX_LR, low_open=True)
        limits.number("momentum", self.momentum, 0, 1, high_open=True)
        limits.number("decay", self.decay, 0, limits.MAX_LR)
        limits.number("val-fraction", self.val_fraction, 0, 1, high_open=True)
        if (self.freeze_conv or self.freeze_dense) and self.model != "seed000":
            raise ValueError("freezing a layer is seed000's option only")


class Diverged(Exception):
    """A training whose loss stopped being a finite number: the result would mean nothing."""


def load_data(config: TrainConfig):
    """(prepared training data, standardised test images, test labels, description of the source)."""
    if config.data_dir is None:
        digits = embedded_digits()
        order = np.random.default_rng(config.seed).permutation(len(digits.labels))  # the file is sorted by class
        digits = Digits(digits.images[order], digits.labels[order], digits.source)
        holdout = config.holdout or EMBEDDED_HOLDOUT
        train, test = _split(digits, holdout)
    elif config.holdout:
        try:
            digits = load_idx(config.data_dir, "train")
        except DataError:
            digits = load_idx(config.data_dir, "test")
        train, test = _split(digits, config.holdout)
    else:
        train, test = load_idx(config.data_dir, "train"), load_idx(config.data_dir, "test")
    prepared = prepare(train, classes=config.classes, val_fraction=config.val_fraction, seed=config.seed,
                       dtype=config.dtype, preprocess=config.preprocess)
    test_images, test_labels = select_classes(test, config.classes)
    source = f"{train.source}: {len(train.labels)} for training and validation, {len(test.labels)} for testing"
    return prepared, prepared.standardise(test_images, config.dtype), test_labels, source


def _split(digits: Digits, holdout: int) -> tuple[Digits, Digits]:
    if not 0 < holdout < len(digits.labels):
        raise DataError(f"--holdout {holdout}: {digits.source} has {len(digits.labels)} images")
    cut = len(digits.labels) - holdout
    return (Digits(digits.images[:cut], digits.labels[:cut], digits.source),
            Digits(digits.images[cut:], digits.labels[cut:], digits.source))


def evaluate(model, x: np.ndarray, y: np.ndarray, batch: int = 500) -> tuple[float, float]:
    """Mean loss and accuracy over (x, y), forward passes only."""
    if len(y) == 0:
        return float("nan"), float("nan")
    losses, correct = 0.0, 0
    for start in range(0, len(y), batch):
        out = model.forward(x[start : start + batch])
        losses += model.loss(out, y[start : start + batch])[0] * len(out)
        correct += int(np.sum(model.predictions(out) == y[start : start + batch]))
    return losses / len(y), correct / len(y)


CHECKPOINT = "checkpoint.npz"


def save_checkpoint(path: Path, config: TrainConfig, model, optimizer, rng, progress: dict) -> None:
    """Everything a training needs to go on from the end of an epoch, in one file replaced
    atomically: a kill at any moment leaves the previous epoch's checkpoint or this one."""
    state = {"config": asdict(config), "rng": rng.bit_generator.state, "sgd_t": optimizer.t, **progress}
    arrays = {f"param:{i}.{key}": w for i, layer in enumerate(model.layers) for key, w in layer.params.items()}
    arrays.update({f"velocity:{name}": v for name, v in optimizer.state(model.layers).items()})
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        np.savez(f, state=np.array(json.dumps(state)), **arrays)
    try:
        os.replace(f.name, path)
    except OSError:
        os.unlink(f.name)
        raise


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(the state, the arrays) of a checkpoint; DataError naming the file when it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        state = json.loads(str(arrays.pop("state")))
        TrainConfig(**state["config"])
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a checkpoint this trainer can resume ({clip(str(exc))})") from None
    return state, arrays


def train(config: TrainConfig, progress: Callable[[dict], None] | None = None, result: dict | None = None,
          checkpoint: Path | None = None, resume: bool = False, data: tuple | None = None) -> dict:
    """Train and test; ``progress`` receives a dict after every step and every epoch.

    ``result`` (a dict, filled as training goes) keeps the history so far if training is interrupted.
    With ``checkpoint`` (a file), the state at the end of every epoch is saved there; with
    ``resume``, training goes on from that file's epoch (the config is the file's) and ends as
    the uninterrupted training would have. ``data``: what ``load_data(config)`` returns, if the
    caller read it already (to refuse a bad data file before anything else).
    """
    started = time.perf_counter()
    progress = progress or (lambda event: None)
    data, x_test, y_test, source = data or load_data(config)
    labels = data.y_train
    if config.model == "seed000" and len(data.classes) != 2:
        raise DataError(f"seed000 is a two-class model: give --classes A,B; got {len(data.classes)} classes")
    model = _checked_model(config, data, y_test, source)
    optimizer = SGD(config.lr, config.momentum, config.decay)
    rng = np.random.default_rng(config.seed + 1)
    per_epoch = -(-len(labels) // config.batch_size)
    total = config.iterations or config.epochs * per_epoch
    history, curve, steps, train_s, epoch = [], [], 0, 0.0, 0
    if resume:
        history, steps, train_s, epoch, curve = _restore(checkpoint, model, optimizer, rng)
    result = {} if result is None else result
    result.update({"model": config.model, "backend": config.backend, "config": asdict(config), "data": source,
                   "classes": list(data.classes), "iterations": total, "history": history, "curve": curve})
    with timing.one_pool(config.backend):  # numba: BLAS on one thread while it trains
        _tune(model, config, data.x_train[:config.batch_size], labels[:config.batch_size], result)
        while steps < total:
            epoch += 1
            order = rng.permutation(len(labels))
            sums, steps, train_s = _epoch(model, optimizer, data, order, config, steps, total, train_s, curve, progress)
            val_loss, val_accuracy = evaluate(model, data.x_val, data.y_val)
            history.append({"epoch": epoch, "step": steps, "train_loss": sums["loss"] / sums["steps"],
                            "train_accuracy": sums["accuracy"] / sums["steps"],
                            "val_loss": val_loss, "val_accuracy": val_accuracy})
            progress({"event": "epoch", **history[-1]})
            if checkpoint is not None:
                save_checkpoint(checkpoint, config, model, optimizer, rng,
                                {"epoch": epoch, "steps": steps, "train_s": train_s, "history": history,
                                 "curve": curve})
    result["test_loss"], result["test_accuracy"] = evaluate(model, x_test, y_test)
    result["test_images"] = int(len(y_test))
    result["train_s"] = train_s
    result["step_ms_mean"] = 1e3 * train_s / steps
    result["wall_s"] = time.perf_counter() - started
    return result


def _built(config: TrainConfig):
    """The model ``config`` trains, freshly initialised."""
    return build_model(config.model, kernels.get(config.backend), seed=config.seed, dtype=config.dtype,
                       **({"freeze_conv": config.freeze_conv, "freeze_dense": config.freeze_dense}
                          if config.model == "seed000" else {}))


def _tune(model, config: TrainConfig, x, y, result: dict) -> None:
    """On a backend that picks among others (auto): the picks that make a step on a batch like
    ``x, y`` fastest, bound to ``model``'s layers and listed in ``result["picks"]`` by layer."""
    if kernels.traits(config.backend).picks:
        bound = tune_step(lambda: (_built(config), SGD(config.lr, config.momentum, config.decay)), x, y)
        bind(model, bound)
        result["picks"] = {str(i): backend.pick.name for i, backend in bound.items()}


def _checked_model(config: TrainConfig, data, y_test, source: str):
    """The model to train, after checking that every label is one of the classes it tells apart."""
    model = _built(config)
    outputs = model.forward(data.x_train[:1]).shape[1]
    known = 2 if outputs == 1 else outputs  # one sigmoid output tells two classes apart
    for what, y in (("training", data.y_train), ("validation", data.y_val), ("test", y_test)):
        if len(y) and not 0 <= int(y.max()) < known:
            raise DataError(f"{source}: a {what} label is {int(y.max())}, but {config.model} tells {known} "
                            f"classes (0 to {known - 1}) apart; choose the classes with --classes")
    return model


def _restore(checkpoint: Path, model, optimizer: SGD, rng) -> tuple:
    """Put a checkpoint's weights, velocities and random state back; return its history, steps,
    training seconds, epoch and curve."""
    state, arrays = load_checkpoint(checkpoint)
    for i, layer in enumerate(model.layers):
        for key, w in layer.params.items():
            w[...] = arrays[f"param:{i}.{key}"]
    optimizer.restore(model.layers, {k.removeprefix("velocity:"): v for k, v in arrays.items()
                                     if k.startswith("velocity:")}, state["sgd_t"])
    rng.bit_generator.state = state["rng"]
    return state["history"], state["steps"], state["train_s"], state["epoch"], state.get("curve", [])


def _epoch(model, optimizer: SGD, data, order, config: TrainConfig, steps: int, total: int, train_s: float,
           curve: list, progress: Callable[[dict], None]) -> tuple[dict, int, float]:
    """One pass over ``order`` in batches (stopping at ``total`` steps): the sums of loss and
    accuracy, the steps so far and the training seconds so far."""
    sums = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
    for start in range(0, len(order), config.batch_size):
        if steps == total:
            break
        index = order[start : start + config.batch_size]
        t0 = time.perf_counter()
        with np.errstate(all="ignore"):  # an overflow is caught below, as a loss that is not finite
            loss, accuracy = model.train_step(data.x_train[index], data.y_train[index], optimizer)
        train_s += time.perf_counter() - t0
        if not np.isfinite(loss):
            raise Diverged(f"training diverged at step {steps + 1}: the loss is {loss} (lr {config.lr:g}, "
                           f"momentum {config.momentum:g}); try a smaller --lr")
        steps += 1
        sums["loss"] += loss
        sums["accuracy"] += accuracy
        sums["steps"] += 1
        curve.append([steps, float(loss), float(accuracy)])
        progress({"event": "step", "step": steps, "total": total, "loss": loss, "accuracy": accuracy})
    return sums, steps, train_s


def default_out(model: str, backend: str, resume: bool) -> Path:
    """``runs/train-MODEL-BACKEND``: with ``resume``, the one that holds a checkpoint; else the
    first of it, -2, -3 ... that holds no finished training (train.json) and no unfinished one."""
    base = Path("runs") / f"train-{model}-{backend}"
    for n in range(1, 1000):
        out = base if n == 1 else base.with_name(f"{base.name}-{n}")
        done, unfinished = (out / "train.json").exists(), (out / CHECKPOINT).exists()
        if (resume and unfinished) or (not resume and not done and not unfinished):
            return out
        if resume and not out.exists():
            break
    raise DataError(f"--resume: no unfinished training under {base}*; give --out" if resume
                    else f"{base}, -2 ... -999 all hold trainings; give --out")


def check_out(out: Path, resume: bool = False) -> None:
    """Refuse, before any training, an --out that the results could not be written to, that
    holds a training's results or a ``convbench run``/``step`` run; with ``resume``, one that
    holds no checkpoint to go on from. Then make it."""
    from convbench.bench.results import MEASUREMENTS, PLAN
    from convbench.bench.runs import writable_folder

    writable_folder(out)
    if (out / PLAN).exists() or (out / MEASUREMENTS).exists():
        raise DataError(f"--out {out} holds a `convbench run` or `step` run; choose another folder")
    if resume and not (out / CHECKPOINT).exists():
        raise DataError(f"--resume: {out} holds no {CHECKPOINT} to go on from")
    if not resume and (out / CHECKPOINT).exists():
        raise DataError(f"--out {out} holds an unfinished training; go on with --resume or choose another folder")
    if not resume and (out / "train.json").exists():
        raise DataError(f"--out {out} already holds a train.json; choose another folder")
    out.mkdir(parents=True, exist_ok=True)


def write_outputs(result: dict, out: Path) -> list[Path]:
    """OUT/train.json (everything but the per-step curve), OUT/history.csv (per epoch),
    OUT/steps.csv (every step's training loss and accuracy) and OUT/curves.png."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "train.json", out / "history.csv", out / "steps.csv", out / "curves.png"]
    summary = {k: v for k, v in result.items() if k != "curve"}
    paths[0].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    history = pd.DataFrame(result["history"])
    history.to_csv(paths[1], index=False)
    steps = pd.DataFrame(result.get("curve") or [], columns=["step", "train_loss", "train_accuracy"])
    steps.to_csv(paths[2], index=False)
    _plot_curves(history, steps, f"{result['model']} on {result['backend']}", paths[3])
    return paths


def redraw(out: Path) -> Path:
    """OUT/curves.png drawn again from what ``write_outputs`` wrote there (after a change to the
    plot's code; reproduce.sh --reports)."""
    import pandas as pd

    out = Path(out)
    result = json.loads((out / "train.json").read_text())
    history, steps = pd.read_csv(out / "history.csv"), pd.read_csv(out / "steps.csv")
    _plot_curves(history, steps, f"{result['model']} on {result['backend']}", out / "curves.png")
    return out / "curves.png"


def running_window(steps: int) -> int:
    """Steps in the training curve's running mean: about 2 % of them, at least 5; 1 (no mean drawn)
    for a training too short to smooth (under 20 steps)."""
    return 1 if steps < 20 else max(5, steps // 50)


def _plot_curves(history, steps, title: str, path: Path) -> None:
    """Training loss and accuracy step by step (faint) and as a running mean (``running_window``),
    with the validation figures at each epoch's end: a curve even after a single epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss, accuracy) = plt.subplots(1, 2, figsize=(10, 4))
    window = running_window(len(steps))
    for ax, column in ((loss, "train_loss"), (accuracy, "train_accuracy")):
        if len(steps):
            ax.plot(steps.step, steps[column], color="C0", alpha=0.25 if window > 1 else 1.0, linewidth=0.8,
                    label="train (each step)")
        if window > 1:
            ax.plot(steps.step, steps[column].rolling(window, min_periods=1).mean(), color="C0",
                    label=f"train (running mean of {window} steps)")
    loss.plot(history.step, history.val_loss, "o-", color="C1", label="validation (each epoch)")
    accuracy.plot(history.step, history.val_accuracy, "o-", color="C1", label="validation (each epoch)")
    loss.set(xlabel="step", ylabel="loss", title=f"{title}: loss")
    accuracy.set(xlabel="step", ylabel="accuracy", title=f"{title}: accuracy")
    for ax in (loss, accuracy):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
