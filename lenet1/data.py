"""The paper's zip code digits, and two other sources for comparison.

- ``usps``: the 7,291 + 2,007 digits the 1989 paper used, from the two gzip'd text files
  distributed with *The Elements of Statistical Learning* (full precision, [-1, 1]).
- ``usps-libsvm``: the same digits in LIBSVM format, read by ``torchvision.datasets.USPS``,
  which quantises the pixels to 8 bits.
- ``mnist1989``: the stand-in earlier reproductions used: 7,291 MNIST training digits and
  2,007 MNIST test digits, resized to 16x16. Here the subset is drawn from a seed, so it is the
  same on every run and machine.

The data root is, in order: the ``root`` argument, the ``LENET1_DATA`` environment variable,
or ``data/`` at the top of the project. Missing ``usps`` files are downloaded from the
canonical address by :func:`download`; every load verifies their SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

#: The data sources :func:`load` knows.
SOURCES: tuple[str, ...] = ("usps", "usps-libsvm", "mnist1989")
CANONICAL_URL = "https://hastie.su.domains/ElemStatLearn/datasets/"
SHA256 = {
    "zip.train.gz": "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
    "zip.test.gz": "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
}
TRAIN_SIZE, TEST_SIZE = 7291, 2007
ENV_VAR = "LENET1_DATA"


class DataError(RuntimeError):
    """The data cannot be had: missing and not downloadable, corrupt, or malformed."""


@dataclass(frozen=True)
class Digits:
    """Images (N, 1, 16, 16) float32 in [-1, 1] and labels (N,) int64 in 0..9."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or tuple(self.images.shape[1:]) != (1, 16, 16):
            raise DataError(f"images must be (N, 1, 16, 16), got {tuple(self.images.shape)}")
        if self.images.dtype != torch.float32 or self.labels.dtype != torch.int64:
            raise DataError("images must be float32 and labels int64")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def targets(self) -> Tensor:
        """The place-coded targets, +1 for the label's unit and -1 for the other nine."""
        return place_code(self.labels)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=10).tolist()

    def subset(self, index: Tensor | slice) -> Digits:
        return Digits(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Split:
    train: Digits
    test: Digits
    source: str


def place_code(labels: Tensor) -> Tensor:
    """(N,) labels -> (N, 10) float32 targets of +-1, one unit per class."""
    if labels.dtype != torch.int64 or labels.dim() != 1:
        raise DataError(f"labels must be a 1-d int64 tensor, got {labels.dtype} "
                        f"{tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise DataError("labels must lie in 0..9")
    targets = torch.full((len(labels), 10), -1.0)
    targets[torch.arange(len(labels)), labels] = 1.0
    return targets


def workspace(start: str | os.PathLike[str] | None = None) -> Path:
    """Where ``data/`` and ``runs/`` go by default: the checkout of this project that holds
    the working directory (the first folder upwards from ``start`` with the book's
    ``_config.yml`` beside a ``lenet1`` folder, as when a chapter runs in ``notebooks/``),
    else the user's cache folder (``$XDG_CACHE_HOME/lenet1``, ``~/.cache/lenet1``), as for a
    package installed from an index and used anywhere."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "lenet1").is_dir():
            return folder
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lenet1"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder the data lives in: ``root``, else ``$LENET1_DATA``, else ``data/`` of the
    :func:`workspace`."""
    if root is not None:
        return Path(root)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return workspace() / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DownloadError(DataError):
    """A download failed: no network, an HTTP error, a cut connection, or a wrong SHA-256."""


def download(url: str, path: str | os.PathLike[str], sha256: str | None = None, *,
             timeout: float = 60, progress: bool = False) -> Path:
    """Download ``url`` to ``path``, the one downloader of the package (the digits, and the
    runs archive of :mod:`lenet1.experiments.archive`).

    The bytes go to a hidden temporary file beside ``path`` and are moved into place only when
    the whole body has arrived (as many bytes as the server announced) and, when ``sha256`` is
    given, its SHA-256 matches: a failed download leaves nothing behind. Raises
    :class:`DownloadError` with a one-line reason (offline, HTTP status, timeout, checksum)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".part")
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(handle, "wb") as out, \
                    urllib.request.urlopen(url, timeout=timeout) as response:
                headers = getattr(response, "headers", None)
                length = headers.get("Content-Length") if headers is not None else None
                total = int(length) if length and str(length).isdigit() else None
                got = 0
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        got += len(block)
                        bar.update(len(block))
        except urllib.error.HTTPError as error:
            error.close()
            raise DownloadError(f"could not download {url}: HTTP {error.code} "
                                f"{error.reason}") from error
        except urllib.error.URLError as error:
            raise DownloadError(f"could not download {url}: {error.reason} (offline, or the "
                                "server cannot be reached)") from error
        except (OSError, http.client.HTTPException, ValueError) as error:
            reason = str(error) or type(error).__name__
            raise DownloadError(f"could not download {url}: {reason}") from error
        if total is not None and got != total:
            raise DownloadError(f"could not download {url}: got {got} of {total} bytes")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DownloadError(f"downloaded {url} but its SHA-256 is {digest.hexdigest()}, "
                                f"expected {sha256}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


_download = download  # for functions whose ``download`` argument is a flag


def fetch(filename: str, root: Path, download: bool = True) -> Path:
    """The verified path of one ESL file, downloading it if it is missing."""
    path = root / filename
    expected = SHA256[filename]
    if not path.exists():
        url = CANONICAL_URL + filename
        if not download:
            raise DataError(f"{path} is missing: put {filename} there, or set {ENV_VAR} to a "
                            f"folder that holds it (it is published at {url})")
        try:
            _download(url, path, expected)
        except DownloadError as error:
            raise DataError(
                f"{path} is missing and could not be had: {error}. "
                f"Offline? Copy zip.train.gz and zip.test.gz into {root}, or set {ENV_VAR} to "
                f"a folder that holds them.") from None
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path} is corrupt: its SHA-256 is {actual}, expected {expected}. "
                        f"Delete it to download it again.")
    return path


def parse_esl(path: Path) -> Digits:
    """Parse one ESL file: a line per digit, the label then 256 pixels in [-1, 1]."""
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path} is not a readable gzip'd table of numbers: {error}") from None
    if table.shape[1] != 257:
        raise DataError(f"{path}: expected 257 numbers per line, got {table.shape[1]}")
    labels = table[:, 0]
    if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels <= 9)):
        raise DataError(f"{path}: labels must be whole numbers 0..9")
    pixels = table[:, 1:]
    if not np.all(np.isfinite(pixels)) or pixels.min() < -1 or pixels.max() > 1:
        raise DataError(f"{path}: pixels must be finite and lie in [-1, 1]")
    images = torch.from_numpy(pixels.astype(np.float32)).reshape(-1, 1, 16, 16)
    return Digits(images.contiguous(), torch.from_numpy(labels.astype(np.int64)))


@lru_cache(maxsize=4)
def _load_usps(root: Path, download: bool) -> Split:
    train = parse_esl(fetch("zip.train.gz", root, download))
    test = parse_esl(fetch("zip.test.gz", root, download))
    return Split(train, test, "usps")


def _load_usps_libsvm(root: Path, download: bool) -> Split:
    from torchvision.datasets import USPS

    def read(train: bool) -> Digits:
        try:
            dataset = USPS(str(root), train=train, download=download)
        except (OSError, RuntimeError, urllib.error.URLError) as error:
            name = "usps.bz2" if train else "usps.t.bz2"
            raise DataError(f"cannot read the LIBSVM copy ({root / name}): {error}. Put "
                            f"usps.bz2 and usps.t.bz2 there, or set {ENV_VAR}.") from None
        # torchvision stores round((x + 1) / 2 * 255) as uint8; map back to [-1, 1].
        pixels = torch.as_tensor(dataset.data, dtype=torch.float32) / 255.0 * 2.0 - 1.0
        return Digits(pixels.reshape(-1, 1, 16, 16).contiguous(),
                      torch.as_tensor(dataset.targets, dtype=torch.int64))

    return Split(read(True), read(False), "usps-libsvm")


def _load_mnist1989(root: Path, download: bool, seed: int, n_train: int, n_test: int) -> Split:
    from torchvision.datasets import MNIST

    def read(train: bool, count: int) -> Digits:
        try:
            dataset = MNIST(str(root), train=train, download=download)
        except (OSError, RuntimeError, urllib.error.URLError) as error:
            raise DataError(f"cannot read MNIST under {root / 'MNIST'}: {error}. Put the four "
                            f"idx files in {root / 'MNIST' / 'raw'}, or set {ENV_VAR}.") from None
        if count > len(dataset.data):
            raise DataError(f"asked for {count} digits but MNIST has {len(dataset.data)}")
        # One generator per split, from the seed alone: the same subset on every machine.
        generator = torch.Generator().manual_seed(seed + (0 if train else 1))
        index = torch.randperm(len(dataset.data), generator=generator)[:count]
        raw = dataset.data[index].to(torch.float32).unsqueeze(1) / 255.0
        small = torch.nn.functional.interpolate(raw, size=(16, 16), mode="bilinear",
                                                antialias=True, align_corners=False)
        # MNIST is white ink on black; map background to -1 and full ink to +1.
        images = (small.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()
        return Digits(images, dataset.targets[index].to(torch.int64))

    return Split(read(True, n_train), read(False, n_test), "mnist1989")


def load(source: str = "usps", root: str | os.PathLike[str] | None = None,
         download: bool = True, *, seed: int = 0, n_train: int = TRAIN_SIZE,
         n_test: int = TEST_SIZE) -> Split:
    """Load a train/test split from ``source`` (one of :data:`SOURCES`).

    ``seed``, ``n_train`` and ``n_test`` apply to ``mnist1989`` only.
    """
    folder = data_root(root)
    if source == "usps":
        return _load_usps(folder.resolve(), download)
    if source == "usps-libsvm":
        return _load_usps_libsvm(folder, download)
    if source == "mnist1989":
        return _load_mnist1989(folder, download, seed, n_train, n_test)
    raise DataError(f"unknown data source {source!r}: use one of {', '.join(SOURCES)}")


def validation_split(digits: Digits, fraction: float = 0.2, seed: int = 0) -> tuple[Digits,
                                                                                   Digits]:
    """Carve a held-out set from ``digits`` (the training set), reproducibly from ``seed``.

    Returns (fit, held_out), each in the original order of ``digits``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(digits), generator=generator)
    cut = round(len(digits) * fraction)
    held_out, fit = order[:cut].sort().values, order[cut:].sort().values
    return digits.subset(fit), digits.subset(held_out)
