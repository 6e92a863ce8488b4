"""The pruning design space as one experiment: robust accuracy against real model size and latency.

    design_space(teacher, "digits", rates=(2, 4), seeds=(0, 1, 2),
                 structures=("weight", "structured"), importances=("magnitude", "gradient"),
                 schedules=("oneshot", "admm", "iterative"), losses=("naive", "pwoa"))

runs every combination through ``runs.prune_row`` (cached: a second call reads everything from the cache) and
returns one row per run: the axes (structure, importance, schedule, method = the loss), rate, seed, test
accuracies (natural, fgsm, pgd, aa), and the model's footprint (``pwoa_lab.pruning.footprint``): params, nonzero,
dense_bytes, sparse_bytes, ship_bytes (the smaller file), latency_ms_1 / latency_ms_128 (CPU, median). The dense
teacher is the row with structure "dense" and rate 1.

Latency depends on the layer shapes only, not on the weights' values, so it is measured once per architecture
(every weight-pruned model computes like the dense teacher; structured models of one rate share their shapes)
and copied to the rows that share it. Latency is never cached: it belongs to the machine of the moment.
``summarize`` gives mean and std over seeds, and the 95% interval over seeds and test images.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import dataset_info
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.core.intervals import format_cell
from pwoa_lab.experiments.confidence import INTERVAL_METRICS, add_intervals
from pwoa_lab.experiments.runs import load_cached_model, prune_row, resolve_teacher, teacher_row
from pwoa_lab.pruning.footprint import file_sizes, latency_table, nonzero_count, parameter_count
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.registry import TEACHER
from pwoa_lab.training.presets import eval_settings, preset_config
from pwoa_lab.utils import get_device

AXES = ("structure", "importance", "schedule", "method")
FOOTPRINT = ("params", "nonzero", "dense_bytes", "sparse_bytes", "ship_bytes")


def design_configs(dataset: str, preset: str, rates: Sequence[float], seeds: Sequence[int],
                   structures: Sequence[str], importances: Sequence[str], schedules: Sequence[str],
                   losses: Sequence[str], **overrides: Any) -> list[PruneConfig]:
    """One PruneConfig per combination (structure x importance x schedule x loss x rate x seed)."""
    return [preset_config(dataset, preset, method=loss, rate=rate, seed=seed, structure=structure,
                          importance=importance, schedule=schedule, **overrides)
            for structure, importance, schedule, loss, rate, seed in
            itertools.product(structures, importances, schedules, losses, rates, seeds)]


def _signature(model: nn.Module) -> tuple:
    """The layer shapes: what a model's latency depends on."""
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def design_space(teacher: nn.Module | str | Path | None = None, dataset: str = defaults.DATASET,
                 rates: Sequence[float] = (2, 4, 8), seeds: Sequence[int] = (0, 1, 2),
                 structures: Sequence[str] = ("weight", "structured"),
                 importances: Sequence[str] = ("magnitude", "gradient"),
                 schedules: Sequence[str] = ("oneshot", "admm", "iterative"),
                 losses: Sequence[str] = defaults.FRONTIER_METHODS, preset: str = defaults.PRESET,
                 settings: EvalSettings | None = None, cache_dir: str | Path | None = None, root=None,
                 latency: bool = True, batches: Sequence[int] = (1, 128), repeats: int = 11,
                 threads: int | None = None, progress: bool = True, **overrides: Any) -> pd.DataFrame:
    """Every combination of the axes at every rate and seed (cached runs), with accuracy and footprint.

    teacher: a model, a checkpoint path, or None (the dataset's shipped teacher); settings: the test-set
    evaluation (default: the preset's); overrides: PruneConfig fields for every run (e.g. scope="hidden");
    latency / batches / repeats / threads: the CPU timing (``footprint.latency_table``; threads None: torch's
    current setting). Returns one row per run plus the teacher's (see the module docstring)."""
    device = get_device(None)
    teacher = resolve_teacher(dataset, teacher, device)
    settings = settings or eval_settings(dataset, preset)
    configs = design_configs(dataset, preset, rates, seeds, structures, importances, schedules, losses, **overrides)
    rows, models = [], {}
    t_row = teacher_row(teacher, dataset, configs[0].eps if configs else dataset_info(dataset).eps,
                        settings, cache_dir, root=root)
    t_key = t_row.get("key") or TEACHER  # no store key without the cache
    rows.append({"structure": "dense", "importance": "-", "schedule": "-", "method": TEACHER, "rate": 1.0,
                 "seed": None, **{k: t_row.get(k) for k in ("natural", "fgsm", "pgd", "aa")},
                 "train_seconds": 0.0, "key": t_key})
    models[t_key] = copy.deepcopy(teacher).cpu()
    for config in configs:
        row, _ = prune_row(teacher.to(device), config, settings, cache_dir, root=root, progress=progress)
        rows.append({**{axis: getattr(config, axis) for axis in AXES}, "rate": config.rate, "seed": config.seed,
                     **{k: row.get(k) for k in ("natural", "fgsm", "pgd", "aa")},
                     "train_seconds": row.get("train_seconds"), "key": row["key"]})
        models[row["key"]] = load_cached_model(row["key"], teacher, cache_dir)
    return add_footprint(pd.DataFrame(rows), models, dataset_info(dataset).shape, latency, batches, repeats,
                         threads)


