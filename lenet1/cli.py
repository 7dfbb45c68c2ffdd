"""The command line: ``python -m lenet1 {info,train,evaluate,study}``.

Every expected failure (bad arguments, missing data, a folder that is not a run) ends with a
one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .accounting import architecture, format_architecture
from .data import SOURCES, DataError
from .experiments.archive import ArchiveError
from .experiments.cache import CodeKeyError
from .experiments.executors import SchedulerError
from .experiments.runs import (
    ENGINES,
    LOSS_SCALES,
    MODELS,
    OPTIMIZERS,
    ORDERS,
    SCHEDULES,
    RunConfig,
    RunError,
    fit_and_evaluation_sets,
    load_run,
    train_run,
)
from .experiments.training import StaleTableError
from .nets import BACKGROUND, BIAS_INITS, INITS, OUTPUT_UNITS, UNITS, ShapeError, build_model
from .report.text import format_record
from .train.online import evaluate

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lenet1", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = commands.add_parser("info", help="the architecture table, per layer and in total")
    info.add_argument("--model", choices=MODELS, default="lenet1")
    info.add_argument("--table", default="block", help="block, full or random:SEED")

    train = commands.add_parser("train", help="train a network and write a run folder")
    defaults = RunConfig()
    train.add_argument("--data", choices=SOURCES, default=defaults.data)
    train.add_argument("--data-root", default=None,
                       help="folder holding the data (default: $LENET1_DATA, else data/ of the "
                            "project checkout, else ~/.cache/lenet1/data)")
    train.add_argument("--model", choices=MODELS, default=defaults.model)
    train.add_argument("--unit", choices=UNITS, default=defaults.unit)
    train.add_argument("--init", choices=INITS, default=defaults.init)
    train.add_argument("--table", default=defaults.table, help="block, full or random:SEED")
    train.add_argument("--output", choices=OUTPUT_UNITS, default=None,
                       help="the output units (default: like the hidden ones); sigmoid: "
                            "trained on 0/1 targets")
    train.add_argument("--bias-init", choices=BIAS_INITS, default=defaults.bias_init,
                       help="biases start at zero, uniform like the unit's weights, or zero "
                            "but the outputs' at -1")
    train.add_argument("--h2-background", type=float, default=BACKGROUND,
                       help="value H1's maps are padded with for H2 (default -1)")
    train.add_argument("--input-background", type=float, default=BACKGROUND,
                       help="value the input is padded with (default -1)")
    train.add_argument("--loss", choices=tuple(LOSS_SCALES), default=defaults.loss,
                       help="the squared error each step descends: its mean over the 10 "
                            "outputs (default), half that, the sum, or half the sum")
    train.add_argument("--order", choices=ORDERS, default=defaults.order,
                       help="the patterns in the file's order every pass (default), or "
                            "reshuffled before every pass from the seed")
    train.add_argument("--passes", type=_positive_int, default=defaults.passes)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="SGD's learning rate, or SDLM's first eta (loss averaged over the "
                            "10 outputs); default: sgd 0.03, sdlm 0.0001")
    train.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                       help="SDLM's eta over passes: constant, or the 1998 paper's decay")
    train.add_argument("--mu", type=_positive_float, default=defaults.mu,
                       help="SDLM's mu, added to every curvature (in units of our loss)")
    train.add_argument("--curvature-patterns", type=_positive_int,
                       default=defaults.curvature_patterns,
                       help="SDLM: patterns the curvature is averaged over before each pass")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--engine", choices=ENGINES, default="fast",
                       help="fast: the compiled engine (default); reference: the autograd loop, "
                            "the same arithmetic about 40 times slower")
    train.add_argument("--holdout", type=float, default=defaults.holdout,
                       help="hold out this fraction of the training digits and report them "
                            "instead of the test set (for calibration)")
    train.add_argument("--holdout-seed", type=int, default=defaults.holdout_seed)
    train.add_argument("--out", type=Path, required=True, help="the run folder to write")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate_ = commands.add_parser("evaluate", help="reload a run folder, reprint its figures")
    evaluate_.add_argument("run", type=Path)
    evaluate_.add_argument("--data-root", default=None)

    study = commands.add_parser(
        "study", help="train (or reload) every run of a study and print its tables",
        description="paper: calibration, 10 seeds of LeNet-1 and FC-40 with SDLM and SGD, "
                    "rejection, ablations (the book's chapters 4-9). modern: the modern "
                    "retraining path (chapter 11). fidelity (chapter 10): which of the "
                    "choices the paper leaves open give its five figures together; by "
                    "default it reads the "
                    "table that ships with the book and retrains 4 of its runs at random to "
                    "check it, --scale full trains the whole design and writes the table. "
                    "karpathy (chapter 11): Karpathy's final modern recipe as his code runs "
                    "it; by default it reads the record that ships with the book and retrains "
                    "its first pass to check it, --scale full trains the five networks (some "
                    "twenty minutes) and writes the record. "
                    "Saved runs are reloaded, not retrained.")
    study.add_argument("which", choices=("paper", "modern", "fidelity", "karpathy"))
    study.add_argument("--quick", action="store_true",
                       help="a smoke test: a couple of passes and seeds (as LENET1_QUICK=1)")
    study.add_argument("--runs", default=None,
                       help="where trained runs are cached (default: $LENET1_RUNS, else runs/ of "
                            "the project checkout, else ~/.cache/lenet1/runs)")
    study.add_argument("--data-root", default=None)
    study.add_argument("--out", type=Path, default=None,
                       help="paper: also write the summary, tables (CSV) and figures (PNG) "
                            "here; modern: the summary and the README's table")
    study.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="modern: the seeds of every step (default 0 1 2 3 4)")
    study.add_argument("--scale", choices=("full",), default=None,
                       help="fidelity, karpathy: train everything (fidelity: about 1,550 networks, "
                            "some 40 minutes on two cores; karpathy: 5 networks, some 16 "
                            "minutes of one core) and write the table (see --table)")
    study.add_argument("--table", type=Path, default=None,
                       help="fidelity, karpathy: the table to read, or with --scale full to "
                            "write (default: results/fidelity.csv, results/karpathy.json)")
    study.add_argument("--check", type=_positive_int, default=None,
                       help="fidelity: how many of the table's runs to retrain as a check "
                            "(default 4); karpathy: how many passes (default 1)")
    study.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="train the missing networks on a Dask cluster: a scheduler's "
                            "address (tcp://host:8786), or local:N for N worker processes "
                            "on this machine (default: $LENET1_SCHEDULER, else this machine "
                            "without Dask); the numbers are the same either way")

    runs = commands.add_parser(
        "runs", help="the archive of trained runs: pack, fetch, verify",
        description="The book's trained runs as one archive, named by the code key of the run "
                    "cache: pack the runs this code made, fetch them (checked against their "
                    "SHA-256 manifest before anything is unpacked), verify a runs folder.")
    actions = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    pack = actions.add_parser("pack", help="write the archive of this code's runs into DIR")
    pack.add_argument("out", type=Path, metavar="DIR")
    fetch = actions.add_parser("fetch", help="download an archive into the runs folder")
    fetch.add_argument("url", nargs="?", default=None,
                       help="the archive, or the folder that holds it (default: "
                            "$LENET1_RUNS_URL, else the published site of the repository in "
                            "_config.yml)")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    actions.add_parser("verify", help="check the runs folder against its manifest")
    for action in (pack, fetch, actions.choices["verify"]):
        action.add_argument("--runs", default=None,
                            help="the runs folder (default: $LENET1_RUNS, else runs/ of the "
                                 "project checkout, else ~/.cache/lenet1/runs)")
    return parser


def _runs(args: argparse.Namespace) -> None:
    from .data import workspace
    from .experiments import archive, cache

    root = cache.runs_root(args.runs)
    if args.action == "pack":
        folders = [str(p) for p in cache.entries(root)]
        path = archive.pack(root, args.out, cache.code_key(), folders)
        print(f"{path}: {len(folders)} runs, {path.stat().st_size / 1e6:.1f} MB")
    elif args.action == "fetch":
        url = args.url or archive.default_url(workspace() / "_config.yml")
        added = archive.fetch(url, root, cache.code_key(),
                              progress=not args.no_progress and sys.stderr.isatty())
        print(f"{added} runs added to {root}")
    else:
        print(f"{archive.verify(root)} files in {root} match their manifest")


def _info(args: argparse.Namespace) -> None:
    model = build_model(args.model, table=args.table)
    print(format_architecture(architecture(model)))


def _make_folder(path: Path, what: str) -> None:
    """Make ``path`` before any training, not after: a folder that cannot be made is known at
    once."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create {what} {path}: {error.strerror or error}") from None


