"""Build the companion Jupyter Book: execute the notebooks, then build the HTML, strictly.

``python -m stpcore book [--profile smoke|paper] [--tasks sst2,mrpc] [--only NAME]``:

1. every ``notebooks/*.ipynb`` is executed with papermill (kernel ``python3``, parameters
   ``profile`` and, if given, ``tasks``, progress bars off) into ``book/executed/``;
2. the API page's module list is generated (``book/executed/api_modules.md``) from the
   modules that import;
3. MathJax 3 is made available offline in ``book/_build/mathjax_static/mathjax/`` (copied
   from ``node_modules/mathjax``, ``$STP_MATHJAX_DIR``, or fetched once with ``npm pack``);
4. ``jupyter-book build book/ -W -n --keep-going`` (strict) with execution off.

Any notebook error, missing reference or Sphinx warning makes the build fail (exit code 1)
with a message naming it. Before building, every executed notebook the TOC points at is checked
(:func:`incomplete_notebooks`): one that papermill did not run to the end (an exception recorded,
a cell that failed or never ran) is not published; with ``--no-execute`` this is what stops a
stale, half-run ``book/executed/`` copy from reaching the HTML.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOK_DIR = REPO_ROOT / "book"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
EXECUTED = "executed"
MATHJAX_VERSION = "3"
MATHJAX_STATIC = Path("_build") / "mathjax_static"      # relative to the book dir (git-ignored)

#: Modules documented on the API page, in this order.
API_MODULES = tuple(f"stpcore.{m}" for m in (
    "snn.config snn.lif snn.layer snn.model snn.prepared snn.quant snn.packed snn.kernels "
    "snn.int_kernels snn.spike_attention snn.bernoulli snn.sequential snn.integer snn.checks snn.inputs train.data "
    "train.corpus train.teacher train.distill train.loop prune.acs prune.spatial "
    "prune.temporal prune.retrain runs.profiles runs.runner runs.foundation runs.pruning "
    "runs.records runs.seeding runs.checkpoints runs.validate runs.sweep report.paper "
    "report.tables report.notes report.summary report.plots report.benchmarks report.intpath "
    "report.gemm report.book report.rerun report.foundation report.schedules report.gaps "
    "report.granularity report.penalty report.seeds report.spikes report.stats "
    "report.verdicts report.claim_checks report.claims report.tradeoff report.variants").split())


class BookError(RuntimeError):
    """A step of the book build failed (message says which)."""


def _log(msg: str) -> None:
    print(f"[book] {msg}", file=sys.stderr, flush=True)


def _env() -> dict:
    """The kernels' and Sphinx's environment: repo importable, no progress bars, headless plots."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


# ---------------------------------------------------------------------------- notebooks
def notebook_names(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """Names (without .ipynb) of the notebooks to execute, sorted."""
    return sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))


