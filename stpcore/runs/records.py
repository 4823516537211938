"""Results as data with provenance.

Every number the book shows comes from a JSON record written by :func:`write_record`.
A record holds the configuration, the metrics, and where/when/how it was made
(git commit, a digest of the library source, device, wall time, seed). Records are written atomically: a reader never
sees a half-written file.

Layout: ``data/results/<profile>/<task>/<stage>.json`` for seed 0 and ``<stage>.seed<k>.json`` for
seed k (``STP_RESULTS_DIR`` overrides the root).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


def results_root() -> Path:
    """Root folder of the result records (``STP_RESULTS_DIR`` or ``<repo>/data/results``)."""
    return Path(os.environ.get("STP_RESULTS_DIR", REPO_ROOT / "data" / "results"))


def seed_suffix(seed: int) -> str:
    """File-name suffix of a seed: none for seed 0, ``.seed<k>`` otherwise."""
    return "" if seed == 0 else f".seed{seed}"


def record_path(profile: str, task: str, stage: str, root: Path | None = None,
                seed: int = 0) -> Path:
    return Path(root or results_root()) / profile / task / f"{stage}{seed_suffix(seed)}.json"


def git_commit() -> dict[str, Any]:
    """The commit the code ran at, and whether the tree had uncommitted changes.

    A copy of the tree without ``.git`` (a GPU box) takes ``STP_GIT_COMMIT`` set by its launcher."""
    if os.environ.get("STP_GIT_COMMIT"):
        return {"git_commit": os.environ["STP_GIT_COMMIT"], "git_dirty": None}

    def _git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    try:
        sha = _git("rev-parse", "HEAD")
        return {"git_commit": sha or None,
                "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if sha else None}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def source_digest(package: Path = Path(__file__).resolve().parents[1], exclude: tuple[str, ...] = ()) -> str:
    """sha256 over the paths (relative to the package) and contents of the library's ``*.py``
    files, in path order, less those under the top-level folders named in ``exclude``.

    Recorded as ``provenance.source_sha256``: it names the code a process imported even where
    there is no ``.git`` or the tree changed after launch. Recompute it on a checkout of any
    commit to find the one a record came from."""
    digest = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package).as_posix()
        if rel.split("/")[0] in exclude:
            continue
        digest.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


#: The folders whose code only renders results (tables, figures, the book); a change there does
#: not change what a stage computes, so it leaves the records reusable (``compute_sha256``).
RENDER_ONLY = ("report",)
SOURCE_SHA256 = source_digest()     # at import time: the code this process runs
COMPUTE_SHA256 = source_digest(exclude=RENDER_ONLY)     # the part of it that computes results
#: Compute digests of earlier commits whose stages compute exactly what this code computes; their
#: computing source differs from this one in bookkeeping only (the diff is named). A pruning
#: record made under one of them is reused like one made now. Add an entry only with that diff.
COMPUTE_EQUIVALENT = {
    # 2f78f64: before compute_sha256 existed. Since then runs/records.py writes the field, the
    # reuse rule reads it and matches upstream models by checkpoint digest, `run --with-models`
    # keeps a reused stage's model on disk (git diff 2f78f64 -- stpcore ':!stpcore/report')
    "b91c91c70c53e8b4b8263f11df126e27f8dbb9d18a00a8dae50858a891cd4416": "2f78f64",
    # 46a9173: train/data.py reads whole columns instead of rows in word_lengths and in
    # split_heldout's leak check, whose held-out text now comes from that column rather than a
    # select() (same lengths, same held-out rows: SST-2 and MRPC checked; 25 s
    # to 7 s per SST-2 load), and this entry (git diff 46a9173 -- stpcore ':!stpcore/report')
    "5e222bdf07bbe4a3bcfd1aa810787b23854bd76413896e64f85a5bee6aee7bad": "46a9173",
    # f9362a2: the integer path's Triton kernels (snn/int_kernels.py) and the CUDA int8
    # simulation through them and the fused fp32 attention and LayerNorm-LIF kernels. No stage
    # simulates in int8 (profiles allow sim_dtype float32, bfloat16, float16), and those dtypes
    # take the steps they took before (git diff f9362a2 -- stpcore ':!stpcore/report')
    "d9e4ed4b6826e562e55f1d4d6b6acb41486a2906e40d7346ee6a9cd360afe9c1": "f9362a2",
    # 11b6fc9 (the MRPC int8 rerun's records): since then a switch of binary_sim_dtype re-evaluates
    # the 1-bit baseline's record from its checkpoint (runner.Run.evaluated_as_now; pruning stages
    # read the baseline's model, not its metrics), the Fisher cache is named by the baseline's
    # checkpoint digest instead of its record's finish time (the same model, the same gradients),
    # and binary_dtype_name moved into profiles (git diff 11b6fc9 -- stpcore ':!stpcore/report')
    "d71171d897275a342ca3e0f1fa5557ce37f6e039830564b6e0d5169ee7036909": "11b6fc9",
    # 268ef9e (also 4c3af93: the int8 reruns' records): since then runs/seeding.py holds
    # seed_everything and the opt-in STP_DETERMINISTIC mode (unset: the same seeding, nothing
    # else), checkpoint_digest moved from runner.py to this file unchanged, and a record made with
    # deterministic algorithms on says so (git diff 268ef9e -- stpcore ':!stpcore/report')
    "0ec01a9c58e8a187f8dbf85f4461c7e22cba29f67d30ff131eb049bea868fb31": "268ef9e",
    # c8e5165 (the sweeps, temporal_readings and SST-2's two_stage and adaptive_threshold records):
    # since then the paper profile names binary_sim_dtype="int8" (those records were made with it
    # set), the LIF kernels count spikes as they write them (the same counts), and the integer path
    # reads signs and scales off the 1-bit weight (split_binary: the same BinaryLinear, bit for
    # bit); bench/results/exactness_cuda.json at 05e76d3 has every value 7340856's had
    # (git diff c8e5165 -- stpcore ':!stpcore/report')
    "2aa7fb78d318b21c99bf0e3a2a09c40e3acfd7e028b625bd5dbf123b2f3f808e": "c8e5165",
    # 88df4d0 (data/results/repeats/2026-12-04-deterministic-4): binary_linear_lif counted its own
    # spikes there (3bacbb2, reverted for speed in ccb5580), the same spikes: in deterministic mode
    # MRPC spatial_retrain seed 0 rebuilt checkpoint 6afba538 as at c8e5165 and 06f6df5
    # (git diff 88df4d0 -- stpcore ':!stpcore/report')
    "3c47fe3d2992f34e90830ddd28631e2a459bb53a08eeca1c127c023e6b279a41": "88df4d0",
}


def same_upstream(entry: dict, current: dict) -> bool:
    """Whether a record's ``provenance.upstream`` entry names the ``current`` record of that stage:
    the same model (checkpoint digest) where both have one, else the same ``finished`` time. A
    rerun that rebuilt the identical model (a deterministic post-training stage) keeps the
    records made from it."""
    prov = current.get("provenance") or {}
    made, now = entry.get("checkpoint_sha256"), prov.get("checkpoint_sha256")
    if made and now:
        return made == now
    return entry.get("finished") == prov.get("finished")


def computes_as_now(provenance: dict) -> bool:
    """Whether a record was computed by code that computes what this process's code does: its
    ``compute_sha256`` is this one's or declared equivalent (:data:`COMPUTE_EQUIVALENT`); a record
    older than that field needs the whole source (``source_sha256``) to match."""
    made = provenance.get("compute_sha256")
    if made:
        return made == COMPUTE_SHA256 or made in COMPUTE_EQUIVALENT
    return provenance.get("source_sha256") == SOURCE_SHA256


def describe_device(device: Any = None) -> str:
    """A human-readable name of the device the run used (GPU model or CPU)."""
    import torch
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def atomic_write_json(path: Path, payload: Any) -> Path:
    """Write JSON to ``path`` through a temporary file and ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True, default=_jsonable, allow_nan=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)                    # world-readable, as any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (data files, teacher weights, records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_digest(folder: Path) -> str | None:
    """sha256 over a checkpoint folder's ``config.json`` and ``model.safetensors`` (names and
    bytes); None when either is missing. A truncated, emptied or rewritten file changes it."""
    files = [Path(folder) / n for n in ("config.json", "model.safetensors")]
    if not all(f.is_file() for f in files):
        return None
    return hashlib.sha256("".join(f"{f.name}:{file_sha256(f)};" for f in files).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "datasets", "numpy", "triton"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_record(profile: str, task: str, stage: str, *, config: dict, metrics: dict,
                 seed: int, wall_time_s: float, device: Any = None,
                 root: Path | None = None, inputs: dict | None = None) -> dict:
    """Write one result record atomically and return it. ``inputs`` (data file hashes, teacher
    hash, upstream records, base seed) goes into the provenance as it is."""
    import torch
    record = {
        "schema": SCHEMA_VERSION,
        "profile": profile,
        "task": task,
        "stage": stage,
        "config": config,
        "metrics": metrics,
        "provenance": {
            **git_commit(),
            "source_sha256": SOURCE_SHA256,
            "compute_sha256": COMPUTE_SHA256,
            "device": describe_device(device),
            "torch": torch.__version__,
            "libraries": library_versions(),
            **({"deterministic": True} if torch.are_deterministic_algorithms_enabled() else {}),
            "seed": seed,
            **(inputs or {}),
            "wall_time_s": round(float(wall_time_s), 3),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **({"note": os.environ["STP_RUN_NOTE"]} if os.environ.get("STP_RUN_NOTE") else {}),
        },
    }
    atomic_write_json(record_path(profile, task, stage, root, seed), record)
    return record


def read_record(profile: str, task: str, stage: str, root: Path | None = None,
                seed: int = 0) -> dict | None:
    """The record of one stage and seed, or None when it has not been run. A file that is not
    a complete record of that stage and seed raises ``ValueError`` naming it and the fix
    (:func:`load_record`)."""
    path = record_path(profile, task, stage, root, seed)
    if not path.exists():
        return None
    return load_record(path, profile=profile, task=task, stage=stage, seed=seed)


def _no_constants(word: str):
    raise ValueError(f"{word} is not valid JSON (records are written without NaN or Infinity)")


def load_record(path: str | Path, profile: str | None = None, task: str | None = None,
                stage: str | None = None, seed: int | None = None) -> dict:
    """The record in the file ``path``, checked: strict JSON (no NaN/Infinity), a dict whose
    ``config``, ``metrics`` and ``provenance`` are dicts, and whose ``profile``/``task``/``stage``
    and ``provenance.seed`` (where the record has them) are the ones given. Anything else raises
    ``ValueError`` naming the file, what is wrong and the fix."""
    path = Path(path)
    try:
        with open(path) as fh:
            rec = json.load(fh, parse_constant=_no_constants)
        problem = _record_problem(rec, {"profile": profile, "task": task, "stage": stage}, seed)
    except ValueError as err:                    # JSONDecodeError, UnicodeDecodeError, NaN
        problem = f"{type(err).__name__}: {err}"
    except OSError as err:                       # a folder named like a record, unreadable, ...
        problem = f"unreadable: {type(err).__name__}: {err.strerror or err}"
    if problem:
        raise ValueError(f"record {str(path)!r} is not a complete record ({problem}); "
                         f"delete it, or rerun the stage with --force")
    return rec


def _record_problem(rec: Any, ids: dict, seed: int | None) -> str | None:
    """What makes ``rec`` unusable as the record of ``ids`` and ``seed``, or None."""
    if not isinstance(rec, dict):
        return f"a JSON object is needed; got {type(rec).__name__}"
    missing = [k for k in ("config", "metrics", "provenance") if k not in rec]
    if missing:
        return f"missing keys {missing}"
    not_dicts = [k for k in ("config", "metrics", "provenance") if not isinstance(rec[k], dict)]
    if not_dicts:
        return f"{not_dicts} must be JSON objects"
    for key, want in ids.items():
        if want is not None and key in rec and rec[key] != want:
            return f"it is the record of {key} {rec[key]!r}, not {want!r}"
    got = rec["provenance"].get("seed", seed)
    if seed is not None and got != seed:
        return f"it is the record of seed {got!r}, not {seed!r}"
    return None


def list_records(profile: str | None = None, root: Path | None = None) -> list[dict]:
    """All records under the root (optionally of one profile), sorted by path; a file that is
    not a record raises ``ValueError`` naming it (:func:`load_record`)."""
    base = Path(root or results_root())
    base = base / profile if profile else base
    return [load_record(p) for p in sorted(base.glob("**/*.json"))]
