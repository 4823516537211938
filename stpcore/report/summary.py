"""The starting point (Sec. IV-B): teacher, full-precision and 1-bit SpikingBERT beside the paper.

Used by the book's "Starting point" notebook and by ``scripts/update_readme.py``.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import pandas as pd

from ..runs.profiles import binary_dtype_name
from .paper import load_paper_results
from . import stats
from .notes import paper_value
from .seeds import _interval
from .tables import NO_METRIC, NOT_RUN, difference, fmt_missing, get_metric

FOUNDATION_STAGES = ("teacher", "spiking_fp", "baseline")
STAGE_LABELS = {"teacher": "Teacher (fine-tuned BERT-family encoder)",
                "spiking_fp": "SpikingBERT, full precision (ours)",
                "baseline": "SpikingBERT, 1-bit (ours; the paper's baseline)"}


#: The headline claim's three checks (:func:`stpcore.report.verdicts.headline_verdicts`), accuracy change >= -tolerance (points);
#: ACs kept <= the paper's share + slack; latency kept <= the paper's share + slack (points of
#: % of T_conv). With the paper's Table III that is SST-2 <= 67.4 % of T_conv, MRPC <= 54.1 %.
ACCURACY_TOLERANCE, ACS_SLACK, LATENCY_SLACK = 1.0, 5.0, 5.0


def paper_latency_percent(task: str) -> float | None:
    """The paper's two-stage mean latency as % of its baseline's (Table III), or None."""
    p_lat = paper_value("table_iii", task, "two_stage", "latency")
    p_t = paper_value("table_iii", task, "baseline", "latency")
    return None if p_lat is None or not p_t else 100.0 * p_lat / p_t


def paper_reference(task: str, stage: str) -> float | None:
    """The paper's number to compare a foundation stage with (None where it has none)."""
    paper = load_paper_results()
    if stage == "baseline":
        row = next(r for r in paper["table_ii"]["rows"] if r["stage"] == "baseline")
        return row["values"].get(task, {}).get("accuracy")
    if stage == "spiking_fp" and task == "sst2":
        return paper["external"]["spikingbert_fp_sst2"]["accuracy"]
    return None


def foundation_table(records: Mapping[tuple[str, str], dict | None],
                     tasks: Iterable[str] = ("sst2", "mrpc")) -> pd.DataFrame:
    """Dev accuracy (%) of each foundation stage, the paper's reference, the difference,
    Normalized #C, where it ran and how long its training took (for a record evaluated again in
    another dtype, ``provenance.evaluated_from``, the run that trained it, not the evaluation:
    the provenance tables give that one). ``records``: ``{(task, stage): record or None}``."""
    rows = []
    for task in tasks:
        for stage in FOUNDATION_STAGES:
            rec = records.get((task, stage))
            ours, ref = get_metric(rec, "dev_accuracy"), paper_reference(task, stage)
            prov = (rec or {}).get("provenance", {})
            rows.append({"task": task, "model": STAGE_LABELS[stage],
                         "dev acc (ours)": fmt_missing(ours),
                         "paper / reference": fmt_missing(ref, missing=NO_METRIC),
                         "diff": difference(ours, ref),
                         "Normalized #C": fmt_missing(get_metric(rec, "normalized_c"), 3, NO_METRIC)
                         if stage != "teacher" else NO_METRIC,
                         "device": prov.get("device", NOT_RUN),
                         "training wall time (s)": fmt_missing((prov.get("evaluated_from") or prov).get("wall_time_s"), 0)})
    return pd.DataFrame(rows).set_index(["task", "model"])


def record_dtype(record: dict | None) -> str:
    """The dtype a record's dev metrics were simulated in: ``provenance.evaluated_in`` for a
    record evaluated again (:func:`stpcore.runs.runner.Run.evaluated_as_now`), else its
    configuration's 1-bit dtype (:func:`stpcore.runs.profiles.binary_dtype_name`)."""
    if record is None:
        return NOT_RUN
    cfg = record.get("config") or {}
    return ((record.get("provenance") or {}).get("evaluated_in")
            or (binary_dtype_name(cfg) if "sim_dtype" in cfg else None) or NO_METRIC)


