"""Plots of single runs and models: training history, fine-tuning drift, learning curves, the information plane,
weights, accuracies side by side and adversarial images."""
from __future__ import annotations

import itertools
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from pwoa_lab.course.plots.paper import METRIC_LABEL, _axes, _finish, _style
from pwoa_lab.training.registry import TEACHER, method_with_role


def plot_history(history: pd.DataFrame, title: str | None = None, ax=None):
    """Validation natural and PGD accuracy per epoch; the hard-prune point is marked."""
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (6, 3.5))
    ax.plot(history.epoch, history.val_natural, label="val natural")
    ax.plot(history.epoch, history.val_pgd, label="val PGD")
    retrain = history[history.phase.isin(("retrain", "finetune"))]
    if len(retrain) and len(retrain) < len(history):
        ax.axvline(retrain.epoch.iloc[0] - 0.5, color="gray", ls="--", label="hard prune")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _finish(fig, own)


def plot_finetune_drift(df: pd.DataFrame, title: str | None = None, ax=None):
    """`analyses.finetune_drift` as two panels (validation natural, PGD) vs fine-tuning epoch: one line per
    (method, lr), solid for the largest lr; the dense teacher as a dashed line."""
    own = ax is None
    fig, axes = _axes(ax, 2, (9, 3.5))
    teacher = df[df.method == TEACHER]
    runs = df[df.method != TEACHER]
    top = runs.lr.max()
    for ax_, metric in zip(axes, ("val_natural", "val_pgd")):
        for (method, lr), part in runs.groupby(["method", "lr"], sort=False):
            style = _style(method)
            style["label"] = f"{style['label']}, lr {lr:g}"
            ax_.plot(part.epoch, part[metric], ls="-" if lr == top else ":", **style)
        if len(teacher):
            ax_.axhline(float(teacher[metric].iloc[0]), ls="--", **_style(TEACHER))
        ax_.set_xlabel("fine-tuning epoch (0: pruned, not fine-tuned)")
        ax_.set_ylabel(METRIC_LABEL[metric.replace("val_", "")] + " [val]")
        ax_.set_ylim(-2, 102)
        ax_.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return _finish(fig, own, title)


def plot_learning_curve(curve: pd.DataFrame, metric: str = "pgd", title: str | None = None, ax=None):
    """`analyses.learning_curve` as two panels: the metric (%) against training images at a fixed number of
    optimizer steps, and against optimizer steps on a fixed set of images (log x). One line per (method, rate);
    the one-shot control (pruned, never trained) as a dotted line per rate."""
    own = ax is None
    fig, axes = _axes(ax, 2, (10, 3.4))
    control = curve[curve.method == method_with_role("control")]
    rates = sorted(curve.rate.unique())
    line = dict(zip(rates, itertools.cycle(("-", "--", "-."))))  # dotted is the control's
    for ax_, axis, x in zip(axes, ("data", "steps"), ("images", "steps")):
        for (method, rate), part in curve[curve.axis == axis].groupby(["method", "rate"], sort=False):
            style = _style(method)
            style["label"] = f"{style['label']}, {rate:g}x" if len(rates) > 1 else style["label"]
            ax_.plot(part[x], part[metric], ls=line[rate], **style)
        for r in control.itertuples():
            label = f"one-shot, no training, {r.rate:g}x" if len(rates) > 1 else "one-shot, no training"
            ax_.axhline(float(getattr(r, metric)), ls=":", color="gray", label=label)
        ax_.set_xscale("log")
        ax_.set_xlabel("training images (fixed steps)" if axis == "data" else "optimizer steps (fixed images)")
        ax_.set_ylabel(METRIC_LABEL[metric] + " [test]")
        ax_.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _finish(fig, own, title)


