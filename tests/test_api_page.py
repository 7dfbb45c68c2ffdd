"""The book's API page (book/api.md), built from the package's docstrings on its own.

The strict book build (``-W -n``) fails on a docstring whose cross-reference names nothing the
page documents, such as a private function; it finds out only after the studies have trained.
This builds that one page, with the book's autodoc settings and the same strictness, in seconds.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

sphinx_application = pytest.importorskip("sphinx.application")
pytest.importorskip("myst_parser")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_page_builds_without_a_warning(tmp_path: Path) -> None:
    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    settings = book["sphinx"]["config"]
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.md").write_text((ROOT / "book" / "api.md").read_text(encoding="utf-8"),
                                     encoding="utf-8")
    overrides = {key: value for key, value in settings.items()
                 if key.startswith(("autodoc_", "napoleon_"))}
    overrides.update(
        extensions=["myst_parser", *book["sphinx"]["extra_extensions"]],
        myst_enable_extensions=book["parse"]["myst_enable_extensions"],
        nitpicky=True,  # the book is built with -n
        nitpick_ignore=[tuple(entry) for entry in settings.get("nitpick_ignore", [])],
    )
    warnings = io.StringIO()
    app = sphinx_application.Sphinx(
        str(source), None, str(tmp_path / "html"), str(tmp_path / "doctrees"), "html",
        confoverrides=overrides, status=None, warning=warnings, freshenv=True)
    app.build()
    assert app.statuscode == 0
    assert warnings.getvalue() == ""
