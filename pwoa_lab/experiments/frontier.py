"""Is the comparison fair? Each method's natural-vs-robust trade-off over its fine-tuning budget, and budgets
chosen on validation.

A method's verdict at one learning rate says little: a smaller rate keeps more of the teacher's robustness and wins
back less natural accuracy. So every method runs at every budget of a grid (learning rates x `lr_factor`, epochs x
`epoch_factor` of the preset; `RunConfig.budget_applied`), and each budget is one (natural, robust) point, mean +-
sd over seeds. A method's *front* is its points that no other of its points beats on both axes. Two fronts are
compared with the seeds' spread in mind (`compare_fronts`).

    fr = frontier("digits", rates=(4, 8), methods=("naive", "pwoa"), lr_factors=(0.1, 1/3, 1, 3), seeds=(0, 1, 2))
    fr.points      # one row per (method, rate, budget), plus the one-shot control and the teacher as references
    fr.verdicts    # per rate: does PwoA's front dominate naive's, the reverse, do they cross, or within noise?

`tune_budgets(runs, curves)` picks one budget per (method, rate) from validation numbers only: among the budgets
whose mean validation natural accuracy is within `tolerance` (1 point) of the method's best, the one with the
highest mean validation PGD accuracy. The test split plays no part in the choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.runs import cached_prune_row, resolve_teacher, teacher_row
from pwoa_lab.experiments.sweep import sweep
from pwoa_lab.training.presets import eval_settings, preset_config
from pwoa_lab.training.registry import method_spec
from pwoa_lab.utils import check_budget_factor, check_rate, get_device

DEFAULT_LR_FACTORS = (0.1, 1 / 3, 1.0, 3.0)
DEFAULT_EPOCH_FACTORS = (1.0,)
BUDGET_KEYS = ["lr_factor", "epoch_factor"]
VALIDATION_COLUMNS = ["val_natural", "val_pgd"]


def budget_grid(lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
                epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS) -> list[dict[str, float]]:
    """Every (lr_factor, epoch_factor) pair as grid points; each factor a number > 0, given once."""
    out = []
    for name, values in (("lr_factor", lr_factors), ("epoch_factor", epoch_factors)):
        values = [check_budget_factor(v, name) for v in values]
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{name}s must be one or more distinct numbers > 0; got {list(values)}")
    for lr in lr_factors:
        for ep in epoch_factors:
            out.append({"lr_factor": float(lr), "epoch_factor": float(ep)})
    return out


def parse_budgets(items: Sequence[str]) -> tuple[list[float], list[float]]:
    """CLI budgets ["lr=0.1,1/3,1,3", "epochs=1/3,1,3"] as (lr_factors, epoch_factors); a missing one is [1]."""
    found: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or name not in ("lr", "epochs"):
            raise ValueError(f"a budget option is lr=F1,F2,... or epochs=F1,F2,... (factors of the preset's); "
                             f"got {item!r}")
        try:
            found[name] = [float(Fraction(v.strip())) for v in values.split(",") if v.strip()]
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"budget factors are numbers or fractions like 1/3; got {item!r}") from None
    lrs, eps = found.get("lr", [1.0]), found.get("epochs", [1.0])
    budget_grid(lrs, eps)  # the checks
    return lrs, eps


def grid_points(methods: Sequence[str], rates: Sequence[float], lr_factors: Sequence[float],
                epoch_factors: Sequence[float]) -> list[dict[str, Any]]:
    """The frontier's runs as sweep grid points: every method that trains x rate x budget, and the one-shot control
    (no training, so no budget) at every rate."""
    rates = [check_rate(r) for r in rates]
    budgets = budget_grid(lr_factors, epoch_factors)
    points = [{"method": m, "rate": r, **b} for m in methods if method_spec(m).trains for r in rates for b in budgets]
    return points + [{"method": "oneshot", "rate": r, "lr_factor": 1.0, "epoch_factor": 1.0} for r in rates]


def robust_metric(settings: EvalSettings, runs: pd.DataFrame) -> str:
    """The robust column of a frontier: `aa` (per point the worst case of PGD and AutoAttack) where the evaluation
    ran AutoAttack, else `pgd`."""
    return "aa" if settings.aa_n and "aa" in runs and runs.aa.notna().any() else "pgd"


# ----------------------------------------------------------------------------------------------- fronts

def pareto_flags(natural: Sequence[float], robust: Sequence[float]) -> list[bool]:
    """True for each point that no other point beats on both axes (higher natural AND higher robust)."""
    pts = list(zip(natural, robust))
    return [not any(n2 > n and r2 > r for n2, r2 in pts) for n, r in pts]


def _reaches(a: pd.Series, b: pd.Series) -> bool:
    """Point a is at least as good as b on both axes within one combined sd (the seeds' spread)."""
    tol_n = math.hypot(_sd(a.natural_std), _sd(b.natural_std))
    tol_r = math.hypot(_sd(a.robust_std), _sd(b.robust_std))
    return a.natural >= b.natural - tol_n and a.robust >= b.robust - tol_r


def _sd(value: float) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class FrontVerdict:
    """How front A compares with front B: "A dominates", "B dominates", "within noise" or "cross"; `text` says it
    in words (and, for a crossing, where)."""
    verdict: str
    text: str


def compare_fronts(a: pd.DataFrame, b: pd.DataFrame, name_a: str = "A", name_b: str = "B") -> FrontVerdict:
    """Compare two fronts (rows: natural, natural_std, robust, robust_std; the points of each method's front).

    A covers B when every point of B is reached by some point of A within one combined sd on both axes. Both
    cover each other: "within noise". Only A covers B: A dominates (some point of A is beyond B's reach). Neither:
    the fronts cross, and the text gives the natural-accuracy range where each one has the point the other
    cannot reach."""
    if a.empty or b.empty:
        raise ValueError("compare_fronts needs at least one point on each front")
    a_miss = [p for _, p in b.iterrows() if not any(_reaches(q, p) for _, q in a.iterrows())]  # b points A misses
    b_miss = [p for _, p in a.iterrows() if not any(_reaches(q, p) for _, q in b.iterrows())]
    if not a_miss and not b_miss:
        return FrontVerdict("within noise", f"{name_a} and {name_b} reach each other's points within one sd")
    if not a_miss:
        return FrontVerdict(f"{name_a} dominates", f"{name_a}'s front reaches every point of {name_b}'s, and "
                                                   f"{name_b} cannot reach {_where(b_miss)}")
    if not b_miss:
        return FrontVerdict(f"{name_b} dominates", f"{name_b}'s front reaches every point of {name_a}'s, and "
                                                   f"{name_a} cannot reach {_where(a_miss)}")
    return FrontVerdict("cross", f"they cross: only {name_a} reaches {_where(b_miss)}; only {name_b} reaches "
                                 f"{_where(a_miss)}")


def _where(points: list[pd.Series]) -> str:
    lo, hi = min(p.natural for p in points), max(p.natural for p in points)
    span = f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f}"
    rob = max(p.robust for p in points)
    return f"natural {span}% (robust up to {rob:.1f}%)"


