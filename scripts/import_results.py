"""Bring result records back from a GPU box into data/results, with checked provenance.

Usage: python scripts/import_results.py RESULTS_ROOT [--since ISO_TIME] [--dest DIR] [--tasks a,b]
RESULTS_ROOT is the box's STP_RESULTS_DIR copy (holding <profile>/<task>/<stage>.json). Records
finished before --since are skipped (older copies that travelled with the tree). Each record's
``provenance.source_sha256`` is matched against the library source of the last 100 commits. A
launcher-supplied ``git_commit`` whose source matches is kept; one that disagrees is replaced by
the oldest commit with that source, and the record's note says so. A record whose source matches no commit is imported with a note saying that.
A record older than ``provenance.compute_sha256`` (the digest of the code that computes, which
decides whether a stage is reused) gets it from its matched commit, and a note saying so; run on
``data/results`` itself (``--dest data/results``) this backfills the committed records.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from stpcore.runs.records import RENDER_ONLY, atomic_write_json, source_digest  # noqa: E402


def commit_digests(n: int = 100) -> dict[str, tuple[str, str]]:
    """commit -> (source_sha256, compute_sha256) of its stpcore/*.py, for the last ``n`` commits
    (newest first)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout
    out = {}
    for sha in git("rev-list", f"-{n}", "HEAD").split():
        tmp = ROOT / "runs" / "_digest"
        subprocess.run(f"rm -rf {tmp} && mkdir -p {tmp} && git archive {sha} stpcore | tar -x -C {tmp}",
                       shell=True, cwd=ROOT, check=True)
        out[sha] = source_digest(tmp / "stpcore"), source_digest(tmp / "stpcore", RENDER_ONLY)
    subprocess.run(["rm", "-rf", str(ROOT / "runs" / "_digest")], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--since", default="")
    ap.add_argument("--dest", type=Path, default=ROOT / "data" / "results",
                    help="results root to write into (default: data/results)")
    ap.add_argument("--tasks", default="", help="comma-separated tasks to import (default: all)")
    args = ap.parse_args()
    digests = commit_digests()
    oldest = {d[0]: sha for sha, d in digests.items()}       # newest first: the oldest wins
    for path in sorted(args.root.glob("*/*/*.json")):
        rec = json.loads(path.read_text())
        prov = rec["provenance"]
        if prov["finished"] < args.since or (args.tasks and rec["task"] not in args.tasks.split(",")):
            continue
        digest = prov.get("source_sha256")
        launched = prov.get("git_commit")
        match = launched if digest and digests.get(launched, ("",))[0] == digest else oldest.get(digest)
        notes = prov["note"].split("; ") if prov.get("note") else []
        add = lambda note: notes.append(note) if note not in notes else None   # a re-import adds nothing
        if match and match != launched:
            add(f"launched with git_commit {prov.get('git_commit')}; its imported source "
                f"matches commit {match}, recorded here instead")
            prov["git_commit"] = match
        elif digest and not match:
            add("its source digest matches none of the last 100 commits")
        if match and "compute_sha256" not in prov:
            prov["compute_sha256"] = digests[match][1]
            add(f"compute_sha256 taken from commit {match[:7]} (the record predates the field)")
        if notes:
            prov["note"] = "; ".join(notes)
        dest = args.dest / path.relative_to(args.root)
        atomic_write_json(dest, rec)
        print(f"{dest}: {rec['metrics'].get('dev_accuracy', '')} "
              f"commit {str(prov.get('git_commit'))[:7]}")


if __name__ == "__main__":
    main()
