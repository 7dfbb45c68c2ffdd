"""The book's live network page: the networks, exported for the browser.

The page ``notebooks/12_live_network.md`` runs a trained network in the reader's browser, in
plain JavaScript (``book/_static/lenet1demo.js``). This module is everything on the Python side:

- :func:`headline_network` and :func:`modern_network` obtain the two networks the page offers
  from the book's own studies (the same calls the results and modern chapters make, so they
  reload the cached runs): the middle SDLM seed (by test misses) of the paper's protocol, with
  the rejection threshold the book finds for it for 1% test error, and the middle seed of the
  modern recipe's final step;
- :func:`network_spec` serialises a network: its weights (float32, base64) and every constant
  the forward pass needs (the units, the padding values, the connection table, the shapes), so
  the JavaScript computes exactly what :meth:`~lenet1.nets.LeNet1.layers` / :meth:`~lenet1.nets.ModernLeNet1.layers`
  compute and never guesses; :func:`model_from_spec` rebuilds the network from it;
- :func:`page_data` adds a sample of test digits with the package's outputs for them, and
  :func:`page_html` emits the whole page body (data, script and style) as HTML.

The package reads a network's outputs as the modern study does
(:func:`lenet1.experiments.recipes.read_outputs`): as they are for the paper's network; for
the modern one, its logits mapped to ``2 softmax - 1`` and averaged over shifted copies when
the recipe uses test-time shifts. The page's ``classify``
returns the same numbers, and the browser test (``site_test/``) checks it does.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import Digits, load
from ..experiments import modern, paper
from ..experiments.recipes import read_outputs
from ..experiments.stats import middle
from ..experiments.training import load_network
from ..nets import (
    BACKGROUND,
    KERNEL,
    MAPS,
    PAD_AFTER,
    PAD_BEFORE,
    STRIDE,
    TANH_AMPLITUDE,
    TANH_SLOPE,
    LeNet1,
    ModernLeNet1,
)
from ..rejection import RejectionPoint, margins, predictions, rejection_for_error

FORMAT = 1  # bump when the JSON's layout changes (the JavaScript checks it)
SIZE = 16  # the network's input is SIZE x SIZE grey levels
INK = 1.0  # the value of a fully inked pixel (the background is BACKGROUND, -1)
# The reader's strokes are drawn this wide, in pixels of the 16x16 input, after the drawing is
# scaled to the input's size: about the width of the database's strokes (across a row, the test
# digits' runs of pixels above 0 are 3 pixels long at the median, slanted strokes included).
PEN_WIDTH = 2.5
TARGET_ERROR = 0.01  # the rejection threshold is the one that gives 1% test error
WEIGHTS = ("h1_weight", "h1_bias", "h2_weight", "h2_bias", "h3_weight", "h3_bias", "out_weight",
           "out_bias")


class ExportError(RuntimeError):
    """A network the page cannot run, or an export that does not reproduce the package."""


@dataclass
class LiveNetwork:
    """One network the page offers, with the package's outputs on the whole test set."""

    key: str  # "paper" or "modern": the page's name for it
    title: str
    description: str  # what it is, in words, for the page
    model: nn.Module
    tta: int  # test-time shifts of up to tta pixels (0: none)
    outputs: Tensor  # the package's outputs on the test set (read_outputs)
    rejection: RejectionPoint  # the threshold for TARGET_ERROR test error, and what it does
    facts: dict[str, Any] = field(default_factory=dict)  # for the page's prose

    @property
    def threshold(self) -> float:
        return self.rejection.threshold


def _rank(count: int) -> str:
    """Which run :func:`lenet1.experiments.stats.middle` picks, in words."""
    middle = f"ranked {count // 2 + 1} of {count} by test misses"
    return middle + (", the upper of the two middle ones" if count % 2 == 0 else ", the median")


