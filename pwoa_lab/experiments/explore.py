"""What the classroom explorer computes: selections, cached and missing runs, the table and the claim in words.

No drawing and no widgets: `pwoa_lab.course.explorer` is the app around these, `pwoa_lab.course.plots` draws.

- `Selection`, `default_selection`, `available_datasets`, `missing_runs`: what the controls select
  (`pwoa_lab.experiments.selection`, re-exported here).
- `compute_missing(selection, preset, on_run=..., on_epoch=..., max_runs=..., should_stop=...)`: runs them, one at
  a time (each a `runs.prune_row`: the cache entry `figures.figure1` writes, stored as it finishes); more than
  `max_runs` are refused (`TooManyRuns`); `should_stop()` true at a run's start or after an epoch: `ComputeStopped`.
- `missing_controls` / `compute_controls(selection, preset, ...)`: the same for the selection's capacity controls
  (its tick box), counted, estimated and stopped with the runs.
- `explorer_data(selection, preset)` -> `ExplorerData`: the Figure-1 table (one row per run, as
  `figures.figure1`), its `figures.seed_summary`, the training histories, the claim per rate in words
  (`claim_lines`) and the frontier the cache holds (`frontier.cached_frontier_result`, the teacher added) with its
  verdicts, or the command that fills its budget grid (`frontier_command`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.io.cache import cache_root
from pwoa_lab.experiments.capacity import capacity_configs, capacity_in_words, capacity_rows, capacity_verdicts
from pwoa_lab.experiments.figures import FIG1_COLUMNS, claim_in_words, phenomenon, seed_summary
from pwoa_lab.experiments.frontier import cached_frontier_result
from pwoa_lab.experiments.runs import prune_row, teacher_row
from pwoa_lab.experiments.selection import (Run, Selection, available_datasets, budgeted_methods,  # noqa: F401
                                            cached_runs, default_selection, missing_runs, run_config_of, run_name,
                                            shipped_teacher, unavailable_datasets)
from pwoa_lab.training.presets import capacity_overrides, eval_settings, preset_config
from pwoa_lab.training.registry import CAPACITY, TEACHER, method_with_role
from pwoa_lab.utils import get_device

smoke_note = defaults.smoke_note  # what every table and verdict of the smoke preset says; else ""

# seconds a run takes when the store holds no measured run like it: a stated guess per preset (2-core CPU); a
# capacity control trains the teacher's adversarial recipe, much longer than a pruning run
DEFAULT_RUN_SECONDS = {"smoke": 5.0, "quick": 60.0, "paper": 3600.0}
DEFAULT_CONTROL_SECONDS = {"smoke": 10.0, "quick": 600.0, "paper": 36000.0}
SAME_RUN = ("dataset", "method", "rate", "scope", "admm_epochs", "retrain_epochs", "n_per_class", "batch_size")
SAME_CONTROL = ("dataset", "model", "method", "scale", "epochs", "n_per_class", "batch_size")


def estimate_seconds(runs: Sequence[Run], sel: Selection, preset: str, cache_dir=None,
                     teacher: nn.Module | None = None) -> tuple[float, bool]:
    """About how long `runs` of `sel` take on this machine: per run the median training + evaluation seconds of
    the stored runs with the same dataset, method, rate, scope and schedule (a capacity control: the same width
    and recipe), measured here or where the cache was filled, else `DEFAULT_RUN_SECONDS` (`DEFAULT_CONTROL_SECONDS`)
    of the preset. -> (seconds, whether every run had a measured twin)."""
    measured = _measured_seconds(str(cache_root(cache_dir)))
    total, all_measured = 0.0, True
    device = str(get_device(None))
    for method, rate, seed in runs:
        if method == CAPACITY:
            teacher = teacher if teacher is not None else shipped_teacher(sel.dataset)
            config = capacity_configs(teacher, sel.dataset, [rate], [seed], sel.scope,
                                      capacity_overrides(sel.dataset, preset))[0][3].to_dict()
            found = measured.get((CAPACITY, *(config.get(k) for k in SAME_CONTROL)))
            guess = DEFAULT_CONTROL_SECONDS
        else:
            config = run_config_of(sel, preset, method, rate, seed, device).to_dict()
            found = measured.get(tuple(config.get(k) for k in SAME_RUN))
            guess = DEFAULT_RUN_SECONDS
        if found:
            total += float(np.median(found))
        else:
            total += guess.get(preset, guess["quick"])
            all_measured = False
    return total, all_measured


_READ_SECONDS: dict[Path, tuple[tuple, tuple | None, float]] = {}  # result.json -> (its stat, its key, seconds)


def _measured_seconds(root: str) -> dict[tuple, list[float]]:
    """{the SAME_RUN fields of a stored run (a control: "capacity" and its SAME_CONTROL fields): [its training +
    evaluation seconds, ...]} of the run store. A file is parsed again only when it changed (its size, inode or
    time), so an explorer refresh costs a directory scan."""
    out: dict[tuple, list[float]] = {}
    for kind in ("prune_row", "capacity_row"):
        for path in Path(root, kind).glob("*/result.json"):
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            known = _READ_SECONDS.get(path)
            if known is None or known[0] != stamp:
                known = _READ_SECONDS[path] = (stamp, *_run_seconds(path, kind))
            if known[1] is not None:
                out.setdefault(known[1], []).append(known[2])
    return out


def _run_seconds(path: Path, kind: str) -> tuple[tuple | None, float]:
    """(the key `estimate_seconds` looks up, training + evaluation seconds) of one stored run; (None, 0) where it
    cannot be read."""
    try:
        record = json.loads(path.read_text())
        config, row = record["config"], record["row"]
        key = (tuple(config.get(k) for k in SAME_RUN) if kind == "prune_row"
               else (CAPACITY, *(config.get(k) for k in SAME_CONTROL)))
        return key, float(row.get("train_seconds") or 0) + float(row.get("eval_seconds") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0.0


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
    teacher = teacher if teacher is not None else shipped_teacher(sel.dataset)
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
            config = run_config_of(sel, preset, method, rate, seed, device)
            prune_row(teacher, config, settings, cache_dir, root=root, progress=False,
                      on_epoch=_epoch_counter(on_epoch, sum(p.epochs for p in config.phases()), should_stop))
            done.append((method, rate, seed))
    except ComputeStopped:
        raise ComputeStopped(done, todo) from None
    if on_run and todo:
        on_run(len(todo), len(todo), todo[-1])
    return todo


def missing_controls(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None) -> list[Run]:
    """The ("capacity", rate, seed) controls of `sel` (with its tick box on) that the cache does not hold yet."""
    sel = sel.checked()
    return _absent(sel, stored_controls(sel, preset, teacher, cache_dir))


def stored_controls(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None) -> pd.DataFrame:
    """The capacity-control rows of `sel` that the cache holds (empty without its tick box)."""
    if not sel.control:
        return pd.DataFrame()
    teacher = teacher if teacher is not None else shipped_teacher(sel.dataset)
    return capacity_rows(teacher, sel.dataset, sel.rates, sel.seeds, eval_settings(sel.dataset, preset), sel.scope,
                         capacity_overrides(sel.dataset, preset), cache_dir, progress=False, cached_only=True)


def _absent(sel: Selection, stored: pd.DataFrame) -> list[Run]:
    have = set(zip(stored.rate.astype(float), stored.seed.astype(int))) if len(stored) else set()
    return [run for run in sel.controls() if (run[1], run[2]) not in have]


def compute_controls(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None, root=None,
                     on_run: Callable[[int, int, Run], None] | None = None,
                     on_epoch: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> list[Run]:
    """Train the capacity controls of `sel` that the cache lacks, one at a time, with `compute_missing`'s hooks:
    `on_run(i, n, ("capacity", rate, seed))`, `on_epoch(done, epochs)`, and `should_stop()` after each, when true
    `ComputeStopped` (the controls finished stay in the cache; the one it interrupts resumes from its last saved
    epoch). -> the controls computed."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else shipped_teacher(sel.dataset)
    settings, overrides = eval_settings(sel.dataset, preset), capacity_overrides(sel.dataset, preset)
    todo = missing_controls(sel, preset, teacher, cache_dir)
    done: list[Run] = []
    try:
        for i, run in enumerate(todo):
            if on_run:
                on_run(i, len(todo), run)
            _check_stop(should_stop)
            _, rate, seed = run
            config = capacity_configs(teacher, sel.dataset, [rate], [seed], sel.scope, overrides)[0][3]
            capacity_rows(teacher, sel.dataset, [rate], [seed], settings, sel.scope, overrides, cache_dir, root=root,
                          progress=False,
                          on_epoch=_epoch_counter(on_epoch, sum(p.epochs for p in config.phases()), should_stop))
            done.append(run)
    except ComputeStopped:
        raise ComputeStopped(done, todo) from None
    if on_run and todo:
        on_run(len(todo), len(todo), todo[-1])
    return todo


