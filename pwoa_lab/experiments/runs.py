"""Runs: a config run once (`run_config`), and the cached run store behind every figure and analysis.

- `run_config(teacher, config)`: set-up (seed, data, student, method) and `loop.fit`; returns a FitResult.
  Works for every config of `pwoa_lab.training.methods`: a pruning run (PruneConfig, HydraConfig) or a teacher
  (TeacherConfig, `train_teacher`).
- `prune_row(teacher, config, settings)`: run + evaluate once, or the cached result. Cached by the full
  configuration, the teacher's weights, the evaluation settings and the kit's code (`cache.entry_key`), with the
  pruned weights as a compact sparse file; an interrupted run resumes from its state in the cache folder.
- `teacher_row`: the dense teacher evaluated like a pruned model (rate 1), cached the same way.

Every run computes (training and evaluation, the teacher row too) with `defaults.RUN_THREADS` intra-op threads,
set here around the run and restored after: an in-process run, a local worker and a Ray task give the same
weights and numbers, whatever `--workers`, the backend or the machine's cores. The store is safe for concurrent
processes: a run is computed under its cache entry's lock (`ResultCache.lock`), and a process that needs a run
another one is computing waits for it and reads it back.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import TensorData, load_dataset
from pwoa_lab.core.datasets import dataset_code
from pwoa_lab.core.distillation import frozen_teacher
from pwoa_lab.core.evaluation import EvalSettings, PointOutcomes, evaluate_points, natural_and_pgd
from pwoa_lab.io.cache import ResultCache, cache_error, code_fingerprint, entry_key
from pwoa_lab.io.checkpoint import load_checkpoint, load_teacher
from pwoa_lab.pruning.export import load_sparse, sparse_payload, write_sparse
from pwoa_lab.pruning.masks import check_rate_fits, network_sparsity
from pwoa_lab.pruning.structured import resize_to_state
from pwoa_lab.training.loop import FitResult, RunConfig, fit
from pwoa_lab.training.methods import TeacherConfig
from pwoa_lab.training.registry import TEACHER, method_code, method_names
from pwoa_lab.utils import get_device, model_fingerprint, run_environment, set_seed, torch_threads, versions


def user_code(config: RunConfig) -> dict[str, str]:
    """The fingerprints of the code from outside the kit that a run executes: a method or dataset registered by a
    notebook or module of the user's ({} for the kit's own, which the package's source fingerprint covers)."""
    codes = {"dataset_code": dataset_code(config.dataset)}
    method = getattr(config, "method", None)
    if method in method_names():  # a teacher's `method` is its attack, not a registered method
        codes["method_code"] = method_code(method)
    return {k: v for k, v in codes.items() if v is not None}


def state_key(config: RunConfig, teacher: nn.Module | None) -> str:
    """The key a resume state must carry to be resumed by this run (config, teacher weights, kit and user code)."""
    return entry_key("train_state", {"config": config.to_dict(), **user_code(config),
                                     "teacher": model_fingerprint(teacher) if teacher is not None else None})


def check_run(teacher: nn.Module | None, config: RunConfig) -> None:
    """What only the teacher can tell about a config, checked before any training: a pruning rate that would
    leave fewer than `defaults.MIN_KEPT_WEIGHTS` weights in one of the layers its scope prunes (ValueError with
    the largest rate that keeps them)."""
    rate = getattr(config, "rate", None)
    if teacher is not None and rate is not None:
        check_rate_fits(teacher, rate, getattr(config, "scope", "all"), getattr(config, "mode", "layer"))


def resolved_only(config: RunConfig) -> RunConfig:
    """`config` itself when it is resolved (what `preset_config` returns, or `config.resolved()`), else a TypeError
    that says so: a config is resolved once, where it is made, and runs only read it."""
    if not isinstance(config, RunConfig) or not config.is_resolved():
        raise TypeError(f"runs take a resolved config: pass {type(config).__name__}(...).resolved(), or a config "
                        "from preset_config (dataclasses.replace gives a new, unresolved config: resolve it again)")
    return config


def run_config(teacher: nn.Module | None, config: RunConfig, train: TensorData | None = None,
               val: TensorData | None = None, root: str | None = None, progress: bool = True,
               on_epoch: Callable[[dict], None] | None = None, state_path: str | Path | None = None) -> FitResult:
    """Run `config` from `teacher` (None for a TeacherConfig); returns a FitResult whose `config` is resolved.

    `train` / `val` default to the dataset's training split (subset per `n_per_class`) and validation split.
    `state_path`: resume points (see `pwoa_lab.training.loop`). Computes with `defaults.RUN_THREADS` threads (the
    caller's count is restored after)."""
    config = resolved_only(config)
    check_run(teacher, config)
    with torch_threads(defaults.RUN_THREADS):
        return _run_config(teacher, config, train, val, root, progress, on_epoch, state_path)


