"""Run profiles: ``smoke`` (CPU, minutes, tiny) and ``paper`` (Table I per task, one GPU).

Table I of the paper fixes T_conv, the initial V_th, lambda, the PCA variance, batch sizes, the
AC budget, the PCA base b and eta per task. Everything the paper leaves open (epochs, KD learning
rates, sample counts) is set here, with the public SpikingBERT code's value where it has one
(prediction-layer KD at lr 3e-5, batch 32; AdamW) and is shown in the book's Table I notebook.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from ..train.corpus import GENERAL_SOURCES, general_sources_ok
from ..snn.checks import is_int, is_real
from ..train.data import MAX_MAX_LENGTH, MIN_MAX_LENGTH, TASKS

# Table I of the paper (the paper's learning rate is listed but not used: see `retrain_lr`).
TABLE_I = {
    "mnli": dict(t_conv=140, initial_vth=0.85, ac_penalty_lambda=1e-12, train_batch_size=32,
                 eval_batch_size=128, paper_learning_rate=5e-8, activity_eta=0.002),
    "qqp": dict(t_conv=80, initial_vth=1.0, ac_penalty_lambda=2e-12, train_batch_size=80,
                eval_batch_size=128, paper_learning_rate=1e-7, activity_eta=0.001),
    "qnli": dict(t_conv=110, initial_vth=0.9, ac_penalty_lambda=2e-12, train_batch_size=16,
                 eval_batch_size=128, paper_learning_rate=1e-7, activity_eta=0.0015),
    "sst2": dict(t_conv=85, initial_vth=1.0, ac_penalty_lambda=5e-12, train_batch_size=16,
                 eval_batch_size=32, paper_learning_rate=5e-10, activity_eta=0.001),
    "mrpc": dict(t_conv=110, initial_vth=0.9, ac_penalty_lambda=5e-12, train_batch_size=32,
                 eval_batch_size=128, paper_learning_rate=1e-8, activity_eta=0.0005),
}
SHARED = dict(pca_variance=0.99999, ac_budget=0.6, pca_base=1.02)
# Knobs that only the pruning stages read: changing one never invalidates a foundation record.
PRUNING_KEYS = frozenset({
    "retrain_epochs", "retrain_limit", "trace_samples", "fisher_batch_size", "retrain_lr",
    "penalty_fraction", "mask_lr", "pca_every", "fisher_samples", "ac_penalty_lambda",
    "activity_eta", "pca_variance", "pca_base", "ac_budget", "adaptive_scale",
    "temporal_granularity",
    "paper_learning_rate", "budget_sweep", "base_sweep", "penalty_reference_width",
    "freeze_masks", "threshold_lr", "lambda_sweep"})
# Fields newer than committed records: a record without one was made as with its default (general
# KD off), and `Run.reusable` reads it so; those records stay reusable.
BACKFILLED_KEYS = frozenset({"general_kd_epochs", "general_kd_sources", "general_kd_limit",
                             "binary_sim_dtype"})


@dataclass
class Profile:
    """Every knob of a run. ``hyperparameters(task, name)`` fills the Table I values."""
    name: str
    teacher: str = "all-minilm-l6-v2"      # or a hub id ("bert-base-uncased") or a local path
    student_layers: int = 4
    max_length: int = 128
    train_limit: int | None = None          # examples per epoch (None = the whole train split)
    eval_limit: int | None = None           # dev / held-out examples (None = all)
    heldout_fraction: float = 0.05
    heldout_rule: str = "match_dev"         # or "random"; see stpcore.train.data.split_heldout
    freeze_word_embeddings: bool = True     # kept at the teacher package's values (shippable)
    t_conv: int = 85
    initial_vth: float = 1.0
    train_batch_size: int = 32
    eval_batch_size: int = 128
    teacher_epochs: int = 2
    teacher_lr: float = 5e-5
    kd_batch_size: int = 32
    fp_ikd_epochs: int = 2
    fp_pred_epochs: int = 1
    binary_ikd_epochs: int = 2
    binary_ft_epochs: int = 1
    general_kd_epochs: int = 0              # IKD from the pre-trained teacher on general text
                                            # before spiking_fp (0 = off; foundation.general_kd)
    general_kd_sources: tuple = tuple(GENERAL_SOURCES)   # its text (stpcore.train.corpus)
    general_kd_limit: int | None = None     # its examples per epoch (None = the whole corpus)
    kd_lr: float = 5e-5
    pred_lr: float = 3e-5
    retrain_epochs: int = 1
    retrain_limit: int | None = None        # examples per retraining epoch (None = train_limit)
    trace_samples: int = 256                # held-out examples whose traces feed the PCA
    fisher_batch_size: int = 16
    retrain_lr: float = 2e-5
    penalty_fraction: float = 0.5           # share of retraining steps with the AC penalty on
    mask_lr: float = 0.05                   # learning rate of the mask logits (see
                                            # prune.retrain.max_logit_travel)
    penalty_reference_width: int | None = 768  # Table I's lambda is for width 768 (scaled (768/D)^2)
    freeze_masks: bool = True               # mask logits fixed after the penalty phase
    threshold_lr: float = 1e-3              # learnable thresholds' own AdamW rate (no decay)
    lambda_sweep: tuple = (0.0, 0.25, 1.0, 4.0, 16.0)   # multipliers of Table I's lambda
    pca_every: int = 200                    # steps between PCA reallocations while retraining
    fisher_samples: int = 2048
    ac_penalty_lambda: float = 5e-12
    activity_eta: float = 0.001
    pca_variance: float = 0.99999
    pca_base: float = 1.02
    temporal_granularity: str = "sublayer"  # Eq. 10 per spiking population, or "layer"
    ac_budget: float = 0.6
    adaptive_scale: float = 0.25            # Table III/V: pruned timestep list scaled down
    paper_learning_rate: float = 0.0
    budget_sweep: tuple = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    base_sweep: tuple = (1.0, 1.02, 1.05, 1.1, 1.15, 1.2)
    sim_dtype: str = "float32"
    binary_sim_dtype: str = "same"          # 1-bit models: "same" (sim_dtype) or "int8"
    time_chunk: int = 32
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Profile":
        """Check every field against its rule in ``FIELD_RULES`` (type and range), then the rules
        that tie fields together; ``ValueError`` naming the field, what is allowed and what was
        given. Lists given for tuple fields (``--set budget_sweep=[0.4,1.0]``) become tuples.
        Returns ``self``."""
        for f in dataclasses.fields(self):
            rule = FIELD_RULES.get(f.name)
            if rule is None:
                raise ValueError(f"profile field `{f.name}` has no validation rule; add one to "
                                 f"stpcore.runs.profiles.FIELD_RULES")
            value = getattr(self, f.name)
            if not rule.ok(value):
                raise ValueError(f"profile field `{f.name}` must be {rule.allowed}; got {value!r}")
            if rule.normalise is not None:
                setattr(self, f.name, rule.normalise(value))
        for check in CROSS_FIELD_RULES:
            check(self)
        return self


# ---- validation rules: one per Profile field (a field without a rule fails `validate`) -----------
class Rule(NamedTuple):
    allowed: str                               # shown in the error: "must be <allowed>; got ..."
    ok: Callable[[Any], bool]
    normalise: Callable[[Any], Any] | None = None


def int_rule(low: int = 1, optional: bool = False, high: int | None = None) -> Rule:
    text = (f"an int >= {low}" if high is None else f"an int in [{low}, {high}]") + (
        " or None" if optional else "")
    return Rule(text, lambda v: (optional and v is None) or (
        is_int(v) and v >= low and (high is None or v <= high)))


def float_rule(low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False) -> Rule:
    """A finite real number in the given interval (ints are accepted; bools are not)."""
    if low is not None and high is not None:
        text = f"a finite number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        text = f"a finite number {'>' if low_open else '>='} {low}"
    else:
        text = "a finite number"

    def ok(v) -> bool:
        if not is_real(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)
    return Rule(text, ok)


def choice_rule(*allowed: str) -> Rule:
    return Rule(f"one of {list(allowed)}", lambda v: isinstance(v, str) and v in allowed)


def floats_rule(item: Rule) -> Rule:
    """A non-empty tuple (or list) of numbers, each satisfying ``item``."""
    return Rule(f"a non-empty tuple of numbers, each {item.allowed}",
                lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and all(map(item.ok, v)),
                tuple)


BOOL = Rule("a bool (true/false)", lambda v: isinstance(v, bool))
POSITIVE = float_rule(0, low_open=True)              # learning rates, thresholds
NON_NEGATIVE = float_rule(0)                         # penalty weights
COUNT = int_rule(1)
LIMIT = int_rule(1, optional=True)
DEFAULT_TEACHER_LAYERS = {"all-minilm-l6-v2": 6}     # teachers whose depth is known up front
MAX_POSITIONS = {"all-minilm-l6-v2": 512}

FIELD_RULES: dict[str, Rule] = {
    "name": Rule("one of ['paper', 'smoke']", lambda v: isinstance(v, str) and v in PROFILES),
    "teacher": Rule("a non-empty string (a teacher name, hub id or folder)",
                    lambda v: isinstance(v, str) and v.strip() != ""),
    "student_layers": COUNT,
    "max_length": int_rule(MIN_MAX_LENGTH, high=MAX_MAX_LENGTH),   # train.data's range
    "train_limit": LIMIT,
    "eval_limit": LIMIT,
    "heldout_fraction": float_rule(0, 1, low_open=True, high_open=True),
    "heldout_rule": choice_rule("match_dev", "random"),
    "freeze_word_embeddings": BOOL,
    "t_conv": COUNT,
    "initial_vth": POSITIVE,
    "train_batch_size": COUNT,
    "eval_batch_size": COUNT,
    "teacher_epochs": COUNT,
    "teacher_lr": POSITIVE,
    "kd_batch_size": COUNT,
    "fp_ikd_epochs": COUNT,
    "fp_pred_epochs": COUNT,
    "binary_ikd_epochs": COUNT,
    "binary_ft_epochs": COUNT,
    "general_kd_epochs": int_rule(0),                # 0: no general KD (the pipeline as before)
    "general_kd_sources": Rule(f"a non-empty tuple of distinct names from {list(GENERAL_SOURCES)}",
                               general_sources_ok, tuple),
    "general_kd_limit": LIMIT,
    "kd_lr": POSITIVE,
    "pred_lr": POSITIVE,
    "retrain_epochs": COUNT,
    "retrain_limit": LIMIT,
    "trace_samples": COUNT,
    "fisher_batch_size": COUNT,
    "retrain_lr": POSITIVE,
    "penalty_fraction": float_rule(0, 1),            # 0: masks frozen from the start
    "mask_lr": POSITIVE,
    "penalty_reference_width": LIMIT,
    "freeze_masks": BOOL,
    "threshold_lr": POSITIVE,
    "lambda_sweep": floats_rule(NON_NEGATIVE),
    "pca_every": COUNT,
    "fisher_samples": COUNT,
    "ac_penalty_lambda": NON_NEGATIVE,
    "activity_eta": NON_NEGATIVE,
    "pca_variance": float_rule(0, 1, low_open=True),
    "pca_base": float_rule(1, low_open=True),        # Eq. 10 needs b > 1
    "temporal_granularity": choice_rule("sublayer", "layer"),
    "ac_budget": float_rule(0, 1, low_open=True),
    "adaptive_scale": float_rule(0, 1, low_open=True),
    "paper_learning_rate": NON_NEGATIVE,             # listed by the paper, not used
    "budget_sweep": floats_rule(float_rule(0, 1, low_open=True)),
    "base_sweep": floats_rule(float_rule(1)),        # 1.0 = no temporal pruning
    # sim_dtype also simulates the full-precision models of the foundation, which int8 (exact
    # integer synaptic products, stpcore.snn.integer) cannot: 1-bit models take binary_sim_dtype.
    "sim_dtype": choice_rule("float32", "bfloat16", "float16"),
    "binary_sim_dtype": choice_rule("same", "int8"),
    "time_chunk": COUNT,
    "progress": BOOL,
    # A profile definition's `extra` is applied as fields by get_profile; a Profile's own stays {}
    # (a non-empty one would be recorded but change nothing).
    "extra": Rule("an empty dict (set the fields themselves, e.g. --set t_conv=8)",
                  lambda v: isinstance(v, dict) and not v),
}


def _check_student_layers(p: Profile) -> None:
    depth = DEFAULT_TEACHER_LAYERS.get(p.teacher)
    if depth is not None and p.student_layers > depth:
        raise ValueError(f"profile field `student_layers` must be an int in [1, {depth}] (the "
                         f"teacher {p.teacher!r} has {depth} layers); got {p.student_layers!r}")


def _check_max_length(p: Profile) -> None:
    most = MAX_POSITIONS.get(p.teacher)
    if most is not None and p.max_length > most:
        raise ValueError(f"profile field `max_length` must be an int in [{MIN_MAX_LENGTH}, {most}] (the teacher "
                         f"{p.teacher!r} has {most} positions); got {p.max_length!r}")


def _check_teacher_folder(p: Profile) -> None:
    """A teacher written as a path (``/...``, ``./...``, ``../...``, ``~...``) must be a folder:
    otherwise it would be taken for a hub id and fail only when the teacher stage starts."""
    if p.teacher.startswith(("/", "./", "../", "~")) or (
            os.sep in p.teacher and os.path.exists(p.teacher)):
        if not os.path.isdir(os.path.expanduser(p.teacher)):
            raise ValueError(f"profile field `teacher` must be a teacher name, a hub id or an "
                             f"existing folder; got {p.teacher!r}, a path that is not a folder")


# Rules that tie fields together (run after every field passed its own rule).
CROSS_FIELD_RULES: list[Callable[[Profile], None]] = [_check_student_layers, _check_max_length,
                                                      _check_teacher_folder]


PROFILES = {
    # CPU, a few hundred examples, 2 layers, small T: the whole pipeline in minutes.
    "smoke": dict(student_layers=2, max_length=48, train_limit=192, eval_limit=64,
                  teacher_epochs=1, teacher_lr=1e-4, fp_ikd_epochs=1, fp_pred_epochs=1,
                  binary_ikd_epochs=1, binary_ft_epochs=1, retrain_epochs=1,
                  pca_every=3, fisher_samples=32, trace_samples=32, fisher_batch_size=8, kd_batch_size=32, train_batch_size=32,
                  eval_batch_size=64, budget_sweep=(0.4, 0.6, 1.0), base_sweep=(1.0, 1.02, 1.2),
                  lambda_sweep=(0.0, 4.0),
                  extra={"t_conv": 8}),
    # One GPU, Table I values; epochs sized to the project's GPU budget (see the deviations page).
    # Foundation: 3 intermediate-KD + 2 prediction-KD epochs into the full-precision student
    # (1 + 1 gave 82.0 on SST-2 dev, 3 + 2 gave 83.0), then 1 + 1 for the 1-bit stage.
    "paper": dict(train_limit=None, teacher_epochs=2, fp_ikd_epochs=3, fp_pred_epochs=2,
                  binary_ikd_epochs=1, binary_ft_epochs=1, retrain_epochs=1, retrain_limit=8000,
                  sim_dtype="bfloat16", binary_sim_dtype="int8", time_chunk=64),
}


# Small train splits get more epochs so that every stage sees a comparable number of steps
# (MRPC has 3.5k training pairs; one epoch is ~110 steps, too few for KD from scratch).
TASK_OVERRIDES = {
    ("paper", "mrpc"): dict(teacher_epochs=5, fp_ikd_epochs=10, fp_pred_epochs=5,
                            binary_ikd_epochs=5, binary_ft_epochs=5, retrain_epochs=3),
}


def get_profile(name: str, task: str, **overrides) -> Profile:
    """The profile ``name`` for ``task`` with Table I filled in, then ``overrides`` applied."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"`profile` must be one of {sorted(PROFILES)}; got {name!r}")
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"`task` must be one of {sorted(TASKS)}; got {task!r}")
    values = {**SHARED, **TABLE_I[task], **PROFILES[name], **TASK_OVERRIDES.get((name, task), {})}
    values.update(values.pop("extra", {}) or {})
    fields = sorted(f.name for f in dataclasses.fields(Profile) if f.name != "name")
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(f"unknown profile override(s) {sorted(unknown)}; allowed: "
                         f"{', '.join(fields)}")
    values.update(overrides)
    return Profile(name=name, **{k: v for k, v in values.items() if k != "name"}).validate()


def binary_dtype_name(config: dict) -> str:
    """The dtype a configuration (a profile's ``to_dict()`` or a record's ``config``) simulates
    1-bit models in: ``binary_sim_dtype``, or where that is "same" (or absent, as in records
    made before it existed) ``sim_dtype``."""
    own = config.get("binary_sim_dtype", "same")
    return config["sim_dtype"] if own == "same" else own


def hyperparameters(task: str, profile: str = "paper") -> dict:
    """Table I's rows for ``task`` as this project runs them (plus the knobs the paper omits)."""
    p = get_profile(profile, task)
    keys = ("t_conv", "initial_vth", "ac_penalty_lambda", "pca_variance", "train_batch_size",
            "eval_batch_size", "retrain_lr", "paper_learning_rate", "ac_budget", "pca_base",
            "activity_eta", "kd_lr", "pred_lr", "teacher", "student_layers", "max_length",
            "retrain_epochs", "fisher_samples", "sim_dtype")
    out = {k: getattr(p, k) for k in keys}
    out["learning_rate"] = p.retrain_lr
    return out
