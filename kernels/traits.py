"""What the harness may know about a backend beyond its six functions, declared by the backend.

A backend module may set ``TRAITS = Traits(...)``; one that does not gets the defaults (a
contender with no phases, no picks and no limit on what it is worth timing).
``kernels.traits(name)`` reads it; nothing outside ``kernels`` infers any of this from a name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# (op, N, C, K, out_h, out_w, groups, taps) -> a size that grows with the cost of one call
# (taps: the R x S window's size)
Work = Callable[[str, int, int, int, int, int, int, int], float]


@dataclass(frozen=True)
class Traits:
    """A backend's declaration.

    Attributes
    ----------
    contender : bool
        Ranked against the others in reports and targets. False for a backend that picks among
        the others (its time is theirs) and for an outside yardstick.
    picks : bool
        Runs another backend per problem; the module then has ``pick_of(ctx) -> str``.
    phases : bool
        Reports the seconds of its phases (``kernels.phases.record``) when asked.
    baseline : bool
        The backend the speed-ups are measured against.
    work, work_limit : callable and number
        A cheap cost hint for loop-bound backends: a call is worth timing repeatedly only while
        ``work(op, N, C, K, out_h, out_w, groups, taps) <= work_limit`` (K = C for pooling;
        taps = R·S, the window's size).
    own_threads : bool
        Runs its kernels on a thread pool of its own (numba's OpenMP threads), beside BLAS's:
        a training step on it gives BLAS one thread (``convbench.bench.timing.one_pool``).
    exact : bool
        conv2d sums directly, so float32 results on integer-valued inputs are exact. False for a
        backend that may take FFTs, whose rounding is relative to the largest output (INTERFACE.md
        allows about 1e-4 relative for float32).
    """

    contender: bool = True
    picks: bool = False
    phases: bool = False
    baseline: bool = False
    work: Work | None = None
    work_limit: float = math.inf
    own_threads: bool = False
    exact: bool = True

    @property
    def loop_bound(self) -> bool:
        """Its calls are loop-bound (it declares a cost hint, ``work``): naive's take 100-1000x the others'."""
        return self.work is not None

    def worth_timing(self, op: str, N: int, C: int, K: int, out_h: int, out_w: int, groups: int,
                     taps: int) -> bool:
        """False where one call is too slow to time repeatedly (see ``work``)."""
        return not self.loop_bound or self.work(op, N, C, K, out_h, out_w, groups, taps) <= self.work_limit
