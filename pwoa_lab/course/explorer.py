"""The classroom explorer: `notebooks/explorer.ipynb` served as a web app with Voila (`make explorer`).

Pick the dataset, the methods, the pruning rates, the pruning scope and the seeds; the app shows Figure 1 with
95% intervals over the seeds and test images, the paper's claim per rate in words, the training curves, the
information plane and the frontier with its verdicts, all read from the result cache (`pwoa_lab.io.cache`), and
computes the runs that are missing (a progress bar counts them).

What it computes lives in `pwoa_lab.experiments.explore` (`Selection`, `default_selection`, `missing_runs`,
`compute_missing`, `TooManyRuns`, ..., re-exported here), its figures in `pwoa_lab.course.plots.explorer_figures`;
both are tested without a browser (tests/test_explorer.py). Here:

- `explore(selection, preset)`: -> `ExplorerView`: the Figure-1 table (one row per run, as `figures.figure1`),
  its `figures.seed_summary`, and the figures; cached runs only unless `compute=True`.
- `ExplorerApp` / `explorer_app(preset)`: the ipywidgets app around `explore` that the notebook displays.

Served to a room (`course.serving`, `make explorer HOST=0.0.0.0`), the app computes only when its button is
pressed and one request may start at most PWOA_EXPLORER_MAX_RUNS runs.

With PWOA_SMOKE=1 the app uses the `smoke` preset (seconds a run) and computes its first view at start; with
the `quick` preset it starts from what the cache holds (after `make demo`: digits, oneshot / naive / pwoa at
2x, 4x, 8x, scope hidden, seeds 0, 1, 2) and computes missing runs only when asked.
"""
from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.intervals import VERDICT_RULE, format_cell
from pwoa_lab.course.plots import METHOD_STYLE
from pwoa_lab.course.plots.explorer_figures import (
    explorer_figures,
    figure1_plot,
    figure_png,
    frontier_plot,
    plane_plot,
    plot_training_curves,
)
from pwoa_lab.course.serving import room_settings
from pwoa_lab.experiments.explore import (
    ExplorerData,
    Selection,
    TooManyRuns,
    available_datasets,
    claim_lines,
    compute_missing,
    default_selection,
    explorer_data,
    missing_runs,
    refusal,
    run_name,
    unavailable_datasets,
)
from pwoa_lab.experiments.frontier import FRONT_RULE
from pwoa_lab.pruning.masks import SCOPES
from pwoa_lab.training.registry import method_names

RATE_CHOICES = (2.0, 4.0, 8.0, 16.0, 32.0)
SEED_CHOICES = ((0,), (0, 1), (0, 1, 2), (0, 1, 2, 3, 4))
SCOPE_HELP = {"all": "every conv and linear layer", "hidden": "all but the first conv layer and the classifier",
              "convs": "conv layers only", "reference": "the reference code's layer rule"}
PROGRESS_STEPS = 100  # the progress bar's steps per run: it moves with every epoch, not only between runs


smoke_mode = defaults.smoke_mode


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
            compute: bool = True, on_run=None, on_epoch=None, max_runs: int | None = None) -> ExplorerView:
    """The explorer's view of `sel`: Figure 1 (means and 95% intervals), the claim per rate, training curves,
    information plane, the frontier and its verdicts (`experiments.explore.explorer_data`, then drawn).

    `compute`: run the missing runs first (`compute_missing`), unless there are more than `max_runs` (then the
    view's `refused` says why); otherwise show the cached ones only (the teacher row is evaluated, once, when not
    cached: seconds)."""
    data = explorer_data(sel, preset, teacher, cache_dir, root, compute, on_run, on_epoch, max_runs)
    view = ExplorerView(**vars(data))
    with plt.ioff():  # never queued for the inline backend's flush (see widgets._interactive)
        view.figures = explorer_figures(view)
    return view


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

    `auto_compute`: None -> off (nothing trains before the button is pressed, which says how many runs and about
    how long; a shared server never offers it); `max_runs`: the most missing runs
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
        auto_compute = False if auto_compute is None else auto_compute and not shared
        sel = (selection or default_selection(self.preset)).checked()
        self.view: ExplorerView | None = None
        self.error: str | None = None
        self.updates = 0
        self._lock = threading.Lock()   # the compute loop and the clock thread both write the status
        self._clock: threading.Event | None = None
        self._at = (0, 0, None, 0, 0)   # (run i, of n, run, epochs done, epochs of the run)
        self._t0 = time.monotonic()

        datasets = available_datasets(self.preset, root) or [sel.dataset]
        self.dataset = w.Dropdown(options=datasets, value=sel.dataset, description="dataset")
        missing_data = unavailable_datasets(self.preset, root)  # not offered: one line each that says why
        self.missing_data = w.HTML("<br>".join(f"<span style='color:#777'>{_html(line)}</span>"
                                               for line in missing_data.values()))
        self.missing_data.add_class("pwoa-explorer-missing-data")
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
        self.control = w.Checkbox(value=sel.control, indent=False, layout=w.Layout(width="auto"),
                                  description="beside each rate: a dense network of the pruned size, adversarially "
                                              "trained (is it pruning, or size?)")
        self.control.add_class("pwoa-explorer-control")
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
        controls = w.VBox([w.HBox([self.dataset, self.seeds]), self.missing_data, methods_box, rates_box, self.scope,
                           self.control,
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

        for control in [self.dataset, self.scope, self.seeds, self.control, *self.methods.values(),
                        *self.rates.values()]:
            control.observe(lambda _change: self.refresh(), names="value")
        self.auto.observe(lambda change: self.refresh() if change["new"] else None, names="value")
        self.refresh(compute=bool(compute_on_start) and auto_compute)

    def selection(self) -> Selection:
        return Selection(self.dataset.value, tuple(m for m, c in self.methods.items() if c.value),
                         tuple(r for r, c in self.rates.items() if c.value), self.scope.value, tuple(self.seeds.value),
                         self.control.value)

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
                self.status.value = (f"computing {run_name(run)} (run {i + 1} of {n}{step}, preset "
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
        seconds, measured = view.estimate
        self.compute_button.description = (
            "nothing to compute" if not view.missing else
            f"{len(view.missing)} missing runs: more than {self.max_runs} at once" if refused else
            f"compute {len(view.missing)} missing run(s): about {_duration(seconds)} here"
            + ("" if measured else " (a guess: no run like them measured yet)"))
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


__all__ = ["Selection", "ExplorerData", "ExplorerView", "ExplorerApp", "TooManyRuns", "default_selection",
           "available_datasets", "missing_runs", "refusal", "compute_missing", "claim_lines", "explore",
           "explorer_app", "plot_training_curves", "figure1_plot", "plane_plot", "frontier_plot", "smoke_mode"]
