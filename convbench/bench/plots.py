"""PNG plots of a run: GFLOP/s and speedup per layer, a roofline, phase breakdowns."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import kernels  # noqa: E402
from convbench.bench import backends  # noqa: E402

DIRECTION = "forward+backward"


def _color(backend: str) -> str:
    """One colour per backend in every plot: its place in the registry (yardsticks after)."""
    known = [*kernels.names(), *kernels.yardsticks()]
    return f"C{known.index(backend) % 10}" if backend in known else "k"


def _bars(ax, table: pd.DataFrame, ylabel: str) -> None:
    names = list(table.columns)
    width = 0.8 / len(names)
    x = np.arange(len(table.index))
    for i, backend in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, table[backend].to_numpy(dtype=float), width,
               label=backend, color=_color(backend))
    ax.set_xticks(x, table.index, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8, ncols=min(5, len(names)))


def _file_part(text) -> str:
    """A name safe inside a file name: a suite given as a path (``../my suites/a.csv``) becomes
    ``my_suites_a.csv``-like text, never a folder."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("._")[:80] or "unnamed"


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


OPTIONAL = ("gflops", "intensity", "peak_gflops", "bandwidth_gbs", "phases", "conv_s", "pool_s", "dense_s", "other_s")


def write_plots(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Every plot the rows allow: a figure whose columns are absent (a pytest-benchmark file has no
    peak or phases) is left out."""
    frame = frame.assign(**{c: np.nan for c in OPTIONAL if c not in frame})
    folder.mkdir(parents=True, exist_ok=True)
    ok = frame[(frame.status == "ok") & (frame.direction == DIRECTION)]
    written = []
    for (threads, dtype, suite), rows in ok.groupby(["threads", "dtype", "suite"], sort=False):
        written += _layer_plots(rows, folder, f"{_file_part(suite)}-{dtype}-{threads}t",
                                f"{suite}, {DIRECTION}, {dtype}, {threads} thread(s)")
    return written + _step_plots(frame, folder) + _roofline_plots(frame, folder)


def _layer_plots(rows: pd.DataFrame, folder: Path, tag: str, title: str) -> list[Path]:
    """GFLOP/s, speedup over the baseline and phase shares per layer of one suite, dtype and thread count."""
    written = []
    order = list(dict.fromkeys(rows.problem))
    columns = backends.order(rows.backend)
    gflops = rows.pivot_table(index="problem", columns="backend", values="gflops").reindex(order)[columns]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 3), 4.5))
    _bars(ax, gflops, "GFLOP/s")
    if rows.peak_gflops.notna().any():
        ax.axhline(rows.peak_gflops.median(), color="k", ls="--", lw=1)
    ax.set_title(f"GFLOP/s per layer: {title}" + (" (dashed: SGEMM peak)" if rows.peak_gflops.notna().any() else ""))
    written.append(_save(fig, folder / f"gflops-{tag}.png"))

    times = rows.pivot_table(index="problem", columns="backend", values="median_s").reindex(order)
    baseline = backends.baseline(times.columns)
    if baseline:
        speedup = times.rdiv(times[baseline], axis=0).drop(columns=baseline)
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 3), 4.5))
        _bars(ax, speedup[[c for c in columns if c != baseline]], f"speedup over {baseline}")
        ax.set_title(f"Speedup over {baseline}: {title}")
        written.append(_save(fig, folder / f"speedup-{tag}.png"))

    phased = rows[rows.phases.notna()]
    if len(phased):
        fig, axes = plt.subplots(1, phased.backend.nunique(), figsize=(12, 4.5), squeeze=False)
        for ax, (backend, group) in zip(axes[0], phased.groupby("backend")):
            shares = pd.DataFrame([
                {**r.phases, "other": max(0.0, r.median_s - sum(r.phases.values()))} for r in group.itertuples()
            ], index=group.problem).reindex([p for p in order if p in set(group.problem)])
            shares = shares.div(shares.sum(axis=1), axis=0)
            shares.plot.bar(stacked=True, ax=ax, width=0.8, fontsize=8)
            ax.set_title(f"{backend}: share of one call", fontsize=10)
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7)
        fig.suptitle(f"Phase breakdown: {title}")
        written.append(_save(fig, folder / f"phases-{tag}.png"))

    return written


def _step_plots(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Where the time of each training step goes, per layer kind."""
    written = []
    steps = frame[(frame.status == "ok") & (frame.direction == "step")]
    steps = steps.dropna(subset=["conv_s"])  # only convbench step rows carry the time per layer kind
    for (threads, problem), rows in steps.groupby(["threads", "problem"], sort=False):
        rows = rows.set_index("backend").loc[backends.order(rows.backend)]
        update = frame[(frame.status == "ok") & (frame.direction == "update") & (frame.problem == problem)
                       & (frame.threads == threads)].set_index("backend")["median_s"]
        parts = pd.DataFrame({f"{kind} layers": rows[f"{kind}_s"] for kind in ("conv", "pool", "dense", "other")})
        parts["SGD update"] = update.reindex(parts.index)
        parts["loss and overhead"] = (rows.median_s - parts.sum(axis=1)).clip(lower=0)
        shares = parts.div(parts.sum(axis=1), axis=0)
        shares.index = [f"{b} ({rows.median_s[b] * 1e3:.3g} ms)" for b in shares.index]
        fig, ax = plt.subplots(figsize=(11, 4.5))
        shares.plot.barh(stacked=True, ax=ax, width=0.7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of the median training step (its time in brackets)")
        ax.set_title(f"Training step of {problem}: where the time goes ({threads} thread(s))")
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        written.append(_save(fig, folder / f"step-{_file_part(problem)}-{threads}t.png"))

    return written


def _roofline_plots(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Achieved GFLOP/s against arithmetic intensity, under the SGEMM and copy roofs."""
    written = []
    conv = frame[(frame.status == "ok") & (frame.op == "conv2d")].dropna(subset=["peak_gflops", "intensity"])
    for threads, rows in conv.groupby("threads"):
        fig, ax = plt.subplots(figsize=(7, 5))
        for backend in backends.order(rows.backend):
            r = rows[rows.backend == backend]
            ax.scatter(r.intensity, r.gflops, s=14, label=backend, alpha=0.75, color=_color(backend))
        peak, bandwidth = rows.peak_gflops.median(), rows.bandwidth_gbs.median()
        ai = np.logspace(np.log10(rows.intensity.min() / 2), np.log10(rows.intensity.max() * 2), 200)
        ax.plot(ai, np.minimum(peak, bandwidth * ai), "k--", lw=1,
                label=f"roof: {peak:.0f} GFLOP/s SGEMM, {bandwidth:.0f} GB/s copy")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP per byte moved, at least)")
        ax.set_ylabel("achieved GFLOP/s")
        ax.set_title(f"Roofline: conv2d, every direction, {threads} thread(s)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        written.append(_save(fig, folder / f"roofline-{threads}t.png"))
    return written


def targets_plot(table: pd.DataFrame, out: Path) -> Path:
    """Each target's measured value over its bound (1 = exactly on target; left of 1 is met),
    one bar per problem and thread count, coloured by the backend that was fastest."""
    table = table.reset_index(drop=True)
    higher_is_better = table.bound.str.startswith(">=")
    limits = table.bound.str.extract(r"([\d.]+)")[0].astype(float)
    score = np.where(higher_is_better, limits / table.value, table.value / limits)
    labels = [f"{t.split(':')[0]} | {p} | {n}t" for t, p, n in zip(table.target, table.problem, table.threads)]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(table) + 1.5))
    ax.barh(range(len(table)), score, color=[_color(b) for b in table["fastest"]])
    ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(table)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("measured / target (below 1 = met); colour: our fastest backend")
    handles = {b: plt.Rectangle((0, 0), 1, 1, color=_color(b)) for b in dict.fromkeys(table["fastest"])}
    ax.legend(handles.values(), handles.keys(), fontsize=7, loc="lower right")
    ax.set_title("Performance targets (dashed: the target)")
    ax.grid(axis="x", alpha=0.3, which="both")
    return _save(fig, out)
