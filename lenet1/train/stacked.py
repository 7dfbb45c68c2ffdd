"""Several mini-batch networks trained as one: the modern study's runs, a few at a time.

A mini-batch step of one LeNet-1 costs PyTorch about twice its forward and backward passes in
per-operator overhead (the optimiser's 8 tensors, the augmentation, the loss, the bookkeeping;
``benchmarks/minibatch_step.py`` measures it). :func:`train_stacked` trains K networks with one
set of operators: their parameters are stacked (H1 and H2 as grouped convolutions, K groups of
12 maps; H3 and the output as batched products), each member's mini-batch is its own, and each
member's loss is its own mean, so the sum of the losses gives every member exactly its own
gradient. One optimiser step then moves all K.

What each member keeps to itself, exactly as :func:`~lenet1.train.minibatch.train_minibatch`
draws and uses it alone: its seed's three random streams (the order of the patterns, the
augmentation, the dropout masks; so a member's draws do not depend on who else is in the
stack), its learning rate and schedule, momentum, weight decay, shuffling, augmentation, label
smoothing, distillation weight and weight average. What the members share, because it is the
shape of the computation: the units, the output layer and its loss, the optimiser, the
mini-batch size, the number of passes, the dropout rate, the connection table and the
training digits, with a teacher's probabilities for them (:func:`stack_key`).

A member's numbers are those it gets alone to float32 rounding, not bit for bit: a grouped
convolution's backward pass, a batched product and this module's optimiser add in another
order than one network's operators do (``tests/test_stacked.py`` bounds the difference for
every option). They are bit for bit repeatable for the same stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..augment import augment_stack
from ..data import Digits, place_code
from ..nets import (
    BACKGROUND,
    PAD_AFTER,
    PAD_BEFORE,
    STRIDE,
    ModernLeNet1,
    _squash,
    _unit,
    check_images,
)
from ..threads import on_one_thread
from .minibatch import (
    ModernConfig,
    ModernHistory,
    ModernRecord,
    _generator,
    check_soft_targets,
    distillation,
    evaluate_modern,
)
from .online import UNMEASURED

PAD = (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)
WEIGHTS = ("h1_weight", "h2_weight", "h3_weight", "out_weight")
BIASES = ("h1_bias", "h2_bias", "h3_bias", "out_bias")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults, as train_minibatch


def stack_key(model: ModernLeNet1, config: ModernConfig) -> tuple[object, ...]:
    """What members of one stack must share (see the module's docstring)."""
    return (model.unit, model.output, model.dropout, model.h2_background,
            tuple(model.table.flatten().tolist()), config.loss, config.optimizer,
            config.batch_size, config.passes, config.decay_biases)


@dataclass
class StackedRun:
    """One member's outcome: its history and whether its training loss stopped being finite
    (its history then ends at the pass where that was seen)."""

    history: ModernHistory
    diverged: bool = False


class _Stack:
    """K networks' parameters stacked along the first axis (H1, H2: K x 12 maps), all held in
    one (K, P) matrix, a member's P parameters in its row (:data:`WEIGHTS` first), so that the
    optimiser and the weight average update every parameter of every member in one operation
    each, a member's hyperparameters a (K, 1) column."""

    def __init__(self, models: Sequence[ModernLeNet1]) -> None:
        first = models[0]
        self.k = len(models)
        self.unit, self.output = first.unit, first.output
        self.dropout, self.background = first.dropout, first.h2_background
        self.mask = first.h2_mask.repeat(self.k, 1, 1, 1)
        self.shapes = {name: tuple(getattr(first, name).shape) for name in WEIGHTS + BIASES}
        self.sizes = [math.prod(shape) for shape in self.shapes.values()]
        self.weight_entries = sum(self.sizes[:len(WEIGHTS)])  # a row's weights come first
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([getattr(m, name).detach().flatten()
                                                for name in self.shapes])
                                     for m in models]).requires_grad_()

    def split(self, flat: Tensor) -> dict[str, Tensor]:
        """A (K, P) matrix (the parameters, their gradient, an average) as (K, ...) views,
        one per parameter."""
        return {name: part.view(self.k, *shape)
                for (name, shape), part in zip(self.shapes.items(), flat.split(self.sizes, 1))}

    @staticmethod
    def column(values: Sequence[float]) -> Tensor:
        """(K, 1): one number per member, to broadcast over its row."""
        return torch.tensor(values, dtype=torch.float32).unsqueeze(1)

    def forward(self, images: Tensor, params: dict[str, Tensor],
                keep: Tensor | None = None) -> Tensor:
        """Outputs (K, B, 10) for images (K, B, 1, 16, 16), member k's through network k;
        ``keep``: (K, B, 192) dropout masks (training), None: no dropout (evaluation)."""
        k, batch = images.shape[0], images.shape[1]
        maps = k * 12
        w1 = params["h1_weight"].reshape(maps, 1, 5, 5)
        w2 = params["h2_weight"].reshape(maps, 12, 5, 5)
        x = images.reshape(k, batch, 16, 16).transpose(0, 1)  # member k is input channel k
        # Channels last: mkldnn's grouped convolutions run twice as fast on this layout, and
        # the biases, units and their gradients on its (B, y, x, map) view, all contiguous.
        last = torch.channels_last
        a1 = F.conv2d(F.pad(x, PAD, value=BACKGROUND).contiguous(memory_format=last),
                      w1.contiguous(memory_format=last), stride=STRIDE, groups=k)
        h1 = _unit(a1.permute(0, 2, 3, 1) + params["h1_bias"].permute(2, 3, 0, 1)
                   .reshape(8, 8, maps), self.unit)
        w2 = (w2 * self.mask).contiguous(memory_format=last)
        if self.background == 0.0:
            # Zeros padded inside the convolution rather than in a padded copy of H1, which
            # costs more to write and read back than the convolution saves. Two on every side:
            # the stride-2 fields never reach the last row or column, so they read what (2, 1)
            # gives them. The same products, so the same numbers to rounding (on the study's
            # stacks, bit for bit).
            a2 = F.conv2d(h1.permute(0, 3, 1, 2), w2, stride=STRIDE, padding=PAD_BEFORE,
                          groups=k)
        else:
            a2 = F.conv2d(F.pad(h1, (0, 0, *PAD), value=self.background).permute(0, 3, 1, 2),
                          w2, stride=STRIDE, groups=k)
        h2 = _unit(a2.permute(0, 2, 3, 1) + params["h2_bias"].permute(2, 3, 0, 1)
                   .reshape(4, 4, maps), self.unit)
        # (B, y, x, member, map) to each member's (map, y, x) units: (K, B, 192)
        h2_flat = h2.view(batch, 16, k, 12).permute(2, 0, 3, 1).reshape(k, batch, 192)
        if keep is not None:
            h2_flat = h2_flat * keep / (1 - self.dropout)  # as ModernLeNet1 does
        h3 = _unit(torch.baddbmm(params["h3_bias"].unsqueeze(1), h2_flat,
                                 params["h3_weight"].transpose(1, 2)), self.unit)
        logits = torch.baddbmm(params["out_bias"].unsqueeze(1), h3,
                               params["out_weight"].transpose(1, 2))
        return logits if self.output == "logits" else _squash(logits, self.unit)


