"""The course notebooks' shared set-up: one call instead of the same ten lines in every notebook.

    DATASET = "digits"                 # the notebook's parameters cell: plain values
    from pwoa_lab import course
    C = course.setup(DATASET)          # C.SMOKE, C.PRESET, C.cache_dir, C.PROGRESS, C.show, C.teacher, C.SEEDS

Environment variables (set them before starting JupyterLab, or in the test runner):
- PWOA_SMOKE=1 shrinks data and epochs to seconds (the `smoke` preset, one seed, no progress bars); the tests and
  CI run every notebook that way. Unset (or 0): the `quick` preset, three seeds, progress bars.
- PWOA_CACHE_DIR: where trained runs are cached (default ~/.cache/pwoa-lab).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwoa_lab import defaults
from pwoa_lab.core import data
from pwoa_lab.experiments.jobs import auto_workers
from pwoa_lab.io import cache, checkpoint
from pwoa_lab.training.presets import PRESETS

smoke_mode = defaults.smoke_mode


def show(fig) -> None:
    """Display a matplotlib Figure once (inline in a notebook) and close it, so it is not drawn twice."""
    import matplotlib.pyplot as plt

    try:
        from IPython.display import display
    except ImportError:  # outside IPython: nothing to display on
        display = None
    if display is not None:
        display(fig)
    plt.close(fig)


def inline_figures() -> bool:
    """In a Jupyter kernel, draw matplotlib figures inline: what `%matplotlib inline` did at the top of every
    notebook, so that the set-up cell is the same two lines everywhere. Outside a kernel (a script, the tests,
    a terminal IPython) it does nothing. Returns whether it switched."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    shell.run_line_magic("matplotlib", "inline")
    return True


@dataclass
class Course:
    """What a notebook needs from `setup`: switches, where things go, and the dataset's robust teacher."""

    DATASET: str
    SMOKE: bool
    PRESET: str
    cache_dir: Path
    PROGRESS: bool
    SEEDS: tuple[int, ...]
    WORKERS: int                       # runs computed at once by the cells that run many (1 in smoke mode)
    teacher: Any = field(repr=False)
    meta: dict[str, Any] = field(repr=False)

    @property
    def EPS(self) -> float:
        """The radius the teacher was adversarially trained for."""
        return float(self.meta["eps"])

    def show(self, fig) -> None:
        """Display a figure once and close it; under the smoke preset it says above its title that it is a smoke
        check, not a result."""
        from pwoa_lab.course.plots import mark_smoke
        show(mark_smoke(fig, self.PRESET))

    def summary(self) -> str:
        mode = "smoke mode (PWOA_SMOKE=1)" if self.SMOKE else "full mode"
        return (f"{self.DATASET}: teacher {self.meta.get('model')} (eps {self.EPS:g}), preset {self.PRESET!r}, "
                f"{mode}, seeds {self.SEEDS}, cache {self.cache_dir}")


