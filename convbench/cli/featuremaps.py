"""``convbench featuremaps``: seed 003's picture, an image through conv -> ReLU -> pool stacks."""

from __future__ import annotations

from pathlib import Path

from convbench.cli.options import backend_name, load_backend, whole


def register(sub) -> None:
    fm = sub.add_parser(
        "featuremaps", help="seed 003's picture: an image through conv -> ReLU -> pool stacks",
        description="Pass a grey image through seed 003's three layers (2 edge filters 3x3, 3 random 5x5, "
                    "1 random 7x7; each followed by ReLU and a 2x2 max-pool) on the chosen backend, and save "
                    "each layer's maps as OUT/layerN.png.")
    fm.add_argument("image", nargs="?", help="an image file (default: the photograph matplotlib ships)")
    fm.add_argument("--backend", help="default $CONVBENCH_BACKEND or numba")
    fm.add_argument("--seed", type=whole("--seed", 0), default=0, help="seed of the random filters of layers 2 and 3")
    fm.add_argument("--out", default="featuremaps", metavar="DIR", help="default ./featuremaps")
    fm.set_defaults(execute=execute)


def execute(args) -> int:
    from convbench.bench.runs import writable_folder
    from convbench.cnn.featuremaps import write_feature_maps

    backend = load_backend(backend_name(args))
    for path in write_feature_maps(args.image, backend, writable_folder(Path(args.out)), args.seed):
        print(path)
    return 0
