"""Jobs: many independent runs at once, in local worker processes.

`run_jobs(jobs, workers)` runs importable functions one after the other or in a process pool (torch's threads
split between the workers); `prune_rows(teacher, configs, ...)` serves cached runs at once and sends only the
missing ones to `run_jobs`. Every run seeds itself, so results never depend on the number of workers.
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .evaluation import EvalSettings
from .loop import RunConfig
from .runs import cached_prune_row, prune_row


def check_workers(workers: Any) -> int:
    """A number of worker processes: a whole number >= 1, else a ValueError that says so."""
    if isinstance(workers, bool) or not isinstance(workers, (int, float)) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1; got {workers!r}")
    return int(workers)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(jobs: Sequence[tuple[Callable, tuple]], workers: int = 1, progress: bool = True,
             desc: str = "runs", priority: Sequence[float] | None = None) -> list:
    """[fn(*args) for fn, args in jobs], in order: one after the other (`workers` = 1) or in `workers`
    processes at once, torch's threads split between them (on a 2-core CPU two small jobs at 1 thread each
    finish sooner than one after the other at 2). `fn` must be importable (a module-level function or a
    functools.partial of one). `priority` (one number per job): with workers, jobs start in descending priority
    (give the longest jobs the highest, so that no long job starts last); the returned list keeps the order of
    `jobs`."""
    workers = check_workers(workers)
    out: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress or not jobs)
    if workers == 1 or len(jobs) < 2:
        for i, (fn, args) in enumerate(jobs):
            out[i] = fn(*args)
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        workers = min(int(workers), len(jobs))
        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            start = sorted(range(len(jobs)), key=lambda i: -priority[i]) if priority is not None else range(len(jobs))
            futures = {pool.submit(jobs[i][0], *jobs[i][1]): i for i in start}
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                bar.update()
    bar.close()
    return out


def run_priority(config: RunConfig) -> float:
    """Longest first: runs whose models stay robust (attacks on them run longest), lowest rate first; naive runs
    (robust accuracy near 0) last."""
    return (1.0 if config.method == "naive" else 2.0) - float(config.rate) / 1e6


def prune_rows(teacher: nn.Module, configs: Sequence[RunConfig], settings: EvalSettings = EvalSettings(),
               cache_dir: str | Path | None = None, use_cache: bool = True, root=None, workers: int = 1,
               progress: bool = True, desc: str = "runs", extra_jobs: Sequence[tuple[Callable, tuple]] = ()
               ) -> tuple[list[tuple[dict[str, Any], pd.DataFrame]], list]:
    """`prune_row` for each config, in order, and the results of `extra_jobs` (run alongside them, first).

    Cached rows come back at once; the others (and `extra_jobs`) go through `run_jobs` with `workers`."""
    workers = check_workers(workers)
    out: list = [cached_prune_row(teacher, c, settings, cache_dir, use_cache) for c in configs]
    missing = [i for i, hit in enumerate(out) if hit is None]
    same = {}  # a run asked for twice (e.g. a control that no seed changes) is computed once
    for i in missing:
        same.setdefault(json.dumps(configs[i].resolved().to_dict(), sort_keys=True, default=str), []).append(i)
    todo = [group[0] for group in same.values()]
    if todo and workers > 1:
        teacher = copy.deepcopy(teacher).cpu()  # what goes to the worker processes
    run = functools.partial(prune_row, progress=False)
    jobs = list(extra_jobs) + [(run, (teacher, configs[i], settings, cache_dir, use_cache, root)) for i in todo]
    priority = [3.0] * len(extra_jobs) + [run_priority(configs[i]) for i in todo]
    results = run_jobs(jobs, workers if todo else 1, progress, desc, priority)
    for group, result in zip(same.values(), results[len(extra_jobs):]):
        for i in group:
            out[i] = result
    return out, results[:len(extra_jobs)]