def _run_config(teacher, config, train, val, root, progress, on_epoch, state_path) -> FitResult:
    device = get_device(config.device)
    set_seed(config.seed)
    if train is None:
        train = load_dataset(config.dataset, "train", root, n_per_class=config.n_per_class, seed=config.seed)
    if val is None:
        val = load_dataset(config.dataset, "val", root)
    if teacher is not None:
        teacher = frozen_teacher(teacher).to(device)
    student = config.make_student(teacher).to(device)
    method = config.make_method(teacher, student, train)
    key = state_key(config, teacher) if state_path is not None else ""
    return fit(student, config.phases(), method, config, train, val, state_path=state_path, state_key=key,
               hsic_monitor=not isinstance(config, TeacherConfig), progress=progress, on_epoch=on_epoch)


def train_teacher(config: TeacherConfig, root: str | None = None, progress: bool = True
                  ) -> tuple[nn.Module, pd.DataFrame, dict]:
    """Train a (robust) teacher; returns (model of the best validation epoch in eval mode, per-epoch history,
    metrics of that epoch: val_natural, val_pgd, best_epoch, train_seconds, eps). `config` is resolved here, once
    (a teacher's run starts from its config, not from a preset)."""
    result = run_config(None, config.resolved(), root=root, progress=progress,
                        on_epoch=_print_epoch if progress else None)
    best = result.history.set_index("epoch").loc[result.selected_epoch]
    metrics = {"val_natural": float(best.val_natural), "val_pgd": float(best.val_pgd),
               "best_epoch": int(result.selected_epoch), "train_seconds": result.train_seconds,
               "eps": result.config.eps}
    return result.model, result.history, metrics


def _print_epoch(row: dict) -> None:
    from tqdm.auto import tqdm
    tqdm.write(f"epoch {row['epoch']}: loss {row.get('loss_ce', float('nan')):.3f} val natural "
               f"{row['val_natural']:.1f}% val PGD {row['val_pgd']:.1f}% ({row['train_seconds']:.0f} s training)")


# ----------------------------------------------------------------------------------------------- the run store

def resolve_teacher(dataset: str, teacher: nn.Module | str | Path | None, device) -> nn.Module:
    """A teacher model from a model, a checkpoint path, or None (the shipped teacher of the dataset)."""
    if teacher is None:
        return load_teacher(dataset, device)[0]
    if isinstance(teacher, (str, Path)):
        return load_checkpoint(teacher, device, expect={"dataset": dataset})[0]
    return teacher.to(device).eval()


@dataclass
class RunOutcome:
    """What one pruning run produced, before it is stored: everything travels as plain data, so a run computed in
    another process or on another machine is stored by the caller (`store_outcome`) with no shared file system.

    `row`: the Figure-1 row; `history`: the per-epoch history; `record`: what the cache keeps (row, history, config,
    evaluation settings, versions, the code fingerprint of the code that ran it); `model`: the pruned weights as a
    `pruning.sparse_payload` (None without `keep_model`)."""
    key: str
    row: dict[str, Any]
    history: pd.DataFrame
    record: dict[str, Any]
    model: dict[str, Any] | None = None


def compute_outcome(teacher: nn.Module, config: RunConfig, settings: EvalSettings = EvalSettings(), root=None,
                    progress: bool = True, keep_model: bool = True, state_path: str | Path | None = None,
                    on_epoch: Callable[[dict], None] | None = None) -> RunOutcome:
    """Run `config` from `teacher` and evaluate it on the test split; writes nothing but the resume state at
    `state_path` (if given). `on_epoch(row)`: after every training epoch (`loop.fit`). Training and evaluation
    compute with `defaults.RUN_THREADS` threads."""
    config = resolved_only(config)
    with torch_threads(defaults.RUN_THREADS):
        return _compute_outcome(teacher, config, settings, root, progress, keep_model, state_path, on_epoch)


