"""Jobs: many independent runs at once, in local worker processes or as tasks on a Ray cluster.

- `run_jobs(jobs, workers, backend=...)`: importable functions run one after the other, in a local process pool
  (`defaults.RUN_THREADS` torch threads a worker), or as Ray tasks (`backend="ray"`: one task per job, a GPU each
  on a cluster with GPUs, else a CPU). Failures either raise or come back as `JobFailure` (`errors="keep"`).
  Ctrl-C stops the worker processes at once (they ignore SIGINT themselves: no traceback from each of them).
Batches of cached runs on top of it: `pwoa_lab.experiments.batch` (`run_configs`, `prune_rows`). Every run seeds itself and computes with `defaults.RUN_THREADS` threads (`experiments.runs`), so results never
depend on the backend, the number of workers or the machine's cores.
"""
from __future__ import annotations

import copy
import functools
import os
import pickle
import signal
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pwoa_lab import defaults
from pwoa_lab.utils import get_device

BACKENDS = ("local", "ray")


def auto_workers(device: str | None = None) -> int:
    """How many runs to compute at once by default: 1 on a GPU (one device to share), else the CPU cores, at most 4
    (memory). Each run computes with `defaults.RUN_THREADS` threads, so the processes are what use the cores."""
    if get_device(device).type != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def check_workers(workers: Any) -> int:
    """A number of worker processes: a whole number >= 1, else a ValueError that says so."""
    if isinstance(workers, bool) or not isinstance(workers, (int, float)) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1; got {workers!r}")
    return int(workers)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return backend


@dataclass
class JobFailure:
    """A job that raised: its index in the job list, the error in one line and the worker's traceback."""
    index: int
    error: str
    traceback: str = ""


def _capture(fn: Callable, args: tuple, threads: int | None = None) -> tuple[bool, Any]:
    """fn(*args) as (True, value), or (False, (one-line error, traceback)): a failing job never takes the others
    down with it."""
    if threads:
        torch.set_num_threads(threads)
    try:
        return True, fn(*args)
    except Exception as err:  # reported to the caller with the job's config; the other jobs go on
        return False, (f"{type(err).__name__}: {err}", traceback.format_exc())


def _capture_spread(fn: Callable, threads: int | None, *args: Any) -> tuple[bool, Any]:
    """`_capture` with the job's arguments spread out: Ray resolves object references only in top-level
    arguments."""
    return _capture(fn, args, threads)


class _Plain:
    """A value that crosses to or from a local worker as plain pickled bytes (a copy): multiprocessing would
    otherwise hand torch tensors over as shared-memory file descriptors, served by a thread of the sending
    process, and a worker stopped by Ctrl-C while it fetches one makes that thread print a traceback. Pickled
    lazily, when the executor sends the value; it arrives as the value itself."""

    def __init__(self, value: Any):
        self.value = value

    def __reduce__(self):
        return pickle.loads, (pickle.dumps(self.value, protocol=pickle.HIGHEST_PROTOCOL),)


