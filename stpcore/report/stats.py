"""Uncertainty of our numbers: paired bootstrap over dev examples, t intervals over seeds.

Two sources of noise sit under every accuracy in the book:

* **which dev examples** were scored (the dev set is a sample): handled by the *paired*
  bootstrap (:func:`paired_bootstrap_ci`): two models scored on the same examples, the
  examples resampled with replacement, the accuracy difference recomputed each time;
* **which seed** trained the model: handled by a Student t interval over seeds (:func:`mean_ci`).

Accuracies and differences are in percentage points throughout. Per-example correctness comes
from a record's ``metrics.dev_predictions`` / ``metrics.dev_labels`` (strings of digits, one per
dev example in dev order; :func:`correct_vector`); older records lack them and give None.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from numbers import Real
from typing import Any, Mapping, Sequence

import numpy as np

#: Verdicts of :func:`verdict`.
BETTER, WORSE, SAME = "better", "worse", "same within noise"


# ---------------------------------------------------------------------------- inputs
def _binary(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float array of 0/1, or a ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a 1-D sequence of 0/1 (correct = 1); "
                         f"got {type(values).__name__} that is not numeric ({err})") from None
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D sequence of 0/1 (correct = 1); got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` must hold at least one example (0/1 per example); got an empty sequence")
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"`{name}` must hold only 0 and 1 (correct = 1); got {arr[bad][:5].tolist()} "
                         f"at positions {np.flatnonzero(bad)[:5].tolist()}")
    return arr


def _check_n_boot(n_boot: int) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 1):
        raise ValueError(f"`n_boot` must be a positive integer; got {n_boot!r}")


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ValueError(f"`level` must be a number strictly between 0 and 1 (e.g. 0.95); got {level!r}")


# ---------------------------------------------------------------------------- bootstrap
def _bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int, level: float, seed: int) -> dict:
    """Percentile interval of ``mean(b - a)`` (in points) over ``n_boot`` resamples of the
    example indices (``a``, ``b``: per-example scores in [0, 1], same length)."""
    d = b - a
    n = d.size
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)          # bounded memory for large dev sets (QQP: 40k)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = d[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    # rounded to 1e-9 points: a bound that is 0 in exact arithmetic must not read as -1e-16
    # (and -0.0 shown as 0.0)
    return {"diff": round(100.0 * float(d.mean()), 9) + 0.0, "low": round(100.0 * float(low), 9) + 0.0,
            "high": round(100.0 * float(high), 9) + 0.0, "n": int(n)}


def paired_bootstrap_ci(correct_a: Sequence, correct_b: Sequence, n_boot: int = 10000,
                        level: float = 0.95, seed: int = 0) -> dict:
    """Accuracy difference ``b - a`` (points) of two models scored on the same examples, with a
    paired percentile-bootstrap interval.

    ``correct_a``/``correct_b``: 0/1 per example (1 = correct), same length and order. Each of
    ``n_boot`` replicates draws the examples with replacement (the same draw for both models).
    Returns ``{"diff", "low", "high", "n"}`` (``n``: examples)."""
    a, b = _binary(correct_a, "correct_a"), _binary(correct_b, "correct_b")
    if a.size != b.size:
        raise ValueError(f"`correct_a` and `correct_b` must score the same examples (equal lengths); "
                         f"got {a.size} and {b.size}")
    _check_n_boot(n_boot)
    _check_level(level)
    return _bootstrap_diff(a, b, int(n_boot), float(level), seed)


def pooled_bootstrap_ci(correct_base: Sequence, correct_seeds: Sequence[Sequence], n_boot: int = 10000,
                        level: float = 0.95, seed: int = 0) -> dict:
    """The accuracy difference of a stage run at several seeds against ONE reference model
    (e.g. the seed-0 baseline), pooled over the seeds.

    Pooling: each bootstrap replicate draws the dev examples once and computes, for every seed,
    its accuracy minus the reference's on that draw; the replicate's statistic is the average of
    these per-seed differences. (Equivalently, the paired bootstrap of the reference against the
    per-example mean correctness over seeds.) The interval therefore covers dev-set sampling
    for these seeds; it does not treat the seeds as a sample of all seeds (see :func:`mean_ci`
    for that). Returns ``{"diff", "low", "high", "n", "seeds"}`` (``seeds``: how many)."""
    base = _binary(correct_base, "correct_base")
    if len(correct_seeds) == 0:
        raise ValueError("`correct_seeds` must hold at least one 0/1 vector (one per seed); got none")
    vecs = [_binary(v, f"correct_seeds[{i}]") for i, v in enumerate(correct_seeds)]
    for i, v in enumerate(vecs):
        if v.size != base.size:
            raise ValueError(f"`correct_seeds[{i}]` must score the same examples as `correct_base` "
                             f"(equal lengths); got {v.size} and {base.size}")
    _check_n_boot(n_boot)
    _check_level(level)
    out = _bootstrap_diff(base, np.mean(vecs, axis=0), int(n_boot), float(level), seed)
    out["seeds"] = len(vecs)
    return out


def _contrast(plus: Mapping[str, Sequence], minus: Mapping[str, Sequence], n_boot: int, level: float,
              seed: int) -> dict:
    """:func:`pooled_contrast_ci` on arms named for the caller's errors (``{name: 0/1 vectors}``)."""
    means = {}
    for name, vs in (*plus.items(), *minus.items()):
        if len(vs) == 0:
            raise ValueError(f"`{name}` must hold at least one 0/1 vector (one per seed); got none")
        means[name] = np.mean([_binary(v, f"{name}[{j}]") for j, v in enumerate(vs)], axis=0)
    sizes = {v.size for v in means.values()}
    if len(sizes) != 1:
        raise ValueError(f"{' and '.join(f'`{k}`' for k in means)} must score the same examples (equal lengths); "
                         f"got lengths {sorted(sizes)}")
    _check_n_boot(n_boot)
    _check_level(level)
    pos, neg = (np.sum([means[k] for k in side], axis=0) for side in (plus, minus))
    return _bootstrap_diff(neg, pos, int(n_boot), float(level), seed)


