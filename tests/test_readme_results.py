"""tools/readme_results.py: the README's two results tables, pasted from the studies' outputs and
checked against them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "readme_results", Path(__file__).resolve().parent.parent / "tools" / "readme_results.py")
assert _SPEC is not None and _SPEC.loader is not None
readme_results = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(readme_results)


def _study(folder: Path, table: str, key: str) -> Path:
    folder.mkdir()
    (folder / "results.md").write_text(table)
    (folder / "key.txt").write_text(key + "\n")
    return folder


def test_the_tables_are_pasted_then_checked(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results: begin -->\nold\n<!-- results: end -->\nmiddle\n"
                      "<!-- modern: begin -->\n<!-- modern: end -->\nend\n")
    paper = _study(tmp_path / "paper", "| paper |\n", "k1")
    modern = _study(tmp_path / "modern", "| modern |\n", "k1")
    args = [str(paper), str(modern), "--readme", str(readme)]
    assert readme_results.main([*args, "--check"]) == 1
    assert "the paper and modern study's table(s) are not what the runs give" in capsys.readouterr().err
    assert readme_results.main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results: begin -->\n| paper |\n\n(written by `python -m "
                           "lenet1 study paper --out DIR` from the runs of code key `k1`)")
    assert "| modern |\n\n(written by `python -m lenet1 study modern --out DIR`" in text
    assert text.endswith("<!-- modern: end -->\nend\n") and "\nmiddle\n" in text
    assert readme_results.main([*args, "--check"]) == 0
    # Another code key's runs: the modern table no longer matches.
    (modern / "key.txt").write_text("k2\n")
    assert readme_results.main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert ": the modern study's table(s) are not what the runs give" in err


def test_markers_missing_or_repeated_are_an_error(tmp_path, capsys):
    paper = _study(tmp_path / "paper", "| paper |\n", "k")
    modern = _study(tmp_path / "modern", "| modern |\n", "k")
    readme = tmp_path / "README.md"
    for text in ("<!-- results: begin -->\n<!-- results: end -->\n",  # no modern markers
                 "<!-- results: begin --><!-- results: end --><!-- modern: begin -->"
                 "<!-- modern: end --><!-- modern: end -->",  # one end too many
                 "<!-- results: end --><!-- results: begin --><!-- modern: begin -->"
                 "<!-- modern: end -->"):  # the wrong order
        readme.write_text(text)
        assert readme_results.main([str(paper), str(modern), "--readme", str(readme)]) == 2
        assert "must appear once each, in that order" in capsys.readouterr().err
        assert readme.read_text() == text  # left as it was


def test_the_projects_readme_has_both_tables():
    text = readme_results.README.read_text()
    for name in readme_results.TABLES:
        begin, end = readme_results.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1
        assert text.index(begin) < text.index(end)
