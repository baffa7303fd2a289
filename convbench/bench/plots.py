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
from convbench.bench.formats import duration, number  # noqa: E402

DIRECTION = "forward+backward"


def _color(backend: str) -> str:
    """One colour per backend in every plot: its place in the registry (yardsticks after)."""
    known = [*kernels.names(), *kernels.yardsticks()]
    return f"C{known.index(backend) % 10}" if backend in known else "k"


HATCHES = {"noisy": "//", "contended": "xx"}  # how a bar or point of a doubtful measurement is drawn


def _bars(ax, table: pd.DataFrame, ylabel: str, spans: dict | None = None, doubts: pd.DataFrame | None = None) -> None:
    """One bar per row and backend on a log axis. ``spans``: backend -> (low, high) tables of each
    bar's interquartile range, drawn as error bars; ``doubts``: a table of hatches (``HATCHES``) for
    noisy and contended measurements (``_legend`` names them)."""
    names = list(table.columns)
    width = 0.8 / len(names)
    x = np.arange(len(table.index))
    for i, backend in enumerate(names):
        heights = table[backend].to_numpy(dtype=float)
        errors = None
        if spans and backend in spans:
            low, high = (np.asarray(v, dtype=float) for v in spans[backend])
            errors = np.nan_to_num(np.clip([heights - low, high - heights], 0, None))
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, heights, width, label=backend, color=_color(backend),
                      yerr=errors, error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "0.25"})
        for bar, hatch in zip(bars, doubts[backend] if doubts is not None and backend in doubts else []):
            if hatch:
                bar.set_hatch(hatch)
                bar.set_edgecolor("0.15")
    ax.set_xticks(x, table.index, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3, which="both")


def _legend(axes: list, doubted: bool = False) -> None:
    """One legend for ``axes`` (each label once), outside the last on its right, clear of the data,
    with the hatches' meaning where a bar has one."""
    found: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    if doubted:
        for flag, hatch in HATCHES.items():
            found[f"{flag} ({hatch})"] = plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="0.15", hatch=hatch)
    axes[-1].legend(found.values(), found.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1),
                    borderaxespad=0)


def _note(fig, lines: list[str]) -> None:
    """A note under the figure naming what it leaves out (at most 6 lines, then how many more)."""
    if lines:  # below the figure's edge: _save's tight bounding box takes it in
        shown = lines[:6] + ([f"... and {len(lines) - 6} more"] if len(lines) > 6 else [])
        fig.text(0.01, -0.01, "\n".join(shown), fontsize=7, va="top", ha="left", color="0.3", gid="note")


def _quartiles(row) -> tuple[float, float]:
    """The first and third quartiles of a row's turn medians (every process's), else its median
    plus or minus half its IQR."""
    turns = [t for process in (row.get("turn_medians_s") or []) for t in process] if isinstance(
        row.get("turn_medians_s"), list) else []
    if len(turns) >= 2:
        return tuple(np.percentile(turns, [25, 75]))
    half = (row.get("iqr_s") or 0) / 2
    return row["median_s"] - half, row["median_s"] + half


def _file_part(text) -> str:
    """A name safe inside a file name: a suite given as a path (``../my suites/a.csv``) becomes
    ``my_suites_a.csv``-like text, never a folder."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("._")[:80] or "unnamed"


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")  # legends outside the axes and notes below them included
    plt.close(fig)
    return out


OPTIONAL = ("gflops", "intensity", "peak_gflops", "bandwidth_gbs", "phases", "conv_s", "pool_s", "dense_s", "other_s")


def write_plots(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Every plot the rows allow: a figure whose columns are absent (a pytest-benchmark file has no
    peak or phases) is left out, and a measurement a figure cannot show is named in a note on it."""
    frame = frame.assign(**{c: np.nan for c in OPTIONAL if c not in frame})
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (threads, dtype, suite), rows in frame[frame.direction == DIRECTION].groupby(["threads", "dtype", "suite"], sort=False):
        if (rows.status == "ok").any():
            written += _layer_plots(rows, folder, f"{_file_part(suite)}-{dtype}-{threads}t",
                                    f"{suite}, {DIRECTION}, {dtype}, {threads} thread(s)")
    return written + _step_plots(frame, folder) + _roofline_plots(frame, folder)


POOLS = ("maxpool2d", "avgpool2d")  # their GFLOP/s (comparisons and adds) get an axis apart from convolutions'


def _grid(rows: pd.DataFrame, values: str, order: list, columns: list) -> pd.DataFrame:
    """``values`` by problem (rows, in ``order``) and backend (columns)."""
    return rows.pivot_table(index="problem", columns="backend", values=values, aggfunc="first",
                            dropna=False).reindex(index=order, columns=columns)


