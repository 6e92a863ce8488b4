"""Is it pruning, or size? The capacity control: per pruning rate, a dense network of the pruned network's size.

For a rate R (and the scope of the figure), `pruning.capacity` finds the width multiplier of the teacher's own
family whose dense parameter count is within 5% of the pruned network's nonzero parameters. That network is trained
from scratch with the teacher's own recipe (its `TeacherConfig`, recorded in the teacher's checkpoint: the same
attack, eps, epochs and schedule; only the width and the seed differ), evaluated like every Figure-1 row, and stored
in the run store (`capacity_row`), computed on the local or Ray backend like the pruning runs.

Read beside a pruned method at the same rate (`capacity_verdicts`, paired over the same test images): a method
"near" the control loses what a network of that size cannot hold anyway; "above" it, the sparse network holds more
than a dense one of its size; "far below" it, the method (not the size) loses the robustness.
"""
from __future__ import annotations

import functools
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch.nn as nn
from tqdm.auto import tqdm

from pwoa_lab import defaults
from pwoa_lab.core.datasets import dataset_code
from pwoa_lab.core.evaluation import METRIC_WORDS, EvalSettings, evaluate_points
from pwoa_lab.core.intervals import Interval
from pwoa_lab.experiments.batch import import_then_call, worker_modules
from pwoa_lab.experiments.confidence import contrast_intervals, group_outcomes
from pwoa_lab.experiments.jobs import run_jobs
from pwoa_lab.experiments.runs import run_config
from pwoa_lab.io.cache import EntryLock, ResultCache, code_fingerprint, compute_once, entry_key
from pwoa_lab.pruning.capacity import capacity_scale, pruned_weight_count
from pwoa_lab.pruning.masks import rate_words
from pwoa_lab.training.methods import TeacherConfig
from pwoa_lab.training.registry import CAPACITY, TEACHER
from pwoa_lab.utils import run_environment, torch_threads, versions

TOLERANCE = 3.0  # points: a method within this of the control (both ends of the interval) is "near" it
CAPACITY_RULE = ("each pruned method minus the dense network of its size at the same rate, paired on the same test "
                 f"images (95% interval over seeds and images): 'above' where the interval lies above 0, 'far below' "
                 f"where it lies below -{TOLERANCE:g} points, 'near' where it lies within +-{TOLERANCE:g}, else "
                 "'inconclusive'")


def teacher_recipe(teacher: nn.Module) -> dict[str, Any]:
    """The `TeacherConfig` fields a kit-trained teacher was trained with (read from its checkpoint), without its
    seed and device. A ValueError when the teacher carries none (an imported teacher, or a model made in Python)."""
    recipe = getattr(teacher, "kit_recipe", None)
    if not isinstance(recipe, dict):
        raise ValueError("the capacity control trains a smaller dense network with the teacher's own recipe, and "
                         "this teacher carries none: pass a teacher checkpoint trained by `pwoa-lab train-teacher` "
                         "(the shipped teachers are), whose metadata records its TeacherConfig")
    names = {f.name for f in fields(TeacherConfig)} - {"seed", "device", "scale"}
    out = {k: v for k, v in recipe.items() if k in names}
    out["model"] = out.get("model") or getattr(teacher, "kit_name", None)
    return out


def capacity_configs(teacher: nn.Module, dataset: str, rates: Sequence[float], seeds: Sequence[int],
                     scope: str = "all", overrides: dict[str, Any] | None = None
                     ) -> list[tuple[float, int, int, TeacherConfig]]:
    """(rate, seed, target weights, resolved config) of every control run: the teacher's recipe at the width whose
    dense count matches the pruned network's at `rate` (`overrides`: e.g. a smoke preset's shorter schedule)."""
    recipe = {**teacher_recipe(teacher), **(overrides or {}), "dataset": dataset}
    out = []
    for rate in rates:
        target = pruned_weight_count(teacher, rate, scope)
        width = capacity_scale(recipe["model"], dataset, target)
        for seed in seeds:
            out.append((float(rate), int(seed), target, TeacherConfig(**{**recipe, "scale": width.scale,
                                                                         "seed": int(seed)}).resolved()))
    return out


