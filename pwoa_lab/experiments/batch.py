"""Batches of runs: the cached ones at once, the missing ones computed by `pwoa_lab.experiments.jobs.run_jobs`.

- `run_configs(teacher, configs, ...)`: cached runs come back at once; the missing ones are computed by
  `run_jobs` and stored into the cache here, by the caller's process, as each one arrives: workers need no shared
  file system, a run that fails loses none that finished, and a rerun computes only what is still missing. Each
  run is computed under its cache entry's lock: a run that another process is computing is waited for and read
  back, never computed twice. A worker process imports the modules that registered the user's methods and
  datasets (`worker_modules`) before it runs.
- `prune_rows`: the same, raising on the first failure (the figures and analyses).
"""
from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch.nn as nn
from tqdm.auto import tqdm

from pwoa_lab.core.data import check_available
from pwoa_lab.core.datasets import dataset_module
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.jobs import JobFailure, check_backend, check_workers, run_jobs
from pwoa_lab.experiments.runs import cached_prune_row, compute_outcome, resolved_only, row_key, store_outcome
from pwoa_lab.io.cache import EntryLock, ResultCache, compute_once
from pwoa_lab.training.loop import RunConfig
from pwoa_lab.training.registry import defining_module, method_names, method_spec


def run_priority(config: RunConfig) -> float:
    """Longest first, so that no long run starts last: distillation and adversarial methods (a teacher forward,
    HSIC, PGD batches; robust models, on which the attacks of the evaluation run longest), then naive pruning,
    then the one-shot control (no training); within a method the lowest rate first."""
    method = getattr(config, "method", "")
    tier = float(method_spec(method).cost) if method in method_names() else 3.0
    return tier - float(config.rate) / 1e6


@dataclass
class RunBatch:
    """What `run_configs` returns: one entry per config, in order: (row, history), or None where the run failed;
    `failures`: (config index, `JobFailure`) for those; `extras`: the results of `extra_jobs`; `submitted`: how
    many runs were computed (not served from the cache)."""
    results: list
    failures: list[tuple[int, JobFailure]] = field(default_factory=list)
    extras: list = field(default_factory=list)
    submitted: int = 0


def run_configs(teacher: nn.Module, configs: Sequence[RunConfig], settings: EvalSettings = EvalSettings(),
                cache_dir: str | Path | None = None, use_cache: bool = True, root=None, workers: int = 1,
                progress: bool = True, desc: str = "runs", extra_jobs: Sequence[tuple[Callable, tuple]] = (),
                backend: str = "local", address: str | None = None, errors: str = "keep",
                on_run: Callable[[int], None] | None = None) -> RunBatch:
    """`prune_row` for each config: cached rows at once, the missing ones computed with `run_jobs` (with
    `extra_jobs` alongside them, first) and stored into the cache here as each one finishes. A config asked for
    twice (a control that no seed changes) is computed once. `errors="keep"`: a failed run is reported in
    `failures` and the others are kept; "raise": the first failure raises (finished runs are already stored).
    `on_run(i)` is called as config i's run finishes and is stored.

    With the cache, each run is computed under its entry's lock (`ResultCache.lock`): a run that another process
    holds is waited for once this process's own runs are done, and read back from the cache (computed here only
    if that process stopped without storing it). The data of the runs to compute is checked before any starts."""
    workers = check_workers(workers)
    check_backend(backend)
    configs = [resolved_only(c) for c in configs]
    results: list = [cached_prune_row(teacher, c, settings, cache_dir, use_cache) for c in configs]
    same: dict[str, list[int]] = {}
    for i, hit in enumerate(results):
        if hit is None:
            same.setdefault(json.dumps(configs[i].to_dict(), sort_keys=True, default=str), []).append(i)
    groups = list(same.values())
    for dataset in dict.fromkeys(configs[g[0]].dataset for g in groups):
        check_available(dataset, root)  # one clear error before any job, not one per job
    keys = {g[0]: row_key(teacher, configs[g[0]], settings) for g in groups}
    cache = ResultCache("prune_row", cache_dir)
    local = backend == "local"
    extra = list(extra_jobs)
    if groups and (workers > 1 or not local):
        teacher = copy.deepcopy(teacher).cpu()  # what goes to the worker processes
        modules = worker_modules([configs[g[0]] for g in groups])
        if modules:  # a worker process starts fresh: it imports what registered the user's methods and datasets
            extra = [(functools.partial(import_then_call, modules, fn), args) for fn, args in extra]
    else:
        modules = ()
    batch = RunBatch(results)

    def fill(group: list[int], value: Any) -> None:
        for i in group:
            if isinstance(value, JobFailure):
                results[i] = None
                batch.failures.append((i, value))
            else:
                results[i] = value

    def read(group: list[int]) -> bool:
        hit = cached_prune_row(teacher, configs[group[0]], settings, cache_dir, use_cache)
        if hit is not None:
            fill(group, hit)
        return hit is not None

    def compute(mine: list[list[int]], locks: dict[str, EntryLock | None]) -> None:
        nonlocal extra
        done = _compute(teacher, configs, mine, keys, locks, settings, cache_dir, use_cache, root, workers,
                        progress, desc, extra, backend, address, errors, on_run, modules)
        if extra:
            batch.extras = done[:len(extra)]
        for group, value in zip(mine, done[len(extra):]):
            fill(group, value if isinstance(value, JobFailure) else
                 ({**value.row, "cached": False, "key": value.key}, value.history))
        batch.submitted += len(mine)
        extra = []  # the extra jobs run in the first round only

    def waiting(n: int) -> None:
        if progress:
            tqdm.write(f"{n} run(s) are being computed by another process on this cache; waiting for them")

    compute_once(cache, groups, lambda group: keys[group[0]], read, compute, use_cache, waiting)
    return batch


