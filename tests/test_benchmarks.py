"""The benchmarks still run (a smoke test: their timings belong to them, not to the tests)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from .conftest import requires_data

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    """What the benchmark prints; it must exit 0."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@requires_data
def test_engine_benchmark_runs_one_small_pass():
    out = _run("engine.py", "--passes", "1", "--patterns", "200", "--reference-patterns", "20",
               "--replicas", "3", "--repeats", "1")
    assert "| fast | 200 |" in out and "protocol: 1 passes" in out
    assert out.splitlines()[-2].startswith("pass  1")


@requires_data
def test_study_benchmark_runs_a_quick_plan_here_and_on_dask():
    # The modern study only: the paper study on Dask is tested in test_reproducible.py.
    out = _run("study.py", "--quick", "--which", "modern", "--scheduler", "local:2")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| modern")]
    assert [row[2].strip() for row in rows] == ["default", "Dask local:2"]
    # the same networks either way, the default's ratio 1 by definition
    assert rows[0][3] == rows[1][3] and int(rows[0][3]) > 10 and rows[0][8].strip() == "1.00"


@requires_data
def test_minibatch_step_benchmark_runs():
    out = _run("minibatch_step.py", "--passes", "2", "--digits", "64")
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 6 and rows[0].endswith("| 1.00x |")
    # the figures are differences of timings: on 64 digits they may be noise, but numbers
    assert all(math.isfinite(float(row.split("|")[2])) for row in rows)


@requires_data
def test_tanh_units_benchmark_runs():
    out = _run("tanh_units.py", "--passes", "1", "--rounds", "1", "--digits", "64")
    alone, stacks = out.splitlines()[-2:]
    assert alone.startswith("the scaled tanh unit") and "(ratio " in alone
    ratio = float(stacks.rsplit("(ratio ", 1)[1].rstrip(")"))
    assert stacks.startswith("stacks of five") and math.isfinite(ratio) and ratio > 0


@requires_data
def test_stack_step_benchmark_runs():
    out = _run("stack_step.py", "--passes", "2", "--repeats", "2", "--digits", "64")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")][1:]
    assert [row[1].strip() for row in rows] == [
        "the whole step", "H1 and H2 convolutions, forward and backward",
        "augmentation (shifts, rotation and scaling)", "the rest"]
    assert rows[0][3].strip() == "100%"
    # the figures are differences of timings: on 64 digits they may be noise, but numbers
    assert all(math.isfinite(float(row[2])) for row in rows)
