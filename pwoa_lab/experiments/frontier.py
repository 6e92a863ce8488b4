"""Is the comparison fair? Each method's natural-vs-robust trade-off over its fine-tuning budget, and budgets
chosen on validation.

A method's verdict at one learning rate says little: a smaller rate keeps more of the teacher's robustness and wins
back less natural accuracy. So every method runs at every budget of a grid (learning rates x `lr_factor`, epochs x
`epoch_factor` of the preset; `RunConfig.budget_applied`), and each budget is one (natural, robust) point: the mean
over seeds and test images, with its 95% interval over both. A method's *front* is its points that no other of its
points matches on both axes and beats on one. Two fronts are compared with paired intervals (`compare_fronts`,
`FRONT_RULE`). A grid is never read at its edge: where a method's best validation point lies on the smallest or
largest factor of an axis, the next factor past it (x3 or /3) is run too, up to `LR_LIMITS` / `EPOCH_LIMITS`
(`edge_extensions`).

    fr = frontier("digits", rates=(4, 8), methods=("naive", "pwoa"), lr_factors=(0.1, 1/3, 1, 3), seeds=(0, 1, 2))
    fr.points      # one row per (method, rate, budget), plus the one-shot control and the teacher as references
    fr.verdicts    # per rate: does PwoA's front dominate naive's, the reverse, do they cross, or is it inconclusive?

`tune_budgets(runs, curves)` picks one budget per (method, rate) from validation numbers only: among the budgets
whose mean validation natural accuracy is within `tolerance` (1 point) of the method's best, the one with the
highest mean validation PGD accuracy. The test split plays no part in the choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.core.intervals import Interval, accuracy_interval
from pwoa_lab.experiments.budgets import (BUDGET_KEYS, DEFAULT_EPOCH_FACTORS, DEFAULT_LR_FACTORS,  # noqa: F401
                                          EPOCH_LIMITS, LR_LIMITS, budget_grid, budget_label, edge_extensions,
                                          parse_budgets, tune_budgets, validation_table)
from pwoa_lab.experiments.capacity import capacity_configs, capacity_rows
from pwoa_lab.experiments.confidence import add_intervals, contrast_intervals, group_outcomes, run_outcomes
from pwoa_lab.experiments.runs import cached_prune_row, resolve_teacher, teacher_row
from pwoa_lab.experiments.sweep import sweep
from pwoa_lab.training.presets import capacity_overrides, eval_settings, preset_config
from pwoa_lab.training.registry import CAPACITY, TEACHER, method_order, method_spec, method_with_role
from pwoa_lab.utils import check_rate, get_device

def grid_points(methods: Sequence[str], rates: Sequence[float], lr_factors: Sequence[float],
                epoch_factors: Sequence[float]) -> list[dict[str, Any]]:
    """The frontier's runs as sweep grid points: every method that trains x rate x budget, and the one-shot control
    (no training, so no budget) at every rate."""
    rates = [check_rate(r) for r in rates]
    budgets = budget_grid(lr_factors, epoch_factors)
    points = [{"method": m, "rate": r, **b} for m in methods if method_spec(m).trains for r in rates for b in budgets]
    control = method_with_role("control")
    return points + [{"method": control, "rate": r, "lr_factor": 1.0, "epoch_factor": 1.0} for r in rates]


def robust_metric(settings: EvalSettings, runs: pd.DataFrame) -> str:
    """The robust column of a frontier: `aa` (per point the worst case of PGD and AutoAttack) where the evaluation
    ran AutoAttack, else `pgd`."""
    return "aa" if settings.aa_n != 0 and "aa" in runs and runs.aa.notna().any() else "pgd"


# ----------------------------------------------------------------------------------------------- fronts

def pareto_flags(natural: Sequence[float], robust: Sequence[float]) -> list[bool]:
    """True for each point on the front: no other point is at least as good on both axes and better on one (a tie
    with a better point is not on the front; two identical points both are)."""
    pts = list(zip(natural, robust))
    return [not any(n2 >= n and r2 >= r and (n2 > n or r2 > r) for n2, r2 in pts) for n, r in pts]


@dataclass
class FrontVerdict:
    """How front A compares with front B: "A dominates", "B dominates", "cross" or "inconclusive"; `text` says it
    in one plain sentence."""
    verdict: str
    text: str


FRONT_RULE = ("a point is beaten only where the 95% interval of its paired difference to another point (bootstrap "
              "over seeds and test images) lies wholly below zero on an axis, natural or robust; a front dominates "
              "when every point of the other front is matched (not beaten) by one of its points and one of its own "
              "points is matched by none of the other's")


def compare_fronts(a: pd.DataFrame, b: pd.DataFrame, name_a: str = "A", name_b: str = "B",
                   differences: Callable[[Any, Any], tuple[Interval | None, Interval | None]] | None = None
                   ) -> FrontVerdict:
    """Compare two fronts (rows: natural, robust and a `point` id; the points of each method's front), `FRONT_RULE`.

    `differences(q, p)` gives the paired intervals of (natural, robust) of point q minus point p (by `point` id);
    q matches p unless one of them lies wholly below 0. None (no per-image outcomes): every point matches, and the
    verdict is "inconclusive". Both fronts match each other: "inconclusive" (neither is shown better)."""
    if a.empty or b.empty:
        raise ValueError("compare_fronts needs at least one point on each front")

    def matches(q: pd.Series, p: pd.Series) -> bool:
        if differences is None:
            return True
        return not any(iv is not None and iv.high < 0 for iv in differences(q.point, p.point))

    a_miss = [p for _, p in b.iterrows() if not any(matches(q, p) for _, q in a.iterrows())]  # b points A misses
    b_miss = [p for _, p in a.iterrows() if not any(matches(q, p) for _, q in b.iterrows())]
    if not a_miss and not b_miss:
        return FrontVerdict("inconclusive", f"Neither front is shown better: every point of each is matched by a "
                                            f"point of the other within the 95% intervals; more test images or "
                                            f"seeds would narrow them.")
    if not a_miss:
        return FrontVerdict(f"{name_a} dominates", f"{name_a} is better: its front matches every point of "
                                                   f"{name_b}'s, and nothing of {name_b}'s matches {name_a}'s "
                                                   f"{_points(b_miss)}.")
    if not b_miss:
        return FrontVerdict(f"{name_b} dominates", f"{name_b} is better: its front matches every point of "
                                                   f"{name_a}'s, and nothing of {name_a}'s matches {name_b}'s "
                                                   f"{_points(a_miss)}.")
    return FrontVerdict("cross", f"Neither is better everywhere: nothing of {name_b}'s front matches {name_a}'s "
                                 f"{_points(b_miss)}, and nothing of {name_a}'s matches {name_b}'s {_points(a_miss)}.")


def _points(points: list[pd.Series]) -> str:
    """The points as 'point (natural 90.3%, robust 38.1%)', in order of natural accuracy."""
    shown = [f"(natural {p.natural:.1f}%, robust {p.robust:.1f}%)" for p in sorted(points, key=lambda p: p.natural)]
    return ("point " if len(shown) == 1 else "points ") + ", ".join(shown)


# ----------------------------------------------------------------------------------------------- the frontier

@dataclass
class FrontierResult:
    """`points`: one row per (rate, method, budget) with natural / robust means, sds over seeds, 95% intervals over
    seeds and test images (`_low`, `_high`) and `on_front`, plus the one-shot control (kind "control") and the
    teacher (kind "teacher", rate 1); `verdicts`: per rate and pair of methods compared; `runs` / `curves`: the
    sweep's per-run tables (test metrics and training histories); `extensions`: the budgets the grid extension added
    (or could not add) and why."""
    points: pd.DataFrame
    verdicts: pd.DataFrame
    runs: pd.DataFrame
    curves: pd.DataFrame
    robust_metric: str
    teacher: dict[str, Any]
    extensions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXTENSION_COLUMNS))
    capacity: pd.DataFrame = field(default_factory=pd.DataFrame)  # the capacity control's runs (control="capacity")


EXTENSION_COLUMNS = ["method", "rate", "axis", "factor", "why"]


def frontier(dataset: str = defaults.DATASET, rates: Sequence[float] = (4, 8),
             methods: Sequence[str] = defaults.FRONTIER_METHODS, lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
             epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, seeds: Sequence[int] = (0, 1, 2),
             preset: str = defaults.PRESET, compare: tuple[str, str] = defaults.COMPARE,
             teacher: nn.Module | str | Path | None = None, settings: EvalSettings | None = None,
             cache_dir: str | Path | None = None, root=None, device=None, workers: int = 1, backend: str = "local",
             address: str | None = None, progress: bool = True, extend: bool = True, control: str | None = None,
             **fixed: Any) -> FrontierResult:
    """Every method x rate x budget x seed as a cached run (a `sweep`), the one-shot control and the teacher, and
    the fronts and verdicts. Robust accuracy is the per-point worst case of PGD and AutoAttack (`aa`) where the
    evaluation runs AutoAttack, else PGD. With `extend`, a (method, rate) whose best validation point lies on an
    edge of its budget grid gets the next budget past that edge, until no best point is on an edge or a limit is
    reached (`edge_extensions`; `extensions` lists what was added). `fixed`: run-config fields of every run (e.g.
    scope="hidden"). `control="capacity"`: per rate a dense network of the pruned size trained with the teacher's
    recipe (`pwoa_lab.experiments.capacity`), one reference point per rate (kind "capacity")."""
    points = grid_points(methods, rates, lr_factors, epoch_factors)
    if not any(method_spec(p["method"]).trains for p in points):
        raise ValueError(f"frontier needs at least one method that trains; got {list(methods)}")
    if control not in (None, "capacity"):
        raise ValueError(f"unknown control {control!r}; valid: capacity (or none)")
    settings = settings or eval_settings(dataset, preset)
    dev = get_device(device)
    teacher = resolve_teacher(dataset, teacher, dev)  # loaded once, for the sweep and the teacher row
    base = preset_config(dataset, preset, **fixed)  # what every point shares: the scope and the radius
    scope = base.scope
    if control:  # the teacher's recipe and every width checked before any run starts
        capacity_configs(teacher, dataset, rates, seeds, scope, capacity_overrides(dataset, preset))
    notes: list[dict] = []
    while True:
        result = sweep(points, seeds, dataset, preset, teacher, settings, cache_dir, True, root, device, backend,
                       address, workers, progress, f"frontier ({dataset}, {preset})", errors="raise", **fixed)
        if not extend:
            break
        trained = result.runs[[method_spec(m).trains for m in result.runs.method]]
        new, found = edge_extensions(validation_table(trained, result.curves), points)
        seen = {(n["method"], n["rate"], n["axis"], n["why"]) for n in notes}
        notes += [n for n in found if (n["method"], n["rate"], n["axis"], n["why"]) not in seen]
        if not new:
            break
        points = points + new
    metric = robust_metric(settings, result.runs)
    t_row = teacher_row(teacher, dataset, base.eps, settings, cache_dir, root=root, device=dev)
    table = front_table(result.runs, metric, t_row, cache_dir)
    capacity = pd.DataFrame()
    if control:
        capacity = capacity_rows(teacher, dataset, rates, seeds, settings, scope, capacity_overrides(dataset, preset),
                                 cache_dir, True, root, workers, backend, address, progress)
        table = pd.concat([table, capacity_points(capacity, metric, cache_dir)], ignore_index=True)
    return FrontierResult(table, verdicts(table, result.runs, compare, cache_dir), result.runs, result.curves,
                          metric, t_row, pd.DataFrame(notes, columns=EXTENSION_COLUMNS), capacity)


def capacity_points(capacity: pd.DataFrame, metric: str, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The capacity control as frontier reference points: per rate the mean over seeds of natural and `metric` with
    their 95% intervals (kind "capacity", never on a front)."""
    g = capacity.groupby(["rate", "method"], sort=True)
    out = pd.DataFrame({"seeds": g.size(), "natural": g.natural.mean(), "natural_std": g.natural.std(ddof=1),
                        "robust": g[metric].mean(), "robust_std": g[metric].std(ddof=1)}).reset_index()
    out = add_intervals(out, capacity, ["rate", "method"], ["natural", metric], cache_dir, rename={metric: "robust"})
    return out.assign(robust_metric=metric, lr_factor=math.nan, epoch_factor=math.nan, kind="capacity",
                      on_front=False, point=[(CAPACITY, r) for r in out.rate])


POINT_KEYS = ["rate", "method"] + BUDGET_KEYS


def front_table(runs: pd.DataFrame, metric: str, teacher: dict | None = None,
                cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Mean and sd over seeds and the 95% interval over seeds and test images of natural and `metric` per (rate,
    method, budget), the front flag per (rate, method), and the teacher as a reference row. `point` names each
    row's group of runs (rate, method, lr_factor, epoch_factor)."""
    g = runs.groupby(POINT_KEYS, sort=False)
    out = pd.DataFrame({"seeds": g.size(), "natural": g.natural.mean(), "natural_std": g.natural.std(ddof=1),
                        "robust": g[metric].mean(), "robust_std": g[metric].std(ddof=1)}).reset_index()
    out = add_intervals(out, runs, POINT_KEYS, ["natural", metric], cache_dir, rename={metric: "robust"})
    order = {m: i for i, m in enumerate(method_order())}
    out = out.assign(_order=out.method.map(lambda m: order.get(m, len(order)))).sort_values(
        ["rate", "_order"] + BUDGET_KEYS).drop(columns="_order").reset_index(drop=True)
    out["point"] = [tuple(r) for r in out[POINT_KEYS].itertuples(index=False)]
    out["kind"] = ["control" if not method_spec(m).trains else "method" for m in out.method]
    out["on_front"] = False
    for _, idx in out.groupby(["rate", "method"]).groups.items():
        part = out.loc[idx]
        out.loc[idx, "on_front"] = pareto_flags(part.natural.tolist(), part.robust.tolist())
    if teacher is not None:
        row = {"rate": 1.0, "method": TEACHER, "lr_factor": float("nan"), "epoch_factor": float("nan"), "seeds": 1,
               "natural": teacher["natural"], "natural_std": float("nan"), "robust": teacher.get(metric),
               "robust_std": float("nan"), "point": (TEACHER,), "kind": "teacher", "on_front": True}
        for axis, column in (("natural", "natural"), ("robust", metric)):
            found = run_outcomes(teacher.get("key"), column, cache_dir)
            iv = accuracy_interval(found[1]) if found is not None else None
            row[f"{axis}_low"], row[f"{axis}_high"] = (iv.low, iv.high) if iv is not None else (math.nan, math.nan)
        out = pd.concat([pd.DataFrame([row]), out], ignore_index=True)
    out.insert(0, "robust_metric", metric)
    return out


def verdicts(points: pd.DataFrame, runs: pd.DataFrame | None = None, compare: tuple[str, str] = defaults.COMPARE,
             cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Per rate: `compare_fronts` of the two methods' fronts (rows only where both ran), from the paired intervals
    of the runs' per-image outcomes (`runs`: the frontier's per-run table; None: no intervals, "inconclusive")."""
    a, b = compare
    metric = str(points.robust_metric.iloc[0]) if "robust_metric" in points.columns and len(points) else "pgd"
    rows = []
    for rate, part in points[points.kind == "method"].groupby("rate", sort=True):
        fa, fb = (part[(part.method == m) & part.on_front] for m in (a, b))
        if fa.empty or fb.empty:
            continue
        differences = None
        if runs is not None:
            differences = _pair_differences(runs[runs.rate == rate], list(fa.point) + list(fb.point), metric,
                                            cache_dir)
        v = compare_fronts(fa, fb, a, b, differences)
        rows.append({"rate": rate, "a": a, "b": b, "verdict": v.verdict, "text": v.text})
    return pd.DataFrame(rows, columns=["rate", "a", "b", "verdict", "text"])


def _pair_differences(runs: pd.DataFrame, ids: list, metric: str, cache_dir) -> Callable:
    """differences(q, p) -> (natural, robust) paired intervals of point q minus point p, computed at once."""
    contrasts = {(q, p): {q: 1.0, p: -1.0} for q in ids for p in ids if q != p}  # both ways: one bootstrap
    found = {axis: contrast_intervals(group_outcomes(runs, POINT_KEYS, column, cache_dir), contrasts)
             for axis, column in (("natural", "natural"), ("robust", metric))}
    return lambda q, p: (found["natural"].get((q, p)), found["robust"].get((q, p)))


def figure1_tuned(dataset: str = defaults.DATASET, rates: Sequence[float] = (2, 4, 8, 16),
                  methods: Sequence[str] = defaults.FIGURE1_METHODS, seeds: Sequence[int] = (0, 1, 2),
                  lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
                  epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, tolerance: float = 1.0,
                  **kwargs: Any) -> pd.DataFrame:
    """Figure 1 with each method's budget tuned: every budget of the grid runs (cached), `tune_budgets` picks one per
    (method, rate) on validation numbers, and the table holds the test rows of that budget (every seed), the
    one-shot control and the teacher, with `lr_factor`, `epoch_factor` and `budget` saying what each method got.
    `kwargs`: as `frontier` (preset, teacher, settings, cache_dir, workers, scope=..., ...)."""
    trained = [m for m in methods if method_spec(m).trains]
    fr = frontier(dataset, rates, trained or [method_with_role("baseline")], lr_factors, epoch_factors, seeds, **kwargs)
    runs = fr.runs
    chosen = tune_budgets(validation_table(runs[runs.method.isin(trained)], fr.curves), tolerance)
    keys = ["method", "rate"] + BUDGET_KEYS
    picked = runs.merge(chosen[keys], on=keys) if trained else runs.iloc[:0]
    control = runs[runs.method.isin([m for m in methods if not method_spec(m).trains])]
    table = pd.concat([pd.DataFrame([{**fr.teacher, "lr_factor": float("nan"), "epoch_factor": float("nan")}]),
                       control, picked, fr.capacity], ignore_index=True)
    table["budget"] = [budget_label(lr, ep) if m not in (TEACHER, CAPACITY) and method_spec(m).trains else "-"
                       for m, lr, ep in zip(table.method, table.lr_factor, table.epoch_factor)]
    return table


def cached_frontier(dataset: str, rates: Sequence[float], methods: Sequence[str], seeds: Sequence[int],
                    preset: str = defaults.PRESET, lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
                    epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, teacher: nn.Module | None = None,
                    cache_dir: str | Path | None = None, device=None, **fixed: Any) -> pd.DataFrame:
    """The frontier's points from what the run cache already holds (nothing is trained; e.g. the classroom
    explorer after `pwoa-lab frontier` ran before class): `front_table` of the cached runs, without the teacher
    row; empty when no trained method has a cached budget."""
    found = cached_frontier_result(dataset, rates, methods, seeds, preset, lr_factors, epoch_factors, teacher,
                                   cache_dir, device, **fixed)
    return found.points if found is not None else pd.DataFrame()


def cached_frontier_result(dataset: str, rates: Sequence[float], methods: Sequence[str], seeds: Sequence[int],
                           preset: str = defaults.PRESET, lr_factors: Sequence[float] = DEFAULT_LR_FACTORS,
                           epoch_factors: Sequence[float] = DEFAULT_EPOCH_FACTORS, teacher: nn.Module | None = None,
                           cache_dir: str | Path | None = None, device=None,
                           compare: tuple[str, str] = defaults.COMPARE, teacher_row: dict | None = None,
                           **fixed: Any) -> FrontierResult | None:
    """`cached_frontier` as a `FrontierResult` (points, runs, verdicts from the paired intervals; no curves, no
    extensions), or None when no trained method has a cached budget. `teacher_row`: the teacher's evaluation row
    (`runs.teacher_row`), added to the points as the reference; None: points without it."""
    dev = get_device(device)
    teacher = resolve_teacher(dataset, teacher, dev)
    settings = eval_settings(dataset, preset)
    rows = []
    for point in grid_points(methods, rates, lr_factors, epoch_factors):
        for seed in seeds:
            config = preset_config(dataset, preset, **{**fixed, **point, "seed": seed, "device": str(dev)})
            hit = cached_prune_row(teacher, config, settings, cache_dir)
            if hit is not None:
                rows.append({**point, "seed": seed, **{k: hit[0].get(k) for k in ("natural", "pgd", "aa", "key")}})
    runs = pd.DataFrame(rows)
    if runs.empty or not any(method_spec(m).trains for m in runs.method.unique()):
        return None
    metric = robust_metric(settings, runs)
    points = front_table(runs, metric, teacher_row, cache_dir)
    return FrontierResult(points, verdicts(points, runs, compare, cache_dir), runs, pd.DataFrame(), metric,
                          teacher_row or {})
