"""The kit's defaults, in one place: every function, config class and command that has a default dataset, preset or
seed imports it from here.

- `DATASET`: the embedded data set (scikit-learn's 8x8 digits; needs no files).
- `PRESET`: `quick`, the CPU-minutes schedules of the course (`smoke`: seconds, for tests; `paper`: GPU hours).
- `METHOD`: the method of a run that names none (the paper's, PwoA).
- `FIGURE1_METHODS`, `FIGURE3_METHODS`, `FRONTIER_METHODS`, `LOSS_METHODS`: the methods a figure or analysis runs
  when it is given none; `COMPARE`: the two methods whose fronts a frontier compares.
- `SEED`: the paper's seed, of every run that is not given one.
- `RUN_THREADS`: torch's intra-op threads while a run trains and is evaluated (1). A CPU's float sums depend on
  how many threads split them, so a run computed with 2 threads gives other weights than one computed with 1; every
  run computes with this fixed count, whatever the caller's own count, the number of workers, the backend (local or
  Ray) or the machine's cores: the same config gives the same numbers (on the same device type). Parallelism comes
  from worker processes (`--workers`), not from threads inside a run.
- `MIN_KEPT_WEIGHTS`: the fewest weights a pruned layer may keep (10). A rate that would leave fewer in some pruned
  layer (e.g. `--rate 1000`: one weight a layer) is refused before training, with the largest rate that keeps
  this many: such a model is at chance level, and its robust accuracy means nothing.
- `AA_VERSION`: the AutoAttack version of an evaluation that names none ("fast": APGD-CE + APGD-T over 3 target
  classes; "standard" is the full AutoAttack to report in papers); `core.evaluation.EvalSettings` and the teacher
  import read it, and every cached result was computed with it.
- `smoke_mode()`: whether PWOA_SMOKE asks for the smoke preset (the tests, CI and the notebooks' smoke runs);
  `SMOKE_PRESET`, and `smoke_note(preset)`: what every table, plot and verdict of that preset says (its numbers are
  a check that the kit runs, not a result).
"""
from __future__ import annotations

import os

DATASET = "digits"
PRESET = "quick"
METHOD = "pwoa"
FIGURE1_METHODS = ("oneshot", "naive", "pwoa")      # the control, the baseline, the paper's method
FIGURE3_METHODS = ("pwoa", "advprune", "hydra")     # the paper's method and the two adversarial ones
FRONTIER_METHODS = ("naive", "pwoa")                # the baseline and the paper's method: what a frontier, the
#                                                     design space and the learning curve train by default
COMPARE = ("pwoa", "naive")                         # the two fronts a frontier's verdicts compare
LOSS_METHODS = ("naive", "kd", "pwoa")              # the paper's loss ablation: L_CE, L_D, L_D + L_H
SEED = 1234
RUN_THREADS = 1
MIN_KEPT_WEIGHTS = 10
AA_VERSION = "fast"
SMOKE_PRESET = "smoke"
SMOKE_NOTE = "smoke check (a few batches), not a result"


def smoke_mode() -> bool:
    """True when PWOA_SMOKE is 1, true or yes (any case): the notebooks and the explorer then use the smoke preset."""
    return os.environ.get("PWOA_SMOKE", "").strip().lower() in ("1", "true", "yes")


def smoke_note(preset: str) -> str:
    """`SMOKE_NOTE` for the smoke preset, else ""."""
    return SMOKE_NOTE if preset == SMOKE_PRESET else ""
