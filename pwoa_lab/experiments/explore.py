"""What the classroom explorer computes: selections, cached and missing runs, the table and the claim in words.

No drawing and no widgets: `pwoa_lab.course.explorer` is the app around these, `pwoa_lab.course.plots` draws.

- `Selection`: what the controls say; `default_selection(preset)`; `available_datasets(preset)`.
- `missing_runs(selection, preset)`: the (method, rate, seed) runs not in the cache yet.
- `compute_missing(selection, preset, on_run=..., on_epoch=..., max_runs=..., should_stop=...)`: runs them, one at
  a time (each a `runs.prune_row`: the cache entry `figures.figure1` writes, stored as it finishes); more than
  `max_runs` are refused (`TooManyRuns`); `should_stop()` true at a run's start or after an epoch: `ComputeStopped`.
- `explorer_data(selection, preset)` -> `ExplorerData`: the Figure-1 table (one row per run, as
  `figures.figure1`), its `figures.seed_summary`, the training histories, the claim per rate in words
  (`claim_lines`) and the frontier the cache holds (`frontier.cached_frontier_result`, the teacher added) with its
  verdicts, or the command that fills its budget grid (`frontier_command`).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import check_available
from pwoa_lab.io.cache import cache_root
from pwoa_lab.experiments.capacity import capacity_in_words, capacity_rows, capacity_verdicts
from pwoa_lab.experiments.figures import FIG1_COLUMNS, check_seeds, claim_in_words, phenomenon, seed_summary
from pwoa_lab.experiments.frontier import cached_frontier_result
from pwoa_lab.experiments.runs import cached_prune_row, prune_row, resolve_teacher, teacher_row
from pwoa_lab.pruning.masks import SCOPES
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.presets import PRESETS, capacity_overrides, eval_settings, preset_config
from pwoa_lab.training.registry import CAPACITY, TEACHER, method_names, method_spec, method_with_role
from pwoa_lab.utils import check_rate, get_device

Run = tuple[str, float, int]  # (method, rate, seed)

smoke_note = defaults.smoke_note  # what every plot title and table of the smoke preset says; else ""


@dataclass(frozen=True)
class Selection:
    """What the explorer's controls say."""
    dataset: str = defaults.DATASET
    methods: tuple[str, ...] = defaults.FIGURE1_METHODS
    rates: tuple[float, ...] = (2.0, 4.0, 8.0)
    scope: str = "hidden"
    seeds: tuple[int, ...] = (0, 1, 2)
    control: bool = False  # the capacity control beside every rate (`pwoa_lab.experiments.capacity`)

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

    def runs(self) -> list[Run]:
        """Every (method, rate, seed) of the selection, in Figure 1's order (seed, method, rate)."""
        return [(m, float(r), s) for s in self.seeds for m in self.methods for r in self.rates]


def default_selection(preset: str) -> Selection:
    """The first view: in smoke mode four runs of seconds each; otherwise `make demo`'s Figure 1."""
    if preset == defaults.SMOKE_PRESET:
        return Selection(defaults.DATASET, defaults.FRONTIER_METHODS, (4.0, 16.0), "hidden", (0,))
    return Selection()


def available_datasets(preset: str, root=None) -> list[str]:
    """Datasets with a shipped teacher, a schedule in `preset` and their data on this machine."""
    return [d for d in _course_datasets(preset) if d not in unavailable_datasets(preset, root)]


def unavailable_datasets(preset: str, root=None) -> dict[str, str]:
    """{dataset: one line a student can act on} for the course's datasets whose data this machine does not have."""
    out = {}
    for name in _course_datasets(preset):
        try:
            check_available(name, root)
        except FileNotFoundError:
            out[name] = (f"{name}: its data is not on this machine; ask your instructor for the data folder (or use "
                         f"{defaults.DATASET}, which needs none)")
    return out


def _course_datasets(preset: str) -> list[str]:
    """Datasets with a shipped teacher (its file present) and a schedule in `preset`."""
    from pwoa_lab.io.checkpoint import shipped_teachers
    return [d for d, path in shipped_teachers().items() if Path(path).is_file() and d in PRESETS[preset]]


def budgeted_methods(methods: Sequence[str]) -> list[str]:
    """The methods among `methods` that a frontier's budget grid trains (else the default frontier methods)."""
    budgeted = [m for m in methods if method_spec(m).trains and method_spec(m).config is PruneConfig]
    return budgeted or list(defaults.FRONTIER_METHODS)


def run_name(run: Run) -> str:
    method, rate, seed = run
    return f"{method} {rate:g}x seed {seed}"


