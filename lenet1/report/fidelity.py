"""The fidelity study's tables (pandas), trade-off figure (matplotlib) and plain-text report.

Everything here formats what :mod:`lenet1.experiments.fidelity` computed; nothing trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..experiments.paper import EARLIER
from ..experiments.fidelity import (
    CATEGORIES,
    FIGURES,
    KARPATHY,
    MISS_FLOOR,
    OURS,
    PAPER,
    SENN_CODE,
    SENN_README,
    RANGES,
    Check,
    Effect,
    Setting,
    Study,
    effects,
    nearest,
)

#: Where each factor's levels come from (the paper, the 1998 paper, the earlier reproductions'
#: code, or a natural alternative none of them states).
FACTOR_SOURCES = {
    "table": "the paper does not give it; block: Karpathy's, copied by Senn; two random tables",
    "init": "2.4/F: the paper (and Senn's code); 2.4/sqrt(F): Karpathy's code",
    "bias_init": "the paper does not give it; zero: Senn's code; the outputs' at -1 (others "
                 "0): Karpathy's code; uniform: like the weights",
    "unit": "scaled tanh: the 1998 paper; plain tanh: both reproductions",
    "output": "like the hidden units: the paper; a sigmoid against 0/1 targets: Senn's code",
    "loss": "mean over the outputs: the paper's reported MSE and both reproductions' loss; "
            "half the mean, the sum, half the sum: common textbook forms",
    "order": "fixed: the paper; reshuffled every pass: Senn's code",
    "input_background": "-1: the paper's virtual background; 0: the other natural value",
    "h2_background": "the paper does not say; -1: both reproductions; 0",
    "passes": "23: the paper; fewer and more",
    "optimizer": "SDLM: the paper (constants from the 1998 paper); SGD: both reproductions",
    "schedule": "SDLM only. constant; the 1998 paper's decaying eta",
    "curvature_patterns": "SDLM only. 500: the 1998 paper",
    "eta": "SDLM only. the paper gives none for this network",
    "mu": "SDLM only. 0.02: the 1998 paper (for its loss)",
    "lr": "SGD only. 0.03: Karpathy's; 0.1725 and 0.15: Senn's",
}

#: The factors whose level the paper states (the first level of each in ``CATEGORIES``):
#: varied all the same, to see what reaching its figures would take. The paper's units are a
#: scaled tanh (their constants are the 1998 paper's), so a plain tanh departs from it too.
STATED = ("init", "unit", "output", "order", "input_background", "passes", "optimizer")
#: A departure from a stated level, in words.
DEPARTURE_WORDS = {"init": lambda v: "first weights in 2.4/sqrt(F)",
                   "unit": lambda v: "plain tanh units",
                   "output": lambda v: "sigmoid outputs on 0/1 targets",
                   "order": lambda v: "a reshuffled order",
                   "input_background": lambda v: f"{v:g} beyond the input's border",
                   "passes": lambda v: f"{v} passes",
                   "optimizer": lambda v: "plain SGD"}

#: How the five figures are headed in the tables.
HEADINGS = {"train_misses": "train misses", "train_mse": "train MSE",
            "test_misses": "test misses", "test_mse": "test MSE",
            "rejection": "rejection for 1%"}
#: The factors a table describes a setting by, in the design's names.
FACTOR_COLUMNS = ("unit", "output", "init", "bias_init", "table", "loss", "order",
                  "input_background", "h2_background", "passes", "optimizer", "lr", "schedule",
                  "mu", "curvature_patterns")


def factor_table() -> pd.DataFrame:
    """The design's factors: their levels (or log-uniform ranges) and where each comes from."""
    rows = []
    for name, levels in CATEGORIES.items():
        rows.append({"factor": name, "levels": ", ".join(str(v) for v in levels),
                     "source": FACTOR_SOURCES[name]})
    for name, (low, high) in RANGES.items():
        rows.append({"factor": name, "levels": f"{low:g} to {high:g}, log-uniform",
                     "source": FACTOR_SOURCES[name]})
    return pd.DataFrame(rows).set_index("factor")


def tradeoff_figure(study: Study) -> Figure:
    """Training misses against test misses: every screened setting, the confirmed settings
    and the earlier reproductions' setups with their seeds' ranges, and the paper."""
    from .plots import fit_tradeoff

    screened = [(s.means["train_misses"], s.means["test_misses"]) for s in study.screening()
                if not s.diverged]
    marked = {}
    for s in [*sorted(study.confirmation(), key=lambda s: s.distance), *study.arms()]:
        label = s.name if s.stage == "arm" else f"{s.name} (confirmed, {s.seeds} seeds)"
        marked[label] = (s.means["train_misses"], s.lows["train_misses"],
                         s.highs["train_misses"], s.means["test_misses"],
                         s.lows["test_misses"], s.highs["test_misses"])
    arms = [s.name for s in study.arms()]
    return fit_tradeoff(screened, marked, (PAPER["train_misses"], PAPER["test_misses"]), arms)


