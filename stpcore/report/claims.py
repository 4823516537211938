"""Every claim the paper's Tables II-V and Figs. 3-5 state in words, one verdict each.

The headline (two-stage keeps accuracy, ACs and latency) is decided by
:mod:`stpcore.report.verdicts`; this module lists the other claims, as we read them from the
paper's text, as :class:`~stpcore.report.claim_checks.Claim` rows in the paper's order
(:data:`CLAIMS`), and tables their verdicts (:func:`claims_table`), each decided by the rule of its
kind (:mod:`stpcore.report.claim_checks`; in words for the book: :func:`claim_rules`). Records
come as ``{(task, stage, seed): record_or_None}`` (:mod:`stpcore.report.seeds`).
"""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from .claim_checks import BY_CONSTRUCTION, NOT_TESTED, Claim, check_claim, rules_text
from .notes import SST2_ONLY
from .seeds import REFERENCE, SeededRecords, collect_seeded_for
from .summary import ACCURACY_TOLERANCE, ACS_SLACK
from .verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

_SCALED = ("set by the profile's adaptive_scale: the adaptive stage runs the two-stage timesteps scaled by it, "
           "as the paper scales its list down")
CLAIMS = (
    Claim("table_ii", "FIM + ASR of neurons beats FIM alone", "beats", "spatial_fisher_asr_neuron", "spatial_fisher"),
    Claim("table_ii", "FIM + ASR of attention beats FIM alone", "beats", "spatial_fisher_asr_attn", "spatial_fisher"),
    Claim("table_ii", "FIM + ASR beats FIM alone", "beats", "spatial_fisher_asr", "spatial_fisher"),
    Claim("table_ii", "FIM + ASR beats FIM + ASR of neurons", "beats", "spatial_fisher_asr", "spatial_fisher_asr_neuron"),
    Claim("table_ii", "FIM + ASR beats FIM + ASR of attention", "beats", "spatial_fisher_asr", "spatial_fisher_asr_attn"),
    Claim("table_ii", "retraining improves the spatially pruned model", "beats", "spatial_retrain", "spatial_fisher_asr",
          same_acs=False),
    Claim("table_ii", "retraining improves the temporally pruned model", "beats", "temporal_retrain", "temporal_pca",
          same_acs=False),
    Claim("table_iii", "two-stage cuts Normalized #C to the paper's share", "#C kept", "two_stage",
          paper_table="table_iii"),
    Claim("table_iii", "the adaptive threshold cuts latency further", "cuts", "adaptive_threshold", "two_stage",
          metric="mean_latency", paper_table="table_iii", why=_SCALED),
    Claim("table_iii", "the adaptive threshold cuts Normalized #C further", "cuts", "adaptive_threshold", "two_stage",
          metric="normalized_c", paper_table="table_iii"),
    Claim("table_iii", "the adaptive threshold keeps the pruned model's accuracy", "keeps", "adaptive_threshold",
          "two_stage", paper_table="table_iii"),
    Claim("table_iv", "sequential (two-stage) beats joint retraining", "beats", "two_stage", "joint_retrain",
          paper_table="table_iv"),
    Claim("table_v", "the pruned model with the adaptive threshold beats the baseline with it", "beats",
          "adaptive_threshold", "baseline_adaptive", paper_table="table_v", same_acs=False),
    Claim("table_v", "the adaptive threshold helps the pruned model more than the baseline", "gains more",
          "adaptive_threshold", "two_stage", second=("baseline_adaptive", "baseline"), paper_table="table_v"),
    Claim("fig_3", "the activity loss lowers every layer's ASR", "every layer's ASR cut", "activity_ablation",
          paper_table=None),
    Claim("fig_3", "the activity loss lowers Normalized #C", "cuts", "activity_ablation", metric="normalized_c",
          paper_table=None),
    Claim("fig_4", "a tighter ACs budget costs accuracy", "sweep drops", "budget_sweep", paper_table=None),
    Claim("fig_4", "the chosen ACs budget keeps the post-training accuracy", "sweep keeps", "budget_sweep"),
    Claim("fig_4", "a larger PCA base keeps fewer ACs", "sweep falls", "base_sweep", metric="acs_fraction",
          paper_table=None),
    Claim("fig_4", "too large a PCA base costs accuracy", "sweep drops", "base_sweep", paper_table=None),
    Claim("fig_4", "the chosen PCA base keeps the accuracy", "sweep keeps", "base_sweep"),
    Claim("fig_5", "post-training masks beat a random mask, both retrained", "beats", "spatial_retrain", "random_mask",
          paper_table=None),
    Claim("fig_5", "post-training masks converge in fewer epochs", "untested", "spatial_retrain", "random_mask",
          paper_table=None, why="our SST-2 retraining is one epoch and MRPC's three: no convergence curve to compare"),
)
COLUMNS = ["claim", "paper", "ours", "95% interval", "basis", "verdict", "note"]
#: The artifacts with claims, in the paper's order.
ARTIFACTS = tuple(dict.fromkeys(c.artifact for c in CLAIMS))


