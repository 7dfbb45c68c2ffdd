"""The one cache of trained things: online runs, mini-batch runs, curvature traces.

Every entry is a folder ``<runs root>/<kind>/<label>-<key>/`` holding ``key.json`` (everything
that decided its numbers: the kind, the specification, and the code key) and the files its
kind saves (``history.json``, ``weights.safetensors``...). ``<key>`` is a hash of ``key.json``,
so an entry is found by recomputing it, and a change to the specification or to the code that
computes numbers trains afresh. An entry is written beside its place and moved there whole
(:func:`store`), so an interrupted one is never mistaken for a finished one.

The *code key* (:func:`code_key`) hashes the modules that decide numbers (the data loader, the
networks, the training loops, the engine and the run specifications), read as syntax trees
without their docstrings: editing a table, a figure, the CLI or a docstring reuses every run.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent
# What a trained thing's numbers depend on (paths under the package; folders: every module).
NUMERIC_SOURCES = ("data.py", "augment.py", "nets.py", "threads.py", "train", "engine",
                   "experiments/runs.py", "experiments/recipes.py")
KEY_FILE = "key.json"


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_files(package: Path = PACKAGE) -> list[Path]:
    """The modules :func:`code_key` reads, in a fixed order."""
    files: list[Path] = []
    for name in NUMERIC_SOURCES:
        path = package / name
        files += sorted(path.glob("*.py")) if path.is_dir() else [path]
    return files


def code_key(package: Path | None = None) -> str:
    """16 hex digits naming the number-deciding code: comments, docstrings and layout aside.
    The installed package's key is read once per process (a study keeps one key even if the
    source is edited while it trains); another folder's is read afresh."""
    return _installed_code_key() if package is None else _hash_sources(package)


@lru_cache(maxsize=1)
def _installed_code_key() -> str:
    return _hash_sources(PACKAGE)


def _hash_sources(package: Path) -> str:
    digest = hashlib.sha256()
    for path in source_files(package):
        tree = _without_docstrings(ast.parse(path.read_text(), str(path)))
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(ast.dump(tree, annotate_fields=False).encode())
    return digest.hexdigest()[:16]


def runs_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where entries live: ``root``, else ``$LENET1_RUNS``, else ``runs/`` of the workspace
    (:func:`lenet1.data.workspace`)."""
    from ..data import workspace

    if root is not None:
        return Path(root)
    return Path(os.environ.get("LENET1_RUNS") or workspace() / "runs")


def key_of(kind: str, spec: Mapping[str, Any], code: str | None = None) -> dict[str, Any]:
    """What ``key.json`` holds for an entry of ``kind`` made from ``spec``."""
    return {"kind": kind, "spec": dict(spec), "code": code or code_key()}


def folder_of(kind: str, label: str, spec: Mapping[str, Any],
              root: str | os.PathLike[str] | None = None, code: str | None = None) -> Path:
    """The folder of the entry ``(kind, spec)``, whether or not it exists yet."""
    key = json.dumps(key_of(kind, spec, code), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return runs_root(root) / kind / f"{label}-{digest}"


def is_complete(folder: Path, files: tuple[str, ...]) -> bool:
    return (folder / KEY_FILE).is_file() and all((folder / name).is_file() for name in files)


def read_key(folder: Path) -> dict[str, Any]:
    return json.loads((folder / KEY_FILE).read_text())  # type: ignore[no-any-return]


def store(folder: Path, kind: str, spec: Mapping[str, Any],
          write: Callable[[Path], None], code: str | None = None) -> Path:
    """Make the entry ``folder`` whole: ``write`` fills a fresh folder beside it, ``key.json``
    is added, and the folder is moved into place (replacing an older one)."""
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    write(partial)
    (partial / KEY_FILE).write_text(json.dumps(key_of(kind, spec, code), indent=1,
                                               sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    partial.replace(folder)
    return folder


def entries(root: str | os.PathLike[str] | None = None, code: str | None = None) -> list[Path]:
    """The complete entries under ``root`` made by the code ``code`` (default: this code), as
    paths relative to ``root``, in order: what the book used, for the runs archive."""
    base, code = runs_root(root), code or code_key()
    found = []
    for key_file in sorted(base.glob(f"*/*/{KEY_FILE}")):
        folder = key_file.parent
        if folder.name.endswith(".partial"):
            continue
        try:
            made_by = read_key(folder).get("code")
        except (OSError, ValueError):
            continue  # an unreadable key is no entry of this code
        if made_by == code:
            found.append(folder.relative_to(base))
    return found


def write_json(path: Path, value: Any, indent: int | None = 1) -> None:
    path.write_text(json.dumps(value, indent=indent) + "\n")
