"""Plots of the kit's result tables (matplotlib; every function returns the Figure, nothing is shown).

Every function takes `ax=` (an Axes, or a sequence of Axes for the multi-panel plots) to draw into a figure
of the caller's; without it, it makes its own figure. The widgets compose these functions.

- `plot_figure1`: robust (and natural) accuracy vs pruning rate per method, teacher as a reference line
  (the paper's Fig. 1(b)).
- `plot_figure3`: robust accuracy vs training time, one curve per method over its mix ratios (Fig. 3).
- `plot_history`: validation accuracy over epochs of one run.
- `plot_finetune_drift`: validation accuracy over fine-tuning epochs after one-shot pruning, per method and lr.
- `plot_information_plane`: nHSIC(X, Z_j) vs nHSIC(Y, Z_j) per layer over training.
- `plot_weight_histogram`: kept vs pruned weights of a layer; `plot_accuracy_bars`: accuracies side by side.
- `plot_adversarial_grid`: natural vs adversarial images with predictions.
- `plot_design_space`: robust accuracy vs real model size or latency over the pruning design space.
- `plot_sweep`: a metric against one grid field of a sweep, one line per value of another.
"""
from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from pwoa_lab.pruning.masks import rate_label
from pwoa_lab.training.registry import method_order, method_spec

TEACHER_STYLE = dict(color="black", label="dense robust teacher")


class _MethodStyles(Mapping):
    """{method: matplotlib style} for the teacher and every registered method (read from the registry)."""

    def __getitem__(self, method: str) -> dict:
        if method == "teacher":
            return dict(TEACHER_STYLE)
        try:
            return method_spec(method).style()
        except ValueError:
            raise KeyError(method) from None

    def __iter__(self):
        return iter(method_order())

    def __len__(self) -> int:
        return len(method_order())


METHOD_STYLE = _MethodStyles()
METRIC_LABEL = {"natural": "natural accuracy (%)", "fgsm": "FGSM accuracy (%)", "pgd": "PGD accuracy (%)",
                "cw": "CW accuracy (%)", "aa": "PGD + AutoAttack, worst (%)"}


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


def plot_figure1(df: pd.DataFrame, metrics: Sequence[str] = ("natural", "pgd", "aa"), title: str | None = None,
                 ax=None, summary: pd.DataFrame | None = None):
    """Accuracy vs pruning rate (log2 axis), one panel per metric, the teacher as a dashed line.

    `df`: a Figure-1 table with one row per (method, rate, seed). With `summary` (`figures.seed_summary(df)`, whose
    `m_low` / `m_high` columns hold 95% intervals over seeds and test images) each method's mean carries its
    interval as whiskers and the teacher its interval as a band; without it, +-1 standard deviation over seeds
    (seaborn). The x labels give each rate with the network's real sparsity beside it."""
    import seaborn as sns
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    fig, axes = _axes(ax, len(metrics), (4.2 * len(metrics), 3.8))
    pruned = df[df.method != "teacher"]
    teacher = df[df.method == "teacher"]
    rates = sorted(pruned.rate.unique())
    labels = [rate_label(r, float(pruned.loc[pruned.rate == r, "sparsity"].mean())).replace(" (", "\n(")
              for r in rates]
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
                             capsize=3, label=style["label"], ms=5)
            else:
                sns.lineplot(data=part, x="rate", y=metric, errorbar="sd", err_style="bars", color=style.get("color"),
                             marker=style.get("marker"), label=style["label"], ax=ax_, legend=False)
        if len(teacher):
            ax_.axhline(float(teacher[metric].iloc[0]), ls="--", **_style("teacher"))
            t = summary[summary.method == "teacher"] if has_iv else None
            if t is not None and len(t) and t[f"{metric}_low"].notna().any():
                ax_.axhspan(float(t[f"{metric}_low"].iloc[0]), float(t[f"{metric}_high"].iloc[0]),
                            color=_style("teacher").get("color", "black"), alpha=0.08, lw=0)
        ax_.set_xscale("log", base=2)
        ax_.set_xticks(rates, labels, fontsize=7)
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
        alpha = 0.35 + 0.65 * float(r) if method != "pwoa" or r > 0 else 1.0
        lw = 3 if method == "pwoa" and r == 0 else 1.3
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
    teacher = df[df.method == "teacher"]
    runs = df[df.method != "teacher"]
    top = runs.lr.max()
    for ax_, metric in zip(axes, ("val_natural", "val_pgd")):
        for (method, lr), part in runs.groupby(["method", "lr"], sort=False):
            style = _style(method)
            style["label"] = f"{style['label']}, lr {lr:g}"
            ax_.plot(part.epoch, part[metric], ls="-" if lr == top else ":", **style)
        if len(teacher):
            ax_.axhline(float(teacher[metric].iloc[0]), ls="--", **_style("teacher"))
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
    control = curve[curve.method == "oneshot"]
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