def pooled_contrast_ci(plus: Sequence[Sequence[Sequence]], minus: Sequence[Sequence[Sequence]],
                       n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> dict:
    """A contrast of the accuracies of several stages scored on the same examples: the sum of
    the ``plus`` arms' accuracies minus the sum of the ``minus`` arms' (points), each arm pooled
    over its seeds (per example, the mean correctness over the arm's 0/1 vectors), with a paired
    bootstrap over the examples (each replicate draws them once for every arm). One arm a side is
    a difference of two stages (:func:`pooled_pair_bootstrap_ci`); ``(A - B) - (C - D)`` is
    ``plus=[A, D], minus=[B, C]``, a difference in differences. Returns ``{"diff", "low",
    "high", "n", "seeds_plus", "seeds_minus"}`` (the seeds of each arm)."""
    if not plus or not minus:
        raise ValueError(f"`plus` and `minus` must each hold at least one arm; got {len(plus)} and {len(minus)}")
    out = _contrast({f"plus[{i}]": vs for i, vs in enumerate(plus)},
                    {f"minus[{i}]": vs for i, vs in enumerate(minus)}, n_boot, level, seed)
    return {**out, "seeds_plus": [len(vs) for vs in plus], "seeds_minus": [len(vs) for vs in minus]}


def pooled_pair_bootstrap_ci(correct_a: Sequence[Sequence], correct_b: Sequence[Sequence], n_boot: int = 10000,
                             level: float = 0.95, seed: int = 0) -> dict:
    """The accuracy difference ``b - a`` of two stages, each run at one or more seeds, scored on
    the same examples: per example, the mean correctness over ``b``'s seeds minus that over
    ``a``'s, with a paired bootstrap over the examples (each replicate draws them once for every
    seed of both); :func:`pooled_contrast_ci` with one arm a side. :func:`pooled_bootstrap_ci` is
    the case of one vector in ``a``. Returns ``{"diff", "low", "high", "n", "seeds_a", "seeds_b"}``."""
    out = _contrast({"correct_b": correct_b}, {"correct_a": correct_a}, n_boot, level, seed)
    return {**out, "seeds_a": len(correct_a), "seeds_b": len(correct_b)}


# ---------------------------------------------------------------------------- seeds
#: t(0.975, df) for df = 1..10 (the 95 % interval over a few seeds) when scipy is absent.
_T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912,
         7: 2.364624, 8: 2.306004, 9: 2.262157, 10: 2.228139}


