"""IDX reading (gzip and raw, with clear errors), the embedded digits, class selection, standardising."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from convbench.cnn.data import DataError, embedded_digits, load_idx, prepare, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as the MNIST files are written."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_split(folder, split="train", n=6, labels=None, compress=True, prefix=""):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28))
    labels = np.arange(n) % 10 if labels is None else labels
    for kind, array, idx in (("images", images, 3), ("labels", labels, 1)):
        data = idx_bytes(array)
        name = f"{prefix}{split}-{kind}-idx{idx}-ubyte" + (".gz" if compress else "")
        (folder / name).write_bytes(gzip.compress(data) if compress else data)
    return images, labels


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_idx_round_trip(tmp_path, compress):
    images, labels = write_split(tmp_path, "t10k", compress=compress)
    digits = load_idx(tmp_path, "test")
    np.testing.assert_array_equal(digits.images, images)
    np.testing.assert_array_equal(digits.labels, labels)


def test_emnist_images_are_transposed_back(tmp_path):
    images, _ = write_split(tmp_path, "train", prefix="emnist-digits-")
    np.testing.assert_array_equal(load_idx(tmp_path, "train").images, images.transpose(0, 2, 1))


def test_the_real_layout_of_mnist_test_files_is_read(tmp_path):
    write_split(tmp_path, "t10k", n=3)
    assert read_idx(tmp_path / "t10k-images-idx3-ubyte.gz").shape == (3, 28, 28)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x08\x03" + b[2:], r"wrong magic number 0x0803"),
    (lambda b: b[:-5], r"the header promises shape \(6, 28, 28\) \(4704 bytes of data\) but the file holds 4699"),
    (lambda b: b[:6], r"truncated inside its header"),
    (lambda b: b"", r"wrong magic number 0x\(empty\)"),
])
def test_damaged_files_name_the_file(tmp_path, damage, message):
    write_split(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte: {message}"):
        load_idx(tmp_path, "train")


def test_a_truncated_gzip_names_the_file(tmp_path):
    write_split(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: a truncated gzip stream"):
        load_idx(tmp_path, "train")


def signed_labels(values) -> bytes:
    """An IDX file of int8 labels (type 0x09)."""
    return bytes([0, 0, 0x09, 1]) + np.array([len(values)], ">u4").tobytes() + np.array(values, np.int8).tobytes()


@pytest.mark.parametrize("file, content, message", [
    ("train-labels-idx1-ubyte", signed_labels([0, 1, -1, 3, 4, 5]), r"a label is -1; labels are class numbers >= 0"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((6, 10, 10))), r"expected 28x28 uint8 images.*\(6, 10, 10\)"),
    ("train-images-idx3-ubyte", bytes([0, 0, 8, 3]) + np.array([2**32 - 1] * 3, ">u4").tobytes() + b"\0" * 64,
     r"the header promises shape \(4294967295, 4294967295, 4294967295\)"),
    ("train-images-idx3-ubyte.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 200, r"a damaged gzip stream"),
])
def test_data_that_would_crash_or_lie_is_refused_naming_the_file(tmp_path, file, content, message):
    write_split(tmp_path, compress=False)
    for old in tmp_path.glob(file.split("-idx")[0] + "*"):
        old.unlink()
    (tmp_path / file).write_bytes(content)
    with pytest.raises(DataError, match=rf"{file}: {message}"):
        load_idx(tmp_path, "train")


def test_no_images_is_refused(tmp_path):
    write_split(tmp_path, n=0, labels=np.zeros(0))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: holds no images"):
        load_idx(tmp_path, "train")


def test_a_gzip_bomb_is_refused_before_it_fills_the_memory(tmp_path, monkeypatch):
    from convbench.cnn import data

    monkeypatch.setattr(data, "MAX_BYTES", 10_000)
    write_split(tmp_path, n=30)  # 23,536 bytes of images once expanded
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: expands beyond"):
        load_idx(tmp_path, "train")


def test_image_and_label_counts_must_agree(tmp_path):
    write_split(tmp_path, labels=np.arange(5))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz holds 6 images but .*train-labels-idx1-ubyte.gz holds 5 labels"):
        load_idx(tmp_path, "train")


def test_missing_files_and_folders(tmp_path):
    write_split(tmp_path, "train")
    with pytest.raises(DataError, match=r"no file for the test images; expected one named like t10k-images-idx3-ubyte"):
        load_idx(tmp_path, "test")
    with pytest.raises(DataError, match=r"nowhere: no such folder \(--data-dir\)"):
        load_idx(tmp_path / "nowhere")


def test_embedded_digits_are_real_mnist():
    digits = embedded_digits()
    assert digits.images.shape == (5000, 28, 28) and digits.images.dtype == np.uint8
    assert np.bincount(digits.labels).tolist() == [500] * 10
    # real digits: dark background, bright strokes, and a zero looks hollow in the middle
    assert np.median(digits.images) == 0 and digits.images.max() == 255
    zeros = digits.images[digits.labels == 0].mean(axis=0)
    assert zeros[14, 14] < zeros[14, 7] and zeros[14, 14] < zeros[7, 14]


def test_prepare_selects_relabels_splits_and_standardises():
    p = prepare(embedded_digits(), classes=(3, 1), val_fraction=0.2, seed=1)
    assert (len(p.x_train), len(p.x_val)) == (800, 200) and p.classes == (3, 1)
    assert set(p.y_train) == {0, 1} and p.x_train.shape[1:] == (1, 28, 28) and p.x_train.dtype == np.float32
    pixel_means = p.x_train.mean(axis=0)
    assert np.abs(pixel_means).max() < 1e-5  # per-pixel standardisation, seed 000's way


def test_bad_classes():
    with pytest.raises(DataError, match=r"--classes 1,11: .* has no class 11"):
        prepare(embedded_digits(), classes=(1, 11))