def plot_information_plane(histories: dict[str, pd.DataFrame], layer_names: Sequence[str] | None = None,
                           ax=None):
    """nHSIC(X, Z_j) (x axis) vs nHSIC(Y, Z_j) (y axis) per layer over epochs, one panel per run."""
    own = ax is None
    fig, axes = _axes(ax, len(histories), (4.6 * len(histories), 3.8))
    for ax, (name, hist) in zip(axes, histories.items()):
        layers = sorted(int(c.rsplit("_", 1)[1]) for c in hist.columns if c.startswith("hsic_xz_"))
        cmap = plt.get_cmap("viridis")
        for j in layers:
            label = layer_names[j - 1] if layer_names and j - 1 < len(layer_names) else f"Z{j}"
            ax.plot(hist[f"hsic_xz_{j}"], hist[f"hsic_yz_{j}"], "-", color=cmap(j / (len(layers) + 1)), alpha=0.5)
            ax.scatter(hist[f"hsic_xz_{j}"], hist[f"hsic_yz_{j}"], c=np.linspace(0.2, 1, len(hist)), cmap="Greys",
                       s=14, edgecolor=cmap(j / (len(layers) + 1)), label=label)
        ax.set_xlabel("nHSIC(X, Z)")
        ax.set_ylabel("nHSIC(Y, Z)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, own)


def plot_weight_histogram(weight: torch.Tensor, mask: torch.Tensor, title: str = "", bins: int = 60, ax=None):
    """Histogram of a dense layer's weights split into kept (mask True) and pruned ones."""
    w = weight.detach().cpu().flatten().numpy()
    m = mask.detach().cpu().flatten().numpy().astype(bool)
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (5, 3.2))
    edges = np.linspace(w.min(), w.max(), bins + 1)
    ax.hist(w[~m], bins=edges, color="tab:red", alpha=0.6, label=f"pruned ({(~m).sum()})")
    ax.hist(w[m], bins=edges, color="tab:blue", alpha=0.6, label=f"kept ({m.sum()})")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _finish(fig, own)


def plot_accuracy_bars(rows: pd.DataFrame, labels: Sequence[str], metrics: Sequence[str] = ("natural", "fgsm", "pgd"),
                       colors: Sequence[str] | None = None, ax=None):
    """Grouped bars: one group per metric, one bar per row of `rows` (e.g. the teacher and a pruned model)."""
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (5, 3.6))
    width = 0.8 / max(len(rows), 1)
    for i, (label, (_, row)) in enumerate(zip(labels, rows.iterrows())):
        xs = [m + (i - (len(rows) - 1) / 2) * width for m in range(len(metrics))]
        ax.bar(xs, [row[m] for m in metrics], width=width, label=label,
               color=None if colors is None else colors[i])
    ax.set_xticks(list(range(len(metrics))), list(metrics))
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    return _finish(fig, own)


def plot_adversarial_grid(x: torch.Tensor, x_adv: torch.Tensor, pred: torch.Tensor, pred_adv: torch.Tensor,
                          y: torch.Tensor, n: int = 8, ax=None):
    """Top row natural images, bottom row adversarial ones, titles = predictions (red when wrong).

    `ax`: a 2 x n array of Axes to draw into."""
    n = min(n, len(x))
    if ax is None:
        fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    else:
        axes = np.asarray(ax).reshape(2, -1)
        if axes.shape[1] != n:
            raise ValueError(f"this plot draws 2 x {n} panels; got {axes.shape} Axes in ax=")
        fig = axes[0][0].figure
    for i in range(n):
        for row, (imgs, preds) in enumerate([(x, pred), (x_adv, pred_adv)]):
            ax = axes[row][i]
            img = imgs[i].detach().cpu()
            ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_title(str(int(preds[i])), color="green" if preds[i] == y[i] else "red", fontsize=10)
            ax.axis("off")
    axes[0][0].text(-0.3, 0.5, "natural", transform=axes[0][0].transAxes, rotation=90, va="center", ha="right")
    axes[1][0].text(-0.3, 0.5, "adversarial", transform=axes[1][0].transAxes, rotation=90, va="center", ha="right")
    return _finish(fig, ax is None)
