"""The method styles and the paper's figures: Figure 1 (accuracy vs pruning rate) and Figure 3 (accuracy vs time).

`METHOD_STYLE` (read from the registry), `METRIC_LABEL` and the helpers every plot of `pwoa_lab.course.plots`
shares: `_style`, `_axes` (the caller's `ax=` or a new figure) and `_finish`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pwoa_lab.core.evaluation import METRIC_WORDS
from pwoa_lab.defaults import smoke_note
from pwoa_lab.pruning.masks import rate_words
from pwoa_lab.training.registry import CAPACITY, TEACHER, method_order, method_spec, method_with_role

TEACHER_STYLE = dict(color="black", label="dense robust teacher")
CAPACITY_STYLE = dict(color="tab:brown", marker="s", ls=":", label="dense, same size, adversarially trained")


class _MethodStyles(Mapping):
    """{method: matplotlib style} for the teacher and every registered method (read from the registry)."""

    def __getitem__(self, method: str) -> dict:
        if method == TEACHER:
            return dict(TEACHER_STYLE)
        if method == CAPACITY:
            return dict(CAPACITY_STYLE)
        try:
            return method_spec(method).style()
        except ValueError:
            raise KeyError(method) from None

    def __iter__(self):
        return iter(method_order())

    def __len__(self) -> int:
        return len(method_order())


METHOD_STYLE = _MethodStyles()
METRIC_LABEL = {m: f"{words} accuracy (%)" for m, words in METRIC_WORDS.items()}


def _style(method: str) -> dict:
    return dict(METHOD_STYLE.get(method, dict(label=method)))


def _axes(ax, n: int, figsize: tuple[float, float]):
    """(figure, list of n Axes): the caller's `ax` (one Axes or a sequence), else a new 1 x n figure."""
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False)
        return fig, list(axes[0])
    axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) != n:
        raise ValueError(f"this plot draws {n} panel(s); got {len(axes)} Axes in ax=")
    return axes[0].figure, axes


def _finish(fig, own: bool, title: str | None = None):
    if title and own:
        fig.suptitle(title)
    if own:
        fig.tight_layout()
    return fig


def mark_smoke(fig, preset: str):
    """Put the smoke preset's note (`defaults.smoke_note`) in red above the figure's title, so that a smoke figure
    is never read as a result; other presets leave the figure as it is. Returns the figure."""
    note = smoke_note(preset)
    if note:
        title = fig.get_suptitle()
        fig.suptitle(f"{note.upper()}" + (f"\n{title}" if title else ""), color="#b00000")
        fig.tight_layout()
    return fig


def plot_figure1(df: pd.DataFrame, metrics: Sequence[str] = ("natural", "pgd", "aa"), title: str | None = None,
                 ax=None, summary: pd.DataFrame | None = None):
    """Accuracy vs pruning rate (log2 axis), one panel per metric, the teacher as a dashed line.

    `df`: a Figure-1 table with one row per (method, rate, seed). With `summary` (`figures.seed_summary(df)`, whose
    `m_low` / `m_high` columns hold 95% intervals over seeds and test images) each method's mean carries its
    interval as whiskers and the teacher its interval as a band; without it, +-1 standard deviation over seeds
    (seaborn). The x labels give each rate both ways (8x = 87.5% of each pruned layer's weights zero) and the
    network's real sparsity below it. The capacity control (method "capacity"), where the table has it, is its own
    dotted line."""
    import seaborn as sns
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    fig, axes = _axes(ax, len(metrics), (4.2 * len(metrics), 3.8))
    pruned = df[df.method != TEACHER]
    teacher = df[df.method == TEACHER]
    rates = sorted(pruned.rate.unique())
    sparse = pruned[pruned.method != CAPACITY]  # the control is dense: the label gives the pruned networks' sparsity
    labels = [rate_words(r).replace(" (", "\n").rstrip(")")
              + f"\nnet {100 * float(sparse.loc[sparse.rate == r, 'sparsity'].mean()):.1f}%" for r in rates]
    whiskers = "sd over seeds"
    for ax_, metric in zip(axes, metrics):
        has_iv = summary is not None and f"{metric}_low" in summary and summary[f"{metric}_low"].notna().any()
        if has_iv:
            whiskers = "95% interval over seeds and test images"
        for method, part in pruned.groupby("method", sort=False):
            style = _style(method)
            if has_iv:
                s = summary[summary.method == method].sort_values("rate")
                yerr = [(s[metric] - s[f"{metric}_low"]).clip(lower=0).fillna(0),
                        (s[f"{metric}_high"] - s[metric]).clip(lower=0).fillna(0)]
                ax_.errorbar(s.rate, s[metric], yerr=yerr, color=style.get("color"), marker=style.get("marker"),
                             ls=style.get("ls", "-"), capsize=3, label=style["label"], ms=5)
            else:
                sns.lineplot(data=part, x="rate", y=metric, errorbar="sd", err_style="bars", color=style.get("color"),
                             marker=style.get("marker"), linestyle=style.get("ls", "-"), label=style["label"], ax=ax_,
                             legend=False)
        if len(teacher):
            ax_.axhline(float(teacher[metric].iloc[0]), ls="--", **_style(TEACHER))
            t = summary[summary.method == TEACHER] if has_iv else None
            if t is not None and len(t) and t[f"{metric}_low"].notna().any():
                ax_.axhspan(float(t[f"{metric}_low"].iloc[0]), float(t[f"{metric}_high"].iloc[0]),
                            color=_style(TEACHER).get("color", "black"), alpha=0.08, lw=0)
        ax_.set_xscale("log", base=2)
        ax_.set_xticks(rates, labels, fontsize=6)
        ax_.minorticks_off()
        ax_.set_xlabel("pruning rate (network sparsity)")
        ax_.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax_.set_ylim(-2, 102)
        ax_.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left", title=f"whiskers: {whiskers}", title_fontsize=7)
    return _finish(fig, ax is None, title)


def plot_figure3(curves: pd.DataFrame, metric: str = "val_pgd", target: float | None = None,
                 title: str | None = None, ax=None):
    """Robust accuracy vs training time: one line per (method, mix ratio), colour by method, shade by r.

    `curves` has columns method, mix_ratio, train_seconds and `metric`; PwoA at r = 0 is drawn thick.
    `target` (e.g. PwoA's final PGD accuracy) is drawn as a dotted line.
    """
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (6.5, 4.2))
    keys = ["method", "mix_ratio"] + (["seed"] if "seed" in curves.columns else [])
    labelled = set()
    for (method, r, *_), part in curves.groupby(keys, sort=False):  # one line per seed: their clocks differ
        style = _style(method)
        reference = method == method_with_role("proposed") and r == 0  # the run the time ratio is measured against
        alpha = 1.0 if reference else 0.35 + 0.65 * float(r)
        lw = 3 if reference else 1.3
        label = f"{style['label']} r={r:g}" if (method, r) not in labelled else None
        labelled.add((method, r))
        ax.plot(part.train_seconds, part[metric], color=style.get("color"), alpha=alpha, lw=lw,
                marker=style.get("marker"), ms=3, label=label)
    if target is not None:
        ax.axhline(target, ls=":", color="tab:blue", label="PwoA (r=0) final")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(METRIC_LABEL.get(metric.replace("val_", ""), metric) + (" [val]" if metric.startswith("val_") else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title)
    return _finish(fig, own)
