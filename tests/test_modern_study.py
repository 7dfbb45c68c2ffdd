from __future__ import annotations

from dataclasses import replace

import math
import statistics

import pytest
import torch

import lenet1.experiments.modern as study_module
import lenet1.experiments.recipes as recipes_module
import lenet1.report.modern as report_module
from lenet1.data import Digits
from lenet1.experiments import cache
from lenet1.experiments.modern import (
    STEPS,
    Step,
    choose,
    describe,
    dsp_seconds,
    recipes,
    run_study,
    summarise,
)
from lenet1.experiments.recipes import (
    PAPER_RECIPE,
    QUICK,
    Recipe,
    Scale,
    Stack,
    candidate_stacks,
    initial_network,
    stack_of,
)
from lenet1.experiments.training import (
    Runner,
    RunResult,
    TeacherJob,
    load_network,
    teacher_of,
)
from lenet1.experiments.runs import RunConfig, make_model
from lenet1.report.modern import format_rows
from lenet1.train.minibatch import ModernHistory, ModernRecord, predict_shifted
from lenet1.train.stacked import StackedRun
from lenet1.train.online import Metrics, metrics_of

from .conftest import requires_data, toy_digits


def _sets() -> dict[str, tuple[Digits, Digits]]:
    return {"test": (toy_digits(64, 0), toy_digits(40, 1)), "validation": (toy_digits(48, 2), toy_digits(16, 3))}


MINI = PAPER_RECIPE.changed({"trainer": "minibatch", "batch_size": 16, "lr": 0.3, "passes": 2})


# --- the steps are declarative and each changes one thing ---------------------------------------


def test_step_zero_is_the_papers_protocol_as_the_online_runs_train_it():
    assert STEPS[0].changes == {} and not STEPS[0].choices
    assert recipes()[0] == PAPER_RECIPE
    config = RunConfig()
    assert (PAPER_RECIPE.trainer, PAPER_RECIPE.lr, PAPER_RECIPE.passes) == \
        ("online", config.lr, config.passes)
    assert (config.unit, config.init, config.optimizer) == ("scaled_tanh", "fan_in", "sgd")


@pytest.mark.parametrize("which", [0, -1])
def test_each_step_changes_exactly_what_it_declares(which):
    names = [step.name for step in STEPS]
    assert len(set(names)) == len(names)
    chosen = {step.name: step.choices[which] for step in STEPS if step.choices}
    path = recipes(chosen=chosen)
    for index in range(1, len(STEPS)):
        step, before, after = STEPS[index], path[index - 1], path[index]
        declared = set(step.changes) | set(chosen.get(step.name, {}))
        assert set(before.diff(after)) == declared, step.name
        for name, value in {**step.changes, **chosen.get(step.name, {})}.items():
            assert getattr(after, name) == value
        # ... whichever candidate is chosen: every candidate changes only its own fields
        for candidate in step.choices:
            other = before.changed(step.changes).changed(candidate)
            assert set(before.diff(other)) == set(step.changes) | set(candidate), step.name


def test_the_steps_issue_6_asks_for_are_there():
    path = {step.name: recipe for step, recipe in zip(STEPS, recipes())}
    assert path["minibatch"].batch_size > 1 and path["paper"].batch_size == 1
    assert (path["cross_entropy"].loss, path["cross_entropy"].output) == \
        ("cross_entropy", "logits")
    assert path["adamw"].optimizer == "adamw" and path["adamw"].schedule != "constant"
    assert path["adamw"].passes > path["cross_entropy"].passes
    assert path["translate"].translate == 1
    assert path["relu_dropout"].unit == "relu" and path["relu_dropout"].dropout > 0
    beyond = [step for step in STEPS[STEPS.index(next(s for s in STEPS
                                                       if s.name == "relu_dropout")) + 1:]]
    assert beyond and all(step.choices for step in beyond)  # chosen on validation
    more = next(step for step in STEPS if step.name == "more")
    assert {"elastic": 8.0} in more.choices and {"ema": 0.999} in more.choices
    # The longer schedule is a pure selection: the 30 passes before it compete.
    longer = next(step for step in STEPS if step.name == "longer")
    assert not longer.changes and path["longer"].passes == 80 > path["more"].passes
    assert STEPS[-1].name == "tta"


