"""Notebook helpers and prose: provenance tables, run status, one-line comparisons, sweep and
history tables, and the summaries the notebooks print under their tables."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from ..runs.records import computes_as_now, results_root, same_upstream
from .paper import load_paper_results, task_label
from .tables import (NO_METRIC, NOT_RUN, TABLE_I_KEYS, TABLE_STAGES, _is_missing, as_record_map,
                     collect_records, fmt_missing, get_metric)


# ---------------------------------------------------------------------------- provenance & prose
PROVENANCE_COLUMNS = ["profile", "device", "seed", "wall time (s)", "git commit", "git dirty", "finished",
                      "status", "note"]
#: :func:`record_status` of a record made by the code this process runs.
CURRENT_CODE = "current code"


def _upstream_on_disk(entry: Mapping, root: Path | None = None) -> dict | None:
    """The record an ``provenance.upstream`` entry points at, as it is on disk now (None if absent).

    The stored path is where the run wrote it (often another machine's results folder): its last
    three parts (``<profile>/<task>/<stage>.json``) are looked up under the current results root
    first, then the path itself."""
    stored = entry.get("record") if isinstance(entry, Mapping) else None
    if not stored:
        return None
    stored = Path(stored)
    candidates = []
    if len(stored.parts) >= 3:
        candidates.append(Path(root or results_root()).joinpath(*stored.parts[-3:]))
    candidates.append(stored)
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
    return None


def record_status(record: Mapping | None,
                  upstream: Mapping[str, Mapping | None] | Callable[[str, Mapping], Mapping | None] | None = None
                  ) -> str:
    """Whether a record was made by the code this process runs, and whether its inputs changed.

    ``"current code"`` when the record was computed by code that computes as this one does
    (:func:`stpcore.runs.records.computes_as_now`: the same ``compute_sha256``, which leaves out
    ``report/``); otherwise ``"made by commit <7 chars> (older code)"`` (``unknown commit``
    where the record names none). For each ``provenance.upstream`` entry (``{stage: {"record":
    path, "finished": iso, "checkpoint_sha256": ...}}``) that no longer names the current
    upstream record (:func:`stpcore.runs.records.same_upstream`: another model, or another run of
    a stage without one), ``"; upstream <stage> rerun since"`` is appended (an upstream record
    that is gone adds ``"; upstream <stage> missing"``).

    ``upstream``: the current upstream records, ``{stage: record or None}`` or a callable
    ``(stage, entry) -> record or None``; None reads them from disk (see :func:`_upstream_on_disk`).
    A missing record gives ``NOT_RUN`` ("not run").
    """
    if record is None:
        return NOT_RUN
    prov = record.get("provenance") or {}
    if computes_as_now(prov):
        text = CURRENT_CODE
    else:
        commit = prov.get("git_commit")
        text = f"made by commit {commit[:7]} (older code)" if commit else "made by unknown commit (older code)"
    for stage, entry in sorted((prov.get("upstream") or {}).items()):
        if not isinstance(entry, Mapping):
            continue
        if upstream is None:
            now = _upstream_on_disk(entry)
        elif callable(upstream):
            now = upstream(stage, entry)
        else:
            now = upstream.get(stage)
        if now is None:
            text += f"; upstream {stage} missing"
        elif not same_upstream(entry, now):
            text += f"; upstream {stage} rerun since"
    return text


class FullTextFrame(pd.DataFrame):
    """A table that shows its text cells in full when displayed (pandas otherwise cuts a cell at
    ``display.max_colwidth``, 50 characters, mid-sentence: a provenance note or status would end
    in "..."). Frames derived from it are plain DataFrames."""

    @property
    def _constructor(self):
        return pd.DataFrame

    def _repr_html_(self):
        with pd.option_context("display.max_colwidth", None):
            return super()._repr_html_()

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            return super().__repr__()


def provenance_note(prov: Mapping) -> str:
    """A record's ``provenance.note``, and for a record evaluated again in another dtype
    (``evaluated_in``, ``evaluated_from``) a sentence saying that its wall time is that
    evaluation's, and which run trained it (commit, wall time, dev accuracy and dtype). Full
    40-digit commits and 64-digit digests in the note are shown by their first 10 digits."""
    note, before = re.sub(r"\b([0-9a-f]{10})(?:[0-9a-f]{30}|[0-9a-f]{54})\b", r"\1", prov.get("note", "") or ""), \
        prov.get("evaluated_from")
    if not (prov.get("evaluated_in") and isinstance(before, Mapping)):
        return note
    commit, wall, acc = before.get("git_commit"), before.get("wall_time_s"), before.get("dev_accuracy")
    made = (f"trained by commit {commit[:7] if commit else 'unknown'}"
            + (f" in {wall:.0f} s" if isinstance(wall, (int, float)) else "")
            + (f", dev acc {acc:.2f} in {before.get('dtype', 'its dtype')}" if isinstance(acc, (int, float)) else ""))
    text = f"Evaluated again in {prov['evaluated_in']}: the wall time is that evaluation's; {made}."
    return f"{note} {text}" if note else text


def provenance_table(records) -> pd.DataFrame:
    """Where each number came from: one row per ``(task, stage)`` of a mapping ("not run" where
    no record), or per record of a list (several seeds of one stage each get their row).

    The ``status`` column is :func:`record_status`: whether the record was made by the current
    code (else the commit that made it) and which of its upstream records were rerun since. The
    table displays its status and note in full (:class:`FullTextFrame`); the note is
    :func:`provenance_note`."""
    rows, index = [], []
    if records is None or isinstance(records, Mapping):
        items = sorted(as_record_map(records).items())
    else:
        items = sorted((((r["task"], r["stage"]), r) for r in records if r is not None),
                       key=lambda kv: (kv[0], kv[1]["provenance"].get("seed", 0),
                                       kv[1]["provenance"].get("finished", "")))
    for (task, stage), rec in items:
        index.append((task, stage))
        if rec is None:
            rows.append([NOT_RUN] * len(PROVENANCE_COLUMNS))
            continue
        prov = rec.get("provenance", {})
        commit = prov.get("git_commit")
        rows.append([rec.get("profile"), prov.get("device"), prov.get("seed"), prov.get("wall_time_s"),
                     commit[:10] if commit else NO_METRIC, prov.get("git_dirty"), prov.get("finished"),
                     record_status(rec), provenance_note(prov)])
    return FullTextFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["task", "stage"]) if index
                         else pd.MultiIndex.from_tuples([], names=["task", "stage"]),
                         columns=PROVENANCE_COLUMNS)


def run_status(records, seed: int | None = None) -> str:
    """One sentence: how many of the requested stages have records (at ``seed``, where given:
    the tables of one seed say which one, beside the tables over seeds)."""
    recs = as_record_map(records)
    done = sorted(f"{t}/{s}" for (t, s), r in recs.items() if r is not None)
    missing = sorted(f"{t}/{s}" for (t, s), r in recs.items() if r is None)
    at = "" if seed is None else f" at seed {seed}"
    text = f"{len(done)} of {len(recs)} requested (task, stage) records are present{at}."
    if missing:
        text += " Not run: " + ", ".join(missing) + "."
    return text


def compare_sentence(what: str, ours: Any, paper: Any, unit: str = "", digits: int = 2) -> str:
    """A sentence quoting a number of ours next to the paper's (for notebook prose).

    A difference of two percentages is in percentage points: with ``unit`` " %" it reads
    "(difference -7.57 points)", not "%"."""
    if _is_missing(ours) or isinstance(ours, str):
        return f"{what}: paper {fmt_missing(paper, digits)}{unit}; ours: {ours if isinstance(ours, str) else NOT_RUN}."
    gap_unit = " points" if unit.strip() == "%" else unit
    return (f"{what}: paper {paper:.{digits}f}{unit}, ours {float(ours):.{digits}f}{unit} "
            f"(difference {float(ours) - float(paper):+.{digits}f}{gap_unit}).")


# ---------------------------------------------------------------------------- notebook helpers
#: Artifacts the paper reports on SST-2 only.
SST2_ONLY = ("table_iv", "table_v", "fig_3", "fig_4")


def collect_for(artifact: str, tasks: Iterable[str], profile: str = "smoke", seed: int = 0,
                recompute: bool = False, getter: Callable[..., dict | None] | None = None):
    """The records one artifact (``"table_ii"``, ``"fig_5"``, ...) needs for ``tasks``.

    Artifacts the paper shows on SST-2 only use ``sst2`` if it is among ``tasks`` (else none).
    """
    tasks = list(tasks)
    if artifact in SST2_ONLY:
        tasks = [t for t in tasks if t == "sst2"]
    return collect_records(tasks, TABLE_STAGES[artifact], profile=profile, seed=seed,
                           recompute=recompute, getter=getter)


def _student_width(teacher: str) -> int | None:
    """The hidden size of ``teacher`` (the student follows it), or None where its config cannot
    be read (a hub teacher offline)."""
    try:
        from transformers import AutoConfig

        from ..train.teacher import resolve_teacher
        return int(AutoConfig.from_pretrained(resolve_teacher(teacher)).hidden_size)
    except Exception:      # noqa: BLE001 - any failure to read it only leaves the row n/a
        return None


def decisive_knobs(task: str, profile: str) -> dict:
    """Knobs of profile ``profile`` for ``task`` that Table I does not list and other pages call
    decisive: the dtype 1-bit models are simulated in, the mask and threshold learning rates,
    the training examples per retraining epoch, and the λ retraining applies (Table I's, scaled
    by (reference width / D)^2, :func:`stpcore.prune.retrain.penalty_scale`)."""
    from ..prune.retrain import penalty_scale
    from ..runs.profiles import binary_dtype_name, get_profile
    p = get_profile(profile, task)
    width = _student_width(p.teacher)
    return {"binary_sim_dtype (1-bit models)": binary_dtype_name(p.to_dict()),
            "mask_lr": p.mask_lr, "threshold_lr": p.threshold_lr,
            "retrain_limit (examples per epoch)": next((n for n in (p.retrain_limit, p.train_limit) if n is not None),
                                                       "whole split"),
            "λ applied (Table I's x (768 / D)^2)": NO_METRIC if width is None else
            p.ac_penalty_lambda * penalty_scale(width, p.penalty_reference_width)}


def extra_hyperparameters(profile_cfgs: Mapping[str, Mapping | None], profile: str | None = None) -> pd.DataFrame:
    """The knobs of our runs that Table I does not list (rows) per task (columns), then
    :func:`decisive_knobs` of ``profile`` (None: the profile whose
    :func:`stpcore.runs.profiles.hyperparameters` are the ones given, where one is). Floats are
    shown as written (``5e-10``), not rounded to the table's decimals."""
    from ..runs.profiles import PROFILES, hyperparameters
    cols = {}
    for t, cfg in profile_cfgs.items():
        if cfg is None:
            continue
        col = {k: v for k, v in cfg.items() if k not in TABLE_I_KEYS}
        name = profile or next((n for n in PROFILES if hyperparameters(t, n) == dict(cfg)), None)
        if name is not None:
            col.update(decisive_knobs(t, name))
        cols[task_label(t)] = {k: f"{v:g}" if isinstance(v, float) else v for k, v in col.items()}
    return pd.DataFrame(cols)


def sweep_table(record: dict | None, x_key: str) -> pd.DataFrame:
    """The points of a ``budget_sweep`` / ``base_sweep`` record as a table (one row per point);
    a one-cell "not run" table without a record."""
    if record is None:
        return pd.DataFrame({x_key: [NOT_RUN]})
    points = sorted(record.get("metrics", {}).get("points") or [], key=lambda p: p[x_key])
    df = pd.DataFrame(points)
    if "acs_fraction" in df:
        df["ACs (%)"] = (100.0 * df.pop("acs_fraction")).round(2)
    return df.set_index(x_key).round(2)


def history_table(record: dict | None) -> pd.DataFrame:
    """Per-epoch history of a record (layer ASRs as one column per layer)."""
    if record is None:
        return pd.DataFrame({"epoch": [NOT_RUN]})
    hist = record.get("metrics", record).get("history") or []
    rows = []
    for h in hist:
        row = {k: v for k, v in h.items() if k != "layer_asr"}
        for i, a in enumerate(h.get("layer_asr") or []):
            row[f"ASR L{i + 1}"] = a
        rows.append(row)
    df = pd.DataFrame(rows)
    return (df.set_index("epoch") if "epoch" in df else df).round(4)


def activity_summary(record: dict | None) -> str:
    """Fig. 3 in words: final-epoch mean ASR (averaged over layers) and Normalized #C, with vs
    without the activity loss, then each layer's ASR and #C change, relative to the run without
    it (the paper's Fig. 3 gives no numbers; its text says the loss lowers the ASR of every layer
    and notably #C)."""
    if record is None:
        return f"Activity-loss ablation: {NOT_RUN}."
    parts, last = [], {}
    for name in ("with", "without"):
        hist = (record["metrics"].get(name) or {}).get("history") or []
        if not hist:
            parts.append(f"{name} the activity loss: {NOT_RUN}")
            continue
        last[name] = hist[-1]
        asr = last[name].get("layer_asr") or []
        mean_asr = sum(asr) / len(asr) if asr else float("nan")
        parts.append(f"{name} the activity loss, epoch {last[name].get('epoch')}: mean ASR over layers "
                     f"{mean_asr:.4f}, Normalized #C {last[name].get('normalized_c', float('nan')):.4f}")
    text = "; ".join(parts) + "."
    if len(last) < 2 or not last["with"].get("layer_asr"):
        return text
    rel = [100 * (a / b - 1) for a, b in zip(last["with"]["layer_asr"], last["without"]["layer_asr"])]
    c_rel = 100 * (last["with"]["normalized_c"] / last["without"]["normalized_c"] - 1)
    lowered = [f"L{i + 1}" for i, r in enumerate(rel) if r <= -1.0]
    return (text + " With minus without, relative to without: ASR "
            + ", ".join(f"L{i + 1} {r:+.2f} %" for i, r in enumerate(rel))
            + f"; Normalized #C {c_rel:+.2f} %. Layers whose ASR the loss lowers by at least 1 %: "
            + (", ".join(lowered) if lowered else "none") + f" of {len(rel)} (one seed).")


def profile_banner(profile: str) -> str:
    """What the numbers of a profile are (printed at the top of every notebook)."""
    if profile == "smoke":
        return ("Profile 'smoke': a tiny CPU run (few examples, 2 layers, few timesteps) that exercises the "
                "whole pipeline. Its numbers test the code; they are NOT comparable with the paper's.")
    return (f"Profile '{profile}': Table I settings on one GPU (see the deviations page for what differs "
            "from the paper). Stages without a record show 'not run'.")


def paper_value(table: str, task: str, stage: str, key: str) -> float | None:
    """One published number: e.g. ``paper_value("table_ii", "sst2", "two_stage", "accuracy")``.

    ``key``: ``accuracy``/``acs_percent`` (Table II), ``accuracy``/``normalized_c``/``latency``
    (Table III), ``accuracy`` (Table IV), ``accuracy``/``timesteps`` (Table V). None if the
    paper has no such number.
    """
    p = load_paper_results()
    if table == "table_ii":
        for r in p["table_ii"]["rows"]:
            if r["stage"] == stage:
                return r["values"].get(task, {}).get(key)
        return None
    if table == "table_iii":
        return p["table_iii"]["values"].get(task, {}).get(stage, {}).get(key)
    if table in ("table_iv", "table_v"):
        if task != p[table]["task"]:
            return None
        for r in p[table]["rows"]:
            if r["stage"] == stage:
                return r.get(key)
        return None
    raise ValueError(f"`table` must be one of table_ii..table_v; got {table!r}")


def reduction_summary(records, tasks: Iterable[str]) -> str:
    """Sec. IV-C in words: Normalized #C and latency of the pruned (and adaptive) model as a
    reduction ``1 - pruned / baseline``, ours and the paper's, per task."""
    recs = as_record_map(records)
    lines = []
    for task in tasks:
        base = recs.get((task, "baseline"))
        for stage in ("two_stage", "adaptive_threshold"):
            rec = recs.get((task, stage))
            for key, name in (("normalized_c", "Normalized #C"), ("latency", "latency")):
                mkey = "mean_latency" if key == "latency" else key
                pb, ps = paper_value("table_iii", task, "baseline", key), paper_value("table_iii", task, stage, key)
                paper_red = 100.0 * (1.0 - ps / pb) if pb and ps is not None else None
                ob, os_ = get_metric(base, mkey), get_metric(rec, mkey)
                if isinstance(ob, float) and isinstance(os_, float) and ob > 0:
                    ours = 100.0 * (1.0 - os_ / ob)
                else:
                    ours = os_ if isinstance(os_, str) else (ob if isinstance(ob, str) else None)
                lines.append(compare_sentence(f"{task} {stage}: {name} reduction vs baseline", ours,
                                              paper_red, " %"))
    return "\n".join(lines)


def random_mask_summary(two_stage: Mapping[str, dict | None], random_mask: Mapping[str, dict | None],
                        tasks: Iterable[str], accuracy_key: str = "dev_accuracy") -> str:
    """Fig. 5 in words: our accuracy with the post-training masks vs a random mask, per task."""
    lines = []
    for task in tasks:
        a = get_metric(two_stage.get(task), accuracy_key)
        b = get_metric(random_mask.get(task), accuracy_key)
        fa = f"{a:.2f} %" if isinstance(a, float) else (a or NOT_RUN)
        fb = f"{b:.2f} %" if isinstance(b, float) else (b or NOT_RUN)
        line = f"{task}: post-training masks {fa}, random mask {fb}"
        if isinstance(a, float) and isinstance(b, float):
            line += f" (post-training minus random: {a - b:+.2f} points)"
        lines.append(line + ".")
    return "\n".join(lines)
