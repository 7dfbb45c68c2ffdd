"""The one cache of trained things: online runs, modern-study stacks, curvature traces.

Every entry is a folder ``<runs root>/<kind>/<label>-<key>/`` holding ``key.json`` (everything
that decided its numbers: the kind, the specification, and the code key) and the files its
kind saves (``history.json``, ``weights.safetensors``..., possibly in sub-folders, one per
network trained together). ``<key>`` is a hash of ``key.json``, so an entry is found by
recomputing it, and a change to the specification or to the code that computes numbers trains
afresh. An entry is written into a folder of its own beside its place (a unique name per
writer) and moved there whole (:func:`store`), so an interrupted or concurrent write is never
mistaken for a finished entry.

The *code key* (:func:`code_key`) hashes the modules that decide numbers
(:data:`NUMERIC_SOURCES`: the data loader, the networks, the training loops, the kernels and
the run specifications; ``tests/test_architecture.py`` checks that they import nothing else of
the package), read as a stream of tokens without comments, docstrings, blank lines or layout.
A token stream, unlike a syntax tree's dump, reads the same on every Python from 3.10 on, so
the same code has the same key whichever Python computes it. Editing a table, a figure, the
command line, progress text, scheduling or a docstring reuses every run.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import shutil
import token
import tokenize
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent
#: The modules a trained thing's numbers depend on, as paths under the package (exactly the
#: modules that define runs and train them, and everything of the package they import).
NUMERIC_SOURCES = ("data.py", "augment.py", "nets.py", "threads.py",
                   "engine/intrinsics.py", "engine/single.py", "engine/lanes.py",
                   "engine/marshal.py", "engine/fast.py",
                   "train/online.py", "train/sdlm.py", "train/minibatch.py", "train/stacked.py",
                   "train/distill.py",
                   "experiments/runs.py", "experiments/recipes.py")
KEY_FILE = "key.json"
PARTIAL = ".partial-"  # a folder being written: <name>.partial-<writer>


def _docstring_spans(source: str) -> set[tuple[int, int]]:
    """Where the docstrings start (line, column): the first statement of a module, class or
    function when it is a string."""
    spans = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                spans.add((body[0].lineno, body[0].col_offset))
    return spans


# Tokens that carry no meaning for the code: layout, comments, the encoding marker.
_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
# Python 3.12 splits an f-string into parts (PEP 701); earlier Pythons give one STRING token.
_FSTRING_START = getattr(token, "FSTRING_START", None)
_FSTRING_END = getattr(token, "FSTRING_END", None)


def source_tokens(source: str) -> list[str]:
    """The code of ``source`` as a list of tokens, the same on Python 3.10 to 3.13: comments,
    blank lines, docstrings and the indentation's width left out (its structure kept as
    INDENT and DEDENT), each f-string one token, as Python 3.10 and 3.11 read it."""
    lines = source.splitlines(keepends=True)
    docstrings = _docstring_spans(source)
    words: list[str] = []
    depth, fstring_start = 0, (0, 0)
    skip_newline = False
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == _FSTRING_START:
            if depth == 0:
                fstring_start = tok.start
            depth += 1
            continue
        if depth:
            if tok.type == _FSTRING_END:
                depth -= 1
                if depth == 0:
                    words.append("STRING " + _text(lines, fstring_start, tok.end))
            continue
        if tok.type in _SKIPPED:
            continue
        if tok.type == tokenize.STRING and tok.start in docstrings:
            skip_newline = True  # the docstring's statement ends with it
            continue
        if tok.type == tokenize.NEWLINE:
            if not skip_newline:
                words.append("NEWLINE")
            skip_newline = False
            continue
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            words.append(tokenize.tok_name[tok.type])
            continue
        words.append(f"{tokenize.tok_name[tok.type]} {tok.string}")
    return words


def _text(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    """The source between two (line, column) positions."""
    (first, begin), (last, stop) = start, end
    if first == last:
        return lines[first - 1][begin:stop]
    return lines[first - 1][begin:] + "".join(lines[first:last - 1]) + lines[last - 1][:stop]


def source_key(sources: Mapping[str, str]) -> str:
    """16 hex digits naming the code of ``{path: source}`` (paths in the given order)."""
    digest = hashlib.sha256()
    for path, source in sources.items():
        digest.update(path.encode() + b"\0")
        digest.update("\n".join(source_tokens(source)).encode() + b"\0")
    return digest.hexdigest()[:16]


def source_files(package: Path = PACKAGE) -> list[Path]:
    """The modules :func:`code_key` reads, in a fixed order."""
    return [package / name for name in NUMERIC_SOURCES]


def code_key(package: Path | None = None) -> str:
    """16 hex digits naming the number-deciding code: comments, docstrings and layout aside.
    The installed package's key is read once per process (a study keeps one key even if the
    source is edited while it trains); another folder's is read afresh."""
    return _installed_code_key() if package is None else _hash_sources(package)


@lru_cache(maxsize=1)
def _installed_code_key() -> str:
    return _hash_sources(PACKAGE)


def _hash_sources(package: Path) -> str:
    return source_key({path.relative_to(package).as_posix(): path.read_text()
                       for path in source_files(package)})


class CodeKeyError(RuntimeError):
    """A worker's code is not the code the study keys its runs by."""


def check_code_key(expected: str) -> None:
    """Refuse to train for a study keyed by other code than this process's (a worker whose
    package differs from the client's would store numbers under the wrong key)."""
    mine = code_key()
    if mine != expected:
        raise CodeKeyError(f"this worker's lenet1 has code key {mine}, the study's runs are "
                           f"keyed {expected}: install the same lenet1 on every worker")


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
    """Make the entry ``folder`` whole: ``write`` fills a fresh folder of this writer's own
    beside it, ``key.json`` is added, and the folder is moved into place (replacing an older
    one that lacks a file). Interrupted (an error, Ctrl-C), the fresh folder is removed: the
    entry is either the old one or the new one, never half of either. An entry that another
    writer stored meanwhile with the same key and files is kept: a reader may be in it."""
    partial = folder.with_name(f"{folder.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        partial.mkdir(parents=True)
        write(partial)
        (partial / KEY_FILE).write_text(json.dumps(key_of(kind, spec, code), indent=1,
                                                   sort_keys=True) + "\n")
        if folder.exists():
            if _holds(folder, partial):
                return folder
            shutil.rmtree(folder)
        try:
            partial.replace(folder)
        except OSError:
            if not folder.is_dir():
                raise
            # Another writer stored the same entry meanwhile: the same key, the same numbers.
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def _holds(entry: Path, fresh: Path) -> bool:
    """Whether ``entry`` has ``fresh``'s key and every file that ``fresh`` has."""
    try:
        if (entry / KEY_FILE).read_bytes() != (fresh / KEY_FILE).read_bytes():
            return False
    except OSError:
        return False
    return all((entry / path.relative_to(fresh)).is_file()
               for path in fresh.rglob("*") if path.is_file())


def entries(root: str | os.PathLike[str] | None = None, code: str | None = None) -> list[Path]:
    """The complete entries under ``root`` made by the code ``code`` (default: this code), as
    paths relative to ``root``, in order: what the book used, for the runs archive."""
    base, code = runs_root(root), code or code_key()
    found = []
    for key_file in sorted(base.glob(f"*/*/{KEY_FILE}")):
        folder = key_file.parent
        if PARTIAL in folder.name:
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