def _config(sel: Selection, preset: str, method: str, rate: float, seed: int, device: str):
    # exactly as figures.figure1 builds its configs, so that both find the same cache entries
    return preset_config(sel.dataset, preset, method=method, rate=rate, seed=seed, device=device, scope=sel.scope)


@functools.lru_cache(maxsize=None)
def _shipped_teacher(dataset: str) -> nn.Module:
    """The shipped teacher of `dataset`, loaded once."""
    return resolve_teacher(dataset, None, get_device(None))


def _cached_runs(sel: Selection, preset: str, teacher: nn.Module, cache_dir=None
                 ) -> dict[Run, tuple[dict[str, Any], pd.DataFrame] | None]:
    device = str(get_device(None))
    settings = eval_settings(sel.dataset, preset)
    return {(m, r, s): cached_prune_row(teacher, _config(sel, preset, m, r, s, device), settings, cache_dir)
            for m, r, s in sel.runs()}


def missing_runs(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None) -> list[Run]:
    """The (method, rate, seed) runs of `sel` that the cache does not hold yet."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else _shipped_teacher(sel.dataset)
    return [run for run, hit in _cached_runs(sel, preset, teacher, cache_dir).items() if hit is None]


# seconds a run takes when the store holds no measured run like it: a stated guess per preset (2-core CPU)
DEFAULT_RUN_SECONDS = {"smoke": 5.0, "quick": 60.0, "paper": 3600.0}
SAME_RUN = ("dataset", "method", "rate", "scope", "admm_epochs", "retrain_epochs", "n_per_class", "batch_size")


def estimate_seconds(runs: Sequence[Run], sel: Selection, preset: str, cache_dir=None) -> tuple[float, bool]:
    """About how long `runs` of `sel` take on this machine: per run the median training + evaluation seconds of
    the stored runs with the same dataset, method, rate, scope and schedule (measured here, or where the cache was
    filled), else `DEFAULT_RUN_SECONDS` of the preset. -> (seconds, whether every run had a measured twin)."""
    measured = _measured_seconds(str(cache_root(cache_dir)))
    total, all_measured = 0.0, True
    device = str(get_device(None))
    for method, rate, seed in runs:
        config = _config(sel, preset, method, rate, seed, device).to_dict()
        found = measured.get(tuple(config.get(k) for k in SAME_RUN))
        if found:
            total += float(np.median(found))
        else:
            total += DEFAULT_RUN_SECONDS.get(preset, DEFAULT_RUN_SECONDS["quick"])
            all_measured = False
    return total, all_measured


def _measured_seconds(root: str) -> dict[tuple, list[float]]:
    """{the SAME_RUN fields of a stored run: [its training + evaluation seconds, ...]} of the run store."""
    out: dict[tuple, list[float]] = {}
    for path in Path(root, "prune_row").glob("*/result.json"):
        try:
            record = json.loads(path.read_text())
            config, row = record["config"], record["row"]
            seconds = float(row.get("train_seconds") or 0) + float(row.get("eval_seconds") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.setdefault(tuple(config.get(k) for k in SAME_RUN), []).append(seconds)
    return out


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


class ComputeStopped(Exception):
    """A computation stopped on request (`should_stop`). `computed`: the runs it finished (each in the cache);
    `runs`: every run it was to compute."""

    def __init__(self, computed: Sequence[Run] = (), runs: Sequence[Run] = ()):
        super().__init__(f"stopped after {len(computed)} of {len(runs)} runs")
        self.computed, self.runs = list(computed), list(runs)


def compute_missing(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None, root=None,
                    on_run: Callable[[int, int, Run], None] | None = None,
                    on_epoch: Callable[[int, int], None] | None = None, max_runs: int | None = None,
                    should_stop: Callable[[], bool] | None = None) -> list[Run]:
    """Run every missing run of `sel`, one `runs.prune_row` each (the cache entry `figures.figure1` writes, so
    either finds the other's runs). `on_run(i, n, (method, rate, seed))` is called before run i of n and once
    more with i == n at the end; `on_epoch(done, epochs)` after each training epoch of the current run. More
    than `max_runs` missing runs: `TooManyRuns`, and nothing runs. `should_stop()`, asked after each `on_run` and
    each epoch: when true, `ComputeStopped` (the runs finished so far stay in the cache; the run it interrupts
    resumes from its last saved epoch next time). -> the runs computed."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else _shipped_teacher(sel.dataset)
    todo = missing_runs(sel, preset, teacher, cache_dir)
    reason = refusal(len(todo), max_runs)
    if reason:
        raise TooManyRuns(reason)
    device = str(get_device(None))
    settings = eval_settings(sel.dataset, preset)
    done: list[Run] = []
    try:
        for i, (method, rate, seed) in enumerate(todo):
            if on_run:
                on_run(i, len(todo), (method, rate, seed))
            _check_stop(should_stop)
            config = _config(sel, preset, method, rate, seed, device)
            prune_row(teacher, config, settings, cache_dir, root=root, progress=False,
                      on_epoch=_epoch_counter(on_epoch, sum(p.epochs for p in config.phases()), should_stop))
            done.append((method, rate, seed))
    except ComputeStopped:
        raise ComputeStopped(done, todo) from None
    if on_run and todo:
        on_run(len(todo), len(todo), todo[-1])
    return todo


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise ComputeStopped()


def _epoch_counter(on_epoch: Callable[[int, int], None] | None, epochs: int,
                   should_stop: Callable[[], bool] | None = None) -> Callable[[dict], None] | None:
    """The training loop's `on_epoch(row)` as `on_epoch(epochs done, epochs of the run)`, then the stop check."""
    if on_epoch is None and should_stop is None:
        return None
    done = [0]

    def step(_row: dict) -> None:
        done[0] += 1
        if on_epoch is not None:
            on_epoch(done[0], epochs)
        _check_stop(should_stop)
    return step


@dataclass
class ExplorerData:
    """What the explorer shows for a selection, before anything is drawn."""
    selection: Selection
    preset: str
    table: pd.DataFrame              # one row per run (+ the teacher), columns as figures.figure1
    summary: pd.DataFrame            # figures.seed_summary(table): means, sds and 95% intervals
    histories: pd.DataFrame          # per run and epoch: method, rate, seed, epoch, phase, val_natural, val_pgd, ...
    missing: list[Run] = field(default_factory=list)
    computed: list[Run] = field(default_factory=list)
    max_runs: int | None = None      # the most missing runs one request may start (None: no cap)
    verdicts: list[str] = field(default_factory=list)           # the paper's claim per rate, in words
    frontier_verdicts: list[str] = field(default_factory=list)  # PwoA's front against naive's, per rate
    frontier: Any = None             # frontier.cached_frontier_result of the selection; None: not in the cache
    layer_names: Sequence[str] | None = None  # the teacher's hidden layers (the information plane's labels)
    estimate: tuple[float, bool] = (0.0, True)  # seconds the missing runs would take here (`estimate_seconds`)
    stopped: int | None = None       # stopped on request: how many runs the computation was to do (else None)
    frontier_note: str | None = None  # the cache holds one budget per method only: what to run for the grid

    @property
    def refused(self) -> str | None:
        """Why the missing runs are not computed from this page (too many at once), or None."""
        return refusal(len(self.missing), self.max_runs)

    def message(self) -> str:
        n = len(self.selection.runs())
        shown = n - len(self.missing)
        parts = [f"{shown} of {n} runs shown ({len(self.computed)} computed now, {shown - len(self.computed)} read "
                 f"from the cache); preset {self.preset}"]
        if self.stopped is not None:
            parts.insert(0, f"stopped: {len(self.computed)} of {self.stopped} runs computed and kept; press compute "
                            f"to go on")
        if self.missing:
            parts.append(f"{len(self.missing)} not computed yet: " + ", ".join(run_name(r) for r in self.missing[:6])
                         + (" ..." if len(self.missing) > 6 else ""))
        return "; ".join(parts)


def explorer_data(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None, root=None,
                  compute: bool = True, on_run=None, on_epoch=None, max_runs: int | None = None,
                  should_stop=None) -> ExplorerData:
    """What the explorer shows for `sel`: the Figure-1 table with its summary (means and 95% intervals), the claim
    per rate, the training histories, and the frontier the cache holds with its verdicts.

    `compute`: run the missing runs first (`compute_missing`), unless there are more than `max_runs` (then the
    data's `refused` says why); otherwise the cached ones only (the teacher row is evaluated, once, when not
    cached: seconds). `should_stop`: as `compute_missing`; a stopped computation shows what the cache holds then,
    and its `stopped` says how many runs it was to do."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else _shipped_teacher(sel.dataset)
    hits = _cached_runs(sel, preset, teacher, cache_dir)
    missing = [r for r, hit in hits.items() if hit is None]
    computed, stopped = [], None
    if compute and missing and refusal(len(missing), max_runs) is None:
        try:
            computed = compute_missing(sel, preset, teacher, cache_dir, root, on_run, on_epoch,
                                       should_stop=should_stop)
        except ComputeStopped as stop:
            computed, stopped = stop.computed, len(stop.runs)
        hits = _cached_runs(sel, preset, teacher, cache_dir)
    settings = eval_settings(sel.dataset, preset)
    eps = preset_config(sel.dataset, preset, scope=sel.scope).eps
    t_row = teacher_row(teacher, sel.dataset, eps, settings, cache_dir, True, root)
    rows = [t_row]
    capacity = pd.DataFrame()
    if sel.control:  # computed with the runs when the page computes, else what the cache holds
        capacity = capacity_rows(teacher, sel.dataset, sel.rates, sel.seeds, settings, sel.scope,
                                 capacity_overrides(sel.dataset, preset), cache_dir, root=root, progress=False,
                                 cached_only=not compute or stopped is not None)
    histories = []
    for (method, rate, seed), hit in hits.items():
        if hit is None:
            continue
        row, history = hit
        rows.append({**row, "seed": seed})
        if len(history):
            histories.append(history.assign(method=method, rate=rate, seed=seed))
    table = pd.concat([pd.DataFrame(rows), capacity], ignore_index=True)
    table = table[[c for c in FIG1_COLUMNS if c in table.columns]]
    hist = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(
        columns=["method", "rate", "seed", "epoch", "val_natural", "val_pgd"])
    verdicts = claim_lines(table, cache_dir)
    if sel.control:
        verdicts += capacity_lines(table, sel, preset, cache_dir)
    data = ExplorerData(sel, preset, table, seed_summary(table, cache_dir=cache_dir), hist,
                        missing=[r for r, hit in hits.items() if hit is None], computed=computed, max_runs=max_runs,
                        verdicts=verdicts, layer_names=getattr(teacher, "hidden_names", None), stopped=stopped)
    # with the teacher as the reference star, as `frontier.frontier` draws it
    data.frontier = cached_frontier_result(sel.dataset, sel.rates, sel.methods, sel.seeds, preset, teacher=teacher,
                                           cache_dir=cache_dir, teacher_row=t_row, scope=sel.scope)
    if data.missing:
        data.estimate = estimate_seconds(data.missing, sel, preset, cache_dir)
    if data.frontier is not None:
        fr = data.frontier
        data.frontier_verdicts = [f"{r.rate:g}x: {r.verdict}. {r.text}" for r in fr.verdicts.itertuples()]
        if only_preset_budget(fr.points):
            data.frontier_note = (f"The cache holds only the preset's own fine-tuning budget for these runs (one "
                                  f"point per method), so this is no fair comparison yet; to fill the budget grid, "
                                  f"run: {frontier_command(sel, preset)}")
    return data


def only_preset_budget(points: pd.DataFrame) -> bool:
    """Whether a frontier's points hold one budget per method and rate (the preset's own: no grid to compare)."""
    trained = points[points.kind == "method"]
    return bool(len(trained)) and bool((trained.groupby(["rate", "method"]).size() == 1).all())


def frontier_command(sel: Selection, preset: str) -> str:
    """The `pwoa-lab frontier` command that fills the budget grid of `sel`'s frontier."""
    return (f"pwoa-lab frontier --dataset {sel.dataset} --preset {preset} --rates "
            f"{','.join(f'{r:g}' for r in sel.rates)} --scope {sel.scope} --seeds {','.join(map(str, sel.seeds))} "
            f"--methods {','.join(budgeted_methods(sel.methods))}")


