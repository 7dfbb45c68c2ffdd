"""The same 9,760 weights trained the modern way.

:class:`~lenet1.nets.ModernLeNet1` is the 1989 network's topology (H1 12x8x8 with unshared biases, H2 12x4x4
seeing 8 of 12 maps through a connection table, H3 30, output 10) with today's options:
ReLU units, dropout before H3, logits for softmax + cross-entropy, PyTorch/Kaiming inits. Its
parameters have :class:`~lenet1.nets.LeNet1`'s names and shapes, so a state dict moves
between the two. It is deliberately *not* a LeNet1 subclass: code that special-cases LeNet1
(the diagonal-Hessian optimiser, which assumes squashing units) must not take it silently.

:func:`train_minibatch` trains it (or a LeNet1) with mini-batches, AdamW or SGD, a learning-rate
schedule, augmentation and optional weight averaging, evaluating both whole sets after every
pass with the network in evaluation mode.

What the figures mean (:class:`ModernRecord`):

- ``loss`` fields: the training objective on the whole set in evaluation mode -- the MSE of
  :func:`lenet1.train.online.loss_per_pattern`, or the cross-entropy (natural log, mean over
  patterns, *without* label smoothing so that runs with and without it compare).
- ``Metrics.mse``: always the paper's quantity, the squared error against +-1 place-coded
  targets averaged over patterns and units. A squashed network's outputs are used as they are;
  a logits network's are mapped onto the same scale first, ``2 * softmax - 1`` (a sure, right
  answer scores 0; the figure is 4/10 of the Brier score).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augment import Augmentation
from ..data import Digits
from ..nets import (
    ModernLeNet1,
    Teacher,
    check_images,
)
from ..threads import on_one_thread
from .online import History, Metrics, PassRecord, loss_per_pattern, metrics_of, predict

LOSSES: tuple[str, ...] = ("mse", "cross_entropy")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear", "linear_to_third")


def _gives_logits(model: nn.Module) -> bool:
    return getattr(model, "output", "squashed") == "logits"


# --- evaluation -------------------------------------------------------------------------------


def place_coded(model: nn.Module, outputs: Tensor) -> Tensor:
    """Outputs on the paper's +-1 place-code scale: a logits network's as 2 softmax - 1."""
    return 2 * outputs.softmax(dim=1) - 1 if _gives_logits(model) else outputs


#: The temperature that softens a teacher's outputs and the student's alike in distillation.
DISTIL_TEMPERATURE = 2.0


def objective(outputs: Tensor, labels: Tensor, loss: str, label_smoothing: float = 0.0,
              distil: float = 0.0, soft: Tensor | None = None) -> Tensor:
    """The mean training loss of a batch: MSE per pattern and unit, or cross-entropy; with
    ``distil`` > 0, that weight of :func:`distillation` towards ``soft`` and the rest of the
    cross-entropy."""
    if loss == "cross_entropy":
        value = F.cross_entropy(outputs, labels, label_smoothing=label_smoothing)
        if distil:
            if soft is None:
                raise ValueError("distil > 0 needs the teacher's soft targets")
            value = (1 - distil) * value + distil * distillation(outputs, soft).mean()
        return value
    from ..data import place_code

    return loss_per_pattern(outputs, place_code(labels)).mean()


def distillation(logits: Tensor, soft: Tensor) -> Tensor:
    """Per pattern, Hinton et al.'s (2015) distillation loss: the cross-entropy from a
    teacher's probabilities at :data:`DISTIL_TEMPERATURE` T (``soft``, rows summing to 1) to
    the student's softmax at T, times T^2 (so its gradient keeps the scale of a hard target's
    as T changes). It is the Kullback-Leibler divergence plus the teacher's entropy, a constant:
    the same gradient."""
    temperature = DISTIL_TEMPERATURE
    return -(soft * (logits / temperature).log_softmax(dim=-1)).sum(dim=-1) * temperature ** 2


def check_soft_targets(soft: Tensor | None, configs: list[ModernConfig], count: int
                       ) -> None:
    """A distilling config needs a teacher's probabilities for each of ``count`` training
    digits, (count, 10), finite and each row a distribution."""
    if not any(c.distil for c in configs):
        return
    if soft is None:
        raise ValueError("a config with distil > 0 needs the teacher's soft targets")
    if not isinstance(soft, Tensor) or soft.dtype != torch.float32 \
            or tuple(soft.shape) != (count, 10):
        raise ValueError(f"soft targets must be a float32 tensor of shape ({count}, 10), got "
                         f"{getattr(soft, 'dtype', type(soft).__name__)} "
                         f"{tuple(getattr(soft, 'shape', ()))}")
    if not bool(torch.isfinite(soft).all()) or bool((soft < 0).any()) \
            or not torch.allclose(soft.sum(dim=1), torch.ones(count), atol=1e-4):
        raise ValueError("soft targets must be probabilities: finite, >= 0, rows summing to 1")


def evaluate_modern(model: nn.Module, digits: Digits, loss: str, *, checked: bool = False
                    ) -> tuple[Metrics, float]:
    """Metrics and the plain (unsmoothed) loss on a whole set, the network in evaluation mode
    (``checked``: as :func:`~lenet1.train.online.predict`'s)."""
    outputs = predict(model, digits.images, checked=checked)
    value = float(objective(outputs, digits.labels, loss)) if len(digits) else math.nan
    return metrics_of(place_coded(model, outputs), digits.labels), value


@torch.no_grad()
def predict_shifted(model: nn.Module, images: Tensor, max_shift: int = 1) -> Tensor:
    """Test-time augmentation: place-coded outputs averaged over every translation of the
    images by -k..k pixels on each axis ((2k+1)^2 copies; a logits network's probabilities
    are averaged, then mapped to 2 p - 1)."""
    from ..augment import _check_whole, translate

    _check_whole(max_shift, "max_shift", 0, 16)
    check_images(images)  # a shifted copy of good images is good
    total = torch.zeros(len(images), 10)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            total += place_coded(model, predict(model, translate(images, dx, dy), checked=True))
    return total / (2 * max_shift + 1) ** 2


class WeightAverage:
    """An exponential moving average of a network's parameters, kept in a frozen copy.

    ``decay`` near 1 averages over about 1 / (1 - decay) steps. Disconnected H2 weights are 0
    in every copy, so they stay 0 in the average.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for mine, theirs in zip(self.model.parameters(), model.parameters()):
            mine.lerp_(theirs, 1 - self.decay)
        for kept, current in zip(self.model.buffers(), model.buffers()):
            kept.copy_(current)


# --- training ---------------------------------------------------------------------------------


def _positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _whole(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True)
class ModernConfig:
    """Everything :func:`train_minibatch` does, besides the network itself.

    ``weight_decay`` applies to weights only, never biases (LeNet-1's 960 unshared hidden
    biases would otherwise be pulled to 0 for no reason), unless ``decay_biases`` (as
    ``torch.optim.AdamW`` given every parameter does, Karpathy's modern recipe); AdamW
    decouples it (the step is ``w -= lr * weight_decay * w``), SGD adds it to the gradient. The
    schedule multiplies ``lr`` by a factor computed before every step t of T: 1,
    (1 + cos(pi t / T)) / 2, or 1 - t / T; ``linear_to_third`` holds it for a pass and goes
    from 1 in the first pass p = 0 to 1/3 in the last, p = P - 1, as Karpathy's modern recipe
    does: (1 - a) lr + a lr / 3 with a = p / (P - 1). ``wrap``: the shifts are circular (see
    :func:`lenet1.augment.translate`). ``elastic``: the strength in pixels of an elastic
    distortion (:func:`lenet1.augment.random_elastic`), after the shifts, rotation and scaling.
    ``ema``: if > 0, the decay of a weight average that is evaluated instead of the raw
    network, and copied into it when training ends. ``distil``: the weight of a teacher's
    softened outputs in the loss (:func:`distillation`; the cross-entropy to the labels
    has the rest), the trainer given the teacher's probabilities for each training digit as it
    is, whatever the augmentation does to it. ``seed`` decides the order of the
    patterns, the augmentation and dropout (not the initial weights: the network brings them).
    """

    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    batch_size: int = 32
    passes: int = 30
    shuffle: bool = True
    translate: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    ema: float = 0.0
    wrap: bool = False
    elastic: float = 0.0
    decay_biases: bool = False
    distil: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("loss", LOSSES), ("optimizer", OPTIMIZERS),
                              ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing applies to the cross_entropy loss only")
        if isinstance(self.distil, bool) or not isinstance(self.distil, (int, float)) \
                or not 0.0 <= self.distil <= 1.0:
            raise ValueError(f"distil must be a weight in [0, 1], got {self.distil!r}")
        if self.distil and self.loss != "cross_entropy":
            raise ValueError("distil applies to the cross_entropy loss only")
        _positive(self.lr, "lr")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        _whole(self.batch_size, "batch_size", 1)
        _whole(self.passes, "passes", 0)
        _whole(self.seed, "seed", 0)
        if not (self.ema == 0.0 or 0.0 < self.ema < 1.0):
            raise ValueError(f"ema must be 0 (off) or lie in (0, 1), got {self.ema}")
        if not isinstance(self.decay_biases, bool):
            raise ValueError(f"decay_biases must be True or False, got {self.decay_biases!r}")
        self.augmentation()  # raises on bad translate / rotate / scale / wrap / elastic

    def augmentation(self) -> Augmentation:
        return Augmentation(self.translate, self.rotate, self.scale, self.wrap, self.elastic)

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of step ``step`` (0-based) of ``total``."""
        if self.schedule == "constant" or total == 0:
            return self.lr
        if self.schedule == "linear_to_third":
            done = step * self.passes // total  # the passes before this step's
            alpha = done / (self.passes - 1) if self.passes > 1 else 0.0
            return (1 - alpha) * self.lr + alpha * (self.lr / 3)
        fraction = step / total
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * fraction))
        return self.lr * (1 - fraction)


