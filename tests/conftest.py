"""Shared fixtures. Tests that need the paper's digits skip when no data root is configured."""

from __future__ import annotations

import os

import pytest
import torch

from lenet1.data import SHA256, Digits, Split, data_root, load


def _real_data_present() -> bool:
    root = data_root()
    return all((root / name).is_file() for name in SHA256)


requires_data = pytest.mark.skipif(
    not _real_data_present() and os.environ.get("CI") != "true",
    reason="the zip code digits are not under the data root (set LENET1_DATA)")


@pytest.fixture(scope="session")
def usps() -> Split:
    return load("usps")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Deterministic and fastest for the small batch-1 work of the tests.
    torch.set_num_threads(1)


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 16, 16) grey levels uniform in [-1, 1], from their own generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=generator) * 2 - 1


def random_digits(n: int, seed: int = 0) -> Digits:
    """Random images with the labels 0, 1, ..., 9, 0, ...: the arithmetic does not care."""
    return Digits(random_images(n, seed), torch.arange(n) % 10)


def toy_digits(n: int, seed: int, noise: float = 0.3) -> Digits:
    """Ten fixed random templates plus noise: learnable, so a loss can be seen to fall."""
    templates = torch.rand(10, 1, 16, 16, generator=torch.Generator().manual_seed(99)) * 2 - 1
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = templates[labels] + noise * torch.randn(n, 1, 16, 16, generator=generator)
    return Digits(images.clamp(-1, 1), labels)
