"""Simulation benchmark records (``bench/bench_sim.py``) as tables and a roofline figure.

A record is ``data/bench/<name>.json`` (schema: ``bench/README.md``). :func:`bench_table` lists
what the bench prints, each number beside the target of the speed-up issue and a "met?" cell
(``yes``/``no``/``n-a``) computed from the numbers. Cells follow :mod:`stpcore.report.tables`: a number
the record lacks shows ``"n/a"`` and its "met?" ``n-a``. A record of a 1-bit model (``--binary``)
also has the integer path (``int8``, :mod:`stpcore.snn.integer`); its rows appear only there.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from .plots import _RC, _new_figure
from ..runs.records import REPO_ROOT
from .tables import NO_METRIC

#: Records the page expects, the CPU smoke run and the GPU runs (plain, fused LIF kernel, 1-bit).
EXPECTED = ("sim_small_cpu", "sim_paper_cuda", "sim_paper_fused_cuda", "sim_paper_binary_cuda")
MET, NOT_MET, NA = "yes", "no", "n-a"
T_FORWARD, T_AIM, T_TRAIN, T_MEM, T_EFF, T_SPATIAL_S = 10.0, 25.0, 1.15, 1.10, 0.75, 180.0
#: Issue 12's targets of the integer path, its speed-up vs the reference loop, and its throughput
#: relative to bf16 at which it becomes the default for 1-bit models on CUDA, and its training
#: step over a forward.
T_INT, T_INT_DEFAULT, T_INT_TRAIN = 30.0, 1.0, 1.10
#: A training record's variants of the step, each with its Eq. 4 pass changed (record key -> how).
TRAIN_VARIANTS = {"implicit_bf16": "in bf16", "implicit_bf16_compiled": "in bf16, compiled",
                  "implicit_bf16_graphs": "in bf16, compiled as CUDA graphs",
                  "implicit_fp32_graphs": "in fp32, compiled as CUDA graphs",
                  "implicit_tf32_graphs": "in fp32 with TF32 products, compiled as CUDA graphs"}
#: Throughput ratios within this of 1 are a tie, not a lead. One dtype's simulation time at paper
#: size moves by about this much between runs on the H200 (bf16 at width 768 took 54.9, 55.5 and
#: 57.5 ms in the 1-bit records at 59a4528, 29b3e96 and 544ee5a).
T_INT_TIE = 0.05
DTYPES, INT8 = ("fp32", "bf16"), "int8"
COLUMNS = ["width", "dtype", "metric", "value", "unit", "target", "met?"]


def train_limit(dtype: str) -> float:
    """The bound on a training step over a forward simulated in ``dtype``: :data:`T_INT_TRAIN`
    for int8 (issue 12), :data:`T_TRAIN` otherwise."""
    return T_INT_TRAIN if dtype == INT8 else T_TRAIN


def bench_dir(root: str | Path | None = None) -> Path:
    """The folder of the records: ``<root>/data/bench`` if it exists, else ``root`` itself
    (``None``: the repository's ``data/bench``)."""
    root = Path(root) if root is not None else REPO_ROOT
    return root / "data" / "bench" if (root / "data" / "bench").is_dir() else root


#: The folder of the benchmark scripts' own records, ``bench/results`` (exactness, GEMMs, profile).
BENCH_RESULTS = REPO_ROOT / "bench" / "results"


def read_bench_file(path: Path) -> dict | str:
    """The JSON record at ``path``, or a line saying there is none."""
    return json.loads(path.read_text()) if path.is_file() else f"no record at {path}"


def load_bench_records(root: str | Path | None = None) -> dict[str, dict]:
    """``{name: record}`` of every ``*.json`` in :func:`bench_dir` (``name``: the file stem,
    e.g. ``sim_small_cpu``), sorted by name; an absent folder gives ``{}``."""
    folder = bench_dir(root)
    return {} if not folder.is_dir() else {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def missing_records(records: dict) -> list[str]:
    """The names of :data:`EXPECTED` that ``records`` lacks."""
    return [n for n in EXPECTED if n not in records]


def _num(value: Any) -> Any:
    """A value cell: 4 significant digits, or ``"n/a"`` when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_METRIC
    return float(f"{float(value):.4g}")


def _widths(record: dict) -> list[tuple[str, dict]]:
    """``(width "D/F", results)`` in the bench's order (``setup.widths``), then any others."""
    got, order = record.get("widths", {}), [f"{d}/{f}" for d, f in record.get("setup", {}).get("widths", [])]
    return [(w, got[w]) for w in order if w in got] + [(w, r) for w, r in got.items() if w not in order]


def record_dtypes(record: dict) -> tuple[str, ...]:
    """The simulation dtypes of ``record``: fp32 and bf16, then int8 where some width has int8
    results (a 1-bit run)."""
    has_int = any(INT8 in r.get("simulation", {}) for r in record.get("widths", {}).values())
    return DTYPES + ((INT8,) if has_int else ())


def _ops(dtype: str) -> str:
    """The unit of a matmul rate: tera-ops/s for the integer path, TFLOP/s otherwise."""
    return "TOP/s" if dtype == INT8 else "TFLOP/s"


def bench_table(record: dict, spatial_pruning_s: float | None = None) -> pd.DataFrame:
    """The bench's numbers for one record, with targets and a "met?" column.

    Rows: measured device peaks; per width the reference loop's throughput (example-timesteps/s);
    per width and dtype (fp32, bf16; int8 in a 1-bit record) throughput, speed-up vs the reference
    (target >= 10x, aim 25x; int8: >= 30x, per call and with the weights prepared once as in
    evaluation, and its throughput / bf16's, >= 1 to become the default for 1-bit models; bf16
    and int8 also at the ``time_chunk`` values of ``cached_by_chunk``, weights prepared once), ASR agreement with the reference (fp32 on CPU: exactly 0; otherwise
    reported), achieved TFLOP/s (int8: tera-ops/s) and modelled GB/s and their fractions of the
    measured peaks; for the first width the training step / forward ratio (<= 1.15; int8 <= 1.1;
    also with the Eq. 4 pass in bf16, and compiled, where the record has them), peak memory
    at the two T of ``setup.mem_steps`` and their ratio for each ``time_chunk`` (<= 1.10; CUDA
    only), and the temporal and spatial pruned speed-ups beside their AC-predicted ratios and the
    efficiency = measured / predicted (>= 0.75). Last, the wall time of post-training spatial pruning per task (< 3 min):
    ``bench_sim.py`` does not measure it, so it is ``spatial_pruning_s`` if given, else "n/a".
    """
    rows: list[list] = []

    def add(width, dtype, metric, value, unit="", target="", ok=None):
        v = _num(value)
        met = NA if ok is None or not isinstance(v, float) else (MET if ok(v) else NOT_MET)
        rows.append([width, dtype, metric, v, unit, target, met])

    peaks, dtypes = record.get("peaks", {}), record_dtypes(record)
    for d in dtypes:
        add("", d, "measured matmul peak", peaks.get(f"matmul_{d}_tflops"), _ops(d))
    add("", "", "measured copy bandwidth (read + write)", peaks.get("copy_gbps"), "GB/s")
    mem_steps = list(record.get("setup", {}).get("mem_steps", ("T_lo", "T_hi")))
    asr_exact = str(record.get("provenance", {}).get("device", "")).lower().startswith("cpu")
    for width, r in _widths(record):
        sim = r.get("simulation", {})
        add(width, "fp32", "reference loop throughput", sim.get("reference_example_steps_per_s"),
            "ex-steps/s")
        for d in dtypes:
            x = sim.get(d, {})
            add(width, d, "simulate throughput", x.get("example_steps_per_s"), "ex-steps/s")
            if d == INT8:
                add(width, d, "speed-up vs reference loop", x.get("speedup_vs_reference"), "x",
                    f">= {T_INT:g}x", lambda v: v >= T_INT)
                add(width, d, "speed-up vs reference loop, weights prepared once (evaluation)",
                    x.get("speedup_cached"), "x", f">= {T_INT:g}x", lambda v: v >= T_INT)
                own, bf16 = x.get("example_steps_per_s"), sim.get("bf16", {}).get("example_steps_per_s")
                add(width, d, "throughput / bf16 throughput", own / bf16 if own and bf16 else None, "x",
                    f">= {T_INT_DEFAULT:g}x beyond a {T_INT_TIE * 100:g} % tie (default for 1-bit models)",
                    lambda v: v >= T_INT_DEFAULT + T_INT_TIE)
            else:
                add(width, d, "speed-up vs reference loop", x.get("speedup_vs_reference"), "x",
                    f">= {T_FORWARD:g}x (aim {T_AIM:g}x)", lambda v: v >= T_FORWARD)
            for chunk, sec in x.get("cached_by_chunk", {}).items():     # bench_sim.CHUNKS
                ref = sim.get("reference_s")
                add(width, d, f"speed-up vs reference loop, weights prepared once, time_chunk {chunk}",
                    ref / sec if ref and sec else None, "x", f">= {T_INT:g}x" if d == INT8 else "report",
                    (lambda v: v >= T_INT) if d == INT8 else None)
            exact = d == "fp32" and asr_exact
            for key, name in (("max_abs_asr_diff", "max |ASR - reference ASR|"),
                              ("frac_rates_differing", "fraction of ASRs differing from reference")):
                add(width, d, name, x.get(key), "", "0 (fp32 on CPU)" if exact else "reported",
                    (lambda v: v == 0.0) if exact else None)
            add(width, d, "achieved TFLOP/s", x.get("tflops"), _ops(d))
            add(width, d, "fraction of measured matmul peak", x.get("frac_matmul_peak"))
            add(width, d, "modelled GB/s", x.get("model_gbps"), "GB/s")
            add(width, d, "fraction of measured copy bandwidth", x.get("frac_copy_peak"))
        if "training" in r:
            b = r["training"]
            for d in dtypes:                # fp32's at the top level (records before the others)
                limit = train_limit(d)
                x = b if d == "fp32" else b.get("dtypes", {}).get(d, {})
                met = lambda v, limit=limit: v <= limit
                add(width, d, "training step / forward", x.get("train_over_forward"), "x",
                    f"<= {limit:g}x", met)
                for key, how in TRAIN_VARIANTS.items():
                    if "train_over_forward" in x.get(key, {}):
                        add(width, d, f"training step, Eq. 4 pass {how} / forward",
                            x[key]["train_over_forward"], "x", f"<= {limit:g}x", met)
            chunks = sorted(int(k[len("mem_ratio_chunk"):]) for k in b if k.startswith("mem_ratio_chunk"))
            for c in chunks or [record.get("setup", {}).get("time_chunk", "?")]:
                gib = b.get(f"peak_gib_chunk{c}", {})
                for t in mem_steps:
                    add(width, "fp32", f"peak memory T={t} (time_chunk {c})", gib.get(str(t)), "GiB")
                add(width, "fp32", f"peak memory ratio T={mem_steps[-1]} / T={mem_steps[0]} "
                    f"(time_chunk {c})", b.get(f"mem_ratio_chunk{c}"), "x",
                    f"<= {T_MEM:.2f} (flat in T; CUDA only)", lambda v: v <= T_MEM)
        pruning = r.get("pruning") or {}
        for d in dtypes:
            for ex, gib in (pruning.get(f"peak_gib_{d}") or {}).items():
                add(width, d, f"peak memory of a forward, {ex} executor", gib, "GiB")
        for kind, d in [(k, d) for k in ("temporal", "spatial") for d in dtypes if f"{k}_{d}" in pruning]:
            p = pruning[f"{kind}_{d}"]
            executor = "sequential executor" if kind == "temporal" else "masks"
            add(width, d, f"{kind} pruned speed-up ({executor})", p.get("speedup"), "x")
            add(width, d, f"{kind} AC-predicted speed-up", p.get("predicted_speedup"), "x")
            add(width, d, f"{kind} efficiency (measured / predicted)", p.get("efficiency"), "",
                f">= {T_EFF:g}", lambda v: v >= T_EFF)
            add(width, d, f"{kind} efficiency, weights prepared once (evaluation)",
                p.get("efficiency_cached"), "", f">= {T_EFF:g}", lambda v: v >= T_EFF)
    add("", "", "spatial pruning wall time per task" + (" (not measured by bench_sim.py)" if spatial_pruning_s
                                                        is None else ""),
        spatial_pruning_s, "s", f"< {T_SPATIAL_S / 60:g} min", lambda v: v < T_SPATIAL_S)
    return pd.DataFrame(rows, columns=COLUMNS)


def record_label(record: dict) -> str:
    """How a record ran: 1-bit weights if so (``weights``, ``--binary``), LIF implementation,
    ``time_chunk`` and, unless paper-sized, the size."""
    lif = {"1": "fused LIF", "0": "LIF loop"}.get(str(record.get("fused_lif")), "LIF auto")
    size, binary = record.get("size", "?"), "1-bit" in str(record.get("weights", ""))
    chunk = record.get("setup", {}).get("time_chunk", "?")
    return (("1-bit weights, " if binary else "") + f"{lif}, chunk {chunk}"
            + ("" if size == "paper" else f", {size}"))


def scorecard(records: dict[str, dict]) -> pd.DataFrame:
    """Every number of :func:`bench_table` that has a target, one column per record (named by
    :func:`record_label`), as ``"value (met?)"``. Rows are
    ``"metric (dtype, width)"`` in the bench's order, with the target first; a record without
    the row shows "n/a"."""
    targets, cols = {}, {}
    for name, record in records.items():
        t = bench_table(record)
        t = t[t["met?"] != NA]
        short = record_label(record)
        short = name if short in cols else short
        cols[short] = {}
        for _, row in t.iterrows():
            key = f"{row['metric']} ({row['dtype']}, {row['width']})"
            targets.setdefault(key, row["target"])
            cols[short][key] = f"{row['value']:g} ({row['met?']})"
    table = {"target": targets, **{n: {k: c.get(k, NO_METRIC) for k in targets} for n, c in cols.items()}}
    return pd.DataFrame(table, index=pd.Index(list(targets), name="check"))


#: :func:`bench_table`'s per-width simulation metrics that :func:`dtype_table` sets side by side.
DTYPE_METRICS = ("simulate throughput", "speed-up vs reference loop", "throughput / bf16 throughput",
                 "achieved TFLOP/s", "fraction of measured matmul peak",
                 "fraction of ASRs differing from reference")


def dtype_table(record: dict) -> pd.DataFrame:
    """One row per (width, dtype) of ``record``: :func:`bench_table`'s simulation numbers
    (:data:`DTYPE_METRICS`) as columns, then the speed-up's target and "met?". A number a dtype
    lacks (the bf16 ratio of fp32 and bf16) shows "n/a"."""
    t = bench_table(record)
    t = t[t["metric"].isin(DTYPE_METRICS)]
    index = pd.MultiIndex.from_frame(t[["width", "dtype"]].drop_duplicates())
    wide = t.pivot(index=["width", "dtype"], columns="metric", values="value").reindex(index)
    wide = wide[[m for m in DTYPE_METRICS if m in wide]].fillna(NO_METRIC)
    speed = t[t["metric"] == "speed-up vs reference loop"].set_index(["width", "dtype"])
    return wide.assign(**{"speed-up target": speed["target"], "met?": speed["met?"]})


def _g(value) -> str:
    """A number in prose, 3 significant digits (``"n/a"`` when absent)."""
    return f"{value:.3g}" if isinstance(value, float) else NO_METRIC


def layer_flops(width: str, setup: dict) -> float:
    """FLOPs of one encoder layer's products over the batch once (one simulation step, or Eq.
    4's forward pass): the six linear layers and the attention's two products (Appendix A), two
    per multiply-add. ``width``: ``"hidden/intermediate"``; ``setup``: ``batch`` and ``seq``."""
    hidden, inter = (int(v) for v in width.split("/"))
    tokens, seq = setup["batch"] * setup["seq"], setup["seq"]
    return 2 * tokens * (4 * hidden ** 2 + 2 * hidden * inter + 2 * seq * hidden)


def _intensity(x: dict, width: str, setup: dict) -> float | None:
    """FLOP/byte of one configuration (see :func:`plot_roofline`); None if underivable."""
    if x.get("tflops") and x.get("model_gbps"):
        return 1e3 * x["tflops"] / x["model_gbps"]          # (FLOP/s) / (B/s): time cancels
    try:
        hidden, inter = (int(v) for v in width.split("/"))
        tokens = setup["batch"] * setup["seq"]
        return layer_flops(width, setup) / (16.0 * tokens * (5 * hidden + inter))  # L, T cancel
    except (KeyError, TypeError, ValueError):
        return None


def training_floor_reading(record: dict, width: str = "768/3072", dtype: str = INT8) -> str:
    """Why an fp32 Eq. 4 pass keeps the training step above issue 12's bound, in words: the
    pass's products (:func:`layer_flops` per layer forward, twice that backward) at the record's
    measured fp32 matmul peak, against the forward simulated in ``dtype``, and the rate the
    bound (:func:`train_limit`) would need; or a line naming what the record lacks."""
    try:
        setup, peak = record["setup"], record["peaks"]["matmul_fp32_tflops"]
        forward = record["widths"][width]["training"]["dtypes"][dtype]["forward_s"]
        flops = 3 * setup["layers"] * layer_flops(width, setup)
    except (KeyError, TypeError, ValueError):
        return (f"`{record.get('name', '?')}` has no {dtype} training timing at width {width} "
                f"with the setup and fp32 peak to bound it.")
    floor, limit = flops / (peak * 1e12) / forward, train_limit(dtype)
    need = flops / ((limit - 1) * forward) / 1e12
    return (f"Eq. 4's pass multiplies {flops / 1e9:.0f} GFLOP at width {width} (the six linear "
            f"layers and the attention of {setup['layers']} layers over {setup['batch']} x "
            f"{setup['seq']} tokens, the backward twice the forward). At the measured fp32 matmul "
            f"peak ({_g(peak)} TFLOP/s) that alone is {_g(floor)}x the {dtype} forward "
            f"({_g(forward * 1e3)} ms), so no step with an fp32 pass, compiled or not, comes under "
            f"{_g(1 + floor)}x; the {limit:g}x bound needs the pass's products at "
            f"{_g(need)} TFLOP/s or more, a tensor-core rate (TF32 or bf16), not fp32's.")


def plot_roofline(record: dict, title: str | None = None) -> Figure:
    """Roofline of one record: achieved TFLOP/s vs arithmetic intensity (FLOP/byte), log-log.

    Roofs: the measured n^3 matmul peak of each dtype (flat; int8's, in tera-ops/s, in a 1-bit
    record) and the measured device copy bandwidth (slanted, ``bandwidth x intensity``). One
    labelled point per (dtype, width).

    The records hold no byte counts, so the intensity is derived. ``tflops`` and ``model_gbps``
    of a configuration are the FLOPs and the modelled bytes of the same simulation divided by
    the same time, so ``intensity = 1e3 * tflops / model_gbps`` FLOP/byte. Without them it is
    recomputed from ``setup`` and the width ``D/F`` with the bench's model (``sim_work``):
    ``2 B N (4 D^2 + 2 D F + 2 N D)`` FLOPs over ``16 B N (5 D + F)`` bytes per step and layer.
    The byte model is a lower bound, so the intensity is an upper bound. If neither works for
    some point, the figure plots achieved TFLOP/s against achieved GB/s instead (flat roof: the
    matmul peak, vertical roof: the copy bandwidth) and its title says so.
    """
    setup, peaks, bw = record.get("setup", {}), record.get("peaks", {}), record.get("peaks", {}).get("copy_gbps")
    dtypes = record_dtypes(record)
    tops = {d: peaks.get(f"matmul_{d}_tflops") for d in dtypes if peaks.get(f"matmul_{d}_tflops")}
    pts = [(d, w, k, _intensity(x, w, setup), x["tflops"], x.get("model_gbps"))
           for w, r in _widths(record) for k, d in enumerate(dtypes)
           if (x := r.get("simulation", {}).get(d)) and x.get("tflops")]
    roofline = all(p[3] for p in pts)
    pts = [(d, w, k, p3 if roofline else gb, tf) for d, w, k, p3, tf, gb in pts if (p3 if roofline else gb)]
    xs = [p[3] for p in pts] + (([t * 1e3 / bw for t in tops.values()] if roofline else [bw]) if bw else [])
    ys = [p[4] for p in pts] + list(tops.values())
    lo, hi = (min(xs) / 10, max(xs) * 10) if xs else (0.1, 10.0)
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _new_figure((7.0, 4.8), 1)
        for k, (d, peak) in enumerate(tops.items()):
            style = dict(color=f"C{k}", linestyle={"fp32": "--", INT8: ":"}.get(d, "-"), lw=1.2,
                         label=f"{d} matmul peak")
            ax.plot([max(lo, peak * 1e3 / bw) if (roofline and bw) else lo, hi], [peak, peak], **style)
        if bw and roofline:
            top = max(tops.values(), default=max(ys, default=1.0))
            ax.plot([lo, min(hi, top * 1e3 / bw)], [bw * lo / 1e3, min(bw * hi / 1e3, top)],
                    color="0.3", lw=1.2, label="copy bandwidth")
        elif bw:
            ax.axvline(bw, color="0.3", lw=1.2, label="copy bandwidth")
        for d, width, k, xv, tf in pts:
            ax.plot([xv], [tf], "o^s"[k], color=f"C{k}", markersize=7)
            left = d == INT8          # int8 labelled to the left: its points sit between fp32 and bf16
            ax.annotate(f"{d} {width}", (xv, tf), xytext=(-8, -3) if left else (6, 5 - 12 * k),
                        textcoords="offset points", fontsize=8, ha="right" if left else "left")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylabel="achieved TFLOP/s",
               ylim=(min(ys) / 10, max(ys) * 3) if ys else (1e-3, 1.0),
               xlabel="arithmetic intensity (FLOP/byte, modelled bytes)" if roofline
               else "achieved GB/s (modelled bytes)")
        device = record.get("provenance", {}).get("device", "?")
        ax.set_title(f"{title or record.get('name', '')} on {device}: " + (
            "roofline" if roofline else "no byte counts: TFLOP/s vs GB/s against both roofs"), fontsize=10)
        if not pts:
            ax.text(0.5, 0.5, "no configuration with TFLOP/s and bytes", ha="center", va="center", transform=ax.transAxes,
                    color="0.4")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
    return fig


def pruning_time_table(profile: str = "paper", tasks=("sst2", "mrpc"),
                       stage: str = "spatial_fisher_asr") -> pd.DataFrame:
    """Post-training spatial pruning time per task (Fisher pass + search + rearrangement), read
    from the pipeline's records (``metrics.pruning_seconds``), against the < 3 min target."""
    from ..runs.records import read_record
    rows = []
    for task in tasks:
        rec = read_record(profile, task, stage)
        sec = None if rec is None else rec["metrics"].get("pruning_seconds")
        rows.append({"task": task, "device": "not run" if rec is None else rec["provenance"]["device"],
                     "Fisher (s)": _num(None if rec is None else rec["metrics"].get("fisher_seconds")),
                     "search + rearrangement (s)": _num(None if rec is None else rec["metrics"].get("search_seconds")),
                     "total (s)": _num(sec), "target": f"< {T_SPATIAL_S / 60:g} min",
                     "met?": "n-a" if sec is None else ("yes" if sec < T_SPATIAL_S else "no")})
    return pd.DataFrame(rows).set_index("task")