def capacity_lines(table: pd.DataFrame, sel: Selection, preset: str, cache_dir=None) -> list[str]:
    """The capacity control per rate and method in words, or where the cache has none yet, the command that fills
    it."""
    if not (table.method == CAPACITY).any():
        return [f"The dense network of each pruned size is not in the cache yet: press 'compute missing runs', or "
                f"run pwoa-lab figure1 --dataset {sel.dataset} --preset {preset} --scope {sel.scope} --rates "
                f"{','.join(f'{r:g}' for r in sel.rates)} --seeds {','.join(map(str, sel.seeds))} --control capacity"]
    metric = "aa" if "aa" in table and table.aa.notna().any() else "pgd"
    return [line.removeprefix("- ") for line in capacity_in_words(capacity_verdicts(table, metric, cache_dir), metric)]


def claim_lines(table: pd.DataFrame, cache_dir=None) -> list[str]:
    """The paper's claim per rate in words (`figures.claim_in_words`, on the robust metric the table has), where
    the table holds the teacher, naive pruning and PwoA; else nothing."""
    if not {TEACHER, method_with_role("baseline"), method_with_role("proposed")} <= set(table.method):
        return []
    metric = "aa" if "aa" in table and table.aa.notna().any() else "pgd"
    return claim_in_words(phenomenon(table, metric, cache_dir=cache_dir), metric)