def _compute_outcome(teacher, config, settings, root, progress, keep_model, state_path, on_epoch) -> RunOutcome:
    key = row_key(teacher, config, settings)
    device = get_device(config.device)
    result = run_config(teacher, config, root=root, progress=progress, state_path=state_path, on_epoch=on_epoch)
    measured, points = evaluate_points(result.model.to(device), config.dataset, config.eps, settings, root)
    row = {"dataset": config.dataset, "method": config.method, "rate": config.rate, "mix_ratio": config.mix_ratio,
           "seed": config.seed, **measured,
           # over every conv and linear weight, whatever the scope pruned: the network's real sparsity
           "sparsity": network_sparsity(result.model), "train_seconds": result.train_seconds,
           "selected_epoch": result.selected_epoch, "last_epoch": _last_epoch(result.history),
           **run_environment(device)}
    # the final epoch's model beside the selected one (natural / PGD only): what selection changed
    last = natural_and_pgd(result.last_model.to(device), config.dataset, config.eps, settings, root) \
        if result.last_model is not None else {"natural": row["natural"], "pgd": row["pgd"]}
    row.update(natural_last=last["natural"], pgd_last=last["pgd"])
    record = {"row": row, "points": points.to_record(), "history": result.history.to_dict("records"),
              "config": config.to_dict(),
              "eval": settings.__dict__, "seed": config.seed, "versions": versions(), "code": code_fingerprint(),
              "device": str(device)}
    model = sparse_payload(result.model.cpu(), metadata={"dataset": config.dataset, "method": config.method,
                                                         "rate": config.rate}) if keep_model else None
    return RunOutcome(key, row, result.history, record, model)


def store_outcome(outcome: RunOutcome, cache_dir: str | Path | None = None) -> None:
    """Write a finished run into the cache (its pruned weights first, then the record that makes it a hit).

    A run computed by other code than this process's is refused (ValueError): its numbers would be served under
    this code's key. A read-only or full cache warns and keeps going: the computed result is still returned."""
    if outcome.record.get("code") != code_fingerprint():
        raise ValueError("this run was computed by different pwoa-lab code (code fingerprint "
                         f"{str(outcome.record.get('code'))[:12]} != {code_fingerprint()[:12]}): install the same "
                         "version of the kit on every worker")
    cache = ResultCache("prune_row", cache_dir)
    try:
        cache.folder(outcome.key).mkdir(parents=True, exist_ok=True)
        if outcome.model is not None:
            write_sparse(outcome.model, cache.folder(outcome.key) / "model.pt", overwrite=True)
        cache.put(outcome.key, outcome.record)
        (cache.folder(outcome.key) / "state.pt").unlink(missing_ok=True)  # the finished result replaces it
    except OSError as err:
        warnings.warn(str(cache_error(cache.root, err)), stacklevel=2)