DESIGN_X_LABEL = {"ship_bytes": "file to ship (MB)", "dense_bytes": "dense file (MB)", "sparse_bytes": "sparse file (MB)",
                  "params": "parameters", "nonzero": "non-zero parameters", "latency_ms_1": "CPU latency, batch 1 (ms)",
                  "latency_ms_128": "CPU latency, batch 128 (ms)"}
SCHEDULE_LINE = {"admm": "-", "oneshot": ":", "iterative": "--"}
DESIGN_MARKER = {("weight", "magnitude"): "o", ("weight", "gradient"): "^", ("structured", "magnitude"): "s",
                 ("structured", "gradient"): "D"}


def plot_design_space(df: pd.DataFrame, x: str = "ship_bytes", metric: str = "pgd", title: str | None = None,
                      ax=None):
    """Robust accuracy against real model size or latency (`design_space.design_space` rows).

    One line per (structure, importance, schedule, loss) through its rates, each point the mean over seeds with
    +-1 std error bars; colour: the loss, line style: the schedule (solid admm, dotted one-shot, dashed
    iterative), marker: structure and importance (circle / triangle weight magnitude / gradient, square /
    diamond structured). The dense teacher is the black star and the dashed line. Bytes are drawn in MB; the
    x axis is logarithmic."""
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (7.5, 4.6))
    scale = 1e-6 if x.endswith("bytes") else 1.0
    pruned, teacher = df[df.method != "teacher"], df[df.method == "teacher"]
    keys = ["structure", "importance", "schedule", "method"]
    for (structure, importance, schedule, method), part in pruned.groupby(keys, sort=False):
        g = part.groupby("rate")
        xs, ys, err = g[x].mean() * scale, g[metric].mean(), g[metric].std().fillna(0)
        ax.errorbar(xs, ys, yerr=err, color=_style(method).get("color"), ls=SCHEDULE_LINE.get(schedule, "-"),
                    marker=DESIGN_MARKER.get((structure, importance), "o"), ms=5, capsize=2, lw=1.2,
                    label=f"{method}, {structure}, {importance}, {schedule}")
        for rate, xv, yv in zip(xs.index, xs, ys):
            ax.annotate(f"{rate:g}x", (xv, yv), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if len(teacher):
        tx, ty = float(teacher[x].iloc[0]) * scale, float(teacher[metric].iloc[0])
        ax.plot([tx], [ty], "*", color="black", ms=12, label="dense teacher")
        ax.axhline(ty, ls="--", color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(DESIGN_X_LABEL.get(x, x))
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.set_ylim(-2, min(102, float(df[metric].max()) + 8))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title)
    return _finish(fig, own)


def plot_sweep(runs: pd.DataFrame, x: str, metric: str = "pgd", hue: str | None = None, title: str | None = None,
               ax=None):
    """`metric` against the grid field `x` of a sweep's per-run table (`sweep.SweepResult.runs`), one line per
    value of `hue` (and per method, when the table holds several and `hue` is another field): the mean over seeds
    with +-1 standard deviation bars. A numeric `x` spanning a factor of 20 or more (learning rates, lambdas) is
    drawn on a symmetric log axis (0 stays visible); a text `x` (method, scope) as categories."""
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (6.4, 4.2))
    for name in [x, metric] + ([hue] if hue else []):
        if name not in runs.columns:
            raise ValueError(f"no column {name!r} in the sweep's table; it has: {', '.join(runs.columns)}")
    keys = ([hue] if hue else []) + (["method"] if hue != "method" and x != "method" and runs.method.nunique() > 1
                                     else [])
    numeric = pd.api.types.is_numeric_dtype(runs[x])
    categories = list(dict.fromkeys(runs[x].astype(str))) if not numeric else None
    colors = {v: f"C{i}" for i, v in enumerate(sorted(runs[hue].dropna().unique(), key=str))} if hue else {}
    markers = ["o", "s", "D", "^", "v", "x"]
    for n, (group, part) in enumerate(runs.groupby(keys, sort=True, dropna=False) if keys else [((), runs)]):
        group = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        g = part.groupby(x if numeric else part[x].astype(str), sort=numeric)[metric]
        mean, std = g.mean(), g.std().fillna(0)
        xs = mean.index if numeric else [categories.index(v) for v in mean.index]
        method_style = _style(group["method"]) if "method" in group else {}
        color = colors.get(group.get(hue)) if hue and hue != "method" else method_style.get("color")
        parts = [method_style.get("label", "")] if "method" in group else []
        if hue and hue != "method":
            parts.append(f"{hue} = {group[hue]}")
        ax.errorbar(xs, mean.values, yerr=std.values, color=color, capsize=3, lw=1.4,
                    marker=method_style.get("marker", markers[n % len(markers)]),
                    ls="--" if group.get("method") == "naive" else "-", label=", ".join(p for p in parts if p))
    if numeric:
        positive = runs[x][runs[x] > 0]
        if len(positive) and positive.max() / positive.min() >= 20:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
    else:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x)
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return _finish(fig, own)


