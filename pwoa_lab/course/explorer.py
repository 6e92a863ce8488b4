"""The classroom explorer: `notebooks/explorer.ipynb` served as a web app with Voila (`make explorer`).

Pick the dataset, the methods, the pruning rates, the pruning scope and the seeds; the app shows Figure 1 with
95% intervals over the seeds and test images, the paper's claim per rate in words, the training curves, the
information plane and the frontier with its verdicts, all read from the result cache (`pwoa_lab.io.cache`), and
computes the runs that are missing (a progress bar counts them).

The logic lives here and is tested without a browser (tests/test_explorer.py):

- `Selection`: what the controls say; `default_selection(preset)`.
- `missing_runs(selection, preset)`: the (method, rate, seed) runs not in the cache yet.
- `compute_missing(selection, preset, on_run=..., on_epoch=..., max_runs=...)`: runs them, one at a time (each a
  `runs.prune_row`: the cache entry `figures.figure1` writes); more than `max_runs` are refused (`TooManyRuns`).
- `explore(selection, preset)`: -> `ExplorerView`: the Figure-1 table (one row per run, as `figures.figure1`),
  its `figures.seed_summary`, and the three figures; cached runs only unless `compute=True`.
- `ExplorerApp` / `explorer_app(preset)`: the ipywidgets app around `explore` that the notebook displays.

Served to a room (`course.serving`, `make explorer HOST=0.0.0.0`), the app computes only when its button is
pressed and one request may start at most PWOA_EXPLORER_MAX_RUNS runs.

With PWOA_SMOKE=1 the app uses the `smoke` preset (seconds a run) and computes its first view at start; with
the `quick` preset it starts from what the cache holds (after `make demo`: digits, oneshot / naive / pwoa at
2x, 4x, 8x, scope hidden, seeds 0, 1, 2) and computes missing runs only when asked.
"""
from __future__ import annotations

import base64
import io
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch.nn as nn
from matplotlib.ticker import MaxNLocator

from pwoa_lab import defaults
from pwoa_lab.course.plots import METHOD_STYLE, plot_figure1, plot_frontier, plot_information_plane
from pwoa_lab.course.serving import room_settings
from pwoa_lab.core.intervals import VERDICT_RULE, format_cell
from pwoa_lab.experiments.figures import FIG1_COLUMNS, check_seeds, claim_in_words, phenomenon, seed_summary
from pwoa_lab.experiments.frontier import FRONT_RULE, cached_frontier_result
from pwoa_lab.experiments.runs import cached_prune_row, prune_row, resolve_teacher, teacher_row
from pwoa_lab.pruning.masks import SCOPES
from pwoa_lab.training.presets import PRESETS, eval_settings, preset_config
from pwoa_lab.training.registry import method_names
from pwoa_lab.utils import check_rate, get_device

RATE_CHOICES = (2.0, 4.0, 8.0, 16.0, 32.0)
SEED_CHOICES = ((0,), (0, 1), (0, 1, 2), (0, 1, 2, 3, 4))
SCOPE_HELP = {"all": "every conv and linear layer", "hidden": "all but the first conv layer and the classifier",
              "convs": "conv layers only", "reference": "the reference code's layer rule"}
FIGURE_METRICS = ("natural", "pgd", "aa")
PROGRESS_STEPS = 100  # the progress bar's steps per run: it moves with every epoch, not only between runs


smoke_mode = defaults.smoke_mode


