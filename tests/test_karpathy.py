"""Karpathy's final modern recipe: as his code has it, and its shipped record kept honest."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lenet1.experiments.karpathy import (
    KARPATHY_FINAL,
    RECORD,
    compare_beginning,
    read_record,
    retrain_beginning,
    write_record,
)
from lenet1.experiments.recipes import FULL, stack_of
from lenet1.experiments.training import StaleTableError
from lenet1.facts import KARPATHY_MODERN
from lenet1.report.modern import karpathy_report, karpathy_row

from .conftest import requires_data


def test_the_recipe_is_his_final_one():
    k, r = KARPATHY_MODERN, KARPATHY_FINAL
    assert (r.trainer, r.batch_size, r.shuffle) == ("minibatch", k["batch_size"], False)
    assert (r.unit, r.output, r.loss, r.dropout) == ("relu", "logits", "cross_entropy",
                                                     k["dropout"])
    assert (r.optimizer, r.lr, r.weight_decay, r.decay_biases) == ("adamw",
                                                                   k["adamw_lr_start"], 0.01,
                                                                   True)
    config = r.modern_config(0)
    steps = 7291 * r.passes
    assert config.lr_at(steps - 1, steps) == pytest.approx(k["adamw_lr_end"])
    assert r.passes == k["relu_dropout_passes"] and r.translate == k["shift"] and r.wrap
    assert (r.init, r.h2_background, r.tta) == ("sqrt_fan_in", -1.0, 0)
    # The five seeds train as one stack, decided by the recipe alone.
    assert stack_of(r, 3, "test", FULL).seeds == (0, 1, 2, 3, 4)


@requires_data
def test_the_shipped_record_holds_his_recipe_and_every_pass():
    record = read_record()
    assert record.recipe == KARPATHY_FINAL and record.seeds == (0, 1, 2, 3, 4)
    assert all(len(h.passes) == 81 and h.passes[-1].test.count == 2007
               for h in record.histories)
    row = karpathy_row(record)
    assert row["passes"] == "80" and row["batch"] == "1"
    assert f"{100 * record.test_spread.mean:.2f}" in row["test error"]
    assert "seed 4" in karpathy_report(record)


@requires_data
def test_the_check_retrains_the_first_pass_and_refuses_a_changed_record(tmp_path):
    record = read_record()
    beginnings = retrain_beginning(record, 1)
    assert compare_beginning(record, beginnings) == 2 * len(record.seeds)  # passes 0 and 1
    # The same record with one figure of one seed's first pass changed is refused.
    data = json.loads(RECORD.read_text())
    data["histories"][2][1]["test"]["misses"] += 1
    changed = tmp_path / "karpathy.json"
    changed.write_text(json.dumps(data))
    with pytest.raises(StaleTableError, match="seed 2"):
        compare_beginning(read_record(changed), beginnings)


@requires_data
def test_a_record_round_trips_and_bad_records_are_refused(tmp_path):
    record = read_record()
    path = tmp_path / "k.json"
    write_record(record, path)
    assert read_record(path) == record
    with pytest.raises(FileNotFoundError, match="study karpathy --scale full"):
        read_record(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a record"):
        read_record(tmp_path / "bad.json")
    other = json.loads(path.read_text())
    other["recipe"]["lr"] = 1e-3
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(StaleTableError, match="another recipe"):
        read_record(tmp_path / "other.json")
    short = json.loads(path.read_text())
    short["histories"][0] = short["histories"][0][:3]
    (tmp_path / "short.json").write_text(json.dumps(short))
    with pytest.raises(ValueError, match="81 passes"):
        read_record(tmp_path / "short.json")
    with pytest.raises(ValueError, match="one stack"):
        retrain_beginning(replace(record, seeds=(1, 2, 3, 4, 5)))
