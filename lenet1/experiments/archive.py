"""The trained-runs archive: pack the run folders the book was built from, fetch and verify them.

An archive is ``lenet1-runs-<code key>.tar.gz``, a gzip'd POSIX (pax) tar whose first member is
``MANIFEST.json``::

    {"format": 1, "code_key": "<16 hex digits>", "bytes": <total size of the files>,
     "files": {"<run folder>/<file>": "<sha256 hex>", ...}}

followed by the run folders (``<name>-<hash>/`` or one level down, ``<kind>/<name>-<hash>/``,
the cache's entries): their directories and files, sorted, with every time, owner and mode fixed,
so that the same runs always pack to the same bytes. A run folder is the shallowest folder that
holds a file of its own (a cache entry holds ``key.json``); it may hold sub-folders too (the
modern study keeps one per trained network), which are packed, fetched and verified with it and
never merged with another copy of the same entry. Folders being trained (``*.partial``), hidden names and symbolic
links are never packed.

Fetching trusts nothing in the download: the code key must be this installation's, every member
must be a plain file or folder with a safe relative name listed in the manifest, and every file
must match its sha256 before anything is moved into the runs folder. A run folder already there
is kept as it is (a local run of the same code key is as good as the archived one). The runs
folder keeps a merged ``MANIFEST.json`` that :func:`verify` checks.

Downloads go through the package's one downloader, :func:`lenet1.data.download`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ..data import DownloadError, download

FORMAT = 1
MANIFEST = "MANIFEST.json"
_HEX16 = re.compile(r"[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_MAX_MANIFEST = 64 << 20  # a manifest is a few hundred kB; refuse to load anything absurd
_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
          tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
          tarfile.FIFOTYPE: "a fifo"}
_GITHUB = re.compile(r"https?://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)(?:\.git)?/?")


class ArchiveError(RuntimeError):
    """An archive or a runs folder is not as expected; the message says so on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the reasons quoted hold


def archive_name(code_key: str) -> str:
    """The archive's file name for a code key (16 lowercase hex digits)."""
    if not isinstance(code_key, str) or not _HEX16.fullmatch(code_key):
        raise ArchiveError(f"a code key is 16 lowercase hex digits, got {code_key!r}: "
                           "nothing was written")
    return f"lenet1-runs-{code_key}.tar.gz"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _parents(name: str) -> list[str]:
    """``"a/b/c"`` -> ``["a", "a/b"]``."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _order(name: str) -> list[str]:
    return name.split("/")  # sort by components, so that a folder comes right before its contents


def _run_files(folder: Path, prefix: str = "") -> list[str]:
    """Relative names of the files to pack: everything inside folders, bar the skipped names."""
    names: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            # Hidden names are temporary files, *.partial runs are still training, and a link
            # may point anywhere: none of them is a finished run.
            if (entry.name.startswith(".") or entry.name.endswith(".partial")
                    or entry.is_symlink()):
                continue
            if entry.is_dir():
                names += _run_files(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.is_file() and prefix:  # a loose top-level file (MANIFEST.json) is no run
                names.append(prefix + entry.name)
    return names


def _tarinfo(name: str, size: int | None) -> tarfile.TarInfo:
    """A member header with nothing machine-specific in it (size None: a folder)."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, size
    return info


