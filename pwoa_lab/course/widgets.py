"""ipywidgets controls for the notebooks. Each widget wraps a plain `*_view` function that returns data and
a Figure; notebooks call the view once in a plain cell (widget callbacks swallow exceptions).

- `prune_rate_view` / `prune_rate_widget`: prune rate + method -> accuracies and kept-vs-pruned weights.
- `eps_view` / `eps_widget`: eps -> adversarial images and accuracy of several models.
- `lambda_view` / `lambda_widget`: HBaR weights lambda_x, lambda_y -> accuracies and the information plane.
- `mix_ratio_view` / `mix_ratio_widget`: mix ratio + methods -> the Figure 3 curves up to that ratio.
- `design_space_view` / `design_space_widget`: x axis, metric and the design axes -> accuracy vs size or latency.

Settings computed before come from the on-disk cache at once; new ones compute (progress bar) and are cached.
"""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.attacks import accuracy, fgsm, kept_rng, pgd_linf, pgd_step_size, robust_accuracy
from pwoa_lab.core.data import TensorData, dataset_info
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.course.plots import (
    METHOD_STYLE,
    plot_accuracy_bars,
    plot_adversarial_grid,
    plot_figure3,
    plot_information_plane,
    plot_weight_histogram,
)
from pwoa_lab.experiments.runs import load_cached_model, prune_row, teacher_row
from pwoa_lab.training.presets import eval_settings, preset_config
from pwoa_lab.training.registry import TEACHER, method_with_role


def _largest_layer(model: nn.Module) -> str:
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    return max(weights, key=lambda n: weights[n].numel())


def prune_rate_view(teacher: nn.Module, dataset: str = defaults.DATASET, rate: float = 4, method: str | None = None,
                    preset: str = defaults.PRESET, settings: EvalSettings | None = None, cache_dir=None, root=None,
                    progress: bool = True) -> tuple[pd.DataFrame, plt.Figure]:
    """Prune `teacher` at `rate` with `method` (default: naive pruning, the baseline; cached) -> (table teacher vs
    pruned, figure).

    The figure shows natural / FGSM / PGD accuracy of both, and the histogram of the teacher's largest
    layer split into the weights the pruned model kept and those it removed.
    """
    settings = settings or eval_settings(dataset, preset)
    config = preset_config(dataset, preset, method=method or method_with_role("baseline"), rate=rate)
    row, _ = prune_row(teacher, config, settings, cache_dir, root=root, progress=progress)
    t_row = teacher_row(teacher, dataset, config.eps, settings, cache_dir, root=root)
    table = pd.DataFrame([t_row, row])[["method", "rate", "natural", "fgsm", "pgd", "aa", "sparsity"]]
    pruned = load_cached_model(row["key"], teacher.cpu(), cache_dir)
    layer = _largest_layer(teacher)
    w_teacher = dict(teacher.named_parameters())[layer].detach().cpu()
    kept = dict(pruned.named_parameters())[layer].detach() != 0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    plot_accuracy_bars(table, ["dense teacher", f"{method} {rate:g}x"],
                       colors=["black", METHOD_STYLE.get(method, {}).get("color", "gray")], ax=ax1)
    plot_weight_histogram(w_teacher, kept, title=f"teacher weight value ({layer})", ax=ax2)
    fig.suptitle(f"{dataset}: {method} at {rate:g}x")
    fig.tight_layout()
    return table, fig


def eps_view(models: dict[str, nn.Module], data: TensorData, eps: float, n: int = 200, attack: str = "pgd",
             show: int = 8) -> tuple[pd.DataFrame, plt.Figure]:
    """Accuracy (%) of each model under FGSM or PGD at `eps` on the first `n` images (PGD: `robust_accuracy` with the
    dataset's evaluation step count and step `pgd_step_size(eps, steps)`), and the natural / adversarial image grid
    of the first model."""
    x, y = data.x[:n], data.y[:n]
    info = dataset_info(data.name) if data.name else None
    steps = info.pgd_steps if info else 20
    rows, grid = [], None
    for name, model in models.items():
        if attack == "fgsm":
            x_adv = fgsm(model, x, y, eps)
            adversarial = 100 * accuracy(model, x_adv, y)
        else:
            if grid is None:  # the first model's examples for the grid: the very PGD run scored next (same start)
                with kept_rng():
                    x_adv = pgd_linf(model, x, y, eps, alpha=pgd_step_size(eps, steps), steps=steps)
            adversarial = robust_accuracy(model, x, y, eps, steps)
        rows.append({"model": name, "eps": eps, "natural": 100 * accuracy(model, x, y), attack: adversarial})
        if grid is None:
            with torch.no_grad():
                model.eval()
                grid = (x_adv, model(x).argmax(1), model(x_adv).argmax(1), name)
    x_adv, pred, pred_adv, name = grid
    fig = plot_adversarial_grid(x, x_adv, pred, pred_adv, y, n=show)
    fig.suptitle(f"{name}: natural (top) vs {attack.upper()} eps={eps:.3f} (bottom); red = wrong", fontsize=9)
    return pd.DataFrame(rows), fig


