"""The classroom explorer: `notebooks/explorer.ipynb` served as a web app with Voila (`make explorer`).

Pick the dataset, the methods, the pruning rates, the pruning scope and the seeds; the app shows Figure 1 with
95% intervals over the seeds and test images, the paper's claim per rate in words, the training curves, the
information plane and the frontier with its verdicts, all read from the result cache (`pwoa_lab.io.cache`), and
computes the runs that are missing (a progress bar counts them).

What it computes lives in `pwoa_lab.experiments.explore` (`Selection`, `default_selection`, `missing_runs`,
`compute_missing`, `TooManyRuns`, ..., re-exported here), its figures and page outputs in
`pwoa_lab.course.plots.explorer_figures` (`explore(selection, preset)` -> `ExplorerView`: the Figure-1 table, its
`figures.seed_summary` and the figures; re-exported here); both are tested without a browser
(tests/test_explorer.py). Here `ExplorerApp` / `explorer_app(preset)`: the ipywidgets app around `explore` that the
notebook displays.

Nothing trains before the button "compute missing runs" is pressed (it says how many runs and about how long);
the runs then compute in a background thread, so the page's "stop" button works while they run, and the runs
finished by then stay in the cache. Served to a room (`course.serving`, `make explorer HOST=0.0.0.0`), one
request may start at most PWOA_EXPLORER_MAX_RUNS runs.

With PWOA_SMOKE=1 the app uses the `smoke` preset (seconds a run; every title says it is a smoke check, not a
result), else `quick`; either starts from what the cache holds (after `make demo`: digits, oneshot / naive / pwoa
at 2x, 4x, 8x, scope hidden, seeds 0, 1, 2).
"""
from __future__ import annotations

import threading
import time

from pwoa_lab import defaults
from pwoa_lab.course.plots import METHOD_STYLE
from pwoa_lab.course.plots.explorer_figures import (
    FRONT_WORDS,
    duration_text,
    ExplorerView,
    explore,
    figure1_plot,
    frontier_outputs,
    frontier_plot,
    html_text,
    plane_plot,
    plot_training_curves,
    png_output,
    table_output,
    verdict_output,
)
from pwoa_lab.course.serving import room_settings
from pwoa_lab.experiments.explore import (
    ComputeStopped,
    ExplorerData,
    Selection,
    TooManyRuns,
    available_datasets,
    claim_lines,
    compute_missing,
    default_selection,
    missing_runs,
    refusal,
    run_name,
    smoke_note,
    unavailable_datasets,
)
from pwoa_lab.pruning.masks import SCOPES
from pwoa_lab.training.registry import method_names

RATE_CHOICES = (2.0, 4.0, 8.0, 16.0, 32.0)
SEED_CHOICES = ((0,), (0, 1), (0, 1, 2), (0, 1, 2, 3, 4))
SCOPE_HELP = {"all": "every conv and linear layer", "hidden": "all but the first conv layer and the classifier",
              "convs": "conv layers only", "reference": "the reference code's layer rule"}
PROGRESS_STEPS = 100  # the progress bar's steps per run: it moves with every epoch, not only between runs
smoke_mode = defaults.smoke_mode