def capacity_key(config: TeacherConfig, settings: EvalSettings) -> str:
    """The store key of a control run: its resolved config, the evaluation, the code (and a user dataset's code)."""
    code = {"dataset_code": c} if (c := dataset_code(config.dataset)) is not None else {}
    return entry_key("capacity_row", {"config": config.to_dict(), "eval": settings.__dict__, **code})


def compute_capacity(config: TeacherConfig, rate: float, target: int, settings: EvalSettings, root=None,
                     state_path: str | Path | None = None, on_epoch: Callable[[dict], None] | None = None
                     ) -> dict[str, Any]:
    """Train one control (the teacher's recipe, narrower) and evaluate it: the record the store keeps (row,
    per-image outcomes, history, code fingerprint). `state_path`: where the training saves its state after each
    epoch and resumes from (`pwoa_lab.training.loop`); `on_epoch(row)`: after each epoch. Computes with
    `defaults.RUN_THREADS` threads."""
    with torch_threads(defaults.RUN_THREADS):
        result = run_config(None, config, root=root, progress=False, on_epoch=on_epoch, state_path=state_path)
        measured, points = evaluate_points(result.model, config.dataset, config.eps, settings, root)
    weights = sum(p.numel() for p in result.model.parameters())
    row = {"dataset": config.dataset, "method": CAPACITY, "rate": float(rate), "seed": config.seed, "mix_ratio": 1.0,
           **measured, "sparsity": 0.0, "weights": weights, "target_weights": int(target), "scale": config.scale,
           "selected_epoch": result.selected_epoch, "train_seconds": result.train_seconds,
           **run_environment(next(result.model.parameters()).device)}
    return {"row": row, "points": points.to_record(), "history": result.history.to_dict("list"),
            "config": config.to_dict(), "code": code_fingerprint(), "versions": versions()}


