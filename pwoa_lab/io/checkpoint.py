"""Checkpoints: weights plus the metadata that says what they are.

A checkpoint file is a `torch.save` of

    {"format": "pwoa-lab-checkpoint", "version": 1, "state_dict": {...}, "meta": {...}}

with `meta` holding at least `model` and `dataset` (to rebuild the architecture) and, as available, `eps`,
`seed`, `metrics`, `command`, `versions`, `storage_dtype`, and `normalize` ({"mean": [...], "std": [...]})
for a model that normalizes its [0, 1] inputs (`models.Normalized`, e.g. an imported public teacher; recorded
from the model itself). Loading is strict: a truncated file, a foreign file, or weights that do not fit the
named architecture give a `CheckpointError` that says what to do.
Files are written atomically and never overwrite an existing file unless asked to.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.torch_version import TorchVersion

from pwoa_lab.core.datasets import DATASETS
from pwoa_lab.core.models import build_model, normalization_of, resize_to_state
from pwoa_lab.utils import atomic_write, load_error_words, versions

FORMAT = "pwoa-lab-checkpoint"
TEACHER_DIR = Path(__file__).resolve().parents[1] / "teachers"


def shipped_teachers() -> dict[str, Path]:
    """{dataset: the file of its shipped teacher} for every dataset whose record names one (the file may be
    missing in a partial checkout)."""
    return {name: TEACHER_DIR / info.teacher_file for name, info in DATASETS.items() if info.teacher_file}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked."""


def command_line() -> str:
    """The command that is running now, for the record."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name] + sys.argv[1:])


def _same_normalization(a: Any, b: dict[str, list[float]] | None) -> bool:
    """Whether metadata `a` describes the normalization `b` (float32 rounding aside)."""
    try:
        return b is not None and set(a) == set(b) and all(
            torch.allclose(torch.tensor(a[k], dtype=torch.float32), torch.tensor(b[k])) for k in b)
    except (TypeError, ValueError, RuntimeError):
        return False


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], storage_dtype: str = "float32",
                    overwrite: bool = False) -> Path:
    """Save `model`'s weights and `meta` to `path` atomically (float16 storage halves the file)."""
    if "model" not in meta or "dataset" not in meta:
        raise ValueError("checkpoint metadata needs 'model' and 'dataset' to rebuild the architecture")
    dtype = {"float32": torch.float32, "float16": torch.float16}[storage_dtype]
    norm = normalization_of(model)
    claimed = meta.get("normalize")
    if claimed is not None and not _same_normalization(claimed, norm):
        raise ValueError(f"metadata says normalize={claimed!r} but the model applies {norm!r}; leave 'normalize' "
                         "out of the metadata (save_checkpoint records it from the model)")
    meta = {k: v for k, v in meta.items() if k != "normalize"}
    if norm is not None:
        meta["normalize"] = norm
    from pwoa_lab.pruning.export import dense_state_dict
    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().clone()
             for k, v in dense_state_dict(model).items()}
    meta = {"versions": versions(), **meta, "storage_dtype": storage_dtype}
    blob = {"format": FORMAT, "version": 1, "state_dict": state, "meta": meta}
    with atomic_write(path, overwrite=overwrite) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, checked to be a pwoa-lab checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (train one with `pwoa-lab train-teacher`, "
                              "or use a shipped teacher: " + ", ".join(str(p) for p in shipped_teachers().values())
                              + ")")
    try:
        # TorchVersion (a str subclass) is allowed so that files saved before versions() stored plain strings load
        with torch.serialization.safe_globals([TorchVersion]):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's own message would advise weights_only=False: the kit's words instead
        raise CheckpointError(f"{path} could not be read as a checkpoint ({load_error_words(path, err)}); the file "
                              "is truncated or corrupted: re-create it or copy it again") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pwoa-lab checkpoint (no '{FORMAT}' marker); save models with "
                              "pwoa_lab.io.checkpoint.save_checkpoint or `pwoa-lab train-teacher`")
    return blob


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    expect: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint names, load its weights strictly, return (model in eval mode, meta).

    `expect` (e.g. {"dataset": "mnist", "model": "lenet3"}) must match the metadata, else CheckpointError.
    """
    blob = read_checkpoint(path)
    meta = blob["meta"]
    for key, value in (expect or {}).items():
        if value is not None and meta.get(key) != value:
            raise CheckpointError(f"{path} holds {key}={meta.get(key)!r}, but {key}={value!r} was asked for; "
                                  f"use a checkpoint made for {value!r}")
    try:
        model = build_model(meta["model"], meta["dataset"], normalize=meta.get("normalize"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its metadata names an unknown architecture or a malformed "
                              f"normalization ({err})") from err
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    if (meta.get("config") or {}).get("structure") == "structured":
        resize_to_state(model, state)  # whole channels were pruned away: the same family with smaller layers
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit {meta['model']} for {meta['dataset']} ({first}); "
                              "the file was made for another architecture or is damaged") from err
    model.kit_name, model.kit_dataset = meta["model"], meta["dataset"]
    # how a kit-trained teacher was trained (its TeacherConfig), for a control trained with the same recipe
    model.kit_recipe = meta["config"] if meta.get("kind") == "teacher" and isinstance(meta.get("config"), dict) \
        else None
    return model.to(device).eval(), meta


def load_teacher(dataset: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The robust teacher that ships with the kit for `dataset` (see `shipped_teachers`)."""
    shipped = shipped_teachers()
    if dataset not in shipped:
        raise ValueError(f"no shipped teacher for {dataset!r}; shipped: {', '.join(shipped)}. Train one "
                         f"with `pwoa-lab train-teacher --dataset {dataset}` and pass its checkpoint")
    return load_checkpoint(shipped[dataset], device)
