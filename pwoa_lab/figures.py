"""The paper's figures as DataFrames: Figure 1 (robustness vs pruning rate) and Figure 3 (robustness vs
training time over mix ratios), each run a cached `prune_row`, plus the checks that read them."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch.nn as nn

from .data import check_n_per_class
from .evaluation import EvalSettings
from .jobs import check_workers, prune_rows
from .presets import eval_settings, fig3_defaults, preset_config
from .runs import resolve_teacher, teacher_row
from .utils import check_rate, get_device

FIG1_COLUMNS = ["dataset", "method", "rate", "natural", "fgsm", "pgd", "aa", "sparsity", "train_seconds",
                "eval_seconds", "cached"]


def figure1(dataset: str = "digits", rates: Sequence[float] = (2, 4, 8, 16), methods: Sequence[str] = ("naive", "pwoa"),
            preset: str = "quick", seed: int = 1234, teacher: nn.Module | str | Path | None = None,
            settings: EvalSettings | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
            root=None, device=None, progress: bool = True, workers: int = 1, **overrides: Any) -> pd.DataFrame:
    """Figure 1(b): natural / FGSM / PGD / AutoAttack accuracy (%) vs pruning rate, per method.

    One row per (method, rate) plus the unpruned teacher (method "teacher", rate 1). `overrides` go into
    every run config (e.g. scope="convs"). Each row is cached by its full configuration. `workers` > 1 runs
    that many prune runs at once in separate processes (same results; see `jobs.prune_rows`).
    """
    rates = [check_rate(r) for r in rates]
    settings = settings or eval_settings(dataset, preset)
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    configs = [preset_config(dataset, preset, method=m, rate=r, seed=seed, device=str(device), **overrides)
               for m in methods for r in rates]
    eps = preset_config(dataset, preset, **overrides).resolved().eps
    workers = check_workers(workers)
    teacher_job = (teacher_row, (teacher if workers == 1 else copy.deepcopy(teacher).cpu(), dataset, eps, settings,
                                 cache_dir, use_cache, root))
    done, (teacher_result,) = prune_rows(teacher, configs, settings, cache_dir, use_cache, root, workers, progress,
                                         desc=f"figure 1 ({dataset}, {preset})", extra_jobs=[teacher_job])
    rows = [teacher_result] + [row for row, _ in done]
    df = pd.DataFrame(rows)
    return df[[c for c in FIG1_COLUMNS if c in df.columns]]


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


def figure3(dataset: str = "digits", rate: float = 4, mix_ratios: Sequence[float] | None = None,
            methods: Sequence[str] = ("pwoa", "advprune", "hydra"), preset: str = "quick", seed: int = 1234,
            teacher: nn.Module | str | Path | None = None, settings: EvalSettings | None = None,
            cache_dir: str | Path | None = None, use_cache: bool = True, root=None, device=None,
            progress: bool = True, n_per_class: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 3: robust accuracy vs training time for each method over its mix ratios.

    `mix_ratios`, `n_per_class` (train every run on this many images per class) and `settings` (test-set
    evaluation) default to the preset's Figure 3 block (`pwoa_lab.presets`): on CPU presets three mix ratios,
    MNIST on 300 images per class, and natural / FGSM / PGD on at most 500 and AutoAttack on at most 100 test
    images, since Figure 3 evaluates many models.

    Returns (curves, summary). `curves`: one row per run and epoch (method, mix_ratio, phase, epoch,
    train_seconds, val_natural, val_pgd). `summary`: one row per run with the final test natural / PGD /
    AutoAttack accuracy, seconds and `time_ratio` = (its time to first reach PwoA's r = 0 final validation
    PGD accuracy with a sparse model) / (PwoA's r = 0 total time); NaN when never reached.
    """
    rate = check_rate(rate)
    defaults = fig3_defaults(dataset, preset)
    settings = settings or defaults["eval"]
    mix_ratios = defaults["mix_ratios"] if mix_ratios is None else mix_ratios
    n_per_class = defaults["n_per_class"] if n_per_class is None else n_per_class
    if n_per_class is not None:  # fail before the first run, not inside it
        check_n_per_class(n_per_class)
    subset = {} if n_per_class is None else {"n_per_class": n_per_class}
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    jobs = [(m, float(r)) for m in methods for r in mix_ratios]
    if ("pwoa", 0.0) not in jobs:
        jobs.insert(0, ("pwoa", 0.0))  # the reference run of the time ratio
    configs = [preset_config(dataset, preset, method=method, rate=rate, mix_ratio=r, seed=seed, device=str(device),
                             **subset) for method, r in jobs]
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
