"""The kit's defaults, in one place: every function, config class and command that has a default dataset, preset or
seed imports it from here.

- `DATASET`: the embedded data set (scikit-learn's 8x8 digits; needs no files).
- `PRESET`: `quick`, the CPU-minutes schedules of the course (`smoke`: seconds, for tests; `paper`: GPU hours).
- `SEED`: the paper's seed, of every run that is not given one.
- `smoke_mode()`: whether PWOA_SMOKE asks for the smoke preset (the tests, CI and the notebooks' smoke runs).
"""
from __future__ import annotations

import os

DATASET = "digits"
PRESET = "quick"
SEED = 1234


def smoke_mode() -> bool:
    """True when PWOA_SMOKE is 1, true or yes (any case): the notebooks and the explorer then use the smoke preset."""
    return os.environ.get("PWOA_SMOKE", "").strip().lower() in ("1", "true", "yes")
