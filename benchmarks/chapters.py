"""Each chapter executed in a fresh kernel: its wall time and the peak memory of its process.

    LENET1_DATA=... python benchmarks/chapters.py [notebooks/01_data.md ...] [--quick]

Chapters run as the book runs them (full mode unless ``--quick``), from the trained runs already
in the runs folder, so after ``make book`` (or ``python -m lenet1 runs fetch``) this measures
what a reader waits for, and whether a chapter fits Binder's 2 GB. The peak is the largest
resident set of the executing process and its kernel (Linux ``wait4``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_chapter(chapter: Path, quick: bool) -> tuple[float, float, int]:
    """(seconds, peak resident GB, exit status) of executing ``chapter`` once."""
    env = {**os.environ, "LENET1_QUICK": "1" if quick else "0"}
    # The chapter executes in a child process, which starts the kernel: wait4 on the child
    # gives the peak of both.
    command = [sys.executable, __file__, "--execute-one", str(chapter)]
    start = time.perf_counter()
    # stderr to a file, not a pipe: a pipe nobody reads while waiting can fill and block.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=chapter.parent, env=env,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code:
            errors.seek(0)
            sys.stderr.write(errors.read().decode()[-2000:])
    return seconds, usage.ru_maxrss / 2**20, code  # ru_maxrss is in kB


def execute_one(chapter: Path) -> None:
    """Run every cell of the chapter, in its folder, as the book does (errors raise)."""
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(chapter)
    NotebookClient(notebook, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(chapter.parent)}}).execute()


def main() -> None:
    if sys.argv[1:2] == ["--execute-one"]:
        execute_one(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path,
                        default=sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md")))
    parser.add_argument("--quick", action="store_true", help="LENET1_QUICK=1")
    args = parser.parse_args()
    print("| chapter | seconds | peak memory (GB) | status |")
    print("|---|---:|---:|---|")
    failed = False
    for chapter in args.chapters:
        seconds, peak, code = run_chapter(chapter.resolve(), args.quick)
        failed |= code != 0
        print(f"| {chapter.stem} | {seconds:.1f} | {peak:.2f} | {'ok' if code == 0 else code} |",
              flush=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