def test_recipe_validation():
    with pytest.raises(ValueError, match="online trainer"):
        PAPER_RECIPE.changed({"shuffle": True})
    with pytest.raises(ValueError, match="online trainer"):
        PAPER_RECIPE.changed({"unit": "relu"})
    with pytest.raises(ValueError, match="unknown recipe fields"):
        PAPER_RECIPE.changed({"learning_rate": 0.1})
    with pytest.raises(ValueError):
        PAPER_RECIPE.changed({"trainer": "minibatch", "output": "logits"})
    with pytest.raises(ValueError):
        Recipe(trainer="batch")
    with pytest.raises(ValueError, match="seed 0"):
        Recipe(config=replace(PAPER_RECIPE.config, seed=3))
    assert PAPER_RECIPE.capped(2).passes == 2 and PAPER_RECIPE.changed({"passes": 1}).capped(2).passes == 1
    # The config's fields read through the recipe, and change through it.
    changed = MINI.changed({"lr": 0.1, "dropout": 0.25, "unit": "relu", "output": "logits", "loss": "cross_entropy"})
    assert changed.lr == changed.config.lr == 0.1 and changed.dropout == 0.25
    assert MINI.diff(changed) == {"unit": "relu", "output": "logits", "dropout": 0.25, "loss": "cross_entropy", "lr": 0.1}
    assert changed.modern_config(7) == replace(changed.config, seed=7)
    with pytest.raises(AttributeError):
        MINI.seed  # noqa: B018 - a run's seed is not the recipe's
    assert "tta" not in PAPER_RECIPE.training()
    assert describe({}) == "as before" and "9 views" in describe({"tta": 1})


def test_every_step_starts_from_the_papers_initial_weights():
    before = torch.random.get_rng_state()
    paper = make_model(RunConfig(seed=3)).state_dict()
    torch.random.set_rng_state(before)
    for recipe in recipes():
        state = initial_network(recipe, 3).state_dict()
        for name, tensor in paper.items():
            assert torch.equal(state[name], tensor), (recipe, name)
    assert torch.equal(torch.random.get_rng_state(), before)  # global state left alone


# --- caching -------------------------------------------------------------------------------------


def test_a_saved_run_is_reused_and_a_code_change_retrains(tmp_path, monkeypatch):
    runner = Runner(tmp_path, _sets(), Scale())
    first = runner.run(MINI, 0, "test")
    assert first.fresh and first.path is not None and first.path.name == "s0"
    stack_folder = first.path.parent
    assert stack_folder.parent == tmp_path / "modern"
    assert (first.path / "weights.safetensors").is_file()
    saved = cache.read_key(stack_folder)
    # The entry is the whole stack: the recipe on the block of seeds 0-4.
    assert saved["spec"]["seeds"] == [0, 1, 2, 3, 4] and saved["spec"]["recipes"][0]["lr"] == 0.3
    assert sorted(p.name for p in stack_folder.iterdir() if p.is_dir()) == \
        ["s0", "s1", "s2", "s3", "s4"]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(recipes_module, "train_stacked", no_training)
    again = Runner(tmp_path, _sets(), Scale()).run(MINI, 0, "test")
    assert not again.fresh and again.path == first.path
    assert again.history.to_json() == first.history.to_json()
    assert again.seconds == first.seconds  # the time measured when it was trained
    # Seed 3 was trained with seed 0, in its stack ...
    assert not Runner(tmp_path, _sets(), Scale()).run(MINI, 3, "test").fresh
    # ... another recipe or evaluation set is another run ...
    assert runner.folder(MINI.changed({"lr": 0.1}), 0, "test") != first.path
    assert runner.folder(MINI, 0, "validation") != first.path
    # ... and so is the same one under other code.
    monkeypatch.undo()
    monkeypatch.setattr(cache, "code_key", lambda: "0123456789abcdef")
    changed = Runner(tmp_path, _sets(), Scale())
    assert changed.folder(MINI, 0, "test") != first.path
    retrained = changed.run(MINI, 0, "test")
    assert retrained.fresh and retrained.path != first.path
    assert retrained.history.to_json() == first.history.to_json()  # same stack, same bytes


def test_an_interrupted_stack_is_not_reused(tmp_path):
    runner = Runner(tmp_path, _sets(), Scale(test_block=2))
    folder = runner.folder(MINI, 0, "test").parent
    folder.with_name(folder.name + cache.PARTIAL + "1-abc").mkdir(parents=True)
    first = runner.run(MINI, 0, "test")
    assert first.fresh
    # A stack missing one of its networks is trained again, whole, with the same numbers.
    (folder / "s1" / "history.json").unlink()
    again = Runner(tmp_path, _sets(), Scale(test_block=2)).run(MINI, 0, "test")
    assert again.fresh and again.history.to_json() == first.history.to_json()


