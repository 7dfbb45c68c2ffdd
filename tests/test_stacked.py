"""Networks trained together in a stack get what each gets alone, to float32 rounding."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from lenet1.nets import ModernLeNet1
from lenet1.train.minibatch import ModernConfig, make_optimizer, objective, train_minibatch
from lenet1.train.stacked import _member_losses, _Optimizer, _Stack, stack_key, train_stacked

from .conftest import toy_digits

TRAIN, TEST = toy_digits(90, 0), toy_digits(30, 1)  # 90 = 5 full mini-batches of 16 and one of 10

# Every recipe option, each in a stack with members that differ where members may differ.
NETWORKS = {
    "relu_logits": dict(unit="relu", output="logits"),
    "relu_dropout": dict(unit="relu", output="logits", dropout=0.25),
    "scaled_tanh_squashed": dict(unit="scaled_tanh", output="squashed", init="fan_in"),
    "tanh_squashed": dict(unit="tanh", output="squashed", init="sqrt_fan_in"),
    "scaled_tanh_logits": dict(unit="scaled_tanh", output="logits", init="fan_in"),
    # Karpathy's modern network: ReLU with H1's maps padded with -1 for H2.
    "relu_dropout_minus_one": dict(unit="relu", output="logits", dropout=0.25,
                                   init="sqrt_fan_in", h2_background=-1.0),
}
OPTIONS = [
    ("relu_logits", dict(optimizer="adamw", weight_decay=0.01, schedule="cosine")),
    ("relu_logits", dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3,
                         schedule="linear")),
    ("relu_dropout", dict(translate=1)),
    ("relu_dropout", dict(rotate=10.0, scale=0.1, label_smoothing=0.1)),
    ("relu_dropout", dict(ema=0.9, translate=2)),
    ("scaled_tanh_squashed", dict(loss="mse", optimizer="sgd", lr=0.5, momentum=0.0,
                                  schedule="constant", shuffle=False)),
    ("tanh_squashed", dict(loss="mse", optimizer="sgd", lr=0.2, momentum=0.5,
                           schedule="constant")),
    ("scaled_tanh_logits", dict(optimizer="adamw", lr=1e-2, schedule="constant")),
    # Karpathy's final recipe: every parameter decayed, a stepped decay to a third, circular
    # shifts, the file's order.
    ("relu_dropout_minus_one", dict(optimizer="adamw", lr=3e-3, weight_decay=0.01,
                                    decay_biases=True, schedule="linear_to_third",
                                    translate=1, wrap=True, shuffle=False)),
]
# What members of one stack may change besides the seed.
VARIANTS = [{}, {"lr": 0.5}, {"shuffle": False}, {"label_smoothing": 0.05}, {"ema": 0.5},
            {"translate": 1}, {"weight_decay": 0.02}, {"schedule": "constant"}]


def _configs(options: dict[str, object], count: int) -> list[ModernConfig]:
    base = ModernConfig(batch_size=16, passes=2, seed=0, **options)  # type: ignore[arg-type]
    configs = []
    for i in range(count):
        variant = dict(VARIANTS[i % len(VARIANTS)])
        if "lr" in variant:
            variant["lr"] = base.lr * float(variant["lr"])
        if "label_smoothing" in variant and base.loss != "cross_entropy":
            variant = {}
        configs.append(replace(base, seed=i, **variant))  # type: ignore[arg-type]
    return configs


#: How far a member's gradient may be from its network's alone, as a fraction of the largest:
#: the stack adds its sums in another order, and the tanh units (written with a sigmoid) round their
#: outputs to a few float32 steps of their scale, so small H3 states carry relative errors that
#: the output weights' gradient (up to 3e-5 of the largest, measured) shows. A member given
#: another's gradient, or a wrong padding, is off by its whole size.
GRADIENT_ROUNDING = 1e-4


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max() / (b[n].abs().max() + 1e-12)) for n in a)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_each_members_gradient_is_its_own_to_rounding(network, smoothing):
    options = NETWORKS[network]
    loss = "cross_entropy" if options["output"] == "logits" else "mse"
    if loss == "mse" and smoothing:
        pytest.skip("label smoothing is for the cross-entropy")
    models = [ModernLeNet1(seed=s, **options) for s in range(3)]  # type: ignore[arg-type]
    stack = _Stack(models)
    generator = torch.Generator().manual_seed(5)
    index = torch.randint(0, len(TRAIN), (3, 16), generator=generator)
    images, labels = TRAIN.images[index], TRAIN.labels[index]
    keep = (torch.rand(3, 16, 192, generator=generator) >= models[0].dropout
            if models[0].dropout else None)
    losses = _member_losses(stack.forward(images, stack.split(stack.flat), keep), labels, loss,
                            torch.full((3, 1), smoothing))
    losses.sum().backward()
    grads = stack.split(stack.flat.grad)  # type: ignore[arg-type]
    for i, model in enumerate(models):
        model.train()
        h2 = model.states(images[i])  # the same layers, then this member's own dropout mask
        outputs = h2["out"]
        if keep is not None:  # redo the top with the stack's mask
            flat = h2["h2"].flatten(1) * keep[i] / (1 - model.dropout)
            h3 = torch.relu(torch.nn.functional.linear(flat, model.h3_weight, model.h3_bias))
            outputs = torch.nn.functional.linear(h3, model.out_weight, model.out_bias)
        own = objective(outputs, labels[i], loss, smoothing)
        assert own.item() == pytest.approx(losses[i].item(), rel=1e-6)
        own.backward()
        for name, grad in grads.items():
            mine, theirs = grad[i], getattr(model, name).grad
            bound = GRADIENT_ROUNDING * float(theirs.abs().max()) + 1e-9
            assert float((mine - theirs).abs().max()) <= bound


def test_the_optimiser_steps_as_torch_optim_does():
    configs = [ModernConfig(optimizer="adamw", lr=3e-3, weight_decay=0.01),
               ModernConfig(optimizer="adamw", lr=1e-2, weight_decay=0.0),
               ModernConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3),
               ModernConfig(optimizer="sgd", lr=0.3, momentum=0.0),
               ModernConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1, decay_biases=True),
               ModernConfig(optimizer="adamw", lr=1e-2, weight_decay=0.01, decay_biases=True),
               ModernConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2,
                            decay_biases=True),
               ModernConfig(optimizer="sgd", lr=0.3, momentum=0.0, weight_decay=1e-3,
                            decay_biases=True)]
    for group in (configs[:2], configs[2:4], configs[4:6], configs[6:]):
        models = [ModernLeNet1(seed=i) for i in range(2)]
        stack = _Stack(models)
        mine = _Optimizer(stack, group)
        theirs = [make_optimizer(m, c) for m, c in zip(models, group)]
        generator = torch.Generator().manual_seed(0)
        for step in range(4):
            lrs = [c.lr * (1 - step / 8) for c in group]
            stack.flat.grad = torch.zeros_like(stack.flat)
            for name, grad in stack.split(stack.flat.grad).items():
                grad.copy_(torch.randn(grad.shape, generator=generator) * 1e-3)
                for i, model in enumerate(models):
                    getattr(model, name).grad = grad[i].clone()
            mine.step(lrs)
            for optimizer, lr in zip(theirs, lrs):
                for param_group in optimizer.param_groups:
                    param_group["lr"] = lr
                optimizer.step()
        for i, model in enumerate(models):
            for name, param in stack.split(stack.flat.detach()).items():
                assert torch.equal(param[i], getattr(model, name).detach()), name


@pytest.mark.parametrize("network, options", OPTIONS)
def test_each_member_gets_what_it_gets_alone(network, options):
    configs = _configs(options, 4)
    alone, together = [], []
    for config in configs:
        model = ModernLeNet1(seed=10 + config.seed, **NETWORKS[network])  # type: ignore[arg-type]
        history = train_minibatch(model, TRAIN, TEST, config)
        alone.append((model.state_dict(), history))
    models = [ModernLeNet1(seed=10 + c.seed, **NETWORKS[network])  # type: ignore[arg-type]
              for c in configs]
    runs = train_stacked(models, TRAIN, TEST, configs)
    for (weights, history), model, run, config in zip(alone, models, runs, configs):
        assert not run.diverged
        # The same weights after 12 steps: to float32 rounding with SGD. AdamW divides each
        # gradient by its own running size, so a rounding-level difference in a gradient that
        # is itself near zero becomes a difference of up to a step (lr): a looser bound there.
        bound = 1e-2 if config.optimizer == "adamw" else 1e-4
        assert _close(model.state_dict(), weights) < bound
        # ... and the same figures: misses equal, losses to rounding, the same learning rates.
        assert [r.pass_index for r in run.history.passes] == [0, 1, 2]
        for mine, theirs in zip(run.history.passes, history.passes):
            assert (mine.train.misses, mine.test.misses) == (theirs.train.misses,
                                                            theirs.test.misses)
            assert mine.train_loss == pytest.approx(theirs.train_loss, rel=1e-4)
            assert mine.test.mse == pytest.approx(theirs.test.mse, rel=1e-4)
            assert mine.lr == theirs.lr
        together.append(model.state_dict())
    # Members really differ (their seeds, their variants).
    assert _close(together[0], together[1]) > 1e-2


def test_a_members_numbers_do_not_depend_on_its_stack():
    configs = _configs({"translate": 1}, 5)

    def member_two(count: int) -> dict[str, torch.Tensor]:
        chosen = configs[2:2 + count]
        models = [ModernLeNet1(dropout=0.25, seed=c.seed) for c in chosen]
        train_stacked(models, TRAIN, TEST, chosen, record_every=False)
        return models[0].state_dict()

    alone, in_three = member_two(1), member_two(3)
    assert _close(in_three, alone) < 1e-4
    # Bit for bit the same from the same stack.
    again = member_two(3)
    assert all(torch.equal(again[n], in_three[n]) for n in again)


def test_recording_the_last_pass_only_gives_the_same_end():
    configs = _configs({"ema": 0.8, "translate": 1}, 3)
    every = [ModernLeNet1(dropout=0.25, seed=c.seed) for c in configs]
    last = [ModernLeNet1(dropout=0.25, seed=c.seed) for c in configs]
    full = train_stacked(every, TRAIN, TEST, configs)
    end = train_stacked(last, TRAIN, TEST, configs, record_every=False)
    for a, b, run_a, run_b in zip(every, last, full, end):
        assert [r.pass_index for r in run_b.history.passes] == [2]
        assert run_b.history.to_json()[-1] == run_a.history.to_json()[-1]
        assert all(torch.equal(a.state_dict()[n], w) for n, w in b.state_dict().items())


def test_the_beginning_of_a_run_is_the_beginning_of_the_whole():
    # until=N trains N passes of a longer run (its schedule unchanged): the check of a
    # recorded run. Its records are the whole run's first N + 1, bit for bit.
    configs = _configs({"schedule": "linear_to_third", "translate": 1, "wrap": True}, 2)
    configs = [replace(c, passes=3) for c in configs]
    whole = train_stacked([ModernLeNet1(seed=c.seed) for c in configs], TRAIN, TEST, configs)
    begun = train_stacked([ModernLeNet1(seed=c.seed) for c in configs], TRAIN, TEST, configs,
                          until=1, record_every=False)
    for a, b in zip(whole, begun):
        assert b.history.to_json() == a.history.to_json()[:2]
    with pytest.raises(ValueError, match="until"):
        train_stacked([ModernLeNet1(seed=0)], TRAIN, TEST, configs[:1], until=4)


def test_a_diverging_member_leaves_the_others_alone():
    configs = _configs({"optimizer": "sgd", "momentum": 0.0, "schedule": "constant"}, 3)
    configs[1] = replace(configs[1], lr=1e30)
    models = [ModernLeNet1(seed=c.seed) for c in configs]
    runs = train_stacked(models, TRAIN, TEST, configs)
    assert [r.diverged for r in runs] == [False, True, False]
    assert not math.isfinite(runs[1].history.passes[-1].train_loss)
    for i in (0, 2):
        alone = ModernLeNet1(seed=configs[i].seed)
        train_minibatch(alone, TRAIN, TEST, configs[i])
        assert _close(models[i].state_dict(), alone.state_dict()) < 1e-4


def test_what_a_stack_must_share():
    relu, tanh = ModernLeNet1(seed=0), ModernLeNet1(unit="tanh", seed=1)
    config = ModernConfig(batch_size=16, passes=1)
    assert stack_key(relu, config) != stack_key(tanh, config)
    assert stack_key(relu, config) != stack_key(relu, replace(config, passes=2))
    assert stack_key(relu, config) == stack_key(relu, replace(config, lr=1.0, seed=3))
    with pytest.raises(ValueError, match="must share"):
        train_stacked([relu, tanh], TRAIN, TEST, [config, config])
    with pytest.raises(ValueError, match="2 networks but 1 configs"):
        train_stacked([relu, relu], TRAIN, TEST, [config])
    with pytest.raises(ValueError, match="at least one"):
        train_stacked([], TRAIN, TEST, [])
    with pytest.raises(ValueError, match="needs a network with squashed"):
        train_stacked([relu], TRAIN, TEST, [replace(config, loss="mse")])
    with pytest.raises(TypeError, match="ModernLeNet1"):
        train_stacked([torch.nn.Linear(2, 2)], TRAIN, TEST, [config])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        train_stacked([relu], TRAIN.subset(slice(0, 0)), TEST, [config])
