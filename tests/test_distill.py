"""Knowledge distillation: the teacher, its soft targets, and the loss in both trainers."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lenet1.nets import ModernLeNet1, Teacher
from lenet1.train.distill import soft_targets, train_teacher
from lenet1.train.minibatch import (
    DISTIL_TEMPERATURE,
    ModernConfig,
    distillation,
    objective,
    train_minibatch,
)
from lenet1.train.stacked import train_stacked

from .conftest import random_images, toy_digits

TRAIN, TEST = toy_digits(90, 0), toy_digits(30, 1)


def _soft(count: int, seed: int = 3) -> torch.Tensor:
    logits = torch.randn(count, 10, generator=torch.Generator().manual_seed(seed)) * 3
    return logits.softmax(dim=1)


def test_the_teacher_has_its_size_and_its_seeds_weights():
    teacher = Teacher()
    assert sum(p.numel() for p in teacher.parameters()) == 74_330
    state = torch.random.get_rng_state()
    again, other = Teacher(seed=0), Teacher(seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator untouched
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), again.parameters()))
    assert not torch.equal(teacher.conv1.weight, other.conv1.weight)
    with pytest.raises(ValueError, match="width"):
        Teacher(width=0)
    with pytest.raises(ValueError, match="dropout"):
        Teacher(dropout=1.0)


def test_the_teachers_dropout_comes_from_the_callers_generator():
    teacher, images = Teacher(), random_images(8)
    teacher.train()
    first = teacher(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, teacher(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, teacher(images, torch.Generator().manual_seed(6)))
    teacher.eval()  # no dropout: the generator does not matter
    assert torch.equal(teacher(images, torch.Generator().manual_seed(5)), teacher(images))


def test_the_distillation_loss_is_the_kl_divergence_up_to_a_constant():
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(1), requires_grad=True)
    soft = _soft(6)
    t = DISTIL_TEMPERATURE
    ours = distillation(logits, soft).mean()
    kl = F.kl_div((logits / t).log_softmax(dim=1), soft, reduction="batchmean") * t * t
    entropy = -(soft * soft.log()).sum(dim=1).mean() * t * t
    assert float(ours.detach()) == pytest.approx(float((kl + entropy).detach()), rel=1e-5)
    (mine,) = torch.autograd.grad(ours, logits)
    (theirs,) = torch.autograd.grad(kl, logits)
    assert torch.allclose(mine, theirs, atol=1e-6)
    # Towards its own softened outputs, a student has nothing to learn.
    own = (logits.detach() / t).softmax(dim=1)
    (still,) = torch.autograd.grad(distillation(logits, own).mean(), logits)
    assert float(still.abs().max()) < 1e-6


def test_the_objective_weighs_the_teacher_and_the_labels():
    outputs, labels, soft = torch.randn(5, 10), torch.arange(5), _soft(5)
    hard = objective(outputs, labels, "cross_entropy")
    both = objective(outputs, labels, "cross_entropy", distil=0.25, soft=soft)
    expected = 0.75 * hard + 0.25 * distillation(outputs, soft).mean()
    assert float(both) == pytest.approx(float(expected), rel=1e-6)
    assert float(objective(outputs, labels, "cross_entropy", distil=0.0, soft=soft)) == \
        float(hard)


def test_a_distilled_member_of_a_stack_gets_what_it_gets_alone():
    base = ModernConfig(batch_size=16, passes=2, translate=1, seed=0)
    configs = [replace(base, seed=0, distil=0.5), replace(base, seed=1),
               replace(base, seed=2, distil=1.0)]
    soft = _soft(len(TRAIN))
    alone = []
    for config in configs:
        model = ModernLeNet1(dropout=0.25, seed=10 + config.seed)
        train_minibatch(model, TRAIN, TEST, config, soft_targets=soft)
        alone.append(model.state_dict())
    models = [ModernLeNet1(dropout=0.25, seed=10 + c.seed) for c in configs]
    runs = train_stacked(models, TRAIN, TEST, configs, soft_targets=soft)
    for model, weights, run in zip(models, alone, runs):
        assert not run.diverged
        mine = model.state_dict()
        assert max(float((mine[n] - weights[n]).abs().max()) for n in mine) < 1e-2
    # The teacher's targets really steer: the same member without them ends elsewhere.
    undistilled = ModernLeNet1(dropout=0.25, seed=10)
    train_minibatch(undistilled, TRAIN, TEST, replace(configs[0], distil=0.0))
    distilled = alone[0]
    assert max(float((undistilled.state_dict()[n] - distilled[n]).abs().max())
               for n in distilled) > 1e-2


@pytest.mark.parametrize("soft, match", [
    (None, "needs the teacher"),
    (_soft(89), "shape"),
    (_soft(90).double(), "float32"),
    (_soft(90) * 2, "probabilities"),
    (torch.full((90, 10), float("nan")), "probabilities"),
])
def test_bad_soft_targets_are_refused(soft, match):
    config = ModernConfig(batch_size=16, passes=1, distil=0.5)
    with pytest.raises(ValueError, match=match):
        train_minibatch(ModernLeNet1(seed=0), TRAIN, TEST, config, soft_targets=soft)
    with pytest.raises(ValueError, match=match):
        train_stacked([ModernLeNet1(seed=0)], TRAIN, TEST, [config], soft_targets=soft)


def test_distil_is_a_weight_for_the_cross_entropy():
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="distil"):
            ModernConfig(distil=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cross_entropy"):
        ModernConfig(loss="mse", distil=0.5)


def test_the_teacher_learns_and_its_targets_are_repeatable():
    teacher, figures = train_teacher(TRAIN, TEST, passes=15)
    assert figures.count == len(TEST) and figures.error < 0.5  # toy digits: learnable
    soft = soft_targets(teacher, TRAIN.images)
    assert soft.shape == (len(TRAIN), 10)
    assert torch.allclose(soft.sum(dim=1), torch.ones(len(TRAIN)), atol=1e-5)
    again, same = train_teacher(TRAIN, TEST, passes=15)
    assert same == figures
    assert torch.equal(soft_targets(again, TRAIN.images), soft)