def test_test_time_augmentation_reuses_the_trained_weights(tmp_path):
    sets = _sets()
    runner = Runner(tmp_path, sets, Scale())
    plain = runner.run(MINI, 0, "test")
    trained = sorted(tmp_path.rglob("weights.safetensors"))
    shifted = runner.run(MINI.changed({"tta": 1}), 0, "test")
    # The same stored network, trained once (by this runner: fresh) and read again.
    assert shifted.path == plain.path and shifted.fresh
    assert sorted(tmp_path.rglob("weights.safetensors")) == trained
    assert not Runner(tmp_path, sets, Scale()).run(MINI.changed({"tta": 1}), 0, "test").fresh
    model = MINI.network()
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(plain.path / "weights.safetensors")))
    test = sets["test"][1]
    assert shifted.test == metrics_of(predict_shifted(model, test.images, 1), test.labels)
    assert plain.test == plain.history.final.test


def test_run_all_trains_each_stack_once_and_logs_progress(tmp_path, monkeypatch):
    trained: list[Stack] = []
    real = Runner._train

    def counting(self, stacks, what, teachers=()):
        trained.extend(stacks)
        real(self, stacks, what, teachers)

    monkeypatch.setattr(Runner, "_train", counting)
    lines: list[str] = []
    runner = Runner(tmp_path, _sets(), Scale(test_block=2), log=lines.append)
    jobs = [(MINI, 0, "test"), (MINI.changed({"tta": 1}), 1, "test"), (MINI, 1, "validation"),
            (MINI, 0, "test")]
    results = runner.run_all(jobs, "a check")
    # tta shares the weights; seeds 0 and 1 share a test stack; validation stacks hold the
    # selection seeds (0 and 1)
    assert [(s.seeds, s.evaluation) for s in trained] == [((0, 1), "test"),
                                                           ((0, 1), "validation")]
    assert [r.seed for r in results] == [0, 1, 1, 0] and all(r.fresh for r in results)
    assert results[0].path == results[3].path and results[0].path.parent == results[1].path.parent
    assert lines[0] == "training 4 networks (a check), 2 tasks on this process"
    assert lines[1].startswith("  [1/4] trained ") and "min left" in lines[1]
    assert lines[4].startswith("  [4/4] trained ") and "min left" not in lines[4]
    # The validation run records its last pass only; the test run every pass.
    assert [r.pass_index for r in results[2].history.passes] == [MINI.passes]
    assert [r.pass_index for r in results[0].history.passes] == list(range(MINI.passes + 1))
    again = runner.run_all(jobs)  # nothing trained twice; fresh: trained by this runner
    assert len(trained) == 2 and all(r.fresh for r in again)
    assert not any(r.fresh for r in Runner(tmp_path, _sets(), Scale(test_block=2)).run_all(jobs))


def test_test_stacks_may_record_the_training_set_at_the_end_only(tmp_path):
    full = Runner(tmp_path, _sets(), Scale(test_block=2)).run(MINI, 0, "test")
    runner = Runner(tmp_path, _sets(), Scale(test_block=2), train_curves=False)
    lean = runner.run(MINI, 0, "test")
    assert lean.path != full.path  # another entry: its history differs
    assert runner.stack(MINI, 0, "validation").train_curves  # validation: its end only anyway
    passes = lean.history.passes
    assert [r.pass_index for r in passes] == list(range(MINI.passes + 1))
    assert all(math.isnan(r.train.error) and r.train.count == 0 for r in passes[:-1])
    # The test curve and the end are the same network's either way (the same stack).
    assert [r.test for r in passes] == [r.test for r in full.history.passes]
    assert passes[-1].train == full.history.passes[-1].train
    assert lean.train == full.train and lean.test == full.test


def test_an_online_test_stack_may_record_the_training_set_at_the_end_only(tmp_path):
    online = PAPER_RECIPE.changed({"passes": 2})
    full = Runner(tmp_path, _sets(), Scale()).run(online, 0, "test")
    lean = Runner(tmp_path, _sets(), Scale(), train_curves=False).run(online, 0, "test")
    assert lean.path != full.path
    passes = lean.history.passes
    assert all(math.isnan(r.train.error) and r.train.count == 0 for r in passes[:-1])
    assert [r.test for r in passes] == [r.test for r in full.history.passes]
    assert passes[-1].train == full.history.passes[-1].train
    assert torch.equal(load_network(lean).h3_weight, load_network(full).h3_weight)


DISTILLING = MINI.changed({"output": "logits", "loss": "cross_entropy", "lr": 0.1,
                           "distil": 0.5})


