"""Figures 3-5 of the paper, drawn from result records.

All functions build a :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot
state, no GUI backend), with fixed sizes, and return it. :func:`to_png` / :func:`to_svg` /
:func:`save_figure` render without timestamps, so the same records give the same bytes.
A missing record draws "not run" in its panel instead of a curve.

One seaborn theme (``whitegrid`` style, ``notebook`` context, ``deep`` palette) is used for the
book's figures. It is applied through ``matplotlib.rc_context`` around each figure function
(:data:`THEME`), never with ``sns.set_theme``, so importing this module changes no global
state; the font is pinned to DejaVu Sans (seaborn would prefer Arial where installed) to keep
the bytes machine-independent. Sweeps given several seed records draw the mean with a
+-1 standard deviation band (``sns.lineplot(errorbar="sd")``: no bootstrap, deterministic).
"""
from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any, Iterable, Mapping

import matplotlib
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg canvas; pyplot's backend is untouched
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .paper import load_paper_results, task_label

NOT_RUN = "not run"
_RC = {"svg.hashsalt": "stpcore", "svg.fonttype": "path", "font.family": "DejaVu Sans"}
# The book's seaborn theme as plain rcParams (applied per figure, not globally); _RC last.
THEME = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85),
         "axes.prop_cycle": cycler(color=sns.color_palette("deep")), **_RC}
WIDE = (10.0, 4.0)


def _themed(fn):
    """Run a figure function inside the book's theme (artists take their style when created)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(THEME):
            return fn(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------------------- rendering
def _new_figure(size=WIDE, ncols: int = 2) -> tuple[Figure, list]:
    with matplotlib.rc_context(THEME):
        fig = Figure(figsize=size, dpi=100)
        FigureCanvasAgg(fig)
        axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, without timestamps or software-version metadata."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def to_svg(fig: Figure) -> bytes:
    """SVG bytes of a figure, without a date and with fixed element ids."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .svg, .pdf), deterministically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".png":
        path.write_bytes(to_png(fig))
    elif suffix == ".svg":
        path.write_bytes(to_svg(fig))
    elif suffix == ".pdf":
        with matplotlib.rc_context(_RC):
            fig.savefig(path, format="pdf", metadata={"CreationDate": None, "ModDate": None,
                                                      "Producer": None, "Creator": None})
    else:
        raise ValueError(f"unsupported figure format: {path.suffix!r}")
    return path


def display_figure(fig: Figure):
    """An IPython PNG image of ``fig`` (what the notebooks display; deterministic bytes)."""
    from IPython.display import Image
    return Image(data=to_png(fig), format="png")


# ---------------------------------------------------------------------------- record access
def _history(obj: Any) -> list[dict] | None:
    """Per-epoch history from a record, a metrics dict, or a history list (None if absent)."""
    if obj is None:
        return None
    if isinstance(obj, list):
        return obj
    if "metrics" in obj:
        obj = obj["metrics"]
    hist = obj.get("history")
    return list(hist) if hist else None


def _metrics(record: Any) -> dict | None:
    if record is None:
        return None
    return record.get("metrics", record)


def _seed_metrics(record: Any) -> list[dict]:
    """The metrics of one record, or of each of several seed records (a list or tuple)."""
    recs = record if isinstance(record, (list, tuple)) else [record]
    return [m for m in (_metrics(r) for r in recs) if m]


def _sweep_frame(record: Any, x: str, columns: Mapping[str, Any]) -> tuple[pd.DataFrame, int]:
    """Long table of a sweep's points (one row per seed and point; ``columns``: name ->
    function of a point) and the number of seed records that have points."""
    rows, seeds = [], 0
    for seed, m in enumerate(_seed_metrics(record)):
        points = m.get("points") or []
        seeds += bool(points)
        rows += [{"seed": seed, x: p[x], **{c: f(p) for c, f in columns.items()}} for p in points]
    frame = pd.DataFrame(rows, columns=["seed", x, *columns])
    return frame.sort_values([x, "seed"], kind="stable").reset_index(drop=True), seeds


def _sweep_line(ax, frame: pd.DataFrame, x: str, y: str, seeds: int, fmt: str, color: str,
                label: str) -> None:
    """One record: the points joined; several seeds: their mean with a +-1 sd band."""
    if seeds > 1:
        sns.lineplot(data=frame, x=x, y=y, ax=ax, errorbar="sd", color=color,
                     marker=fmt[-1], label=f"{label}, mean +- sd over {seeds} seeds")
    else:
        ax.plot(frame[x], frame[y], fmt, color=color, label=label)


def _not_run(ax, text: str = NOT_RUN) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=14, color="0.4")


def _by_task(records: Any) -> dict[str, dict | None]:
    """``{task: record}`` from a mapping keyed by task or (task, stage), or a list of records."""
    if records is None:
        return {}
    if isinstance(records, Mapping):
        return {(k[0] if isinstance(k, tuple) else k): v for k, v in records.items()}
    return {r["task"]: r for r in records if r is not None}