def claim_rules(artifacts: Iterable[str] | None = None, tolerance: float = ACCURACY_TOLERANCE,
                slack: float = ACS_SLACK, claims=CLAIMS) -> str:
    """The rules of the kinds the claims of ``artifacts`` (default: all) use, one bullet each."""
    wanted = None if artifacts is None else set(artifacts)
    return rules_text({c.kind for c in claims if wanted is None or c.artifact in wanted}, tolerance, slack)


def claim_stages(artifact: str, claims=CLAIMS) -> tuple[str, ...]:
    """The stages the claims of ``artifact`` read, and the baseline (the reference)."""
    names = [n for c in claims if c.artifact == artifact for n in (c.stage, c.other, *(c.second or ()))]
    return tuple(dict.fromkeys([*names, REFERENCE[0]]))


def collect_claim_records(artifacts: Iterable[str], tasks: Iterable[str], seeds: Iterable[int],
                          profile: str = "smoke", recompute: bool = False, **kwargs) -> dict:
    """``{(task, stage, seed): record_or_None}`` of every stage the claims of ``artifacts`` read
    (:func:`claim_stages`, by :func:`~stpcore.report.seeds.collect_seeded_for`; ``kwargs``:
    its ``getter``, ``known``, ``known_seed``)."""
    artifacts, out = list(artifacts), {}
    for task in tasks:                  # each stage fetched once, though several artifacts read it
        stages = [st for a in artifacts if a not in SST2_ONLY or task == "sst2" for st in claim_stages(a)]
        out.update(collect_seeded_for("findings", [task], seeds, profile, recompute,
                                      stages=tuple(dict.fromkeys(stages)), **kwargs))
    return out


def claims_table(records: SeededRecords, tasks: Iterable[str] = ("sst2", "mrpc"), artifacts: Iterable[str] | None = None,
                 seeds: Iterable[int] | None = None, claims=CLAIMS, n_boot: int = 10000) -> pd.DataFrame:
    """Every claim of ``claims`` (of ``artifacts``, default all) per task, by
    :func:`~stpcore.report.claim_checks.check_claim`; claims of the artifacts the paper shows on
    SST-2 only are checked on SST-2 only. Index ``(artifact, task)``; columns :data:`COLUMNS`."""
    tasks, wanted = list(tasks), None if artifacts is None else set(artifacts)
    rows, index = [], []
    for claim in claims:
        if wanted is not None and claim.artifact not in wanted:
            continue
        for task in tasks:
            if claim.artifact in SST2_ONLY and task != "sst2":
                continue
            row = check_claim(claim, records, task, seeds, n_boot)
            rows.append([row[c] for c in COLUMNS])
            index.append((claim.artifact, task))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["artifact", "task"]), columns=COLUMNS)


def verdict_counts(table: pd.DataFrame) -> str:
    """One sentence: how many of the claims in ``table`` (:func:`claims_table`) got each verdict."""
    counts = table["verdict"].value_counts()
    words = [f"{int(counts.get(v, 0))} {v}" for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)]
    words += [f"{int(counts[v])} {v}" for v in (BY_CONSTRUCTION, NOT_TESTED) if counts.get(v, 0)]
    return f"Of {len(table)} claims checked: " + ", ".join(words) + "."
