"""The book's figures, as functions: each returns a matplotlib ``Figure``.

Figures are built without pyplot (``Figure(...)``), so a notebook shows each exactly once, when
it is a cell's value, and nothing is left open. Every figure has a white background, so it reads
the same on the site's light and dark themes.

Needs the ``book`` extras (matplotlib, seaborn); nothing else in the package imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ..accounting import LayerCount
from ..nets import KERNEL, PAD_AFTER, PAD_BEFORE, STRIDE, TANH_AMPLITUDE
from ..rejection import RejectionCurve
from ..train.online import History

INK = "gray_r"  # -1 (background) white, +1 (ink) black, as on paper
SIGNED = "RdBu_r"  # weights and states: negative blue, positive red, zero white
TRAIN_COLOUR, TEST_COLOUR, PAPER_COLOUR = "#1f77b4", "#d62728", "#333333"
ARM_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")  # one colour per protocol arm


def style() -> None:
    """House style: white backgrounds, readable sizes, crisp PNGs in the notebooks."""
    mpl.rcParams.update({
        "figure.facecolor": "white", "savefig.facecolor": "white", "axes.facecolor": "white",
        "savefig.transparent": False, "figure.dpi": 100, "savefig.dpi": 120,
        "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
        "axes.grid": False, "image.interpolation": "nearest",
    })
    try:  # in IPython: show a Figure that is a cell's value as a PNG, cropped to the drawing
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"}, bbox_inches="tight", dpi=120, facecolor="white")


def figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained", facecolor="white")


def _numpy(values: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _tiles(fig: Figure, count: int, ncols: int) -> tuple[np.ndarray, list[Any]]:
    """A grid of ``count`` bare picture axes, ``ncols`` wide; the spare cells switched off.
    Returns the grid and the axes to draw in, in reading order."""
    axes = fig.subplots(-(-count // ncols), ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return axes, list(axes.flat[:count])


def _images(images: Tensor | np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) -> (N, H, W)."""
    array = _numpy(images)
    if array.ndim == 4:
        if array.shape[1] != 1:
            raise ValueError(f"expected one channel, got shape {array.shape}")
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"expected images (N, 1, H, W) or (N, H, W), got shape {array.shape}")
    return array


# --- digits -----------------------------------------------------------------------------------


def digit_grid(images: Tensor | np.ndarray, titles: Sequence[str] | None = None,
               ncols: int = 10, size: float = 0.85, title_colours: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, vmin: float = -1.0,
               vmax: float = 1.0) -> Figure:
    """Digits in a grid, ink black on white, with optional titles above each."""
    pictures = _images(images)
    count = len(pictures)
    if count == 0:
        raise ValueError("no images to draw")
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    title_space = 0.25 if titles is not None else 0.0
    fig = figure(size * ncols + (0.6 if row_labels else 0), (size + title_space) * nrows)
    axes, used = _tiles(fig, count, ncols)
    for index, ax in enumerate(used):
        ax.imshow(pictures[index], cmap=INK, vmin=vmin, vmax=vmax)
        for spine in ax.spines.values():
            spine.set_color("#bbbbbb")
        if titles is not None:
            colour = title_colours[index] if title_colours is not None else "black"
            ax.set_title(titles[index], fontsize=9, color=colour, pad=2)
    if row_labels is not None:
        for row, label in enumerate(row_labels[:nrows]):
            axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    return fig


def class_distribution(train_counts: Sequence[int], test_counts: Sequence[int]) -> Figure:
    """Digits per class in each set, as a share of the set, with the counts written on."""
    import pandas as pd
    import seaborn as sns

    rows = []
    for name, counts in (("train", train_counts), ("test", test_counts)):
        total = sum(counts)
        rows += [{"set": f"{name} ({total:,})", "digit": str(digit), "count": count,
                  "share (%)": 100 * count / total} for digit, count in enumerate(counts)]
    frame = pd.DataFrame(rows)
    fig = figure(7.5, 3.2)
    ax = fig.subplots()
    sns.barplot(frame, x="digit", y="share (%)", hue="set", ax=ax,
                palette=[TRAIN_COLOUR, TEST_COLOUR])
    for container, counts in zip(ax.containers, (train_counts, test_counts)):
        ax.bar_label(container, labels=[str(c) for c in counts],  # type: ignore[arg-type]
                     fontsize=7, padding=1)
    ax.set_xlabel("class (digit)")
    ax.set_ylabel("share of the set (%)")
    ax.legend(title=None, frameon=False)
    sns.despine(ax=ax)
    return fig


