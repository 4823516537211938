"""Evidence for the temporal granularity (per spiking population vs per encoder layer).

The paper's Table III latencies, the temporal complexity c of every population under several
trace readings (the ``temporal_readings`` stage), and what Eq. 10 allocates from them at both
granularities. Every number comes from the paper's file or from a record.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable

import pandas as pd

from ..snn.layer import POPULATIONS
from .paper import PAPER_TASKS, load_paper_results, task_label


def paper_latencies() -> list[tuple[str, str, float]]:
    """(task, row, latency) of every pruned model in Table III (two-stage, adaptive)."""
    values = load_paper_results()["table_iii"]["values"]
    return [(task, row, float(values[task][row]["latency"])) for task in PAPER_TASKS
            for row in ("two_stage", "adaptive_threshold") if task in values]


def latency_divisors(max_divisor: int = 30) -> pd.DataFrame:
    """For each candidate number of populations d: how many of Table III's pruned latencies
    are a whole number of d-ths (a mean over d integer timesteps must be). Latencies are
    printed to two decimals, so k/d is taken as matching when it rounds to the printed value."""
    lat = paper_latencies()
    rows = []
    for d in range(1, max_divisor + 1):
        hits = sum(abs(round(v * d) / d - v) < 0.005 + 1e-9 for _, _, v in lat)
        rows.append({"d (populations averaged)": d, "latencies that are k/d": hits,
                     "of": len(lat)})
    return pd.DataFrame(rows).set_index("d (populations averaged)")


def latency_divisors_reading(div: pd.DataFrame, layers: int = 4) -> str:
    """What :func:`latency_divisors` shows: which d fit every latency, the most any other d fits
    (and which d), how many ``layers`` (a mean over the encoder layers) fits, and how many
    latencies every d fits (the whole numbers)."""
    hits, total = div["latencies that are k/d"], int(div["of"].iloc[0])
    full = [int(d) for d in div.index[hits == total]]
    rest = hits[hits < total]
    best = [int(d) for d in rest.index[rest == rest.max()]] if len(rest) else []
    parts = [f"Of d = {div.index.min()} to {div.index.max()}, "
             + (f"only d = {', '.join(map(str, full))} fit{'s' * (len(full) == 1)} all {total}"
                if full else f"no d fits all {total}")]
    if best:
        parts.append(f"the next best fit {int(rest.max())} (d = {', '.join(map(str, best))})")
    if layers in div.index:
        parts.append(f"d = {layers}, a mean over the {layers} layers, fits {int(hits[layers])}")
    if 1 in div.index:
        parts.append(f"every d fits the {int(hits[1])} whole-number latencies")
    return "; ".join(parts) + "."


def latency_sums(d: int = 25) -> pd.DataFrame:
    """Table III's pruned latencies times d: the total timesteps over d populations."""
    return pd.DataFrame([{"task": task_label(t), "row": r, "latency": v,
                          f"x {d}": str(Fraction(v).limit_denominator(d) * d)}
                         for t, r, v in paper_latencies()])


def components_table(record: dict | None) -> pd.DataFrame | None:
    """c per population (rows: embedding, then layer x population) under each trace reading;
    the columns' name says which task's (and seed's) baseline the record measured."""
    if record is None:
        return None
    readings = record["metrics"]["readings"]
    rows = {}
    for name, r in readings.items():
        c = r["components"]
        col = {("embedding", ""): c["embedding"]}
        for l, row in enumerate(c["layers"], 1):
            col.update({(f"layer {l}", p): v for p, v in zip(POPULATIONS, row)})
        rows[name] = col
    table = pd.DataFrame(rows)
    table.columns.name = f"{task_label(record['task'])}, seed {record['provenance'].get('seed', 0)}: c per reading"
    return table


def allocation_table(record: dict | None, paper_rows: Iterable[str] = ("two_stage",)) -> pd.DataFrame | None:
    """Per reading and granularity: ACs kept and mean latency (% of T_conv) that Eq. 10 gives
    at the profile's base, beside the paper's pruned latency for the task (the columns name the
    task)."""
    if record is None:
        return None
    m, task = record["metrics"], record["task"]
    values = load_paper_results()["table_iii"]["values"].get(task, {})
    paper = {r: 100 * values[r]["latency"] / values["baseline"]["latency"]
             for r in paper_rows if r in values}
    rows = []
    for name, r in m["readings"].items():
        for gran, a in r["allocation"].items():
            rows.append({"reading": name, "granularity": gran,
                         "ACs kept (%)": round(100 * a["acs_fraction"], 1),
                         "latency (% of T_conv)": round(100 * a["mean_latency"] / m["t_conv"], 1),
                         **{f"paper {row} latency, {task_label(task)} (%)": round(v, 1)
                            for row, v in paper.items()}})
    table = pd.DataFrame(rows).set_index(["reading", "granularity"])
    table.columns.name = f"{task_label(task)}, seed {record['provenance'].get('seed', 0)}"
    return table


def temporal_pca_table(records: dict[str, dict | None]) -> pd.DataFrame:
    """Post-training temporal pruning, labelled records (e.g. per granularity and seed): the
    task, dev accuracy, ACs kept and mean latency (% of T_conv)."""
    rows = []
    for label, rec in records.items():
        if rec is None:
            rows.append({"run": label, "dev accuracy": "not run"})
            continue
        m, t = rec["metrics"], rec["config"]["t_conv"]
        rows.append({"run": label, "task": task_label(rec["task"]),
                     "granularity": m.get("temporal_granularity", "layer"),
                     "dev accuracy": round(m["dev_accuracy"], 2),
                     "ACs kept (%)": round(100 * m["acs_fraction"], 1),
                     "latency (% of T_conv)": round(100 * m["mean_latency"] / t, 1),
                     "commit": str(rec["provenance"].get("git_commit"))[:7]})
    return pd.DataFrame(rows).set_index("run")
