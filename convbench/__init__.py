"""convbench: the benchmark harness, the CNN and the command line, all built on ``kernels``.

``convbench.load_results(path)`` reads a run directory into a pandas DataFrame.
"""

__version__ = "0.1.0"
__all__ = ["load_results"]


def __getattr__(name: str):
    if name == "load_results":  # imported on first use: pandas is slow to import for --help
        from convbench.bench.results import load_results

        return load_results
    raise AttributeError(f"module 'convbench' has no attribute {name!r}")
