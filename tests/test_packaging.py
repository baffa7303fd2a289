"""What an install brings: no two installed distributions writing the same package."""

from __future__ import annotations

from importlib import metadata


def test_no_two_distributions_install_the_same_package():
    """py-cpuinfo and py-cpuinfo2 (pytest-benchmark's) both install ``cpuinfo/`` and overwrite
    each other's files; any such pair is a broken environment waiting to happen."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        for file in dist.files or ():
            if len(file.parts) == 2 and file.parts[1] == "__init__.py":
                owners.setdefault(file.parts[0], set()).add(dist.metadata["Name"])
    shared = {package: sorted(names) for package, names in owners.items() if len(names) > 1}
    assert not shared, f"packages installed by more than one distribution: {shared}"
