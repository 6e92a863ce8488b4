"""Sweeps: any run-config fields crossed with seeds, each run cached on its own, one tidy table back.

    result = sweep({"method": ["naive", "pwoa"], "rate": [4, 8], "lambda_x": [2e-4, 2e-2]}, seeds=(0, 1, 2),
                   dataset="digits", preset="quick")
    result.runs      # one row per run: the grid's fields, seed, natural / fgsm / pgd / aa, sparsity, seconds ...
    result.summary   # mean and std over seeds per grid point
    result.curves    # every run's per-epoch history, with the grid's fields and seed as columns
    result.failed    # runs that raised: their grid point, seed and error (the others are kept)

`backend="local"` (worker processes of this machine) or `"ray"` (tasks on a Ray cluster;
`pwoa_lab.experiments.jobs`). The figures (`pwoa_lab.experiments.figures`) are sweeps over (method, rate) and
(method, mix_ratio).
"""
from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.confidence import INTERVAL_METRICS, add_intervals
from pwoa_lab.experiments.batch import run_configs
from pwoa_lab.experiments.jobs import check_backend, check_workers
from pwoa_lab.experiments.runs import check_run, resolve_teacher
from pwoa_lab.training.presets import eval_settings, preset_config
from pwoa_lab.training.registry import method_names, method_spec
from pwoa_lab.utils import get_device

METRICS = ("natural", "fgsm", "pgd", "aa", "natural_last", "pgd_last")
PLOT_METRICS = METRICS + ("sparsity", "train_seconds")  # what a sweep's plot can show (the CLI's --metric)
RUN_COLUMNS = ("natural", "fgsm", "pgd", "aa", "aa_points", "sparsity", "selected_epoch", "last_epoch",
               "natural_last", "pgd_last", "train_seconds", "eval_seconds", "cached", "key", "device", "cpu", "torch",
               "threads")
# set by the sweep itself, not by a grid: the dataset picks the teacher, seeds come from `seeds`
NOT_IN_GRID = {"dataset": "pass dataset=...", "seed": "pass seeds=...", "device": "pass device=..."}


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """One or more distinct whole-number seeds, else a ValueError that says so."""
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be one or more distinct whole numbers, e.g. (0, 1, 2); got {seeds!r}")
    return seeds


def grid_fields(methods: Sequence[str] | None = None) -> list[str]:
    """The fields a grid may vary for these methods (every field of their config classes but dataset, seed and
    device), sorted."""
    classes = {method_spec(m).config for m in (method_names() if methods is None else methods)}
    names = {f.name for cls in classes for f in fields(cls)} | {"method"}
    return sorted(names - set(NOT_IN_GRID))


