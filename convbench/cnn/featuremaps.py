"""``convbench featuremaps``: seed 003's picture of an image going through conv -> ReLU -> pool stacks.

Seed 003 passes a grey image through three stages: 2 hand-made 3x3 edge filters, then 3 random
5x5 filters, then 1 random 7x7 filter, each followed by ReLU and a 2x2 max-pool (no padding,
no bias). Every convolution and pooling runs on the chosen backend. The default image is the
photograph that matplotlib ships as sample data, so the command works offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convbench.bench.errors import InputError
from kernels import Backend

EDGE_FILTERS = np.array([
    [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],  # vertical edges
    [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],  # horizontal edges
], dtype=np.float64)[:, None]
# 3x3 conv, pool 2, 5x5 conv, pool 2, 7x7 conv, pool 2: (((n - 2) // 2 - 4) // 2 - 6) // 2 >= 1
MIN_SIZE = 42


def default_image() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def read_grey(path: str | Path) -> np.ndarray:
    """An image file as grey levels in [0, 1] (luminance weights as skimage's rgb2gray)."""
    import matplotlib.image

    try:
        image = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot read it as an image ({exc})") from None
    if image.max() > 1:
        image = image / 255
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    if image.ndim != 2 or min(image.shape) < MIN_SIZE:
        raise InputError(f"{path}: seed 003's three layers need an image of at least {MIN_SIZE}x{MIN_SIZE} "
                         f"pixels; got shape {image.shape}")
    return image


def stages(image: np.ndarray, backend: Backend, seed: int = 0) -> list[tuple[str, dict[str, np.ndarray]]]:
    """[(layer name, {'conv': maps, 'relu': maps, 'pool': maps})] for seed 003's three layers."""
    rng = np.random.default_rng(seed)
    filters = [EDGE_FILTERS, rng.random((3, 2, 5, 5)), rng.random((1, 3, 7, 7))]
    x = image[None, None]
    layers = []
    for number, w in enumerate(filters, start=1):
        conv, _ = backend.conv2d_forward(x, w)
        relu = np.maximum(conv, 0)
        pool, _ = backend.maxpool2d_forward(relu, 2)
        layers.append((f"layer{number}", {"conv": conv[0], "relu": relu[0], "pool": pool[0]}))
        x = pool
    return layers


def write_feature_maps(image_path: str | Path | None, backend: Backend, out: Path, seed: int = 0) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_path = image_path or default_image()
    image = read_grey(image_path)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, maps in stages(image, backend, seed):
        channels = len(maps["conv"])
        fig, axes = plt.subplots(3, channels, figsize=(3.2 * channels + 0.5, 9), squeeze=False)
        for row, kind in enumerate(("conv", "relu", "pool")):
            for c in range(channels):
                ax = axes[row][c]
                ax.imshow(maps[kind][c], cmap="gray")
                ax.set_title(f"{kind} map {c + 1} {maps[kind][c].shape[0]}x{maps[kind][c].shape[1]}", fontsize=9)
                ax.set_axis_off()
        fig.suptitle(f"{name} of {Path(image_path).name} on {backend.name}")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)
        written.append(out / f"{name}.png")
    return written