@dataclass(frozen=True)
class Selection:
    """What the explorer's controls say."""
    dataset: str = defaults.DATASET
    methods: tuple[str, ...] = ("oneshot", "naive", "pwoa")
    rates: tuple[float, ...] = (2.0, 4.0, 8.0)
    scope: str = "hidden"
    seeds: tuple[int, ...] = (0, 1, 2)

    def checked(self) -> "Selection":
        """The selection with rates as sorted floats, or a ValueError that says what is wrong."""
        if not self.methods:
            raise ValueError("pick at least one method")
        if not self.rates:
            raise ValueError("pick at least one pruning rate")
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(method_names())}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; choose from {', '.join(SCOPES)}")
        rates = tuple(sorted({check_rate(r) for r in self.rates}))
        seeds = tuple(check_seeds(list(self.seeds)))
        methods = tuple(m for m in method_names() if m in self.methods)
        return replace(self, rates=rates, seeds=seeds, methods=methods)

    def runs(self) -> list[tuple[str, float, int]]:
        """Every (method, rate, seed) of the selection, in Figure 1's order (seed, method, rate)."""
        return [(m, float(r), s) for s in self.seeds for m in self.methods for r in self.rates]


def default_selection(preset: str) -> Selection:
    """The first view: in smoke mode four runs of seconds each; otherwise `make demo`'s Figure 1."""
    if preset == "smoke":
        return Selection("digits", ("naive", "pwoa"), (4.0, 16.0), "hidden", (0,))
    return Selection()


def available_datasets(preset: str) -> list[str]:
    """Datasets with a shipped teacher and a schedule in `preset`."""
    from pwoa_lab.io.checkpoint import SHIPPED_TEACHERS
    return [d for d, path in SHIPPED_TEACHERS.items() if Path(path).is_file() and d in PRESETS[preset]]


def _config(sel: Selection, preset: str, method: str, rate: float, seed: int, device: str):
    # exactly as figures.figure1 builds its configs, so that both find the same cache entries
    return preset_config(sel.dataset, preset, method=method, rate=rate, seed=seed, device=device, scope=sel.scope)


class _Teachers:
    """The shipped teacher of each dataset, loaded once."""

    def __init__(self):
        self._models: dict[str, nn.Module] = {}

    def __call__(self, dataset: str) -> nn.Module:
        if dataset not in self._models:
            self._models[dataset] = resolve_teacher(dataset, None, get_device(None))
        return self._models[dataset]


_TEACHERS = _Teachers()


def _cached_runs(sel: Selection, preset: str, teacher: nn.Module, cache_dir=None
                 ) -> dict[tuple[str, float, int], tuple[dict[str, Any], pd.DataFrame] | None]:
    device = str(get_device(None))
    settings = eval_settings(sel.dataset, preset)
    return {(m, r, s): cached_prune_row(teacher, _config(sel, preset, m, r, s, device), settings, cache_dir)
            for m, r, s in sel.runs()}