def _doubts(rows: pd.DataFrame) -> pd.Series:
    """Each row's hatch: its flags' (``HATCHES``), joined; "" for a clean measurement."""
    return pd.Series(["".join(h for flag, h in HATCHES.items() if r.get(flag) == True)  # noqa: E712
                      for _, r in rows.iterrows()], index=rows.index, dtype=object)


def _spread(rows: pd.DataFrame, numerator: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(low, high) of ``numerator`` / time over each row's interquartile range of times."""
    quartiles = np.array([_quartiles(r) for _, r in rows.iterrows()], dtype=float).reshape(-1, 2)
    return numerator / quartiles[:, 1], numerator / quartiles[:, 0]


def _spans(rows: pd.DataFrame, numerator: pd.Series, order: list, columns: list) -> dict:
    """backend -> (low, high) of ``numerator`` / time per problem over the interquartile range of
    times (``_spread``), for ``_bars``'s whiskers."""
    low, high = (_grid(rows.assign(v=v), "v", order, columns) for v in _spread(rows, numerator))
    return {b: (low[b], high[b]) for b in columns}


def _left_out(rows: pd.DataFrame) -> list[str]:
    """A line for each measurement of ``rows`` that was not timed, with its status and reason."""
    return [f"not shown: {r.backend} on {r.problem} ({r.status}"
            + (f": {str(r.reason)[:90]}" if isinstance(getattr(r, "reason", None), str) else "") + ")"
            for r in rows[rows.status != "ok"].itertuples()]


def _layer_plots(rows: pd.DataFrame, folder: Path, tag: str, title: str) -> list[Path]:
    """GFLOP/s, speedup over the baseline and phase shares per layer of one suite, dtype and thread
    count; ``rows`` holds its measurements, timed or not."""
    ok, left_out = rows[rows.status == "ok"], _left_out(rows)
    figures = [_gflops_plot(ok, left_out, title), _speedup_plot(ok, left_out, title), _phases_plot(ok, title)]
    return [_save(figure[1], folder / f"{figure[0]}-{tag}.png") for figure in figures if figure is not None]


def _gflops_plot(ok: pd.DataFrame, left_out: list[str], title: str):
    """GFLOP/s per layer, convolution and pooling on axes of their own, each bar's interquartile
    range as whiskers, doubtful measurements hatched; the SGEMM peak over the convolutions."""
    pooling = ok.op.isin(POOLS) if "op" in ok else pd.Series(False, index=ok.index)
    panels = [(kind, mine) for kind, mine in (("convolution", ok[~pooling]), ("pooling", ok[pooling])) if len(mine)]
    widths = [max(2, mine.problem.nunique()) for _, mine in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7, 0.6 * sum(widths) + 4), 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (kind, mine) in zip(axes[0], panels):
        order, columns = list(dict.fromkeys(mine.problem)), backends.order(mine.backend)
        spans = _spans(mine, mine.gflops * mine.median_s, order, columns)  # GFLOP per call over the quartiles' times
        _bars(ax, _grid(mine, "gflops", order, columns), "GFLOP/s", spans,
              _grid(mine.assign(hatch=_doubts(mine)), "hatch", order, columns).fillna(""))
        if kind == "convolution" and mine.peak_gflops.notna().any():
            ax.axhline(mine.peak_gflops.max(), color="k", ls="--", lw=1, label="SGEMM peak", gid="peak")
        ax.set_title(kind, fontsize=10)
    _legend(list(axes[0]), doubted=(_doubts(ok) != "").any())
    fig.suptitle(f"GFLOP/s per layer: {title}\nbars: medians; whiskers: interquartile range of the turns", fontsize=10)
    _note(fig, left_out)
    return "gflops", fig


def _speedup_plot(ok: pd.DataFrame, left_out: list[str], title: str):
    """Each backend's speedup over the baseline (naive) per layer, with its interquartile range."""
    order, columns = list(dict.fromkeys(ok.problem)), backends.order(ok.backend)
    times = _grid(ok, "median_s", order, columns)
    baseline = backends.baseline(times.columns)
    if not baseline:
        return None
    base = ok.problem.map(times[baseline])
    shown = [c for c in columns if c != baseline]
    doubts = _doubts(ok)
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(order) + 4), 4.8))
    _bars(ax, times.rdiv(times[baseline], axis=0)[shown], f"speedup over {baseline}", _spans(ok, base, order, shown),
          _grid(ok.assign(hatch=doubts), "hatch", order, shown).fillna(""))
    _legend([ax], doubted=(doubts != "").any())
    ax.set_title(f"Speedup over {baseline}: {title}\nwhiskers: interquartile range of the turns", fontsize=10)
    _note(fig, left_out)
    return "speedup", fig