def check_only(only: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> str:
    """``--only NAME`` (or ``NAME.ipynb``) -> NAME, a notebook of ``notebooks_dir``; else BookError."""
    names, only = notebook_names(notebooks_dir), Path(only).stem
    if only not in names:
        raise BookError(f"--only {only!r}: no notebooks/{only}.ipynb (have: {', '.join(names)})")
    return only


def execute_notebooks(profile: str = "smoke", tasks: list[str] | None = None, only: str | None = None,
                      notebooks_dir: Path = NOTEBOOKS_DIR, out_dir: Path = BOOK_DIR / EXECUTED,
                      kernel: str = "python3", seed: int | None = None, recompute: bool | None = None,
                      timeout: int | None = None) -> list[tuple[str, str]]:
    """Execute the notebooks with papermill; return ``[(name, error message)]`` of failures."""
    import papermill as pm

    names = notebook_names(notebooks_dir) if only is None else [check_only(only, notebooks_dir)]
    params: dict = {"profile": profile}
    if tasks is not None:
        params["tasks"] = list(tasks)
    if seed is not None:
        params["seed"] = int(seed)
    if recompute is not None:
        params["recompute"] = bool(recompute)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    old_env, kernel_env = dict(os.environ), _env()
    os.environ.clear()
    os.environ.update(kernel_env)   # kernels inherit this process's environment
    try:
        for name in names:
            start = time.monotonic()
            _log(f"executing notebooks/{name}.ipynb (profile={profile}"
                 f"{', tasks=' + ','.join(tasks) if tasks is not None else ''})")
            try:
                pm.execute_notebook(str(Path(notebooks_dir) / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                                    parameters=params, kernel_name=kernel, progress_bar=False,
                                    log_output=False, cwd=str(REPO_ROOT), execution_timeout=timeout)
            except pm.PapermillExecutionError as err:
                msg = f"{err.ename}: {err.evalue} (cell {err.exec_count})"
                failures.append((name, msg))
                _log(f"FAILED notebooks/{name}.ipynb: {msg}")
                continue
            except Exception as err:  # kernel died, bad parameters, ...
                failures.append((name, f"{type(err).__name__}: {err}"))
                _log(f"FAILED notebooks/{name}.ipynb: {type(err).__name__}: {err}")
                continue
            _log(f"done {name} in {time.monotonic() - start:.1f} s")
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    return failures


# ---------------------------------------------------------------------------- executed copies
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"     # papermill's banner cells above a failure


def notebook_problems(path: Path) -> list[str]:
    """Why an executed notebook must not be published; empty when papermill ran it to the end.

    Papermill records the run in the notebook: ``metadata.papermill`` (``exception`` true when a
    cell raised, ``end_time`` set when the run concluded) and, per cell, ``metadata.papermill``
    (``status`` pending/running/completed/failed, ``exception``); a failed run also gets banner
    cells tagged ``papermill-error-cell-tag``. Any of those, an ``error`` output, or a code cell
    that never ran (no execution count) counts as incomplete.
    """
    path = Path(path)
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return [f"unreadable ({type(err).__name__}: {err})"]
    problems = []
    pm_meta = (nb.get("metadata") or {}).get("papermill")
    if not isinstance(pm_meta, dict):
        return ["not executed by papermill (no metadata.papermill)"]
    if pm_meta.get("exception"):
        problems.append("papermill recorded an exception (metadata.papermill.exception)")
    if not pm_meta.get("end_time"):
        problems.append("the run did not conclude (metadata.papermill.end_time is empty)")
    first_bad = None
    for i, cell in enumerate(nb.get("cells") or []):
        meta = cell.get("metadata") or {}
        if PAPERMILL_ERROR_TAG in (meta.get("tags") or []):
            first_bad = first_bad or f"papermill error banner at cell {i}"
            continue
        if cell.get("cell_type") != "code":
            continue
        errors = [o for o in cell.get("outputs") or [] if o.get("output_type") == "error"]
        status = (meta.get("papermill") or {}).get("status")
        src = cell.get("source") or ""
        src = "".join(src) if isinstance(src, list) else src
        if errors:
            reason = f"cell {i} raised {errors[0].get('ename')}: {errors[0].get('evalue')}"
        elif (meta.get("papermill") or {}).get("exception") or status == "failed":
            reason = f"cell {i} failed (papermill status {status!r})"
        elif status not in (None, "completed"):
            reason = f"cell {i} has papermill status {status!r}"
        elif src.strip() and cell.get("execution_count") is None:
            reason = f"cell {i} was not executed (no outputs or execution count)"
        else:
            continue
        first_bad = first_bad or reason
        problems.append(reason)
    if first_bad and first_bad not in problems:
        problems.insert(0, first_bad)
    return problems


def incomplete_notebooks(executed_dir: Path, names: list[str] | None = None) -> dict[str, list[str]]:
    """``{name: problems}`` of the executed notebooks (``names``, default all ``*.ipynb`` in
    ``executed_dir``) that must not be published (see :func:`notebook_problems`); absent files
    are left to the caller."""
    executed_dir = Path(executed_dir)
    names = sorted(p.stem for p in executed_dir.glob("*.ipynb")) if names is None else names
    out = {}
    for name in names:
        path = executed_dir / f"{name}.ipynb"
        if path.is_file():
            problems = notebook_problems(path)
            if problems:
                out[name] = problems
    return out


# ---------------------------------------------------------------------------- API page
def importable_modules(modules=API_MODULES) -> tuple[list[str], dict[str, str]]:
    """Split ``modules`` into those that import (checked in a fresh interpreter) and
    ``{module: error}`` for the others."""
    code = ("import importlib, json, sys\nres = {}\n"
            "for m in sys.argv[1:]:\n"
            "    try:\n        importlib.import_module(m); res[m] = None\n"
            "    except BaseException as e:\n        res[m] = f'{type(e).__name__}: {e}'\n"
            "print(json.dumps(res))\n")
    proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True,
                          env=_env(), cwd=REPO_ROOT, timeout=600)
    if proc.returncode != 0:
        raise BookError(f"could not check the API modules:\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    ok = [m for m in modules if res.get(m) is None]
    return ok, {m: res[m] for m in modules if res.get(m) is not None}


def write_api_page(book_dir: Path = BOOK_DIR, modules=API_MODULES) -> dict[str, str]:
    """Write ``executed/api_modules.md`` (included by ``api.md``); return the modules left out."""
    ok, missing = importable_modules(modules)
    lines = []
    for m in ok:
        # eval-rst: autodoc emits reStructuredText, which MyST would otherwise show as text
        lines += [f"## `{m}`", "", "```{eval-rst}", f".. automodule:: {m}", "   :members:",
                  "   :show-inheritance:", "```", ""]
    if missing:
        lines += ["## Not yet documented", "",
                  "These modules did not import when the book was built:", ""]
        lines += [f"- `{m}`: {err.splitlines()[0] if err else ''}" for m, err in missing.items()]
        lines.append("")
    path = Path(book_dir) / EXECUTED / "api_modules.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    for m, err in missing.items():
        _log(f"API page: {m} left out ({err.splitlines()[0] if err else 'import failed'})")
    return missing


# ---------------------------------------------------------------------------- MathJax
def _mathjax_source() -> Path | None:
    """An existing MathJax 3 ``es5`` folder, if any."""
    candidates = [Path(os.environ["STP_MATHJAX_DIR"])] if os.environ.get("STP_MATHJAX_DIR") else []
    candidates += [REPO_ROOT / "node_modules" / "mathjax" / "es5", REPO_ROOT / "node_modules" / "mathjax"]
    for c in candidates:
        if (c / "tex-chtml.js").is_file():
            return c
        if (c / "es5" / "tex-chtml.js").is_file():
            return c / "es5"
    return None


def ensure_mathjax(book_dir: Path = BOOK_DIR) -> Path:
    """Make ``<book>/_build/mathjax_static/mathjax/tex-chtml.js`` exist (MathJax 3, offline).

    Uses ``$STP_MATHJAX_DIR`` or ``node_modules/mathjax`` if present, else ``npm pack
    mathjax@3`` (the npm registry or npm's cache). The speech-rule engine (``sre``, large,
    loaded only by the accessibility menu) is not copied.
    """
    dest = Path(book_dir) / MATHJAX_STATIC / "mathjax"
    if (dest / "tex-chtml.js").is_file():
        return dest
    src = _mathjax_source()
    with tempfile.TemporaryDirectory(prefix="stp-mathjax-") as tmp:
        if src is None:
            npm = shutil.which("npm")
            if npm is None:
                raise BookError("MathJax is missing and npm is not installed: install npm, or set "
                                "STP_MATHJAX_DIR to a MathJax 3 'es5' folder")
            _log(f"fetching MathJax {MATHJAX_VERSION} with npm pack")
            proc = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp,
                                  capture_output=True, text=True, timeout=300)
            tgz = sorted(Path(tmp).glob("mathjax-*.tgz"))
            if proc.returncode != 0 or not tgz:
                raise BookError(f"npm pack mathjax@{MATHJAX_VERSION} failed:\n{proc.stderr[-2000:]}")
            with tarfile.open(tgz[0]) as tar:
                tar.extractall(tmp, filter="data")
            src = Path(tmp) / "package" / "es5"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("sre"))
    if not (dest / "tex-chtml.js").is_file():
        raise BookError(f"MathJax copy incomplete: {dest / 'tex-chtml.js'} missing")
    _log(f"MathJax ready in {dest.relative_to(book_dir)}")
    return dest