def _member_losses(outputs: Tensor, labels: Tensor, loss: str, smoothing: Tensor,
                   distil: Tensor | None = None, soft: Tensor | None = None) -> Tensor:
    """(K,) mean losses of (K, B, 10) outputs: cross-entropy with each member's label
    smoothing (as F.cross_entropy computes it) and, given ``distil`` (K, 1) and ``soft`` (K,
    B, 10), each member's weight of :func:`~lenet1.train.minibatch.distillation`; or the MSE
    of the place-coded targets."""
    if loss == "cross_entropy":
        log_p = outputs.log_softmax(dim=2)
        nll = -log_p.gather(2, labels.unsqueeze(2)).squeeze(2)
        uniform = -log_p.mean(dim=2)
        hard = (1 - smoothing) * nll + smoothing * uniform
        if distil is None or soft is None:
            return hard.mean(dim=1)
        return ((1 - distil) * hard.mean(dim=1, keepdim=True)
                + distil * distillation(outputs, soft).mean(dim=1, keepdim=True)).squeeze(1)
    targets = place_code(labels.flatten()).reshape(*labels.shape, 10)
    return ((outputs - targets) ** 2).mean(dim=2).mean(dim=1)


class _Optimizer:
    """SGD (momentum, weight decay added to the gradient) or AdamW (decoupled decay), as
    torch.optim does them one tensor at a time (the same element-wise operations, so the same
    bits), with each member's own hyperparameters, on the stack's (K, P) matrix at once."""

    def __init__(self, stack: _Stack, configs: Sequence[ModernConfig]) -> None:
        self.stack, self.configs = stack, configs
        # The decayed entries: a row's weights (its first entries), its biases too if the
        # members say so.
        self.decayed = stack.flat.shape[1] if configs[0].decay_biases else stack.weight_entries
        self.kind = configs[0].optimizer
        self.steps = 0
        self.state: list[Tensor] = []
        self.decays = [c.weight_decay for c in configs]
        self.momenta = stack.column([c.momentum for c in configs])

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        self.steps += 1
        grad = self.stack.flat.grad
        if grad is None:
            raise RuntimeError("every parameter needs a gradient before a step")
        if self.kind == "adamw":
            self._adamw(grad, lrs)
        else:
            self._sgd(grad, lrs)

    def _sgd(self, grad: Tensor, lrs: Sequence[float]) -> None:
        params, n = self.stack.flat, self.decayed
        if any(self.decays):
            # grad + decay * p on the decayed entries; addcmul rounds as add(alpha=) does, fused.
            grad[:, :n].addcmul_(params[:, :n], self.stack.column(self.decays))
        if not self.state:
            self.state = [grad.clone()]
        else:
            self.state[0].mul_(self.momenta).add_(grad)
        params.addcmul_(self.state[0], self.stack.column([-lr for lr in lrs]))

    def _adamw(self, grad: Tensor, lrs: Sequence[float]) -> None:
        params, n = self.stack.flat, self.decayed
        beta1, beta2 = ADAM_BETAS
        if not self.state:
            self.state = [torch.zeros_like(params) for _ in range(2)]
        exp_avg, exp_avg_sq = self.state
        params[:, :n].mul_(self.stack.column([1 - lr * d for lr, d in zip(lrs, self.decays)]))
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        denom = exp_avg_sq.sqrt().div_(correction2_sqrt).add_(ADAM_EPS)
        # addcdiv's order: p + (value * exp_avg) / denom
        update = exp_avg * self.stack.column([-lr / correction1 for lr in lrs])
        params.add_(update.div_(denom))


