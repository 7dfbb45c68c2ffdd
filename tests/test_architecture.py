"""The package's shape: imports point downward only, and the cache key covers only what
changes numbers."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lenet1.experiments import cache

PACKAGE = Path(cache.__file__).resolve().parent.parent

# Lower layers never import higher ones. Within one layer, modules may import each other
# only inside the same folder (e.g. experiments.paper -> experiments.runs), and never in a circle.
LAYERS = {
    "__init__": 0, "facts": 0, "threads": 0,
    "data": 1,
    "nets": 2,
    "augment": 3, "rejection": 3, "accounting": 3,
    "engine": 4,
    "train": 5,
    "experiments": 6,
    "report": 7,
    "cli": 8,
    "__main__": 9,
}


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every lenet1 module ``path`` imports, at module level or inside a function."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lenet1"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "lenet1":
                continue
            # "from . import x" names a module, not an attribute.
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _is_module(candidate, root) else module)
    return found


def _is_module(name: str, root: Path = PACKAGE) -> bool:
    path = root.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) - {_module_name(p)} for p in package.rglob("*.py")}


def _violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in graph.items():
        for target in targets:
            low, high = LAYERS[_component(target)], LAYERS[_component(source)]
            if low > high or (low == high and _component(source) != _component(target)):
                problems.append(f"{source} imports {target}")
    return problems


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_component_has_a_layer():
    assert {_component(m) for m in _graph()} <= set(LAYERS)


def test_imports_point_downward_and_form_no_circle():
    graph = _graph()
    assert _violations(graph) == []
    assert _circle(graph) is None


def test_the_checks_catch_an_upward_import_and_a_circle():
    graph = _graph()
    graph["lenet1.experiments.paper"] = graph["lenet1.experiments.paper"] | {"lenet1.report.plots"}
    assert _violations(graph) == ["lenet1.experiments.paper imports lenet1.report.plots"]
    graph = {"lenet1.train.online": {"lenet1.train.sdlm"}, "lenet1.train.sdlm": {"lenet1.train.online"}}
    assert _circle(graph) is not None


def test_a_relative_import_inside_a_function_is_seen(tmp_path):
    package = tmp_path / "lenet1"
    (package / "report").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "report" / "__init__.py").write_text("")
    (package / "cli.py").write_text("")
    (package / "report" / "x.py").write_text("def f():\n    from ..cli import main\n")
    assert _imports(package / "report" / "x.py", package) == {"lenet1.cli"}


# --- the cache key --------------------------------------------------------------------------


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "lenet1"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


@pytest.mark.parametrize("module", ["engine/lanes.py", "engine/fast.py", "nets.py",
                                    "train/online.py", "train/minibatch.py", "train/stacked.py",
                                    "train/distill.py", "augment.py", "data.py", "experiments/runs.py",
                                    "experiments/recipes.py"])
def test_editing_what_computes_changes_the_key(package_copy, module):
    before = cache.code_key(package_copy)
    _append(package_copy / module, "\n_EDITED = 1\n")
    assert cache.code_key(package_copy) != before


@pytest.mark.parametrize("module", ["report/plots.py", "report/paper.py", "report/text.py",
                                    "cli.py", "facts.py", "experiments/paper.py",
                                    "experiments/training.py", "experiments/executors.py",
                                    "experiments/cache.py", "engine/schedule.py",
                                    "train/replicas.py"])
def test_editing_the_presentation_keeps_the_key(package_copy, module):
    before = cache.code_key(package_copy)
    _append(package_copy / module, "\n_EDITED = 1\n")
    assert cache.code_key(package_copy) == before


def test_a_docstring_or_comment_keeps_the_key(package_copy):
    before = cache.code_key(package_copy)
    path = package_copy / "engine" / "single.py"
    source = path.read_text()
    assert source.startswith('"""')
    path.write_text('"""A different docstring."""\n# a comment\n' + source.split('"""', 2)[2])
    assert cache.code_key(package_copy) == before


def test_every_run_folder_follows_the_code_key(tmp_path):
    spec = {"seed": 0}
    one = cache.folder_of("online", "x", spec, tmp_path, code="0" * 16)
    assert one.parent == tmp_path / "online"
    assert cache.folder_of("online", "x", spec, tmp_path, code="0" * 16) == one
    assert cache.folder_of("online", "x", spec, tmp_path, code="1" * 16) != one
    assert cache.folder_of("online", "x", {"seed": 1}, tmp_path, code="0" * 16) != one