def _member_files(result: RunResult) -> dict[str, bytes]:
    assert result.path is not None
    return {name: (result.path / name).read_bytes()
            for name in ("weights.safetensors", "history.json")}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_teacher_trained_on_its_own_gives_each_stack_the_bits_of_its_own(tmp_path, workers):
    sets, scale = _sets(), Scale(selection_seeds=2)
    candidates = [DISTILLING, DISTILLING.changed({"distil": 0.0})]
    # Alone: each seed's stack trains its own teacher.
    alone = Runner(tmp_path / "alone", sets, scale).run_candidates(candidates, (0, 1),
                                                                    "validation")
    lines: list[str] = []
    with Runner(tmp_path / "ahead", sets, scale, log=lines.append, workers=workers) as runner:
        stacks = runner.candidate_stacks(candidates, (0, 1), "validation")
        assert runner.teachers_for(stacks[:1]) == []  # one stack trains its own
        teachers = runner.teachers_for(stacks)
        assert teachers == [TeacherJob("validation", DISTILLING.passes)]
        # The teacher as a task beside another run, kept for the stacks trained later.
        runner.train_missing([runner.stack(MINI, 0, "test")], "a run", teachers)
        assert runner.teachers_for(stacks) == []
        ahead = runner.run_candidates(candidates, (0, 1), "validation")
    assert lines[0].startswith("training 6 networks (a run), 2 tasks")
    assert any("trained teacher (validation, 2 passes): " in line for line in lines)
    assert [_member_files(r) for r in ahead] == [_member_files(r) for r in alone]
    taught = [teacher_of(r) for r in ahead]
    assert taught[0] is not None and taught[0] == teacher_of(alone[0]) == taught[1]
    assert taught[2:] == [None, None]
    # Stored stacks need no teacher.
    assert Runner(tmp_path / "ahead", sets, scale).teachers_for(stacks) == []


def test_a_stack_refuses_another_sets_teacher():
    sets, scale = _sets(), Scale()
    stack = stack_of(DISTILLING, 0, "validation", scale)
    wrong = recipes_module.teach(sets, "test", recipes_module.teacher_passes(DISTILLING))
    with pytest.raises(ValueError, match="does not learn from a teacher"):
        recipes_module.train_stack(stack, sets, teaching=wrong)
    plain = stack_of(MINI, 0, "validation", scale)
    right = recipes_module.teach(sets, "validation", recipes_module.teacher_passes(MINI))
    with pytest.raises(ValueError, match="does not learn from a teacher"):
        recipes_module.train_stack(plain, sets, teaching=right)


def test_a_runs_stack_is_its_recipe_on_a_fixed_block_of_seeds():
    scale = Scale(test_block=5, selection_seeds=2, max_passes=3)
    assert stack_of(MINI, 7, "test", scale).seeds == (5, 6, 7, 8, 9)
    assert stack_of(MINI, 4, "test", scale).seeds == (0, 1, 2, 3, 4)
    assert stack_of(MINI, 3, "validation", scale).seeds == (2, 3)
    # the evaluation-only tta is not part of what is trained; passes are capped by the scale
    long = MINI.changed({"passes": 30, "tta": 1})
    assert stack_of(long, 0, "test", scale).recipe == MINI.changed({"passes": 3})
    assert stack_of(Recipe(), 3, "test", scale).seeds == (3,)  # online: one seed
    assert QUICK.block("test") == 2 and QUICK.block("validation") == 1
    # a step's candidates: those of one shape in one stack, the same training once
    faster, slower = MINI.changed({"lr": 0.5}), MINI.changed({"lr": 0.1})
    adamw = MINI.changed({"optimizer": "adamw", "lr": 3e-3})
    stacks = candidate_stacks([faster, slower.changed({"tta": 1}), slower, adamw, Recipe()],
                              (0, 1), "validation", scale)
    assert [(len(s.recipes), s.seeds) for s in stacks] == [(2, (0,)), (2, (1,)), (1, (0,)),
                                                          (1, (1,)), (1, (0,)), (1, (1,))]
    assert stacks[0].recipes == (faster, slower)  # MINI's 2 passes are under the cap
    assert [stacks[1].member(i, seed) for i, _, seed in stacks[1].members] == ["c0-s1", "c1-s1"]
    with pytest.raises(ValueError, match="shape"):
        Stack((MINI, adamw), (0,), "test")
    with pytest.raises(ValueError, match="seed"):
        stack_of(MINI, -1, "test", scale)
    with pytest.raises(ValueError, match="evaluation"):
        stack_of(MINI, 0, "holdout", scale)


def test_a_diverged_candidate_is_recorded_and_loses(tmp_path, monkeypatch):
    def diverge(models, *args, **kwargs):
        return [StackedRun(ModernHistory(), diverged=True) for _ in models]

    monkeypatch.setattr(recipes_module, "train_stacked", diverge)
    result = Runner(tmp_path, _sets(), Scale()).run(MINI, 0, "validation")
    assert result.diverged and result.test.error == 1.0
    monkeypatch.undo()
    assert Runner(tmp_path, _sets(), Scale()).run(MINI, 0, "validation").diverged  # cached


