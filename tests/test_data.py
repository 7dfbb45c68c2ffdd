from __future__ import annotations

import bz2
import gzip
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from lenet1 import data
from lenet1.data import DataError, Digits, load, place_code, validation_split

from .conftest import requires_data

TRAIN_COUNTS = [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
TEST_COUNTS = [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]


@requires_data
def test_real_digits_have_the_papers_sizes_and_counts(usps):
    assert usps.train.images.shape == (7291, 1, 16, 16)
    assert usps.test.images.shape == (2007, 1, 16, 16)
    assert usps.train.images.dtype == torch.float32 and usps.train.labels.dtype == torch.int64
    assert usps.train.class_counts() == TRAIN_COUNTS
    assert usps.test.class_counts() == TEST_COUNTS
    assert float(usps.train.images.min()) == -1.0 and float(usps.train.images.max()) == 1.0
    # Full precision: far more than the 256 levels of an 8-bit copy.
    assert len(torch.unique(usps.train.images)) > 1000


def test_place_code_gives_plus_one_at_the_label_minus_one_elsewhere():
    targets = place_code(torch.tensor([3, 0]))
    assert targets.shape == (2, 10)
    assert targets[0, 3] == 1 and targets[1, 0] == 1
    assert (targets == -1).sum() == 18
    with pytest.raises(DataError):
        place_code(torch.tensor([10]))


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET1_DATA", str(tmp_path / "env"))
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.data_root() == tmp_path / "env"
    monkeypatch.delenv("LENET1_DATA")
    assert data.data_root() == data.workspace() / "data"


def test_workspace_is_the_checkout_or_the_user_cache(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "lenet1").mkdir(parents=True)
    (checkout / "_config.yml").write_text("title: x\n")
    (checkout / "notebooks").mkdir()
    assert data.workspace(checkout / "notebooks") == checkout  # a chapter runs in notebooks/
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.workspace(elsewhere) == tmp_path / "cache" / "lenet1"  # an installed package


def _write_esl(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with gzip.open(path, "wt") as f:
        for i in range(rows):
            pixels = rng.uniform(-1, 1, 256)
            f.write(f"{i % 10}.0000 " + " ".join(f"{p:.4f}" for p in pixels) + "\n")


@pytest.fixture
def fake_esl(tmp_path, monkeypatch):
    """A data root with small ESL-format files, their checksums registered as the real ones."""
    for name, rows in (("zip.train.gz", 20), ("zip.test.gz", 10)):
        _write_esl(tmp_path / name, rows)
        monkeypatch.setitem(data.SHA256, name, data.sha256_of(tmp_path / name))
    data._load_usps.cache_clear()
    yield tmp_path
    data._load_usps.cache_clear()


def test_small_esl_files_parse(fake_esl):
    split = load("usps", fake_esl)
    assert len(split.train) == 20 and len(split.test) == 10
    assert split.train.labels.tolist()[:3] == [0, 1, 2]


def test_corrupt_file_names_the_file_and_both_hashes(fake_esl, monkeypatch):
    expected = data.SHA256["zip.train.gz"]
    with open(fake_esl / "zip.train.gz", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError) as error:
        load("usps", fake_esl)
    message = str(error.value)
    assert "zip.train.gz" in message and expected in message
    assert data.sha256_of(fake_esl / "zip.train.gz") in message


def test_offline_error_says_where_to_put_the_files(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    with pytest.raises(DataError, match="Copy zip.train.gz and zip.test.gz into"):
        load("usps", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_failed_download_leaves_no_partial_file(tmp_path, monkeypatch):
    class Truncated:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            raise TimeoutError("connection dropped")

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: Truncated())
    with pytest.raises(DataError):
        load("usps", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    source = tmp_path / "served.gz"
    _write_esl(source, 5)

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: open(source, "rb"))  # noqa: SIM115
    root = tmp_path / "root"
    with pytest.raises(DataError, match="SHA-256"):
        load("usps", root)
    assert list(root.iterdir()) == []


def test_download_lands_when_the_checksum_is_right(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    for name, rows in (("zip.train.gz", 12), ("zip.test.gz", 6)):
        _write_esl(served / name, rows)
        monkeypatch.setitem(data.SHA256, name, data.sha256_of(served / name))
    monkeypatch.setattr(data.urllib.request, "urlopen",
                        lambda url, timeout: open(served / url.rsplit("/", 1)[1], "rb"))  # noqa: SIM115
    data._load_usps.cache_clear()
    split = load("usps", tmp_path / "root")
    data._load_usps.cache_clear()
    assert len(split.train) == 12 and (tmp_path / "root" / "zip.test.gz").is_file()


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match="is missing"):
        load("usps", tmp_path, download=False)


def test_malformed_rows_are_refused(tmp_path, monkeypatch):
    for name in ("zip.train.gz", "zip.test.gz"):
        with gzip.open(tmp_path / name, "wt") as f:
            f.write("3.0 " + " ".join(["2.0"] * 256) + "\n")  # pixel out of range
        monkeypatch.setitem(data.SHA256, name, data.sha256_of(tmp_path / name))
    data._load_usps.cache_clear()
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        load("usps", tmp_path)


def test_unknown_source():
    with pytest.raises(DataError, match="unknown data source"):
        load("kmnist")


def test_libsvm_copy_through_torchvision(tmp_path):
    rng = np.random.default_rng(1)
    for name, rows in (("usps.bz2", 8), ("usps.t.bz2", 4)):
        lines = []
        for i in range(rows):
            pixels = rng.uniform(-1, 1, 256)
            lines.append(f"{i % 10 + 1} " + " ".join(f"{j + 1}:{p:.6f}"
                                                      for j, p in enumerate(pixels)))
        with bz2.open(tmp_path / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
    split = load("usps-libsvm", tmp_path, download=False)
    assert split.train.images.shape == (8, 1, 16, 16) and len(split.test) == 4
    assert split.train.labels.tolist()[:3] == [0, 1, 2]  # LIBSVM's 1..10 become 0..9
    assert -1.0 <= float(split.train.images.min()) and float(split.train.images.max()) <= 1.0
    # torchvision quantises to 8 bits: at most 256 distinct levels.
    assert len(torch.unique(split.train.images)) <= 256


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    header = np.array([0x803, n, 28, 28], dtype=">i4").tobytes()
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8)
                                                         .tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        np.array([0x801, n], dtype=">i4").tobytes() + labels.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(2)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 60), ("t10k", 30)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 4:24, 10:18] = rng.integers(0, 256, (n, 20, 8))  # a stroke-like block
        _write_idx(raw, prefix, images, np.arange(n) % 10)
    return tmp_path


def test_mnist1989_subset_is_fixed_by_the_seed(fake_mnist):
    first = load("mnist1989", fake_mnist, download=False, seed=5, n_train=20, n_test=7)
    again = load("mnist1989", fake_mnist, download=False, seed=5, n_train=20, n_test=7)
    other = load("mnist1989", fake_mnist, download=False, seed=6, n_train=20, n_test=7)
    assert first.train.images.shape == (20, 1, 16, 16) and len(first.test) == 7
    assert torch.equal(first.train.images, again.train.images)
    assert torch.equal(first.train.labels, again.train.labels)
    assert not torch.equal(first.train.labels, other.train.labels)
    assert float(first.train.images.min()) >= -1.0 and float(first.train.images.max()) <= 1.0
    assert float(first.train.images[0, 0, 0, 0]) == -1.0  # black corner -> background


def test_mnist1989_asks_for_too_many(fake_mnist):
    with pytest.raises(DataError, match="asked for"):
        load("mnist1989", fake_mnist, download=False, n_train=1000)


def test_mnist1989_missing_files_are_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="MNIST"):
        load("mnist1989", tmp_path, download=False)


