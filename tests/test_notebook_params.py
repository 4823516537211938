"""The notebooks' papermill parameters and commands: every notebook checks its parameters right
after its ``parameters`` cell; every notebook page shows the command that reruns it
(:func:`stpcore.report.rerun.rerun_command`), and this module runs exactly that command; the
papermill lines the README shows run as written; the book's launch buttons open the notebooks.

The README's commands are read from between ``<!-- papermill-commands:start -->`` and
``<!-- papermill-commands:end -->`` and compared with :data:`README_COMMANDS`, built by
:func:`~stpcore.report.rerun.papermill_command`, so the README and this test cannot drift apart.
The runs use the paper profile, which only renders the committed records: they read a copy of
``data/results`` and must leave it (and the runs folder) untouched.
"""
from __future__ import annotations

import ast
import hashlib
import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from stpcore.report.book import EXECUTED, build_html, notebook_names, notebook_problems
from stpcore.report.rerun import OUT_NOTEBOOK, papermill_command, rerun_command
from stpcore.runs.validate import NOTEBOOK_PARAMS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
START, END = "<!-- papermill-commands:start -->", "<!-- papermill-commands:end -->"
NOTEBOOKS = notebook_names()

#: The papermill lines of the README's "Run the pipeline yourself" section (comments aside).
README_COMMANDS = [papermill_command("table_ii", tasks=["mrpc"], profile="paper"),
                   papermill_command("table_iii", profile="paper", recompute="no")]
#: Every command this module runs: each notebook page's, then the README's.
COMMANDS = list(dict.fromkeys([rerun_command(n) for n in NOTEBOOKS] + README_COMMANDS))
PARALLEL = 4            # papermill runs at a time (each starts a kernel that imports torch)
# Options of every test run: no progress bar, and a kernel start timeout above papermill's 60 s,
# which four kernels importing torch at once on 2 CPU cores have overrun.
RUN_OPTIONS = ("--no-progress-bar", "--start-timeout", "300")

#: Notebooks that must validate their parameters (baseline and tutorial are maintained elsewhere).
VALIDATED = ("table_i", "table_ii", "table_iii", "table_iv", "table_v", "fig_3", "fig_4", "fig_5",
             "findings", "benchmarks")

#: ``-p`` arguments that must stop a notebook, and the parameter the message must name.
BAD_PARAMS = [
    ("table_i", ["-p", "profile", "foo"], "profile"),
    ("fig_5", ["-p", "recompute", "maybe"], "recompute"),
    ("table_ii", ["-p", "tasks", '["nope"]', "-p", "profile", "paper"], "tasks"),
]


# ---------------------------------------------------------------------------- helpers
def readme_commands(text: str | None = None) -> list[str]:
    """The papermill lines between the README markers."""
    text = README.read_text() if text is None else text
    assert text.count(START) == 1 and text.count(END) == 1, "README papermill markers missing"
    block = text[text.index(START) + len(START):text.index(END)]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("papermill ")]


def command_argv(line: str, out: Path) -> list[str]:
    """A command line as argv (``python -m papermill``), its output path replaced by ``out``."""
    words = shlex.split(line, comments=True)
    assert words[0] == "papermill" and words.count(OUT_NOTEBOOK) == 1, line
    words = [str(out) if w == OUT_NOTEBOOK else w for w in words]
    return [sys.executable, "-m", "papermill", *words[1:], *RUN_OPTIONS]


def markdown_shown(path: Path) -> str:
    """The Markdown outputs of an executed notebook, joined."""
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def notebook_cells(name: str):
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    return nb, i


def defined_names(source: str) -> list[str]:
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


# ---------------------------------------------------------------------------- static checks
def test_readme_commands_match_the_test_data():
    assert [shlex.split(line, comments=True) for line in readme_commands()] == \
        [shlex.split(c) for c in README_COMMANDS]
    assert readme_commands()[0] == README_COMMANDS[0]                      # quoted the same way
    assert any("table_ii.ipynb" in c and "mrpc" in c for c in README_COMMANDS)