def _dumps(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def pack(runs_dir: Path, out_dir: Path, code_key: str,
         folders: Collection[str] | None = None) -> Path:
    """Write ``out_dir/archive_name(code_key)`` holding every complete run folder of runs_dir,
    or only those named in ``folders`` (paths relative to runs_dir, e.g. ``online/x-0123``)."""
    name = archive_name(code_key)
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if not runs_dir.is_dir():
        raise ArchiveError(f"{runs_dir} is not a folder: nothing was written")
    target, tmp = out_dir / name, None
    try:
        files = sorted(_run_files(runs_dir), key=_order)
        if folders is not None:
            wanted = {f.strip("/") + "/" for f in folders}
            files = [f for f in files if any(f.startswith(w) for w in wanted)]
        if not files:
            raise ArchiveError(f"{runs_dir} holds no complete run folder: nothing was written")
        sizes = {f: (runs_dir / f).stat().st_size for f in files}
        manifest = {"format": FORMAT, "code_key": code_key, "bytes": sum(sizes.values()),
                    "files": {f: _sha256(runs_dir / f) for f in files}}
        members = sorted({p for f in files for p in _parents(f)} | set(files), key=_order)
        out_dir.mkdir(parents=True, exist_ok=True)
        # A temporary file next to the target, renamed at the end: never a half-written archive.
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as raw:
            # filename "" and mtime 0 keep the gzip header free of names and times.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                data = _dumps(manifest)
                tar.addfile(_tarinfo(MANIFEST, len(data)), io.BytesIO(data))
                for member in members:
                    if member in sizes:
                        with (runs_dir / member).open("rb") as f:
                            tar.addfile(_tarinfo(member, sizes[member]), f)
                    else:
                        tar.addfile(_tarinfo(member, None))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a published archive is for everyone
        os.replace(tmp, target)
        tmp = None
    except OSError as error:
        raise ArchiveError(f"could not pack {runs_dir} into {target}: {error}: "
                           "nothing was written") from error
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return target


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest's JSON, checked for shape (its code key is checked by the caller)."""
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise ArchiveError(f"{where}: {MANIFEST} is not JSON ({error}): nothing unpacked") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArchiveError(f"{where}: {MANIFEST} has format {found!r}, this code reads format "
                           f"{FORMAT}: nothing unpacked")
    files, key, size = manifest.get("files"), manifest.get("code_key"), manifest.get("bytes")
    if (not isinstance(files, dict) or not isinstance(key, str) or not _HEX16.fullmatch(key)
            or not isinstance(size, int)
            or not all(isinstance(n, str) and isinstance(h, str) and _SHA256.fullmatch(h)
                       for n, h in files.items())):
        raise ArchiveError(f"{where}: {MANIFEST} lacks a valid code_key, bytes or files entry: "
                           "nothing unpacked")
    return manifest


def _name_problem(name: str) -> str | None:
    """Why a member name could land outside the folder it is extracted to (None: it can't)."""
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if "\\" in name:
        return "holds a backslash"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' component"
    return None


def _download(url: str, dest: Path, progress: bool, timeout: float) -> None:
    """The package's one downloader (:func:`lenet1.data.download`); its reason, one line."""
    try:
        download(url, dest, timeout=timeout, progress=progress)
    except DownloadError as error:
        raise ArchiveError(f"{error}: nothing unpacked") from error


def _read_manifest(tar: tarfile.TarFile, url: str, code_key: str) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST or first.type not in (tarfile.REGTYPE,
                                                                      tarfile.AREGTYPE):
        raise ArchiveError(f"{url} does not start with {MANIFEST}: nothing unpacked")
    if first.size > _MAX_MANIFEST:
        raise ArchiveError(f"{url}: {MANIFEST} is {first.size} bytes: nothing unpacked")
    source = tar.extractfile(first)
    assert source is not None  # a regular file always has contents
    manifest = _parse_manifest(source.read(), url)
    if manifest["code_key"] != code_key:
        raise ArchiveError(f"the archive was built by code {manifest['code_key']}, this "
                           f"installation's code key is {code_key}: nothing unpacked; the "
                           "chapters will train the runs afresh")
    return manifest


def _check_members(tar: tarfile.TarFile, manifest: dict[str, Any],
                   url: str) -> dict[str, tarfile.TarInfo]:
    """The archive's files by name, after checking every member; raises before any extraction."""
    files: dict[str, tarfile.TarInfo] = {}
    seen = {MANIFEST}
    for member in tar.getmembers()[1:]:
        name = member.name
        problem = _name_problem(name)
        if problem is None and member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE,
                                                   tarfile.DIRTYPE):
            problem = f"is {_KINDS.get(member.type, 'a special file')}, not a file or folder"
        if problem is None and name in seen:
            problem = "appears twice"
        if problem is None and member.isfile() and "/" not in name:
            problem = "is a file outside any run folder"
        if problem is None and member.isfile() and name not in manifest["files"]:
            problem = f"is not listed in {MANIFEST}"
        if problem is not None:
            raise ArchiveError(f"{url}: member {name!r} {problem}: nothing unpacked")
        seen.add(name)
        if member.isfile():
            files[name] = member
    missing = sorted(set(manifest["files"]) - set(files))
    if missing:
        raise ArchiveError(f"{url}: {len(missing)} files of {MANIFEST} are not in the archive, "
                           f"first {missing[0]!r}: nothing unpacked")
    clash = next((p for name in seen for p in _parents(name) if p in files), None)
    if clash is not None:
        raise ArchiveError(f"{url}: {clash!r} is both a file and a folder: nothing unpacked")
    if sum(m.size for m in files.values()) != manifest["bytes"]:
        raise ArchiveError(f"{url}: the files' sizes do not add up to the manifest's bytes: "
                           "nothing unpacked")
    return files


