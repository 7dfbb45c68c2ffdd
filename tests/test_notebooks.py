"""The book's sources: paired chapters in sync, the table of contents, citations, and the plotting
functions the chapters call. Executing the chapters is nbval's job (``make test``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
yaml = pytest.importorskip("yaml")

from .conftest import random_digits  # noqa: E402  (after the optional imports)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md"))
CHECKED = "nbval-check-output"
# Cell metadata that may differ between the two files of a pair without meaning anything.
VOLATILE = {"execution", "ExecuteTime", "collapsed", "scrolled", "jp-MarkdownHeadingCollapsed"}


def cells_of(notebook: nbformat.NotebookNode) -> list[tuple[str, str, dict[str, object]]]:
    return [(cell.cell_type, cell.source.strip(),
             {k: v for k, v in cell.metadata.items() if k not in VOLATILE})
            for cell in notebook.cells]


def test_there_are_chapters() -> None:
    assert {"01_data", "02_architecture", "03_training", "06_results"} <= {
        c.stem for c in CHAPTERS}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_pair_exists_and_is_in_sync(chapter: Path) -> None:
    twin = chapter.with_suffix(".ipynb")
    assert twin.is_file(), f"{twin.name} is missing: run `make notebooks`"
    text = jupytext.read(chapter)
    notebook = nbformat.read(twin, as_version=4)
    assert cells_of(text) == cells_of(notebook), (
        f"{chapter.name} and {twin.name} differ: edit the .md, then run `make notebooks`")
    for metadata in (text.metadata, notebook.metadata):
        assert metadata["jupytext"]["formats"] == "ipynb,md:myst"
        assert metadata["kernelspec"]["name"] == "python3"


def test_no_stray_notebooks() -> None:
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        assert notebook.with_suffix(".md").is_file(), f"{notebook.name} has no .md twin"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_committed_outputs_are_only_the_checked_ones(chapter: Path) -> None:
    """nbval compares the checked cells with the committed outputs, so those must be there;
    every other output is left out (quick-mode numbers are not results)."""
    if not chapter.with_suffix(".ipynb").is_file():
        pytest.skip("no .ipynb yet (test_pair_exists_and_is_in_sync fails for it)")
    notebook = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    checked = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if CHECKED in cell.metadata.get("tags", []):
            checked += 1
            assert cell.outputs, f"a checked cell has no committed output:\n{cell.source[:200]}"
            assert all(o.output_type == "stream" and o.name == "stdout" for o in cell.outputs)
        else:
            assert not cell.outputs, f"an unchecked cell has outputs:\n{cell.source[:200]}"
    assert checked >= 1


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_conventions(chapter: Path) -> None:
    notebook = jupytext.read(chapter)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert 'QUICK = os.environ.get("LENET1_QUICK") == "1"' in code
    assert "import lenet1" in code or "from lenet1" in code
    # The package holds the model and the training; a chapter only calls it.
    for forbidden in (r"class \w+\(.*Module\)", r"\.backward\(", r"torch\.optim",
                      r"def train"):
        assert not re.search(forbidden, code), f"{chapter.name} defines {forbidden!r}"
    titles = [line for c in notebook.cells if c.cell_type == "markdown"
              for line in c.source.splitlines() if line.startswith("# ")]
    assert len(titles) == 1, f"{chapter.name} needs exactly one title, has {titles}"


def test_table_of_contents_lists_every_page() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [chapter["file"] for part in toc["parts"]
                             for chapter in part["chapters"]]
    for name in files:
        assert (ROOT / f"{name}.md").is_file(), name
    assert [f for f in files if f.startswith("notebooks/")] == [
        f"notebooks/{c.stem}" for c in CHAPTERS]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "notebooks/*.ipynb" in config["exclude_patterns"]  # one source per page
    assert config["only_build_toc_files"] is True
    assert config["execute"]["allow_errors"] is False


def test_every_citation_is_in_the_bibliography() -> None:
    keys = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))
    cited: set[str] = set()
    for page in [*CHAPTERS, *(ROOT / "book").glob("*.md")]:
        for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", page.read_text()):
            cited.update(key.strip() for key in group.split(","))
    assert cited <= keys, f"unknown keys: {sorted(cited - keys)}"
    assert keys <= cited, f"never cited: {sorted(keys - cited)}"


# --- the plotting functions, on made-up data (Agg backend, nothing shown) --------------------


def test_plots_draw() -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("seaborn")
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    from lenet1.accounting import architecture
    from lenet1.nets import LeNet1
    from lenet1.rejection import rejection_curve
    from lenet1.report import plots
    from lenet1.train.online import History, Metrics, PassRecord

    plots.style()
    images, labels = random_digits(30, 0).images, random_digits(30, 0).labels
    model = LeNet1()
    with torch.no_grad():
        states = {name: state[0] for name, state in model.layers(images[:1]).items()}
        outputs = model(images)
    history = History([PassRecord(i, Metrics(1 / (i + 1), 0.5 / (i + 1), 15 // (i + 1), 30),
                                  Metrics(1.2 / (i + 1), 0.6 / (i + 1), 18 // (i + 1), 30))
                       for i in range(4)])
    figures = [
        plots.digit_grid(images, titles=[str(int(v)) for v in labels], ncols=7),
        plots.class_distribution([3] * 10, [1] * 10),
        plots.pixel_histogram({"a": images, "b": images[:5]}),
        plots.connection_table(model.table),
        plots.receptive_fields(images[0], (3, 4), (1, 2)),
        plots.learning_curves(history, paper={"train": (2.5e-3, 0.0014)}),
        plots.kernels(model.h1_weight),
        plots.feature_maps(images[0], states),
        plots.confusion_matrix(labels, outputs.argmax(dim=1)),
        plots.rejection_curves({"x": rejection_curve(outputs, labels)}, paper={"p": 0.121},
                               marks={"x": 0.2}),
        plots.network_diagram(architecture(model), model.table),
    ]
    for figure in figures:
        assert isinstance(figure, Figure)
        figure.savefig(__import__("io").BytesIO(), format="png")
    with pytest.raises(ValueError):
        plots.digit_grid(np.zeros((0, 16, 16)))
