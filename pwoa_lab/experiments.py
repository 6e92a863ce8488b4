"""Experiments behind the paper's figures, returning DataFrames and cached on disk.

- `prune_row`: prune the teacher once (method, rate, preset) and evaluate it: one row of Figure 1. Cached by
  the full configuration (teacher fingerprint, prune config, evaluation settings, kit version).
- `figure1`: robustness vs pruning rate for several methods, plus the unpruned teacher as a row with rate 1.
- `layer_sensitivity`, `finetune_drift`: where robustness is lost (which layers; pruning or fine-tuning).
"""
from __future__ import annotations

import copy
import functools
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .attacks import default_attack_options, evaluate
from .cache import ResultCache, cache_error, entry_key
from .checkpoint import load_checkpoint, load_teacher
from .data import TensorData, check_n_per_class, dataset_info, load_dataset
from .engine import preset_config, prune_and_finetune
from .pruning import load_sparse, save_sparse, sparsity_report
from .utils import check_rate, forked_rng, get_device, model_fingerprint, versions

EVAL_SEED = 0  # the attacks' random starts in evaluate_row

FIG1_COLUMNS = ["dataset", "method", "rate", "natural", "fgsm", "pgd", "aa", "sparsity", "train_seconds",
                "eval_seconds", "cached"]


@dataclass(frozen=True)
class EvalSettings:
    """How pruned models are evaluated on the test split."""
    n: int | None = None          # first n test images for natural / FGSM / PGD (None: all)
    aa_n: int = 100               # first n test images for AutoAttack (0: skip)
    aa_version: str = "fast"      # fast (APGD-CE + APGD-T) | standard

    def attacks(self) -> list[str]:
        return ["natural", "fgsm", "pgd"]


def resolve_teacher(dataset: str, teacher: nn.Module | str | Path | None, device) -> nn.Module:
    """A teacher model from a model, a checkpoint path, or None (the shipped teacher of the dataset)."""
    if teacher is None:
        return load_teacher(dataset, device)[0]
    if isinstance(teacher, (str, Path)):
        return load_checkpoint(teacher, device, expect={"dataset": dataset})[0]
    return teacher.to(device).eval()