# ---------------------------------------------------------------------------- Sphinx build
_WARNING_RE = re.compile(r"(WARNING|ERROR|CRITICAL|SEVERE):")


def toc_notebooks(book_dir: Path = BOOK_DIR) -> list[str]:
    """Names of the executed notebooks the TOC points at (``executed/<name>``)."""
    text = (Path(book_dir) / "_toc.yml").read_text()
    return re.findall(rf"file:\s*{EXECUTED}/([A-Za-z0-9_\-]+)", text)


def build_html(book_dir: Path = BOOK_DIR, strict: bool = True) -> tuple[int, list[str]]:
    """``jupyter-book build`` (strict: ``-W -n --keep-going``); return (exit code, warnings)."""
    missing = [n for n in toc_notebooks(book_dir) if not (Path(book_dir) / EXECUTED / f"{n}.ipynb").is_file()]
    if missing:
        raise BookError("the TOC needs executed notebooks that do not exist: "
                        + ", ".join(f"{EXECUTED}/{n}.ipynb" for n in missing)
                        + " (run without --only first)")
    jb = shutil.which("jupyter-book") or shutil.which("jb")
    cmd = [jb] if jb else [sys.executable, "-m", "jupyter_book.cli.main"]
    cmd += ["build", str(book_dir), "--builder", "html"] + (["-W", "-n", "--keep-going"] if strict else [])
    _log("running " + " ".join(cmd[-6:]))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    warnings = [line for line in out.splitlines() if _WARNING_RE.search(line)]
    if proc.returncode != 0 or (strict and warnings):
        sys.stderr.write(out[-20000:])
    return proc.returncode, warnings


