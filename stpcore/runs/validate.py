"""Input checks that run before any work starts: ``--set`` items, stage names, seeds, the output
folders, and the notebooks' papermill parameters.

Every check raises ``ValueError`` naming the parameter, what is allowed and what was given. The
profile fields themselves are checked by :meth:`stpcore.runs.profiles.Profile.validate` (called
by :func:`~stpcore.runs.profiles.get_profile`).
"""
from __future__ import annotations

import json
import os
import re
from numbers import Integral
from pathlib import Path
from typing import Iterable

from ..snn.checks import MAX_SEED, check_seed  # noqa: F401 (re-exported)
from ..train.data import TASKS
from .profiles import PROFILES
from .records import REPO_ROOT, results_root

# Keyword arguments of the runner that a ``--set`` item must not shadow.
RESERVED_SET_KEYS = {"name": "--profile", "profile": "--profile", "task": "--task",
                     "seed": "--seed", "base_seed": "--base-seed", "force": "--force",
                     "stage_name": "--stages"}
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
NOTEBOOK_PARAMS = ("profile", "tasks", "task", "seeds", "seed", "recompute", "bench_dir")


def parse_set_items(items: Iterable[str], flag: str = "--set") -> dict:
    """``["KEY=VALUE", ...]`` -> ``{KEY: value}``; a value is read as JSON (numbers, true/false,
    null, lists, NaN/Infinity) and kept as a string otherwise. An item without ``=`` or with an
    empty key is an error naming the item (and ``flag``, the option the items came from)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"`{flag}` items must be KEY=VALUE (e.g. t_conv=8); got {item!r}")
        if key in RESERVED_SET_KEYS:
            use = f"use {RESERVED_SET_KEYS[key]} instead; " if flag == "--set" else ""
            raise ValueError(f"`{flag} {key}` is not a profile field; {use}got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_seeds(name: str, text) -> tuple[int, ...]:
    """Comma-separated seeds (``"0,1,2"``, as ``choose --seeds`` takes them) -> ``(0, 1, 2)``:
    at least one, each an int in [0, 2**32 - 1], no repeats."""
    allowed = f"`{name}` must be comma-separated distinct ints >= 0 (e.g. 0,1,2)"
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else None
    if not items or not all(re.fullmatch(r"[0-9]+", t) for t in items):
        raise ValueError(f"{allowed}; got {text!r}")
    seeds = tuple(check_seed(name, int(t)) for t in items)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{allowed}; got {text!r} (repeated)")
    return seeds


def check_stages(stages: Iterable[str], registry: Iterable[str]) -> list[str]:
    """Every name in ``stages`` must be a registered stage (at least one)."""
    known = list(registry)
    stages = list(stages)
    bad = [s for s in stages if s not in known]
    if not stages or bad:
        raise ValueError(f"`stages` must be a comma-separated list of {', '.join(known)} "
                         f"(or 'all'); got unknown {bad or stages!r}")
    return stages


def check_writable_dir(name: str, path) -> Path:
    """``path`` is a writable directory, or can be created as one (its nearest existing ancestor
    is a writable directory). Nothing is created."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"`{name}` must be a writable directory (or one that can be created); "
                         f"got an empty path")
    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    allowed = f"`{name}` must be a writable directory (or one that can be created)"
    if not probe.is_dir():
        where = "is" if probe == path else f"would be under {str(probe)!r}, which is"
        raise ValueError(f"{allowed}; got {str(path)!r}, which {where} not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "is" if probe == path else f"would be created under {str(probe)!r}, which is"
        raise ValueError(f"{allowed}; got {str(path)!r}, which {where} not writable")
    return path


def runs_root() -> Path:
    """Root folder of the checkpoints (``STP_RUNS_DIR`` or ``<repo>/runs``), as the runner reads it."""
    return Path(os.environ.get("STP_RUNS_DIR", REPO_ROOT / "runs"))


def check_output_dirs() -> None:
    """The results and runs folders (``STP_RESULTS_DIR`` / ``STP_RUNS_DIR`` or their defaults)
    are writable or creatable."""
    for env, path in (("STP_RESULTS_DIR", results_root()), ("STP_RUNS_DIR", runs_root())):
        if env in os.environ and os.environ[env].strip() == "":
            raise ValueError(f"`{env}` must be a writable directory (or one that can be created); "
                             f"got an empty string")
        check_writable_dir(env if env in os.environ else f"{env} (default)", path)


def _json_or(value):
    """Papermill ``-p`` passes strings: a string is read as JSON when it parses."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _check_task(name: str, value) -> str:
    if not isinstance(value, str) or value not in TASKS:
        raise ValueError(f"`{name}` must be one of {list(TASKS)}; got {value!r}")
    return value


def _check_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, Integral) and value in (0, 1):   # papermill -p turns "1" into 1
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"`{name}` must be a bool (True/False, or one of the strings "
                     f"{sorted(TRUE_WORDS | FALSE_WORDS)}); got {value!r}")


def validate_notebook_params(**params) -> dict:
    """Check and normalise a notebook's parameters (its first cell, papermill ``-p`` values).

    ``profile`` in {smoke, paper}; ``tasks`` a non-empty list of known tasks (a JSON string such
    as ``'["mrpc"]'``, or a comma-separated string, is parsed); ``task`` None or a known task;
    ``seeds`` a non-empty list of distinct ints >= 0 and ``seed`` an int >= 0 (JSON strings
    parsed; seeds below 2**32); ``tasks`` without repeats;
    ``recompute`` a bool (or "true"/"false"/"1"/"0"/"yes"/"no", any case, or the ints 0/1 that
    papermill makes of "0"/"1"); ``bench_dir`` None or
    an existing folder. Any other name is an error. Returns the normalised values of the names given.
    When ``profile`` is smoke or ``recompute`` is true (runs that write), the results and runs
    folders are checked as well."""
    unknown = sorted(set(params) - set(NOTEBOOK_PARAMS))
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; allowed: "
                         f"{', '.join(NOTEBOOK_PARAMS)}")
    out = {}
    if "profile" in params:
        if not isinstance(params["profile"], str) or params["profile"] not in PROFILES:
            raise ValueError(f"`profile` must be one of {sorted(PROFILES)}; "
                             f"got {params['profile']!r}")
        out["profile"] = params["profile"]
    if "tasks" in params:
        tasks = params["tasks"]
        parsed = _json_or(tasks)
        if isinstance(parsed, str):          # not JSON: "sst2" or "sst2,mrpc"
            parsed = [t.strip() for t in parsed.split(",")]
        if not isinstance(parsed, (list, tuple)) or not parsed:
            raise ValueError(f"`tasks` must be a non-empty list of tasks from {list(TASKS)}; "
                             f"got {tasks!r}")
        bad = [t for t in parsed if not isinstance(t, str) or t not in TASKS]
        if bad:
            raise ValueError(f"`tasks` must be a non-empty list of tasks from {list(TASKS)}; "
                             f"got {tasks!r} (unknown: {bad!r})")
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"`tasks` must be a non-empty list of distinct tasks; got {tasks!r} "
                             f"(repeated)")
        out["tasks"] = list(parsed)
    if "task" in params:
        task = params["task"]
        if task is None or (isinstance(task, str) and task.strip().lower() in ("", "none", "null")):
            out["task"] = None
        else:
            out["task"] = _check_task("task", task)
    if "seeds" in params:
        seeds = params["seeds"]
        parsed = _json_or(seeds)
        if isinstance(parsed, Integral) and not isinstance(parsed, bool):
            parsed = [parsed]
        if not isinstance(parsed, (list, tuple)) or not parsed:
            raise ValueError(f"`seeds` must be a non-empty list of ints >= 0; got {seeds!r}")
        try:
            out["seeds"] = [check_seed("seeds", s) for s in parsed]
        except ValueError:
            raise ValueError(f"`seeds` must be a non-empty list of ints >= 0; got {seeds!r}") from None
        if len(set(out["seeds"])) != len(out["seeds"]):     # a seed counted twice skews the CIs
            raise ValueError(f"`seeds` must be a non-empty list of distinct ints >= 0; "
                             f"got {seeds!r} (repeated)")
    if "seed" in params:
        out["seed"] = check_seed("seed", _json_or(params["seed"]))
    if "recompute" in params:
        out["recompute"] = _check_bool("recompute", params["recompute"])
    if "bench_dir" in params:
        bench = params["bench_dir"]
        if bench is not None and (not isinstance(bench, (str, os.PathLike)) or str(bench).strip() == ""):
            raise ValueError(f"`bench_dir` must be None or a folder path; got {bench!r}")
        if bench is not None and not Path(bench).expanduser().is_dir():
            raise ValueError(f"`bench_dir` must be None or a folder path; got {bench!r}, which "
                             f"is not an existing folder")
        out["bench_dir"] = bench
    if out.get("profile") == "smoke" or out.get("recompute"):
        check_output_dirs()
    return out
