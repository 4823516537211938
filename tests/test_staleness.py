"""Stale records are shown as such, and half-run executed notebooks are not published.

``notes.record_status``: "current code" for a record made by the library as imported, else the
commit that made it, plus which upstream records were rerun since. ``book``: an executed
notebook papermill did not run to the end stops ``python -m stpcore book --no-execute``.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from stpcore.report import book, notes
from stpcore.runs.records import COMPUTE_SHA256, SOURCE_SHA256

OLD_SHA = "0" * 64
COMMIT = "abcdef0123456789abcdef0123456789abcdef01"


def make_record(task="sst2", stage="two_stage", source=SOURCE_SHA256, commit=COMMIT,
                finished="2026-01-02T00:00:00+00:00", upstream=None, profile="paper"):
    prov = {"git_commit": commit, "git_dirty": False, "source_sha256": source, "device": "cpu",
            **({"compute_sha256": COMPUTE_SHA256} if source == SOURCE_SHA256 else {}),
            "seed": 0, "wall_time_s": 1.0, "finished": finished}
    if upstream is not None:
        prov["upstream"] = upstream
    return {"schema": 1, "profile": profile, "task": task, "stage": stage, "config": {},
            "metrics": {}, "provenance": prov}


def write(root: Path, rec: dict) -> Path:
    path = root / rec["profile"] / rec["task"] / f"{rec['stage']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


# ---------------------------------------------------------------------------- record_status
def test_current_code():
    assert notes.record_status(make_record()) == "current code"
    report_only = make_record(source="x" * 64)          # another report/, the same computing code
    report_only["provenance"]["compute_sha256"] = COMPUTE_SHA256
    assert notes.record_status(report_only) == "current code"
    older = make_record(source=SOURCE_SHA256)           # a record older than compute_sha256
    del older["provenance"]["compute_sha256"]
    assert notes.record_status(older) == "current code"


def test_older_code_names_the_commit():
    assert notes.record_status(make_record(source=OLD_SHA)) == "made by commit abcdef0 (older code)"
    no_digest = make_record(source=None)
    assert notes.record_status(no_digest) == "made by commit abcdef0 (older code)"
    assert notes.record_status(make_record(source=OLD_SHA, commit=None)) == \
        "made by unknown commit (older code)"


def test_missing_record_is_not_run():
    assert notes.record_status(None) == notes.NOT_RUN


def test_upstream_rerun_since_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("STP_RESULTS_DIR", str(tmp_path / "results"))
    base = make_record(stage="baseline", finished="2026-01-01T00:00:00+00:00")
    path = write(tmp_path / "results", base)
    # the run wrote the upstream path of another machine: only profile/task/stage.json is used
    entry = {"record": "/elsewhere/results/paper/sst2/baseline.json",
             "finished": "2026-01-01T00:00:00+00:00", "checkpoint_sha256": "c" * 64}
    rec = make_record(upstream={"baseline": entry})
    assert notes.record_status(rec) == "current code"
    base["provenance"]["finished"] = "2026-03-01T00:00:00+00:00"        # baseline rerun
    path.write_text(json.dumps(base))
    assert notes.record_status(rec) == "current code; upstream baseline rerun since"
    old = make_record(source=OLD_SHA, upstream={"baseline": entry})
    assert notes.record_status(old) == "made by commit abcdef0 (older code); upstream baseline rerun since"
    path.unlink()
    assert notes.record_status(rec) == "current code; upstream baseline missing"


def test_upstream_given_explicitly():
    entry = {"record": "r.json", "finished": "2026-01-01T00:00:00+00:00"}
    rec = make_record(upstream={"baseline": entry, "spiking_fp": dict(entry)})
    same = make_record(stage="baseline", finished="2026-01-01T00:00:00+00:00")
    newer = make_record(stage="spiking_fp", finished="2026-05-01T00:00:00+00:00")
    assert notes.record_status(rec, upstream={"baseline": same, "spiking_fp": newer}) == \
        "current code; upstream spiking_fp rerun since"
    assert notes.record_status(rec, upstream=lambda stage, e: same) == "current code"


def test_provenance_table_has_status_column(tmp_path, monkeypatch):
    monkeypatch.setenv("STP_RESULTS_DIR", str(tmp_path))
    records = {("sst2", "baseline"): make_record(stage="baseline"),
               ("sst2", "two_stage"): make_record(source=OLD_SHA),
               ("mrpc", "baseline"): None}
    df = notes.provenance_table(records)
    assert "status" in df.columns
    assert df.loc[("sst2", "baseline"), "status"] == "current code"
    assert df.loc[("sst2", "two_stage"), "status"] == "made by commit abcdef0 (older code)"
    assert df.loc[("mrpc", "baseline"), "status"] == notes.NOT_RUN


def test_provenance_table_of_a_list_keeps_every_seed(tmp_path, monkeypatch):
    """Given a list (several seeds, or a current and an archived record of one stage), every
    record gets its row, in seed order; a mapping keeps one row per (task, stage)."""
    monkeypatch.setenv("STP_RESULTS_DIR", str(tmp_path))
    recs = [make_record(stage="spatial_retrain") for _ in range(3)]
    for seed, rec in zip((2, 0, 1), recs):
        rec["provenance"]["seed"] = seed
    df = notes.provenance_table([recs[0], None, recs[1], recs[2]])
    assert len(df) == 3 and list(df["seed"]) == [0, 1, 2]
    assert len(notes.provenance_table({("sst2", "spatial_retrain"): recs[0]})) == 1


# ---------------------------------------------------------------------------- executed notebooks
def executed_notebook(path: Path, fail_at: int | None = None, finished: bool = True) -> Path:
    """A notebook shaped as papermill leaves it: three code cells, the one at ``fail_at`` raised
    (the later ones never ran)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"start_time": "2026-01-01T00:00:00", "exception": None,
                                "end_time": "2026-01-01T00:01:00" if finished else None}
    for i in range(3):
        cell = nbformat.v4.new_code_cell(f"x{i} = {i}\nprint(x{i})")
        cell.metadata["papermill"] = {"status": "completed", "exception": False}
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n")]
        if fail_at is not None and i == fail_at:
            cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom",
                                                   traceback=["ValueError: boom"])]
            cell.metadata["papermill"] = {"status": "failed", "exception": True}
            nb.metadata["papermill"]["exception"] = True
        elif fail_at is not None and i > fail_at:
            cell.outputs, cell.execution_count = [], None
            cell.metadata["papermill"] = {"status": "pending", "exception": None}
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_complete_notebook_has_no_problems(tmp_path):
    assert book.notebook_problems(executed_notebook(tmp_path / "ok.ipynb")) == []