@dataclass
class ModernRecord(PassRecord):
    """A :class:`~lenet1.train.online.PassRecord` plus each set's loss and the pass's learning
    rate. No wall time: a history is a function of the run alone, byte for byte."""

    train_loss: float
    test_loss: float
    lr: float  # the learning rate of the pass's last step


@dataclass
class ModernHistory(History):
    passes: list[ModernRecord] = field(default_factory=list)  # type: ignore[assignment]

    def to_json(self) -> list[dict[str, object]]:
        return [{**row, "train_loss": r.train_loss, "test_loss": r.test_loss, "lr": r.lr}
                for row, r in zip(super().to_json(), self.passes)]

    @classmethod
    def from_json(cls, rows: list[dict[str, object]]) -> ModernHistory:
        return cls([ModernRecord(int(row["pass"]),  # type: ignore[call-overload]
                                 Metrics(**row["train"]),  # type: ignore[arg-type]
                                 Metrics(**row["test"]),  # type: ignore[arg-type]
                                 float(row["train_loss"]),  # type: ignore[arg-type]
                                 float(row["test_loss"]),  # type: ignore[arg-type]
                                 float(row["lr"]))  # type: ignore[arg-type]
                    for row in rows])



def _generator(seed: int, stream: int) -> torch.Generator:
    # Separate streams, so that e.g. switching dropout on leaves the order and shifts alone.
    return torch.Generator().manual_seed(seed * 16 + stream)


