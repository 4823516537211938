"""Retraining under the AC penalty: the lambda sweep and the mask flips of retraining records.

Whether the penalty (Eq. 12) can prune at all depends on how far a mask logit can travel
during the penalty phase (:func:`stpcore.prune.retrain.max_logit_travel`), which this table
shows beside the flips each record counted.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..prune.retrain import RetrainConfig, max_logit_travel


def _flips(m: dict) -> int | str:
    f = m.get("mask_flips")
    return "n/a" if f is None else sum(f.values())


def lambda_sweep_table(record: dict | None) -> pd.DataFrame | None:
    """One row per lambda multiplier of the ``lambda_sweep`` stage."""
    if record is None:
        return None
    rows = [{"lambda / Table I": p["multiplier"], "lambda": p["lambda"],
             "masks flipped": _flips(p), "ACs kept (%)": round(100 * p["acs_fraction"], 2),
             "dev accuracy": round(p["dev_accuracy"], 2),
             "held-out accuracy": round(p["heldout_accuracy"], 2)}
            for p in record["metrics"]["points"]]
    return pd.DataFrame(rows).set_index("lambda / Table I")


def travel_table(records: Mapping[str, dict | None]) -> pd.DataFrame:
    """Per retraining record: penalty steps, mask_lr, the logit travel they allow against
    ``mask_init``, the penalty scale, and the mask flips counted."""
    rows = []
    for label, rec in records.items():
        if rec is None:
            rows.append({"run": label, "masks flipped": "not run"})
            continue
        m, c = rec["metrics"], rec["config"]
        steps = m.get("penalty_steps")
        rows.append({"run": label, "mask_lr": c["mask_lr"], "penalty steps": steps,
                     "max logit travel": None if steps is None else
                     round(max_logit_travel(c["mask_lr"], steps), 2),
                     "logit start": RetrainConfig.mask_init, "penalty scale": m.get("penalty_scale"),
                     "masks flipped": _flips(m),
                     "ACs kept (%)": round(100 * m["acs_fraction"], 2),
                     "dev accuracy": round(m["dev_accuracy"], 2)})
    return pd.DataFrame(rows).set_index("run")