def test_the_online_step_trains_as_the_papers_runs_do(tmp_path):
    sets = {"test": (toy_digits(30, 0), toy_digits(20, 1))}
    result = Runner(tmp_path, sets, Scale()).run(PAPER_RECIPE.changed({"passes": 1}), 2, "test")
    model = make_model(RunConfig(seed=2))
    from lenet1.train.online import SGD, ReferenceEngine, train_online

    history = train_online(model, *sets["test"], 1, SGD(0.03), ReferenceEngine())
    assert result.history.final.test.misses == history.final.test.misses
    assert result.history.final.train.mse == pytest.approx(history.final.train.mse, rel=1e-4)


# --- statistics ----------------------------------------------------------------------------------


def _result(recipe: Recipe, seed: int, misses: int, train_misses: int,
            seconds: float) -> RunResult:
    test = Metrics(0.1, misses / 2007, misses, 2007)
    train = Metrics(0.01, train_misses / 7291, train_misses, 7291)
    history = ModernHistory([ModernRecord(1, train, test, 0.1, 0.2, 0.001)])
    return RunResult(recipe, seed, "test", history, seconds, train, test)


def test_the_summary_statistics():
    step = Step("x", "x", "x", {"batch_size": 64})
    recipe = MINI.changed({"batch_size": 64})
    misses, train_misses, seconds = [100, 90, 110, 95], [3, 5, 7, 1], [10.0, 12.0, 11.0, 13.0]
    results = [_result(recipe, s, m, t, w) for s, (m, t, w) in
               enumerate(zip(misses, train_misses, seconds))]
    summary = summarise(4, step, MINI, results, 7291)
    errors = [m / 2007 for m in misses]
    assert summary.index == 4 and summary.seeds == (0, 1, 2, 3)
    assert summary.changed == {"batch_size": 64}
    assert summary.mean == pytest.approx(sum(errors) / 4)
    assert summary.std == pytest.approx(statistics.stdev(errors))  # n - 1 in the denominator
    assert summary.std == pytest.approx(math.sqrt(sum((e - sum(errors) / 4) ** 2
                                                      for e in errors) / 3))
    assert (summary.low, summary.high) == (90 / 2007, 110 / 2007)
    assert summary.mean_misses == 98.75 and summary.test_misses == tuple(misses)
    assert summary.std_misses == pytest.approx(statistics.stdev(misses))
    assert summary.train_mean == pytest.approx(sum(train_misses) / 4 / 7291)
    assert summary.mean_seconds == 11.5
    assert summary.dsp_seconds == dsp_seconds(recipe, 7291)
    one = summarise(0, step, None, results[:1], 7291)
    assert math.isnan(one.std) and one.changed == {}
    with pytest.raises(ValueError):
        summarise(0, step, None, [results[0], _result(MINI, 1, 1, 1, 1.0)], 7291)


def test_the_paired_change_between_steps():
    step = Step("x", "x", "x")
    before = summarise(1, step, MINI, [_result(MINI, s, m, 0, 1.0)
                                       for s, m in enumerate([100, 90, 110])], 7291)
    after = summarise(2, step, MINI, [_result(MINI, s, m, 0, 1.0)
                                      for s, m in enumerate([80, 85, 95])], 7291)
    mean, std = study_module.paired_change(before, after)
    differences = [-20 / 2007, -5 / 2007, -15 / 2007]
    assert mean == pytest.approx(statistics.fmean(differences))
    assert std == pytest.approx(statistics.stdev(differences))
    other = summarise(2, step, MINI, [_result(MINI, s, 1, 0, 1.0) for s in (5, 6, 7)], 7291)
    with pytest.raises(ValueError, match="different seeds"):
        study_module.paired_change(before, other)


