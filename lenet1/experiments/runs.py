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
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..data import Digits, Split, load, validation_split
from ..nets import (
    BACKGROUND,
    BIAS_INITS,
    INITS,
    OUTPUT_UNITS,
    UNITS,
    build_model,
    connection_table,
)
from ..train.online import SGD, History, PassRecord, StepRule, train_online

RUN_FILES = ("config.json", "history.json", "weights.safetensors")
MODELS = ("lenet1", "fc40")
OPTIMIZERS = ("sgd", "sdlm")
ENGINES = ("reference", "fast")
SCHEDULES = ("constant", "1998")
RECORDS = ("every", "last")
ORDERS = ("fixed", "shuffled")
DEFAULT_LR = {"sgd": 0.03, "sdlm": 0.0001}
# The squared error of a pattern, as a multiple of its mean over the 10 outputs (our E_p).
LOSS_SCALES = {"mean": 1.0, "half_mean": 0.5, "sum": 10.0, "half_sum": 5.0}


class RunError(ValueError):
    """A run folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers. The defaults are the paper's network,
    initialisation and online loop with plain SGD at 0.03 (the step of earlier reproductions);
    the paper's optimiser is ``optimizer="sdlm"``, whose constants the paper study calibrates."""

    data: str = "usps"
    model: str = "lenet1"
    unit: str = "scaled_tanh"
    # The output units: None, like the hidden ones; or another (OUTPUT_UNITS), such as
    # "sigmoid", trained on 0/1 targets.
    output: str | None = None
    init: str = "fan_in"
    table: str = "block"
    h2_background: float = BACKGROUND
    input_background: float = BACKGROUND
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
    # The squared error each pattern's step descends: its mean over the outputs (the paper's
    # reported MSE), half that, the sum, or half the sum (LOSS_SCALES; see loss_factor).
    loss: str = "mean"
    # "fixed": the training set's own order in every pass (the paper); "shuffled": reshuffled
    # before every pass, the orders drawn from the seed.
    order: str = "fixed"
    seed: int = 0
    engine: str = "reference"
    # Calibration: hold out this fraction of the training digits (drawn from holdout_seed) and
    # report them in place of the test set, which such a run never sees.
    holdout: float = 0.0
    holdout_seed: int = 0
    # "every": both sets evaluated before training and after every pass (learning curves);
    # "last": after the last pass only, for sweeps that read only the end (the same weights and
    # last record, without the evaluations nothing reads).
    record: str = "every"

    def __post_init__(self) -> None:
        if self.output == self.unit:
            # One spelling per network: None is "like the hidden units", which also follows
            # the unit through dataclasses.replace(config, unit=...).
            object.__setattr__(self, "output", None)
        choices = {"model": MODELS, "unit": UNITS, "init": INITS,
                   "optimizer": OPTIMIZERS, "engine": ENGINES, "bias_init": BIAS_INITS,
                   "record": RECORDS, "loss": tuple(LOSS_SCALES), "order": ORDERS}
        if self.output is not None:
            choices["output"] = OUTPUT_UNITS
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
        for name in ("h2_background", "input_background"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [-1, 1], got {getattr(self, name)}")

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
    return _network(config)


def _network(config: RunConfig) -> nn.Module:
    """The network the configuration describes, every option of it (its units, outputs and
    backgrounds as trained), with weights drawn from torch's current random state: what
    :func:`make_model` seeds and :func:`load_run` fills with the trained weights."""
    return build_model(config.model, unit=config.unit, init=config.init,  # type: ignore[arg-type]
                       table=config.table, h2_background=config.h2_background,
                       bias_init=config.bias_init,  # type: ignore[arg-type]
                       output=config.output,  # type: ignore[arg-type]
                       input_background=config.input_background)


def loss_factor(config: RunConfig) -> float:
    """The loss each pattern's step descends, as a multiple of the squared error averaged over
    the 10 outputs in the +-1 code (the ``mse`` every history records): the normalisation's
    scale, times 1/4 for sigmoid outputs, whose 0/1 targets halve every difference
    (:func:`lenet1.nets.activation`). It is also what turns a history's MSE into the one the
    run's own loss reports."""
    return LOSS_SCALES[config.loss] * (0.25 if config.output == "sigmoid" else 1.0)


def make_rule(config: RunConfig) -> StepRule:
    """The run's step rule, on the mean squared error in the +-1 code that every engine
    descends. A loss ``c`` times as large has ``c`` times the gradient and ``c`` times the
    Gauss-Newton curvature, so SGD at ``lr`` on it is SGD at ``c lr`` here, and SDLM's step
    ``eta c g / (mu + c h)`` is ``eta g / (mu / c + h)``: SDLM with ``mu / c``."""
    assert config.lr is not None  # resolved by RunConfig
    scale = loss_factor(config)
    if config.optimizer == "sdlm":
        from ..train.sdlm import LENET5_SCHEDULE, SDLM

        options: dict[str, Any] = {"mu": config.mu / scale,
                                   "patterns": config.curvature_patterns, "seed": config.seed}
        if config.schedule == "1998":
            return SDLM.scaled(config.lr / LENET5_SCHEDULE[0][1], **options)
        return SDLM.constant(config.lr, **options)
    return SGD(config.lr * scale)


def shuffle_seed(config: RunConfig) -> int | None:
    """The seed of the run's pattern orders (its own seed), or None for the constant order."""
    return config.seed if config.order == "shuffled" else None


def make_engine(config: RunConfig, progress: bool = False) -> Any:
    if config.engine == "fast":
        from ..engine.fast import FastEngine

        return FastEngine()
    from ..train.online import ReferenceEngine

    return ReferenceEngine(progress=progress)


def environment() -> dict[str, str]:
    """The machine and library versions, for whoever wants to redo a run."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    try:
        ours = version("lenet1")
    except PackageNotFoundError:  # a source tree on the path, not installed
        ours = "unknown"
    return {"lenet1": ours, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(),
            "machine": platform.machine(), "torch_threads": str(torch.get_num_threads())}


def fit_and_evaluation_sets(config: RunConfig, data_root: str | None = None,
                            split: Split | None = None) -> tuple[Digits, Digits]:
    """The digits a run trains on and the ones it reports as "test": the test set, or with
    ``holdout`` > 0 the held-out part of the training set. From ``split`` (the digits of
    ``config.data``, e.g. as sent to a worker), else loaded from ``data_root``."""
    split = split if split is not None else load(config.data, data_root)
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
                           make_engine(config, progress), on_pass=on_pass,
                           record_every=config.record == "every",
                           shuffle_seed=shuffle_seed(config))
    if out is not None:
        save_run(out, config, model, history)
    return model, history


def save_run(out: Path, config: RunConfig, model: nn.Module | None, history: History,
             state: Mapping[str, Tensor] | None = None,
             machine: Mapping[str, str] | None = None) -> None:
    """Write a run folder: the network's weights (or ``state``, trained elsewhere) and the
    machine that trained it (default: this one)."""
    if state is None:
        if model is None:
            raise ValueError("save_run needs the trained network or its state")
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(history.to_json(), indent=1) + "\n")
    (out / "environment.json").write_text(json.dumps(dict(machine or environment()), indent=2)
                                          + "\n")
    save_file(dict(state), str(out / "weights.safetensors"))


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
    model = _network(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RunError(f"{folder}: the weights do not fit the configured network: "
                       f"{str(error).splitlines()[0]}") from None
    return Run(folder, config, history, model)


# --- the curvature during training (the SDLM chapter) ----------------------------------------

@dataclass
class CurvatureTrace:
    """Per pass and parameter tensor: the median ``h_kk`` and the median step
    ``eta / (mu + h_kk)`` SDLM used for that pass (connections absent from H2's table left
    out), and the run's history."""

    config: RunConfig
    passes: list[int]
    median_h: dict[str, list[float]]
    median_step: dict[str, list[float]]
    eta: list[float]
    history: History = field(repr=False)


def trace_curvature(config: RunConfig, train: Digits, test: Digits
                    ) -> tuple[CurvatureTrace, nn.Module]:
    """Train ``config`` (SDLM) on the compiled engine, snapshotting the rule's curvature before
    every pass; the trace and the trained network."""
    from ..engine.fast import FastEngine
    from ..nets import LeNet1
    from ..train.sdlm import SDLM, h2_mask

    model = make_model(config)
    rule = make_rule(config)
    if not isinstance(rule, SDLM):
        raise ValueError(f"a curvature trace needs the sdlm optimizer, got {config.optimizer!r}")
    passes: list[int] = []
    median_h: dict[str, list[float]] = {}
    median_step: dict[str, list[float]] = {}
    etas: list[float] = []

    def snapshot(record: Any) -> None:
        if rule.last_pass != record.pass_index or not rule.last_curvature:
            return
        passes.append(record.pass_index)
        eta = rule.eta(record.pass_index)
        etas.append(eta)
        for name, h in rule.last_curvature.items():
            values = h
            if name == "h2_weight" and isinstance(model, LeNet1):
                values = h[h2_mask(model).expand_as(h).bool()]
            values = values.flatten().double()
            median_h.setdefault(name, []).append(float(values.median()))
            median_step.setdefault(name, []).append(float((eta / (rule.mu + values)).median()))

    history = train_online(model, train, test, config.passes, rule, FastEngine(),
                           on_pass=snapshot)
    return CurvatureTrace(config, passes, median_h, median_step, etas, history), model