def value(name: str, x: float) -> str:
    """One figure as the tables print it."""
    if not math.isfinite(x):
        return "-"
    if name.endswith("misses"):
        return f"{x:.1f}"
    if name == "rejection":
        return f"{100 * x:.1f}%"
    return f"{x:.2e}"


def spread(setting: Setting, name: str) -> str:
    """A figure's mean over the setting's seeds, with their range when there are several."""
    mean = value(name, setting.means[name])
    if setting.seeds - setting.diverged < 2:
        return mean
    return f"{mean} [{value(name, setting.lows[name])}, {value(name, setting.highs[name])}]"


def describe(setting: Setting) -> str:
    """The setting's choices in words, every factor the design varies."""
    c = setting.config
    parts = [f"{c.unit} units", f"{c.output} outputs" if c.output is not None else "",
             f"init {'2.4/F' if c.init == 'fan_in' else '2.4/sqrt(F)'}",
             f"{c.bias_init} biases", f"table {c.table}", f"{c.loss} loss", f"{c.order} order",
             f"input pad {c.input_background:g}", f"H1 pad {c.h2_background:g}",
             f"{c.passes} passes"]
    if c.optimizer == "sdlm":
        parts.append(f"SDLM eta {c.lr:g} ({c.schedule}), mu {c.mu:g}, "
                     f"{c.curvature_patterns} curvature patterns")
    else:
        parts.append(f"SGD {c.lr:g}")
    return ", ".join(p for p in parts if p)


def paper_row() -> dict[str, str]:
    return {"setting": "the paper (1989), as reported", "seeds": "",
            **{HEADINGS[f]: value(f, PAPER[f]) for f in FIGURES},
            "distance": "0", "reproduces": ""}


def setting_rows(settings: Sequence[Setting]) -> list[dict[str, str]]:
    return [{"setting": s.name if s.stage == "arm" else f"{s.name}: {describe(s)}",
             "seeds": f"{s.seeds}" + (f" ({s.diverged} diverged)" if s.diverged else ""),
             **{HEADINGS[f]: spread(s, f) for f in FIGURES},
             "distance": f"{s.distance:.2f}" if math.isfinite(s.distance) else "diverged",
             "reproduces": "yes" if s.reproduces else "no"}
            for s in settings]


def nearest_table(study: Study, count: int = 10) -> pd.DataFrame:
    """The screening's settings nearest the paper (each over its screening seeds)."""
    return pd.DataFrame([paper_row(), *setting_rows(nearest(study.screening(), count))]
                        ).set_index("setting")


def confirmation_table(study: Study) -> pd.DataFrame:
    """The confirmed settings and the earlier reproductions' arms, each over 10 seeds."""
    settings = sorted(study.confirmation(), key=lambda s: s.distance) + study.arms()
    return pd.DataFrame([paper_row(), *setting_rows(settings)]).set_index("setting")


#: Where each arm's choices come from.
ARM_SOURCES = {
    OURS: "this book: the paper's description, SDLM's constants chosen on held-out digits "
          "(chapter on calibration)",
    EARLIER: "Karpathy's code (karpathy/lecun1989-repro, repro.py) as the results chapter "
             "trains it: his output biases start at -1, these at 0",
    KARPATHY: "Karpathy's code (karpathy/lecun1989-repro, repro.py), output biases at -1",
    SENN_CODE: "Senn's code (raphaelsenn/lenet-1: lenet1/lenet1.py, train.py, its default step)",
    SENN_README: "Senn's code, with the step its README gives",
}


def arm_table(study: Study) -> pd.DataFrame:
    """The earlier reproductions' setups (and the book's protocol): each one's choices, and
    where they come from."""
    return pd.DataFrame([{"setup": s.name, "choices": describe(s),
                          "from": ARM_SOURCES.get(s.name, "")} for s in study.arms()]
                        ).set_index("setup")