def _capture_plain(fn: Callable, args: tuple) -> tuple[bool, Any]:
    """`_capture` in a local worker: the result goes back as plain bytes (`_Plain`)."""
    ok, value = _capture(fn, args)
    return ok, _Plain(value)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    # Ctrl-C reaches every process of the terminal's group: the parent stops the workers, and reports it once
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is made of inter-process semaphores, which a stopped worker leaves behind (and Python
    # then warns of "leaked semaphore objects"); a worker's bars are off and its own, so a thread lock does
    tqdm.set_lock(threading.RLock())


def run_jobs(jobs: Sequence[tuple[Callable, tuple]], workers: int = 1, progress: bool = True,
             desc: str = "runs", priority: Sequence[float] | None = None, backend: str = "local",
             address: str | None = None, errors: str = "raise",
             on_result: Callable[[int, Any], None] | None = None) -> list:
    """[fn(*args) for fn, args in jobs], in order.

    backend "local": one after the other (`workers` = 1) or in `workers` processes at once, each with
    `defaults.RUN_THREADS` torch threads (on a 2-core CPU two small jobs at 1 thread each finish sooner than one
    after the other at 2; the runs set that count themselves, so their numbers do not depend on `workers`).
    backend "ray": each job a Ray task on the cluster at `address` (else RAY_ADDRESS, else a local cluster started
    here and stopped at the end); `workers` is ignored, the cluster's resources decide.
    `fn` must be importable (a module-level function or a functools.partial of one). `priority` (one number per
    job): jobs start in descending priority (the longest first, so that no long job starts last).
    `errors`: "raise" (the first failure raises) or "keep" (a failed job's slot holds a `JobFailure`).
    `on_result(i, value)` is called here, in this process, as each successful job finishes; if it raises, the job
    counts as failed.
    """
    workers = check_workers(workers)
    check_backend(backend)
    if errors not in ("raise", "keep"):
        raise ValueError(f"errors must be 'raise' or 'keep'; got {errors!r}")
    out: list = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda i: -priority[i]) if priority is not None else list(range(len(jobs)))
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress or not jobs)

    def finish(i: int, ok: bool, value: Any) -> None:
        if ok and on_result is not None:
            try:  # e.g. storing the result: a result that cannot be taken counts as a failed job
                on_result(i, value)
            except Exception as err:
                if errors == "raise":
                    raise
                ok, value = False, (f"{type(err).__name__}: {err}", traceback.format_exc())
        if ok:
            out[i] = value
        elif errors == "raise":
            raise RuntimeError(f"job {i} failed: {value[0]}\n{value[1]}")
        else:
            out[i] = JobFailure(i, *value)
        bar.update()

    try:
        if not jobs:
            pass
        elif backend == "ray":
            _run_ray(jobs, order, address, finish)
        elif workers == 1 or len(jobs) < 2:
            for i in range(len(jobs)):
                if errors == "raise":  # in this process: the job's own exception, with its own traceback
                    finish(i, True, jobs[i][0](*jobs[i][1]))
                else:
                    finish(i, *_capture(*jobs[i]))
        else:
            _run_pool(jobs, order, workers, finish)
    finally:
        bar.close()
    return out


def _run_pool(jobs, order, workers: int, finish) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    workers = min(workers, len(jobs))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(defaults.RUN_THREADS,)) as pool:
        futures = {pool.submit(_capture_plain, jobs[i][0], _Plain(jobs[i][1])): i for i in order}
        try:
            for future in as_completed(futures):
                try:
                    ok, value = future.result()
                except Exception as err:  # the worker process itself died (killed, out of memory)
                    ok, value = False, (f"{type(err).__name__}: {err}", traceback.format_exc())
                finish(futures[future], ok, value)
        except KeyboardInterrupt:  # stop now: the runs' resume states and the finished runs are kept
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)  # the workers are gone: this only tidies the queues
            raise
        except BaseException:  # a failure with errors="raise": do not start the jobs still queued
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def import_ray():
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("the ray backend needs Ray: pip install -e '.[cluster]' (or pip install ray), "
                          "or use backend='local'") from err
    return ray


def start_local_ray_defaults() -> None:
    """Ray settings for a cluster started on a small or busy machine: its raylet waits 15 s for its agents by
    default, which a loaded 2-core CPU overruns (the node then fails to start); allow 120 s. A value set in the
    environment wins."""
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")


def _run_ray(jobs, order, address: str | None, finish) -> None:
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        start_local_ray_defaults()
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        # one GPU a task where the cluster has them, else one CPU; torch then runs one thread per CPU it was given
        options = {"num_cpus": 1, "num_gpus": 1} if gpus else {"num_cpus": 1}
        task = ray.remote(**options)(_capture_spread)
        shared: dict[int, Any] = {}  # a big argument (the teacher) goes into the object store once, not per task

        def put(arg):
            if isinstance(arg, nn.Module):
                if id(arg) not in shared:
                    shared[id(arg)] = ray.put(copy.deepcopy(arg).cpu())
                return shared[id(arg)]
            return arg

        refs = {task.remote(jobs[i][0], defaults.RUN_THREADS, *(put(a) for a in jobs[i][1])): i for i in order}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ok, value = ray.get(done[0])
            except Exception as err:  # the worker died, the node went away, the task could not be scheduled
                ok, value = False, (f"{type(err).__name__}: {err}", traceback.format_exc())
            finish(refs[done[0]], ok, value)
    finally:
        if started_here:
            ray.shutdown()