def prune_row(teacher: nn.Module, config: RunConfig, settings: EvalSettings = EvalSettings(),
              cache_dir: str | Path | None = None, use_cache: bool = True, root=None,
              progress: bool = True, keep_model: bool = True, on_epoch: Callable[[dict], None] | None = None
              ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Prune + evaluate once, or return the cached result: (row dict, per-epoch history DataFrame).

    With `keep_model`, the pruned weights are cached too (sparse file); reload them with `load_cached_model`.
    An interrupted run resumes from its state in the cache folder. Another process computing the same run at
    the same time is waited for, and its result read back. `on_epoch(row)`: after every training epoch.
    """
    config = resolved_only(config)
    key = row_key(teacher, config, settings)
    cache = ResultCache("prune_row", cache_dir, enabled=use_cache)
    hit = _cached(cache, key, teacher, config, settings, root)
    if hit is not None:
        return hit
    with cache.lock(key) if use_cache else contextlib.nullcontext():
        # stored by another process while this one waited for the lock
        hit = _cached(cache, key, teacher, config, settings, root)
        if hit is not None:
            return hit
        state_path = cache.folder(key) / "state.pt" if use_cache else None
        outcome = compute_outcome(teacher, config, settings, root, progress, keep_model and use_cache, state_path,
                                      on_epoch)
        if use_cache:
            store_outcome(outcome, cache_dir)
    return {**outcome.row, "cached": False, "key": key}, outcome.history


def _last_epoch(history: pd.DataFrame) -> int:
    return int(history.epoch.iloc[-1]) if len(history) else 0


def row_key(teacher: nn.Module, config: RunConfig, settings: EvalSettings) -> str:
    """The cache key of a pruning run: its resolved config, the teacher's weights, the evaluation, the code."""
    return entry_key("prune_row", {"teacher": model_fingerprint(teacher), "config": config.to_dict(),
                                   "eval": settings.__dict__, **user_code(config)})


def cached_prune_row(teacher: nn.Module, config: RunConfig, settings: EvalSettings = EvalSettings(),
                     cache_dir: str | Path | None = None, use_cache: bool = True
                     ) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """What `prune_row` would return from the cache, or None when it would have to compute."""
    if not use_cache:
        return None
    config = resolved_only(config)
    return _cached(ResultCache("prune_row", cache_dir), row_key(teacher, config, settings), teacher, config, settings)


def _cached(cache: ResultCache, key: str, teacher: nn.Module | None = None, config: RunConfig | None = None,
            settings: EvalSettings | None = None, root=None) -> tuple[dict[str, Any], pd.DataFrame] | None:
    hit = cache.get(key)
    if hit is None:
        return None
    if "points" not in hit and teacher is not None and (cache.folder(key) / "model.pt").exists():
        hit = _add_points(cache, key, hit, teacher, config, settings, root)
    return {**hit["row"], "cached": True, "key": key}, pd.DataFrame(hit["history"])


def _add_points(cache: ResultCache, key: str, record: dict[str, Any], teacher: nn.Module, config: RunConfig,
                settings: EvalSettings, root=None) -> dict[str, Any]:
    """A stored run without its per-image outcomes (stored before they were kept) gets them from its stored
    weights, evaluated again exactly as the run was (not retrained); the record is rewritten with them."""
    model = load_cached_model(key, teacher, cache.root.parent).to(next(teacher.parameters()).device)
    with torch_threads(defaults.RUN_THREADS):
        _, points = evaluate_points(model, config.dataset, config.eps, settings, root)
    record = {**record, "points": points.to_record()}
    try:
        cache.put(key, record)
    except OSError as err:  # a read-only cache: the outcomes are still returned, just not kept
        warnings.warn(str(err), stacklevel=3)
    return record


def load_points(key: str | None, kind: str = "prune_row", cache_dir: str | Path | None = None
                ) -> PointOutcomes | None:
    """The per-image outcomes of a stored run (`kind` "prune_row") or teacher row ("teacher_row"), None where the
    store holds none (a run computed with use_cache=False, or whose weights were not kept)."""
    if not isinstance(key, str) or not key:
        return None
    hit = ResultCache(kind, cache_dir).get(key)
    return PointOutcomes.from_record(hit["points"]) if hit is not None and "points" in hit else None


def load_cached_model(key: str, teacher: nn.Module, cache_dir: str | Path | None = None) -> nn.Module:
    """The pruned model stored by `prune_row` under `key` (`teacher`'s architecture; a structured run's layers
    are resized to the stored shapes: a plain, smaller model)."""
    state, _, _ = load_sparse(ResultCache("prune_row", cache_dir).folder(key) / "model.pt")
    model = resize_to_state(copy.deepcopy(teacher).cpu(), state)
    model.load_state_dict(state, strict=True)
    return model.eval()


def teacher_row(teacher: nn.Module, dataset: str, eps: float, settings: EvalSettings,
                cache_dir: str | Path | None = None, use_cache: bool = True, root=None,
                device: str | torch.device | None = None) -> dict[str, Any]:
    """The unpruned teacher as a Figure-1 row (rate 1), cached like the others. `device`: where it is evaluated
    (default: where the teacher is); a worker process gets a CPU copy of the teacher, and on a GPU machine its
    evaluation belongs on the GPU like every other row's."""
    code = {"dataset_code": c} if (c := dataset_code(dataset)) is not None else {}
    key = entry_key("teacher_row", {"teacher": model_fingerprint(teacher), "dataset": dataset, "eps": eps,
                                    "eval": settings.__dict__, **code})
    cache = ResultCache("teacher_row", cache_dir, enabled=use_cache)
    hit = cache.get(key)
    if hit is not None and "points" in hit:
        return {**hit["row"], "cached": True, "key": key}
    with cache.lock(key) if use_cache else contextlib.nullcontext():
        hit = cache.get(key)  # stored by another process while this one waited for the lock
        if hit is not None and "points" in hit:
            return {**hit["row"], "cached": True, "key": key}
        if device is not None:
            here, there = next(teacher.parameters()).device, torch.device(device)
            if here.type != there.type or (there.index is not None and here.index != there.index):
                teacher = copy.deepcopy(teacher).to(there)
        with torch_threads(defaults.RUN_THREADS):
            measured, points = evaluate_points(teacher, dataset, eps, settings, root)
            row = {"dataset": dataset, "method": TEACHER, "rate": 1.0, "mix_ratio": 0.0, **measured,
                   "sparsity": 0.0, "train_seconds": 0.0,
                   **run_environment(next(teacher.parameters()).device)}
        row.update(natural_last=row["natural"], pgd_last=row["pgd"])
        if use_cache:
            try:
                cache.put(key, {"row": row, "points": points.to_record(), "versions": versions()})
            except OSError as err:
                warnings.warn(str(err), stacklevel=2)
    return {**row, "cached": False, "key": key if use_cache else None}