def evaluate_row(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    """natural / fgsm / pgd / aa accuracy (%) of a model on the test split, and the evaluation seconds."""
    start = time.perf_counter()
    with forked_rng():  # same model -> same numbers, whatever ran before
        torch.manual_seed(EVAL_SEED)
        row = _evaluate_row(model, dataset, eps, settings, root)
    row["eval_seconds"] = time.perf_counter() - start
    return row


def _evaluate_row(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    test = load_dataset(dataset, "test", root)
    options = default_attack_options(dataset, eps)
    table = evaluate(model, test, settings.attacks(), eps=eps, n=settings.n, attack_options=options,
                     progress=False)
    row = {r.attack: r.accuracy for r in table.itertuples()}
    if settings.aa_n:
        options["aa"] = {"version": settings.aa_version}
        aa = evaluate(model, test, ["aa"], eps=eps, n=settings.aa_n, attack_options=options, progress=False)
        row["aa"] = float(aa.accuracy.iloc[0])
    else:
        row["aa"] = float("nan")
    return row


def prune_row(teacher: nn.Module, config, settings: EvalSettings = EvalSettings(),
              cache_dir: str | Path | None = None, use_cache: bool = True, root=None,
              progress: bool = True, keep_model: bool = True) -> tuple[dict[str, Any], pd.DataFrame]:
    """Prune + evaluate once, or return the cached result: (row dict, per-epoch history DataFrame).

    `config` is an engine.PruneConfig (naive / kd / pwoa / advprune) or a hydra.HydraConfig. With
    `keep_model`, the pruned weights are cached too (sparse file); reload them with `load_cached_model`.
    """
    config = config.resolved()
    method = getattr(config, "method", "hydra")
    key = _row_key(teacher, config, settings)
    cache = ResultCache("prune_row", cache_dir, enabled=use_cache)
    hit = _cached(cache, key)
    if hit is not None:
        return hit
    device = get_device(config.device)
    if method == "hydra":
        from .hydra import hydra_prune
        result = hydra_prune(teacher, config, root=root, progress=progress)
    else:  # resumable: an interrupted run continues after its last completed epoch
        state_path = cache.folder(key) / "state.pt" if use_cache else None
        result = prune_and_finetune(teacher, config, root=root, progress=progress, state_path=state_path)
    row = {"dataset": config.dataset, "method": method, "rate": config.rate, "mix_ratio": config.mix_ratio,
           **evaluate_row(result.model.to(device), config.dataset, config.eps, settings, root),
           # over every conv and linear weight, whatever the scope pruned: the network's real sparsity
           "sparsity": float(sparsity_report(result.model, "all").iloc[-1]["sparsity"]),
           "train_seconds": result.train_seconds}
    record = {"row": row, "history": result.history.to_dict("records"), "config": config.to_dict(),
              "eval": settings.__dict__, "seed": config.seed, "versions": versions(), "device": str(device)}
    if use_cache:
        try:
            if keep_model:
                save_sparse(result.model.cpu(), cache.folder(key) / "model.pt",
                            metadata={"dataset": config.dataset, "method": method, "rate": config.rate},
                            overwrite=True)
            cache.put(key, record)
            (cache.folder(key) / "state.pt").unlink(missing_ok=True)  # the finished result replaces it
        except OSError as err:  # a read-only or full cache must not throw the computed result away
            warnings.warn(str(cache_error(cache.root, err)), stacklevel=2)
    return {**row, "cached": False, "key": key}, result.history


def _row_key(teacher: nn.Module, config, settings: EvalSettings) -> str:
    return entry_key("prune_row", {"teacher": model_fingerprint(teacher), "method": getattr(config, "method", "hydra"),
                                   "config": config.to_dict(), "eval": settings.__dict__})


def cached_prune_row(teacher: nn.Module, config, settings: EvalSettings = EvalSettings(),
                     cache_dir: str | Path | None = None, use_cache: bool = True
                     ) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """What `prune_row` would return from the cache, or None when it would have to compute."""
    if not use_cache:
        return None
    return _cached(ResultCache("prune_row", cache_dir), _row_key(teacher, config.resolved(), settings))


def _cached(cache: ResultCache, key: str) -> tuple[dict[str, Any], pd.DataFrame] | None:
    hit = cache.get(key)
    if hit is None:
        return None
    return {**hit["row"], "cached": True, "key": key}, pd.DataFrame(hit["history"])


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
    functools.partial of one). Every run seeds itself, so the results do not depend on `workers`.
    `priority` (one number per job): with workers, jobs start in descending priority (give the longest jobs
    the highest, so that no long job starts last); the returned list keeps the order of `jobs`."""
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


def prune_rows(teacher: nn.Module, configs: Sequence, settings: EvalSettings = EvalSettings(),
               cache_dir: str | Path | None = None, use_cache: bool = True, root=None, workers: int = 1,
               progress: bool = True, desc: str = "runs", extra_jobs: Sequence[tuple[Callable, tuple]] = ()
               ) -> tuple[list[tuple[dict[str, Any], pd.DataFrame]], list]:
    """`prune_row` for each config, in order, and the results of `extra_jobs` (run alongside them).

    Cached rows come back at once; the others (and `extra_jobs`) go through `run_jobs` with `workers`."""
    workers = check_workers(workers)
    out: list = [cached_prune_row(teacher, c, settings, cache_dir, use_cache) for c in configs]
    todo = [i for i, hit in enumerate(out) if hit is None]
    if todo and workers > 1:
        teacher = copy.deepcopy(teacher).cpu()  # what goes to the worker processes
    run = functools.partial(prune_row, progress=False)
    jobs = list(extra_jobs) + [(run, (teacher, configs[i], settings, cache_dir, use_cache, root)) for i in todo]
    # longest first: the extra jobs (the teacher row: evaluating a robust model), then the runs whose models stay
    # robust (attacks on them run longest), lowest rate first; naive runs (robust accuracy near 0) last
    priority = [3.0] * len(extra_jobs) + [(1.0 if getattr(configs[i], "method", "hydra") == "naive" else 2.0)
                                         - float(configs[i].rate) / 1e6 for i in todo]
    results = run_jobs(jobs, workers if todo else 1, progress, desc, priority)
    for i, result in zip(todo, results[len(extra_jobs):]):
        out[i] = result
    return out, results[:len(extra_jobs)]


def load_cached_model(key: str, teacher: nn.Module, cache_dir: str | Path | None = None) -> nn.Module:
    """The pruned model stored by `prune_row` under `key` (same architecture as `teacher`)."""
    state, _, _ = load_sparse(ResultCache("prune_row", cache_dir).folder(key) / "model.pt")
    model = copy.deepcopy(teacher).cpu()
    model.load_state_dict(state, strict=True)
    return model.eval()


def teacher_row(teacher: nn.Module, dataset: str, eps: float, settings: EvalSettings,
                cache_dir: str | Path | None = None, use_cache: bool = True, root=None) -> dict[str, Any]:
    """The unpruned teacher as a Figure-1 row (rate 1), cached like the others."""
    key = entry_key("teacher_row", {"teacher": model_fingerprint(teacher), "dataset": dataset, "eps": eps,
                                    "eval": settings.__dict__})
    cache = ResultCache("teacher_row", cache_dir, enabled=use_cache)
    hit = cache.get(key)
    if hit is not None:
        return {**hit["row"], "cached": True}
    row = {"dataset": dataset, "method": "teacher", "rate": 1.0, "mix_ratio": 0.0,
           **evaluate_row(teacher, dataset, eps, settings, root), "sparsity": 0.0, "train_seconds": 0.0}
    if use_cache:
        try:
            cache.put(key, {"row": row, "versions": versions()})
        except OSError as err:
            warnings.warn(str(err), stacklevel=2)
    return {**row, "cached": False}


def figure1(dataset: str = "digits", rates: Sequence[float] = (2, 4, 8, 16), methods: Sequence[str] = ("naive", "pwoa"),
            preset: str = "quick", seed: int = 1234, teacher: nn.Module | str | Path | None = None,
            settings: EvalSettings | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
            root=None, device=None, progress: bool = True, workers: int = 1, **overrides: Any) -> pd.DataFrame:
    """Figure 1(b): natural / FGSM / PGD / AutoAttack accuracy (%) vs pruning rate, per method.

    One row per (method, rate) plus the unpruned teacher (method "teacher", rate 1). `overrides` go into
    every PruneConfig (e.g. scope="convs"). Each row is cached by its full configuration. `workers` > 1 runs
    that many prune runs at once in separate processes (same results; see `prune_rows`).
    """
    rates = [check_rate(r) for r in rates]
    settings = settings or default_eval_settings(dataset, preset)
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    eps = preset_config(dataset, preset, **overrides).resolved().eps
    configs = [preset_config(dataset, preset, method=m, rate=r, seed=seed, device=str(device), **overrides)
               for m in methods for r in rates]
    workers = check_workers(workers)
    teacher_job = (teacher_row, (teacher if workers == 1 else copy.deepcopy(teacher).cpu(), dataset, eps, settings,
                                 cache_dir, use_cache, root))
    done, (teacher_result,) = prune_rows(teacher, configs, settings, cache_dir, use_cache, root, workers, progress,
                                         desc=f"figure 1 ({dataset}, {preset})", extra_jobs=[teacher_job])
    rows = [teacher_result] + [row for row, _ in done]
    df = pd.DataFrame(rows)
    return df[[c for c in FIG1_COLUMNS if c in df.columns]]


def default_eval_settings(dataset: str, preset: str) -> EvalSettings:
    """Evaluation sizes per preset: small on CPU presets, full test set with standard AA for `paper`."""
    if preset == "paper":
        return EvalSettings(n=None, aa_n=1000, aa_version="standard")
    if preset == "smoke":
        return EvalSettings(n=100, aa_n=0)
    return {"digits": EvalSettings(n=None, aa_n=100), "mnist": EvalSettings(n=500, aa_n=500)}.get(
        dataset, EvalSettings(n=1000, aa_n=200))


def layer_sensitivity(model: nn.Module, dataset: str, rate: float, n: int | None = 200, eps: float | None = None,
                      root=None) -> pd.DataFrame:
    """One-shot magnitude pruning at `rate`, no fine-tuning: which layers carry the robustness?

    Prunes (a copy of) `model` one layer at a time, then every layer (scope "all") and every layer but the first
    and the classifier (scope "hidden"), and evaluates natural and PGD accuracy (%) on the first `n` test images
    (the dataset's PGD; seeded like `evaluate_row`). Returns a DataFrame: pruned (layer name, "none", "all" or
    "hidden"), weights (how many were pruned), natural, pgd.
    """
    from .pruning import apply_masks, magnitude_masks, prunable_modules, remove_masks
    rate = check_rate(rate)
    info = dataset_info(dataset)
    eps = info.eps if eps is None else eps
    settings = EvalSettings(n=n, aa_n=0)
    full = magnitude_masks(model, rate, "all")
    hidden = set(prunable_modules(model, "hidden"))
    choices = {"none": {}, **{key: {key: mask} for key, mask in full.items()}, "all": full,
               "hidden": {k: m for k, m in full.items() if k in hidden}}
    rows = []
    for name, masks in choices.items():
        pruned = copy.deepcopy(model).eval()
        if masks:
            apply_masks(pruned, masks)
            remove_masks(pruned)
        row = evaluate_row(pruned, dataset, eps, settings, root)
        rows.append({"pruned": name, "weights": int(sum(int((~m).sum()) for m in masks.values())),
                     "natural": row["natural"], "pgd": row["pgd"]})
    return pd.DataFrame(rows)


def finetune_drift(teacher: nn.Module, dataset: str = "digits", rate: float = 8,
                   methods: Sequence[str] = ("naive", "kd", "pwoa"), lrs: Sequence[float] = (5e-4,),
                   epochs: int = 3, preset: str = "quick", scope: str = "all", mode: str = "layer", seed: int = 1234,
                   cache_dir: str | Path | None = None, use_cache: bool = True, root=None, device=None,
                   progress: bool = True, **overrides: Any) -> pd.DataFrame:
    """Where does robustness go: into the pruning, or into the fine-tuning after it?

    Prunes the teacher once by magnitude at `rate` (no ADMM: epoch 0), then fine-tunes the masked model on
    natural images for `epochs` epochs with each method's loss (`naive`: cross-entropy, `kd`, `pwoa`) at each
    Adam learning rate in `lrs` (constant; the rest of the schedule from `preset`). Validation natural and PGD
    accuracy (%) after every epoch. Each run is a cached `prune_row` (test-set natural / PGD of its final model,
    no AutoAttack). `overrides` go into every PruneConfig (e.g. lambda_x, temperature, batch_size).

    Returns a DataFrame: method ("teacher" for the dense model), lr, epoch (0: before any fine-tuning),
    train_seconds, val_natural, val_pgd. At epoch 0 every method and lr has the same (one-shot pruned) model.
    """
    from .engine import validation_metrics
    from .pruning import apply_masks, magnitude_masks, remove_masks
    rate = check_rate(rate)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1; got {epochs!r}")
    lrs = [float(lr) for lr in lrs]
    if not lrs or not all(lr > 0 for lr in lrs):
        raise ValueError(f"lrs must be one or more learning rates > 0; got {lrs!r}")
    if not methods or not set(methods) <= {"naive", "kd", "pwoa"}:
        raise ValueError(f"methods must be some of naive, kd, pwoa; got {list(methods)!r}")
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    configs = [preset_config(dataset, preset, method=m, rate=rate, scope=scope, mode=mode, admm_epochs=0,
                             retrain_epochs=epochs, lr_retrain=lr, lr_schedule="constant", eval_every=1, seed=seed,
                             device=str(device), **overrides)
               for m in methods for lr in lrs]
    base = configs[0].resolved()
    val = load_dataset(dataset, "val", root).head(base.val_n)
    val = TensorData(val.x.to(device), val.y.to(device), val.name, "val")
    num_classes = dataset_info(dataset).num_classes
    pruned = copy.deepcopy(teacher)
    apply_masks(pruned, magnitude_masks(pruned, rate, scope, mode))
    remove_masks(pruned)
    start = {}
    for name, model in {"teacher": teacher, "pruned": pruned}.items():
        with forked_rng():  # the PGD random start: the same numbers whatever ran before
            torch.manual_seed(EVAL_SEED)
            start[name] = validation_metrics(model.eval(), val, base.eps, base.val_pgd_steps, None, num_classes,
                                             base)
    settings = EvalSettings(n=500, aa_n=0)  # the first 500 test images (all of them on smaller test sets)
    done, _ = prune_rows(teacher, configs, settings, cache_dir, use_cache, root, 1, progress,
                         desc=f"fine-tuning drift ({dataset}, {rate:g}x)")
    rows = [{"method": "teacher", "lr": float("nan"), "epoch": 0, "train_seconds": 0.0, **start["teacher"]}]
    for config, (_, history) in zip(configs, done):
        rows.append({"method": config.method, "lr": config.lr_retrain, "epoch": 0, "train_seconds": 0.0,
                     **start["pruned"]})
        for r in history.itertuples():
            rows.append({"method": config.method, "lr": config.lr_retrain, "epoch": int(r.epoch),
                         "train_seconds": float(r.train_seconds), "val_natural": float(r.val_natural),
                         "val_pgd": float(r.val_pgd)})
    return pd.DataFrame(rows)


def phenomenon(df: pd.DataFrame, metric: str = "pgd", rates: Sequence[float] = (4, 8)) -> pd.DataFrame:
    """The paper's claim checked on a Figure-1 table: per rate, naive vs PwoA relative to the teacher.

    Columns: rate, teacher, naive, pwoa, naive_over_teacher, pwoa_gap (teacher - pwoa, points).
    """
    teacher = float(df.loc[df.method == "teacher", metric].iloc[0])
    out = []
    for rate in rates:
        sel = df[df.rate == rate].set_index("method")[metric]
        naive, pwoa = float(sel.get("naive", float("nan"))), float(sel.get("pwoa", float("nan")))
        out.append({"rate": rate, "teacher": teacher, "naive": naive, "pwoa": pwoa,
                    "naive_over_teacher": naive / teacher if teacher else float("nan"), "pwoa_gap": teacher - pwoa})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------- Figure 3

PRUNED_PHASES = ("retrain", "score", "finetune")  # phases in which the student is already sparse


def time_to_reach(history: pd.DataFrame, target: float, metric: str = "val_pgd") -> float:
    """Training seconds at the first epoch of a sparse phase whose `metric` >= target (NaN if never)."""
    sparse = history[history.phase.isin(PRUNED_PHASES)]
    hit = sparse[sparse[metric] >= target]
    return float(hit.train_seconds.iloc[0]) if len(hit) else float("nan")


# Figure 3 trains len(methods) x len(mix_ratios) models, those at r = 1 at up to (1 + PGD steps) x the cost of a
# PwoA batch. To keep it in CPU minutes the quick preset uses 3 mix ratios, and on MNIST half of Figure 1's
# training subset (the training images per class are part of every run's configuration and cache key).
FIG3_MIX_RATIOS = {"paper": (0, 0.2, 0.4, 0.6, 0.8, 1)}
FIG3_QUICK_MIX_RATIOS = (0, 0.5, 1)
FIG3_QUICK_N_PER_CLASS = {"mnist": 300}


def figure3(dataset: str = "digits", rate: float = 4, mix_ratios: Sequence[float] | None = None,
            methods: Sequence[str] = ("pwoa", "advprune", "hydra"), preset: str = "quick", seed: int = 1234,
            teacher: nn.Module | str | Path | None = None, settings: EvalSettings | None = None,
            cache_dir: str | Path | None = None, use_cache: bool = True, root=None, device=None,
            progress: bool = True, n_per_class: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 3: robust accuracy vs training time for each method over its mix ratios.

    `mix_ratios`: None gives (0, 0.2, ..., 1) with the paper preset, (0, 0.5, 1) with the others.
    `n_per_class`: train every run on this many images per class (None: the preset's subset; for MNIST with
    the quick preset, 300).
    `settings`: test-set evaluation (None: the preset's; except with the paper preset, natural / FGSM / PGD on
    at most 500 and AutoAttack on at most 100 test images, since Figure 3 evaluates many models).

    Returns (curves, summary). `curves`: one row per run and epoch (method, mix_ratio, phase, epoch,
    train_seconds, val_natural, val_pgd). `summary`: one row per run with the final test natural / PGD /
    AutoAttack accuracy, seconds and `time_ratio` = (its time to first reach PwoA's r = 0 final validation
    PGD accuracy with a sparse model) / (PwoA's r = 0 total time); NaN when never reached.
    """
    from .hydra import hydra_config
    rate = check_rate(rate)
    if settings is None:
        settings = default_eval_settings(dataset, preset)
        if preset != "paper":
            settings = replace(settings, aa_n=min(settings.aa_n, 100),
                               n=None if settings.n is None else min(settings.n, 500))
    if mix_ratios is None:
        mix_ratios = FIG3_MIX_RATIOS.get(preset, FIG3_QUICK_MIX_RATIOS)
    if n_per_class is None and preset == "quick":
        n_per_class = FIG3_QUICK_N_PER_CLASS.get(dataset)
    if n_per_class is not None:  # fail before the first run, not inside it
        check_n_per_class(n_per_class)
    subset = {} if n_per_class is None else {"n_per_class": n_per_class}
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    jobs = [(m, float(r)) for m in methods for r in mix_ratios]
    if ("pwoa", 0.0) not in jobs:
        jobs.insert(0, ("pwoa", 0.0))  # the reference run of the time ratio
    configs = [hydra_config(dataset, preset, rate=rate, mix_ratio=r, seed=seed, device=str(device), **subset)
               if method == "hydra" else
               preset_config(dataset, preset, method=method, rate=rate, mix_ratio=r, seed=seed, device=str(device),
                             **subset)
               for method, r in jobs]
    # one run at a time (no workers): the x axis is wall-clock training time, which parallel runs would distort
    done, _ = prune_rows(teacher, configs, settings, cache_dir, use_cache, root, 1, progress,
                      desc=f"figure 3 ({dataset}, {preset})")
    rows = [row for row, _ in done]
    curves = [history.assign(method=method, mix_ratio=r) for (_, history), (method, r) in zip(done, jobs)]
    curves_df = pd.concat(curves, ignore_index=True)
    summary = pd.DataFrame(rows)
    ref = curves_df[(curves_df.method == "pwoa") & (curves_df.mix_ratio == 0)]
    target, ref_time = float(ref.val_pgd.iloc[-1]), float(ref.train_seconds.iloc[-1])
    ratios = []
    for row in summary.itertuples():
        hist = curves_df[(curves_df.method == row.method) & (curves_df.mix_ratio == row.mix_ratio)]
        ratios.append(time_to_reach(hist, target) / ref_time)
    summary["time_ratio"] = ratios
    summary["target_val_pgd"] = target
    keep = ["method", "mix_ratio", "phase", "epoch", "train_seconds", "val_natural", "val_pgd"]
    cols = ["dataset", "method", "rate", "mix_ratio", "natural", "fgsm", "pgd", "aa", "sparsity", "train_seconds",
            "time_ratio", "target_val_pgd", "cached"]
    return curves_df[keep], summary[[c for c in cols if c in summary.columns]]
