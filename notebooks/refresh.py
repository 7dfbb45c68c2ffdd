"""Regenerate each chapter's .ipynb from its .md (the source of truth), ready to commit.

    LENET1_DATA=... python notebooks/refresh.py [notebooks/01_data.md ...]

For every chapter: write the .ipynb from the .md (jupytext, inputs and metadata), execute it in
quick mode (``LENET1_QUICK=1``) with nbclient, and keep only the outputs of cells tagged
``nbval-check-output``: those are what ``pytest --nbval-lax`` compares, and they are the same in
quick and full mode. Other outputs (figures, timings, quick-mode training) are dropped, so the
committed notebooks stay small and never show quick-mode numbers as results; the book shows the
full-mode outputs. Finally the pair is re-synced so both files carry the same inputs.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

CHECKED = "nbval-check-output"
HERE = Path(__file__).resolve().parent


def refresh(markdown: Path, timeout: int = 600) -> None:
    notebook = jupytext.read(markdown)
    notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,md:myst"
    os.environ["LENET1_QUICK"] = "1"
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(markdown.parent)}})
    client.execute()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if CHECKED not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    # Cell ids from the cells' text (jupytext draws random ones), so that a refresh changes only
    # the cells whose text changed.
    seen: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        cell_id = hashlib.sha256(cell.source.encode()).hexdigest()[:8]
        cell.id = cell_id if cell_id not in seen else f"{cell_id}-{index}"
        seen.add(cell.id)
    target = markdown.with_suffix(".ipynb")
    nbformat.write(notebook, target)
    # Write the .md back from the same notebook object so that the pair is in sync.
    jupytext.write(notebook, markdown, fmt="md:myst")
    print(f"{markdown.name} -> {target.name}: "
          f"{sum(CHECKED in c.metadata.get('tags', []) for c in notebook.cells)} checked cells")


def main(paths: list[str]) -> None:
    chapters = [Path(p).resolve() for p in paths] or sorted(HERE.glob("[0-9][0-9]_*.md"))
    for chapter in chapters:
        refresh(chapter)


if __name__ == "__main__":
    main(sys.argv[1:])