def missing_runs(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None
                 ) -> list[tuple[str, float, int]]:
    """The (method, rate, seed) runs of `sel` that the cache does not hold yet."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else _TEACHERS(sel.dataset)
    return [run for run, hit in _cached_runs(sel, preset, teacher, cache_dir).items() if hit is None]


class TooManyRuns(ValueError):
    """A selection needs more new runs than one page may start at once (`max_runs`)."""


def refusal(n_missing: int, max_runs: int | None) -> str | None:
    """Why `n_missing` new runs are not started from one page, or None when they may be (`max_runs`: None or 0
    is no cap)."""
    if not max_runs or n_missing <= max_runs:
        return None
    return (f"this selection needs {n_missing} runs that are not computed yet, and one page may start at most "
            f"{max_runs} at once on this shared server: pick fewer rates, seeds or methods, or ask the instructor "
            f"to precompute them before class (`make demo`, or `pwoa-lab figure1` with these settings)")


def compute_missing(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None, root=None,
                    on_run: Callable[[int, int, tuple[str, float, int]], None] | None = None,
                    on_epoch: Callable[[int, int], None] | None = None, max_runs: int | None = None
                    ) -> list[tuple[str, float, int]]:
    """Run every missing run of `sel`, one `runs.prune_row` each (the cache entry `figures.figure1` writes, so
    either finds the other's runs). `on_run(i, n, (method, rate, seed))` is called before run i of n and once
    more with i == n at the end; `on_epoch(done, epochs)` after each training epoch of the current run. More
    than `max_runs` missing runs: `TooManyRuns`, and nothing runs. -> the runs computed."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else _TEACHERS(sel.dataset)
    todo = missing_runs(sel, preset, teacher, cache_dir)
    reason = refusal(len(todo), max_runs)
    if reason:
        raise TooManyRuns(reason)
    device = str(get_device(None))
    settings = eval_settings(sel.dataset, preset)
    for i, (method, rate, seed) in enumerate(todo):
        if on_run:
            on_run(i, len(todo), (method, rate, seed))
        config = _config(sel, preset, method, rate, seed, device).resolved()
        prune_row(teacher, config, settings, cache_dir, root=root, progress=False,
                  on_epoch=_epoch_counter(on_epoch, sum(p.epochs for p in config.phases())))
    if on_run and todo:
        on_run(len(todo), len(todo), todo[-1])
    return todo


def _epoch_counter(on_epoch: Callable[[int, int], None] | None, epochs: int) -> Callable[[dict], None] | None:
    """The training loop's `on_epoch(row)` as `on_epoch(epochs done, epochs of the run)`."""
    if on_epoch is None:
        return None
    done = [0]

    def step(_row: dict) -> None:
        done[0] += 1
        on_epoch(done[0], epochs)
    return step


@dataclass
class ExplorerView:
    """What the explorer shows for a selection."""
    selection: Selection
    preset: str
    table: pd.DataFrame              # one row per run (+ the teacher), columns as figures.figure1
    summary: pd.DataFrame            # figures.seed_summary(table): means, sds and 95% intervals
    histories: pd.DataFrame          # per run and epoch: method, rate, seed, epoch, phase, val_natural, val_pgd, ...
    missing: list[tuple[str, float, int]] = field(default_factory=list)
    computed: list[tuple[str, float, int]] = field(default_factory=list)
    figures: dict[str, plt.Figure] = field(default_factory=dict)  # "figure1", "curves", "plane", "frontier"
    max_runs: int | None = None      # the most missing runs one request may start (None: no cap)
    verdicts: list[str] = field(default_factory=list)           # the paper's claim per rate, in words
    frontier_verdicts: list[str] = field(default_factory=list)  # PwoA's front against naive's, per rate

    @property
    def refused(self) -> str | None:
        """Why the missing runs are not computed from this page (too many at once), or None."""
        return refusal(len(self.missing), self.max_runs)

    def message(self) -> str:
        n = len(self.selection.runs())
        shown = n - len(self.missing)
        parts = [f"{shown} of {n} runs shown ({len(self.computed)} computed now, {shown - len(self.computed)} read "
                 f"from the cache); preset {self.preset}"]
        if self.missing:
            parts.append(f"{len(self.missing)} not computed yet: " + ", ".join(_run_name(r) for r in self.missing[:6])
                         + (" ..." if len(self.missing) > 6 else ""))
        return "; ".join(parts)

    def png(self, name: str) -> bytes:
        return figure_png(self.figures[name])

    def close(self) -> None:
        for fig in self.figures.values():
            plt.close(fig)


def _run_name(run: tuple[str, float, int]) -> str:
    method, rate, seed = run
    return f"{method} {rate:g}x seed {seed}"


def explore(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None, root=None,
            compute: bool = True, on_run=None, on_epoch=None, max_runs: int | None = None) -> ExplorerView:
    """The explorer's view of `sel`: Figure 1 (means and 95% intervals), the claim per rate, training curves,
    information plane, the frontier and its verdicts.

    `compute`: run the missing runs first (`compute_missing`), unless there are more than `max_runs` (then the
    view's `refused` says why); otherwise show the cached ones only (the teacher row is evaluated, once, when not
    cached: seconds)."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else _TEACHERS(sel.dataset)
    hits = _cached_runs(sel, preset, teacher, cache_dir)
    missing = [r for r, hit in hits.items() if hit is None]
    computed = []
    if compute and missing and refusal(len(missing), max_runs) is None:
        computed = compute_missing(sel, preset, teacher, cache_dir, root, on_run, on_epoch)
        hits = _cached_runs(sel, preset, teacher, cache_dir)
    settings = eval_settings(sel.dataset, preset)
    eps = preset_config(sel.dataset, preset, scope=sel.scope).resolved().eps
    rows = [teacher_row(teacher, sel.dataset, eps, settings, cache_dir, True, root)]
    histories = []
    for (method, rate, seed), hit in hits.items():
        if hit is None:
            continue
        row, history = hit
        rows.append({**row, "seed": seed})
        if len(history):
            histories.append(history.assign(method=method, rate=rate, seed=seed))
    table = pd.DataFrame(rows)
    table = table[[c for c in FIG1_COLUMNS if c in table.columns]]
    hist = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(
        columns=["method", "rate", "seed", "epoch", "val_natural", "val_pgd"])
    view = ExplorerView(sel, preset, table, seed_summary(table, cache_dir=cache_dir), hist,
                        missing=[r for r, hit in hits.items() if hit is None], computed=computed, max_runs=max_runs,
                        verdicts=claim_lines(table, cache_dir))
    fr = cached_frontier_result(sel.dataset, sel.rates, sel.methods, sel.seeds, preset, teacher=teacher,
                                cache_dir=cache_dir, scope=sel.scope)
    if fr is not None:
        view.frontier_verdicts = [f"{r.rate:g}x: {r.verdict}. {r.text}" for r in fr.verdicts.itertuples()]
    with plt.ioff():  # never queued for the inline backend's flush (see widgets._interactive)
        view.figures = {"figure1": figure1_plot(view), "curves": plot_training_curves(hist, sel.rates),
                        "plane": plane_plot(view, getattr(teacher, "hidden_names", None)),
                        "frontier": frontier_plot(sel, preset, fr)}
    return view


def claim_lines(table: pd.DataFrame, cache_dir=None) -> list[str]:
    """The paper's claim per rate in words (`figures.claim_in_words`, on the robust metric the table has), where
    the table holds the teacher, naive pruning and PwoA; else nothing."""
    if not {"teacher", "naive", "pwoa"} <= set(table.method):
        return []
    metric = "aa" if "aa" in table and table.aa.notna().any() else "pgd"
    return claim_in_words(phenomenon(table, metric, cache_dir=cache_dir), metric)


# ----------------------------------------------------------------------------------------------- figures

def _empty(text: str, size=(6, 2.5)) -> plt.Figure:
    fig, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    ax.axis("off")
    return fig


def figure1_plot(view: ExplorerView) -> plt.Figure:
    """`plots.plot_figure1` of the view's table (whiskers: 95% intervals over the seeds and test images)."""
    sel = view.selection
    if (view.table.method != "teacher").sum() == 0:
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


def plane_plot(view: ExplorerView, layer_names=None) -> plt.Figure:
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
        methods = ",".join(m for m in sel.methods if m != "oneshot" and m != "hydra") or "naive,pwoa"
        return _empty("no frontier of this selection in the cache. Before class, run:\n"
                      f"pwoa-lab frontier --dataset {sel.dataset} --preset {preset} --scope {sel.scope} "
                      f"--rates {','.join(f'{r:g}' for r in sel.rates)}\n--methods {methods} "
                      f"--seeds {','.join(map(str, sel.seeds))}", size=(7, 2.5))
    return plot_frontier(fr.points)


def figure_png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=90)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- the app