def setup(dataset: str = defaults.DATASET, preset: str | None = None, seeds: tuple[int, ...] | None = None,
          teacher: str | Path | None = None, cache_dir: str | Path | None = None, progress: bool | None = None,
          quiet: bool = False) -> Course:
    """The set-up of a course notebook for `dataset` (digits, mnist or cifar10: the datasets with a shipped teacher).

    MNIST and CIFAR-10 are read from $PWOA_DATA_ROOT (else the project's data/ folder); when their files are not
    there, this says which files are missing and how to point the kit at them, before anything else runs.

    preset: None picks "smoke" under PWOA_SMOKE=1, else "quick". seeds: None gives (0,) in smoke mode, else
    (0, 1, 2). teacher: a checkpoint path for a dataset without a shipped teacher. cache_dir: None reads
    PWOA_CACHE_DIR, else the default cache folder. progress: None shows progress bars except in smoke mode.
    WORKERS: how many runs the figure and sweep cells compute at once (worker processes; every run computes with one
    thread, so this is what uses a laptop's cores): `jobs.auto_workers()` in full mode, 1 in smoke mode.
    Also seeds torch (0), sets pandas to print two decimals and, in a Jupyter kernel, switches figures inline
    (`%matplotlib inline`), as every notebook did by hand.
    """
    if dataset not in data.DATASETS:
        raise ValueError(f"course.setup: unknown dataset {dataset!r}; the kit knows {', '.join(data.DATASETS)} "
                         f"(the course runs on {' or '.join(checkpoint.shipped_teachers())})")
    if teacher is None and dataset not in checkpoint.shipped_teachers():
        raise ValueError(f"course.setup: no robust teacher ships for {dataset!r} (shipped: "
                         f"{', '.join(checkpoint.shipped_teachers())}); train or import one (`pwoa-lab train-teacher "
                         f"--dataset {dataset}` or `pwoa-lab import-teacher`) and pass teacher='path/to/teacher.pt'")
    try:
        data.check_available(dataset)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"course.setup: the {dataset} data is missing, so this notebook cannot run on it. "
                                f"{err} Or set DATASET = {defaults.DATASET!r} (embedded, no files needed).") from None
    smoke = smoke_mode()
    preset = preset or ("smoke" if smoke else "quick")
    if preset not in PRESETS:
        raise ValueError(f"course.setup: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    seeds = tuple(int(s) for s in (seeds if seeds is not None else ((0,) if smoke else (0, 1, 2))))
    if not seeds:
        raise ValueError("course.setup: seeds must name at least one seed")
    root = cache.cache_root(cache_dir)

    import pandas as pd
    import torch

    pd.set_option("display.precision", 2)
    torch.manual_seed(0)
    inline_figures()
    if teacher is None:
        model, meta = checkpoint.load_teacher(dataset)
    else:
        model, meta = checkpoint.load_checkpoint(teacher, expect={"dataset": dataset})
    model.eval()
    course = Course(DATASET=dataset, SMOKE=smoke, PRESET=preset, cache_dir=root,
                    PROGRESS=(not smoke) if progress is None else bool(progress), SEEDS=seeds,
                    WORKERS=1 if smoke else auto_workers(), teacher=model, meta=meta)
    if not quiet:
        print(course.summary())
    return course


# --------------------------------------------------------------------------------------- headless execution

REPLY_POLL_S = 1.0  # how long one wait for a kernel message lasts before it is asked again


def _poll_in_slices(channel) -> None:
    """Make `channel.get_msg(timeout)` wait in slices of REPLY_POLL_S seconds until its deadline.

    After a cell that displays an ipywidgets `interactive`, a single long wait for the cell's reply sometimes
    does not wake up when the reply arrives: it returns only at the cell timeout (jupyter/nbclient#312; seen
    here: the design-space widget cell's reply, sent by the kernel at once, was read after 120 s with a 120 s
    timeout, and never within an hour's timeout). A fresh wait sees a message that is already there, so
    waiting in short slices costs nothing and ends that stall."""
    from queue import Empty
    from time import monotonic

    wait = channel.get_msg

    async def get_msg(timeout: float | None = None, **kwargs):
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            left = REPLY_POLL_S if deadline is None else min(REPLY_POLL_S, max(0.0, deadline - monotonic()))
            try:
                return await wait(timeout=left, **kwargs)
            except Empty:
                if deadline is not None and monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def execute_notebook(nb, cwd: str | Path, timeout: int = 3600):
    """Execute an nbformat notebook in place, headless, in a fresh "python3" kernel started in `cwd`, as the tests
    and `bench/time_notebooks.py` do; returns it. Raises nbclient's CellExecutionError at a failing cell (the
    cells before it keep their outputs). `timeout`: seconds per cell. The kernel inherits the environment
    (PWOA_SMOKE, PWOA_CACHE_DIR, ...)."""
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        async def async_start_new_kernel_client(self):
            client = await super().async_start_new_kernel_client()
            for channel in (client.shell_channel, client.iopub_channel):
                _poll_in_slices(channel)
            return client

    _Client(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
            resources={"metadata": {"path": str(cwd)}}).execute()
    return nb
