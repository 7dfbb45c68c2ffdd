"""The trained-runs archive: pack, serve over HTTP, fetch, verify, and every refusal.

Offline: each test builds small fake run folders in tmp_path and serves them from 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lenet1.experiments import archive
from lenet1.experiments.archive import ArchiveError, archive_name, default_url, fetch, pack, verify

from .conftest import requires_data

KEY = "0123456789abcdef"
OTHER = "fedcba9876543210"
NAME = archive_name(KEY)

# The run files every fake runs folder holds, and what fetching its archive must give back.
RUNS = {
    "paper-1111111111111111/config.json": b'{"seed": 0}\n',
    "paper-1111111111111111/weights.safetensors": bytes(range(256)) * 40,
    "paper-2222222222222222/config.json": b'{"seed": 1}\n',
    "paper-2222222222222222/weights.safetensors": bytes(range(255, -1, -1)) * 40,
    "modern/adam-3333333333333333/history.json": b"[]\n",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def make_runs(root: Path) -> Path:
    """RUNS, plus everything pack must leave out."""
    runs = root / "runs"
    write(runs, RUNS)
    write(runs, {"paper-4444444444444444.partial/config.json": b"{}",
                 ".hidden-5555555555555555/config.json": b"{}",
                 "paper-1111111111111111/.tmp": b"half",
                 "notes.txt": b"a loose file, no run"})
    (runs / "link-6666666666666666").symlink_to(runs / "paper-1111111111111111")
    return runs


def listing(root: Path) -> dict[str, str]:
    """Every path under root, files with their sha256: a snapshot to compare before and after."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            kind = ("link" if path.is_symlink() else "dir" if path.is_dir()
                    else sha(path.read_bytes()))
            out[path.relative_to(root).as_posix()] = kind
    return out


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) from a local HTTP server, stopped after the test."""
    root = tmp_path / "site"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """runs_dir's parent, holding a runs folder with one run of its own."""
    home = tmp_path / "home"
    write(home / "runs", {"local-7777777777777777/config.json": b'{"local": true}\n'})
    return home


def test_archive_name_checks_the_code_key() -> None:
    assert NAME == "lenet1-runs-0123456789abcdef.tar.gz"
    for bad in ("0123456789ABCDEF", "0123", "0123456789abcdeg", "../../etc/passwd"):
        with pytest.raises(ArchiveError, match="16 lowercase hex"):
            archive_name(bad)


def test_pack_serve_fetch_verify(tmp_path: Path, site: tuple[str, Path]) -> None:
    runs = make_runs(tmp_path)
    base, served = site
    path = pack(runs, served, KEY)
    assert path == served / NAME and os.listdir(served) == [NAME]
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert members[0].name == "MANIFEST.json"
    assert all(m.mtime == 0 and m.uid == m.gid == 0 and m.uname == m.gname == ""
               and m.mode == (0o755 if m.isdir() else 0o644) for m in members)

    home = tmp_path / "home"
    assert fetch(base + NAME, home / "runs", KEY, progress=False) == 3
    assert os.listdir(home) == ["runs"]  # no temporary left beside it
    fetched = home / "runs"
    got = {k: v for k, v in listing(fetched).items() if v != "dir"}
    assert got == {**{name: sha(data) for name, data in RUNS.items()},
                   "MANIFEST.json": sha((fetched / "MANIFEST.json").read_bytes())}
    manifest = json.loads((fetched / "MANIFEST.json").read_bytes())
    assert manifest == {"format": 1, "code_key": KEY, "bytes": sum(map(len, RUNS.values())),
                        "files": {name: sha(data) for name, data in RUNS.items()}}
    assert verify(fetched) == len(RUNS)


def test_pack_is_deterministic(tmp_path: Path) -> None:
    first = pack(make_runs(tmp_path / "a"), tmp_path / "out-a", KEY).read_bytes()
    # Same runs written later, elsewhere, with other times and modes.
    runs = make_runs(tmp_path / "b")
    for name in RUNS:
        os.utime(runs / name, (1e9, 1e9))
        os.chmod(runs / name, 0o600)
    second = pack(runs, tmp_path / "out-b", KEY).read_bytes()
    assert first == second
    assert gzip.decompress(first)  # a plain gzip stream,
    assert first[3] == 0 and first[4:8] == bytes(4)  # with no file name and no time in its header
    write(runs, {"paper-1111111111111111/config.json": b'{"seed": 9}\n'})
    assert pack(runs, tmp_path / "out-c", KEY).read_bytes() != first