def effect_table(study: Study) -> pd.DataFrame:
    """Every factor level's effect on the training misses and on the test misses, side by
    side (a main-effects model over the screening's runs)."""
    train = effects(study.rows, study.points, "train_misses")
    test = {(e.factor, e.level): e for e in effects(study.rows, study.points, "test_misses")}
    rows = []
    for e in train:
        t = test[(e.factor, e.level)]
        rows.append({"factor": e.factor, "level": e.level, "against": e.reference,
                     "train misses x": f"{e.ratio:.2f} ({e.low:.2f}-{e.high:.2f})",
                     "test misses x": f"{t.ratio:.2f} ({t.low:.2f}-{t.high:.2f})",
                     "runs": str(e.runs), "diverged": f"{100 * e.diverged:.0f}%"})
    columns = ["factor", "level", "against", "train misses x", "test misses x", "runs",
               "diverged"]
    # Too few runs for the model (a quick study): an empty table with the same columns.
    return pd.DataFrame(rows, columns=columns).set_index(["factor", "level"])


def check_rows(checks: Sequence[Check]) -> pd.DataFrame:
    """The table's runs retrained by the check: the table's figures beside the new ones."""
    rows = []
    for c in checks:
        row = {"run": f"{c.row.stage} {c.row.name}, seed {c.row.config.seed}"}
        for f in FIGURES:
            row[f"{HEADINGS[f]}: table"] = value(f, getattr(c.row.figures, f))
            row[f"{HEADINGS[f]}: now"] = value(f, getattr(c.retrained, f))
        row["agrees"] = "yes" if c.agrees else "NO"
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


# --- the verdict, in numbers ----------------------------------------------------------------


def verdict(study: Study) -> dict[str, Any]:
    """What the chapter and the conclusions state, every number from the study: the runs
    trained, how many settings reproduce the paper, the nearest confirmed setting and its
    figures, and the factors whose effect on the training misses is largest."""
    screening = study.screening()
    confirmed = sorted(study.confirmation(), key=lambda s: s.distance)
    best = confirmed[0] if confirmed else None
    train = [e for e in effects(study.rows, study.points, "train_misses")
             if e.low > 1 or e.high < 1]
    train.sort(key=lambda e: -abs(math.log(e.ratio)))
    return {
        "networks": study.networks,
        "settings": len(screening),
        "diverged_settings": sum(1 for s in screening if s.diverged),
        "reproducing_screened": [s.name for s in screening if s.reproduces],
        "reproducing_confirmed": [s.name for s in confirmed if s.reproduces],
        "best": best,
        "strongest_train_effects": train[:5],
    }


def _figures_text(s: Setting) -> str:
    return (f"{spread(s, 'train_misses')} training misses (the paper: 10), "
            f"{spread(s, 'test_misses')} test misses (102), a training MSE of "
            f"{spread(s, 'train_mse')} (2.5e-03), a test MSE of {spread(s, 'test_mse')} "
            f"(1.8e-02) and {spread(s, 'rejection')} rejected for 1% error (12.1%)")


def _effect_text(e: Effect) -> str:
    if e.factor in RANGES:
        what = f"{e.factor} in the {e.level} third of its range against the middle third"
    else:
        what = f"{e.factor} {e.level} against {e.reference}"
    return f"{what}: x{e.ratio:.2f} ({e.low:.2f}-{e.high:.2f})"


#: The paper prints its MSEs to two significant digits and its rejection to three, so a
#: printed figure stands for any value within half a unit of its last digit.
PRINTED_HALF_UNIT = {"train_misses": 0.0, "train_mse": 0.05e-3, "test_misses": 0.0,
                     "test_mse": 0.05e-2, "rejection": 0.0005}


def within_rounding(figure: str, gap: float) -> bool:
    """Whether a miss of ``gap`` (relative, as :func:`outside` gives it) on ``figure`` lies
    within the rounding of the paper's printed figure."""
    return PAPER[figure] * gap <= PRINTED_HALF_UNIT[figure] + 1e-15


def outside(setting: Setting) -> dict[str, float]:
    """For each figure whose paper value lies outside the setting's seeds' range, how far
    outside, relative to the paper's value."""
    gaps = {}
    for f in FIGURES:
        low, high, paper = setting.lows[f], setting.highs[f], PAPER[f]
        if paper < low:
            gaps[f] = (low - paper) / paper
        elif paper > high:
            gaps[f] = (paper - high) / paper
    return gaps


def _values(study: Study, name: str, stage: str, figure: str) -> list[float]:
    return [getattr(r.figures, figure) for r in study.rows
            if r.name == name and r.stage == stage and not r.figures.diverged]


def _difference(study: Study, setting: Setting, figure: str) -> str:
    """The setting's mean minus the book protocol's, with Welch's 95% interval."""
    from ..experiments.stats import welch

    d = welch(_values(study, setting.name, setting.stage, figure),
              _values(study, OURS, "arm", figure))
    return f"{d.difference:+.1f} (95% interval {d.low:+.1f} to {d.high:+.1f})"