def test_validation_split_is_disjoint_and_reproducible():
    # each image holds its own index, so the two parts can be told apart
    images = (torch.arange(100, dtype=torch.float32) / 100).view(100, 1, 1, 1).expand(100, 1, 16, 16)
    digits = Digits(images.contiguous(), torch.arange(100) % 10)
    fit, held = validation_split(digits, 0.2, seed=3)
    fit_again, held_again = validation_split(digits, 0.2, seed=3)
    assert len(fit) == 80 and len(held) == 20
    fit_ids, held_ids = set(fit.images[:, 0, 0, 0].tolist()), set(held.images[:, 0, 0, 0].tolist())
    assert not fit_ids & held_ids and len(fit_ids | held_ids) == 100
    assert torch.equal(held.images, held_again.images) and torch.equal(fit.images, fit_again.images)
    assert not torch.equal(validation_split(digits, 0.2, seed=4)[1].images, held.images)
    with pytest.raises(ValueError):
        validation_split(digits, 1.5)


def test_digits_refuse_mismatched_shapes():
    with pytest.raises(DataError):
        Digits(torch.zeros(3, 1, 16, 16), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError):
        Digits(torch.zeros(3, 16, 16), torch.zeros(3, dtype=torch.int64))




class _Response:
    """A server's answer: ``body``, announcing ``length`` bytes (None: no Content-Length)."""

    def __init__(self, body: bytes, length: int | None) -> None:
        self.body, self.headers = body, {} if length is None else {"Content-Length": str(length)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size):
        block, self.body = self.body[:size], self.body[size:]
        return block


def test_download_without_a_checksum_lands_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: _Response(b"abc", 3))
    target = data.download("http://example.invalid/x.bin", tmp_path / "sub" / "x.bin")
    assert target.read_bytes() == b"abc" and os.listdir(tmp_path / "sub") == ["x.bin"]


def test_download_refuses_a_short_body_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: _Response(b"ab", 5))
    with pytest.raises(data.DownloadError, match="got 2 of 5 bytes"):
        data.download("http://example.invalid/x.bin", tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


def test_download_offline_says_so_on_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(data.DownloadError, match="offline") as caught:
        data.download("http://example.invalid/x.bin", tmp_path / "x.bin", "0" * 64)
    assert "\n" not in str(caught.value) and list(tmp_path.iterdir()) == []
