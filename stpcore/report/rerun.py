"""How a notebook page of the book is rerun: the papermill command it shows, and where its
launch buttons point.

- :func:`rerun_command` is the one source of a notebook's command: the page shows it
  (:func:`show_rerun_command`, called in the notebook's first code cell), and
  ``tests/test_notebook_params.py`` runs it, together with the README's papermill lines, which it
  checks against :func:`papermill_command`.
- As a Sphinx extension (``book/_config.yml``), the module points the Binder and Colab launch
  buttons of an executed notebook's page (``book/executed/NAME``) at the notebook's source,
  ``notebooks/NAME.ipynb`` (:func:`point_launch_buttons`): ``book/executed/`` is a build
  output, not in the repository.
"""
from __future__ import annotations

import json
import shlex

from .book import EXECUTED, NOTEBOOKS_DIR, REPO_ROOT

#: The output notebook of a shown command (any path will do).
OUT_NOTEBOOK = "out.ipynb"
#: The notebooks' folder, relative to the repository root.
NOTEBOOKS = NOTEBOOKS_DIR.relative_to(REPO_ROOT).as_posix()


def papermill_command(name: str, **params) -> str:
    """``papermill notebooks/NAME.ipynb out.ipynb -p KEY VALUE ...`` as a shell line (strings
    as they are, other values as JSON, quoted where the shell needs it)."""
    words = ["papermill", f"{NOTEBOOKS}/{name}.ipynb", OUT_NOTEBOOK]
    for key, value in params.items():
        words += ["-p", key, value if isinstance(value, str) else json.dumps(value)]
    return shlex.join(words)


def rerun_command(name: str) -> str:
    """The command that reruns notebook ``name`` as the book publishes it: the paper profile,
    which renders the committed records and computes nothing."""
    return papermill_command(name, profile="paper")


def show_rerun_command(name: str) -> None:
    """Display (Markdown) the command that reruns notebook ``name``."""
    from IPython.display import Markdown, display
    display(Markdown(f"Rerun this page: `{rerun_command(name)}` (renders the committed records; "
                     "`-p profile smoke` instead recomputes every stage at smoke size on CPU)."))


def point_launch_buttons(app, pagename: str, templatename, context: dict, doctree) -> None:
    """Sphinx ``html-page-context`` handler, after sphinx-book-theme's: the launch buttons of
    ``executed/NAME`` open ``notebooks/NAME.ipynb`` instead of the build output."""
    if not pagename.startswith(f"{EXECUTED}/"):
        return
    book = app.config.html_theme_options.get("path_to_docs", "").strip("/")
    built = f"{book}/{pagename}.ipynb".lstrip("/")
    source = f"{NOTEBOOKS}/{pagename.split('/', 1)[1]}.ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group["buttons"]:
                if "url" in button:
                    button["url"] = button["url"].replace(built, source)


def setup(app) -> dict:
    """Sphinx extension entry point (see the module doc)."""
    app.connect("html-page-context", point_launch_buttons, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
