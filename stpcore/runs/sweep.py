"""Choosing a training schedule on held-out data, never on dev.

Each schedule (a *variant*: a name and its profile overrides) is trained into its own results
root, with the same seeds. :func:`choose_variant` ranks the variants by their mean held-out
accuracy over the seeds; dev accuracy is listed beside it only to show how well held-out tracked
dev. The returned summary is what the book shows as the sweep behind a chosen schedule.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Mapping

from .records import load_record, record_path

RULE = "highest mean held-out accuracy over the seeds (dev accuracy is reported, never used)"


def parse_variant(text: str) -> tuple[str, Path, dict[str, str]]:
    """``NAME:ROOT[:key=value,key=value]`` -> (name, results root, raw overrides)."""
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"`--variant` must be NAME:ROOT[:key=value,...]; got {text!r}")
    items = [kv for kv in (parts[2].split(",") if len(parts) == 3 else []) if kv]
    bad = [kv for kv in items if "=" not in kv]
    if bad:
        raise ValueError(f"`--variant` overrides must be key=value; got {bad} in {text!r}")
    return parts[0], Path(parts[1]), dict(kv.split("=", 1) for kv in items)


def choose_variant(variants: Mapping[str, tuple[Path, dict]], task: str, stage: str = "baseline",
                   seeds: tuple[int, ...] = (0, 1), profile: str = "paper") -> dict:
    """Rank ``{name: (results_root, overrides)}`` by mean held-out accuracy of ``stage`` over
    ``seeds``. A variant missing a seed's record is listed with ``complete: False`` and cannot
    win. Raises ``ValueError`` if no variant is complete, or naming a file that is not a
    complete record of that stage and seed (:func:`~stpcore.runs.records.load_record`)."""
    rows = {}
    for name, (root, overrides) in variants.items():
        held, dev, recs = [], [], []
        for seed in seeds:
            path = record_path(profile, task, stage, root=root, seed=seed)
            if not path.is_file():
                continue
            m = load_record(path, profile=profile, task=task, stage=stage, seed=seed)["metrics"]
            held.append(m["heldout_accuracy"])
            dev.append(m["dev_accuracy"])
            recs.append(str(path))
        complete = len(held) == len(seeds)
        rows[name] = {"overrides": dict(overrides), "complete": complete,
                      "heldout_accuracy": held, "dev_accuracy": dev, "records": recs,
                      "mean_heldout": statistics.fmean(held) if held else None,
                      "mean_dev": statistics.fmean(dev) if dev else None}
    ranked = sorted((r["mean_heldout"], n) for n, r in rows.items() if r["complete"])
    if not ranked:
        raise ValueError(f"no variant has `{stage}` records for every seed {list(seeds)}: "
                         f"{ {n: len(r['records']) for n, r in rows.items()} }")
    return {"task": task, "stage": stage, "profile": profile, "seeds": list(seeds),
            "rule": RULE, "chosen": ranked[-1][1], "variants": rows}