def lambda_view(teacher: nn.Module, dataset: str = defaults.DATASET, lambda_x: float = 2e-4, lambda_y: float = 5e-5,
                rate: float = 8, preset: str = defaults.PRESET, cache_dir=None, root=None,
                settings: EvalSettings | None = None, progress: bool = True) -> tuple[pd.DataFrame, plt.Figure]:
    """PwoA with the given HBaR weights (cached) vs KD alone (lambda = 0): accuracies and the
    information plane (nHSIC(X, Z_j) vs nHSIC(Y, Z_j) over training)."""
    settings = settings or eval_settings(dataset, preset)
    rows, histories = [], {}
    runs = [("L_D only", method_with_role("distillation"), 0.0, 0.0),
            (f"PwoA lx={lambda_x:g} ly={lambda_y:g}", method_with_role("proposed"), lambda_x, lambda_y)]
    for name, method, lx, ly in runs:
        config = preset_config(dataset, preset, method=method, rate=rate, lambda_x=lx, lambda_y=ly)
        row, hist = prune_row(teacher, config, settings, cache_dir, root=root, progress=progress)
        rows.append({"run": name, **{k: row[k] for k in ("natural", "fgsm", "pgd", "aa")}})
        histories[name] = hist.dropna(subset=["val_pgd"])
    names = getattr(teacher, "hidden_names", None)
    return pd.DataFrame(rows), plot_information_plane(histories, names)


def mix_ratio_view(curves: pd.DataFrame, summary: pd.DataFrame, mix_ratio: float = 1.0,
                   methods: Sequence[str] = defaults.FIGURE3_METHODS) -> tuple[pd.DataFrame, plt.Figure]:
    """Figure 3 restricted to `methods` and mix ratios <= `mix_ratio` (PwoA at r = 0 always shown)."""
    keep = curves.method.isin(methods) & (curves.mix_ratio <= mix_ratio + 1e-9)
    proposed = method_with_role("proposed")  # its r = 0 run is the reference of the time ratio
    keep |= (curves.method == proposed) & (curves.mix_ratio == 0)
    sel = summary[summary.method.isin(methods) & (summary.mix_ratio <= mix_ratio + 1e-9)
                  | ((summary.method == proposed) & (summary.mix_ratio == 0))]
    target = float(summary.target_val_pgd.iloc[0]) if "target_val_pgd" in summary else None
    fig = plot_figure3(curves[keep].dropna(subset=["val_pgd"]), target=target,
                       title=f"robust accuracy vs training time (r <= {mix_ratio:g})")
    return sel.reset_index(drop=True), fig


# ----------------------------------------------------------------------------------------------- widgets

