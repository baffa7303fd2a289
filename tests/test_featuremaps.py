"""Seed 003's feature maps: offline default image, the stage shapes, the same maps on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from convbench.cli import main
from convbench.cnn.featuremaps import read_grey, stages

pytestmark = pytest.mark.usefixtures("one_turn_tuning")  # auto's picks are not what these check


def test_default_image_works_offline(tmp_path, capsys):
    assert main(["featuremaps", "--backend", "im2col", "--out", str(tmp_path)]) == 0
    for name in ("layer1", "layer2", "layer3"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def small_image(tmp_path_factory):
    import matplotlib.image

    path = tmp_path_factory.mktemp("img") / "small.png"
    yy, xx = np.mgrid[:64, :56]
    matplotlib.image.imsave(path, ((xx > 20) ^ (yy > 30)).astype(float), cmap="gray")
    return path


def test_stage_shapes_follow_seed_003(small_image):
    # 64x56 -> conv 3x3: 62x54 -> pool: 31x27 -> conv 5x5: 27x23 -> pool: 13x11 -> conv 7x7: 7x5 -> pool: 3x2
    layers = stages(read_grey(small_image), kernels.get("im2col"))
    assert [(name, {kind: maps.shape for kind, maps in stage.items()}) for name, stage in layers] == [
        ("layer1", {"conv": (2, 62, 54), "relu": (2, 62, 54), "pool": (2, 31, 27)}),
        ("layer2", {"conv": (3, 27, 23), "relu": (3, 27, 23), "pool": (3, 13, 11)}),
        ("layer3", {"conv": (1, 7, 5), "relu": (1, 7, 5), "pool": (1, 3, 2)}),
    ]


@pytest.mark.parametrize("backend", kernels.names())
def test_every_backend_draws_the_same_maps(backend, small_image):
    image = read_grey(small_image)
    for (name, got), (_, want) in zip(stages(image, kernels.get(backend)), stages(image, kernels.reference)):
        for kind in got:
            np.testing.assert_allclose(got[kind], want[kind], rtol=1e-10, atol=1e-10, err_msg=f"{name} {kind}")


def test_an_image_too_small_for_three_layers(tmp_path):
    import matplotlib.image

    matplotlib.image.imsave(tmp_path / "tiny.png", np.zeros((41, 60)))
    with pytest.raises(ValueError, match=r"tiny.png: seed 003's three layers need an image of at least 42x42"):
        read_grey(tmp_path / "tiny.png")


def test_a_file_that_is_not_an_image(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    assert main(["featuremaps", str(bad), "--backend", "numba", "--out", str(tmp_path / "o")]) == 2
    assert "notes.png: cannot read it as an image" in capsys.readouterr().err