def test_failed_notebook_problems(tmp_path):
    problems = book.notebook_problems(executed_notebook(tmp_path / "bad.ipynb", fail_at=1))
    text = "\n".join(problems)
    assert "exception" in text and "cell 1 raised ValueError: boom" in text
    assert "cell 2 has papermill status 'pending'" in text


def test_interrupted_and_foreign_notebooks(tmp_path):
    assert any("did not conclude" in p for p in
               book.notebook_problems(executed_notebook(tmp_path / "a.ipynb", finished=False)))
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nbformat.write(plain, tmp_path / "plain.ipynb")
    assert book.notebook_problems(tmp_path / "plain.ipynb") == [
        "not executed by papermill (no metadata.papermill)"]
    # a cell that never ran, although nothing recorded a failure
    nb = nbformat.read(executed_notebook(tmp_path / "b.ipynb"), as_version=4)
    nb.cells[2].execution_count, nb.cells[2].outputs = None, []
    nbformat.write(nb, tmp_path / "b.ipynb")
    assert book.notebook_problems(tmp_path / "b.ipynb") == [
        "cell 2 was not executed (no outputs or execution count)"]


def fake_book(tmp_path: Path) -> Path:
    bdir = tmp_path / "book"
    (bdir / book.EXECUTED).mkdir(parents=True)
    (bdir / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n"
                                   f"- file: {book.EXECUTED}/table_ii\n- file: {book.EXECUTED}/fig_5\n")
    executed_notebook(bdir / book.EXECUTED / "table_ii.ipynb")
    executed_notebook(bdir / book.EXECUTED / "fig_5.ipynb", fail_at=0)
    return bdir


def test_no_execute_refuses_incomplete_notebook(tmp_path, monkeypatch):
    bdir = fake_book(tmp_path)
    assert list(book.incomplete_notebooks(bdir / book.EXECUTED)) == ["fig_5"]
    called = []
    monkeypatch.setattr(book, "build_html", lambda *a, **k: called.append(1) or (0, []))
    monkeypatch.setattr(book, "write_api_page", lambda *a, **k: {})
    monkeypatch.setattr(book, "ensure_mathjax", lambda *a, **k: None)
    with pytest.raises(book.BookError, match="fig_5"):
        book.build_book(execute=False, book_dir=bdir)
    assert not called
    # the CLI: non-zero exit, naming the notebook
    monkeypatch.setattr(book, "BOOK_DIR", bdir)
    assert book.main(["--no-execute"]) == 1
    # once it is rerun to the end, the book builds
    executed_notebook(bdir / book.EXECUTED / "fig_5.ipynb")
    book.build_book(execute=False, book_dir=bdir)
    assert called


def test_no_execute_cli_message(tmp_path, monkeypatch, capsys):
    bdir = fake_book(tmp_path)
    monkeypatch.setattr(book, "BOOK_DIR", bdir)
    monkeypatch.setattr(book, "write_api_page", lambda *a, **k: pytest.fail("must not build"))
    assert book.main(["--no-execute"]) == 1
    err = capsys.readouterr().err
    assert "refusing to publish incomplete executed notebook(s) (fig_5)" in err
    assert "executed/fig_5.ipynb: " in err and "table_ii.ipynb" not in err