def _check(models: Sequence[ModernLeNet1], configs: Sequence[ModernConfig],
           train: Digits) -> None:
    if not models:
        raise ValueError("a stack needs at least one network")
    if len(models) != len(configs):
        raise ValueError(f"{len(models)} networks but {len(configs)} configs")
    for model, config in zip(models, configs):
        if not isinstance(model, ModernLeNet1):
            raise TypeError(f"a stack trains ModernLeNet1 networks, got {type(model).__name__}")
        if not isinstance(config, ModernConfig):
            raise TypeError(f"configs must be ModernConfig, got {type(config).__name__}")
        if (config.loss == "cross_entropy") != (model.output == "logits"):
            raise ValueError(f"the {config.loss} loss needs a network with "
                             f"{'logits' if config.loss == 'cross_entropy' else 'squashed'} "
                             f"outputs")
    keys = {stack_key(m, c) for m, c in zip(models, configs)}
    if len(keys) > 1:
        raise ValueError("the networks of a stack must share their units, output layer, "
                         "loss, optimiser, mini-batch size, passes, dropout, connection "
                         "table and which tensors decay")
    check_images(train.images)
    if len(train) == 0:
        raise ValueError("the training set is empty")


@on_one_thread
def train_stacked(models: Sequence[ModernLeNet1], train: Digits, test: Digits,
                  configs: Sequence[ModernConfig], record_every: bool = True,
                  until: int | None = None, train_every: bool = True,
                  soft_targets: Tensor | None = None) -> list[StackedRun]:
    """Train each ``models[i]`` in place as ``train_minibatch(models[i], train, test,
    configs[i], record_every=record_every)`` would, all in one stack.

    ``until``: stop after that many passes (each evaluated), the schedule still that of the
    configs' passes: the beginning of a long run, to check it against a record of the whole.
    ``train_every=False``: of the records before the last, the training set's figures are
    :data:`~lenet1.train.online.UNMEASURED` (its loss NaN); only the judged set is evaluated
    after every pass (a curve of test error costs a fifth of one of both sets).
    ``soft_targets``: a teacher's probabilities for the training digits, for the members whose
    configs distil (:func:`~lenet1.train.minibatch.train_minibatch`).

    Each member's history has the figures its network gets alone (to float32 rounding). A
    member whose
    training loss stops being finite is marked diverged and trained on with the rest (a stack's
    members do not touch each other's numbers); its network keeps the weights it was last
    evaluated with, which are not usable.
    """
    _check(models, configs, train)
    check_images(test.images)  # once: each pass's evaluation then reads it unchecked
    check_soft_targets(soft_targets, list(configs), len(train))
    if until is not None and (isinstance(until, bool) or not isinstance(until, int)
                              or not 1 <= until <= configs[0].passes):
        raise ValueError(f"until must be a number of passes in 1..{configs[0].passes}, "
                         f"got {until!r}")
    k = len(models)
    stack = _Stack(models)
    optimizer = _Optimizer(stack, configs)
    average = None
    if any(c.ema for c in configs):
        average = stack.flat.detach().clone()
        # decay 0 (no average): weight 1, and lerp's weight-1 branch returns the network exactly
        ema_weight = stack.column([1 - c.ema for c in configs])
    streams = [[_generator(c.seed, s) for s in range(3)] for c in configs]
    augmentations = [c.augmentation() for c in configs]
    smoothing = torch.tensor([c.label_smoothing for c in configs]).unsqueeze(1)
    distilling = any(c.distil for c in configs)
    distil = torch.tensor([c.distil for c in configs]).unsqueeze(1) if distilling else None
    loss_kind, batch_size, passes = configs[0].loss, configs[0].batch_size, configs[0].passes
    steps_per_pass = math.ceil(len(train) / batch_size)
    total_steps = steps_per_pass * passes
    histories = [ModernHistory() for _ in models]
    diverged = [False] * k
    lrs = [c.lr_at(0, total_steps) for c in configs]

    def judged() -> dict[str, Tensor]:
        return stack.split(average if average is not None else stack.flat.detach())

    def record(pass_index: int, members: Sequence[int] = range(k)) -> None:
        # Each member is evaluated in its own network, exactly as train_minibatch evaluates
        # (one network's operators on a whole set beat a stack's: measured).
        _load(models, judged(), [i for i in members if not diverged[i]])
        last = pass_index == (until or passes)
        measured = train_every or last  # the training set's figures are taken this time
        for i in members:
            if diverged[i]:
                continue
            if measured:
                train_metrics, train_loss = evaluate_modern(models[i], train, loss_kind,
                                                            checked=True)
            else:
                train_metrics, train_loss = UNMEASURED, math.nan
            test_metrics, test_loss = evaluate_modern(models[i], test, loss_kind, checked=True)
            histories[i].passes.append(ModernRecord(pass_index, train_metrics, test_metrics,
                                                    train_loss, test_loss, lrs[i]))
            if not math.isfinite(train_loss if measured else test_loss):
                diverged[i] = True

    if record_every or passes == 0 or until is not None:
        record(0)
    step = 0
    for pass_index in range(1, (until or passes) + 1):
        orders = torch.stack([torch.randperm(len(train), generator=s[0]) if c.shuffle
                              else torch.arange(len(train)) for c, s in zip(configs, streams)])
        for begin in range(0, len(train), batch_size):
            index = orders[:, begin:begin + batch_size]
            flat_index = index.flatten()
            # The training digits were checked once, so the mini-batches are not.
            images = train.images.index_select(0, flat_index).view(*index.shape, 1, 16, 16)
            labels = train.labels.index_select(0, flat_index).view(index.shape)
            if any(a.active for a in augmentations):
                images = augment_stack(images, augmentations, [s[1] for s in streams])
            keep = None
            if stack.dropout > 0:
                noise = torch.empty(k, images.shape[1], 192)
                for i, s in enumerate(streams):
                    torch.rand(noise.shape[1:], generator=s[2], out=noise[i])
                keep = noise >= stack.dropout
            lrs = [c.lr_at(step, total_steps) for c in configs]
            stack.flat.grad = None
            soft = (soft_targets.index_select(0, flat_index).view(*index.shape, 10)
                    if distilling and soft_targets is not None else None)
            losses = _member_losses(stack.forward(images, stack.split(stack.flat), keep),
                                    labels, loss_kind, smoothing, distil, soft)
            losses.sum().backward()  # each member's gradient is its own loss's
            optimizer.step(lrs)
            if average is not None:
                with torch.no_grad():
                    average.lerp_(stack.flat, ema_weight)
            step += 1
        if record_every or pass_index == passes or until is not None:
            record(pass_index)
        else:
            finite = torch.isfinite(losses.detach()).tolist()
            failing = [i for i in range(k) if not finite[i] and not diverged[i]]
            if failing:
                record(pass_index, failing)  # where their histories end
    _load(models, judged(), [i for i in range(k) if not diverged[i]])
    return [StackedRun(h, d) for h, d in zip(histories, diverged)]


@torch.no_grad()
def _load(models: Sequence[ModernLeNet1], weights: dict[str, Tensor],
          members: Sequence[int]) -> None:
    for i in members:
        for name, value in weights.items():
            getattr(models[i], name).copy_(value[i])
