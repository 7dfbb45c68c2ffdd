"""A run's numbers depend on its key alone: the quick studies trained serially, in worker
processes, one run at a time, on a Dask cluster (127.0.0.1), after deleting a random entry,
with a worker killed mid-study, and after Ctrl-C, give byte-identical histories."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lenet1.experiments import cache
from lenet1.experiments.executors import (
    WORKER_ENVIRONMENT,
    DaskCluster,
    InProcess,
    Processes,
    run_task,
)
from lenet1.experiments.modern import QUICK_SEEDS, recipes, run_study
from lenet1.experiments.paper import run_all
from lenet1.experiments.recipes import QUICK, study_sets, trained_recipe
from lenet1.experiments.runs import RunConfig
from lenet1.experiments.training import Runner, cached_runs

from .conftest import requires_data

ROOT = Path(__file__).resolve().parent.parent
pytestmark = requires_data


def histories(root: Path) -> dict[str, str]:
    """Every history.json under ``root``: its path within the entry's kind and its SHA-256."""
    found = {}
    for path in sorted(root.rglob("history.json")):
        assert cache.PARTIAL not in str(path), f"a half-written entry is visible: {path}"
        found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def whole_entries(root: Path) -> None:
    """Every entry folder is complete (its key, and a history in it or in each member)."""
    for key in root.glob(f"*/*/{cache.KEY_FILE}"):
        folder = key.parent
        assert cache.PARTIAL not in folder.name
        members = [p for p in folder.iterdir() if p.is_dir()]
        for member in members or [folder]:
            assert (member / "history.json").is_file(), member
    assert not [p for p in root.glob("*/*") if cache.PARTIAL in p.name]


def figures(study) -> list[object]:
    return ([(s.name, s.test_errors, s.test_misses, s.recipe, s.validation_errors,
              s.validation_test_errors) for s in study.steps]
            + [(sel.step, sel.errors, sel.chosen) for sel in study.selections])


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskCluster]:
    pytest.importorskip("distributed")
    executor = DaskCluster("local:2")
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def modern_serial(tmp_path_factory) -> tuple[Path, list[object], object]:
    root = tmp_path_factory.mktemp("serial")
    study = run_study(QUICK_SEEDS, quick=True, root=root, workers=1)
    return root, figures(study), study


# --- the modern study ---------------------------------------------------------------------------


def test_modern_in_worker_processes_is_byte_for_byte_the_serial_study(modern_serial, tmp_path):
    serial_root, serial_figures, _ = modern_serial
    study = run_study(QUICK_SEEDS, quick=True, root=tmp_path, workers=2)
    assert histories(tmp_path) == histories(serial_root) and figures(study) == serial_figures


def test_modern_on_a_dask_cluster_is_byte_for_byte_the_serial_study(modern_serial, cluster,
                                                                     tmp_path):
    serial_root, serial_figures, _ = modern_serial
    study = run_study(QUICK_SEEDS, quick=True, root=tmp_path, executor=cluster)
    assert histories(tmp_path) == histories(serial_root) and figures(study) == serial_figures
    whole_entries(tmp_path)


def test_modern_one_run_at_a_time_in_reverse_is_the_serial_study(modern_serial, tmp_path):
    serial_root, serial_figures, serial = modern_serial
    # As the study's runner: its test runs record the training set at their end only.
    runner = Runner(tmp_path, study_sets(QUICK), QUICK, train_curves=False)
    # A step's validation candidates are asked for as the set they are, and a step's recipe on
    # the seeds no choice trained as those seeds; every test run alone; the last first.
    candidate_sets: dict[Path, list[object]] = {}
    for run in serial.runs:
        if run.evaluation == "validation":
            candidate_sets.setdefault(run.path.parent, []).append(run)
    for runs in reversed(list(candidate_sets.values())):
        recipes = list(dict.fromkeys(r.recipe for r in runs))
        seeds = list(dict.fromkeys(r.seed for r in runs))
        if len({trained_recipe(r, QUICK) for r in recipes}) == 1 and len(seeds) > 1:
            runner.run_seeds(recipes[0], seeds, "validation")
        else:
            runner.run_candidates(recipes, seeds, "validation")
    for run in reversed(serial.runs):
        if run.evaluation == "test":
            runner.run(run.recipe, run.seed, run.evaluation)
    study = run_study(QUICK_SEEDS, quick=True, root=tmp_path, workers=1)
    assert not any(r.fresh for r in study.runs)  # everything was trained one at a time
    assert histories(tmp_path) == histories(serial_root) and figures(study) == serial_figures