def headline_network(quick: bool, root: str | Path | None = None,
                     data_root: str | None = None) -> LiveNetwork:
    """LeNet-1 trained with the paper's method (SDLM, the calibrated constants): the seed with
    the middle test misses among the protocol's final seeds, and the rejection threshold that
    gives 1% test error on it (the network and threshold of the book's rejection curves)."""
    plan = paper.plan_for(quick)
    calibration = paper.calibrate("lenet1", "sdlm", plan, root, data_root)
    arm = paper.protocol("LeNet-1, SDLM", calibration.chosen, plan, root, data_root)
    run, _ = middle(arm.runs, lambda r: r.history.final.test.misses)
    model = run.model
    if type(model) is not LeNet1:
        raise ExportError(f"the headline network is a {type(model).__name__}, not a LeNet1")
    split = load(run.config.data, data_root)
    outputs = read_outputs(model, split.test.images)
    wrong = int((torch.as_tensor(predictions(outputs)) != split.test.labels).sum())
    if wrong != run.history.final.test.misses:
        raise ExportError(f"the reloaded network misses {wrong} test digits, its history says "
                          f"{run.history.final.test.misses}")
    point = rejection_for_error(outputs, split.test.labels, TARGET_ERROR)
    description = (f"LeNet-1 as the paper trained it: {run.config.passes} online passes of its "
                   f"diagonal Newton method (SDLM), with constants chosen on held-out training "
                   f"digits; the seed {_rank(len(arm.runs))} (seed {run.config.seed}).")
    facts = {"seed": run.config.seed, "seeds": len(arm.runs), "rank": _rank(len(arm.runs)),
             "passes": run.config.passes,
             "test_misses": wrong, "test_count": len(split.test),
             "optimizer": f"SDLM, {calibration.best.label()}"}
    return LiveNetwork("paper", "LeNet-1, the paper's method", description, model, 0, outputs,
                       point, facts)


def modern_network(quick: bool, root: str | Path | None = None,
                   data_root: str | None = None) -> LiveNetwork:
    """The same weights trained by the modern recipe (the last step of the modern chapter's
    path): the seed with the middle test misses, read as the study reads it (test-time shifts
    included if the recipe chose them), and its own threshold for 1% test error."""
    seeds = (0, 1) if quick else modern.SEEDS
    study = modern.run_study(seeds, quick=quick, root=root, data_root=data_root)
    final = study.final()
    results = study.runs[-len(study.seeds):]
    if [r.recipe for r in results] != [final.recipe] * len(study.seeds) \
            or any(r.evaluation != "test" or r.path is None for r in results):
        raise ExportError("the modern study's last runs are not its final step's test runs")
    result, _ = middle(results, lambda r: r.test.misses)
    assert result.path is not None  # checked above for every result
    recipe = final.recipe
    model = load_network(result)
    if type(model) is not ModernLeNet1:
        raise ExportError(f"the modern recipe's network is a {type(model).__name__}, "
                          f"not a ModernLeNet1")
    split = load("usps", data_root)
    outputs = read_outputs(model, split.test.images, recipe.tta)
    wrong = int((torch.as_tensor(predictions(outputs)) != split.test.labels).sum())
    if wrong != result.test.misses:
        raise ExportError(f"the reloaded modern network misses {wrong} test digits, the study "
                          f"says {result.test.misses}")
    point = rejection_for_error(outputs, split.test.labels, TARGET_ERROR)
    def pixels(count: int) -> str:
        return f"{count} pixel{'s' if count != 1 else ''}"

    extras = [f"{recipe.passes} passes in mini-batches of {recipe.batch_size}",
              {"adamw": "AdamW", "sgd": "SGD"}.get(recipe.optimizer, recipe.optimizer),
              {"relu": "ReLU units", "scaled_tanh": "scaled tanh units",
               "tanh": "tanh units"}.get(recipe.unit, recipe.unit)]
    if recipe.dropout:
        extras.append(f"dropout {recipe.dropout:g} before H3 (off when reading)")
    if recipe.translate:
        extras.append(f"random shifts of up to {pixels(recipe.translate)} in training")
    if recipe.tta:
        extras.append(f"each digit read at every shift of up to {pixels(recipe.tta)} and the "
                      f"probabilities averaged")
    description = (f"The same 9,760 weights trained the modern way (the last step of the "
                   f"modern chapter: {'; '.join(extras)}); the seed {_rank(len(results))} "
                   f"(seed {result.seed}). Its outputs are its softmax probabilities p, shown "
                   f"as 2p - 1.")
    if recipe.output != "logits":
        description = description.replace(" Its outputs are its softmax probabilities p, "
                                          "shown as 2p - 1.", "")
    facts = {"seed": result.seed, "seeds": len(results), "rank": _rank(len(results)),
             "passes": recipe.passes,
             "test_misses": wrong, "test_count": len(split.test), "tta": recipe.tta,
             "unit": recipe.unit, "step": f"{final.index} ({final.label})"}
    return LiveNetwork("modern", "LeNet-1, the modern recipe", description, model, recipe.tta,
                       outputs, point, facts)


# --- the export --------------------------------------------------------------------------------


def _encode(tensor: Tensor) -> str:
    """float32, little-endian, base64: exact, and a third of the size of decimal text."""
    values = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    return base64.b64encode(values.tobytes()).decode("ascii")


def _decode(text: str, shape: Sequence[int]) -> Tensor:
    values = np.frombuffer(base64.b64decode(text), dtype="<f4").copy()
    if values.size != math.prod(shape):
        raise ExportError(f"{values.size} values do not fill the shape {tuple(shape)}")
    return torch.from_numpy(values.astype(np.float32)).reshape(tuple(shape))


