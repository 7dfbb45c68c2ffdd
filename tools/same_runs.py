"""Do two code keys train the same networks? Their runs compared entry by entry, bit for bit.

    python tools/same_runs.py NEW_KEY OLD_KEY [--runs DIR] [--old-runs DIR]

For a change meant to move no number (faster operators that keep every sum, say): train the
studies at the new code key, then compare each of its entries in ``--runs`` (default: the
runs folder, ``LENET1_RUNS`` or ``runs/``) with the entry of the old key, in ``--old-runs``
(default: the same folder), that has the same kind and spec. Every file is compared: the
tensors of a ``.safetensors`` file exactly, a JSON file without the records of when and where
it was trained (``seconds``, ``environment``), any other byte for byte. Prints what differs and
which entries the old key lacks, then a count; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from lenet1.experiments.cache import KEY_FILE, entries, read_key, runs_root

UNTIMED = ("seconds", "environment")  # how long and where: not a number of the run


def _keyed(root: Path, code: str) -> dict[str, Path]:
    """``code``'s complete entries under ``root`` (:func:`~lenet1.experiments.cache.entries`),
    by their kind and spec."""
    found = {}
    for entry in entries(root, code):
        key = read_key(root / entry)
        found[json.dumps([key["kind"], key["spec"]], sort_keys=True)] = root / entry
    return found


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in UNTIMED}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".safetensors":
        x, y = load_file(a), load_file(b)
        return x.keys() == y.keys() and all(torch.equal(x[n], y[n]) for n in x)
    if a.suffix == ".json":
        return bool(_untimed(json.loads(a.read_text())) == _untimed(json.loads(b.read_text())))
    return a.read_bytes() == b.read_bytes()


def differences(new: Path, old: Path) -> list[str]:
    """The files of entry ``new`` that ``old`` lacks or holds otherwise (relative paths)."""
    names = {p.relative_to(new) for p in new.rglob("*") if p.is_file()} | \
        {p.relative_to(old) for p in old.rglob("*") if p.is_file()}
    return sorted(str(name) for name in names
                  if name.name not in (KEY_FILE, "environment.json")
                  and not ((new / name).is_file() and (old / name).is_file()
                           and _same_file(new / name, old / name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("new_key")
    parser.add_argument("old_key")
    parser.add_argument("--runs", type=Path, default=None, help="the new key's runs folder")
    parser.add_argument("--old-runs", type=Path, default=None,
                        help="the old key's runs folder (default: --runs)")
    args = parser.parse_args(argv)
    new_root = runs_root(args.runs)
    old_root = runs_root(args.old_runs) if args.old_runs else new_root
    new, old = _keyed(new_root, args.new_key), _keyed(old_root, args.old_key)
    if not new:
        print(f"no entries of code key {args.new_key} under {new_root}", file=sys.stderr)
        return 2
    same = differ = alone = 0
    for spec, folder in new.items():
        if spec not in old:
            alone += 1
            print(f"only at {args.new_key}: {folder.parent.name}/{folder.name}")
            continue
        changed = differences(folder, old[spec])
        if changed:
            differ += 1
            print(f"differs: {folder.parent.name}/{folder.name}: {', '.join(changed)}")
        else:
            same += 1
    print(f"{same} entries the same bit for bit, {differ} different, {alone} without an entry "
          f"of {args.old_key}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
