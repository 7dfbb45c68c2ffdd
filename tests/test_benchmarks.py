"""The benchmarks still run (a smoke test: their timings belong to them, not to the tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import requires_data

ROOT = Path(__file__).resolve().parent.parent


@requires_data
def test_engine_benchmark_runs_one_small_pass():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--passes", "1",
         "--patterns", "200", "--reference-patterns", "20", "--replicas", "3", "--repeats", "1"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| fast | 200 |" in done.stdout and "protocol: 1 passes" in done.stdout
    assert done.stdout.splitlines()[-2].startswith("pass  1")


@requires_data
def test_study_benchmark_runs_the_quick_plans():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "study.py"), "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| paper")
            or line.startswith("| modern")]
    assert len(rows) == 2 and all(int(row.split("|")[2]) > 10 for row in rows)


@requires_data
def test_minibatch_step_benchmark_runs():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "minibatch_step.py"),
                           "--passes", "2", "--digits", "64"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 6 and rows[0].endswith("| 1.00x |")
    assert all(float(row.split("|")[2]) > 0 for row in rows)
