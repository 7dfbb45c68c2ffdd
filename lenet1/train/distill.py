"""A larger network's softened outputs, as targets for LeNet-1 (knowledge distillation).

Hinton, Vinyals and Dean (2015): a small network trained towards a larger one's probabilities,
softened by a temperature, besides the labels, learns how the larger one ranks the wrong
classes too, which a label alone does not say. Here the teacher is :class:`~lenet1.nets.Teacher`
(74,330 parameters), trained on the same training digits by :func:`train_teacher`;
:func:`soft_targets` reads it once on each training digit, and the mini-batch trainers take
those probabilities as the targets of
:func:`~lenet1.train.minibatch.distillation`. The network that is scored keeps LeNet-1's 9,760
weights; only its training targets change.

The targets are read once, on the digits as they are, not on every augmented copy: a shifted,
turned or rescaled digit keeps its class, and reading the teacher on each copy would cost it a
forward pass for every one of the student's (sixteen times the student's own multiply-adds).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..data import Digits
from ..nets import Teacher
from .minibatch import DISTIL_TEMPERATURE, ModernConfig, place_coded, train_minibatch
from .online import Metrics, metrics_of, predict

#: How the teacher is trained: the modern study's training with its shifts, turns and
#: rescaling (AdamW 3e-3 with weight decay 0.01, cosine decay, mini-batches of 32, shifts of up
#: to a pixel, rotation up to 10 degrees, scaling up to 10%), 20 passes.
TEACHER_TRAINING = ModernConfig(optimizer="adamw", lr=3e-3, weight_decay=0.01, schedule="cosine",
                                batch_size=32, passes=20, translate=1, rotate=10.0, scale=0.1)
#: The teacher's width (:class:`~lenet1.nets.Teacher`) and seed.
TEACHER_WIDTH, TEACHER_SEED = 16, 0


def train_teacher(train: Digits, judged: Digits, passes: int = TEACHER_TRAINING.passes
                  ) -> tuple[Teacher, Metrics]:
    """The teacher trained on ``train`` (:data:`TEACHER_TRAINING`, ``passes`` of it), and its
    figures on ``judged``."""
    config = dataclasses.replace(TEACHER_TRAINING, passes=passes, seed=TEACHER_SEED)
    teacher = Teacher(TEACHER_WIDTH, seed=TEACHER_SEED)
    train_minibatch(teacher, train, judged.subset(slice(0, 1)), config, record_every=False)
    teacher.eval()
    figures = metrics_of(place_coded(teacher, predict(teacher, judged.images)), judged.labels)
    return teacher, figures


@torch.no_grad()
def soft_targets(teacher: Teacher, images: Tensor) -> Tensor:
    """The teacher's probabilities at :data:`~lenet1.train.minibatch.DISTIL_TEMPERATURE` for
    each image: (N, 10)."""
    return (predict(teacher, images) / DISTIL_TEMPERATURE).softmax(dim=1)