# ----------------------------------------------------------------------------------------------- the frontier

@dataclass
class FrontierResult:
    """`points`: one row per (rate, method, budget) with natural / robust means and sds over seeds and `on_front`,
    plus the one-shot control (kind "control") and the teacher (kind "teacher", rate 1); `verdicts`: per rate and
    pair of methods compared; `runs` / `curves`: the sweep's per-run tables (test metrics and training histories)."""
    points: pd.DataFrame
    verdicts: pd.DataFrame
    runs: pd.DataFrame
    curves: pd.DataFrame
    robust_metric: str
    teacher: dict[str, Any]


def frontier(dataset: str = defaults.DATASET, rates: Sequence[float] = (4, 8),
             methods: Sequence[str] = ("naive", "pwoa"), lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
             epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, seeds: Sequence[int] = (0, 1, 2),
             preset: str = defaults.PRESET, compare: tuple[str, str] = ("pwoa", "naive"),
             teacher: nn.Module | str | Path | None = None, settings: EvalSettings | None = None,
             cache_dir: str | Path | None = None, root=None, device=None, workers: int = 1, backend: str = "local",
             address: str | None = None, progress: bool = True, **fixed: Any) -> FrontierResult:
    """Every method x rate x budget x seed as a cached run (a `sweep`), the one-shot control and the teacher, and
    the fronts and verdicts. Robust accuracy is the per-point worst case of PGD and AutoAttack (`aa`) where the
    evaluation runs AutoAttack, else PGD. `fixed`: run-config fields of every run (e.g. scope="hidden")."""
    points = grid_points(methods, rates, lr_factors, epoch_factors)
    if all(p["method"] == "oneshot" for p in points):
        raise ValueError(f"frontier needs at least one method that trains; got {list(methods)}")
    settings = settings or eval_settings(dataset, preset)
    dev = get_device(device)
    teacher = resolve_teacher(dataset, teacher, dev)  # loaded once, for the sweep and the teacher row
    result = sweep(points, seeds, dataset, preset, teacher, settings, cache_dir, True, root, device, backend, address,
                   workers, progress, f"frontier ({dataset}, {preset})", errors="raise", **fixed)
    metric = robust_metric(settings, result.runs)
    eps = preset_config(dataset, preset, **fixed).resolved().eps
    t_row = teacher_row(teacher, dataset, eps, settings, cache_dir, root=root, device=dev)
    table = front_table(result.runs, metric, t_row)
    return FrontierResult(table, verdicts(table, compare), result.runs, result.curves, metric, t_row)


