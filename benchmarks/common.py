"""Shared by the asv suites: problems from convbench's catalogue, and setup that skips the impossible."""

import kernels

try:
    from convbench.bench.suites import load_suite
except ImportError:  # a commit from before convbench/bench/ (asv measures old commits with this suite)
    from convbench.suites import load_suite


def worth_timing(backend, p) -> bool:
    """The backend's own cost hint (``kernels.traits``); older commits kept it in ``kernels.auto``,
    and the oldest had none, where the naive loops are left out (asv runs this file on every
    commit it measures, so it may import only what each of them has, or guard it)."""
    if hasattr(kernels, "traits") and hasattr(p, "worth_timing"):
        return p.worth_timing(backend)
    try:
        from kernels.auto import LOOP_LIMITS, loop_work
    except ImportError:
        return backend != "naive"
    return loop_work(backend, p) <= LOOP_LIMITS.get(backend, float("inf"))


def problem(suite, name, batch=None):
    return next(p for p in load_suite(suite, batch) if p.name == name)


def prepare(backend, p, dtype):
    """(backend, seeded inputs, a ctx) after one warm-up call; NotImplementedError skips the case."""
    if not worth_timing(backend, p):
        raise NotImplementedError(f"{backend} is too slow on {p.name} for repeated timing")
    try:
        be = kernels.get(backend)
    except kernels.BackendUnavailable as exc:
        raise NotImplementedError(str(exc)) from None
    arrays = p.inputs(dtype)
    _, ctx = p.forward(be, arrays)  # warm-up: numba compiles or loads its cache here, outside timing
    p.backward(be, arrays, ctx)
    return be, arrays, ctx


class _KernelBenchmark:
    """What Conv2d and Pool2d share; subclasses set PROBLEMS and params. (asv does not collect
    names that start with an underscore, so this base is not a benchmark itself.)"""

    PROBLEMS: dict = {}
    param_names = ["backend", "problem", "dtype"]
    timeout = 300

    def setup(self, backend, name, dtype):
        self.p = self.PROBLEMS[name]
        self.be, self.arrays, self.ctx = prepare(backend, self.p, dtype)

    def time_forward(self, backend, name, dtype):
        self.p.forward(self.be, self.arrays)

    def time_forward_backward(self, backend, name, dtype):
        _, ctx = self.p.forward(self.be, self.arrays)
        self.p.backward(self.be, self.arrays, ctx)

    def track_extra_mib_forward_backward(self, backend, name, dtype):
        """The kernel's own allocations at their peak (tracemalloc, which sees numpy's buffers), as
        the harness measures them; asv's peakmem_ would count the whole process (numba, scipy and
        their imports) and not the kernel."""
        import tracemalloc

        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            _, ctx = self.p.forward(self.be, self.arrays)
            self.p.backward(self.be, self.arrays, ctx)
            return (tracemalloc.get_traced_memory()[1] - before) / 2**20
        finally:
            tracemalloc.stop()

    track_extra_mib_forward_backward.unit = "MiB"
