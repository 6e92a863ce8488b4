"""The dataset record (`DatasetInfo`) and the table of registered datasets."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from pwoa_lab.utils import Registry, check_choice, code_digest

SPLITS = ("train", "val", "test")

# (record, split, root, download) -> (x [N, C, H, W] float in [0, 1], y [N] int64)
Loader = Callable[["DatasetInfo", str, Path, bool], tuple[torch.Tensor, torch.Tensor]]
# (record, root) -> (folder, files looked for) of the first split whose files are missing, or None
MissingFiles = Callable[["DatasetInfo", Path], "tuple[Path, list[str]] | None"]


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the kit knows about one dataset."""
    name: str
    num_classes: int
    shape: tuple[int, int, int]          # (C, H, W)
    eps: float                           # the kit's default L-inf radius
    pgd_step: float | None               # PGD step size for evaluation (None: 2.5 eps / steps)
    pgd_steps: int                       # PGD steps for evaluation
    n_val: int                           # images held out from the training set
    augment: bool                        # random crop + flip while training
    load: Loader                         # reads one split
    default_model: str                   # the model of `build_model(None, name)` (pwoa_lab.core.models)
    train_pgd_steps: int = 10            # PGD steps of an attack while training (TRADES' inner max, ...)
    n_test: int = 10_000                 # images in the test split
    missing: MissingFiles | None = None  # None: needs no files
    teacher_file: str | None = None      # the shipped teacher's file name (pwoa_lab/teachers/), if one ships
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # per-channel (mean, std) of the training set
    public_teachers: bool = False        # public checkpoints of this dataset can be imported (pwoa_lab.io)
    help: str = ""                       # one line for the CLI's help

    def facts(self) -> dict:
        """The record's plain facts (no functions), e.g. for a table of datasets."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("load", "missing")}

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"a dataset name is lower-case letters, digits and _; got {self.name!r}")
        if self.train_pgd_steps < 1 or self.pgd_steps < 1:
            raise ValueError(f"dataset {self.name!r}: PGD steps must be >= 1")


DATASETS: Registry = Registry("dataset")  # name -> DatasetInfo, and which module registered each


def register_dataset(info: DatasetInfo, replace: bool = False) -> DatasetInfo:
    """Add a dataset; a name already registered is an error unless `replace=True`."""
    return DATASETS.add(info.name, info, replace)


def unregister_dataset(name: str) -> None:
    """Remove a dataset (e.g. one a test or notebook added)."""
    DATASETS.remove(name)


def dataset_module(name: str) -> str | None:
    """The module that registered a dataset from outside the kit ("__main__" for a notebook or script), None for
    the kit's own datasets."""
    dataset_info(name)
    return DATASETS.user_module(name)


def dataset_code(name: str) -> str | None:
    """A fingerprint of a dataset from outside the kit: its facts and the source of its loader (None for the kit's
    own, which the run store keys by the package's source): an edited loader is not served stale results."""
    if dataset_module(name) is None:
        return None
    info = dataset_info(name)
    return code_digest({"facts": info.facts(), "load": info.load, "missing": info.missing})


def dataset_info(name: str) -> DatasetInfo:
    """The record of a dataset name; unknown names list the valid ones."""
    return DATASETS[check_choice(name, DATASETS, "dataset")]


def dataset_names(where: Callable[[DatasetInfo], bool] | None = None) -> tuple[str, ...]:
    """Registered dataset names (only those for which `where(info)` is true, when given)."""
    return tuple(n for n, info in DATASETS.items() if where is None or where(info))
