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
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..train import data as glue
from ..train.corpus import GENERAL_SOURCES
from ..snn.model import SpikingBertForSequenceClassification
from .profiles import BACKFILLED_KEYS, BOOL, PRUNING_KEYS, Profile, binary_dtype_name, get_profile
from .validate import check_seed
from .seeding import seed_everything
from .records import (REPO_ROOT, checkpoint_digest, computes_as_now, file_sha256, read_record,
                      record_path, same_upstream, seed_suffix, write_record)
from ..train.teacher import load_tokenizer, resolve_teacher
from ..prune.acs import spiking_costs
from ..train.loop import barrier, evaluate, is_main_process, pick_device

STAGES: dict[str, tuple[tuple[str, ...], Callable]] = {}
SWITCHES: dict[str, Callable[[Profile], bool]] = {}     # stages a profile may turn off
FOUNDATION = ("teacher", "general_kd", "spiking_fp", "baseline")   # ignore the pruning knobs
# How a later stage simulates (not what the foundation was): never retrains the foundation.
RUNTIME_KEYS = frozenset({"sim_dtype", "binary_sim_dtype", "time_chunk"})
# Foundation stages with a 1-bit model: their dev metrics follow binary_sim_dtype, so a switch
# of it re-evaluates their checkpoint (Run.evaluated_as_now) instead of retraining them.
BINARY_FOUNDATION = ("baseline",)
_DATA_CACHE: dict[tuple, dict] = {}        # tokenised splits, shared by the Runs of one process


def stage(name: str, needs: tuple[str, ...] = (),
          switch: Callable[[Profile], bool] | None = None):
    """Register a stage function under ``name`` with the stages whose models it needs.
    ``switch(profile)`` says whether a profile turns the stage on (default: always); a stage
    that needs it goes without it where it is off (:meth:`Run.needs`)."""
    def deco(fn):
        STAGES[name] = (needs, fn)
        if switch is not None:
            SWITCHES[name] = switch
        return fn
    return deco