def _counted(on_run: Callable[[int, int, Run], None] | None, start: int, total: int):
    """`on_run(i, n, run)` of one part of a computation as run `start + i` of `total` (one count for all parts)."""
    if on_run is None:
        return None
    return lambda i, _n, run: on_run(start + i, total, run)


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
    computed: list[Run] = field(default_factory=list)  # by this request (the controls' as ("capacity", rate, seed))
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
        n = len(self.selection.runs()) + len(self.selection.controls())
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

    `compute`: run the missing runs first (`compute_missing`, then `compute_controls`: one count of runs for
    `on_run`), unless there are more than `max_runs` (then the
    data's `refused` says why); otherwise the cached ones only (the teacher row is evaluated, once, when not
    cached: seconds). `should_stop`: as `compute_missing`; a stopped computation shows what the cache holds then,
    and its `stopped` says how many runs it was to do."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else shipped_teacher(sel.dataset)
    hits = cached_runs(sel, preset, teacher, cache_dir)
    missing = [r for r, hit in hits.items() if hit is None]
    controls = missing_controls(sel, preset, teacher, cache_dir)
    computed, stopped = [], None
    if compute and missing + controls and refusal(len(missing + controls), max_runs) is None:
        try:  # the pruning runs, then the capacity controls: one progress count, one stop
            total = len(missing + controls)
            if missing:
                computed = compute_missing(sel, preset, teacher, cache_dir, root, _counted(on_run, 0, total),
                                           on_epoch, should_stop=should_stop)
            if controls:
                computed += compute_controls(sel, preset, teacher, cache_dir, root,
                                             _counted(on_run, len(missing), total), on_epoch, should_stop)
        except ComputeStopped as stop:
            computed, stopped = computed + stop.computed, len(missing + controls)
        hits = cached_runs(sel, preset, teacher, cache_dir)
    capacity = stored_controls(sel, preset, teacher, cache_dir)
    controls = _absent(sel, capacity)
    settings = eval_settings(sel.dataset, preset)
    eps = preset_config(sel.dataset, preset, scope=sel.scope).eps
    t_row = teacher_row(teacher, sel.dataset, eps, settings, cache_dir, True, root)
    rows = [t_row]
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
                        missing=[r for r, hit in hits.items() if hit is None] + controls, computed=computed,
                        max_runs=max_runs,
                        verdicts=verdicts, layer_names=getattr(teacher, "hidden_names", None), stopped=stopped)
    # with the teacher as the reference star, as `frontier.frontier` draws it
    data.frontier = cached_frontier_result(sel.dataset, sel.rates, sel.methods, sel.seeds, preset, teacher=teacher,
                                           cache_dir=cache_dir, teacher_row=t_row, scope=sel.scope)
    if data.missing:
        data.estimate = estimate_seconds(data.missing, sel, preset, cache_dir, teacher)
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
