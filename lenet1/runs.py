"""Run configuration and run folders.

A run folder holds everything needed to trust and reuse one training run:

- ``config.json``: the :class:`RunConfig` that made it;
- ``history.json``: the figures before training and after every pass;
- ``weights.safetensors``: the final parameters (plain tensors, nothing executable);
- ``environment.json``: library versions and the machine, for reproducing it.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .data import Digits, load, validation_split
from .model import BACKGROUND, BIAS_INITS, INITS, UNITS, build_model, connection_table
from .train import SGD, History, PassRecord, StepRule, train_online

RUN_FILES = ("config.json", "history.json", "weights.safetensors")
MODELS = ("lenet1", "fc40")
OPTIMIZERS = ("sgd", "sdlm")
ENGINES = ("reference", "fast")
SCHEDULES = ("constant", "1998")
DEFAULT_LR = {"sgd": 0.03, "sdlm": 0.0001}


class RunError(ValueError):
    """A run folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers. Defaults are the paper's protocol."""

    data: str = "usps"
    model: str = "lenet1"
    unit: str = "scaled_tanh"
    init: str = "fan_in"
    table: str = "block"
    h2_background: float = BACKGROUND
    # Biases start at zero (the paper gives no bias init) or, "uniform", drawn like the weights.
    bias_init: str = "zero"
    passes: int = 23
    optimizer: str = "sgd"
    # SGD's learning rate, or SDLM's global eta for the first pass; None: the optimiser's
    # default (DEFAULT_LR).
    lr: float | None = None
    # SDLM only: "constant" eta, or the 1998 paper's decay (0.0005 for 2 passes, 0.0002 for 3,
    # 0.0001 for 3, 0.00005 for 4, then 0.00001) scaled so that its first eta is ``lr``.
    schedule: str = "constant"
    mu: float = 0.002
    curvature_patterns: int = 500
    seed: int = 0
    engine: str = "reference"
    # Calibration: hold out this fraction of the training digits (drawn from holdout_seed) and
    # report them in place of the test set, which such a run never sees.
    holdout: float = 0.0
    holdout_seed: int = 0

    def __post_init__(self) -> None:
        choices = {"model": MODELS, "unit": UNITS, "init": INITS, "optimizer": OPTIMIZERS,
                   "engine": ENGINES, "bias_init": BIAS_INITS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        connection_table(self.table)  # raises on a bad name
        if self.passes < 0:
            raise ValueError(f"passes must be >= 0, got {self.passes}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.schedule != "constant" and self.optimizer != "sdlm":
            raise ValueError("a decaying schedule applies to the sdlm optimizer only")
        if not self.mu > 0 or self.curvature_patterns < 1:
            raise ValueError("mu must be > 0 and curvature_patterns >= 1")
        if not self.lr > 0:  # type: ignore[operator]
            raise ValueError(f"the learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must lie in [0, 1), got {self.holdout}")
        if not -1.0 <= self.h2_background <= 1.0:
            raise ValueError(f"h2_background must lie in [-1, 1], got {self.h2_background}")

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise RunError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return cls(**values)


def make_model(config: RunConfig) -> nn.Module:
    """The network the configuration describes, its weights drawn from ``config.seed``."""
    torch.manual_seed(config.seed)
    return build_model(config.model, unit=config.unit, init=config.init,  # type: ignore[arg-type]
                       table=config.table, h2_background=config.h2_background,
                       bias_init=config.bias_init)  # type: ignore[arg-type]


def make_rule(config: RunConfig) -> StepRule:
    assert config.lr is not None  # resolved by RunConfig
    if config.optimizer == "sdlm":
        from .sdlm import LENET5_SCHEDULE, SDLM

        options: dict[str, Any] = {"mu": config.mu, "patterns": config.curvature_patterns,
                                   "seed": config.seed}
        if config.schedule == "1998":
            return SDLM.scaled(config.lr / LENET5_SCHEDULE[0][1], **options)
        return SDLM.constant(config.lr, **options)
    return SGD(config.lr)


def make_engine(config: RunConfig, progress: bool = False) -> Any:
    if config.engine == "fast":
        from .engine import FastEngine

        return FastEngine()
    from .train import ReferenceEngine

    return ReferenceEngine(progress=progress)


def environment() -> dict[str, str]:
    import numpy

    from . import __version__

    return {"lenet1": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(),
            "machine": platform.machine(), "torch_threads": str(torch.get_num_threads())}


def fit_and_evaluation_sets(config: RunConfig, data_root: str | None = None
                            ) -> tuple[Digits, Digits]:
    """The digits a run trains on and the ones it reports as "test": the test set, or with
    ``holdout`` > 0 the held-out part of the training set."""
    split = load(config.data, data_root)
    if config.holdout > 0:
        return validation_split(split.train, config.holdout, config.holdout_seed)
    return split.train, split.test


def train_run(config: RunConfig, out: Path | None = None, data_root: str | None = None,
              on_pass: Callable[[PassRecord], None] | None = None,
              progress: bool = False) -> tuple[nn.Module, History]:
    """Train the configured network on the configured data; write a run folder if ``out``."""
    train, evaluation = fit_and_evaluation_sets(config, data_root)
    model = make_model(config)
    history = train_online(model, train, evaluation, config.passes, make_rule(config),
                           make_engine(config, progress), on_pass=on_pass, progress=progress)
    if out is not None:
        save_run(out, config, model, history)
    return model, history


def save_run(out: Path, config: RunConfig, model: nn.Module, history: History) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(history.to_json(), indent=1) + "\n")
    (out / "environment.json").write_text(json.dumps(environment(), indent=2) + "\n")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(out / "weights.safetensors"))


