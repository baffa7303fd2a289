"""SIGKILL `convbench run`, `step` and `train` at random moments, resume them, and check that
nothing finished was lost or repeated.

    python scripts/kill_resume.py [--trials 3] [--seed 0] [--keep DIR]

For each command: one uninterrupted run gives its duration T; then each trial starts the command
afresh, kills it with SIGKILL at a moment drawn uniformly from (0.05 T, 0.95 T), resumes it with
`--resume` (or starts it again if it was killed before it saved anything) and checks:
- run, step: every complete line of measurements.jsonl before the kill is kept byte for byte at
  the start of the file after, and the file ends with each planned measurement exactly once;
- train: every epoch the checkpoint held is the start of the finished history, which has every
  epoch once.
Prints one line per trial and exits 1 if any check failed. About five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convbench.bench.runner import row_key
from convbench.cnn.train import load_checkpoint

# Short enough to repeat, with many moments at which something is saved: run writes its rows at
# the end of every window (1 s here), step after every model, train after every epoch.
RUN = ["run", "--suite", "seeds", "--backends", "im2col,numba", "--threads", "1", "--budget", "0.1", "--window", "1",
       "--quiet"]
STEP = ["step", "--model", "seed000,seed002,lenet5", "--backends", "im2col,numba", "--threads", "1", "--rounds", "20",
        "--quiet"]
TRAIN = ["train", "--model", "seed002", "--backend", "im2col", "--epochs", "6", "--batch-size", "64", "--quiet"]
COMMANDS = {"run": RUN, "step": STEP, "train": TRAIN}


def convbench(args: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convbench", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(args: list[str], out: Path) -> None:
    proc = convbench(args, out)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"convbench {' '.join(args)} exited {proc.returncode}: {err.strip()}")


def saved(name: str, out: Path) -> bytes | list | None:
    """What the killed command had finished: complete measurement lines, or the checkpoint's epochs."""
    if name == "train":
        checkpoint = out / "checkpoint.npz"
        if not checkpoint.exists():
            return None
        return load_checkpoint(checkpoint)[0]["history"]
    measurements = out / "measurements.jsonl"
    if not (out / "plan.json").exists():
        return None
    data = measurements.read_bytes() if measurements.exists() else b""
    return data[: data.rfind(b"\n") + 1]


def _keys(out: Path) -> list[tuple]:
    return [row_key(json.loads(line)) for line in (out / "measurements.jsonl").read_bytes().splitlines()]


def check(name: str, out: Path, before, whole: Path) -> str | None:
    """Why the resumed result breaks the promise, or None."""
    if name == "train":
        history = json.loads((out / "train.json").read_text())["history"]
        if before is not None and history[: len(before)] != before:
            return "an epoch finished before the kill changed"
        epochs = [h["epoch"] for h in history]
        whole_epochs = len(json.loads((whole / "train.json").read_text())["history"])
        return None if epochs == sorted(set(epochs)) and len(epochs) == whole_epochs else f"epochs {epochs}"
    after = (out / "measurements.jsonl").read_bytes()
    if before is not None and not after.startswith(before):
        return "a line written before the kill changed"
    keys = _keys(out)
    if len(keys) != len(set(keys)):
        return f"{len(keys) - len(set(keys))} measurement(s) twice"
    missing = set(_keys(whole)) - set(keys)
    return f"{len(missing)} measurement(s) missing" if missing else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the run directories here (must not exist)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    root.mkdir(parents=True, exist_ok=args.keep is None)
    failures = 0
    for name, command in COMMANDS.items():
        start = time.monotonic()
        finish(command, root / f"{name}-whole")
        whole = time.monotonic() - start
        for trial in range(1, args.trials + 1):
            out = root / f"{name}-{trial}"
            moment = rng.uniform(0.05, 0.95) * whole
            proc = convbench(command, out)
            time.sleep(moment)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            before = saved(name, out)
            if name == "train" and (out / "train.json").exists():  # the kill came after the end
                how, before = "finished before the kill", None
            elif before is None:  # killed before anything was saved: start again from nothing
                shutil.rmtree(out, ignore_errors=True)
                finish(command, out)
                how = "nothing saved yet; started again"
            else:
                finish([name, "--resume", "--quiet"], out)
                kept = len(before) if name == "train" else before.count(b"\n")
                how = f"{kept} {'epoch(s)' if name == 'train' else 'complete line(s)'} kept"
            why = check(name, out, before, root / f"{name}-whole")
            failures += why is not None
            print(f"{name} trial {trial}: SIGKILL at {moment:.1f} s of {whole:.1f} s; {how}; "
                  + ("resumed run complete, each measurement or epoch once" if why is None else f"FAILED: {why}"))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