def _phases_plot(ok: pd.DataFrame, title: str):
    """Where one call's time goes, per backend that records its phases: shares per layer, each
    layer's median time under its name; a layer without its phases is named in the note."""
    from convbench.bench.runner import SLOW_EXTRAS

    phased = ok[ok.phases.notna()]
    if phased.empty:
        return None
    order = list(dict.fromkeys(ok.problem))
    fig, axes = plt.subplots(1, phased.backend.nunique(), figsize=(12, 4.8), squeeze=False)
    missing = []
    for ax, (backend, group) in zip(axes[0], phased.groupby("backend")):
        shares = pd.DataFrame([{**r.phases, "other": max(0.0, r.median_s - sum(r.phases.values()))}
                               for r in group.itertuples()], index=group.problem)
        shares = shares.div(shares.sum(axis=1), axis=0).reindex([p for p in order if p in set(group.problem)])
        shares.plot.bar(stacked=True, ax=ax, width=0.8, fontsize=8)
        median = group.set_index("problem").median_s
        ax.set_xticks(range(len(shares)), [f"{p}\n{duration(median[p])}" for p in shares.index], rotation=45,
                      ha="right", fontsize=7)
        ax.set_title(f"{backend}: share of one call (its median under each layer)", fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        for r in ok[(ok.backend == backend) & ok.phases.isna()].itertuples():
            missing.append(f"not shown: {backend} on {r.problem} ({duration(r.median_s)} a call: "
                           + (f"calls over {SLOW_EXTRAS:g} s get no instrumented call)" if r.median_s >= SLOW_EXTRAS
                              else "its instrumented call recorded no phases)"))
    fig.suptitle(f"Phase breakdown: {title}", fontsize=10)
    _note(fig, missing)
    return "phases", fig


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
        shares.index = [f"{b} ({duration(rows.median_s[b])})" for b in shares.index]
        fig, ax = plt.subplots(figsize=(11, 4.5))
        shares.plot.barh(stacked=True, ax=ax, width=0.7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of the median training step (its time in brackets)")
        ax.set_title(f"Training step of {problem}: where the time goes ({threads} thread(s))")
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        written.append(_save(fig, folder / f"step-{_file_part(problem)}-{threads}t.png"))

    return written


MARKERS = {"forward": "o", "backward": "s", "forward+backward": "^"}  # the roofline's marker per direction


def _roofline_plots(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Achieved GFLOP/s against arithmetic intensity, under the SGEMM and copy roofs: a colour per
    backend, a marker per direction, a backend that picks others (auto) hollow so that the points of
    its picks show through, and doubtful measurements crossed."""
    written = []
    conv = frame[(frame.status == "ok") & (frame.op == "conv2d")].dropna(subset=["peak_gflops", "intensity", "gflops"])
    for threads, rows in conv.groupby("threads"):
        fig, ax = plt.subplots(figsize=(8.5, 5))
        pickers = set(backends.pickers(rows.backend))
        for backend in backends.order(rows.backend):
            for direction, marker in MARKERS.items():
                r = rows[(rows.backend == backend) & (rows.direction == direction)]
                hollow = backend in pickers
                ax.scatter(r.intensity, r.gflops, s=34 if hollow else 16, marker=marker, linewidths=1,
                           facecolors="none" if hollow else _color(backend), edgecolors=_color(backend),
                           alpha=0.8, gid=f"{backend}|{direction}")
        doubtful = rows[_doubts(rows) != ""]
        ax.scatter(doubtful.intensity, doubtful.gflops, s=12, marker="x", c="k", linewidths=0.8, gid="doubtful")
        peak, bandwidth = rows.peak_gflops.max(), rows.bandwidth_gbs.max()
        ai = np.logspace(np.log10(rows.intensity.min() / 2), np.log10(rows.intensity.max() * 2), 200)
        ax.plot(ai, np.minimum(peak, bandwidth * ai), "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte moved, at least)",
               ylabel="achieved GFLOP/s", title=f"Roofline: conv2d, {threads} thread(s)")
        ax.grid(alpha=0.3, which="both")
        handles = {b + (" (hollow: its picks)" if b in pickers else ""): plt.Line2D(
            [], [], ls="", marker="o", color=_color(b), mfc="none" if b in pickers else _color(b))
            for b in backends.order(rows.backend)}
        handles |= {d: plt.Line2D([], [], ls="", marker=m, color="0.3") for d, m in MARKERS.items()
                    if (rows.direction == d).any()}
        handles[f"roof: {number(peak)} GFLOP/s SGEMM, {number(bandwidth)} GB/s copy"] = plt.Line2D([], [], ls="--", color="k")
        if len(doubtful):
            handles["noisy or contended"] = plt.Line2D([], [], ls="", marker="x", color="k")
        ax.legend(handles.values(), handles.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1),
                  borderaxespad=0)
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