class Run:
    """One (task, profile, seed): data loaders, checkpoints, records.

    ``base_seed`` (default: ``seed``) is the seed of the foundation (teacher, full-precision and
    1-bit models) that pruning stages start from, and of the held-out split; ``seed`` drives
    everything a pruning stage draws (shuffling, random masks, Bernoulli inputs). So three
    retraining seeds can share one trained baseline."""

    def __init__(self, task: str, profile: str = "smoke", seed: int = 0,
                 base_seed: int | None = None, **overrides):
        check_seed("seed", seed)
        if base_seed is not None:
            check_seed("base_seed", base_seed)
        self.task, self.seed = task, seed
        self.base_seed = seed if base_seed is None else base_seed
        self.overrides = overrides
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
        key = (self.task, p.teacher, p.max_length, p.heldout_fraction, p.heldout_rule,
               self.base_seed)
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = glue.load_task(self.task, self.tokenizer, p.max_length,
                                              heldout_fraction=p.heldout_fraction,
                                              heldout_rule=p.heldout_rule, seed=self.base_seed)
        return _DATA_CACHE[key]

    def loader(self, split: str, batch_size: int | None = None, limit: int | None = None):
        train = split == "train"
        p = self.profile
        size = batch_size or (p.train_batch_size if train else p.eval_batch_size)
        lim = limit if limit is not None else (p.train_limit if train else p.eval_limit)
        return glue.make_loader(self.data[split], size, shuffle=train, seed=self.seed, limit=lim)

    def sim_dtype_for(self, model) -> torch.dtype:
        """The dtype the pruning stages and evaluations simulate ``model`` in: int8 (exact
        integer products, :mod:`stpcore.snn.integer`) for a model with 1-bit weights when the
        profile's ``binary_sim_dtype`` is "int8", else the profile's ``sim_dtype``. The
        foundation's KD trains in ``sim_dtype`` (its spiking teacher is full precision)."""
        binary = (isinstance(model, SpikingBertForSequenceClassification)
                  and model.config.binary_weights)
        return getattr(torch, binary_dtype_name(vars(self.profile))) if binary else self.sim_dtype

    def dev_metrics(self, model, sim_dtype: torch.dtype | None = None) -> dict:
        """Dev accuracy (the reported number) and held-out accuracy (used for choices),
        simulated in ``sim_dtype`` (default: :meth:`sim_dtype_for` the model)."""
        dtype = sim_dtype or self.sim_dtype_for(model)
        dev = evaluate(model, self.loader("dev"), self.device, dtype, self.profile.max_length,
                       costs=spiking_costs)
        held = evaluate(model, self.loader("heldout"), self.device, dtype, self.profile.max_length,
                        costs=spiking_costs)
        out = {"dev_accuracy": dev.pop("accuracy"), "heldout_accuracy": held["accuracy"],
               "dev_examples": dev.pop("examples"),
               "dev_predictions": "".join(map(str, dev.pop("predictions"))),
               "dev_labels": "".join(map(str, dev.pop("labels")))}
        held.pop("predictions"), held.pop("labels")
        rates = dev.get("population_rates")
        if rates is not None and not any([rates["embedding"], *sum(rates["layers"], [])]):
            raise RuntimeError(f"{self.task}: the model emits no spikes at all (every population "
                               f"rate is 0; thresholds {model.config.threshold}); a silent network "
                               f"is an error, not a score of Normalized #C = 0")
        out.update(dev)
        return out

    # ---- checkpoints and records -----------------------------------------------------------
    def for_stage(self, name: str) -> "Run":
        """The Run that owns stage ``name``: this one, or for a foundation stage the Run of
        ``base_seed``."""
        if name in FOUNDATION and self.base_seed != self.seed:
            return Run(self.task, self.profile.name, self.base_seed, **self.overrides)
        return self

    def checkpoint(self, name: str) -> Path:
        return self.ckpt_root / f"{name}{seed_suffix(self.seed)}"

    def checkpoint_ok(self, name: str, rec: dict | None = None) -> bool:
        """Whether stage ``name``'s checkpoint exists and is the one its record names (its
        weights and its config.json, :func:`checkpoint_digest`)."""
        rec = rec or read_record(self.profile.name, self.task, name, seed=self.seed)
        want = (rec or {}).get("provenance", {}).get("checkpoint_sha256")
        return want is not None and checkpoint_digest(self.checkpoint(name)) == want

    def shipped(self, name: str, rec: dict | None = None) -> Path | None:
        """The shipped checkpoint (``data/checkpoints/<task>-seed<k>``, see
        :mod:`stpcore.runs.checkpoints`) packed from exactly the model this stage's record names,
        or None."""
        from .checkpoints import CHECKPOINTS_DIR
        rec = rec or read_record(self.profile.name, self.task, name, seed=self.seed)
        folder = CHECKPOINTS_DIR / f"{self.task}-seed{self.seed}"
        want = (rec or {}).get("provenance", {}).get("checkpoint_sha256")
        if name != "baseline" or want is None or not (folder / "record.json").is_file():
            return None
        packed = json.loads((folder / "record.json").read_text())
        same = (packed["provenance"].get("checkpoint_sha256") == want
                and packed["profile"] == self.profile.name)
        return folder if same else None

    def has_model(self, name: str, rec: dict | None = None) -> bool:
        return self.checkpoint_ok(name, rec) or self.shipped(name, rec) is not None

    def model(self, name: str):
        """The trained model of stage ``name``: from its checkpoint, else from the shipped
        checkpoint of that very model, else by running the stage. A checkpoint that is not the
        one its record names is never used: the stage reruns."""
        owner = self.for_stage(name)
        if owner is not self:
            return owner.model(name)
        path = self.checkpoint(name)
        if not self.checkpoint_ok(name):
            shipped = self.shipped(name)
            if shipped is not None:
                from .checkpoints import load_checkpoint
                m = load_checkpoint(shipped)
                m.config.time_chunk = self.profile.time_chunk
                return m.to(self.device)
            self.record(name, force=True)
        if name == "teacher":
            from transformers import BertForSequenceClassification
            m = BertForSequenceClassification.from_pretrained(path, attn_implementation="eager")
        else:
            m = SpikingBertForSequenceClassification.from_pretrained(path)
            m.config.time_chunk = self.profile.time_chunk
        return m.to(self.device)

    def needs(self, name: str) -> tuple[str, ...]:
        """The stages whose models stage ``name`` needs, less those this profile turns off."""
        return tuple(d for d in STAGES[name][0] if d not in SWITCHES or SWITCHES[d](self.profile))

    def reusable(self, rec: dict | None, name: str) -> bool:
        """A record is reused only if it was made with this seed and base seed, the same
        configuration (every current profile value for a pruning stage; all but the pruning
        knobs, ``profiles.PRUNING_KEYS``, and the execution settings for a foundation stage), the
        same data files (sha256), and, for a pruning stage, the same computing source
        (``compute_sha256``: all of ``stpcore`` but ``report/``, or one listed in
        ``records.COMPUTE_EQUIVALENT``; the whole source for records older than that field) and
        the same upstream records. Another teacher or a changed epoch count reruns the stage;
        a changed mask learning rate does not retrain the teacher. A foundation record made by
        other code is reused (training it costs most of a GPU session); its pages mark it with
        the commit that made it. It must still name the current record of each stage that a
        profile switched on for it (``SWITCHES``: a rerun general-KD student retrains
        spiking_fp). A field newer than the record (``profiles.BACKFILLED_KEYS``) counts as
        having its default there."""
        if rec is None or rec["provenance"]["seed"] != self.seed:
            return False
        prov = rec["provenance"]
        if prov.get("base_seed", prov["seed"]) != self.base_seed:
            return False
        skip = {"progress"} | (PRUNING_KEYS | RUNTIME_KEYS if name in FOUNDATION else set())
        now = json.loads(json.dumps(self.profile.to_dict()))     # tuples -> lists, as recorded
        keys = set(now) - skip              # a knob the code no longer has cannot matter
        made = {**json.loads(json.dumps({k: getattr(Profile, k) for k in BACKFILLED_KEYS})),
                **rec["config"]}            # a field newer than the record: its default
        if not all(made.get(k, None) == now[k] for k in keys):
            return False
        if prov.get("data_sha256") != self.input_hashes()["data_sha256"]:
            return False            # (the teacher is matched by name: an fp16 copy of it, as a
                                    # GPU box carries, differs from the package in bytes only)
        foundation = name in FOUNDATION
        if not foundation and not computes_as_now(prov):
            return False            # (a change to report/, which only renders, keeps it)
        for dep in self.needs(name):
            if foundation and dep not in SWITCHES:
                continue            # the foundation chain is matched by its configuration
            dep_run = self.for_stage(dep)
            current = read_record(self.profile.name, self.task, dep, seed=dep_run.seed)
            if current is None or not same_upstream(prov.get("upstream", {}).get(dep, {}), current):
                return False
        return True

    def record(self, name: str, force: bool = False) -> dict:
        """The record of stage ``name``: reused when :meth:`reusable`, else computed (with the
        stages it needs) and written."""
        if name not in STAGES:
            raise ValueError(f"`stage` must be one of {sorted(STAGES)}; got {name!r}")
        owner = self.for_stage(name)
        if owner is not self:
            return owner.record(name, force=force)
        try:
            rec = read_record(self.profile.name, self.task, name, seed=self.seed)
        except ValueError as err:               # a corrupt record: say so, then recompute
            warnings.warn(f"{err}: recomputing {name}")
            rec = None
        if not force and self.reusable(rec, name):
            return self.evaluated_as_now(name, rec)
        upstream = {}
        for dep in self.needs(name):
            dep_run = self.for_stage(dep)
            dep_rec = dep_run.ensure_model(dep)
            upstream[dep] = {"record": str(record_path(self.profile.name, self.task, dep,
                                                       seed=dep_run.seed)),
                             "finished": dep_rec["provenance"]["finished"],
                             "checkpoint_sha256": dep_rec["provenance"].get("checkpoint_sha256")}
        seed_everything(self.seed)
        start = time.perf_counter()
        metrics, model = STAGES[name][1](self)
        inputs = {"base_seed": self.base_seed, "upstream": upstream, **self.input_hashes()}
        # Data-parallel runs (torchrun): every rank trained the same weights; rank 0 alone writes
        # the checkpoint and record, the others wait at the barrier and read what it wrote.
        if not is_main_process():
            barrier()
            return read_record(self.profile.name, self.task, name, seed=self.seed)
        if model is None:
            rec = self._write(name, metrics, start, inputs)
            barrier()
            return rec
        # checkpoint and record as one unit: weights aside, record naming their hash, rename
        final, tmp = self.checkpoint(name), self.checkpoint(name).with_name(
            self.checkpoint(name).name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        inputs["checkpoint_sha256"] = checkpoint_digest(tmp)
        shutil.rmtree(final, ignore_errors=True)          # the old record no longer matches
        rec = self._write(name, metrics, start, inputs)
        os.replace(tmp, final)
        barrier()
        return rec

    def evaluated_as_now(self, name: str, rec: dict) -> dict:
        """``rec``, or for a 1-bit foundation record (:data:`BINARY_FOUNDATION`) whose metrics
        simulated its model in another dtype than this profile does (``binary_sim_dtype``
        switched after it was trained) that record with dev and held-out metrics measured again
        from its checkpoint in this profile's dtype; its training (config, history, checkpoint,
        upstream) stays, ``provenance.evaluated_in`` names the new dtype and ``evaluated_from``
        the evaluation replaced. Without the checkpoint it retrains."""
        if name not in BINARY_FOUNDATION:
            return rec
        was = rec["provenance"].get("evaluated_in") or binary_dtype_name(rec["config"])
        now = binary_dtype_name(vars(self.profile))
        if was == now:
            return rec
        if not self.has_model(name, rec):
            return self.record(name, force=True)
        start, prov = time.perf_counter(), rec["provenance"]
        metrics = {**rec["metrics"], **self.dev_metrics(self.model(name))}
        if not is_main_process():
            barrier()
            return read_record(self.profile.name, self.task, name, seed=self.seed)
        keep = ("base_seed", "upstream", "data_sha256", "teacher_sha256", "checkpoint_sha256")
        inputs = {**{k: prov[k] for k in keep if k in prov}, "evaluated_in": now}
        inputs["evaluated_from"] = {"dtype": was, "dev_accuracy": rec["metrics"].get("dev_accuracy"),
                                    **{k: prov.get(k) for k in ("git_commit", "finished", "wall_time_s")}}
        out = write_record(self.profile.name, self.task, name, config=rec["config"], metrics=metrics,
                           seed=self.seed, wall_time_s=time.perf_counter() - start,
                           device=self.device, inputs=inputs)
        barrier()
        return out

    def ensure_model(self, name: str) -> dict:
        """:meth:`record`, and the stage's model on disk: a reused record whose checkpoint is gone
        (a GPU box that was given back) is recomputed. Run it before stages that need the model
        start side by side, so that they do not recompute it at the same time."""
        owner = self.for_stage(name)
        rec = owner.record(name)
        if rec["provenance"].get("checkpoint_sha256") and not owner.has_model(name, rec):
            rec = owner.record(name, force=True)
        return rec

    def _write(self, name: str, metrics: dict, start: float, inputs: dict) -> dict:
        return write_record(self.profile.name, self.task, name, config=self.profile.to_dict(),
                            metrics=metrics, seed=self.seed, wall_time_s=time.perf_counter() - start,
                            device=self.device, inputs=inputs)

    def input_hashes(self) -> dict:
        """sha256 of the GLUE files read (with general KD on, its corpus files too) and of the
        teacher's weights (where they are files)."""
        out = {"data_sha256": {}}
        root = glue.resolve_glue_dir()
        if root is not None:
            files = {f"{self.task}/{split}": f"{self.task}/{split}.parquet"
                     for split in ("train", *glue.TASKS[self.task].dev_splits)}
            if self.profile.general_kd_epochs:
                files.update({f"general_kd/{s}": GENERAL_SOURCES[s][0]
                              for s in self.profile.general_kd_sources})
            for key, file in files.items():
                if (root / file).is_file():
                    out["data_sha256"][key] = file_sha256(root / file)
        try:
            weights = Path(resolve_teacher(self.profile.teacher)) / "model.safetensors"
        except ImportError:
            weights = None
        if weights is not None and weights.is_file():
            out["teacher_sha256"] = file_sha256(weights)
        return out


def run_stage(task: str, stage_name: str, profile: str = "smoke", seed: int = 0,
              force: bool = False, base_seed: int | None = None, with_model: bool = False,
              **overrides) -> dict:
    """Run (or reuse) one stage and return its record; ``with_model``: also its model on disk
    (:meth:`Run.ensure_model`)."""
    run = Run(task, profile, seed, base_seed, **overrides)
    if with_model and not force:
        return run.ensure_model(stage_name)
    return run.record(stage_name, force=force)


def get_record(task: str, stage_name: str, profile: str = "smoke", seed: int = 0,
               recompute: bool = False) -> dict | None:
    """The notebooks' entry point. Smoke profile (or ``recompute``): the stage's record, run or
    rerun under the reuse rule of :meth:`Run.record`. Paper profile: the recorded GPU run as it
    is, or None for a stage nobody has run (shown as 'not run'); never computed on the fly.
    ``recompute`` must be a real bool (a string such as "no" would be truthy) and ``seed`` a
    seed (:func:`~stpcore.snn.checks.check_seed`)."""
    if not BOOL.ok(recompute):
        raise ValueError(f"`recompute` must be {BOOL.allowed}; got {recompute!r}")
    check_seed("seed", seed)
    if profile == "smoke" or recompute:
        return run_stage(task, stage_name, profile, seed, force=recompute)
    return read_record(profile, task, stage_name, seed=seed)
