"""Export of a (pruned) model: a plain dense state dict, or a compact sparse file (packed bitmask + kept values)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from pwoa_lab.pruning.masks import current_masks, prunable_weights
from pwoa_lab.utils import atomic_write, load_error_words

SPARSE_FORMAT = "pwoa-lab-sparse"
SPARSE_VERSION = 1

# ----------------------------------------------------------------------------------------------- export

def plain_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn a masked model's state dict (``x_orig`` + ``x_mask``) into a plain one (``x``, zeros applied).

    Plain state dicts pass through unchanged. Tensors are detached copies.
    """
    out = {}
    for key, value in state_dict.items():
        base = key[: -len("_orig")]
        if key.endswith("_orig") and f"{base}_mask" in state_dict:
            mask = state_dict[f"{base}_mask"].bool()
            out[base] = torch.where(mask, value, torch.zeros_like(value)).detach().clone()
        elif key.endswith("_mask") and f"{key[: -len('_mask')]}_orig" in state_dict:
            continue
        else:
            out[key] = value.detach().clone()
    return out


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain state dict (pruned weights with zeros) that loads strictly into an unpruned copy.

    Works whether or not `model` is masked; `model` is not changed.
    """
    return plain_state_dict(model.state_dict())


def _sparse_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks to store: the applied masks, else the nonzero support of each prunable weight."""
    masks = {key: w != 0 for key, w in prunable_weights(model, "all").items()}
    masks.update(current_masks(model))
    return masks


def _check_plain(value: Any, where: str) -> None:
    """Metadata must be plain (None/bool/int/float/str, lists, str-keyed dicts) to load with weights_only."""
    if value is None or type(value) in (bool, int, float, str):
        return
    if type(value) in (list, tuple):
        for item in value:
            _check_plain(item, where)
    elif type(value) is dict and all(type(k) is str for k in value):
        for k, item in value.items():
            _check_plain(item, f"{where}[{k!r}]")
    else:
        raise TypeError(f"{where} holds {type(value).__name__}; use only None, bool, int, float, str, "
                        "lists and dicts with str keys")


def sparse_payload(model: nn.Module, metadata: dict | None = None) -> dict[str, Any]:
    """The compact form of `model` that `save_sparse` writes, as plain tensors and containers (it can travel
    between processes or machines and be written by `write_sparse`).

    Each prunable weight is stored as shape + packed bitmask (numpy.packbits of the flattened mask, uint8) + its
    kept values in mask order (the weight's own dtype, float32 for usual models); every other tensor as is.
    """
    metadata = dict(metadata or {})
    _check_plain(metadata, "metadata")
    state = dense_state_dict(model)
    masks = _sparse_masks(model)
    dense, sparse = {}, {}
    for key, value in state.items():
        if key not in masks:
            dense[key] = value.cpu()
            continue
        mask = masks[key].cpu()
        bits = np.packbits(mask.flatten().numpy().astype(np.uint8))
        sparse[key] = {"shape": list(value.shape), "bits": torch.from_numpy(bits),
                       "values": value.cpu()[mask].clone()}
    return {"format": SPARSE_FORMAT, "version": SPARSE_VERSION, "order": list(state),
            "dense": dense, "sparse": sparse, "metadata": metadata}


def write_sparse(payload: dict[str, Any], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a `sparse_payload` to `path` atomically; an existing file is kept (FileExistsError) unless
    ``overwrite=True``."""
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise ValueError(f"not a sparse payload (no format marker {SPARSE_FORMAT!r}); make it with sparse_payload")
    with atomic_write(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def save_sparse(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None,
                overwrite: bool = False) -> Path:
    """Save `model` compactly (`sparse_payload`); returns the path. Written atomically; an existing file is kept
    (FileExistsError) unless ``overwrite=True``. Read it back with ``load_sparse``."""
    return write_sparse(sparse_payload(model, metadata), path, overwrite=overwrite)


def _not_sparse(path: Any, why: str) -> ValueError:
    return ValueError(f"{path} is not a pwoa-lab sparse checkpoint ({why})")


def load_sparse(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Read a ``save_sparse`` file: (plain state dict on CPU, {weight name: BoolTensor mask}, metadata).

    The state dict equals ``dense_state_dict`` of the saved model bit for bit. A truncated or foreign
    file raises ValueError naming the path.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, disallowed objects ...: in the kit's words
        raise _not_sparse(path, f"cannot read it: {load_error_words(path, err)}; re-create it") from None
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise _not_sparse(path, f"no format marker {SPARSE_FORMAT!r}")
    if payload.get("version") != SPARSE_VERSION:
        raise _not_sparse(path, f"version {payload.get('version')!r}, this code reads {SPARSE_VERSION}")
    try:
        state, masks = {}, {}
        for key in payload["order"]:
            if key in payload["dense"]:
                state[key] = payload["dense"][key]
                continue
            entry = payload["sparse"][key]
            numel = int(np.prod(entry["shape"]))
            mask = torch.from_numpy(np.unpackbits(entry["bits"].numpy(), count=numel).astype(bool))
            values = entry["values"]
            if int(mask.sum()) != values.numel():
                raise ValueError(f"{key}: mask keeps {int(mask.sum())} entries, {values.numel()} values stored")
            weight = torch.zeros(numel, dtype=values.dtype)
            weight[mask] = values
            state[key], masks[key] = weight.view(entry["shape"]), mask.view(entry["shape"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise _not_sparse(path, f"malformed content: {type(err).__name__}: {err}") from err
    return state, masks, dict(payload["metadata"])