def front_table(runs: pd.DataFrame, metric: str, teacher: dict | None = None) -> pd.DataFrame:
    """Mean and sd over seeds of natural and `metric` per (rate, method, budget), the front flag per (rate,
    method), and the teacher as a reference row."""
    keys = ["rate", "method"] + BUDGET_KEYS
    g = runs.groupby(keys, sort=False)
    out = pd.DataFrame({"seeds": g.size(), "natural": g.natural.mean(), "natural_std": g.natural.std(ddof=1),
                        "robust": g[metric].mean(), "robust_std": g[metric].std(ddof=1)}).reset_index()
    out["kind"] = ["control" if not method_spec(m).trains else "method" for m in out.method]
    out["on_front"] = False
    for _, idx in out.groupby(["rate", "method"]).groups.items():
        part = out.loc[idx]
        out.loc[idx, "on_front"] = pareto_flags(part.natural.tolist(), part.robust.tolist())
    if teacher is not None:
        row = {"rate": 1.0, "method": "teacher", "lr_factor": float("nan"), "epoch_factor": float("nan"), "seeds": 1,
               "natural": teacher["natural"], "natural_std": float("nan"), "robust": teacher.get(metric),
               "robust_std": float("nan"), "kind": "teacher", "on_front": True}
        out = pd.concat([pd.DataFrame([row]), out], ignore_index=True)
    out.insert(0, "robust_metric", metric)
    return out


def verdicts(points: pd.DataFrame, compare: tuple[str, str] = ("pwoa", "naive")) -> pd.DataFrame:
    """Per rate: `compare_fronts` of the two methods' fronts (rows only where both ran)."""
    a, b = compare
    rows = []
    for rate, part in points[points.kind == "method"].groupby("rate", sort=True):
        fa, fb = (part[(part.method == m) & part.on_front] for m in (a, b))
        if fa.empty or fb.empty:
            continue
        v = compare_fronts(fa, fb, a, b)
        rows.append({"rate": rate, "a": a, "b": b, "verdict": v.verdict, "text": v.text})
    return pd.DataFrame(rows, columns=["rate", "a", "b", "verdict", "text"])


# ----------------------------------------------------------------------------------------------- tuned budgets