def verdict_text(study: Study) -> dict[str, str]:
    """The verdict's sentences, every number from the study (the chapter glues them)."""
    v = verdict(study)
    confirmed = sorted(study.confirmation(), key=lambda s: s.distance)
    arms = {s.name: s for s in study.arms()}
    ours = arms[OURS]
    screened = v["reproducing_screened"]
    if screened:
        reproduce = (f"Of the {v['settings']} settings screened, {len(screened)} reproduce all "
                     f"five figures within their seeds' range ({', '.join(screened)})")
    else:
        reproduce = (f"None of the {v['settings']} settings screened reproduces all five "
                     f"figures within its seeds' range")
    again = v["reproducing_confirmed"]
    reproduce += (f"; of the {len(confirmed)} confirmed with {study.scale.confirm_seeds} seeds, "
                  f"{'none does' if not again else str(len(again)) + ' do'}"
                  f"{' (' + ', '.join(again) + ')' if again else ''}.")
    texts = {"fid_verdict_reproduce": reproduce}

    near = []
    for s in confirmed:
        gaps = outside(s)
        if not gaps:
            continue
        rounding = {f: within_rounding(f, g) for f, g in gaps.items()}
        near.append(f"{s.name} misses on " + " and ".join(
            f"{HEADINGS[f]} by {100 * g:.1f}%"
            + (" (within the rounding of the printed figure)" if rounding[f] else "")
            for f, g in gaps.items())
            + ("; with the printed figures' rounding allowed, its seeds' range holds all five"
               if all(rounding.values()) else ""))
    texts["fid_verdict_near"] = (
        "How far each confirmed setting's seeds' range stays from the paper's figures it does "
        "not contain: " + "; ".join(near) + ". The criterion was stated with the figures as "
        "printed, and a miss within their rounding is reported here but not counted."
        if near else "")

    best = v["best"]
    texts["fid_verdict_nearest"] = (
        f"The confirmed setting nearest the paper, {best.name} ({describe(best)}), is at a "
        f"distance of {best.distance:.2f}: {_figures_text(best)}. Against the book's "
        f"protocol ({ours.seeds} seeds), its mean training misses differ by "
        f"{_difference(study, best, 'train_misses')} and its mean test misses by "
        f"{_difference(study, best, 'test_misses')} (Welch's t-test over seeds)."
        if best is not None else "No screened setting trained without diverging.")

    texts["fid_verdict_arms"] = " ".join(
        f"{name}: {_figures_text(s)}, a distance of {s.distance:.2f}." for name, s in
        arms.items())

    effects_train = v["strongest_train_effects"]
    texts["fid_verdict_effects"] = (
        "The levels that move the training misses most, among those whose interval excludes "
        "no change (misses plus one, times): " + "; ".join(_effect_text(e) for e in
                                                         effects_train) + "."
        if effects_train else "No factor level's effect on the training misses has an "
                              "interval that excludes no change.")

    texts["fid_verdict_gap"] = _gap_text(study, confirmed, ours)
    return texts


def _gap_text(study: Study, confirmed: Sequence[Setting], ours: Setting) -> str:
    """What the confirmed settings share that the book's protocol does not, and how their
    training and test misses compare with the protocol's."""
    by_name = {f"p{p.index}": p for p in study.points}
    ours_levels = {"table": ours.config.table, "init": ours.config.init,
                   "bias_init": ours.config.bias_init, "unit": ours.config.unit,
                   "output": "hidden" if ours.config.output is None else ours.config.output,
                   "loss": ours.config.loss, "order": ours.config.order,
                   "input_background": ours.config.input_background,
                   "h2_background": ours.config.h2_background, "passes": ours.config.passes,
                   "optimizer": ours.config.optimizer}
    shared = []
    for name, level in ours_levels.items():
        levels = [by_name[s.name].levels[name] for s in confirmed]
        for other in sorted({str(x) for x in levels}):
            count = sum(str(x) == other for x in levels)
            if other != str(level) and 2 * count > len(levels):
                shared.append(f"{name} {other} ({count} of {len(levels)}; the protocol: "
                              f"{level})")
    fewer = [s for s in confirmed if _upper(study, s, "train_misses") < 0]
    text = (f"The book's protocol fits its training digits to {ours.means['train_misses']:.1f} "
            f"misses; {len(fewer)} of the {len(confirmed)} confirmed settings fit them "
            f"more tightly (Welch's interval for the difference entirely below 0)")
    if fewer:
        text += (", with test misses " + "; ".join(
            f"{s.name} {_difference(study, s, 'test_misses')}" for s in fewer)
            + " against the protocol's")
    text += ". "
    text += ("Most of the confirmed settings share, where the protocol differs: "
             + "; ".join(shared) + "." if shared else
             "No choice is shared by most of the confirmed settings where the protocol differs.")
    return text