def pixel_histogram(sets: Mapping[str, Tensor | np.ndarray], bins: int = 41) -> Figure:
    """Distribution of the grey levels in each set (log count), background to ink."""
    fig = figure(7.5, 3.0)
    ax = fig.subplots()
    edges = np.linspace(-1.0, 1.0, bins + 1)
    colours = [TRAIN_COLOUR, TEST_COLOUR, "#2ca02c", "#9467bd"]
    for (name, images), colour in zip(sets.items(), colours):
        values = _numpy(images).ravel()
        weights = np.full(len(values), 100.0 / len(values))
        ax.hist(values, bins=list(edges), weights=weights, histtype="step", linewidth=1.6,
                color=colour, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("grey level (-1 = background, +1 = ink)")
    ax.set_ylabel("share of pixels (%)")
    ax.legend(frameon=False)
    return fig


# --- architecture -----------------------------------------------------------------------------


def network_diagram(rows: Sequence[LayerCount], table: Tensor | np.ndarray) -> Figure:
    """The whole network, layer by layer, from its own counts (:func:`lenet1.accounting.architecture`): units, connections and free parameters of each layer, with H2's
    connection table drawn between H1 and H2."""
    fig = Figure(figsize=(10.0, 3.2), facecolor="white")  # axes placed by hand
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 3.2)
    ax.axis("off")
    maps = len(_numpy(table))
    layers = [r for r in rows if r.layer != "total"]

    def shape(row: LayerCount) -> str:  # read off the counts: square maps
        if row.layer in ("H1", "H2"):
            side = round((row.units / maps) ** 0.5)
            return f"{maps} maps {side}x{side}"
        side = round(row.units ** 0.5)
        return f"{side}x{side}" if row.layer == "input" else ""

    xs = np.linspace(0.9, 9.1, len(layers))
    for x, row in zip(xs, layers):
        ax.add_patch(Rectangle((x - 0.75, 1.0), 1.5, 1.2, facecolor="#f2f2f2",
                               edgecolor="#555555"))
        ax.text(x, 1.95, row.layer, ha="center", fontsize=11, weight="bold")
        ax.text(x, 1.62, shape(row), ha="center", fontsize=8.5)
        ax.text(x, 1.32, f"{row.units:,} units", ha="center", fontsize=8.5)
        if row.connections:
            ax.text(x, 0.8, f"{row.connections:,} connections\n{row.free_parameters:,} "
                    "free parameters", ha="center", va="top", fontsize=8)
    for left, right in zip(xs[:-1], xs[1:]):
        ax.annotate("", xy=(right - 0.78, 1.6), xytext=(left + 0.78, 1.6),
                    arrowprops={"arrowstyle": "->", "color": "#555555"})
    total = rows[-1]
    ax.text(5.0, 0.15, f"in all: {total.units:,} units, {total.connections:,} connections, "
            f"{total.free_parameters:,} free parameters", ha="center", fontsize=10)
    # H2's table (rows: H2 maps, columns: H1 maps) in a small inset above the H1 -> H2 arrow
    inset = fig.add_axes(((xs[1] + xs[2]) / 20 - 0.03, 0.71, 0.06, 0.19))
    inset.imshow(_numpy(table), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_title("H2 table", fontsize=7)
    return fig


def connection_table(table: Tensor | np.ndarray) -> Figure:
    """H2's connection table: row = H2 map, column = the H1 maps it sees (filled)."""
    values = _numpy(table).astype(float)
    fig = figure(4.2, 4.0)
    ax = fig.subplots()
    ax.imshow(values, cmap="Greys", vmin=0, vmax=1.25)
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    ax.set_xticks(np.arange(-0.5, values.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, values.shape[0]), minor=True)
    ax.grid(which="minor", color="#999999", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("H1 map (input)")
    ax.set_ylabel("H2 map")
    for row, count in enumerate(values.sum(axis=1)):
        ax.annotate(f"{int(count)}", (values.shape[1] - 0.5, row), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8, color="#555555",
                    annotation_clip=False)
    ax.set_title("H1 maps seen by each H2 map (count at right)")
    return fig


def receptive_fields(image: Tensor | np.ndarray, h1_unit: tuple[int, int],
                     h2_unit: tuple[int, int]) -> Figure:
    """The input fields of one H1 unit (5x5) and of one H2 unit (through H1) on a digit.

    The digit is drawn with the virtual background around it (2 pixels before, 1 after, as the
    model pads): grey hatching marks pixels that do not exist but read as -1.
    """
    picture = _images(_numpy(image).reshape(1, 16, 16))[0]
    size = picture.shape[0]
    low, high = -PAD_BEFORE, size - 1 + PAD_AFTER
    canvas = np.full((high - low + 1, high - low + 1), -1.0)
    canvas[PAD_BEFORE:PAD_BEFORE + size, PAD_BEFORE:PAD_BEFORE + size] = picture
    extent = (low - 0.5, high + 0.5, high + 0.5, low - 0.5)

    def field(first: int, last: int) -> tuple[float, float]:
        first, last = max(first, low), min(last, high)
        return first - 0.5, last - first + 1

    # H1 unit i sees input rows STRIDE*i - PAD_BEFORE ... + KERNEL - 1.
    def h1_rows(i: int) -> tuple[int, int]:
        return STRIDE * i - PAD_BEFORE, STRIDE * i - PAD_BEFORE + KERNEL - 1

    # H2 unit i sees H1 units STRIDE*i - PAD_BEFORE ... + KERNEL - 1 (clipped to 0..7).
    def h2_rows(i: int) -> tuple[int, int]:
        first = max(STRIDE * i - PAD_BEFORE, 0)
        last = min(STRIDE * i - PAD_BEFORE + KERNEL - 1, size // STRIDE - 1)
        return h1_rows(first)[0], h1_rows(last)[1]

    fig = figure(4.6, 4.4)
    ax = fig.subplots()
    ax.imshow(canvas, cmap=INK, vmin=-1, vmax=1, extent=extent)
    border = Rectangle((-0.5, -0.5), size, size, fill=False, edgecolor="#888888", linewidth=1,
                       linestyle=":")
    ax.add_patch(border)
    for start in (low - 0.5, size - 0.5):
        band = PAD_BEFORE if start < 0 else PAD_AFTER
        ax.add_patch(Rectangle((start, low - 0.5), band, high - low + 1, fill=False,
                               hatch="///", edgecolor="#cccccc", linewidth=0))
        ax.add_patch(Rectangle((low - 0.5, start), high - low + 1, band, fill=False,
                               hatch="///", edgecolor="#cccccc", linewidth=0))
    for unit, rows_of, colour, name in ((h2_unit, h2_rows, "#1f77b4", "H2"),
                                        (h1_unit, h1_rows, "#d62728", "H1")):
        (r0, r1), (c0, c1) = rows_of(unit[0]), rows_of(unit[1])
        y, height = field(r0, r1)
        x, width = field(c0, c1)
        ax.add_patch(Rectangle((x, y), width, height, fill=False, edgecolor=colour,
                               linewidth=2.2, label=f"{name} unit {unit}: {int(height)}x"
                                                    f"{int(width)} input pixels"))
    ticks = list(range(0, size + 1, 4))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("input column (dotted: the 16x16 digit; hatched: virtual background)")
    ax.set_ylabel("input row")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    return fig


# --- training ---------------------------------------------------------------------------------


def learning_curves(history: History, paper: Mapping[str, tuple[float, float]] | None = None
                    ) -> Figure:
    """MSE (log scale) and error rate (%) against the pass, train and test, as the paper's
    figure draws them.

    ``paper`` maps ``"train"``/``"test"`` to the paper's final (MSE, error rate), drawn as
    open markers at the last pass.
    """
    passes = [r.pass_index for r in history.passes]
    fig = figure(9.0, 3.4)
    left, right = fig.subplots(1, 2)
    for name, colour in (("train", TRAIN_COLOUR), ("test", TEST_COLOUR)):
        mse = [getattr(r, name).mse for r in history.passes]
        error = [100 * getattr(r, name).error for r in history.passes]
        left.plot(passes, mse, "-o", markersize=3, color=colour, label=f"{name} (this book)")
        right.plot(passes, error, "-o", markersize=3, color=colour, label=f"{name} (this book)")
        if paper is not None and name in paper:
            paper_mse, paper_error = paper[name]
            kwargs = {"marker": "D", "markersize": 8, "markerfacecolor": "none",
                      "markeredgecolor": colour, "markeredgewidth": 1.6, "linestyle": "none",
                      "label": f"{name} (the paper, after 23 passes)"}
            left.plot([23], [paper_mse], **kwargs)
            right.plot([23], [100 * paper_error], **kwargs)
    left.set_yscale("log")
    left.set_ylabel("mean squared error (log scale)")
    right.set_ylabel("error rate (%, log scale)")
    right.set_yscale("log", nonpositive="mask")  # a pass with no error at all leaves a gap
    for ax in (left, right):
        ax.set_xlabel("pass over the training set")
        ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
        ax.set_xlim(-0.5, max(max(passes), 23 if paper else 0) + 0.8)
    right.legend(frameon=False, fontsize=8)
    return fig


def kernels(weights: Tensor | np.ndarray, ncols: int = 6) -> Figure:
    """The H1 kernels (12, 1, 5, 5) on one symmetric colour scale: red excites, blue inhibits."""
    values = _images(weights)
    limit = float(np.abs(values).max()) or 1.0
    count = len(values)
    nrows = -(-count // ncols)
    fig = figure(1.15 * ncols + 0.9, 1.25 * nrows)
    axes, used = _tiles(fig, count, ncols)
    image = None
    for index, ax in enumerate(used):
        image = ax.imshow(values[index], cmap=SIGNED, vmin=-limit, vmax=limit)
        ax.set_title(f"map {index}", fontsize=9, pad=2)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.85, label="weight")
    return fig


def feature_maps(image: Tensor | np.ndarray, states: Mapping[str, Tensor | np.ndarray]
                 ) -> Figure:
    """One digit through the network: the input, H1's and H2's 12 maps, H3's 30 units, and
    the 10 outputs. ``states`` is :meth:`lenet1.nets.LeNet1.layers` for that one digit."""
    picture = _images(_numpy(image).reshape(1, 16, 16))[0]
    h1 = _numpy(states["h1"]).reshape(-1, 8, 8)
    h2 = _numpy(states["h2"]).reshape(-1, 4, 4)
    h3 = _numpy(states["h3"]).reshape(-1)
    out = _numpy(states["out"]).reshape(-1)
    maps = len(h1)
    limit = TANH_AMPLITUDE
    fig = figure(11.0, 6.2)
    top, middle, bottom = np.asarray(fig.subfigures(3, 1, height_ratios=[1.5, 1.0, 1.0])).flat
    ax_in, ax_h3, ax_out = top.subplots(1, 3, width_ratios=[1.0, 2.6, 1.6])
    ax_in.imshow(picture, cmap=INK, vmin=-1, vmax=1)
    ax_in.set_title("input, 16x16")
    ax_in.set_xticks([])
    ax_in.set_yticks([])
    colours = [TEST_COLOUR if v > 0 else TRAIN_COLOUR for v in h3]
    ax_h3.bar(range(len(h3)), h3, color=colours)
    ax_h3.set_ylim(-limit, limit)
    ax_h3.set_title(f"H3, {len(h3)} units")
    ax_h3.set_xlabel("unit")
    ax_h3.set_ylabel("state")
    winner = int(np.argmax(out))
    ax_out.bar(range(len(out)), out,
               color=[TEST_COLOUR if k == winner else "#999999" for k in range(len(out))])
    ax_out.set_ylim(-limit, limit)
    ax_out.set_xticks(range(len(out)))
    ax_out.set_title(f"output: {winner}")
    ax_out.set_xlabel("class")
    for ax in (ax_h3, ax_out):
        ax.axhline(0, color="black", linewidth=0.6)
    drawn = None
    for subfig, values, name in ((middle, h1, "H1, 12 maps of 8x8"),
                                 (bottom, h2, "H2, 12 maps of 4x4")):
        axes = subfig.subplots(1, maps)
        for index, ax in enumerate(axes):
            drawn = ax.imshow(values[index], cmap=SIGNED, vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(str(index), fontsize=8, labelpad=2)
        subfig.suptitle(name, fontsize=10)
        if drawn is not None:
            subfig.colorbar(drawn, ax=axes, shrink=0.9, label="state", aspect=8)
    return fig


# --- results ----------------------------------------------------------------------------------


def confusion_matrix(labels: Tensor | np.ndarray, predicted: Tensor | np.ndarray,
                     classes: int = 10) -> Figure:
    """Counts of (true class, predicted class). Colour shows the mistakes only: the diagonal
    (correct answers) is written in grey so that it does not drown them."""
    import seaborn as sns

    truth, guess = _numpy(labels).astype(int), _numpy(predicted).astype(int)
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (truth, guess), 1)
    off_diagonal = np.ma.masked_array(matrix, mask=np.eye(classes, dtype=bool))
    fig = figure(5.6, 4.8)
    ax = fig.subplots()
    # White where there is nothing to see: the diagonal, and confusions that never happen.
    blank = np.eye(classes, dtype=bool) | (matrix == 0)
    sns.heatmap(off_diagonal.filled(0), mask=blank, annot=False,
                cmap="Reds", vmin=0, vmax=max(int(off_diagonal.max() or 1), 1), ax=ax,
                cbar_kws={"label": "misclassified digits"}, linewidths=0.5,
                linecolor="#eeeeee", square=True)
    for row in range(classes):
        for col in range(classes):
            value = matrix[row, col]
            if row == col:
                ax.text(col + 0.5, row + 0.5, str(value), ha="center", va="center",
                        fontsize=7, color="#777777")
            elif value:
                ax.text(col + 0.5, row + 0.5, str(value), ha="center", va="center",
                        fontsize=8, color="black" if value < 0.6 * off_diagonal.max()
                        else "white")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    return fig


def rejection_curves(curves: Mapping[str, RejectionCurve], target: float = 0.01,
                     paper: Mapping[str, float] | None = None,
                     marks: Mapping[str, float] | None = None,
                     max_rejection: float = 0.4) -> Figure:
    """Error rate against rejection rate, one line per curve (both in %).

    ``paper`` maps a label to the paper's rejection at ``target`` error (a star is drawn);
    ``marks`` maps a curve's label to its own rejection at ``target`` (a dot).
    """
    fig = figure(6.4, 4.0)
    ax = fig.subplots()
    colours = [TEST_COLOUR, TRAIN_COLOUR, "#2ca02c", "#9467bd"]
    for index, ((name, curve), colour) in enumerate(zip(curves.items(), colours)):
        ax.step(100 * curve.rejection, 100 * curve.error, where="post", color=colour,
                linewidth=1.6, label=name)
        if marks is not None and name in marks:
            ax.plot([100 * marks[name]], [100 * target], "o", color=colour, markersize=7)
            # Labels alternate above and below the target line, so that close marks stay legible.
            ax.annotate(f"{100 * marks[name]:.1f}%", (100 * marks[name], 100 * target),
                        xytext=(6, 10 if index % 2 == 0 else -18), textcoords="offset points",
                        color=colour, fontsize=9, fontweight="bold")
    if paper is not None:
        for name, rejection in paper.items():
            ax.plot([100 * rejection], [100 * target], "*", color=PAPER_COLOUR, markersize=13,
                    label=name)
    ax.axhline(100 * target, color="#888888", linestyle="--", linewidth=1)
    ax.set_xlim(0, 100 * max_rejection)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("test patterns rejected (%)")
    ax.set_ylabel("error rate (%)")
    ax.grid(True, color="#eeeeee", linewidth=0.6)
    ax.legend(frameon=False, fontsize=8)
    return fig


def fit_tradeoff(screened: Sequence[tuple[float, float]],
                 marked: Mapping[str, tuple[float, float, float, float, float, float]],
                 paper: tuple[float, float], arms: Sequence[str] = (),
                 zoom: tuple[float, float] = (60.0, 140.0)) -> Figure:
    """Training misses against test misses, in two panels: every screened setting (its seeds'
    mean) on log scales, and the corner near the paper (``zoom``: the largest training and
    test misses shown) on linear ones. Each ``marked`` setting (name: train mean, low, high,
    test mean, low, high) is a point with its seeds' ranges, a square for those named in
    ``arms``; the paper is a black star. The log panel plots misses plus one."""
    fig = figure(11.0, 4.8)
    wide, near = fig.subplots(1, 2)
    palette = mpl.colormaps["tab20"]  # 20 colours: an int picks one
    for ax, log in ((wide, True), (near, False)):
        shift = 1.0 if log else 0.0
        if screened:
            x, y = np.array(screened, dtype=float).T
            keep = np.ones_like(x, bool) if log else (x <= zoom[0]) & (y <= zoom[1])
            ax.scatter(x[keep] + shift, y[keep] + shift, s=9, color="#bbbbbb",
                       label="screened settings (seed means)", zorder=1)
        for index, (name, (tx, tlo, thi, sy, slo, shi)) in enumerate(marked.items()):
            ax.errorbar([tx + shift], [sy + shift], xerr=[[tx - tlo], [thi - tx]],
                        yerr=[[sy - slo], [shi - sy]], fmt="s" if name in arms else "o",
                        ms=5, color=palette((2 * index) % 20 + (index >= 10)), capsize=2,
                        label=name, zorder=3)
        ax.scatter([paper[0] + shift], [paper[1] + shift], marker="*", s=220,
                   color=PAPER_COLOUR, label="the paper (1989)", zorder=4)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("training misses + 1 (of 7,291)")
            ax.set_ylabel("test misses + 1 (of 2,007)")
            ax.set_title("every setting")
        else:
            ax.set_xlim(0, zoom[0])
            ax.set_ylim(paper[1] * 0.85, zoom[1])
            ax.set_xlabel("training misses (of 7,291)")
            ax.set_ylabel("test misses (of 2,007)")
            ax.set_title("near the paper")
    handles, labels = near.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7, frameon=False)
    return fig
