"""A measurement row made not timed, for the tests of what report, compare and the pages' figures
do with rows that were skipped, failed, wrong or unavailable."""

from __future__ import annotations

# the fields a row has only when it was timed (a skipped, wrong or failed measurement has none)
TIMED = ("compile_s", "contended", "cpu_per_wall", "first_call_s", "gflops", "iqr_s", "load1", "max_rel_err",
         "median_s", "min_s", "fastest_s", "noisy", "others_cores", "pct_of_peak", "peak_mem_bytes", "phases", "pick",
         "calls", "processes", "turn_calls", "turn_fastest_s", "turn_medians_s", "turns")


def not_timed(row: dict, status: str = "skipped") -> dict:
    """``row`` as a measurement with ``status`` that was never timed."""
    return {**{k: v for k, v in row.items() if k not in TIMED}, "status": status, "reason": f"made {status} by the test"}