def add_footprint(df: pd.DataFrame, models: dict[str, nn.Module], input_shape: Sequence[int], latency: bool = True,
                  batches: Sequence[int] = (1, 128), repeats: int = 11, threads: int | None = None) -> pd.DataFrame:
    """`df` (one row per model, column `key`) with params, nonzero, dense_bytes, sparse_bytes, ship_bytes and,
    with `latency`, latency_ms_<batch> (timed once per architecture, interleaved: ``footprint.latency_table``)."""
    df = df.reset_index(drop=True).copy()
    sizes = {key: {"params": parameter_count(m), "nonzero": nonzero_count(m), **file_sizes(m)}
             for key, m in models.items()}
    for col in FOOTPRINT[:-1]:
        df[col] = [sizes[key][col] for key in df.key]
    df["ship_bytes"] = df[["dense_bytes", "sparse_bytes"]].min(axis=1)
    if latency:
        shapes: dict[tuple, str] = {}
        for key, model in models.items():
            shapes.setdefault(_signature(model), key)
        timed = latency_table({key: models[key] for key in shapes.values()}, input_shape, batches, repeats,
                              threads=threads)
        for batch in batches:
            df[f"latency_ms_{batch}"] = [timed[shapes[_signature(models[key])]][batch] for key in df.key]
    return df

def summarize(df: pd.DataFrame, metrics: Sequence[str] = ("natural", "pgd", "aa"),
              extra: Sequence[str] = ("params", "ship_bytes", "latency_ms_128"),
              cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Mean and std over seeds of `metrics` (and the mean of `extra`), one row per (axes, rate); columns like
    ``pgd_mean``, ``pgd_std``, ``n_seeds``, and ``pgd_mean_low`` / ``pgd_mean_high``: the 95% interval over seeds
    and test images (`experiments.confidence`; NaN where the runs' outcomes are not in the store)."""
    keys = list(AXES) + ["rate"]
    metrics = [m for m in metrics if m in df]
    grouped = df.groupby(keys, sort=False, dropna=False)
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    for col in extra:
        if col in df:
            out[col] = grouped[col].mean()
    out["n_seeds"] = grouped.size()
    out = out.reset_index()
    return add_intervals(out, df, keys, [m for m in metrics if m in INTERVAL_METRICS], cache_dir,
                         rename={m: f"{m}_mean" for m in metrics})


def mean_std_table(df: pd.DataFrame, metrics: Sequence[str] = ("pgd", "aa"), digits: int = 1,
                   cache_dir: str | Path | None = None) -> pd.DataFrame:
    """``summarize`` as text cells "mean [low, high]" (the 95% interval over seeds and test images) where the runs'
    outcomes are in the store, else "mean ± std" over seeds (a table to read or paste)."""
    s = summarize(df, metrics, extra=(), cache_dir=cache_dir)
    for m in metrics:
        if f"{m}_mean" in s:
            s[m] = [format_cell(r[f"{m}_mean"], r.get(f"{m}_mean_low", float("nan")),
                                r.get(f"{m}_mean_high", float("nan")), r[f"{m}_std"], digits)
                    for r in s.to_dict("records")]
    return s[list(AXES) + ["rate"] + [m for m in metrics if m in s] + ["n_seeds"]]


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """``python -m pwoa_lab.experiments.design_space --dataset digits --rates 2,4 ... --out results/ds.csv``:
    run the grid (cached), print the mean ± std table and write every row as CSV."""
    import argparse

    import torch

    def strs(text: str) -> tuple[str, ...]:
        return tuple(t.strip() for t in text.split(",") if t.strip())

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("--dataset", default=defaults.DATASET)
    p.add_argument("--preset", default=defaults.PRESET)
    p.add_argument("--rates", default="2,4")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--structures", default="weight,structured")
    p.add_argument("--importances", default="magnitude,gradient")
    p.add_argument("--schedules", default="oneshot,admm,iterative")
    p.add_argument("--losses", default="naive,pwoa")
    p.add_argument("--n", type=int, default=None, help="test images for natural / FGSM / PGD (default: preset)")
    p.add_argument("--aa-n", type=int, default=None, help="test images for AutoAttack (default: preset)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for training and timing")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--root", default=None)
    p.add_argument("--out", default=None, help="CSV of every row")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = eval_settings(args.dataset, args.preset)
    if args.n is not None or args.aa_n is not None:
        settings = EvalSettings(n=args.n if args.n is not None else settings.n,
                                aa_n=args.aa_n if args.aa_n is not None else settings.aa_n,
                                aa_version=settings.aa_version)
    df = design_space(None, args.dataset, tuple(float(r) for r in strs(args.rates)),
                      tuple(int(s) for s in strs(args.seeds)), strs(args.structures), strs(args.importances),
                      strs(args.schedules), strs(args.losses), args.preset, settings, args.cache_dir, args.root,
                      threads=args.threads, progress=False)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(mean_std_table(df, ("natural", "pgd", "aa"), cache_dir=args.cache_dir).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