def test_pack_refuses_an_empty_runs_folder(tmp_path: Path) -> None:
    write(tmp_path / "runs", {"only.partial/config.json": b"{}"})
    with pytest.raises(ArchiveError, match="no complete run folder.*nothing was written"):
        pack(tmp_path / "runs", tmp_path / "out", KEY)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("slash", ["", "/"])
def test_fetch_with_a_base_url(tmp_path: Path, site: tuple[str, Path], home: Path,
                               slash: str) -> None:
    base, served = site
    pack(make_runs(tmp_path), served, KEY)
    assert fetch(base.rstrip("/") + slash, home / "runs", KEY, progress=False) == 3
    assert verify(home / "runs") == len(RUNS)
    assert (home / "runs/local-7777777777777777/config.json").exists()


def test_fetch_merges_and_keeps_runs_already_there(tmp_path: Path, site: tuple[str, Path],
                                                   home: Path) -> None:
    base, served = site
    pack(make_runs(tmp_path), served, KEY)
    runs = home / "runs"
    # An identical run, a different local run of the same name, and a local modern/ run.
    write(runs, {name: data for name, data in RUNS.items() if name.startswith("paper-1")})
    write(runs, {"paper-2222222222222222/config.json": b'{"seed": 1, "mine": 1}\n',
                 "modern/sgd-8888888888888888/history.json": b"[1]\n"})
    assert fetch(base, runs, KEY, progress=False) == 1  # only modern/adam-... is new
    assert (runs / "paper-2222222222222222/config.json").read_bytes().endswith(b'"mine": 1}\n')
    assert not (runs / "paper-2222222222222222/weights.safetensors").exists()
    assert (runs / "modern/sgd-8888888888888888/history.json").exists()
    assert (runs / "modern/adam-3333333333333333/history.json").exists()
    files = json.loads((runs / "MANIFEST.json").read_bytes())["files"]
    assert not any(name.startswith("paper-2") for name in files)  # the local one is not theirs
    assert verify(runs) == 3
    before = listing(runs)
    assert fetch(base, runs, KEY, progress=False) == 0  # fetching again changes nothing
    assert listing(runs) == before


# A cache entry may hold sub-folders (the modern study keeps one per trained network).
NESTED = {
    "modern/study-9999999999999999/key.json": b'{"kind": "study"}\n',
    "modern/study-9999999999999999/net-0/weights.safetensors": bytes(range(200)),
    "modern/study-9999999999999999/net-1/weights.safetensors": bytes(range(100)),
    "modern/study-9999999999999999/net-1/history.json": b"[2]\n",
}


def test_an_entry_with_sub_folders_packs_fetches_and_verifies_whole(
        tmp_path: Path, site: tuple[str, Path], home: Path) -> None:
    base, served = site
    runs = make_runs(tmp_path)
    write(runs, NESTED)
    write(runs, {"modern/study-9999999999999999/net-1/.tmp": b"half"})  # never packed
    pack(runs, served, KEY)
    with tarfile.open(served / NAME) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert set(NESTED) <= names and not any(n.endswith(".tmp") for n in names)
    fetched = home / "runs"
    assert fetch(base, fetched, KEY, progress=False) == 4  # the entry counts once
    for name, data in NESTED.items():
        assert (fetched / name).read_bytes() == data
    assert verify(fetched) == len(RUNS) + len(NESTED)
    (fetched / "modern/study-9999999999999999/net-1/history.json").write_bytes(b"[3]\n")
    with pytest.raises(ArchiveError, match=r"net-1/history.json \(changed\)"):
        verify(fetched)

    # An entry already there is kept whole: its sub-folders are not merged with the archive's.
    other = tmp_path / "other" / "runs"
    write(other, {"modern/study-9999999999999999/key.json": b'{"mine": 1}\n',
                  "modern/study-9999999999999999/net-0/weights.safetensors": b"mine"})
    assert fetch(base, other, KEY, progress=False) == 3
    assert not (other / "modern/study-9999999999999999/net-1").exists()
    assert (other / "modern/study-9999999999999999/net-0/weights.safetensors").read_bytes() \
        == b"mine"
    assert verify(other) == len(RUNS)  # the kept entry's files are not the archive's