@dataclass
class Run:
    path: Path
    config: RunConfig
    history: History
    model: nn.Module


def load_run(path: str | Path) -> Run:
    """Read a run folder back: its configuration, history and trained network."""
    folder = Path(path)
    if not folder.is_dir():
        raise RunError(f"{folder} is not a folder")
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise RunError(f"{folder} is not a run folder: it lacks {', '.join(missing)}")
    try:
        config = RunConfig.from_json(json.loads((folder / "config.json").read_text()))
        history = History.from_json(json.loads((folder / "history.json").read_text()))
        state = load_file(str(folder / "weights.safetensors"))
    except (ValueError, TypeError, KeyError, OSError, SafetensorError) as error:
        raise RunError(f"{folder} holds an unreadable run: {error}") from None
    model = build_model(config.model, unit=config.unit, init=config.init,  # type: ignore[arg-type]
                        table=config.table, h2_background=config.h2_background,
                        bias_init=config.bias_init)  # type: ignore[arg-type]
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RunError(f"{folder}: the weights do not fit the configured network: "
                       f"{str(error).splitlines()[0]}") from None
    return Run(folder, config, history, model)


def code_fingerprint() -> str:
    """A hash of the package's source: a cached run made by other code is never reused."""
    import hashlib

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def runs_root(root: str | Path | None = None) -> Path:
    """Where cached runs live: ``root``, else ``$LENET1_RUNS``, else ``<project>/runs``."""
    import os

    from .data import project_root

    if root is not None:
        return Path(root)
    return Path(os.environ.get("LENET1_RUNS") or project_root() / "runs")


def run_folder(config: RunConfig, root: str | Path | None = None) -> Path:
    """Where the cached run of ``config`` lives: named by a hash of the configuration and of
    the package's source."""
    import hashlib

    key = hashlib.sha256(json.dumps([asdict(config), code_fingerprint()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    return runs_root(root) / f"{config.model}-{config.optimizer}-s{config.seed}-{key}"


def cached_run(config: RunConfig, root: str | Path | None = None,
               data_root: str | None = None,
               on_pass: Callable[[PassRecord], None] | None = None) -> Run:
    """The run for ``config``, trained now or reloaded from an earlier identical one.

    The folder's name is a hash of the configuration and of the package's source, so a change
    to either trains afresh: the book never shows numbers from older code.
    """
    folder = run_folder(config, root)
    if all((folder / name).is_file() for name in RUN_FILES):
        return load_run(folder)
    model, history = train_run(config, data_root=data_root, on_pass=on_pass)
    return save_run_atomically(folder, config, model, history)


def save_run_atomically(folder: Path, config: RunConfig, model: nn.Module,
                        history: History) -> Run:
    """Save a run beside ``folder`` and then move it there, so that a run interrupted half-way
    is never mistaken for a finished one."""
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    save_run(partial, config, model, history)
    if folder.exists():
        shutil.rmtree(folder)
    partial.replace(folder)
    return Run(folder, config, history, model)