def test_a_step_is_read_against_the_goal():
    from scipy import stats

    step = Step("x", "x", "x")

    def reading(misses, goal=0.025):
        results = [_result(MINI, s, m, 0, 1.0) for s, m in enumerate(misses)]
        return report_module.goal_reading(summarise(9, step, MINI, results, 7291), goal)

    misses = [55, 58, 48, 57, 55]
    missed = reading(misses)
    errors = [m / 2007 for m in misses]
    assert not missed.met and missed.allowed == pytest.approx(50.175)
    assert missed.verdict == f"missed by {100 * (statistics.fmean(errors) - 0.025):.2f} points"
    assert missed.within == [48]
    assert missed.within_text() == "1 of the 5 networks (48 misses) is within it"
    assert missed.digits == pytest.approx(statistics.fmean(misses) - 0.025 * 2007)
    assert missed.digits_text() == "some 4.4 test digits a network more than it allows"
    # The one-sided p of "the true mean is at most the goal" is scipy's.
    p = stats.ttest_1samp(errors, 0.025, alternative="greater").pvalue
    assert missed.test.p_above() == pytest.approx(p)
    assert missed.one_sided_text() == (f'the one-sided test of "the true mean is at most 2.5%" '
                                       f"gives p = {p:.3f}, below 0.05: these seeds speak "
                                       f"against a true mean within the goal")
    # Met, the question turns: do the seeds show a true mean within the goal?
    met = reading([40, 45, 50, 42, 44])
    assert met.met and met.verdict == "met"
    assert met.digits_text() == "some 6.0 test digits a network fewer than it allows"
    assert met.within_text() == "5 of the 5 networks (40, 45, 50, 42, 44 misses) are within it"
    below = stats.ttest_1samp([m / 2007 for m in [40, 45, 50, 42, 44]], 0.025,
                              alternative="less").pvalue
    assert met.test.p_below() == pytest.approx(below) and below < 0.05
    assert met.one_sided_text() == (f'the one-sided test of "the true mean is at least 2.5%" '
                                    f"gives p = {below:.3f}, below 0.05: these seeds show a "
                                    f"true mean within the goal")
    assert "cannot rule out" in reading([52, 48, 49, 53, 50]).one_sided_text()
    assert reading([60, 61]).within_text() == "none of the networks is within it"
    assert reading([60, 61], goal=0.05).met
    # Exactly at the goal: met, as each network at it is within it.
    at = reading([50, 50, 50], goal=50 / 2007)
    assert at.met and at.within == [50, 50, 50]
    with pytest.raises(ValueError, match="two seeds or more"):
        reading([50])


def test_dsp_time_counts_the_papers_arithmetic():
    from lenet1.accounting import multiply_adds

    count = multiply_adds(make_model(RunConfig()))
    paper = dsp_seconds(PAPER_RECIPE, 7291)
    assert paper == pytest.approx(count.train_pattern * 7291 * 23 / 12.5e6)
    # Mini-batches update less often; the forward and backward arithmetic is the same.
    batched = dsp_seconds(PAPER_RECIPE.changed({"trainer": "minibatch", "batch_size": 32}), 7291)
    assert batched < paper and batched > (count.forward + count.backward) * 7291 * 23 / 12.5e6


def test_choose_takes_the_lowest_mean_error_then_mse_and_may_keep_the_previous_recipe():
    candidates = [{}, {"lr": 1}, {"lr": 2}, {"lr": 3}]
    assert choose(candidates, [[0.9], [0.2, 0.1], [0.1, 0.2], [0.3, 0.3]],
                  [[0.0], [0.5, 0.5], [0.4, 0.4], [0.1, 0.1]]) == 2
    assert choose(candidates, [[0.2], [0.1], [0.1], [0.1]], [[0.0], [0.3], [0.3], [0.3]]) == 1
    # A candidate whose MSE is NaN (a diverged seed) loses the tie-break, never wins it.
    assert choose([{"lr": 1}, {"lr": 2}], [[0.5], [0.5]], [[math.nan], [0.2]]) == 1
    # Nothing beats the previous recipe on validation: it is kept.
    assert choose(candidates, [[0.05], [0.1], [0.1], [0.1]], [[0.3], [0.3], [0.3], [0.3]]) == 0


def test_format_rows_aligns_columns():
    text = format_rows([{"a": "1", "bb": "long value"}, {"a": "333", "bb": "x"}])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[1] == "----+-----------"
    assert lines[0].index("|") == lines[2].index("|") == lines[3].index("|") == 4
    assert lines[2].startswith("1   | long value") and lines[3].startswith("333 | x")


# --- the whole study, quickly --------------------------------------------------------------------


def test_on_test_reads_a_validation_network_on_the_test_digits(tmp_path):
    sets = _sets()
    recipe = MINI.changed({"tta": 1})
    with Runner(tmp_path, sets, QUICK) as runner:
        judged = runner.run_candidates([recipe], (0,), "validation")[0]
        tested = runner.run(recipe, 0, "test")
        figures = runner.on_test(judged)
        with pytest.raises(ValueError, match="validation"):
            runner.on_test(tested)
    network = load_network(judged)
    test = sets["test"][1]
    expected = metrics_of(predict_shifted(network, test.images, 1), test.labels)
    assert figures == expected and figures.count == len(test)