class ExplorerApp:
    """The ipywidgets app: controls, a status line with a progress bar, and the outputs (Figure 1, its table, the
    training curves, the information plane, the frontier), set directly (`Output.outputs`: the same in Voila,
    JupyterLab, a thread and a test). Every change of a control redraws from the cache; `widget` is what the
    notebook displays.

    The button starts the missing runs in a background thread (`start_compute`), so the kernel stays free for
    clicks: "stop" (`stop`) ends the computation at the next epoch or run start; the runs finished stay in the
    cache (each is stored as it finishes) and the view redraws from it. One computation at a time: while one runs,
    every control is disabled, and a change that arrives anyway (a stale page, code) starts nothing: the view
    follows it, from the cache, when the computation ends. `wait()` waits for it; `refresh(compute=True)` computes
    in the caller's thread instead (a plain cell, tests). The progress bar moves with every epoch and the status
    line counts the seconds (a clock thread). An invalid selection clears the outputs and disables the button.

    `auto_compute`: None -> off (nothing trains before the button is pressed, which says how many runs and about
    how long; a shared server never offers it); on, every change computes in the background. `max_runs`: the most
    missing runs one request may start (None -> PWOA_EXPLORER_MAX_RUNS; 0: no cap)."""

    def __init__(self, preset: str | None = None, cache_dir=None, root=None, selection: Selection | None = None,
                 compute_on_start: bool | None = None, auto_compute: bool | None = None,
                 max_runs: int | None = None):
        import ipywidgets as w
        self.preset = preset or ("smoke" if smoke_mode() else "quick")
        self.cache_dir, self.root = cache_dir, root
        self.shared, room_max = room_settings()
        self.max_runs = (room_max if max_runs is None else max_runs) or None
        auto_compute = False if auto_compute is None else auto_compute and not self.shared
        sel = (selection or default_selection(self.preset)).checked()
        self.view: ExplorerView | None = None
        self.error: str | None = None
        self.updates = 0
        self._lock = threading.Lock()   # the compute loop and the clock thread both write the status
        self._clock: threading.Event | None = None
        self._at = (0, 0, None, 0, 0)   # (run i, of n, run, epochs done, epochs of the run)
        self._t0 = time.monotonic()
        self._job: threading.Thread | None = None        # the background computation (`start_compute`)
        self._busy = False                               # one runs: no second one, controls disabled
        self._stop_request: threading.Event | None = None  # set by `stop`, read by the compute loop
        self._changed_while_busy = False                 # a change arrived while computing: redraw at the end

        datasets = available_datasets(self.preset, root) or [sel.dataset]
        self.dataset = w.Dropdown(options=datasets, value=sel.dataset, description="dataset")
        missing_data = unavailable_datasets(self.preset, root)  # not offered: one line each that says why
        self.missing_data = w.HTML("<br>".join(f"<span style='color:#777'>{html_text(line)}</span>"
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
                               disabled=self.shared)
        self.compute_button = w.Button(description="compute missing runs", icon="play", button_style="warning",
                                       layout=w.Layout(width="auto"))
        self.compute_button.add_class("pwoa-explorer-compute")
        self.compute_button.on_click(lambda _: self.start_compute())
        self.stop_button = w.Button(description="stop", icon="stop", button_style="danger",
                                    tooltip="stop after the current epoch; the runs finished are kept",
                                    layout=w.Layout(width="auto", display="none"))
        self.stop_button.add_class("pwoa-explorer-stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.progress = w.IntProgress(value=0, min=0, max=PROGRESS_STEPS, description="runs",
                                      layout=w.Layout(visibility="hidden", width="420px"))
        self.progress.add_class("pwoa-explorer-progress")
        self.status = w.HTML()
        self.status.add_class("pwoa-explorer-status")
        self.table_heading, self.frontier_heading = w.HTML(), w.HTML()  # they follow the preset and the cache
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
                           self.control, w.HBox([self.auto, self.compute_button, self.stop_button]),
                           w.HBox([self.progress]), self.status])
        self.widget = w.VBox([
            controls,
            w.HTML("<h3>Figure 1: robustness vs pruning rate</h3>"), self.outputs["figure1"],
            self.table_heading, self.outputs["table"],
            w.HTML("<h3>Training curves</h3>"), self.outputs["curves"],
            w.HTML("<h3>Information plane</h3>"), self.outputs["plane"],
            self.frontier_heading, self.outputs["frontier"]])
        self.widget.add_class("pwoa-explorer")

        self._controls = [self.dataset, self.scope, self.seeds, self.control, *self.methods.values(),
                          *self.rates.values()]
        for control in self._controls:
            control.observe(lambda _change: self._on_change(), names="value")
        self.auto.observe(lambda change: self._on_change() if change["new"] else None, names="value")
        self.refresh(compute=bool(compute_on_start) and auto_compute)

    def selection(self) -> Selection:
        return Selection(self.dataset.value, tuple(m for m, c in self.methods.items() if c.value),
                         tuple(r for r, c in self.rates.items() if c.value), self.scope.value, tuple(self.seeds.value),
                         self.control.value)

    # -- computing in the background: one computation at a time, stoppable from the page

    @property
    def computing(self) -> bool:
        """Whether a background computation (`start_compute`) runs now."""
        return self._busy

    def _on_change(self) -> None:
        if self._busy:  # not computed: the view follows the controls when the computation ends
            self._changed_while_busy = True
        elif self.auto.value:
            self.start_compute()
        else:
            self.refresh(compute=False)

    def start_compute(self) -> bool:
        """Compute the missing runs of the controls' selection in a background thread, then redraw; the kernel
        stays free, so `stop` works meanwhile. -> False, and nothing starts, while another computation runs."""
        if self._busy:
            return False
        self._busy = True
        self._stop_request = stop = threading.Event()
        self._show_busy(True)
        self._job = threading.Thread(target=self._compute_in_background, args=(self.selection(), stop),
                                     name="pwoa-explorer-compute", daemon=True)
        self._job.start()
        return True

    def _compute_in_background(self, sel: Selection, stop: threading.Event) -> None:
        try:
            self._redraw(compute=True, sel=sel, should_stop=stop.is_set)
            if self._changed_while_busy:  # the controls changed meanwhile (code, a stale page): show them
                self._redraw(compute=False)
        except Exception as err:  # noqa: BLE001 - a thread would swallow it: shown instead
            self.error = f"{type(err).__name__}: {err}"
            self.status.value = f"<span style='color:#b00'>the computation failed: {html_text(self.error)}</span>"
        finally:
            self._changed_while_busy = False
            self._stop_request = None
            self._busy = False
            self._show_busy(False)

    def stop(self) -> None:
        """Stop the background computation after its current epoch (or before its next run); the runs finished
        are kept in the cache and shown."""
        if self._busy and self._stop_request is not None:
            self._stop_request.set()
            self.stop_button.disabled = True
            self.stop_button.description = "stopping after this epoch ..."

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background computation to end (at most `timeout` seconds). -> whether none runs now."""
        if self._job is not None:
            self._job.join(timeout)
        return not self._busy

    def _show_busy(self, busy: bool) -> None:
        """While computing: the controls and the compute button disabled, the stop button shown."""
        for control in self._controls:
            control.disabled = busy
        self.auto.disabled = busy or self.shared
        if busy:
            self.compute_button.disabled = True
            self.compute_button.description = "computing ..."
        self.stop_button.disabled = False
        self.stop_button.description = "stop"
        self.stop_button.layout.display = None if busy else "none"

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
            elapsed = duration_text(time.monotonic() - self._t0)
            # an epoch moves the bar by its share of the run; the last share is the run's evaluation
            share = done / (epochs + 1) if epochs else 0.0
            self.progress.max = n * PROGRESS_STEPS
            self.progress.value = min(int(PROGRESS_STEPS * (i + share)), n * PROGRESS_STEPS)
            self.progress.description = f"run {min(i + 1, n)}/{n}"
            self.progress.layout.visibility = "visible"
            stopping = self._stop_request is not None and self._stop_request.is_set()
            if i < n:
                step = f", epoch {done} of {epochs}" if epochs and done else ""
                self.status.value = (f"computing {run_name(run)} (run {i + 1} of {n}{step}, preset "
                                     f"{self.preset!r}): {elapsed} so far ..."
                                     + (" stopping after this epoch" if stopping else ""))
            else:
                self.status.value = f"computed {n} run(s) in {elapsed}; drawing ..."

    def _clear(self) -> None:
        """No figures, no table: what an invalid selection shows beside its error."""
        for out in self.outputs.values():
            out.outputs = ()
        if self.view is not None:
            self.view.close()
        self.view = None

    # -- drawing

    def refresh(self, compute: bool | None = None) -> ExplorerView | None:
        """Redraw for the controls' selection in this thread, computing missing runs when `compute` (default: the
        tick box). While a background computation runs: nothing (one computation at a time) -> None."""
        if self._busy:
            return None
        return self._redraw(self.auto.value if compute is None else compute)

    def _redraw(self, compute: bool, sel: Selection | None = None, should_stop=None) -> ExplorerView | None:
        """Compute (when `compute`) and draw `sel` (default: the controls'). Errors show in the status line (a
        widget callback or a thread would swallow them)."""
        self._t0 = time.monotonic()
        self._at = (0, 0, None, 0, 0)
        self.compute_button.disabled = True
        try:
            sel = (sel or self.selection()).checked()
            self.status.value = "reading the cache ..."
            view = explore(sel, self.preset, cache_dir=self.cache_dir, root=self.root, compute=compute,
                           on_run=self._on_run, on_epoch=self._on_epoch, max_runs=self.max_runs,
                           should_stop=should_stop)
        except Exception as err:  # noqa: BLE001 - shown to the user, the app stays usable
            self.error = f"{type(err).__name__}: {err}"
            self._clear()
            self.compute_button.description = "compute missing runs"
            self.status.value = f"<span style='color:#b00'>cannot show this selection: {html_text(self.error)}</span>"
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
        self._show(view)
        return view

    def _show(self, view: ExplorerView) -> None:
        """The view's figures (as PNG: every figure is closed here, so memory stays flat), tables and status."""
        sel, note = view.selection, smoke_note(view.preset)
        warning = f" <span style='color:#b00'>({html_text(note)})</span>" if note else ""
        title = f"{sel.dataset} {', '.join(sel.methods)} at {', '.join(f'{r:g}x' for r in sel.rates)}"
        self.outputs["figure1"].outputs = (png_output(view.png("figure1"), f"Figure 1: {title}"),)
        self.table_heading.value = ("<h3>The numbers (mean over the seeds and test images [95% interval], %)"
                                    f"{warning}</h3>")
        self.outputs["table"].outputs = (table_output(view.summary, view.verdicts, note),)
        self.outputs["curves"].outputs = (png_output(view.png("curves"), f"training curves: {title}"),)
        self.outputs["plane"].outputs = (png_output(view.png("plane"), f"information plane: {title}"),)
        budget = ("at the preset's own budget only" if view.frontier_note else
                  f"over the fine-tuning budget ({FRONT_WORDS})")
        self.frontier_heading.value = f"<h3>Is the comparison fair? Natural vs robust accuracy {budget}{warning}</h3>"
        self.outputs["frontier"].outputs = frontier_outputs(view, f"frontier: {title}")
        view.close()
        refused = view.refused
        self.compute_button.disabled = not view.missing or refused is not None
        seconds, measured = view.estimate
        self.compute_button.description = (
            "nothing to compute" if not view.missing else
            f"{len(view.missing)} missing runs: more than {self.max_runs} at once" if refused else
            f"compute {len(view.missing)} missing run(s): about {duration_text(seconds)} here"
            + ("" if measured else " (a guess: no run like them measured yet)"))
        self.status.value = html_text(view.message()) + f" ({duration_text(time.monotonic() - self._t0)})" + (
            f"<br><span style='color:#b00'>{html_text(refused)}</span>" if refused else "")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def explorer_app(preset: str | None = None, cache_dir=None, root=None, **kwargs) -> ExplorerApp:
    """The explorer (displays itself as the last expression of a cell). `preset`: None -> smoke with
    PWOA_SMOKE=1, else quick. `cache_dir`: None -> $PWOA_CACHE_DIR or ~/.cache/pwoa-lab."""
    return ExplorerApp(preset, cache_dir, root, **kwargs)


__all__ = ["Selection", "ExplorerData", "ExplorerView", "ExplorerApp", "TooManyRuns", "ComputeStopped",
           "default_selection", "available_datasets", "missing_runs", "refusal", "compute_missing", "claim_lines",
           "explore", "explorer_app", "plot_training_curves", "figure1_plot", "plane_plot", "frontier_plot",
           "smoke_mode", "table_output", "verdict_output", "png_output", "frontier_outputs", "smoke_note"]