def departures(study: Study, setting: Setting) -> list[tuple[str, Any]]:
    """The factors the paper states on which a screened or confirmed setting departs from it,
    with the setting's levels."""
    point = {f"p{p.index}": p for p in study.points}[setting.name]
    return [(name, point.levels[name]) for name in STATED
            if point.levels[name] != CATEGORIES[name][0]]


def departure_words(factor: str, level: Any) -> str:
    """A departure (:func:`departures`) in words."""
    return DEPARTURE_WORDS[factor](level)


def departures_text(study: Study, settings: Sequence[Setting]) -> str:
    """Each setting's departures from what the paper states, for a sentence."""
    return "; ".join(f"{s.name}: " + (", ".join(departure_words(*d) for d in
                                                departures(study, s)) or "none")
                     for s in settings)


def stated_method_text(study: Study, settings: Sequence[Setting]) -> str:
    """What ``settings`` (those that fit more tightly than the book's protocol) say about the
    paper's method as it states it: how many screened settings keep every stated level at
    all, and whether the effects model shows the departures most of ``settings`` share
    tightening the fit."""
    screened = study.screening()
    faithful = [s for s in screened if not departures(study, s)]
    counts: dict[tuple[str, Any], int] = {}
    for s in settings:
        for d in departures(study, s):
            counts[d] = counts.get(d, 0) + 1
    shared = [d for d, n in counts.items() if 2 * n > len(settings)]
    train = {(e.factor, e.level): e for e in effects(study.rows, study.points, "train_misses")}
    text = (f"only {len(faithful)} of the {len(screened)} screened settings keep every level "
            "the paper states")
    if faithful:
        text += (" (mean training misses: " + ", ".join(
            f"{s.name} {s.means['train_misses']:.1f}" for s in faithful) + ")")
    # The effects model names a level as text.
    measured = {d: train[(d[0], str(d[1]))] for d in shared if (d[0], str(d[1])) in train}
    if measured:
        shown = [d for d, e in measured.items() if e.high < 1 or e.low > 1]
        parts = [f"{departure_words(*d)} x{e.ratio:.2f} ({e.low:.2f}-{e.high:.2f})"
                 for d, e in measured.items()]
        text += ("; and of the departures most of the tighter settings share, the effects "
                 "above show " + (", ".join(departure_words(*d) for d in shown) or "none")
                 + " changing the training misses (" + "; ".join(parts) + ")")
    return text


def _upper(study: Study, setting: Setting, figure: str) -> float:
    from ..experiments.stats import welch

    return welch(_values(study, setting.name, setting.stage, figure),
                 _values(study, OURS, "arm", figure)).high


def report(study: Study) -> str:
    """The study as plain text: the criteria stated before it ran, the nearest settings, the
    confirmation beside the arms, the factors' effects and the verdict."""
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.max_colwidth", 120):
        v = verdict(study)
        lines = [
            f"Fidelity study: {v['networks']} networks, {v['settings']} settings screened with "
            f"{study.scale.seeds} seeds, the {study.scale.confirm} nearest the paper confirmed "
            f"with {study.scale.confirm_seeds}; code {study.code_key}.",
            "Stated before the runs: distance = sum over the five figures of |ln(ours/paper)| "
            f"(ours the mean over seeds, misses floored at {MISS_FLOOR}); a setting reproduces "
            "the paper when each of the paper's five figures lies within its seeds' range.",
            "",
            "Nearest settings in the screening:", nearest_table(study).to_string(), "",
            "Confirmation, and the earlier reproductions' setups:",
            confirmation_table(study).to_string(), "",
            "Each factor's effect (main-effects least squares on ln(misses + 1); intervals "
            "clustered by setting):", effect_table(study).to_string(), "",
            f"Settings that reproduce all five figures: screened "
            f"{len(v['reproducing_screened'])} of {v['settings']}, confirmed "
            f"{len(v['reproducing_confirmed'])} of {len(study.confirmation())}.",
        ]
        return "\n".join(lines)


__all__ = ["arm_table", "DEPARTURE_WORDS", "STATED", "departure_words", "departures", "departures_text",
           "outside", "stated_method_text", "within_rounding", "verdict_text", "check_rows", "confirmation_table", "effect_table", "factor_table", "nearest_table", "report",
           "tradeoff_figure", "verdict"]
