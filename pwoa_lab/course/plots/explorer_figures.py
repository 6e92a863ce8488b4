"""The classroom explorer's figures: Figure 1, the training curves, the information plane and the frontier of a view.

Each takes what `pwoa_lab.experiments.explore` computed (an `ExplorerData`, or its selection and frontier result)
and returns a Figure; `_empty` is the placeholder figure that says what is missing and how to fill it.
"""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from pwoa_lab.course.plots.comparisons import plot_frontier
from pwoa_lab.course.plots.paper import METHOD_STYLE, plot_figure1
from pwoa_lab.course.plots.runs import plot_information_plane
from pwoa_lab.experiments.explore import ExplorerData, Selection, budgeted_methods
from pwoa_lab.training.registry import TEACHER

FIGURE_METRICS = ("natural", "pgd", "aa")


def _empty(text: str, size=(6, 2.5)) -> plt.Figure:
    fig, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    ax.axis("off")
    return fig


def figure1_plot(view: ExplorerData) -> plt.Figure:
    """`plots.plot_figure1` of the view's table (whiskers: 95% intervals over the seeds and test images)."""
    sel = view.selection
    if (view.table.method != TEACHER).sum() == 0:
        return _empty("no run of this selection is in the cache yet:\npress 'compute missing runs'")
    seeds = ", ".join(map(str, sel.seeds))
    return plot_figure1(view.table, metrics=FIGURE_METRICS, summary=view.summary,
                        title=f"Figure 1 on {sel.dataset} ({view.preset} preset), scope {sel.scope}, "
                              f"seeds {seeds}: mean and 95% interval")


def plot_training_curves(hist: pd.DataFrame, rates: Sequence[float], metric: str = "val_pgd") -> plt.Figure:
    """Validation accuracy over epochs: one panel per rate, one line per method (mean over seeds, band +-1 std);
    the natural accuracy dotted."""
    trained = hist.dropna(subset=[metric]) if len(hist) else hist
    if not len(trained):
        return _empty("no training history to show (one-shot pruning does not train)")
    rates = [r for r in rates if (trained.rate == r).any()]
    fig, axes = plt.subplots(1, len(rates), figsize=(3.6 * len(rates) + 1, 3.3), squeeze=False, sharey=True)
    for ax, rate in zip(axes[0], rates):
        for method, part in trained[trained.rate == rate].groupby("method", sort=False):
            style = METHOD_STYLE.get(method, {"label": method})
            for col, ls, label in ((metric, "-", style["label"]), ("val_natural", ":", None)):
                g = part.groupby("epoch")[col]
                mean, std = g.mean(), g.std().fillna(0)
                ax.plot(mean.index, mean.values, ls=ls, color=style.get("color"), marker=style.get("marker"),
                        ms=3, label=label)
                if col == metric:
                    ax.fill_between(mean.index, mean - std, mean + std, color=style.get("color"), alpha=0.15)
        ax.set_title(f"{rate:g}x")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (%)\nsolid: PGD, dotted: natural")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("training curves (mean over seeds, band ± 1 std)")
    fig.tight_layout()
    return fig


def plane_plot(view: ExplorerData, layer_names=None) -> plt.Figure:
    """`plots.plot_information_plane` of each trained method at the largest rate shown (first seed)."""
    hist = view.histories
    cols = [c for c in hist.columns if str(c).startswith("hsic_xz_")]
    if not len(hist) or not cols:
        return _empty("no information-plane data (nHSIC is recorded while training)")
    hist = hist.dropna(subset=cols)
    rate = float(hist.rate.max())
    seed = view.selection.seeds[0] if (hist.seed == view.selection.seeds[0]).any() else int(hist.seed.min())
    runs = {f"{m} {rate:g}x (seed {seed})": part.sort_values("epoch")
            for m, part in hist[(hist.rate == rate) & (hist.seed == seed)].groupby("method", sort=False)}
    fig = plot_information_plane(runs, layer_names)
    fig.suptitle("information plane: nHSIC(X, Z) vs nHSIC(Y, Z) per layer over training (dark: later epochs)")
    fig.tight_layout()
    return fig


def frontier_plot(sel: Selection, preset: str, fr) -> plt.Figure:
    """Is the comparison fair? `plots.plot_frontier` of the selection's methods and rates over the fine-tuning
    budget (`fr`: `frontier.cached_frontier_result`, from the cache only: the explorer never trains a budget grid;
    `pwoa-lab frontier` fills it)."""
    if fr is None:
        methods = ",".join(budgeted_methods(sel.methods))
        return _empty("no frontier of this selection in the cache. Before class, run:\n"
                      f"pwoa-lab frontier --dataset {sel.dataset} --preset {preset} --scope {sel.scope} "
                      f"--rates {','.join(f'{r:g}' for r in sel.rates)}\n--methods {methods} "
                      f"--seeds {','.join(map(str, sel.seeds))}", size=(7, 2.5))
    return plot_frontier(fr.points)


def explorer_figures(view: ExplorerData) -> dict[str, plt.Figure]:
    """The explorer's four figures of a view: "figure1", "curves", "plane" and "frontier"."""
    return {"figure1": figure1_plot(view), "curves": plot_training_curves(view.histories, view.selection.rates),
            "plane": plane_plot(view, view.layer_names),
            "frontier": frontier_plot(view.selection, view.preset, view.frontier)}


def figure_png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=90)
    return buf.getvalue()