def worker_modules(configs: Sequence[RunConfig]) -> tuple[str, ...]:
    """The modules a worker process must import before it can run `configs`: those that registered a method or
    dataset from outside the kit. One registered by a notebook or script ("__main__") cannot be imported by a fresh
    process: a ValueError says how to make it importable."""
    found: dict[str, str] = {}
    for config in configs:
        method = getattr(config, "method", None)
        owners = [(f"dataset {config.dataset!r}", dataset_module(config.dataset))]
        if method in method_names():
            owners.append((f"method {method!r}", defining_module(method)))
        for what, module in owners:
            if module is not None:
                found.setdefault(module, what)
    if "__main__" in found:
        raise ValueError(
            f"{found['__main__']} is registered in this notebook or script (__main__), and worker processes start "
            "fresh: they cannot import it. Put its definition and its register(...) call in a module on the Python "
            "path (e.g. my_methods.py beside the notebook) and import that module, or run with workers=1 (the "
            "runs then compute in this process).")
    return tuple(found)


def import_then_call(modules: Sequence[str], fn: Callable, *args):
    """In a worker process: import `modules` (their imports register the user's methods and datasets), then
    fn(*args)."""
    import importlib
    for module in modules:
        importlib.import_module(module)
    return fn(*args)


def _compute(teacher, configs, mine, keys, locks: dict[str, EntryLock | None], settings, cache_dir, use_cache,
             root, workers, progress, desc, extra, backend, address, errors, on_run, modules=()) -> list:
    """One round of `run_configs`: the runs of `mine` (their locks held) and the `extra` jobs, through
    `run_jobs`; each run is stored, and its lock released, as it arrives."""
    local = backend == "local"
    jobs = list(extra)
    for group in mine:
        # local workers share this file system: an interrupted run resumes from its state in the cache folder
        state = ResultCache("prune_row", cache_dir).folder(keys[group[0]]) / "state.pt" \
            if local and use_cache else None
        run = functools.partial(compute_outcome, progress=False, keep_model=use_cache, state_path=state)
        jobs.append((functools.partial(import_then_call, modules, run) if modules else run,
                     (teacher, configs[group[0]], settings, root)))
    # extra jobs (the teacher's evaluation: seconds) last
    priority = [0.5] * len(extra) + [run_priority(configs[g[0]]) for g in mine]

    def store(j: int, value: Any) -> None:
        if j < len(extra):
            return
        group = mine[j - len(extra)]
        if use_cache:
            store_outcome(value, cache_dir)
        lock = locks.get(keys[group[0]])
        if lock is not None:
            lock.release()  # a process waiting for this run reads it now
        if on_run is not None:
            on_run(group[0])

    return run_jobs(jobs, workers if mine else 1, progress, desc, priority, backend if mine else "local",
                    address, errors, on_result=store)


def prune_rows(teacher: nn.Module, configs: Sequence[RunConfig], settings: EvalSettings = EvalSettings(),
               cache_dir: str | Path | None = None, use_cache: bool = True, root=None, workers: int = 1,
               progress: bool = True, desc: str = "runs", extra_jobs: Sequence[tuple[Callable, tuple]] = ()
               ) -> tuple[list[tuple[dict[str, Any], pd.DataFrame]], list]:
    """`run_configs` on the local backend that raises on the first failure: (rows, results of `extra_jobs`)."""
    batch = run_configs(teacher, configs, settings, cache_dir, use_cache, root, workers, progress, desc,
                        extra_jobs, errors="raise")
    return batch.results, batch.extras
