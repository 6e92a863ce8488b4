"""One checkpoint pruned into files (`prune_checkpoint`): the run, resumable; its test evaluation; the saved model.

What `pwoa-lab prune` does, as a function that returns a `PrunedCheckpoint` and prints nothing of its own:

- checked before any training: the output files (no existing file without `overwrite`), the pruning rate against
  the teacher (`runs.check_run`) and the dataset's files (`data.check_available`);
- the run (`runs.run_config` with the preset's schedule), resumed from `prune_paths(out).state` when that state
  belongs to this run; the state is removed once the model is saved;
- evaluated like every run (`evaluate_row`, with `defaults.RUN_THREADS` threads), then saved as a dense checkpoint
  plus a compact sparse copy (`FILE.sparse.pt`; not with structure "structured": the file is already small).

A file that cannot be written where asked (a full disk, a folder that went away) is saved in the cache folder's
`unsaved/` instead: a trained model is never lost to an output error; `PrunedCheckpoint.unsaved` says where.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import check_available
from pwoa_lab.core.evaluation import EvalSettings, evaluate_row
from pwoa_lab.experiments.runs import check_run, run_config
from pwoa_lab.io import checkpoint as checkpoints  # looked up at call time: tests replace save_checkpoint
from pwoa_lab.io.cache import cache_root
from pwoa_lab.pruning.export import save_sparse
from pwoa_lab.pruning.masks import sparsity_report
from pwoa_lab.training.loop import RunConfig
from pwoa_lab.training.presets import preset_config
from pwoa_lab.utils import get_device, reserve_paths, torch_threads


class PrunePaths(NamedTuple):
    """The files of one pruned checkpoint: the dense model, its compact copy and the run's resume point."""
    out: Path
    sparse: Path
    state: Path


def prune_paths(out: str | Path) -> PrunePaths:
    """`out`, `out`'s FILE.sparse.pt beside it and its resume point FILE.pt.state (the same call resumes there)."""
    out = Path(out)
    return PrunePaths(out, out.with_name(out.stem + ".sparse.pt"), out.with_name(out.name + ".state"))


@dataclass
class Unsaved:
    """A file that could not be written where asked, and where it went instead."""
    asked: Path
    saved: Path
    why: str


@dataclass
class PrunedCheckpoint:
    """What `prune_checkpoint` made: the model, its resolved config, its test metrics and the files written."""
    model: nn.Module
    config: RunConfig                 # resolved
    metrics: dict[str, float]         # evaluate_row on the test split (natural, pgd, ...)
    sparsity: pd.DataFrame            # sparsity_report: one row per prunable layer and a total
    params: int                       # the pruned model's parameters (fewer than the teacher's when structured)
    teacher_params: int
    meta: dict[str, Any]              # the saved checkpoint's metadata
    saved: Path                       # the dense checkpoint (`out`, or its `unsaved/` copy)
    saved_sparse: Path | None         # the compact copy (None when structured)
    unsaved: list[Unsaved] = field(default_factory=list)

    @property
    def structured(self) -> bool:
        return self.saved_sparse is None

    @property
    def complete(self) -> bool:
        """Whether every file is where it was asked for."""
        return not self.unsaved


def prune_checkpoint(checkpoint: str | Path, out: str | Path, rate: float, method: str | None = None,
                     preset: str = defaults.PRESET, seed: int = defaults.SEED, n: int | None = None,
                     root: str | None = None, device: str | None = None, overwrite: bool = False,
                     teacher_name: str | None = None, command: str | None = None,
                     log: Callable[[str], None] | None = None, **overrides: Any) -> PrunedCheckpoint:
    """Prune the teacher in `checkpoint` with `method` (None: the config's default) at `rate`, on `preset`'s
    schedule with `overrides` (run-config fields: scope, structure, importance, schedule, mix_ratio, ...);
    evaluate on the first `n` test images (None: all) and save to `out` (+ FILE.sparse.pt).

    `teacher_name`: the teacher as the metadata records it (default: `checkpoint`); `command`: the command line
    recorded (default: the running one); `log`: where a message for the user goes (resuming), None: nowhere."""
    paths = prune_paths(out)
    structured = overrides.get("structure") == "structured"  # a smaller dense model: no zeros, no sparse file
    for path in (paths.out,) if structured else (paths.out, paths.sparse):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; refusing to overwrite it (pass --overwrite or another --out)")
    device = get_device(device)
    teacher, meta = checkpoints.load_checkpoint(checkpoint, device)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    if method is not None:
        overrides["method"] = method
    config = preset_config(meta["dataset"], preset, rate=rate, seed=seed, device=str(device), **overrides)
    check_run(teacher, config)  # a rate that leaves too few weights: refused before training
    check_available(meta["dataset"], root)
    if paths.state.exists() and log is not None:
        log(f"resuming from {paths.state} where it belongs to this run (else it is ignored and left as it is)")
    result = run_config(teacher, config, root=root, state_path=paths.state)
    with torch_threads(defaults.RUN_THREADS):  # evaluated like every run: the same numbers whatever the cores
        row = evaluate_row(result.model, meta["dataset"], result.config.eps, EvalSettings(n=n, aa_n=0), root)
    new_meta = {"model": meta["model"], "dataset": meta["dataset"], "eps": result.config.eps, "seed": seed,
                "kind": "pruned", "method": result.config.method, "rate": result.config.rate,
                "teacher": str(checkpoint if teacher_name is None else teacher_name),
                "config": result.config.to_dict(), "metrics": {"test": row, "train_seconds": result.train_seconds},
                "command": checkpoints.command_line() if command is None else command,
                "history": result.history.to_dict("records")}
    unsaved: list[Unsaved] = []
    saved = _save_or_fallback(lambda path, ow: checkpoints.save_checkpoint(path, result.model, new_meta, overwrite=ow),
                              paths.out, overwrite, unsaved)
    saved_sparse = None
    if not structured:  # structured: channels removed, the file is already the small model (no zeros to compress)
        sparse_meta = {k: new_meta[k] for k in ("model", "dataset", "method", "rate", "command")}
        saved_sparse = _save_or_fallback(lambda path, ow: save_sparse(result.model, path, metadata=sparse_meta,
                                                                      overwrite=ow), paths.sparse, overwrite, unsaved)
    paths.state.unlink(missing_ok=True)  # the saved model replaces the resume point
    return PrunedCheckpoint(model=result.model, config=result.config, metrics=row,
                            sparsity=sparsity_report(result.model, result.config.scope),
                            params=sum(p.numel() for p in result.model.parameters()), teacher_params=teacher_params,
                            meta=new_meta, saved=saved, saved_sparse=saved_sparse, unsaved=unsaved)


def _save_or_fallback(save: Callable[[Path, bool], Any], path: Path, overwrite: bool, unsaved: list[Unsaved]
                      ) -> Path:
    """`save(path, overwrite)`, or, when `path` cannot be written (the disk filled up, the folder went away),
    `save` into the cache folder's `unsaved/` under a free name, noted in `unsaved`. Returns the path written."""
    try:
        save(path, overwrite)
        return path
    except FileExistsError:  # the user's file, kept on purpose: not an output error
        raise
    except OSError as err:
        (fallback,) = reserve_paths([cache_root() / "unsaved" / path.name])
        save(fallback, True)
        unsaved.append(Unsaved(path, fallback, str(err.strerror or err)))
        return fallback