def _interactive(view, **controls):
    """ipywidgets.interactive around a view that returns (table, figure): shows both."""
    import ipywidgets as widgets
    from IPython.display import Image, display

    def show(**kwargs):
        # The figure must never wait in pyplot's registry: ipykernel 7 fires post_execute (the inline backend's
        # flush_figures, which shows *and closes* every open figure) for each comm message, concurrently on a
        # subshell under that message's parent, so the plot went to no output and plt.show found nothing
        # (ipykernel#1564; seen in the browser test as a table without its plot). ioff: not queued for that
        # flush; closed at once; shown here as a PNG, whatever the backend.
        with plt.ioff():
            table, fig = view(**kwargs)
        plt.close(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        display(table.round(2))
        display(Image(data=buf.getvalue(), format="png"))

    return widgets.interactive(show, {"manual": False}, **controls)


def prune_rate_widget(teacher: nn.Module, dataset: str = defaults.DATASET, preset: str = defaults.PRESET,
                      rates: Sequence[float] = (2, 4, 8, 16), methods: Sequence[str] = defaults.LOSS_METHODS,
                      cache_dir=None, root=None):
    """A prune-rate slider and a method dropdown wired to `prune_rate_view`."""
    import ipywidgets as widgets
    return _interactive(lambda rate, method: prune_rate_view(teacher, dataset, rate, method, preset,
                                                             cache_dir=cache_dir, root=root, progress=True),
                        rate=widgets.SelectionSlider(options=list(rates), value=rates[1] if len(rates) > 1
                                                     else rates[0], description="prune rate",
                                                     continuous_update=False),
                        method=widgets.Dropdown(options=list(methods), value=methods[0], description="method"))


def eps_widget(models: dict[str, nn.Module], data: TensorData, eps_max: float = 0.3, n: int = 200):
    """An eps slider wired to `eps_view`."""
    import ipywidgets as widgets
    return _interactive(lambda eps, attack: eps_view(models, data, eps, n=n, attack=attack),
                        eps=widgets.FloatSlider(value=eps_max / 2, min=0.0, max=eps_max, step=eps_max / 20,
                                                description="eps", continuous_update=False, readout_format=".3f"),
                        attack=widgets.Dropdown(options=["pgd", "fgsm"], value="pgd", description="attack"))


def lambda_widget(teacher: nn.Module, dataset: str = defaults.DATASET, rate: float = 8, preset: str = defaults.PRESET,
                  cache_dir=None, root=None):
    """lambda_x and lambda_y sliders (log scale) wired to `lambda_view`."""
    import ipywidgets as widgets
    return _interactive(lambda lambda_x, lambda_y: lambda_view(teacher, dataset, lambda_x, lambda_y, rate, preset,
                                                               cache_dir, root),
                        lambda_x=widgets.SelectionSlider(options=[0.0, 2e-5, 2e-4, 2e-3, 2e-2], value=2e-4,
                                                         description="lambda_x", continuous_update=False),
                        lambda_y=widgets.SelectionSlider(options=[0.0, 5e-6, 5e-5, 5e-4, 5e-3], value=5e-5,
                                                         description="lambda_y", continuous_update=False))


def mix_ratio_widget(curves: pd.DataFrame, summary: pd.DataFrame):
    """A mix-ratio slider and method checkboxes wired to `mix_ratio_view`."""
    import ipywidgets as widgets
    ratios = sorted(float(r) for r in curves.mix_ratio.unique())
    boxes = {m: widgets.Checkbox(value=True, description=m) for m in defaults.FIGURE3_METHODS}

    def view(mix_ratio, **checked):
        return mix_ratio_view(curves, summary, mix_ratio, [m for m, on in checked.items() if on])

    return _interactive(view, mix_ratio=widgets.SelectionSlider(options=ratios, value=ratios[-1],
                                                                description="mix ratio",
                                                                continuous_update=False), **boxes)


# ----------------------------------------------------------------------------------------------- design space

def design_space_view(df: pd.DataFrame, x: str = "ship_bytes", metric: str = "pgd",
                      structures: Sequence[str] | None = None, importances: Sequence[str] | None = None,
                      schedules: Sequence[str] | None = None, losses: Sequence[str] | None = None
                      ) -> tuple[pd.DataFrame, plt.Figure]:
    """The design-space rows (``design_space.design_space``) restricted to the chosen values of each axis (None:
    all) -> (mean ± std table over seeds, ``plots.plot_design_space`` figure). Reads `df` only: no training."""
    from pwoa_lab.course.plots import plot_design_space
    from pwoa_lab.experiments.design_space import mean_std_table
    keep = df.method == TEACHER
    chosen = (df.method != TEACHER)
    for col, values in (("structure", structures), ("importance", importances), ("schedule", schedules),
                        ("method", losses)):
        if values is not None:
            chosen &= df[col].isin(list(values))
    sel = df[keep | chosen]
    fig = plot_design_space(sel, x=x, metric=metric,
                            title=f"{metric.upper()} accuracy vs {x.replace('_', ' ')}")
    table = mean_std_table(sel[sel.method != TEACHER], ("natural", "pgd", "aa"))
    return table, fig


def design_space_widget(df: pd.DataFrame):
    """Axis choices (x: file size or latency; metric; one value or "all" of each design axis) wired to
    `design_space_view`: the plot redraws from `df` (the cached runs), nothing trains."""
    import ipywidgets as widgets
    pruned = df[df.method != TEACHER]

    def pick(col: str, description: str):
        # a Dropdown: SelectMultiple inside ipywidgets.interactive never lets a headless kernel go idle (nbclient)
        return widgets.Dropdown(options=["all"] + list(dict.fromkeys(pruned[col])), value="all",
                                description=description)

    def only(value: str) -> tuple[str, ...] | None:
        return None if value == "all" else (value,)

    xs = [c for c in ("ship_bytes", "latency_ms_128", "latency_ms_1", "params") if c in df]
    metrics = [m for m in ("pgd", "aa", "natural", "fgsm") if m in df and df[m].notna().any()]

    def view(x, metric, structure, importance, schedule, loss):
        return design_space_view(df, x, metric, only(structure), only(importance), only(schedule), only(loss))

    return _interactive(view,
                        x=widgets.Dropdown(options=xs, value=xs[0], description="x axis"),
                        metric=widgets.Dropdown(options=metrics, value=metrics[0], description="metric"),
                        structure=pick("structure", "structure"), importance=pick("importance", "importance"),
                        schedule=pick("schedule", "schedule"), loss=pick("method", "loss"))