def _spread(part: pd.DataFrame, column: str):
    """Whiskers of a column: its 95% interval where the table has one (`_low` / `_high`), else +-1 sd."""
    if f"{column}_low" in part and part[f"{column}_low"].notna().any():
        return [(part[column] - part[f"{column}_low"]).clip(lower=0).fillna(0),
                (part[f"{column}_high"] - part[column]).clip(lower=0).fillna(0)]
    return part[f"{column}_std"].fillna(0)


def plot_frontier(points: pd.DataFrame, rates: Sequence[float] | None = None, title: str | None = None, ax=None):
    """Natural (x) against robust (y) accuracy, one panel per rate: every budget of a method as a point with
    whiskers both ways (the 95% interval over seeds and test images where `points` has `_low` / `_high` columns,
    else +-1 sd over seeds), its front (`on_front`) as a line, the one-shot control and the dense teacher
    as reference markers.

    `points`: `frontier(...).points` (columns rate, method, kind, natural, natural_std, robust, robust_std,
    on_front, lr_factor, epoch_factor, robust_metric)."""
    body = points[points.kind != "teacher"]
    rates = sorted(body.rate.unique()) if rates is None else list(rates)
    fig, axes = _axes(ax, len(rates), (max(6.0, 4.4 * len(rates)), 4.2))
    teacher = points[points.kind == "teacher"]
    metric = str(points.robust_metric.iloc[0]) if "robust_metric" in points and len(points) else "robust"
    for ax_, rate in zip(axes, rates):
        for method, part in body[body.rate == rate].groupby("method", sort=False):
            style = _style(method)
            ax_.errorbar(part.natural, part.robust, xerr=_spread(part, "natural"), yerr=_spread(part, "robust"),
                         fmt=style.get("marker", "o"), color=style.get("color"), ms=5, capsize=2, alpha=0.8,
                         label=style["label"] if part.kind.iloc[0] == "method" else style["label"] + " (control)")
            if part.kind.iloc[0] == "method":  # which budget each point is: lr factor (and epochs when not 1)
                for row in part.itertuples():
                    text = f"{row.lr_factor:.2g}" + (f"/{row.epoch_factor:.2g}" if row.epoch_factor != 1 else "")
                    ax_.annotate(text, (row.natural, row.robust), textcoords="offset points", xytext=(4, 3),
                                 fontsize=6, color=style.get("color"))
            front = part[part.on_front].sort_values("natural")
            if part.kind.iloc[0] == "method" and len(front) > 1:
                ax_.plot(front.natural, front.robust, "-", color=style.get("color"), lw=1.2)
        if len(teacher):
            ax_.plot(teacher.natural, teacher.robust, "*", ms=12, color="black", label=_style("teacher")["label"])
        ax_.set_title(f"{rate:g}x")
        ax_.set_xlabel("natural accuracy (%)")
        ax_.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax_.grid(alpha=0.3)
    has_iv = "robust_low" in points and points.robust_low.notna().any()
    axes[0].legend(fontsize=7, loc="best", title_fontsize=6,
                   title="whiskers: 95% interval over seeds and test images" if has_iv else "whiskers: sd over seeds")
    return _finish(fig, ax is None, title or "natural vs robust accuracy over the fine-tuning budget\n(points "
                   "labelled by their learning-rate factor[/epoch factor]; a method's front is its line)")


def plot_intervals(table: pd.DataFrame, label: str = "label", value: str = "estimate", low: str = "low",
                   high: str = "high", reference: float | None = 0.0, title: str | None = None, ax=None):
    """Estimates with their 95% intervals as horizontal whiskers, one row per line of `table` (columns `label`,
    `value`, `low`, `high`, in accuracy points); `reference` (e.g. 0 for a difference, or a verdict's threshold) as
    a dotted vertical line. Whether an interval crosses the line is what decides a verdict."""
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (6.5, 0.5 + 0.45 * len(table)))
    y = list(range(len(table)))[::-1]
    ax.errorbar(table[value], y, xerr=[(table[value] - table[low]).clip(lower=0),
                                       (table[high] - table[value]).clip(lower=0)],
                fmt="o", color="black", capsize=4)
    ax.set_yticks(y, table[label].astype(str).tolist(), fontsize=8)
    if reference is not None:
        ax.axvline(reference, ls=":", color="grey")
    ax.set_xlabel("accuracy points (%): estimate and 95% interval")
    ax.grid(alpha=0.3, axis="x")
    return _finish(fig, own, title)