def _t_quantile(p: float, df: int) -> float:
    try:
        from scipy.stats import t
        return float(t.ppf(p, df))
    except ImportError:                     # scipy is optional: a table, else a Cornish-Fisher series
        if abs(p - 0.975) < 1e-12 and df in _T975:
            return _T975[df]
        z = statistics.NormalDist().inv_cdf(p)
        if df == 1:
            return math.tan(math.pi * (p - 0.5))
        if df == 2:
            return (2 * p - 1) * math.sqrt(2.0 / (4 * p * (1 - p)))
        g1 = (z ** 3 + z) / 4
        g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
        g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
        g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
        return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean over seeds with a Student t interval: ``{"mean", "low", "high", "n", "sd"}``.

    ``sd`` is the sample standard deviation (n - 1). With one value, ``low``/``high``/``sd``
    are None (no spread to estimate); with none, everything but ``n`` is None."""
    _check_level(level)
    vals = list(values)
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"`values` must be numbers (one per seed); got {vals!r}")
    vals = [float(v) for v in vals]
    if any(math.isnan(v) for v in vals):
        raise ValueError(f"`values` must be numbers (not NaN); got {vals}")
    n = len(vals)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "sd": None}
    mean = sum(vals) / n
    if n == 1:
        return {"mean": mean, "low": None, "high": None, "n": 1, "sd": None}
    sd = statistics.stdev(vals)
    half = _t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "sd": sd}


# ---------------------------------------------------------------------------- records
def correct_vector(record: dict | None) -> np.ndarray | None:
    """0/1 per dev example (1 = prediction equals label) from a record's
    ``metrics.dev_predictions`` and ``metrics.dev_labels``; None when the record, either
    string, or their agreement in length is missing."""
    if not record:
        return None
    m = record.get("metrics") or {}
    pred, lab = m.get("dev_predictions"), m.get("dev_labels")
    if not isinstance(pred, str) or not isinstance(lab, str) or not pred or len(pred) != len(lab):
        return None
    return (np.frombuffer(pred.encode(), np.uint8) == np.frombuffer(lab.encode(), np.uint8)).astype(float)


# ---------------------------------------------------------------------------- verdicts
def verdict(ci: dict | None, margin: float = 0.0) -> str:
    """``"better"`` if the interval lies above ``margin`` (``low > margin``), ``"worse"`` if it
    lies below ``-margin`` (``high < -margin``), else ``"same within noise"``; ``"n/a"``
    without an interval."""
    if not ci or ci.get("low") is None or ci.get("high") is None:
        return "n/a"
    if ci["low"] > margin:
        return BETTER
    if ci["high"] < -margin:
        return WORSE
    return SAME


def sampling_error(accuracy: float, n: int) -> float:
    """Binomial standard error (points) of an accuracy measured on ``n`` examples:
    ``100 * sqrt(p (1 - p) / n)`` with ``p = accuracy / 100``; ``accuracy`` in percent."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"`n` must be a positive integer (number of examples); got {n!r}")
    if accuracy is None or not 0.0 <= float(accuracy) <= 100.0:
        raise ValueError(f"`accuracy` must be a percentage in [0, 100]; got {accuracy!r}")
    p = float(accuracy) / 100.0
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def unpaired_binomial_ci(accuracy_a: float, accuracy_b: float, n: int, level: float = 0.95) -> dict:
    """``accuracy_b - accuracy_a`` (points) of two accuracies measured on ``n`` examples each, with
    the binomial interval that ignores any pairing: +- z * the root sum of squares of the two
    :func:`sampling_error` (wider than a paired interval: conservative). Returns ``{"diff",
    "low", "high"}``."""
    _check_level(level)
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    half = z * float(np.hypot(sampling_error(accuracy_a, n), sampling_error(accuracy_b, n)))
    diff = accuracy_b - accuracy_a
    return {"diff": diff, "low": diff - half, "high": diff + half}


def majority_rate(record: dict | None) -> tuple[str, float] | None:
    """``(label, percent)`` of the most common label of ``metrics.dev_labels`` (None if absent)."""
    labels = ((record or {}).get("metrics") or {}).get("dev_labels")
    if not isinstance(labels, str) or not labels:
        return None
    label, count = Counter(labels).most_common(1)[0]
    return label, 100.0 * count / len(labels)


def predicted_share(record: dict | None, label: str) -> float | None:
    """Percent of dev examples the record's model predicted as ``label`` (None without predictions)."""
    pred = ((record or {}).get("metrics") or {}).get("dev_predictions")
    if not isinstance(pred, str) or not pred:
        return None
    return 100.0 * pred.count(label) / len(pred)


def above_majority(record: dict | None, level: float = 0.95) -> bool | None:
    """Whether the record's dev accuracy is above its dev split's majority-class rate by more
    than sampling noise: the lower end of the accuracy's binomial ``level`` interval
    (:func:`sampling_error`) lies above the rate. None without labels or an accuracy. A model
    that is not cannot show an accuracy loss: predicting the majority class scores as well."""
    major = majority_rate(record)
    m = (record or {}).get("metrics") or {}
    if major is None or m.get("dev_accuracy") is None:
        return None
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    acc = float(m["dev_accuracy"])
    return acc - z * sampling_error(acc, len(m["dev_labels"])) > major[1]
