"""Fine-tuning budgets: the grid of learning-rate and epoch factors, its extension past an edge, and the budget
chosen on validation numbers (never on the test split).

A budget scales every learning rate of a run by `lr_factor` and every phase's epochs by `epoch_factor`
(`RunConfig.budget_applied`). `tune_budgets` picks one per (method, rate) from validation numbers only: among
the budgets whose mean validation natural accuracy is within `tolerance` (1 point) of the method's best, the one
with the highest mean validation PGD accuracy. `edge_extensions` says which budgets to add where a method's best
validation point lies on the grid's edge (up to `LR_LIMITS` / `EPOCH_LIMITS`).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Mapping, Sequence

import pandas as pd

from pwoa_lab.utils import check_budget_factor

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


# ----------------------------------------------------------------------------------------------- a grid with no edge

LR_LIMITS = (0.01, 10.0)        # the learning-rate factors the grid extension may reach
EPOCH_LIMITS = (1 / 9, 9.0)     # the epoch factors it may reach
EXTENSION_STEP = 3.0            # one extension multiplies (or divides) the edge factor by this


def edge_extensions(validation: pd.DataFrame, points: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Where a (method, rate)'s best validation point lies on its grid's edge, the budgets that move the edge one
    `EXTENSION_STEP` further: (new grid points, notes). A note (method, rate, axis, factor, why) says what was added
    or where a limit (`LR_LIMITS`, `EPOCH_LIMITS`) stopped it. Reads validation numbers only (val_natural,
    val_pgd, mean over seeds); an axis with one value has no edge to read."""
    keys = ["method", "rate"] + BUDGET_KEYS
    means = validation.groupby(keys, sort=False)[VALIDATION_COLUMNS].mean().reset_index()
    new, notes = [], []
    limits = {"lr_factor": LR_LIMITS, "epoch_factor": EPOCH_LIMITS}
    for (method, rate), part in means.groupby(["method", "rate"], sort=False):
        mine = [p for p in points if p["method"] == method and float(p["rate"]) == float(rate)]
        for axis in BUDGET_KEYS:
            values = sorted({float(p[axis]) for p in mine})
            if len(values) < 2:
                continue
            other = "epoch_factor" if axis == "lr_factor" else "lr_factor"
            for what, column in (("robust", "val_pgd"), ("natural", "val_natural")):
                best = part.loc[part[column].idxmax()]
                at = float(best[axis])
                for edge, step, limit in ((values[0], 1 / EXTENSION_STEP, limits[axis][0]),
                                          (values[-1], EXTENSION_STEP, limits[axis][1])):
                    if not math.isclose(at, edge):
                        continue
                    factor = edge * step
                    side = "smallest" if step < 1 else "largest"
                    why = f"best validation {what} accuracy at the {side} {axis.split('_')[0]} factor x{edge:.3g}"
                    if (step < 1 and factor < limit * (1 - 1e-9)) or (step > 1 and factor > limit * (1 + 1e-9)):
                        notes.append({"method": method, "rate": float(rate), "axis": axis, "factor": float("nan"),
                                      "why": f"{why}; not extended: the limit x{limit:.3g} is reached"})
                        continue
                    if any(math.isclose(factor, v) for v in values) or \
                            any(n["method"] == method and n["rate"] == float(rate) and math.isclose(n[axis], factor)
                                for n in new):
                        continue
                    for o in sorted({float(p[other]) for p in mine}):
                        new.append({"method": method, "rate": float(rate), axis: factor, other: o})
                    notes.append({"method": method, "rate": float(rate), "axis": axis, "factor": factor,
                                  "why": why})
    return new, notes