@requires_data
def test_quick_study_runs_end_to_end_and_reloads(tmp_path, monkeypatch):
    tiny = Scale(train_size=100, max_passes=1, selection_seeds=1, test_block=2)
    study = run_study((0, 1), scale=tiny, root=tmp_path)
    assert [s.name for s in study.steps] == [step.name for step in STEPS]
    assert all(len(s.test_errors) == 2 and s.test_count == 2007 for s in study.steps)
    assert all(s.recipe.passes == 1 for s in study.steps)
    assert [sel.step for sel in study.selections] == [s.name for s in STEPS if s.choices]
    late = {step.name for step in STEPS if step.late}
    assert late == {"longer", "tta"} and all(step.late for step in STEPS[-len(late):])
    for sel in study.selections:
        # A late choice waits for every run, so it is judged on every seed.
        assert sel.seeds == ((0, 1) if sel.step in late else (0,))
        assert sel.validation_count == 20 and sel.chosen < len(sel.candidates)
    # Each step's figures changed only what it declares, with the choice that was made.
    chosen = {sel.step: sel.choice for sel in study.selections}
    assert [s.recipe for s in study.steps] == [r.capped(1) for r in recipes(chosen=chosen)]
    rows = report_module.step_rows(study)
    assert len(rows) == len(STEPS) + 1 and rows[0]["test error"] == "5.0%"
    assert rows[1]["Karpathy 2022 (MNIST stand-in)"].startswith("4.09%")
    assert rows[1]["vs previous step"] == "" and study.paired_change(0) is None
    change = study.paired_change(2)
    assert change is not None and rows[3]["vs previous step"].startswith(f"{100 * change[0]:+.2f}")
    assert len(report_module.selection_rows(study)) == sum(len(sel.candidates) for sel in study.selections)
    assert study.compute_seconds > 0 and study.fresh_seconds == pytest.approx(
        study.compute_seconds)
    again = run_study((0, 1), scale=tiny, root=tmp_path)
    assert again.fresh_seconds == 0 and not any(r.fresh for r in again.runs)
    assert [s.test_errors for s in again.steps] == [s.test_errors for s in study.steps]
    # Every step's recipe has validation runs on every seed, with the same networks' test
    # figures: on the selection seed a choice step's chosen candidate (or, before a pure
    # choice, its reference), on the other seeds runs trained in one stack for the step.
    for s in study.steps:
        assert s.validation_seeds == (0, 1) and len(s.validation_runs) == 2
        for run, error, on_test in zip(s.validation_runs, s.validation_errors,
                                       s.validation_test_errors):
            assert run.evaluation == "validation" and run.recipe == s.recipe
            assert error == run.test.error and 0 <= on_test <= 1
        assert math.isclose(s.validation_gap, statistics.fmean(s.validation_test_errors)
                            - statistics.fmean(s.validation_errors))
    for sel in study.selections:
        assert len(sel.test_errors) == len(sel.candidates)
        step = next(s for s in study.steps if s.name == sel.step)
        assert sel.test_errors[sel.chosen] == step.validation_test_errors[:len(sel.seeds)]
        assert sel.errors[sel.chosen] == step.validation_errors[:len(sel.seeds)]
    # Seed 1 was judged by no choice: its networks are trained for the comparison, one stack
    # a step (an online recipe: a stack a seed), and so are both seeds of a step nothing judged.
    def stacks(step):
        return {r.path.parent for r in step.validation_runs}

    assert len(stacks(study.steps[0])) == 2  # the paper's loop, online
    assert len(stacks(next(s for s in study.steps if s.name == "shuffle"))) == 1
    assert len(report_module.gap_rows(study)) == len(STEPS)
    assert "test minus validation" in report_module.report(study)
    # The README's table: a row a step and Karpathy's, then the final recipe against the goal.
    from lenet1.experiments.karpathy import read_record

    record = read_record()
    markdown = report_module.results_markdown(study, record).splitlines()
    rows = [line for line in markdown if line.startswith("| ")]
    assert len(rows) == len(STEPS) + 2 and rows[-1].startswith("| K | Karpathy's final recipe")
    final_line = next(line for line in markdown if line.startswith("- Final recipe"))
    assert f"{100 * study.final().mean:.2f} ± {100 * study.final().std:.2f}%" in final_line
    goal = report_module.goal_reading(study.final())
    assert any(line.startswith(f"- The goal, a mean of at most 2.5%: **{goal.verdict}**, "
                               f"{goal.digits_text()}; {goal.within_text()}. One-sample t-test")
               for line in markdown)
    assert markdown[-1] == (f"- Row K: the record `results/karpathy.json` (code key "
                            f"`{record.code_key}`), which `python -m lenet1 study karpathy` "
                            f"checks.")
    markdown = report_module.results_markdown(study).splitlines()
    readings = sum(len(s.validation_errors) for s in study.steps)
    assert f" of {readings} readings, one a step and seed." in markdown[-1]
    # A distilled run keeps its teacher's figures on the digits it is judged on; the other
    # runs have none.
    distilled = [r for r in study.runs if r.recipe.distil]
    assert any(r.evaluation == "validation" for r in distilled)
    for r in distilled:
        teacher = teacher_of(r)
        assert teacher is not None and teacher.count == (20 if r.evaluation == "validation"
                                                         else 2007)
    assert teacher_of(study.steps[0].validation_runs[0]) is None
    pytest.importorskip("matplotlib")
    report_module.plot_path(study, goal=0.025)
    report_module.plot_curves(study)
    report_module.plot_validation_test(study, goal=0.025)
    # The final step's networks, digit by digit.
    hard = study_module.difficulty(study)
    assert hard.seeds == (0, 1) and hard.validation_seeds == (0, 1)
    assert hard.test_predictions.shape == (2, 2007) and hard.validation_predictions.shape == (2, 20)
    final = study.final()
    assert [int(m) for m in hard.test_misses.sum(axis=1)] == list(final.test_misses)
    assert list(hard.held_out_test_misses.mean(axis=1)) == pytest.approx(
        final.validation_test_errors)
    assert list(hard.validation_misses.mean(axis=1)) == pytest.approx(final.validation_errors)
    assert all(hard.test_misses[:, i].all() for i in hard.missed_by_all())
    assert 0 <= hard.ensemble_error <= 1
    table = report_module.class_table(hard)
    assert list(table.index) == list(range(10)) and table["test digits"].sum() == 2007
    from lenet1.data import load

    report_module.plot_hardest(hard, load("usps").test.images.numpy())


