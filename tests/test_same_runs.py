"""tools/same_runs.py: two code keys' runs compared entry by entry, bit for bit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

_SPEC = importlib.util.spec_from_file_location(
    "same_runs", Path(__file__).resolve().parent.parent / "tools" / "same_runs.py")
assert _SPEC is not None and _SPEC.loader is not None
same_runs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(same_runs)


def _entry(root: Path, name: str, code: str, spec: dict[str, object], weight: float,
           seconds: float) -> Path:
    folder = root / "modern" / name
    (folder / "s0").mkdir(parents=True)
    (folder / "key.json").write_text(json.dumps({"code": code, "kind": "modern", "spec": spec}))
    (folder / "stack.json").write_text(json.dumps({"seconds": seconds,
                                                    "environment": {"python": str(seconds)}}))
    (folder / "s0" / "result.json").write_text(json.dumps({"seconds": seconds,
                                                           "diverged": False}))
    save_file({"w": torch.full((3,), weight)}, str(folder / "s0" / "weights.safetensors"))
    return folder


def test_the_same_networks_trained_at_other_times_are_the_same(tmp_path, capsys):
    new, old = tmp_path / "new", tmp_path / "old"
    _entry(new, "a-1", "k2", {"x": 1}, 0.5, seconds=1.0)
    _entry(old, "a-0", "k1", {"x": 1}, 0.5, seconds=9.0)  # slower, elsewhere: the same run
    _entry(old, "b-0", "k1", {"x": 2}, 0.7, seconds=1.0)  # no counterpart: not compared
    assert same_runs.main(["k2", "k1", "--runs", str(new), "--old-runs", str(old)]) == 0
    assert "1 entries the same bit for bit, 0 different, 0 without" in capsys.readouterr().out


def test_a_weight_that_moved_or_an_entry_the_old_key_lacks_is_reported(tmp_path, capsys):
    new, old = tmp_path / "new", tmp_path / "old"
    _entry(new, "a-1", "k2", {"x": 1}, 0.5 + 2 ** -20, seconds=1.0)
    _entry(old, "a-0", "k1", {"x": 1}, 0.5, seconds=1.0)
    _entry(new, "c-1", "k2", {"x": 3}, 0.5, seconds=1.0)
    _entry(old, "c-0", "k3", {"x": 3}, 0.5, seconds=1.0)  # another key: not the old one
    assert same_runs.main(["k2", "k1", "--runs", str(new), "--old-runs", str(old)]) == 1
    out = capsys.readouterr().out
    assert "differs: modern/a-1: s0/weights.safetensors" in out
    assert "only at k2: modern/c-1" in out
    assert "0 entries the same bit for bit, 1 different, 1 without an entry of k1" in out


def test_a_key_with_no_entries_is_an_error(tmp_path, capsys):
    assert same_runs.main(["k9", "k1", "--runs", str(tmp_path)]) == 2
    assert "no entries of code key k9" in capsys.readouterr().err
