"""The stage runner: a registry of stages, each run or reused with its record and checkpoint.

The stages themselves live in :mod:`stpcore.runs.foundation` (teacher -> full-precision
SpikingBERT -> 1-bit baseline) and :mod:`stpcore.runs.pruning` (the paper's experiments).

Each stage is a function ``stage(run) -> (metrics, model_or_None)`` registered in ``STAGES``
with the stages it needs. ``Run.record(stage)`` returns the stage's saved record or runs it: a
record made with the same configuration and seed is reused (and, when a later stage needs the
model, so is its checkpoint under ``runs/<profile>/<task>/<stage>/``, or ``STP_RUNS_DIR``);
anything else is recomputed. Every run writes a JSON record with provenance, atomically, under
``data/results/<profile>/<task>/<stage>.json``.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..train import data as glue
from ..snn.model import SpikingBertForSequenceClassification
from .profiles import PRUNING_KEYS, Profile, get_profile
from .records import REPO_ROOT, read_record, write_record
from ..train.teacher import load_tokenizer
from ..prune.acs import spiking_costs
from ..train.loop import evaluate, pick_device

STAGES: dict[str, tuple[tuple[str, ...], Callable]] = {}
FOUNDATION = ("teacher", "spiking_fp", "baseline")     # stages that ignore the pruning knobs
_DATA_CACHE: dict[tuple, dict] = {}        # tokenised splits, shared by the Runs of one process


def stage(name: str, needs: tuple[str, ...] = ()):
    """Register a stage function under ``name`` with the stages whose models it needs."""
    def deco(fn):
        STAGES[name] = (needs, fn)
        return fn
    return deco


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Run:
    """One (task, profile, seed): data loaders, checkpoints, records."""

    def __init__(self, task: str, profile: str = "smoke", seed: int = 0, **overrides):
        self.task, self.seed = task, seed
        self.profile: Profile = get_profile(profile, task, **overrides)
        self.device = pick_device()
        if self.profile.name == "smoke":
            self.profile.progress = False if os.environ.get("CI") else self.profile.progress
        self.sim_dtype = getattr(torch, self.profile.sim_dtype)
        self.ckpt_root = Path(os.environ.get("STP_RUNS_DIR", REPO_ROOT / "runs")) / profile / task

    # ---- data ------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return load_tokenizer(self.profile.teacher)

    @property
    def data(self) -> dict:
        p = self.profile
        key = (self.task, p.teacher, p.max_length, p.heldout_fraction, self.seed)
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = glue.load_task(self.task, self.tokenizer, p.max_length,
                                              heldout_fraction=p.heldout_fraction, seed=self.seed)
        return _DATA_CACHE[key]

    def loader(self, split: str, batch_size: int | None = None, limit: int | None = None):
        train = split == "train"
        p = self.profile
        size = batch_size or (p.train_batch_size if train else p.eval_batch_size)
        lim = limit if limit is not None else (p.train_limit if train else p.eval_limit)
        return glue.make_loader(self.data[split], size, shuffle=train, seed=self.seed, limit=lim)

    def dev_metrics(self, model, sim_dtype: torch.dtype | None = None) -> dict:
        """Dev accuracy (the reported number) and held-out accuracy (used for choices),
        simulated in ``sim_dtype`` (default: the profile's)."""
        dtype = sim_dtype or self.sim_dtype
        dev = evaluate(model, self.loader("dev"), self.device, dtype, self.profile.max_length,
                       costs=spiking_costs)
        held = evaluate(model, self.loader("heldout"), self.device, dtype, self.profile.max_length,
                        costs=spiking_costs)
        out = {"dev_accuracy": dev.pop("accuracy"), "heldout_accuracy": held["accuracy"],
               "dev_examples": dev.pop("examples")}
        out.update(dev)
        return out

    # ---- checkpoints and records -----------------------------------------------------------
    def checkpoint(self, name: str) -> Path:
        return self.ckpt_root / name

    def model(self, name: str):
        """The trained model of stage ``name`` (from its checkpoint, running the stage if needed)."""
        path = self.checkpoint(name)
        if not path.exists():
            self.record(name, force=True)
        if name == "teacher":
            from transformers import BertForSequenceClassification
            m = BertForSequenceClassification.from_pretrained(path, attn_implementation="eager")
        else:
            m = SpikingBertForSequenceClassification.from_pretrained(path)
            m.config.time_chunk = self.profile.time_chunk
        return m.to(self.device)

    def reusable(self, rec: dict | None, name: str) -> bool:
        """A record is reused only if it was made with this seed and the same configuration:
        every current profile value for a pruning stage, all but the pruning knobs
        (``profiles.PRUNING_KEYS``) for a foundation stage. Another teacher or a changed
        epoch count reruns the stage; a changed mask learning rate does not retrain the teacher."""
        if rec is None or rec["provenance"]["seed"] != self.seed:
            return False
        skip = {"progress"} | (PRUNING_KEYS if name in FOUNDATION else set())
        now = json.loads(json.dumps(self.profile.to_dict()))     # tuples -> lists, as recorded
        keys = set(now) - skip              # a knob the code no longer has cannot matter
        return all(rec["config"].get(k, None) == now[k] for k in keys)

    def record(self, name: str, force: bool = False) -> dict:
        """The record of stage ``name``: reused when :meth:`reusable`, else computed (with the
        stages it needs) and written."""
        if name not in STAGES:
            raise ValueError(f"`stage` must be one of {sorted(STAGES)}; got {name!r}")
        rec = read_record(self.profile.name, self.task, name)
        if not force and self.reusable(rec, name):
            return rec
        needs, fn = STAGES[name]
        for dep in needs:
            self.record(dep)
            if not self.checkpoint(dep).exists():
                self.record(dep, force=True)
        seed_everything(self.seed)
        start = time.perf_counter()
        metrics, model = fn(self)
        if model is not None:
            model.save_pretrained(self.checkpoint(name))
        return write_record(self.profile.name, self.task, name, config=self.profile.to_dict(),
                            metrics=metrics, seed=self.seed, wall_time_s=time.perf_counter() - start,
                            device=self.device)


def run_stage(task: str, stage_name: str, profile: str = "smoke", seed: int = 0,
              force: bool = False, **overrides) -> dict:
    """Run (or reuse) one stage and return its record."""
    return Run(task, profile, seed, **overrides).record(stage_name, force=force)


def get_record(task: str, stage_name: str, profile: str = "smoke", seed: int = 0,
               recompute: bool = False) -> dict | None:
    """The notebooks' entry point. Smoke profile (or ``recompute``): the stage's record, run or
    rerun under the reuse rule of :meth:`Run.record`. Paper profile: the recorded GPU run as it
    is, or None for a stage nobody has run (shown as 'not run'); never computed on the fly."""
    if profile == "smoke" or recompute:
        return run_stage(task, stage_name, profile, seed, force=recompute)
    return read_record(profile, task, stage_name)