def test_late_steps_end_the_study_and_list_their_candidates():
    late = Step("late", "late", "a late choice", choices=({"lr": 0.1},), late=True)
    with pytest.raises(ValueError, match="late steps must end the study"):
        run_study((0,), steps=(STEPS[0], late, STEPS[1]))
    assert late.candidates() == [{}, {"lr": 0.1}]
    assert replace(late, changes={"shuffle": True}).candidates() == [{"lr": 0.1}]
    assert Step("fixed", "f", "a fixed step", {"shuffle": True}).candidates() == [{}]


@requires_data
def test_a_late_choice_is_made_on_every_seed_after_every_candidate_is_trained(tmp_path):
    # The paper's loop, mini-batches (lr chosen on seed 0), then a late choice of shuffling:
    # its candidates are trained on both seeds and both sets whichever wins.
    steps = (STEPS[0], STEPS[1],
             Step("reshuffle", "shuffle", "shuffled or not, late", choices=({"shuffle": True},),
                  late=True))
    scale = Scale(train_size=100, max_passes=1, selection_seeds=1, test_block=2)
    study = run_study((0, 1), scale=scale, root=tmp_path, steps=steps)
    first, last = study.selections
    assert first.seeds == (0,) and last.seeds == (0, 1)
    assert last.candidates == ({}, {"shuffle": True})
    # Both candidates' test runs were trained, the loser's too, and kept for the compute.
    mini = study.steps[1].recipe
    tested = {(r.recipe.shuffle, r.seed) for r in study.runs if r.evaluation == "test"
              and r.recipe.trainer == "minibatch"}
    assert tested == {(False, 0), (False, 1), (True, 0), (True, 1)}
    assert study.steps[2].recipe == mini.changed(last.choice)
    # The late step's validation runs on every seed are those its choice read.
    final = study.steps[2]
    assert final.validation_seeds == (0, 1)
    assert final.validation_errors == last.errors[last.chosen]
    again = run_study((0, 1), scale=scale, root=tmp_path, steps=steps)
    assert again.fresh_seconds == 0 and again.selections == study.selections


def test_a_runner_reads_a_network_only_from_a_stack_that_trains_it(tmp_path):
    runner = Runner(tmp_path, _sets(), Scale())
    stack = Stack((MINI,), (0, 1), "test")
    with pytest.raises(ValueError, match="does not train this recipe on seed 2"):
        runner.read(stack, MINI, 2)
    with pytest.raises(ValueError, match="does not train this recipe"):
        runner.read(stack, MINI.changed({"lr": 0.1}), 0)


def test_side_by_side_keeps_the_calls_order_and_raises_their_errors():
    calls = [lambda i=i: i * i for i in range(7)]
    assert study_module.side_by_side(calls, threads=3) == [i * i for i in range(7)]
    assert study_module.side_by_side(calls, threads=1) == [i * i for i in range(7)]

    def broken() -> int:
        raise KeyError("lost")

    with pytest.raises(KeyError, match="lost"):
        study_module.side_by_side([*calls, broken], threads=2)
