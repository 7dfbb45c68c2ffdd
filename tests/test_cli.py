from __future__ import annotations

import subprocess
import sys

import pytest

from lenet1.cli import main

from .conftest import requires_data


def test_info_prints_the_papers_totals(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "1,256" in out and "64,660" in out and "9,760" in out


@pytest.mark.parametrize("argv", [
    ["train", "--passes", "-1", "--out", "x"],
    ["train", "--lr", "0", "--out", "x"],
    ["train", "--unit", "relu", "--out", "x"],
    ["train"],
    ["frobnicate"],
    [],
    ["study"],
    ["study", "everything"],
    ["study", "modern", "--seeds", "x"],
])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "error" in err and "Traceback" not in err


def test_missing_data_root_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lenet1.data.urllib.request.urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert main(["train", "--data-root", str(tmp_path / "none"), "--passes", "0",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "LENET1_DATA" in err


def test_evaluate_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["study", "paper", "--seeds", "1", "2"],  # the paper study's seeds are its plan's
    ["study", "modern", "--seeds", "1", "1"],  # seeds must be distinct
    ["study", "paper", "--check", "2"],  # a check is of a shipped table
    ["study", "karpathy", "--quick"],  # a record and its one-pass check: nothing to shrink
    ["study", "karpathy", "--seeds", "0"],  # the record's seeds are one stack
    ["study", "karpathy", "--scheduler", "local:2"],
])
def test_study_options_that_do_not_apply_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "study: error" in err


def test_study_passes_its_options_through(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("lenet1.report.paper.run_and_report",
                        lambda **kwargs: calls.append(kwargs))
    assert main(["study", "paper", "--quick", "--runs", str(tmp_path), "--data-root", "d",
                 "--out", str(tmp_path / "out")]) == 0
    (kwargs,) = calls
    assert kwargs["quick"] is True and kwargs["root"] == str(tmp_path)
    assert kwargs["data_root"] == "d" and kwargs["out"] == tmp_path / "out"


def test_the_modern_study_writes_the_readmes_table(tmp_path, monkeypatch, capsys):
    from lenet1.experiments.cache import code_key

    monkeypatch.setattr("lenet1.experiments.modern.run_study", lambda *args, **kwargs: "study")
    monkeypatch.setattr("lenet1.report.modern.report", lambda study, record: f"tables of {study}")
    monkeypatch.setattr("lenet1.report.modern.results_markdown",
                        lambda study, record: f"| {study} |\n")
    assert main(["study", "modern", "--quick", "--out", str(tmp_path / "out")]) == 0
    assert "tables of study" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.md").read_text() == "| study |\n"
    assert (tmp_path / "out" / "summary.txt").read_text() == "tables of study\n"
    assert (tmp_path / "out" / "key.txt").read_text() == code_key() + "\n"


def test_a_run_folder_that_cannot_be_made_is_one_line_and_exit_2(capsys):
    assert main(["train", "--passes", "0", "--out", "/proc/x/y"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "cannot create the run folder /proc/x/y" in err


@pytest.mark.parametrize("which", ["paper", "modern"])
def test_a_studys_output_folder_that_cannot_be_made_stops_it_before_it_trains(which, monkeypatch,
                                                                             capsys):
    def train(*args, **kwargs):
        raise AssertionError("the study ran")

    monkeypatch.setattr("lenet1.report.paper.run_and_report", train)
    monkeypatch.setattr("lenet1.experiments.modern.run_study", train)
    assert main(["study", which, "--quick", "--out", "/proc/x/y"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "cannot create the output folder /proc/x/y" in err


def test_train_uses_the_fast_engine_unless_told(monkeypatch, tmp_path, capsys):
    engines = []
    monkeypatch.setattr("lenet1.cli.train_run",
                        lambda config, **kwargs: engines.append(config.engine))
    assert main(["train", "--passes", "0", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--passes", "0", "--engine", "reference",
                 "--out", str(tmp_path / "b")]) == 0
    assert engines == ["fast", "reference"]


def test_bad_table_name(capsys):
    assert main(["info", "--table", "random:x"]) == 2


@requires_data
def test_train_then_evaluate_in_a_subprocess(tmp_path):
    out = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "lenet1", "train", "--passes", "0",
                              "--out", str(out)], capture_output=True, text=True, check=True)
    assert "pass  0" in trained.stdout and (out / "weights.safetensors").is_file()
    evaluated = subprocess.run([sys.executable, "-m", "lenet1", "evaluate", str(out)],
                               capture_output=True, text=True, check=True)
    final_line = [line for line in trained.stdout.splitlines() if line.startswith("pass")][-1]
    assert final_line in evaluated.stdout


@requires_data
def test_evaluate_warns_when_the_weights_do_not_give_the_recorded_misses(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "run"
    assert main(["train", "--passes", "1", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    weights = load_file(str(out / "weights.safetensors"))
    weights["out_bias"][0] += 100.0  # every digit now reads as a 0
    save_file(weights, str(out / "weights.safetensors"))
    assert main(["evaluate", str(out)]) == 0
    assert "warning: the reloaded weights do not give the recorded misses" in \
        capsys.readouterr().err