def _png_output(png: bytes, text: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode(), "text/plain": text}}


def _table_output(summary: pd.DataFrame, verdicts: Sequence[str] = ()) -> dict:
    """The summary as a table, each metric 'mean [low, high]' (its 95% interval) where it has one, and the verdict
    lines below it with the rule that decides them."""
    metrics = [m for m in ("natural", "fgsm", "pgd", "aa") if m in summary and summary[m].notna().any()]
    table = summary[["method", "rate", "seeds"]].copy()
    table["sparsity %"] = (100 * summary["sparsity"]).round(1)
    for m in metrics:
        table[m] = [format_cell(r[m], r.get(f"{m}_low", float("nan")), r.get(f"{m}_high", float("nan")))
                    for r in summary.to_dict("records")]
    html = table.to_html(index=False, na_rep="–")
    text = table.to_string()
    if verdicts:
        html += (f"<p>The paper's claim per rate ({_html(VERDICT_RULE)}):</p><ul>"
                 + "".join(f"<li>{_html(v)}</li>" for v in verdicts) + "</ul>")
        text += "\n" + "\n".join(verdicts)
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": html, "text/plain": text}}


class ExplorerApp:
    """The ipywidgets app: controls, a status line with a progress bar, and four outputs (Figure 1, its table,
    the training curves, the information plane). Every change of a control redraws; missing runs are computed
    when "compute missing runs" is ticked (or its button pressed). `widget` is what the notebook displays.

    `auto_compute`: None -> on, unless the server is shared (`room_settings`); `max_runs`: the most missing runs
    one request may start (None -> PWOA_EXPLORER_MAX_RUNS; 0: no cap). While runs compute, the progress bar moves
    with every epoch and the status line counts the seconds (a clock thread). An invalid selection clears the
    outputs and disables the button: only the error shows.

    Outputs are set directly (`Output.outputs`), so the app works the same in Voila, JupyterLab and a test."""

    def __init__(self, preset: str | None = None, cache_dir=None, root=None, selection: Selection | None = None,
                 compute_on_start: bool | None = None, auto_compute: bool | None = None,
                 max_runs: int | None = None):
        import ipywidgets as w
        self.preset = preset or ("smoke" if smoke_mode() else "quick")
        self.cache_dir, self.root = cache_dir, root
        shared, room_max = room_settings()
        self.max_runs = (room_max if max_runs is None else max_runs) or None
        auto_compute = not shared if auto_compute is None else auto_compute
        sel = (selection or default_selection(self.preset)).checked()
        self.view: ExplorerView | None = None
        self.error: str | None = None
        self.updates = 0
        self._lock = threading.Lock()   # the compute loop and the clock thread both write the status
        self._clock: threading.Event | None = None
        self._at = (0, 0, None, 0, 0)   # (run i, of n, run, epochs done, epochs of the run)
        self._t0 = time.monotonic()

        datasets = available_datasets(self.preset) or [sel.dataset]
        self.dataset = w.Dropdown(options=datasets, value=sel.dataset, description="dataset")
        self.methods = {m: w.Checkbox(value=m in sel.methods, description=m, indent=False,
                                      tooltip=METHOD_STYLE.get(m, {}).get("label", m),
                                      layout=w.Layout(width="auto"))
                        for m in method_names()}
        self.rates = {r: w.Checkbox(value=r in sel.rates, description=f"{r:g}x", indent=False,
                                    layout=w.Layout(width="auto")) for r in sorted(set(RATE_CHOICES) | set(sel.rates))}
        self.scope = w.Dropdown(options=[(f"{s}: {SCOPE_HELP.get(s, s)}", s) for s in SCOPES], value=sel.scope,
                                description="scope", layout=w.Layout(width="420px"))
        seed_options = list(SEED_CHOICES) if sel.seeds in SEED_CHOICES else list(SEED_CHOICES) + [sel.seeds]
        self.seeds = w.Dropdown(options=[(", ".join(map(str, s)), s) for s in seed_options], value=sel.seeds,
                                description="seeds")
        # shared: every tick would queue runs on the one server, so computing is always a press of the button
        self.auto = w.Checkbox(value=auto_compute, description="compute missing runs at once", indent=False,
                               disabled=shared)
        self.compute_button = w.Button(description="compute missing runs", icon="play", button_style="warning",
                                       layout=w.Layout(width="auto"))
        self.compute_button.add_class("pwoa-explorer-compute")
        self.compute_button.on_click(lambda _: self.refresh(compute=True))
        self.progress = w.IntProgress(value=0, min=0, max=PROGRESS_STEPS, description="runs",
                                      layout=w.Layout(visibility="hidden", width="420px"))
        self.progress.add_class("pwoa-explorer-progress")
        self.status = w.HTML()
        self.status.add_class("pwoa-explorer-status")
        self.outputs = {}
        for name in ("figure1", "table", "curves", "plane", "frontier"):
            out = w.Output()
            out.add_class(f"pwoa-explorer-{name}")
            self.outputs[name] = out

        def label(text):
            return w.HTML(f"<b>{text}</b>", layout=w.Layout(width="90px"))

        methods_box = w.HBox([label("methods")] + list(self.methods.values()))
        methods_box.add_class("pwoa-explorer-methods")
        rates_box = w.HBox([label("rates")] + list(self.rates.values()))
        rates_box.add_class("pwoa-explorer-rates")
        controls = w.VBox([w.HBox([self.dataset, self.seeds]), methods_box, rates_box, self.scope,
                           w.HBox([self.auto, self.compute_button]), w.HBox([self.progress]), self.status])
        self.widget = w.VBox([
            controls,
            w.HTML("<h3>Figure 1: robustness vs pruning rate</h3>"), self.outputs["figure1"],
            w.HTML("<h3>The numbers (mean over the seeds and test images [95% interval], %)</h3>"),
            self.outputs["table"],
            w.HTML("<h3>Training curves</h3>"), self.outputs["curves"],
            w.HTML("<h3>Information plane</h3>"), self.outputs["plane"],
            w.HTML("<h3>Is the comparison fair? Natural vs robust accuracy over the fine-tuning budget</h3>"),
            self.outputs["frontier"]])
        self.widget.add_class("pwoa-explorer")

        for control in [self.dataset, self.scope, self.seeds, *self.methods.values(), *self.rates.values()]:
            control.observe(lambda _change: self.refresh(), names="value")
        self.auto.observe(lambda change: self.refresh() if change["new"] else None, names="value")
        start = self.preset == "smoke" if compute_on_start is None else compute_on_start
        self.refresh(compute=start and auto_compute)

    def selection(self) -> Selection:
        return Selection(self.dataset.value, tuple(m for m, c in self.methods.items() if c.value),
                         tuple(r for r, c in self.rates.items() if c.value), self.scope.value, tuple(self.seeds.value))

    # -- progress: the compute loop reports runs and epochs; a clock thread redraws the status every second

    def _on_run(self, i: int, n: int, run) -> None:
        with self._lock:
            self._at = (i, n, run, 0, 0)
        if i == 0 and self._clock is None:
            self.compute_button.description = f"computing {n} run(s) ..."
            self._start_clock()
        self._show_progress()

    def _on_epoch(self, done: int, epochs: int) -> None:
        with self._lock:
            i, n, run, _, _ = self._at
            self._at = (i, n, run, done, epochs)
        self._show_progress()

    def _start_clock(self) -> None:
        self._clock = stop = threading.Event()

        def tick():
            while not stop.wait(1.0):
                self._show_progress()
        threading.Thread(target=tick, name="pwoa-explorer-clock", daemon=True).start()

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.set()
            self._clock = None

    def _show_progress(self) -> None:
        with self._lock:
            i, n, run, done, epochs = self._at
            if not n:
                return
            elapsed = _duration(time.monotonic() - self._t0)
            # an epoch moves the bar by its share of the run; the last share is the run's evaluation
            share = done / (epochs + 1) if epochs else 0.0
            self.progress.max = n * PROGRESS_STEPS
            self.progress.value = min(int(PROGRESS_STEPS * (i + share)), n * PROGRESS_STEPS)
            self.progress.description = f"run {min(i + 1, n)}/{n}"
            self.progress.layout.visibility = "visible"
            if i < n:
                step = f", epoch {done} of {epochs}" if epochs and done else ""
                self.status.value = (f"computing {_run_name(run)} (run {i + 1} of {n}{step}, preset "
                                     f"{self.preset!r}): {elapsed} so far ...")
            else:
                self.status.value = f"computed {n} run(s) in {elapsed}; drawing ..."

    def _clear(self) -> None:
        """No figures, no table: what an invalid selection shows beside its error."""
        for out in self.outputs.values():
            out.outputs = ()
        if self.view is not None:
            self.view.close()
        self.view = None

    def refresh(self, compute: bool | None = None) -> ExplorerView | None:
        """Redraw for the controls' selection (computing missing runs when `compute`, default: the tick box).
        Errors show in the status line (a widget callback would swallow them)."""
        compute = self.auto.value if compute is None else compute
        self._t0 = time.monotonic()
        self._at = (0, 0, None, 0, 0)
        self.compute_button.disabled = True
        try:
            sel = self.selection().checked()
            self.status.value = "reading the cache ..."
            view = explore(sel, self.preset, cache_dir=self.cache_dir, root=self.root, compute=compute,
                           on_run=self._on_run, on_epoch=self._on_epoch, max_runs=self.max_runs)
        except Exception as err:  # noqa: BLE001 - shown to the user, the app stays usable
            self.error = f"{type(err).__name__}: {err}"
            self._clear()
            self.compute_button.description = "compute missing runs"
            self.status.value = f"<span style='color:#b00'>cannot show this selection: {_html(self.error)}</span>"
            return None
        finally:
            self._stop_clock()
            with self._lock:  # a tick still in flight now finds nothing to show
                self._at = (0, 0, None, 0, 0)
            self.progress.layout.visibility = "hidden"
        self.error = None
        if self.view is not None:
            self.view.close()
        self.view = view
        self.updates += 1
        title = f"{sel.dataset} {', '.join(sel.methods)} at {', '.join(f'{r:g}x' for r in sel.rates)}"
        self.outputs["figure1"].outputs = (_png_output(view.png("figure1"), f"Figure 1: {title}"),)
        self.outputs["table"].outputs = (_table_output(view.summary, view.verdicts),)
        self.outputs["curves"].outputs = (_png_output(view.png("curves"), f"training curves: {title}"),)
        self.outputs["plane"].outputs = (_png_output(view.png("plane"), f"information plane: {title}"),)
        self.outputs["frontier"].outputs = (_png_output(view.png("frontier"), f"frontier: {title}"),) + (
            (_verdict_output(view.frontier_verdicts),) if view.frontier_verdicts else ())
        view.close()
        refused = view.refused
        self.compute_button.disabled = not view.missing or refused is not None
        self.compute_button.description = (
            "nothing to compute" if not view.missing else
            f"{len(view.missing)} missing runs: more than {self.max_runs} at once" if refused else
            f"compute {len(view.missing)} missing run(s)")
        self.status.value = _html(view.message()) + f" ({_duration(time.monotonic() - self._t0)})" + (
            f"<br><span style='color:#b00'>{_html(refused)}</span>" if refused else "")
        return view

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _verdict_output(lines: Sequence[str]) -> dict:
    html = (f"<p>PwoA's front against naive's ({_html(FRONT_RULE)}):</p><ul>"
            + "".join(f"<li>{_html(v)}</li>" for v in lines) + "</ul>")
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": html, "text/plain": "\n".join(lines)}}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def _html(text: str) -> str:
    import html
    return html.escape(text)


def explorer_app(preset: str | None = None, cache_dir=None, root=None, **kwargs) -> ExplorerApp:
    """The explorer (displays itself as the last expression of a cell). `preset`: None -> smoke with
    PWOA_SMOKE=1, else quick. `cache_dir`: None -> $PWOA_CACHE_DIR or ~/.cache/pwoa-lab."""
    return ExplorerApp(preset, cache_dir, root, **kwargs)


__all__ = ["Selection", "ExplorerView", "ExplorerApp", "TooManyRuns", "default_selection", "available_datasets",
           "missing_runs", "refusal", "compute_missing", "explore", "explorer_app", "plot_training_curves",
           "figure1_plot", "plane_plot", "smoke_mode"]
