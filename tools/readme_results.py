"""Keep the README's results tables equal to what the book's runs give.

    python tools/readme_results.py PAPER_DIR MODERN_DIR [--check]

PAPER_DIR is what ``python -m lenet1 study paper --out PAPER_DIR`` wrote, MODERN_DIR what
``python -m lenet1 study modern --out MODERN_DIR`` wrote: each holds the README's table
(``results.md``) and the code key of the runs behind it (``key.txt``). Without ``--check`` the
text between each table's markers in the README is replaced; with it, the script fails, saying
how to update them, when any differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
#: Each table's name in its markers, and the study that writes it.
TABLES = {"results": "paper", "modern": "modern"}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def block(name: str, study: Path) -> str:
    begin, end = markers(name)
    key = (study / "key.txt").read_text().strip()
    table = (study / "results.md").read_text().rstrip("\n")
    return (f"{begin}\n{table}\n\n(written by `python -m lenet1 study {TABLES[name]} --out DIR` "
            f"from the runs of code key `{key}`)\n{end}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paper", type=Path, help="what `study paper --out` wrote")
    parser.add_argument("modern", type=Path, help="what `study modern --out` wrote")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    readme: Path = args.readme
    text = readme.read_text()
    stale = []
    for name, study in (("results", args.paper), ("modern", args.modern)):
        begin, end = markers(name)
        if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
            print(f"{readme}: the markers {begin} and {end} must appear once each, in that "
                  f"order", file=sys.stderr)
            return 2
        head, rest = text.split(begin, 1)
        current, tail = rest.split(end, 1)
        wanted = block(name, study)
        if begin + current + end != wanted:
            stale.append(TABLES[name])
            text = head + wanted + tail
    if args.check:
        if stale:
            print(f"{readme}: the {' and '.join(stale)} study's table(s) are not what the runs "
                  f"give; run `python tools/readme_results.py {args.paper} {args.modern}` and "
                  f"commit", file=sys.stderr)
            return 1
        print(f"{readme}: the results tables match the runs")
        return 0
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
