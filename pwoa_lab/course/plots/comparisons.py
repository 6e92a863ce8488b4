"""Plots that compare settings: the pruning design space, a sweep's grid, the natural-vs-robust frontier over the
fine-tuning budget, and estimates with their 95% intervals."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from pwoa_lab.course.plots.paper import METRIC_LABEL, _axes, _finish, _style
from pwoa_lab.pruning.schedules import SCHEDULES
from pwoa_lab.training.registry import TEACHER, method_with_role


DESIGN_X_LABEL = {"ship_bytes": "file to ship (MB)", "dense_bytes": "dense file (MB)", "sparse_bytes": "sparse file (MB)",
                  "params": "parameters", "nonzero": "non-zero parameters", "latency_ms_1": "CPU latency, batch 1 (ms)",
                  "latency_ms_128": "CPU latency, batch 128 (ms)"}
SCHEDULE_LINE = dict(zip(SCHEDULES, ("-", ":", "--")))  # admm solid, one-shot dotted, iterative dashed
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
    pruned, teacher = df[df.method != TEACHER], df[df.method == TEACHER]
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
                    ls="--" if group.get("method") == method_with_role("baseline") else "-", label=", ".join(p for p in parts if p))
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
    else +-1 sd over seeds), the points of its front (`on_front`) filled and joined by a line, the others hollow,
    the one-shot control and the dense teacher as reference markers.

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
            label = style["label"] if part.kind.iloc[0] == "method" else style["label"] + " (control)"
            # filled: on the method's front; hollow: another of its points is at least as good on both axes
            for on_front, shown in ((True, part[part.on_front]), (False, part[~part.on_front])):
                if len(shown):
                    ax_.errorbar(shown.natural, shown.robust, xerr=_spread(shown, "natural"),
                                 yerr=_spread(shown, "robust"), fmt=style.get("marker", "o"), color=style.get("color"),
                                 mfc=style.get("color") if on_front or part.kind.iloc[0] != "method" else "white",
                                 ms=5, capsize=2, alpha=0.8, label=label)
                    label = None
            if part.kind.iloc[0] == "method":  # which budget each point is: lr factor (and epochs when not 1)
                for row in part.itertuples():
                    text = f"{row.lr_factor:.2g}" + (f"/{row.epoch_factor:.2g}" if row.epoch_factor != 1 else "")
                    ax_.annotate(text, (row.natural, row.robust), textcoords="offset points", xytext=(4, 3),
                                 fontsize=6, color=style.get("color"))
            front = part[part.on_front].sort_values("natural")
            if part.kind.iloc[0] == "method" and len(front) > 1:
                ax_.plot(front.natural, front.robust, "-", color=style.get("color"), lw=1.2)
        if len(teacher):
            ax_.plot(teacher.natural, teacher.robust, "*", ms=12, color="black", label=_style(TEACHER)["label"])
        ax_.set_title(f"{rate:g}x")
        ax_.set_xlabel("natural accuracy (%)")
        ax_.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax_.grid(alpha=0.3)
    has_iv = "robust_low" in points and points.robust_low.notna().any()
    axes[0].legend(fontsize=7, loc="lower left", title_fontsize=6,
                   title="whiskers: 95% interval over seeds and test images" if has_iv else "whiskers: sd over seeds")
    return _finish(fig, ax is None, title or "natural vs robust accuracy over the fine-tuning budget\n(labels: "
                   "learning-rate factor[/epoch factor]; filled: on the method's front)")


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