# ---------------------------------------------------------------------------- Fig. 3
@_themed
def plot_activity_loss(with_record: Any, without_record: Any, title: str | None = None) -> Figure:
    """Fig. 3. (a) mean ASR per encoder layer over epochs, solid with the activity loss
    (L1, L2, ...), dashed without (L1', L2', ...; the legend's title says so); (b) Normalized #C over epochs, on an axis
    at least 2 % of #C tall, so that changes far smaller than that do not fill the panel.

    Each argument is a record, a metrics dict or a history list whose entries hold
    ``epoch``, ``layer_asr`` (one value per layer) and ``normalized_c``.
    """
    fig, (ax_a, ax_b) = _new_figure()
    runs = [("with", _history(with_record), "-"), ("without", _history(without_record), "--")]
    if all(h is None for _, h, _ in runs):
        _not_run(ax_a)
        _not_run(ax_b)
    for name, hist, style in runs:
        if hist is None:
            continue
        epochs = [h.get("epoch", i) for i, h in enumerate(hist)]
        n_layers = max(len(h.get("layer_asr") or []) for h in hist)
        for layer in range(n_layers):
            asr = [h["layer_asr"][layer] if len(h.get("layer_asr") or []) > layer else float("nan")
                   for h in hist]
            label = f"L{layer + 1}" + ("" if name == "with" else "'")
            ax_a.plot(epochs, asr, style, color=f"C{layer % 10}", label=label, marker="o", markersize=3)
        ax_b.plot(epochs, [h.get("normalized_c", float("nan")) for h in hist], style,
                  color="C0" if name == "with" else "C3", marker="o", markersize=3,
                  label=f"{name} activity loss")
    for ax in (ax_a, ax_b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_a.set(xlabel="epoch", ylabel="mean ASR", title="(a) mean ASR per encoder layer")
    ax_b.set(xlabel="epoch", ylabel="Normalized #C", title="(b) Normalized #C")
    lo, hi = ax_b.get_ylim()            # at least 2 % of #C tall: a 0.02 % wiggle stays flat
    mid, half = (lo + hi) / 2, max((hi - lo) / 2, 0.01 * abs((lo + hi) / 2))
    ax_b.set_ylim(mid - half, mid + half)
    for ax in (ax_a, ax_b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, ncol=2 if ax is ax_a else 1, handlelength=3, title_fontsize=8,
                      title="L1, L2, ...: with activity loss\nL1', L2', ... (dashed): without" if ax is ax_a else None)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- Fig. 4
@_themed
def plot_budget_sweep(record: Any, paper: Mapping | None = None, task: str = "sst2",
                      accuracy_key: str = "dev_accuracy") -> Figure:
    """Fig. 4a: accuracy after post-training spatial pruning vs the ACs budget (0.4-1.0).

    ``record``: the ``budget_sweep`` record (``metrics.points``: ``budget``, accuracies), or a
    list of such records of several seeds (drawn as mean +- sd).
    ``paper``: :func:`stpcore.report.paper.load_paper_results` output; the paper publishes no curve,
    so its Table II points are drawn (budget 0.6: post-training FIM + ASR; 1.0: baseline)
    and its chosen budget as a dotted line.
    """
    paper = paper if paper is not None else load_paper_results()
    fig, (ax,) = _new_figure((6.0, 4.0), 1)
    frame, seeds = _sweep_frame(record, "budget",
                                {"accuracy": lambda p: p.get(accuracy_key, float("nan"))})
    if seeds:
        _sweep_line(ax, frame, "budget", "accuracy", seeds, "-o", "C0", f"ours ({accuracy_key})")
    else:
        _not_run(ax)
    rows = {r["stage"]: r["values"][task]["accuracy"] for r in paper["table_ii"]["rows"]}
    chosen = paper["ablations"]["fig_4a"]["chosen_ac_budget"]
    ax.plot([chosen, 1.0], [rows["spatial_fisher_asr"], rows["baseline"]], "s", color="C3",
            label="paper (Table II points)")
    ax.axvline(chosen, linestyle=":", color="0.3", label=f"paper's choice ({chosen})")
    lo, hi = paper["ablations"]["fig_4a"]["ac_budget_range"]
    ax.set(xlim=(lo - 0.03, hi + 0.03), xlabel="ACs constraint (fraction of unpruned ACs)",
           ylabel="accuracy (%)", title=f"(a) ACs constraint, {task_label(task)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@_themed
def plot_base_sweep(record: Any, task: str = "sst2", accuracy_key: str = "dev_accuracy",
                    chosen_base: float | None = None) -> Figure:
    """Fig. 4b: retained ACs (% of baseline) and accuracy vs the PCA base b (1.0-1.2).

    ``record``: the ``base_sweep`` record (``metrics.points``: ``base``, ``acs_fraction``,
    accuracies), or a list of such records of several seeds (mean +- sd). The paper's chosen
    base (1.02) is the dotted line.
    """
    if chosen_base is None:
        chosen_base = load_paper_results()["ablations"]["fig_4b"]["chosen_pca_base"]
    fig, (ax,) = _new_figure((6.0, 4.0), 1)
    frame, seeds = _sweep_frame(record, "base", {
        "acs": lambda p: 100.0 * p.get("acs_fraction", float("nan")),
        "accuracy": lambda p: p.get(accuracy_key, float("nan"))})
    ax2 = ax.twinx()
    ax2.grid(False)
    if seeds:
        _sweep_line(ax, frame, "base", "acs", seeds, "-o", "C0", "ACs (%)")
        _sweep_line(ax2, frame, "base", "accuracy", seeds, "-s", "C1", f"accuracy ({accuracy_key})")
        for a in (ax, ax2):
            if a.get_legend() is not None:
                a.get_legend().remove()
    else:
        _not_run(ax)
    ax.axvline(chosen_base, linestyle=":", color="0.3", label=f"paper's choice ({chosen_base})")
    ax.set(xlabel="PCA scaling factor b", ylabel="ACs (% of baseline)",
           title=f"(b) PCA scaling factor, {task_label(task)}")
    ax2.set_ylabel("accuracy (%)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- Fig. 5
#: The markers of the first, second and third task in Fig. 5's left panel (each with its line style).
TASK_MARKERS = ("o", "s", "^")


@_themed
def plot_random_mask(two_stage_records: Any, random_records: Any, masked_records: Any = None,
                     accuracy_key: str = "dev_accuracy", tasks: Iterable[str] | None = None) -> Figure:
    """Fig. 5. Left: dev accuracy right after masking and after retraining, per task, for
    retraining from the post-training (FIM + ASR) masks (``masked_records``: the
    ``spatial_fisher_asr`` records before, ``two_stage_records``: the ``spatial_retrain``
    records after) and from a random mask of the same budget (``random_records``: the
    ``random_mask`` records, which hold both); colour is the mask, line style and marker the
    task (:data:`TASK_MARKERS`). Right: accuracy per task after retraining.

    Each argument: ``{task: record}``, ``{(task, stage): record}`` or a list of records.
    (The paper plots training accuracy per epoch; our retraining is one epoch on SST-2, so the
    figure shows where retraining starts and where it ends.)
    """
    two, rnd, masked = _by_task(two_stage_records), _by_task(random_records), _by_task(masked_records or {})
    order = list(tasks) if tasks is not None else [t for t in load_paper_results()["tasks"]
                                                   if t in two or t in rnd]
    fig, (ax_l, ax_r) = _new_figure()
    drawn = False
    for i, task in enumerate(order):
        pairs = ((_metrics(masked.get(task)), _metrics(two.get(task)), "post-training masks", "C0",
                  "dev_accuracy"),
                 (_metrics(rnd.get(task)), _metrics(rnd.get(task)), "random mask", "C3",
                  "post_mask_dev_accuracy"))
        for before, after, name, color, key in pairs:
            if before and after and before.get(key) is not None and after.get("dev_accuracy") is not None:
                ax_l.plot([0, 1], [before[key], after["dev_accuracy"]], marker=TASK_MARKERS[i % 3],
                          markersize=5, color=color, linestyle=("-", "--", ":")[i % 3],
                          label=f"{task_label(task)}, {name}")
                drawn = True
    if not drawn:
        _not_run(ax_l)
    else:
        ax_l.legend(fontsize=7, handlelength=3.5, title="line and marker: task; colour: mask", title_fontsize=7)
    ax_l.set_xticks([0, 1])
    ax_l.set_xticklabels(["after masking", "after retraining"])
    ax_l.set(xlim=(-0.3, 1.3), ylabel="dev accuracy (%)", title="retraining: start and end")
    ax_l.grid(alpha=0.3)

    width = 0.38
    for k, (recs, name, color) in enumerate(((two, "post-training masks", "C0"), (rnd, "random mask", "C3"))):
        vals = []
        for t in order:
            m = _metrics(recs.get(t))
            vals.append(float(m[accuracy_key]) if m and m.get(accuracy_key) is not None else float("nan"))
        xs = [i + (k - 0.5) * width for i in range(len(order))]
        ax_r.bar(xs, [0.0 if v != v else v for v in vals], width, color=color, label=name)
        for x, v in zip(xs, vals):
            if v != v:
                ax_r.text(x, 0.03, NOT_RUN, rotation=90, ha="center", va="bottom", fontsize=8, color="0.3",
                          transform=ax_r.get_xaxis_transform())
    ax_r.set_xticks(range(len(order)))
    ax_r.set_xticklabels([task_label(t) for t in order])
    ax_r.set(ylabel="accuracy (%)", title="accuracy per task")
    if order:
        ax_r.legend(fontsize=8)
    else:
        _not_run(ax_r)
    ax_r.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
