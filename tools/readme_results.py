"""Keep the README's results table equal to what the book's runs give.

    python tools/readme_results.py STUDY_DIR [--check]

STUDY_DIR is what ``python -m lenet1 study paper --out STUDY_DIR`` wrote (its ``results.md``
and the code key in ``key.txt``). Without ``--check`` the table between the README's markers is
replaced; with it, the script fails, saying how to update it, when the two differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- results: begin -->", "<!-- results: end -->"


def block(study: Path) -> str:
    key = (study / "key.txt").read_text().strip()
    table = (study / "results.md").read_text().rstrip("\n")
    return (f"{BEGIN}\n{table}\n\n(written by `python -m lenet1 study paper --out DIR` from the "
            f"runs of code key `{key}`)\n{END}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"{README}: the markers {BEGIN} and {END} are missing", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    wanted = block(args.study)
    if args.check:
        if BEGIN + current + END != wanted:
            print(f"{README}: the results table is not what the runs give; run "
                  f"`python tools/readme_results.py {args.study}` and commit", file=sys.stderr)
            return 1
        print(f"{README}: the results table matches the runs")
        return 0
    README.write_text(head + wanted + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
