"""``convbench compare OLD NEW``: per-measurement ratios with a noise-aware verdict.

Measurements are matched on (suite, problem, batch, backend, direction, dtype, threads). The
ratio is NEW median / OLD median. Its noise band is the sum of the two relative IQRs (IQR /
median), but never under ``MIN_BAND``: a ratio inside ``1 ± band`` is ``same``. Outside it,
``slower`` or ``faster``; a ``slower`` ratio above ``1 + threshold`` is a regression, and so
is a measurement that was ``ok`` in OLD and is ``wrong`` or ``error`` in NEW.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from convbench.results import load_results

KEY = ["suite", "problem", "N", "backend", "direction", "dtype", "threads"]
MIN_BAND = 0.02


def verdict(old_median: float, old_iqr: float, new_median: float, new_iqr: float) -> tuple[float, str]:
    ratio = new_median / old_median
    band = max(MIN_BAND, old_iqr / old_median + new_iqr / new_median)
    if ratio > 1 + band:
        return ratio, "slower"
    if ratio < 1 / (1 + band):
        return ratio, "faster"
    return ratio, "same"


def compare(old: str | Path, new: str | Path, threshold: float = 0.10) -> tuple[str, int]:
    """A Markdown table of NEW against OLD, and how many regressions it holds."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0; got {threshold}")
    a, b = load_results(old), load_results(new)
    merged = a[KEY + ["status", "median_s", "iqr_s"]].merge(
        b[KEY + ["status", "median_s", "iqr_s"]], on=KEY, suffixes=("_old", "_new"))
    if merged.empty:
        raise ValueError(f"{old} and {new} share no measurement (same suite, problem, batch, backend, "
                         "direction, dtype and threads)")
    rows, regressions = [], 0
    for r in merged.itertuples():
        if r.status_old == "ok" and r.status_new == "ok":
            ratio, word = verdict(r.median_s_old, r.iqr_s_old, r.median_s_new, r.iqr_s_new)
            regression = word == "slower" and ratio > 1 + threshold
            cells = (f"{r.median_s_old * 1e3:.4g}", f"{r.median_s_new * 1e3:.4g}", f"{ratio:.3f}")
        else:
            word = f"{r.status_old} -> {r.status_new}"
            regression = r.status_old == "ok" and r.status_new in ("wrong", "error")
            cells = ("-", "-", "-")
        regressions += regression
        rows.append({"suite": r.suite, "problem": r.problem, "backend": r.backend, "direction": r.direction,
                     "dtype": r.dtype, "threads": r.threads, "old ms": cells[0], "new ms": cells[1],
                     "new/old": cells[2], "verdict": word + (" (REGRESSION)" if regression else "")})
    table = pd.DataFrame(rows)
    counts = table.verdict.str.replace(" (REGRESSION)", "", regex=False).value_counts()
    head = (f"{len(table)} measurements compared: " + ", ".join(f"{n} {v}" for v, n in counts.items())
            + f"; {regressions} regression(s) beyond {threshold:.0%}.")
    return head + "\n\n" + table.to_markdown(index=False) + "\n", regressions