def validation_table(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: method, rate, budget, seed and the validation numbers of the epoch whose weights the run kept
    (the history row of `selected_epoch`). Only validation columns come out: nothing of the test split."""
    keys = ["method", "rate"] + BUDGET_KEYS + ["seed"]
    sel = runs[keys + ["selected_epoch"]]
    hist = curves[keys + ["epoch"] + VALIDATION_COLUMNS].dropna(subset=VALIDATION_COLUMNS)
    merged = sel.merge(hist, left_on=keys + ["selected_epoch"], right_on=keys + ["epoch"], how="left")
    return merged[keys + VALIDATION_COLUMNS]


def tune_budgets(validation: pd.DataFrame, tolerance: float = 1.0) -> pd.DataFrame:
    """One budget per (method, rate), chosen on validation numbers only (columns method, rate, lr_factor,
    epoch_factor, seed, val_natural, val_pgd; any other column is dropped first): among the budgets whose mean
    val_natural is within `tolerance` points of the best, the one with the highest mean val_pgd (ties: the first
    in the table's order). Returns method, rate, lr_factor, epoch_factor, val_natural, val_pgd (means)."""
    keys = ["method", "rate"] + BUDGET_KEYS
    val = validation[keys + ["seed"] + VALIDATION_COLUMNS]
    means = val.groupby(keys, sort=False)[VALIDATION_COLUMNS].mean().reset_index()
    rows = []
    for _, part in means.groupby(["method", "rate"], sort=False):
        pool = part[part.val_natural >= part.val_natural.max() - tolerance]
        rows.append(pool.loc[pool.val_pgd.idxmax()])
    return pd.DataFrame(rows).reset_index(drop=True)


def budget_label(lr_factor: float, epoch_factor: float) -> str:
    """'lr x0.1, epochs x1': a budget as the table shows it."""
    return f"lr x{lr_factor:.3g}, epochs x{epoch_factor:.3g}"


def figure1_tuned(dataset: str = defaults.DATASET, rates: Sequence[float] = (2, 4, 8, 16),
                  methods: Sequence[str] = ("oneshot", "naive", "pwoa"), seeds: Sequence[int] = (0, 1, 2),
                  lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
                  epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, tolerance: float = 1.0,
                  **kwargs: Any) -> pd.DataFrame:
    """Figure 1 with each method's budget tuned: every budget of the grid runs (cached), `tune_budgets` picks one per
    (method, rate) on validation numbers, and the table holds the test rows of that budget (every seed), the
    one-shot control and the teacher, with `lr_factor`, `epoch_factor` and `budget` saying what each method got.
    `kwargs`: as `frontier` (preset, teacher, settings, cache_dir, workers, scope=..., ...)."""
    trained = [m for m in methods if method_spec(m).trains]
    fr = frontier(dataset, rates, trained or ["naive"], lr_factors, epoch_factors, seeds, **kwargs)
    runs = fr.runs
    chosen = tune_budgets(validation_table(runs[runs.method.isin(trained)], fr.curves), tolerance)
    keys = ["method", "rate"] + BUDGET_KEYS
    picked = runs.merge(chosen[keys], on=keys) if trained else runs.iloc[:0]
    control = runs[runs.method == "oneshot"] if "oneshot" in methods else runs.iloc[:0]
    table = pd.concat([pd.DataFrame([{**fr.teacher, "lr_factor": float("nan"), "epoch_factor": float("nan")}]),
                       control, picked], ignore_index=True)
    table["budget"] = [budget_label(lr, ep) if m not in ("teacher", "oneshot") else "-"
                       for m, lr, ep in zip(table.method, table.lr_factor, table.epoch_factor)]
    return table


def cached_frontier(dataset: str, rates: Sequence[float], methods: Sequence[str], seeds: Sequence[int],
                    preset: str = defaults.PRESET, lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
                    epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, teacher: nn.Module | None = None,
                    cache_dir: str | Path | None = None, device=None, **fixed: Any) -> pd.DataFrame:
    """The frontier's points from what the run cache already holds (nothing is trained; e.g. the classroom
    explorer after `pwoa-lab frontier` ran before class): `front_table` of the cached runs, without the teacher
    row; empty when no trained method has a cached budget."""
    dev = get_device(device)
    teacher = resolve_teacher(dataset, teacher, dev)
    settings = eval_settings(dataset, preset)
    rows = []
    for point in grid_points(methods, rates, lr_factors, epoch_factors):
        for seed in seeds:
            config = preset_config(dataset, preset, **{**fixed, **point, "seed": seed, "device": str(dev)})
            hit = cached_prune_row(teacher, config, settings, cache_dir)
            if hit is not None:
                rows.append({**point, "seed": seed, **{k: hit[0].get(k) for k in ("natural", "pgd", "aa")}})
    runs = pd.DataFrame(rows)
    if runs.empty or not (runs.method != "oneshot").any():
        return pd.DataFrame()
    return front_table(runs, robust_metric(settings, runs))