def test_store_is_atomic(tmp_path):
    folder = cache.folder_of("online", "x", {}, tmp_path, code="0" * 16)

    def broken(partial: Path) -> None:
        (partial / "history.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.store(folder, "online", {}, broken, code="0" * 16)
    assert not folder.exists() and not cache.is_complete(folder, ("history.json",))
    assert list(tmp_path.rglob("*")) == [tmp_path / "online"]  # nothing half-written is left
    cache.store(folder, "online", {}, lambda p: (p / "history.json").write_text("{}"),
                code="0" * 16)
    assert cache.is_complete(folder, ("history.json",))
    assert cache.read_key(folder) == {"kind": "online", "spec": {}, "code": "0" * 16}


def test_a_second_writer_of_the_same_entry_keeps_the_first(tmp_path):
    # Two processes (two notebooks, two workers) may train the same run at once: the second
    # to finish must not pull the entry from under a reader of the first.
    folder = cache.folder_of("online", "x", {}, tmp_path, code="0" * 16)

    def writes(text: str, *names: str) -> Callable[[Path], None]:
        def write(partial: Path) -> None:
            for name in names:
                (partial / name).write_text(text)
        return write

    cache.store(folder, "online", {}, writes("first", "history.json"), code="0" * 16)
    cache.store(folder, "online", {}, writes("second", "history.json"), code="0" * 16)
    assert (folder / "history.json").read_text() == "first"
    # An entry that lacks a file the writer has is replaced whole.
    cache.store(folder, "online", {}, writes("third", "history.json", "weights"),
                code="0" * 16)
    assert (folder / "history.json").read_text() == "third" and (folder / "weights").is_file()
    assert sorted(p.name for p in (tmp_path / "online").iterdir()) == [folder.name]


# The modules that define a run and train it; everything they import is hashed with them.
NUMERIC_ROOTS = ("experiments/runs.py", "experiments/recipes.py", "engine/lanes.py")


def _as_module(path: str) -> str:
    return "lenet1." + path.removesuffix(".py").replace("/", ".")


def test_the_hashed_modules_are_exactly_the_import_closure_of_what_trains():
    graph = _graph()
    hashed = {_as_module(p) for p in cache.NUMERIC_SOURCES}
    closure, todo = set(), [_as_module(p) for p in NUMERIC_ROOTS]
    while todo:
        module = todo.pop()
        if module not in closure:
            closure.add(module)
            todo += sorted(graph[module])
    # Nothing they import is left out of the key, and nothing else is in it (progress,
    # scheduling, caching, formatting: editing those keeps every run).
    assert closure == hashed
    for outside in ("lenet1.engine.schedule", "lenet1.train.replicas", "lenet1.facts",
                    "lenet1.experiments.cache", "lenet1.experiments.training",
                    "lenet1.engine"):
        assert outside not in hashed


# A fixed text and its key: the key of the same code is the same on every Python and machine
# (the tokens are compared, not a syntax tree's dump, whose text changes between versions).
SOURCE = ('def f(a):\n    """doc"""\n    return f"{a!r:>{3}} {\'q\'}"  # c\n\n\nclass A:\n    x = 1\n')


def test_the_key_of_a_fixed_text_is_pinned():
    assert cache.source_key({"x.py": SOURCE}) == "090ebf248fdf35c5"
    # layout, comments and docstrings aside ...
    assert cache.source_key({"x.py": 'def f(a):\n  return f"{a!r:>{3}} {\'q\'}"\nclass A:\n  x = 1\n'}) \
        == "090ebf248fdf35c5"
    # ... any change of the code, or of the file's name, is another key
    assert cache.source_key({"x.py": SOURCE.replace("x = 1", "x = 2")}) != "090ebf248fdf35c5"
    assert cache.source_key({"x.py": SOURCE.replace("{3}", "{4}")}) != "090ebf248fdf35c5"
    assert cache.source_key({"y.py": SOURCE}) != "090ebf248fdf35c5"
    # structure is kept: moving a statement out of a block changes the key
    nested = "if a:\n    b = 1\n    c = 2\n"
    assert cache.source_key({"x.py": nested}) != \
        cache.source_key({"x.py": "if a:\n    b = 1\nc = 2\n"})


def _pythons() -> list[Path]:
    versions = Path.home() / ".pyenv" / "versions"
    return sorted(p / "bin" / "python" for p in versions.glob("3.1[0-3]*")
                  if (p / "bin" / "python").is_file())


@pytest.mark.skipif(not _pythons(), reason="no Python 3.10-3.13 under ~/.pyenv/versions")
def test_the_code_key_is_the_same_on_python_3_10_to_3_13():
    import subprocess

    # cache.py needs only the standard library: each Python loads it alone and hashes the
    # package, as a worker on another Python would.
    script = ("import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('cache', {str(cache.__file__)!r})\n"
              "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
              f"print(module.code_key(module.PACKAGE), module.source_key({{'x.py': {SOURCE!r}}}))\n")
    seen = {}
    for python in _pythons():
        done = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        seen[python.parent.parent.name] = done.stdout.split()
    assert {tuple(v) for v in seen.values()} == {(cache.code_key(), "090ebf248fdf35c5")}, seen
    assert len({v[:4] for v in seen}) >= 2  # at least two minor versions compared