def test_papermill_command_quotes_values_for_the_shell():
    assert papermill_command("table_ii", tasks=["mrpc"], profile="paper", seed=1) == \
        """papermill notebooks/table_ii.ipynb out.ipynb -p tasks '["mrpc"]' -p profile paper -p seed 1"""
    assert rerun_command("fig_3") == "papermill notebooks/fig_3.ipynb out.ipynb -p profile paper"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_code_cell_shows_the_rerun_command_of_its_own_notebook(name):
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    calls = [n for n in ast.walk(ast.parse(first.source)) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "show_rerun_command"]
    assert [ast.literal_eval(a) for c in calls for a in c.args] == [name]
    assert "remove-input" in first.metadata.get("tags", [])   # the book shows the command only


def test_readme_commands_reads_between_markers():
    text = f"papermill a.ipynb out.ipynb\n{START}\n```bash\npapermill b.ipynb out.ipynb -p x 1\n```\n{END}\n"
    assert readme_commands(text) == ["papermill b.ipynb out.ipynb -p x 1"]
    assert command_argv("papermill b.ipynb out.ipynb -p t '[\"a\"]'  # c", Path("/x.ipynb"))[3:] == \
        ["b.ipynb", "/x.ipynb", "-p", "t", '["a"]', *RUN_OPTIONS]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_nbformat(name):
    """Every cell has a unique id (nbformat 4.5): a cell added without one makes every run warn
    'Cell is missing an id field', which future nbformat versions make an error."""
    raw = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())   # nbformat.read adds ids
    ids = [c.get("id") for c in raw["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), ids
    nbformat.validate(nbformat.from_dict(raw))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_reads_every_parameter(name):
    """papermill's own reader (``papermill --help-notebook``, and its warnings on every run) sees
    each assignment of the parameters cell; a comment it cannot parse (one holding '==', say)
    hides that parameter and prints 'Unable to parse line' on every run."""
    from papermill.translators import PythonTranslator
    nb, i = notebook_cells(name)
    seen = [prm.name for prm in PythonTranslator.inspect(nb.cells[i])]
    assert seen == defined_names(nb.cells[i].source)


@pytest.mark.parametrize("name", VALIDATED)
def test_cell_after_parameters_validates_every_parameter(name):
    nb, i = notebook_cells(name)
    params = [n for n in defined_names(nb.cells[i].source) if n in NOTEBOOK_PARAMS]
    nxt = nb.cells[i + 1]
    assert nxt.cell_type == "code" and "validate_notebook_params(" in nxt.source
    call = next(n for n in ast.walk(ast.parse(nxt.source)) if isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "validate_notebook_params")
    assert [k.arg for k in call.keywords] == params
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs committed"


def _run_check(name: str, injected: dict) -> dict:
    """The parameters cell, papermill's injected values, then the check cell's check block."""
    nb, i = notebook_cells(name)
    check = nb.cells[i + 1].source.split("# -- end of the check --", 1)[0]
    ns: dict = {}
    exec(nb.cells[i].source, ns)
    ns.update(injected)
    exec(check, ns)
    return ns


@pytest.mark.parametrize("name", [n for n in VALIDATED if n != "benchmarks"])
def test_check_cell_normalises_papermill_strings(name):
    ns = _run_check(name, {"profile": "paper", "recompute": "no", "tasks": '["mrpc"]', "seed": "1"})
    assert ns["recompute"] is False and ns["tasks"] == ["mrpc"] and ns["seed"] == 1
    assert _run_check(name, {"recompute": "YES", "tasks": "sst2,mrpc", "profile": "paper"})["tasks"] == ["sst2", "mrpc"]
    with pytest.raises(ValueError, match="`profile`"):
        _run_check(name, {"profile": "foo"})
    with pytest.raises(ValueError, match="`recompute`"):
        _run_check(name, {"recompute": "maybe"})
    with pytest.raises(ValueError, match="`task`"):
        _run_check(name, {"task": "cola"})
    if "smoke_seeds" in defined_names(notebook_cells(name)[0].cells[notebook_cells(name)[1]].source):
        with pytest.raises(ValueError, match="`smoke_seeds`"):
            _run_check(name, {"smoke_seeds": [-1]})
        assert _run_check(name, {"seeds": "[3, 4]"})["seeds"] == [3, 4]


def test_benchmarks_check_cell():
    assert _run_check("benchmarks", {"bench_dir": None, "profile": "smoke"})["bench_dir"] is None
    with pytest.raises(ValueError, match="`bench_dir`"):
        _run_check("benchmarks", {"bench_dir": ""})


# ---------------------------------------------------------------------------- papermill runs
@pytest.fixture(scope="module")
def papermill_runs(tmp_path_factory):
    """All papermill runs of this module, ``PARALLEL`` at a time (each costs a kernel start)."""
    tmp = tmp_path_factory.mktemp("papermill")
    results, runs = tmp / "results", tmp / "runs"
    shutil.copytree(REPO / "data" / "results", results)
    before = tree_digest(results)
    env = dict(os.environ, STP_RESULTS_DIR=str(results), STP_RUNS_DIR=str(runs), TQDM_DISABLE="1",
               MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
                   [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    jobs = {}
    for k, line in enumerate(COMMANDS):
        out = tmp / f"run{k}.ipynb"
        jobs[line] = (out, command_argv(line, out))
    for name, args, _ in BAD_PARAMS:
        out = tmp / f"bad_{name}.ipynb"
        jobs[("bad", name)] = (out, [sys.executable, "-m", "papermill", f"notebooks/{name}.ipynb", str(out),
                                     *args, *RUN_OPTIONS])

    def run(key):
        out, argv = jobs[key]
        proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=600)
        return key, (proc.returncode, proc.stdout, out)
    with ThreadPoolExecutor(PARALLEL) as pool:
        done = dict(pool.map(run, jobs))
    return {"runs": done, "results": results, "before": before, "runs_dir": runs}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_rerun_command_runs_and_is_the_one_shown(papermill_runs, name):
    rc, text, out = papermill_runs["runs"][rerun_command(name)]
    assert rc == 0, text[-4000:]
    assert notebook_problems(out) == []
    assert f"`{rerun_command(name)}`" in markdown_shown(out)


@pytest.mark.parametrize("line", README_COMMANDS)
def test_readme_papermill_command_runs(papermill_runs, line):
    rc, text, out = papermill_runs["runs"][line]
    assert rc == 0, text[-4000:]
    assert notebook_problems(out) == []
    nb = nbformat.read(out, as_version=4)
    shown = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Profile 'paper'" in shown


def test_paper_commands_compute_nothing(papermill_runs):
    """The paper profile (with or without ``-p recompute no``) only reads records: nothing
    written."""
    for line in COMMANDS:
        assert papermill_runs["runs"][line][0] == 0
    assert tree_digest(papermill_runs["results"]) == papermill_runs["before"]
    runs = papermill_runs["runs_dir"]
    assert not runs.exists() or not any(runs.rglob("*"))


@pytest.mark.parametrize("name,args,param", BAD_PARAMS)
def test_bad_parameter_fails_the_run_naming_it(papermill_runs, name, args, param):
    rc, text, out = papermill_runs["runs"][("bad", name)]
    assert rc != 0
    assert re.search(rf"ValueError: `{param}` must be", text), text[-4000:]
    assert notebook_problems(out)            # and the book would refuse to publish it


# ---------------------------------------------------------------------------- the book's page
def test_book_page_launches_the_source_notebook_and_shows_its_command(papermill_runs, tmp_path):
    """A one-page book with the real ``book/_config.yml`` and an executed notebook: its Binder
    and Colab buttons open ``notebooks/NAME.ipynb`` of the configured repository (not the build
    output ``book/executed/``), and it shows its rerun command but not the code showing it."""
    pytest.importorskip("jupyter_book")
    import yaml
    name, book = "table_i", tmp_path / "book"
    (book / "executed").mkdir(parents=True)
    shutil.copy(REPO / "book" / "_config.yml", book / "_config.yml")
    (book / "_toc.yml").write_text(f"format: jb-book\nroot: intro\nchapters:\n  - file: executed/{name}\n")
    (book / "intro.md").write_text("# Intro\n")
    shutil.copy(papermill_runs["runs"][rerun_command(name)][2], book / "executed" / f"{name}.ipynb")
    code, _ = build_html(book, strict=False)
    assert code == 0
    page = (book / "_build" / "html" / "executed" / f"{name}.html").read_text()
    repo = yaml.safe_load((REPO / "book" / "_config.yml").read_text())["repository"]
    slug, branch = repo["url"].split("github.com/")[1], repo["branch"]
    assert f'href="https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=tree/notebooks/{name}.ipynb"' in page
    assert f'href="https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{name}.ipynb"' in page
    assert f"{repo['path_to_book']}/{EXECUTED}/{name}.ipynb" not in page
    text = html.unescape(re.sub(r"<[^>]+>", "", page))          # the words, without their markup
    assert rerun_command(name) in text and "show_rerun_command" not in text
