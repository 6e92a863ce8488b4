"""Plots of the kit's result tables (matplotlib; every function returns the Figure, nothing is shown).

- `plot_figure1`: robust (and natural) accuracy vs pruning rate per method, teacher as a reference line
  (the paper's Fig. 1(b)).
- `plot_figure3`: robust accuracy vs training time, one curve per method over its mix ratios (Fig. 3).
- `plot_history`: validation accuracy over epochs of one run.
- `plot_finetune_drift`: validation accuracy over fine-tuning epochs after one-shot pruning, per method and lr.
- `plot_information_plane`: nHSIC(X, Z_j) vs nHSIC(Y, Z_j) per layer over training.
- `plot_weight_histogram`: kept vs pruned weights of a layer.
- `plot_adversarial_grid`: natural vs adversarial images with predictions.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

METHOD_STYLE = {
    "teacher": dict(color="black", label="dense robust teacher"),
    "naive": dict(color="tab:red", marker="o", label="naive (L_CE)"),
    "kd": dict(color="tab:orange", marker="s", label="L_D (distillation)"),
    "pwoa": dict(color="tab:blue", marker="D", label="PwoA (L_D + L_H)"),
    "advprune": dict(color="tab:green", marker="^", label="AdvPrune"),
    "hydra": dict(color="tab:purple", marker="v", label="HYDRA"),
}
METRIC_LABEL = {"natural": "natural accuracy (%)", "fgsm": "FGSM accuracy (%)", "pgd": "PGD accuracy (%)",
                "cw": "CW accuracy (%)", "aa": "AutoAttack accuracy (%)"}


def _style(method: str) -> dict:
    return dict(METHOD_STYLE.get(method, dict(label=method)))


def plot_figure1(df: pd.DataFrame, metrics: Sequence[str] = ("natural", "pgd", "aa"), title: str | None = None):
    """Accuracy vs pruning rate (log2 axis), one panel per metric, the teacher as a dashed line."""
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    pruned = df[df.method != "teacher"]
    teacher = df[df.method == "teacher"]
    rates = sorted(pruned.rate.unique())
    for ax, metric in zip(axes[0], metrics):
        for method, part in pruned.groupby("method", sort=False):
            part = part.sort_values("rate")
            ax.plot(part.rate, part[metric], **_style(method))
        if len(teacher):
            ax.axhline(float(teacher[metric].iloc[0]), ls="--", **_style("teacher"))
        ax.set_xscale("log", base=2)
        ax.set_xticks(rates, [f"{r:g}x" for r in rates])
        ax.set_xlabel("pruning rate")
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_figure3(curves: pd.DataFrame, metric: str = "val_pgd", target: float | None = None,
                 title: str | None = None):
    """Robust accuracy vs training time: one line per (method, mix ratio), colour by method, shade by r.

    `curves` has columns method, mix_ratio, train_seconds and `metric`; PwoA at r = 0 is drawn thick.
    `target` (e.g. PwoA's final PGD accuracy) is drawn as a dotted line.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (method, r), part in curves.groupby(["method", "mix_ratio"], sort=False):
        style = _style(method)
        alpha = 0.35 + 0.65 * float(r) if method != "pwoa" or r > 0 else 1.0
        lw = 3 if method == "pwoa" and r == 0 else 1.3
        label = f"{style['label']} r={r:g}"
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
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame, title: str | None = None):
    """Validation natural and PGD accuracy per epoch; the hard-prune point is marked."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history.epoch, history.val_natural, label="val natural")
    ax.plot(history.epoch, history.val_pgd, label="val PGD")
    retrain = history[history.phase == "retrain"]
    if len(retrain) and len(retrain) < len(history):
        ax.axvline(retrain.epoch.iloc[0] - 0.5, color="gray", ls="--", label="hard prune")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_finetune_drift(df: pd.DataFrame, title: str | None = None):
    """`experiments.finetune_drift` as two panels (validation natural, PGD) vs fine-tuning epoch: one line per
    (method, lr), solid for the largest lr; the dense teacher as a dashed line."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    teacher = df[df.method == "teacher"]
    runs = df[df.method != "teacher"]
    top = runs.lr.max()
    for ax, metric in zip(axes, ("val_natural", "val_pgd")):
        for (method, lr), part in runs.groupby(["method", "lr"], sort=False):
            style = _style(method)
            style["label"] = f"{style['label']}, lr {lr:g}"
            ax.plot(part.epoch, part[metric], ls="-" if lr == top else ":", **style)
        if len(teacher):
            ax.axhline(float(teacher[metric].iloc[0]), ls="--", **_style("teacher"))
        ax.set_xlabel("fine-tuning epoch (0: pruned, not fine-tuned)")
        ax.set_ylabel(METRIC_LABEL[metric.replace("val_", "")] + " [val]")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_information_plane(histories: dict[str, pd.DataFrame], layer_names: Sequence[str] | None = None):
    """nHSIC(X, Z_j) (x axis) vs nHSIC(Y, Z_j) (y axis) per layer over epochs, one panel per run."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4.6 * len(histories), 3.8), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items()):
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
    fig.tight_layout()
    return fig


def plot_weight_histogram(weight: torch.Tensor, mask: torch.Tensor, title: str = "", bins: int = 60):
    """Histogram of a dense layer's weights split into kept (mask True) and pruned ones."""
    w = weight.detach().cpu().flatten().numpy()
    m = mask.detach().cpu().flatten().numpy().astype(bool)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    edges = np.linspace(w.min(), w.max(), bins + 1)
    ax.hist(w[~m], bins=edges, color="tab:red", alpha=0.6, label=f"pruned ({(~m).sum()})")
    ax.hist(w[m], bins=edges, color="tab:blue", alpha=0.6, label=f"kept ({m.sum()})")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_adversarial_grid(x: torch.Tensor, x_adv: torch.Tensor, pred: torch.Tensor, pred_adv: torch.Tensor,
                          y: torch.Tensor, n: int = 8):
    """Top row natural images, bottom row adversarial ones, titles = predictions (red when wrong)."""
    n = min(n, len(x))
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        for row, (imgs, preds) in enumerate([(x, pred), (x_adv, pred_adv)]):
            ax = axes[row][i]
            img = imgs[i].detach().cpu()
            ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_title(str(int(preds[i])), color="green" if preds[i] == y[i] else "red", fontsize=10)
            ax.axis("off")
    axes[0][0].text(-0.3, 0.5, "natural", transform=axes[0][0].transAxes, rotation=90, va="center", ha="right")
    axes[1][0].text(-0.3, 0.5, "adversarial", transform=axes[1][0].transAxes, rotation=90, va="center", ha="right")
    fig.tight_layout()
    return fig