def build_book(profile: str = "smoke", tasks: list[str] | None = None, strict: bool = True,
               only: str | None = None, execute: bool = True, build: bool = True,
               seed: int | None = None, recompute: bool | None = None,
               book_dir: Path = BOOK_DIR, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """Execute the notebooks and build the book; return the path of ``index.html``.

    Raises :class:`BookError` on a notebook error, a missing executed notebook, or (strict)
    any warning of the Sphinx build. ``strict=False`` keeps going after notebook errors and
    builds without ``-W -n`` (errors are still reported).
    """
    book_dir, notebooks_dir = Path(book_dir), Path(notebooks_dir)
    failures = []
    if execute:
        failures = execute_notebooks(profile, tasks, only, notebooks_dir, book_dir / EXECUTED,
                                     seed=seed, recompute=recompute)
        if failures and strict:
            raise BookError("notebook execution failed:\n" + "\n".join(
                f"  notebooks/{n}.ipynb: {m} (partial output in book/{EXECUTED}/{n}.ipynb)" for n, m in failures))
    index = book_dir / "_build" / "html" / "index.html"
    if not build:
        return index
    bad = incomplete_notebooks(book_dir / EXECUTED, toc_notebooks(book_dir))
    if bad:
        detail = "\n".join(f"  {EXECUTED}/{n}.ipynb: " + "; ".join(p[:3]) + (" ..." if len(p) > 3 else "")
                           for n, p in bad.items())
        if strict:
            raise BookError("refusing to publish incomplete executed notebook(s) "
                            f"({', '.join(bad)}); rerun them (e.g. --only NAME):\n{detail}")
        _log(f"publishing incomplete notebook(s) (--no-strict):\n{detail}")
    write_api_page(book_dir)
    ensure_mathjax(book_dir)
    code, warnings = build_html(book_dir, strict)
    if code != 0 or (strict and warnings):
        detail = "\n".join("  " + w for w in warnings[:50]) or "  (see the output above)"
        raise BookError(f"jupyter-book build failed (exit code {code}, {len(warnings)} warning(s)):\n{detail}")
    if failures:
        _log("built, but these notebooks failed: " + ", ".join(n for n, _ in failures))
    _log(f"book built: {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    """``python -m stpcore book ...``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m stpcore book", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", choices=("smoke", "paper"),
                    help="run profile passed to every notebook (default: smoke)")
    ap.add_argument("--tasks", default=None,
                    help="comma-separated tasks passed to the notebooks (default: each notebook's own)")
    ap.add_argument("--only", default=None, metavar="NAME",
                    help="execute only notebooks/NAME.ipynb (the others keep their last executed copy)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--recompute", action="store_true", help="rerun stages even if records exist")
    ap.add_argument("--no-strict", dest="strict", action="store_false",
                    help="keep going after notebook errors; build without -W -n")
    ap.add_argument("--no-execute", dest="execute", action="store_false",
                    help="reuse book/executed/ as it is")
    ap.add_argument("--no-build", dest="build", action="store_false", help="only execute the notebooks")
    args = ap.parse_args(argv)
    from ..runs.validate import validate_notebook_params
    try:        # the notebooks' own check of --tasks/--seed, and --only, before any work starts
        given = validate_notebook_params(**{k: v for k, v in (("tasks", args.tasks), ("seed", args.seed))
                                            if v is not None})
        only = None if args.only is None else check_only(args.only)
    except (ValueError, BookError) as err:
        ap.error(str(err))
    try:
        index = build_book(args.profile, given.get("tasks"), strict=args.strict, only=only, execute=args.execute,
                           build=args.build, seed=args.seed, recompute=True if args.recompute else None,
                           book_dir=BOOK_DIR, notebooks_dir=NOTEBOOKS_DIR)
    except BookError as err:
        print(f"book: FAILED: {err}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