def _extract(tar: tarfile.TarFile, files: dict[str, tarfile.TarInfo], hashes: dict[str, str],
             dest: Path, url: str) -> None:
    """Write each checked file under dest by reading its bytes, checking its sha256."""
    for name, member in files.items():
        target = dest.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None  # regular files only, checked above
        digest = hashlib.sha256()
        with source, target.open("xb") as out:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != hashes[name]:
            raise ArchiveError(f"{url}: {name!r} does not match its sha256 in {MANIFEST}: "
                               "nothing unpacked")


def _holds_files(folder: Path) -> bool:
    """A run folder holds files of its own (and maybe sub-folders); a parent like ``modern/``
    holds only folders."""
    return any(p.is_file() for p in folder.iterdir())


def _count_runs(folder: Path) -> int:
    if _holds_files(folder):
        return 1
    return sum(_count_runs(p) for p in folder.iterdir() if p.is_dir())


def _plan(src: Path, dst: Path, prefix: str, moves: list[tuple[Path, Path]],
          kept: list[str]) -> None:
    """Which unpacked folders to move where; parents already present are merged one by one."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if not os.path.lexists(target):
            moves.append((entry, target))
        elif _holds_files(entry) or not target.is_dir():
            kept.append(prefix + entry.name)  # a run already here is left as it is
        else:
            _plan(entry, target, f"{prefix}{entry.name}/", moves, kept)


def _local_manifest(runs_dir: Path) -> dict[str, Any] | None:
    path = runs_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArchiveError(f"could not read {path}: {error}: nothing was written") from error
    return _parse_manifest(data, str(runs_dir))


def _install(tree: Path, runs_dir: Path, manifest: dict[str, Any], sizes: dict[str, int],
             manifest_tmp: Path) -> int:
    """Move the unpacked run folders into runs_dir and merge its manifest; returns runs added."""
    moves: list[tuple[Path, Path]] = []
    kept: list[str] = []
    _plan(tree, runs_dir, "", moves, kept)
    old = _local_manifest(runs_dir) or {"files": {}}
    files: dict[str, str] = dict(old["files"])
    for name, digest in manifest["files"].items():
        local = runs_dir.joinpath(*name.split("/"))
        # A kept run's files are listed only where they are the archive's own bytes.
        if any(name.startswith(k + "/") for k in kept) and not (
                local.is_file() and _sha256(local) == digest):
            continue
        files[name] = digest
    total = sum(sizes[n] if n in sizes else _size(runs_dir, n) for n in files)
    # Everything that can fail is written before the first move; moves are renames.
    manifest_tmp.write_bytes(_dumps({"format": FORMAT, "code_key": manifest["code_key"],
                                     "bytes": total, "files": files}))
    added = sum(_count_runs(src) for src, _ in moves)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for src, dst in moves:
        os.replace(src, dst)
    os.replace(manifest_tmp, runs_dir / MANIFEST)
    return added


def _size(runs_dir: Path, name: str) -> int:
    path = runs_dir.joinpath(*name.split("/"))
    return path.stat().st_size if path.is_file() else 0


def fetch(url: str, runs_dir: Path, code_key: str, progress: bool = True,
          timeout: float = 30) -> int:
    """Download the runs archive for code_key and add its run folders to runs_dir.

    url is the archive's address, or (when it does not end with ``.tar.gz``) the folder holding
    it. Returns how many run folders were added. On any failure runs_dir is as it was.
    """
    name = archive_name(code_key)
    if not url.endswith(".tar.gz"):
        url = url.rstrip("/") + "/" + name
    runs_dir = Path(runs_dir)
    if os.path.lexists(runs_dir) and not runs_dir.is_dir():
        raise ArchiveError(f"{runs_dir} is not a folder: nothing unpacked")
    parent = runs_dir.parent
    download: Path | None = None
    work: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Temporaries sit beside runs_dir (same file system, so moves are renames) but never
        # in it, and are hidden names in case they were.
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.", suffix=".download")
        os.close(fd)
        download = Path(tmp)
        _download(url, download, progress, timeout)
        work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".unpack"))
        try:
            with tarfile.open(download, "r:gz") as tar:
                manifest = _read_manifest(tar, url, code_key)
                files = _check_members(tar, manifest, url)
                _extract(tar, files, manifest["files"], work / "tree", url)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise ArchiveError(f"{url} is not a complete runs archive ({error}): "
                               "nothing unpacked") from error
        sizes = {n: m.size for n, m in files.items()}
        return _install(work / "tree", runs_dir, manifest, sizes, work / MANIFEST)
    except OSError as error:
        raise ArchiveError(f"could not unpack {url} into {runs_dir}: {error}: "
                           "nothing unpacked") from error
    finally:
        if download is not None:
            download.unlink(missing_ok=True)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def verify(runs_dir: Path) -> int:
    """Check every file of ``runs_dir/MANIFEST.json`` against its sha256; returns how many."""
    runs_dir = Path(runs_dir)
    manifest = _local_manifest(runs_dir)
    if manifest is None:
        raise ArchiveError(f"{runs_dir / MANIFEST} does not exist: nothing to verify, "
                           "nothing was written")
    bad: list[str] = []
    for name, digest in sorted(manifest["files"].items()):
        path = runs_dir.joinpath(*name.split("/"))
        if _name_problem(name) is not None or not path.is_file():
            bad.append(f"{name} (missing)")
        elif _sha256(path) != digest:
            bad.append(f"{name} (changed)")
    if bad:
        raise ArchiveError(f"{runs_dir}: {len(bad)} of {len(manifest['files'])} files of "
                           f"{MANIFEST} are missing or changed, first {bad[0]}: "
                           "nothing was written")
    return len(manifest["files"])


def _repository_url(config_yml: Path) -> str | None:
    """The ``url:`` under the top-level ``repository:`` key of a Jupyter Book _config.yml."""
    inside = False
    for line in config_yml.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            inside = line.split("#", 1)[0].strip() == "repository:"
        elif inside and (match := re.match(r"\s+url:\s*(.*)$", line)):
            value = re.sub(r"\s+#.*$", "", match.group(1)).strip().strip("'\"")
            return value or None
    return None


def default_url(config_yml: Path) -> str:
    """Where the runs archive is published: $LENET1_RUNS_URL, else the book's GitHub Pages site."""
    env = os.environ.get("LENET1_RUNS_URL", "").strip()
    if env:
        return env
    hint = f"set LENET1_RUNS_URL or the repository url in {config_yml}"
    try:
        url = _repository_url(Path(config_yml))
    except (OSError, UnicodeDecodeError) as error:
        raise ArchiveError(f"could not read {config_yml} ({error}): {hint}") from error
    match = _GITHUB.fullmatch(url or "")
    if match is None:
        raise ArchiveError(f"{config_yml} names no GitHub repository url (found {url!r}): {hint}")
    owner, repo = match.groups()
    if owner == "OWNER":
        raise ArchiveError(f"{config_yml} still names the placeholder owner OWNER: {hint}")
    owner = owner.lower()  # host names are lower case
    if repo.lower() == f"{owner}.github.io":  # a user site is served from the root
        return f"https://{owner}.github.io/runs/"
    return f"https://{owner}.github.io/{repo}/runs/"