def _functions(model: nn.Module) -> tuple[str, str, str]:
    """(hidden units' function, output units' function, how the outputs are read)."""
    if type(model) is LeNet1:
        return model.unit, model.unit, "outputs"
    if type(model) is ModernLeNet1:
        if model.output == "logits":
            return model.unit, "identity", "softmax_place_code"
        return model.unit, "tanh" if model.unit == "tanh" else "scaled_tanh", "outputs"
    raise ExportError(f"the page runs LeNet1 and ModernLeNet1 networks, not "
                      f"{type(model).__name__}")


def network_spec(network: LiveNetwork) -> dict[str, Any]:
    """Everything the JavaScript forward pass needs, as plain JSON: constants and weights."""
    model = network.model
    hidden, output, reading = _functions(model)
    state = {name: value.detach() for name, value in model.state_dict().items()}
    expected = set(WEIGHTS) | {"h2_mask"}
    if set(state) != expected:
        raise ExportError(f"unexpected tensors {sorted(set(state) ^ expected)} in the network")
    table = state["h2_mask"][:, :, 0, 0].bool()
    weights = dict(state)
    weights["h2_weight"] = weights["h2_weight"] * state["h2_mask"]  # as the forward pass uses it
    return {
        "key": network.key, "title": network.title, "description": network.description,
        "architecture": type(model).__name__,
        "hidden_unit": hidden, "output_unit": output, "reading": reading,
        "amplitude": TANH_AMPLITUDE, "slope": TANH_SLOPE,
        "input_size": SIZE, "input_background": BACKGROUND,
        "h2_background": float(model.h2_background),  # type: ignore[arg-type]
        "kernel": KERNEL, "stride": STRIDE, "pad_before": PAD_BEFORE, "pad_after": PAD_AFTER,
        "maps": MAPS, "h1_size": int(state["h1_bias"].shape[1]),
        "h2_size": int(state["h2_bias"].shape[1]), "h3_units": int(state["h3_bias"].numel()),
        "outputs": int(state["out_bias"].numel()),
        "table": [[int(v) for v in row] for row in table.tolist()],
        "tta": network.tta,
        "threshold": network.threshold, "target_error": TARGET_ERROR,
        "rejection": {"rejection": network.rejection.rejection,
                      "error": network.rejection.error, "rejected": network.rejection.rejected,
                      "count": network.rejection.count},
        "facts": network.facts,
        "weights": {name: {"shape": list(weights[name].shape), "data": _encode(weights[name])}
                    for name in WEIGHTS},
    }


def model_from_spec(spec: dict[str, Any]) -> tuple[nn.Module, int]:
    """The package's network rebuilt from an export, and its test-time shift (0: none)."""
    table = torch.tensor(spec["table"], dtype=torch.bool)
    model: nn.Module
    if spec["architecture"] == "LeNet1":
        with torch.random.fork_rng(devices=[]):  # its placeholder weights leave torch's alone
            model = LeNet1(table, unit=spec["hidden_unit"], h2_background=spec["h2_background"])
    elif spec["architecture"] == "ModernLeNet1":
        logits = spec["reading"] == "softmax_place_code"
        model = ModernLeNet1(table, unit=spec["hidden_unit"],
                             output="logits" if logits else "squashed",
                             h2_background=spec["h2_background"], seed=0)
    else:
        raise ExportError(f"unknown architecture {spec['architecture']!r}")
    state = {name: _decode(entry["data"], entry["shape"])
             for name, entry in spec["weights"].items()}
    state["h2_mask"] = table[:, :, None, None].to(torch.float32)
    model.load_state_dict(state)
    return model.eval(), int(spec["tta"])


def sample_indices(network: LiveNetwork, labels: Tensor, per_kind: int = 8) -> dict[str, list[int]]:
    """Test digits to offer on the page, in test-set order: one read right and accepted of
    each class (then more), some read wrongly, some rejected (by ``network``'s threshold)."""
    answer = predictions(network.outputs)
    right = answer == labels.numpy()
    accepted = margins(network.outputs) >= network.threshold
    kinds: dict[str, list[int]] = {"read right": [], "missed": [], "rejected": []}
    seen: set[int] = set()
    for index in range(len(labels)):
        label = int(labels[index])
        if right[index] and accepted[index] and label not in seen:
            kinds["read right"].append(index)
            seen.add(label)
    kinds["read right"] += [i for i in range(len(labels)) if right[i] and accepted[i]
                            and i not in kinds["read right"]][:2]
    kinds["missed"] = [i for i in range(len(labels)) if not right[i]][:per_kind]
    kinds["rejected"] = [i for i in range(len(labels)) if not accepted[i]
                         and i not in kinds["missed"]][:per_kind]
    return kinds