def test_modern_after_deleting_a_random_entry_is_the_serial_study(modern_serial, tmp_path):
    serial_root, serial_figures, _ = modern_serial
    shutil.copytree(serial_root, tmp_path, dirs_exist_ok=True)
    entries = sorted((tmp_path / "modern").iterdir())
    victim = random.Random(os.getpid()).choice(entries)
    shutil.rmtree(victim)
    study = run_study(QUICK_SEEDS, quick=True, root=tmp_path, workers=2)
    assert victim.is_dir() and sum(r.fresh for r in study.runs) > 0
    assert histories(tmp_path) == histories(serial_root) and figures(study) == serial_figures


def test_a_killed_dask_worker_changes_nothing(modern_serial, tmp_path):
    pytest.importorskip("distributed")
    serial_root, serial_figures, _ = modern_serial
    with DaskCluster("local:2") as executor:  # its own: one of its workers is killed
        outcome: dict[str, object] = {}

        def study() -> None:
            try:
                outcome["study"] = run_study(QUICK_SEEDS, quick=True, root=tmp_path,
                                             executor=executor)
            except BaseException as error:  # noqa: BLE001 - reported below
                outcome["error"] = error

        thread = threading.Thread(target=study)
        thread.start()
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(f"modern/*/{cache.KEY_FILE}")):
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.05)
        pids = executor.client.run(os.getpid)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        killed_while_running = thread.is_alive()
        thread.join(timeout=300)
        assert not thread.is_alive() and "error" not in outcome, outcome
        assert killed_while_running
        assert victim not in executor.client.run(os.getpid).values()  # a new worker took over
    whole_entries(tmp_path)
    assert histories(tmp_path) == histories(serial_root)
    assert figures(outcome["study"]) == serial_figures