def capacity_rows(teacher: nn.Module, dataset: str, rates: Sequence[float], seeds: Sequence[int],
                  settings: EvalSettings, scope: str = "all", overrides: dict[str, Any] | None = None,
                  cache_dir: str | Path | None = None, use_cache: bool = True, root=None, workers: int = 1,
                  backend: str = "local", address: str | None = None, progress: bool = True,
                  cached_only: bool = False, on_epoch: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """The capacity control's rows (one per rate and seed), from the store or computed (in `workers` processes or
    on Ray) and stored as each arrives: a rerun computes only what is missing. Each control is trained under its
    store entry's lock (another process asking for the same control waits and reads it back); on the local backend
    its training state is saved in the entry after every epoch, so an interrupted control resumes from its last
    finished epoch. `cached_only`: only the stored rows (none computed). `on_epoch(row)`: called after each
    training epoch (in this process: `workers` 1 on the local backend only)."""
    if on_epoch is not None and (workers > 1 or backend != "local"):
        raise ValueError("on_epoch is called in this process: use workers=1 on the local backend with it")
    plan = capacity_configs(teacher, dataset, rates, seeds, scope, overrides)
    cache = ResultCache("capacity_row", cache_dir, enabled=use_cache)
    keys = [capacity_key(config, settings) for _, _, _, config in plan]
    rows: list[dict | None] = [None] * len(plan)

    def read(i: int) -> bool:
        hit = cache.get(keys[i])
        if hit is not None:
            rows[i] = {**hit["row"], "cached": True, "key": keys[i]}
        return hit is not None

    todo = [i for i in range(len(plan)) if not read(i)]

    def compute(mine: list[int], locks: dict[str, EntryLock | None]) -> None:
        if not mine:
            return
        modules = worker_modules([plan[i][3] for i in mine]) if workers > 1 or backend != "local" else ()
        local = backend == "local" and use_cache  # local workers share this file system: the state can resume
        jobs = []
        for i in mine:
            run = functools.partial(compute_capacity, on_epoch=on_epoch,
                                    state_path=cache.folder(keys[i]) / "state.pt" if local else None)
            jobs.append((functools.partial(import_then_call, modules, run) if modules else run,
                         (plan[i][3], plan[i][0], plan[i][2], settings, root)))

        def store(j: int, record: dict) -> None:
            i = mine[j]
            if record.get("code") != code_fingerprint():
                raise ValueError("a capacity control was computed by different pwoa-lab code: install the same "
                                 "version of the kit on every worker")
            if use_cache:
                cache.put(keys[i], record)
                (cache.folder(keys[i]) / "state.pt").unlink(missing_ok=True)  # the stored result replaces it
            rows[i] = {**record["row"], "cached": False, "key": keys[i] if use_cache else None}
            lock = locks.get(keys[i])
            if lock is not None:
                lock.release()  # a process waiting for this control reads it now

        run_jobs(jobs, workers, progress, f"capacity control ({dataset})", backend=backend, address=address,
                 on_result=store)

    def waiting(n: int) -> None:
        if progress:
            tqdm.write(f"{n} capacity control(s) are being trained by another process on this cache; waiting")

    if not cached_only:
        compute_once(cache, todo, lambda i: keys[i], read, compute, use_cache, waiting)
    return pd.DataFrame([r for r in rows if r is not None])


def capacity_verdicts(df: pd.DataFrame, metric: str, cache_dir: str | Path | None = None,
                      tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Per rate and pruned method of a Figure-1 table holding capacity rows: method minus control (mean over seeds
    and images, paired 95% interval), the verdict (`CAPACITY_RULE`) and the training seconds of both (the mean of
    one run). Columns: rate, method, control, value, difference, low, high, verdict, seconds, control_seconds."""
    groups = group_outcomes(df, ["method", "rate"], metric, cache_dir)
    out = []
    control = df[df.method == CAPACITY]
    for rate in sorted(control.rate.unique()):
        ctrl = control[control.rate == rate]
        for method in [m for m in df.method.unique() if m not in (TEACHER, CAPACITY)]:
            sel = df[(df.method == method) & (df.rate == rate)]
            if sel.empty:
                continue
            iv = contrast_intervals(groups, {"d": {(method, float(rate)): 1.0, (CAPACITY, float(rate)): -1.0}})["d"]
            out.append({"rate": float(rate), "method": method, "control": float(ctrl[metric].mean()),
                        "value": float(sel[metric].mean()),
                        "difference": iv.estimate if iv is not None else float("nan"),
                        "low": iv.low if iv is not None else float("nan"),
                        "high": iv.high if iv is not None else float("nan"),
                        "verdict": capacity_verdict(iv, tolerance),
                        "seconds": float(sel.train_seconds.mean()),
                        "control_seconds": float(ctrl.train_seconds.mean())})
    return pd.DataFrame(out)


def capacity_verdict(iv: Interval | None, tolerance: float = TOLERANCE) -> str:
    """'above', 'far below', 'near' or 'inconclusive' for the interval of method minus control (`CAPACITY_RULE`)."""
    if iv is None:
        return "inconclusive"
    if iv.low > 0:
        return "above"
    if iv.high < -tolerance:
        return "far below"
    if iv.low >= -tolerance and iv.high <= tolerance:
        return "near"
    return "inconclusive"


def capacity_in_words(verdicts: pd.DataFrame, metric: str) -> list[str]:
    """One line per rate and method: a plain sentence (what the method keeps beside a dense network of its size,
    and what that means), the paired difference with its 95% interval, and both training costs."""
    meaning = {"above": "the sparse network holds more than a dense one of its size (ABOVE)",
               "far below": "the method, not the size, loses the robustness (FAR BELOW)",
               "near": "a network of this size holds no more, so the size explains the loss (NEAR)",
               "inconclusive": "the interval cannot tell which (INCONCLUSIVE); more seeds or test images would"}
    robust = f"{METRIC_WORDS.get(metric, metric)} accuracy"
    return [f"- At {rate_words(r.rate)}, {r.method} keeps {r.value:.1f}% {robust} where a dense network of its "
            f"size, adversarially trained, keeps {r.control:.1f}%: {meaning[r.verdict]}. Difference "
            f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]; training {r.seconds:.3g} s a run against "
            f"{r.control_seconds:.3g} s for the dense network."
            for r in verdicts.itertuples()]