def make_optimizer(model: nn.Module, config: ModernConfig) -> torch.optim.Optimizer:
    weights = [p for name, p in model.named_parameters() if not name.endswith("bias")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    groups = [{"params": weights, "weight_decay": config.weight_decay},
              {"params": biases,
               "weight_decay": config.weight_decay if config.decay_biases else 0.0}]
    # foreach=False: one code path whatever the machine, for bit-for-bit repeatability.
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, foreach=False)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, foreach=False)


@on_one_thread
def train_minibatch(model: nn.Module, train: Digits, test: Digits, config: ModernConfig,
                    on_pass: Callable[[ModernRecord], None] | None = None,
                    record_every: bool = True, soft_targets: Tensor | None = None
                    ) -> ModernHistory:
    """Train ``model`` in place by mini-batch gradient descent as ``config`` says.

    Evaluates both whole sets before training (pass 0) and after every pass, in evaluation
    mode (dropout off); with ``record_every=False`` (a run judged by its end alone) after the
    last pass only, or where training stopped because the last mini-batch's loss was no longer
    finite. The weights, and the last record, are the same either way. The same network, data
    and config give the same figures and weights bit for bit (torch runs on one thread
    here); the global random state is neither used nor changed. ``soft_targets``: a teacher's
    probabilities for the training digits, (len(train), 10), needed when ``config.distil``.
    """
    if not isinstance(config, ModernConfig):
        raise TypeError(f"config must be a ModernConfig, got {type(config).__name__}")
    if (config.loss == "cross_entropy") != _gives_logits(model):
        raise ValueError(f"the {config.loss} loss needs a network with "
                         f"{'logits' if config.loss == 'cross_entropy' else 'squashed'} "
                         f"outputs")
    check_images(train.images)
    check_images(test.images)
    if len(train) == 0:
        raise ValueError("the training set is empty")
    check_soft_targets(soft_targets, [config], len(train))
    order_rng, augment_rng, dropout_rng = (_generator(config.seed, s) for s in range(3))
    augmentation = config.augmentation()
    optimizer = make_optimizer(model, config)
    average = WeightAverage(model, config.ema) if config.ema else None
    steps_per_pass = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_pass * config.passes
    history = ModernHistory()
    lr = config.lr_at(0, total_steps)

    def record(pass_index: int) -> None:
        judged = average.model if average is not None else model
        train_metrics, train_loss = evaluate_modern(judged, train, config.loss, checked=True)
        test_metrics, test_loss = evaluate_modern(judged, test, config.loss, checked=True)
        entry = ModernRecord(pass_index, train_metrics, test_metrics, train_loss, test_loss, lr)
        history.passes.append(entry)
        if on_pass is not None:
            on_pass(entry)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged by pass {pass_index}: the training "
                                     f"loss is {train_loss}; lower the learning rate")

    if record_every or config.passes == 0:
        record(0)
    step = 0
    for pass_index in range(1, config.passes + 1):
        model.train()
        order = (torch.randperm(len(train), generator=order_rng) if config.shuffle
                 else torch.arange(len(train)))
        for begin in range(0, len(train), config.batch_size):
            index = order[begin:begin + config.batch_size]
            # The training digits were checked once above, so the mini-batches are not.
            images, labels = train.images[index], train.labels[index]
            if augmentation.active:
                images = augmentation.unchecked(images, augment_rng)
            lr = config.lr_at(step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if isinstance(model, (ModernLeNet1, Teacher)):
                outputs = model.states(images, dropout_rng)["out"]
            else:
                outputs = model(images)
            soft = soft_targets[index] if config.distil and soft_targets is not None else None
            loss = objective(outputs, labels, config.loss, config.label_smoothing,
                             config.distil, soft)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model)
            step += 1
        model.eval()
        if record_every:
            record(pass_index)
        elif pass_index == config.passes or not math.isfinite(loss.item()):
            record(pass_index)  # raises if the training loss is no longer finite
    if average is not None:
        model.load_state_dict(average.model.state_dict())
    return history


# --- cost -------------------------------------------------------------------------------------
