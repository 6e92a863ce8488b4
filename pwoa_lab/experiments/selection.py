"""What the explorer's controls select: the data set, methods, rates, scope, seeds and the capacity control.

- `Selection` (`checked()`: rates as sorted floats, or a ValueError that says what is wrong; `runs()`: every
  (method, rate, seed)); `default_selection(preset)`; `available_datasets` / `unavailable_datasets`.
- `run_config_of(selection, preset, method, rate, seed, device)`: a run's config, built as `figures.figure1`
  builds it, so that the explorer and the commands find the same cache entries; `cached_runs`, `missing_runs`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import check_available
from pwoa_lab.experiments.figures import check_seeds
from pwoa_lab.experiments.runs import cached_prune_row, resolve_teacher
from pwoa_lab.pruning.masks import SCOPES
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.presets import PRESETS, eval_settings, preset_config
from pwoa_lab.training.registry import CAPACITY, method_names, method_spec
from pwoa_lab.utils import check_rate, get_device

Run = tuple[str, float, int]  # (method, rate, seed)

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

    def controls(self) -> list[Run]:
        """Every ("capacity", rate, seed) control of the selection (none without its tick box)."""
        return [(CAPACITY, float(r), s) for s in self.seeds for r in self.rates] if self.control else []


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


def run_config_of(sel: Selection, preset: str, method: str, rate: float, seed: int, device: str):
    # exactly as figures.figure1 builds its configs, so that both find the same cache entries
    return preset_config(sel.dataset, preset, method=method, rate=rate, seed=seed, device=device, scope=sel.scope)


@functools.lru_cache(maxsize=None)
def shipped_teacher(dataset: str) -> nn.Module:
    """The shipped teacher of `dataset`, loaded once."""
    return resolve_teacher(dataset, None, get_device(None))


def cached_runs(sel: Selection, preset: str, teacher: nn.Module, cache_dir=None
                ) -> dict[Run, tuple[dict[str, Any], pd.DataFrame] | None]:
    """{run of `sel`: its stored (row, history), or None where the cache lacks it}."""
    device = str(get_device(None))
    settings = eval_settings(sel.dataset, preset)
    return {(m, r, s): cached_prune_row(teacher, run_config_of(sel, preset, m, r, s, device), settings, cache_dir)
            for m, r, s in sel.runs()}


def missing_runs(sel: Selection, preset: str, teacher: nn.Module | None = None, cache_dir=None) -> list[Run]:
    """The (method, rate, seed) runs of `sel` that the cache does not hold yet."""
    sel = sel.checked()
    teacher = teacher if teacher is not None else shipped_teacher(sel.dataset)
    return [run for run, hit in cached_runs(sel, preset, teacher, cache_dir).items() if hit is None]