def _train(args: argparse.Namespace) -> None:
    config_names = {f.name for f in fields(RunConfig)}
    config = RunConfig(**{k: v for k, v in vars(args).items() if k in config_names})
    _make_folder(args.out, "the run folder")
    print(f"training {config.model} on {config.data} for {config.passes} passes "
          f"({config.optimizer}, lr {config.lr}, seed {config.seed}, {config.engine} engine)",
          flush=True)
    train_run(config, out=args.out, data_root=args.data_root,
              on_pass=lambda record: print(format_record(record), flush=True),
              progress=not args.no_progress and sys.stderr.isatty())
    print(f"run folder: {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    run = load_run(args.run)
    train, evaluation = fit_and_evaluation_sets(run.config, args.data_root)
    final = run.history.final
    recomputed = type(final)(final.pass_index, evaluate(run.model, train),
                             evaluate(run.model, evaluation))
    print(f"{run.path}: {run.config.model} on {run.config.data}, {run.config.optimizer}, "
          f"seed {run.config.seed}")
    print(format_record(recomputed))
    if recomputed.train.misses != final.train.misses or \
            recomputed.test.misses != final.test.misses:
        print("warning: the reloaded weights do not give the recorded misses", file=sys.stderr)


def _fidelity(args: argparse.Namespace) -> None:
    from .experiments import fidelity
    from .report.fidelity import report

    def log(message: str) -> None:
        print(message, flush=True)

    table = args.table or fidelity.TABLE
    if args.scale == "full" or args.quick:
        scale = fidelity.QUICK if args.quick else fidelity.FULL
        study = fidelity.run_study(scale, args.quick, root=args.runs, data_root=args.data_root,
                                   progress=log, scheduler=args.scheduler)
        if not args.quick:
            fidelity.write_table(study, table)
            log(f"wrote {table} and {table.with_suffix('.json').name}")
    else:
        study = fidelity.read_table(table)
        checks = fidelity.check_table(study, 4 if args.check is None else args.check,
                                      root=args.runs,
                                      data_root=args.data_root, progress=log)
        log(f"retrained {len(checks)} of the table's runs at random: all give its figures")
    print()
    print(report(study))


def _karpathy(args: argparse.Namespace) -> None:
    from .experiments import karpathy
    from .report.modern import karpathy_report

    def log(message: str) -> None:
        print(message, flush=True)

    if args.quick:
        raise ValueError("the karpathy study has no quick mode: it reads its record and "
                         "retrains one pass (--check N for N passes)")
    table = args.table or karpathy.RECORD
    if args.scale == "full":
        record = karpathy.train_record(root=args.runs, data_root=args.data_root, log=log)
        karpathy.write_record(record, table)
        log(f"wrote {table}")
    else:
        record = karpathy.read_record(table)
        passes = 1 if args.check is None else args.check
        karpathy.check_record(record, passes, args.data_root)
        log(f"retrained the first {passes} pass(es) of the record's {len(record.seeds)} "
            f"networks: every figure is the recorded one")
    print()
    print(karpathy_report(record))


def _study(args: argparse.Namespace) -> None:
    if args.which not in ("fidelity", "karpathy") and (args.scale or args.table
                                                       or args.check is not None):
        raise ValueError("--scale, --table and --check are for the fidelity and karpathy "
                         "studies")
    if args.which in ("fidelity", "karpathy"):
        if args.seeds is not None or args.out is not None:
            raise ValueError(f"--seeds and --out are not for the {args.which} study")
        if args.which == "karpathy" and args.scheduler:
            raise ValueError("the karpathy study trains one stack, in this process")
        (_fidelity if args.which == "fidelity" else _karpathy)(args)
        return
    if args.out is not None:
        _make_folder(args.out, "the output folder")
    if args.which == "paper":
        if args.seeds is not None:
            raise ValueError("--seeds is for the modern study; the paper study's seeds are "
                             "its plan's (lenet1.experiments.paper.FULL)")
        from .report.paper import run_and_report

        run_and_report(quick=args.quick, root=args.runs, data_root=args.data_root, out=args.out,
                       progress=lambda message: print(message, flush=True),
                       scheduler=args.scheduler)
        return
    from .experiments.cache import code_key
    from .experiments.karpathy import read_record
    from .experiments.modern import run_study, study_seeds
    from .report.modern import report, results_markdown

    study = run_study(args.seeds or study_seeds(args.quick), args.quick, root=args.runs,
                      data_root=args.data_root, log=lambda message: print(message, flush=True),
                      scheduler=args.scheduler)
    # Karpathy's recipe, from the record that ships with the book (`study karpathy` checks it).
    record = None if args.quick else read_record()
    text = report(study, record)
    print()
    print(text)
    if args.out is not None:
        (args.out / "summary.txt").write_text(text + "\n")
        (args.out / "results.md").write_text(results_markdown(study, record))
        (args.out / "key.txt").write_text(code_key() + "\n")  # which code made these runs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"info": _info, "train": _train, "evaluate": _evaluate, "study": _study,
         "runs": _runs}[args.command](args)
    except (DataError, RunError, ShapeError, ValueError, FloatingPointError,
            ArchiveError, CodeKeyError, SchedulerError, FileNotFoundError,
            StaleTableError) as error:
        print(f"python -m lenet1 {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