def grid_points(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A grid as a list of points: the cartesian product of a {field: values} mapping (in its order), or a list
    of points as given. Field names are checked against the run configs: an unknown one lists the valid ones."""
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not len(values):
                raise ValueError(f"grid[{name!r}] must be a non-empty list of values; got {values!r}")
        points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    else:
        points = [dict(p) for p in grid]
        if not points or not all(isinstance(p, Mapping) for p in grid):
            raise ValueError("grid must be a {field: [values]} mapping or a non-empty list of {field: value} points")
    methods = sorted({p.get("method", defaults.METHOD) for p in points}, key=str)
    for name in sorted({k for p in points for k in p}):
        if name in NOT_IN_GRID:
            raise ValueError(f"{name!r} cannot be a grid field: {NOT_IN_GRID[name]}")
        valid = grid_fields([m for m in methods if m in method_names()] or None)
        if name not in valid:
            raise ValueError(f"unknown grid field {name!r}; valid fields: {', '.join(valid)}")
    return points


def parse_value(name: str, text: str, method: str = defaults.METHOD) -> Any:
    """A grid value written as text (the CLI's `--grid lambda_x=2e-4,2e-2`) as the field's type: int, float, bool,
    str, or None for 'none' where the field allows None. A ValueError names the field and the type it wants."""
    cls = method_spec(method).config
    hints = typing.get_type_hints(cls)
    if name not in hints:
        valid = grid_fields([method])
        raise ValueError(f"unknown grid field {name!r}; valid fields: {', '.join(valid)}")
    hint = hints[name]
    types = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    text = text.strip()
    if text.lower() == "none" and type(None) in typing.get_args(hint):
        return None
    kind = types[0]
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return str(text)
    except ValueError:
        raise ValueError(f"grid field {name!r} takes {getattr(kind, '__name__', kind)} values"
                         f"{' or none' if type(None) in typing.get_args(hint) else ''}; got {text!r}") from None


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """CLI grid options ["method=naive,pwoa", "rate=2,4,8", ...] as a {field: [values]} mapping, typed."""
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ValueError(f"a grid option is FIELD=V1,V2,...; got {item!r}")
        if name in grid:
            raise ValueError(f"grid field {name!r} is given twice; put all its values in one option")
        grid[name] = [v for v in values.split(",") if v.strip()]
    methods = grid.get("method", [defaults.METHOD])
    grid_points({k: ["x"] for k in grid} | {"method": methods})  # field names first: the clearer error

    def owner(name: str) -> str:  # a method whose config has this field (HYDRA's fields are its own)
        fallback = defaults.METHOD
        return next((m for m in methods if name in grid_fields([m])), fallback) if name != "method" else fallback
    return {name: [parse_value(name, v, owner(name)) for v in values] for name, values in grid.items()}


@dataclass
class SweepResult:
    """A sweep's tables (see the module docstring); `fields`: the grid's field names; `submitted`: how many runs
    were computed (0 when everything came from the cache); `extras`: results of `extra_jobs`."""
    runs: pd.DataFrame
    summary: pd.DataFrame
    curves: pd.DataFrame
    failed: pd.DataFrame
    fields: list[str]
    submitted: int = 0
    extras: list = field(default_factory=list)


def sweep(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], seeds: Sequence[int] = (0,),
          dataset: str = defaults.DATASET, preset: str = defaults.PRESET, teacher: nn.Module | str | Path | None = None,
          settings: EvalSettings | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
          root=None, device=None, backend: str = "local", address: str | None = None, workers: int = 1,
          progress: bool = True, desc: str | None = None, errors: str = "keep",
          extra_jobs: Sequence[tuple[Callable, tuple]] = (), on_run: Callable[[dict[str, Any]], None] | None = None,
          **fixed: Any) -> SweepResult:
    """Every point of `grid` (run-config fields, e.g. method, rate, scope, mix_ratio, lambda_x, temperature,
    lr_retrain) once per seed, on the `preset`'s schedule for `dataset`, with `fixed` fields in every run.

    Each run is a cached `prune_row`: what is cached is served at once and never submitted again; what is missing
    runs on `backend` ("local": `workers` processes here; "ray": the Ray cluster at `address`, else RAY_ADDRESS,
    else a local one). A run that raises is listed in `failed` (grid point, seed, error) and the finished runs are
    kept (`errors="raise"` raises instead); rerunning the sweep computes only what is missing. Bad values raise
    before any run starts, with the errors of a single run. `settings`: the test-set evaluation (default: the
    preset's). `on_run(point)` is called with a run's grid point and seed as it finishes (not for cached runs).
    """
    points = grid_points(grid)
    seeds = check_seeds(seeds)
    check_workers(workers)
    check_backend(backend)
    names = list(dict.fromkeys(k for p in points for k in p))
    for name in fixed:
        if name in NOT_IN_GRID:
            raise ValueError(f"{name!r} cannot be fixed here: {NOT_IN_GRID[name]}")
    settings = settings or eval_settings(dataset, preset)
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    # on a cluster each worker picks its own device (a GPU where it has one); the cache key does not hold it
    run_device = str(device) if backend == "local" else None
    jobs = [(point, s) for s in seeds for point in points]
    configs = []
    for point, s in jobs:
        config = preset_config(dataset, preset, **{**fixed, **point, "seed": s, "device": run_device})
        check_run(teacher, config)  # every bad value fails here, before the first run starts
        configs.append(config)
    batch = run_configs(teacher, configs, settings, cache_dir, use_cache, root, workers, progress,
                        desc or f"sweep ({dataset}, {preset})", extra_jobs, backend, address, errors,
                        on_run=None if on_run is None else lambda i: on_run({**jobs[i][0], "seed": jobs[i][1]}))
    rows, curves, failed = [], [], []
    for (point, s), config, result in zip(jobs, configs, batch.results):
        label = {**point, "seed": s}
        if result is None:
            continue
        row, history = result
        rows.append({"dataset": dataset, "method": config.method, "rate": float(config.rate),
                     **{k: v for k, v in label.items() if k not in ("method", "rate")},
                     **{k: row.get(k) for k in RUN_COLUMNS if k in row}})
        curves.append(history.assign(**{k: [v] * len(history) for k, v in label.items()}))
    for index, failure in batch.failures:
        point, s = jobs[index]
        failed.append({**point, "seed": s, "error": failure.error, "traceback": failure.traceback})
    runs = pd.DataFrame(rows)
    keys = ["dataset"] + [k for k in ("method", "rate") if k not in names] + names
    return SweepResult(runs=runs, summary=summarize(runs, [k for k in keys if k in runs.columns],
                                                    cache_dir=cache_dir),
                       curves=pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
                       failed=pd.DataFrame(failed, columns=names + ["seed", "error", "traceback"]),
                       fields=names, submitted=batch.submitted, extras=batch.extras)


def summarize(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str] = METRICS,
              cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per grid point: columns `keys`, seeds (how many),
    sparsity (mean), and for each metric present `m` and `m_std` (NaN for a single seed), and for natural, pgd and
    aa `m_low` / `m_high`: the 95% interval over seeds and test images (NaN where the runs' per-image outcomes
    are not in the run store)."""
    if runs.empty:
        return pd.DataFrame(columns=list(keys) + ["seeds"])
    metrics = [m for m in metrics if m in runs.columns]
    # None (a field left at its default) is a value of its own, not a missing group; other key columns keep their
    # dtype
    keyed = runs.assign(**{k: runs[k].astype(object).where(runs[k].notna(), "none") for k in keys
                           if runs[k].isna().any()})
    grouped = keyed.groupby(list(keys), sort=False)
    out = grouped[metrics + ["sparsity"]].mean()
    out.insert(0, "seeds", grouped.size())
    for m in metrics:
        out[f"{m}_std"] = grouped[m].std(ddof=1)
    out = out.reset_index()
    return add_intervals(out, keyed, list(keys), [m for m in metrics if m in INTERVAL_METRICS], cache_dir)