def test_ctrl_c_leaves_whole_entries_and_the_study_resumes(modern_serial, tmp_path):
    serial_root, _, _ = modern_serial
    command = [sys.executable, "-m", "lenet1", "study", "modern", "--quick", "--runs",
               str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LENET1_SCHEDULER", None)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(f"modern/*/{cache.KEY_FILE}")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    whole_entries(tmp_path)
    stored = histories(tmp_path)
    assert stored and set(stored.items()) <= set(histories(serial_root).items())
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert histories(tmp_path) == histories(serial_root)


# --- the paper study ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_serial(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("paper")
    results = run_all(quick=True, root=root, progress=None)
    return root, results


def paper_figures(results) -> list[object]:
    arms = {name: [r.history.to_json() for r in arm.runs] for name, arm in results.arms.items()}
    return [arms, {n: c.best.config for n, c in results.calibrations.items()},
            [a.final() for a in results.ablations]]


def test_paper_in_worker_processes_and_on_dask_is_byte_for_byte_serial(paper_serial, cluster,
                                                                      tmp_path):
    serial_root, serial = paper_serial
    with Processes(2) as pool:
        results = run_all(quick=True, root=tmp_path / "processes", progress=None,
                          executor=pool)
    assert histories(tmp_path / "processes") == histories(serial_root)
    assert paper_figures(results) == paper_figures(serial)
    results = run_all(quick=True, root=tmp_path / "dask", progress=None, executor=cluster)
    assert histories(tmp_path / "dask") == histories(serial_root)
    assert paper_figures(results) == paper_figures(serial)


def test_paper_one_run_at_a_time_and_after_deleting_one_is_serial(paper_serial, tmp_path):
    serial_root, serial = paper_serial
    configs = [RunConfig.from_json(json.loads(p.read_text()))
               for p in sorted(serial_root.glob("online/*/config.json"))]
    assert len(configs) > 10
    for config in reversed(configs):  # each alone: no replicas beside it
        cached_runs([config], tmp_path, stop_on_divergence=False, executor=InProcess(1))
    online = {k: v for k, v in histories(serial_root).items() if k.startswith("online/")}
    assert histories(tmp_path) == online
    victim = random.Random(os.getpid()).choice(sorted((tmp_path / "online").iterdir()))
    shutil.rmtree(victim)
    results = run_all(quick=True, root=tmp_path, progress=None)
    assert victim.is_dir()
    assert histories(tmp_path) == histories(serial_root)
    assert paper_figures(results) == paper_figures(serial)


# --- a teacher shared by stacks -------------------------------------------------------------------


def test_a_teacher_trained_on_dask_gives_each_stack_the_bytes_of_its_own(cluster, tmp_path):
    scale = replace(QUICK, selection_seeds=2)
    sets = study_sets(scale)
    distilling = recipes()[6].changed({"distil": 0.5})
    candidates = [distilling, distilling.changed({"distil": 0.0})]
    Runner(tmp_path / "own", sets, scale).run_candidates(candidates, (0, 1), "validation")
    runner = Runner(tmp_path / "shared", sets, scale, executor=cluster)
    stacks = runner.candidate_stacks(candidates, (0, 1), "validation")
    teachers = runner.teachers_for(stacks)
    assert len(teachers) == 1
    runner.train_missing([], "the teacher", teachers)
    runner.train_missing(stacks, "its stacks")
    assert histories(tmp_path / "shared") == histories(tmp_path / "own")
    for own, shared in zip(sorted((tmp_path / "own").rglob("*.safetensors")),
                           sorted((tmp_path / "shared").rglob("*.safetensors"))):
        assert own.read_bytes() == shared.read_bytes()


# --- the workers' code ----------------------------------------------------------------------------


def test_a_worker_refuses_a_study_keyed_by_other_code(cluster):
    def never(context, task, threads):  # pragma: no cover - refused before it runs
        raise AssertionError("trained under the wrong key")

    with pytest.raises(cache.CodeKeyError, match="code key"):
        run_task(never, "0123456789abcdef", {}, None, 1)
    with pytest.raises(cache.CodeKeyError, match="install the same lenet1"):
        list(cluster.run(_echo, [1], {}, "0123456789abcdef"))
    assert list(cluster.run(_echo, [1, 2], {}, cache.code_key())) in (
        [(0, 1), (1, 2)], [(1, 2), (0, 1)])


def _echo(context, task, threads):
    return task


def _malloc_setting() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_glibcs_adaptive_allocator(cluster):
    # Dask's nanny would start them with MALLOC_TRIM_THRESHOLD_ set, which halves the online
    # replicas' speed (every large array mapped afresh); the local cluster unsets it.
    settings = cluster.client.run(_malloc_setting)
    assert len(settings) == 2 and set(settings.values()) == {None}
    # The configuration the README gives `dask worker` says the same.
    config = yaml.safe_load((ROOT / "dask" / "lenet1.yaml").read_text())
    environ = config["distributed"]["nanny"]["pre-spawn-environ"]
    assert {f"distributed.nanny.pre-spawn-environ.{k}": v
            for k, v in environ.items()} == WORKER_ENVIRONMENT


def test_a_bad_scheduler_is_a_clear_error():
    from lenet1.experiments.executors import SchedulerError

    with pytest.raises(SchedulerError, match="local:N"):
        DaskCluster("local:zero")
    with pytest.raises(SchedulerError, match="no Dask scheduler answers"):
        DaskCluster("tcp://127.0.0.1:9", connect_timeout=1.0)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(SchedulerError, match="connect_timeout"):
            DaskCluster("tcp://127.0.0.1:9", connect_timeout=bad)  # type: ignore[arg-type]
    done = subprocess.run([sys.executable, "-m", "lenet1", "study", "modern", "--quick",
                           "--scheduler", "local:0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "local:N" in done.stderr and "Traceback" not in done.stderr