def page_data(networks: Sequence[LiveNetwork], test: Digits,
              sample: dict[str, list[int]]) -> dict[str, Any]:
    """The page's JSON: the networks, and the sample digits with the package's outputs."""
    indices = [i for kind in sample.values() for i in kind]
    kinds = [kind for kind, members in sample.items() for _ in members]
    for network in networks:  # the export must give the package's numbers, or nothing ships
        rebuilt, tta = model_from_spec(network_spec(network))
        again = read_outputs(rebuilt, test.images, tta)
        if not torch.equal(again, network.outputs):
            difference = float((again - network.outputs).abs().max())
            raise ExportError(f"the exported {network.key} network differs from the package's "
                              f"by up to {difference:.3g}")
    return {
        "format": FORMAT,
        "input": {"size": SIZE, "background": BACKGROUND, "ink": INK, "pen_width": PEN_WIDTH},
        "networks": [network_spec(n) for n in networks],
        "sample": {
            "indices": indices, "kinds": kinds,
            "labels": [int(test.labels[i]) for i in indices],
            "pixels": _encode(test.images[indices]),
            "outputs": {n.key: [[float(v) for v in n.outputs[i]] for i in indices]
                        for n in networks},
        },
    }


def page_html(data: dict[str, Any], static: str = "../_static") -> str:
    """The live network's HTML: its style, its place, its data and its script. ``static`` is
    the path from the page to the site's ``_static`` folder."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    where = html.escape(static, quote=True)
    return (f'<link rel="stylesheet" href="{where}/lenet1demo.css">\n'
            f'<div id="lenet1demo" class="lenet1demo"><noscript>The live network needs '
            f'JavaScript.</noscript></div>\n'
            f'<script type="application/json" id="lenet1demo-data">{payload}</script>\n'
            f'<script src="{where}/lenet1demo.js"></script>\n')


@dataclass
class Reference:
    """The package's numbers for an exported network, to check the page against (site_test/):
    the first test digits, their outputs, answers, margins and verdicts, every layer's states
    for a few of them, and the threshold for 1% test error recomputed on the whole test set."""

    indices: list[int]
    pixels: np.ndarray  # (N, 256) float64 grey levels, row-major
    labels: np.ndarray
    outputs: np.ndarray  # (N, 10), read_outputs
    answers: np.ndarray
    margins: np.ndarray
    accepted: np.ndarray  # margin >= the exported threshold
    threshold: float  # recomputed: rejection_for_error on every test digit
    layers: list[dict[str, np.ndarray]]  # per digit: h1, h2, h3 flattened, and "out"


def reference(spec: dict[str, Any], count: int = 200, with_layers: int = 5,
              data_root: str | None = None) -> Reference:
    """The package's readings of the first ``count`` test digits by the exported network."""
    model, tta = model_from_spec(spec)
    test = load("usps", data_root).test
    every = read_outputs(model, test.images, tta)
    point = rejection_for_error(every, test.labels, float(spec["target_error"]))
    outputs = every[:count].double().numpy()
    margin = margins(outputs)
    states = []
    with torch.no_grad():
        layers = model.layers(test.images[:with_layers])  # type: ignore[operator]
    for k in range(min(with_layers, len(test))):
        states.append({name: layers[name][k].flatten().double().numpy()
                       for name in ("h1", "h2", "h3", "out")})
    return Reference(list(range(min(count, len(test)))),
                     test.images[:count].reshape(-1, SIZE * SIZE).double().numpy(),
                     test.labels[:count].numpy(), outputs, predictions(outputs), margin,
                     margin >= float(spec["threshold"]), point.threshold, states)


def read_page_data(page: str | Path) -> dict[str, Any]:
    """The JSON embedded in a built page (for tests)."""
    text = Path(page).read_text(encoding="utf-8")
    start_tag = '<script type="application/json" id="lenet1demo-data">'
    start = text.find(start_tag)
    if start < 0:
        raise ExportError(f"{page} holds no live network data")
    end = text.find("</script>", start)
    data: dict[str, Any] = json.loads(text[start + len(start_tag):end].replace("<\\/", "</"))
    if data.get("format") != FORMAT:
        raise ExportError(f"{page}: data format {data.get('format')}, expected {FORMAT}")
    return data


__all__ = ["ExportError", "FORMAT", "LiveNetwork", "PEN_WIDTH", "Reference", "headline_network",
           "model_from_spec", "modern_network", "network_spec", "page_data",
           "page_html", "read_page_data", "reference", "sample_indices"]