def craft(path: Path, files: dict[str, bytes], *, code_key: str = KEY,
          hashes: dict[str, str] | None = None, extra: tuple[tarfile.TarInfo, ...] = (),
          listed: dict[str, bytes] | None = None) -> None:
    """An archive as a hostile or broken server might send: files (listed in the manifest
    unless `listed` says otherwise, with their true sha256 unless `hashes` says otherwise),
    then the extra members."""
    listed = files if listed is None else listed
    manifest = {"format": 1, "code_key": code_key, "bytes": sum(map(len, listed.values())),
                "files": {**{n: sha(d) for n, d in listed.items()}, **(hashes or {})}}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("MANIFEST.json", json.dumps(manifest).encode()), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)


def link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def tar_of(*members: tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info in members:
            tar.addfile(info)
    return out.getvalue()


def truncated(path: Path) -> None:
    runs = make_runs(path.parent / "source")
    data = pack(runs, path.parent / "packed", KEY).read_bytes()
    path.write_bytes(data[: len(data) // 2])


LAST = "paper-2222222222222222/weights.safetensors"
BAD: dict[str, tuple[Callable[[Path], object], str]] = {
    "bad-hash": (lambda p: craft(p, RUNS, hashes={LAST: "0" * 64}),
                 f"'{LAST}' does not match its sha256"),
    "truncated": (truncated, "not a complete runs archive"),
    "dot-dot": (lambda p: craft(p, {**RUNS, "../x": b"x"}), "'../x' has an empty, '.' or '..'"),
    "nested-dot-dot": (lambda p: craft(p, {**RUNS, "modern/../../x": b"x"}), "'..'"),
    "absolute": (lambda p: craft(p, {**RUNS, "/etc/x": b"x"}), "'/etc/x' is an absolute path"),
    "backslash": (lambda p: craft(p, {**RUNS, "a\\..\\..\\x": b"x"}), "holds a backslash"),
    "symlink": (lambda p: craft(p, RUNS, extra=(
        link("paper-1111111111111111/evil", tarfile.SYMTYPE, "/etc/passwd"),)),
        "is a symbolic link"),
    "hardlink": (lambda p: craft(p, RUNS, extra=(
        link("paper-1111111111111111/evil", tarfile.LNKTYPE, "/etc/passwd"),)),
        "is a hard link"),
    "unlisted": (lambda p: craft(p, RUNS, listed={k: v for k, v in RUNS.items() if k != LAST}),
                 f"'{LAST}' is not listed"),
    "missing": (lambda p: craft(p, {k: v for k, v in RUNS.items() if k != LAST}, listed=RUNS),
                "1 files of MANIFEST.json are not in the archive"),
    "duplicate": (lambda p: craft(p, RUNS, extra=(tarfile.TarInfo(LAST),)), "appears twice"),
    "no-manifest": (lambda p: p.write_bytes(gzip.compress(tar_of(tarfile.TarInfo("x/y")))),
                    "does not start with MANIFEST.json"),
    "not-gzip": (lambda p: p.write_bytes(b"<html>not found</html>"), "not a complete runs"),
    "code-key": (lambda p: craft(p, RUNS, code_key=OTHER),
                 f"built by code {OTHER}, this installation's code key is {KEY}"),
}


@pytest.mark.parametrize("case", BAD)
def test_fetch_refuses_a_bad_archive(tmp_path: Path, site: tuple[str, Path], home: Path,
                                     case: str) -> None:
    base, served = site
    make, message = BAD[case]
    make(served / NAME)
    before = listing(home)
    with pytest.raises(ArchiveError, match=message) as caught:
        fetch(base + NAME, home / "runs", KEY, progress=False)
    assert "\n" not in str(caught.value) and "nothing unpacked" in str(caught.value)
    assert listing(home) == before  # runs untouched, no temporary left
    assert not (tmp_path / "x").exists() and not Path("/etc/x").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fetch_reports_http_failures(site: tuple[str, Path], home: Path) -> None:
    base, _ = site
    before = listing(home)
    with pytest.raises(ArchiveError, match=f"could not download {base}{NAME}: HTTP 404"):
        fetch(base, home / "runs", KEY, progress=False)
    down = f"http://127.0.0.1:{closed_port()}/runs"
    with pytest.raises(ArchiveError, match=f"could not download {down}/{NAME}: .*refused"):
        fetch(down, home / "runs", KEY, progress=False)
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{NAME}"
        with pytest.raises(ArchiveError, match=f"could not download {url}: .*timed out"):
            fetch(url, home / "runs", KEY, progress=False, timeout=0.2)
    assert listing(home) == before


def test_an_interrupted_fetch_leaves_nothing(tmp_path: Path, site: tuple[str, Path], home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = site
    pack(make_runs(tmp_path), served, KEY)
    before = listing(home)

    def interrupt(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(archive, "_install", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch(base, home / "runs", KEY, progress=False)
    assert listing(home) == before


def test_verify_finds_changed_and_missing_files(tmp_path: Path, site: tuple[str, Path],
                                                home: Path) -> None:
    base, served = site
    pack(make_runs(tmp_path), served, KEY)
    runs = home / "runs"
    fetch(base, runs, KEY, progress=False)
    weights = runs / "paper-1111111111111111/weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    with pytest.raises(ArchiveError, match=r"1 of 5 files .* first paper-1111111111111111/"
                                           r"weights.safetensors \(changed\)"):
        verify(runs)
    (runs / "modern/adam-3333333333333333/history.json").unlink()
    with pytest.raises(ArchiveError, match=r"2 of 5 files .* first modern/adam-3333333333333333"
                                           r"/history.json \(missing\)"):
        verify(runs)
    with pytest.raises(ArchiveError, match="does not exist"):
        verify(tmp_path / "nowhere")


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "_config.yml"
    path.write_text(text)
    return path


def test_default_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LENET1_RUNS_URL", raising=False)
    yml = config(tmp_path, "title: x\nrepository:\n  # where it lives\n"
                           "  url: https://github.com/Ann/lenet1  # published\n  branch: main\n"
                           "html:\n  url: https://example.org\n")
    assert default_url(yml) == "https://ann.github.io/lenet1/runs/"
    monkeypatch.setenv("LENET1_RUNS_URL", "https://mirror.example.org/runs/")
    assert default_url(yml) == "https://mirror.example.org/runs/"


@pytest.mark.parametrize("text", [
    "repository:\n  url: https://github.com/OWNER/lenet1  # set to the published repository\n",
    "title: no repository here\nhtml:\n  url: https://github.com/ann/lenet1\n",
    "repository:\n  url: https://gitlab.com/ann/lenet1\n",
])
def test_default_url_needs_a_real_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             text: str) -> None:
    monkeypatch.delenv("LENET1_RUNS_URL", raising=False)
    with pytest.raises(ArchiveError, match="set LENET1_RUNS_URL or the repository url"):
        default_url(config(tmp_path, text))


# --- the real thing: a study's runs through the command line ---------------------------------


@requires_data
def test_a_fetched_study_trains_nothing_and_prints_the_same_tables(
        tmp_path: Path, site: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from lenet1.cli import main
    from lenet1.experiments import cache
    from lenet1.experiments.modern import run_study
    from lenet1.experiments.recipes import Scale
    from lenet1.report.modern import report

    tiny = Scale(train_size=100, max_passes=1, selection_seeds=1)
    built, fetched = tmp_path / "built", tmp_path / "fetched"
    first = run_study((0,), scale=tiny, root=built)
    assert main(["runs", "pack", str(site[1]), "--runs", str(built)]) == 0
    archive_file = site[1] / archive.archive_name(cache.code_key())
    assert archive_file.is_file()
    # Another code's entry in the runs folder is not packed.
    stale = built / "modern" / "stale-0000000000000000"
    stale.mkdir()
    (stale / "key.json").write_text('{"code": "ffffffffffffffff"}')
    assert main(["runs", "pack", str(tmp_path / "again"), "--runs", str(built)]) == 0
    assert (tmp_path / "again" / archive_file.name).read_bytes() == archive_file.read_bytes()

    capsys.readouterr()
    assert main(["runs", "fetch", site[0], "--runs", str(fetched), "--no-progress"]) == 0
    assert f"runs added to {fetched}" in capsys.readouterr().out
    assert main(["runs", "verify", "--runs", str(fetched)]) == 0
    again = run_study((0,), scale=tiny, root=fetched)
    assert not any(run.fresh for run in again.runs)
    assert report(again).split("compute of every run")[0] == \
        report(first).split("compute of every run")[0]


def test_the_command_line_gives_one_line_errors(tmp_path: Path, site: tuple[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from lenet1.cli import main

    assert main(["runs", "fetch", site[0] + "missing.tar.gz", "--runs", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "404" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    assert main(["runs", "pack", str(tmp_path / "out"), "--runs", str(tmp_path / "empty")]) == 2
    assert main(["runs", "verify", "--runs", str(tmp_path / "empty")]) == 2