def precision_table(records: Mapping[tuple[str, str], dict | None],
                    tasks: Iterable[str] = ("sst2", "mrpc")) -> pd.DataFrame:
    """The ``precision_check`` records: the 1-bit baseline simulated in each dtype (fp32 is
    exact), with the ``baseline`` record's own dev accuracy beside it for reference (and the
    dtype that record was simulated in, :func:`record_dtype`: pages that set an archived bf16
    record beside the check show another number than the int8 record), and each
    dtype's dev accuracy minus fp32's, paired over the dev examples
    (:func:`stats.paired_bootstrap_ci`; records that predate the stored predictions have none)."""
    rows = []
    for task in tasks:
        rec, base = records.get((task, "precision_check")), records.get((task, "baseline"))
        results = (rec or {}).get("metrics", {}) or {"not run": {}}
        exact = stats.correct_vector({"metrics": results.get("float32", {})})
        for dtype, m in results.items():
            mine = stats.correct_vector({"metrics": m})
            d = (None if dtype == "float32" or exact is None or mine is None or exact.size != mine.size
                 else stats.paired_bootstrap_ci(exact, mine))
            rows.append({"task": task, "simulation dtype": dtype,
                         "dev acc": fmt_missing(m.get("dev_accuracy")),
                         "held-out acc": fmt_missing(m.get("heldout_accuracy")),
                         "Normalized #C": fmt_missing(m.get("normalized_c"), 4),
                         "Δ dev acc vs fp32 (pt)": NO_METRIC if d is None else round(d["diff"], 2),
                         "95% interval (paired)": _interval(d),
                         "baseline record's dev acc": fmt_missing(get_metric(base, "dev_accuracy")),
                         "baseline record simulated in": record_dtype(base)})
    return pd.DataFrame(rows).set_index(["task", "simulation dtype"])


def energy_table(records: Mapping[tuple[str, str, int], dict | None],
                 stages: Iterable[str] = ("baseline", "two_stage", "adaptive_threshold"),
                 tasks: Iterable[str] = ("sst2", "mrpc")) -> pd.DataFrame:
    """An *estimate* of the synaptic energy per example: Normalized #C (Eq. 14) times the
    unpruned model's ACs at full activity (Eq. 15-21, N = max_length) gives the spike-driven
    ACs, priced at 0.9 pJ per AC (:func:`stpcore.prune.acs.estimate_energy`, 45 nm figures). Not a
    measurement: no hardware ran these models. ``records``: ``{(task, stage, seed): record}``
    (:func:`stpcore.report.seeds.collect_seeded`); Normalized #C is the mean over the seeds found."""
    from ..prune.acs import estimate_energy
    rows = []
    for task in tasks:
        for stage in stages:
            found = {k[2]: r for k, r in sorted(records.items())
                     if k[:2] == (task, stage) and r is not None and isinstance(get_metric(r, "normalized_c"), float)}
            if not found:
                rows.append({"task": task, "stage": stage, "seeds": NOT_RUN, "Normalized #C": NOT_RUN,
                             "ACs per example (est.)": NOT_RUN, "energy per example (mJ, est.)": NOT_RUN})
                continue
            nc = sum(get_metric(r, "normalized_c") for r in found.values()) / len(found)
            acs = nc * unpruned_acs(next(iter(found.values()))["config"])
            rows.append({"task": task, "stage": stage, "seeds": ",".join(map(str, found)),
                         "Normalized #C": round(nc, 3), "ACs per example (est.)": f"{acs:.3g}",
                         "energy per example (mJ, est.)": round(estimate_energy(acs) * 1e3, 2)})
    return pd.DataFrame(rows).set_index(["task", "stage"])


def unpruned_acs(profile_config: dict) -> float:
    """M(1, 1, T_conv) (Eq. 15-21, N = max_length) of the student a profile builds; its width
    follows the teacher, whose config is read from the teacher's folder or hub id."""
    from transformers import AutoConfig

    from ..prune.acs import count_acs
    from ..train.teacher import resolve_teacher
    tc = AutoConfig.from_pretrained(resolve_teacher(profile_config["teacher"]))
    layers, steps = profile_config["student_layers"], profile_config["t_conv"]
    return float(count_acs([[1.0] * tc.num_attention_heads] * layers,
                           [[1.0] * tc.intermediate_size] * layers, [steps] * layers,
                           profile_config["max_length"], tc.hidden_size, tc.num_attention_heads))
