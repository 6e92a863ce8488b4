"""The classroom explorer's figures: Figure 1, the training curves, the information plane and the frontier of a view.

Each takes what `pwoa_lab.experiments.explore` computed (an `ExplorerData`, or its selection and frontier result)
and returns a Figure; `_empty` is the placeholder figure that says what is missing and how to fill it. With the
`smoke` preset every figure says so above its title (`plots.mark_smoke`): its numbers are no finding.

`explore(selection, preset)` -> `ExplorerView`: the data and its four figures; `png_output`, `table_output`,
`verdict_output` and `frontier_outputs` are the page's cells (set as `Output.outputs` by `pwoa_lab.course.explorer`).
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch.nn as nn
from matplotlib.ticker import MaxNLocator

from pwoa_lab.core.intervals import VERDICT_RULE, format_cell

from pwoa_lab.course.plots.comparisons import plot_frontier
from pwoa_lab.course.plots.paper import METHOD_STYLE, mark_smoke, plot_figure1
from pwoa_lab.course.plots.runs import plot_information_plane
from pwoa_lab.experiments.explore import (ExplorerData, Selection, explorer_data, frontier_command,
                                          only_preset_budget, smoke_note)
from pwoa_lab.experiments.frontier import FRONT_RULE
from pwoa_lab.training.registry import TEACHER

FIGURE_METRICS = ("natural", "pgd", "aa")
FRONT_WORDS = "front: the points of a method that no other point of the same method beats on both accuracies"


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
    budget, the teacher as a star (`fr`: `frontier.cached_frontier_result`, from the cache only: the explorer never
    trains a budget grid; `pwoa-lab frontier` fills it). Where the cache holds one budget per method only, the
    title says so instead of "over the fine-tuning budget"."""
    if fr is None:
        return _empty("no frontier of this selection in the cache. Before class, run:\n"
                      + frontier_command(sel, preset).replace(" --scope", "\n--scope"), size=(7, 2.5))
    if only_preset_budget(fr.points):
        title = ("natural vs robust accuracy at the preset's own budget only (one point per method: no budget "
                 "grid in the cache)")
    else:
        title = (f"natural vs robust accuracy over the fine-tuning budget\n(labels: learning-rate factor[/epoch "
                 f"factor]; filled: on the front)\n{FRONT_WORDS}")
    return plot_frontier(fr.points, title=title)


def explorer_figures(view: ExplorerData) -> dict[str, plt.Figure]:
    """The explorer's four figures of a view: "figure1", "curves", "plane" and "frontier"; under the smoke preset
    each says so above its title (`plots.mark_smoke`, as every figure of the commands and notebooks)."""
    figures = {"figure1": figure1_plot(view),
               "curves": plot_training_curves(view.histories, view.selection.rates),
               "plane": plane_plot(view, view.layer_names),
               "frontier": frontier_plot(view.selection, view.preset, view.frontier)}
    return {name: mark_smoke(fig, view.preset) for name, fig in figures.items()}


def figure_png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=90)
    return buf.getvalue()


@dataclass
class ExplorerView(ExplorerData):
    """What the explorer shows for a selection: its `ExplorerData` and the figures drawn of it."""
    figures: dict[str, plt.Figure] = field(default_factory=dict)  # "figure1", "curves", "plane", "frontier"

    def png(self, name: str) -> bytes:
        return figure_png(self.figures[name])

    def close(self) -> None:
        for fig in self.figures.values():
            plt.close(fig)


def explore(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None, root=None,
            compute: bool = True, on_run=None, on_epoch=None, max_runs: int | None = None,
            should_stop=None) -> ExplorerView:
    """The explorer's view of `sel`: Figure 1 (means and 95% intervals), the claim per rate, training curves,
    information plane, the frontier and its verdicts (`experiments.explore.explorer_data`, then drawn).

    `compute`: run the missing runs first (`compute_missing`), unless there are more than `max_runs` (then the
    view's `refused` says why); otherwise show the cached ones only (the teacher row is evaluated, once, when not
    cached: seconds). `should_stop()`: asked at every run start and epoch; true: the runs finished are shown and
    the view's `stopped` says how many were asked for."""
    data = explorer_data(sel, preset, teacher, cache_dir, root, compute, on_run, on_epoch, max_runs, should_stop)
    view = ExplorerView(**vars(data))
    with plt.ioff():  # never queued for the inline backend's flush (see widgets._interactive)
        view.figures = explorer_figures(view)
    return view


# ----------------------------------------------------------------------------------------------- page outputs

def png_output(png: bytes, text: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode(), "text/plain": text}}


def table_output(summary: pd.DataFrame, verdicts: Sequence[str] = (), note: str = "") -> dict:
    """The summary as a table, each metric 'mean [low, high]' (its 95% interval) where it has one, and the verdict
    lines below it with the rule that decides them. Columns empty in every row are left out; `note` (the smoke
    preset's warning) heads the verdicts."""
    metrics = [m for m in ("natural", "fgsm", "pgd", "aa") if m in summary and summary[m].notna().any()]
    table = summary[["method", "rate", "seeds"]].copy()
    table["sparsity %"] = (100 * summary["sparsity"]).round(1)
    table = table.loc[:, table.notna().any()]
    for m in metrics:
        table[m] = [format_cell(r[m], r.get(f"{m}_low", float("nan")), r.get(f"{m}_high", float("nan")))
                    for r in summary.to_dict("records")]
    page = table.to_html(index=False, na_rep="–")
    text = table.to_string(index=False)
    if verdicts:
        head = f"The paper's claim per rate ({note + '; ' if note else ''}{VERDICT_RULE}):"
        page += _html_list(head, verdicts)
        text += "\n" + "\n".join([head, *verdicts])
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": page, "text/plain": text}}


def verdict_output(lines: Sequence[str], note: str = "", one_budget: bool = False) -> dict:
    """The frontier's verdicts with the rule that decides them; `one_budget`: the cache holds one budget per method
    only, so the heading says the points were compared at that budget alone."""
    what = "PwoA against naive at the preset's budget alone" if one_budget else "PwoA's front against naive's"
    head = f"{what} ({note + '; ' if note else ''}{FRONT_RULE}):"
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": _html_list(head, lines), "text/plain": "\n".join([head, *lines])}}


def frontier_outputs(view: ExplorerView, text: str) -> tuple[dict, ...]:
    """The frontier's cells: its plot (`text`: the plot in words), where the cache holds one budget per method only
    the line that says so with the command that fills the grid, and the verdicts."""
    note = smoke_note(view.preset)
    out = [png_output(view.png("frontier"), text)]
    if view.frontier_note:  # the command on one line, as code: a student copies it
        command = html_text(frontier_command(view.selection, view.preset))
        page = html_text(view.frontier_note).replace(command, f"<code style='white-space: nowrap'>{command}</code>")
        out.append({"output_type": "display_data", "metadata": {},
                    "data": {"text/html": f"<p>{page}</p>", "text/plain": view.frontier_note}})
    if view.frontier_verdicts:
        out.append(verdict_output(view.frontier_verdicts, note, one_budget=bool(view.frontier_note)))
    return tuple(out)


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def html_text(text: str) -> str:
    return html.escape(text)


def _html_list(head: str, lines: Sequence[str]) -> str:
    return f"<p>{html_text(head)}</p><ul>" + "".join(f"<li>{html_text(v)}</li>" for v in lines) + "</ul>"
