"""Real size and speed of a model: parameters, the file a user would ship, CPU inference latency.

A weight-pruned model keeps its dense shape: it computes as slowly as the teacher, and only its compact
sparse file (``pruning.save_sparse``: bitmask + kept values) is smaller. A structured model
(``pwoa_lab.pruning.structured``) is a smaller dense model: smaller file and fewer operations.

- ``parameter_count`` / ``nonzero_count``: every parameter, and those that are not exactly 0.
- ``file_sizes``: bytes of the dense file (``torch.save`` of the plain state dict, zeros included) and of the
  compact sparse file; the file to ship is the smaller of the two.
- ``latency_ms``: median milliseconds of one CPU forward pass (``torch.inference_mode``, eval mode) over
  repeats, at a given batch size and thread count; ``latency_table`` times several models interleaved
  (A B C A B C ...), so that the drift of a shared machine lands on all of them alike.
- ``footprint_table``: one row per model with all of the above.
"""
from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab.pruning.export import dense_state_dict, save_sparse
from pwoa_lab.pruning.masks import is_masked, remove_masks
from pwoa_lab.pruning.structured import is_structured_state, parameter_count
from pwoa_lab.utils import torch_threads

__all__ = ["parameter_count", "nonzero_count", "file_sizes", "latency_ms", "latency_table", "footprint_table",
           "num_threads"]


def nonzero_count(model: nn.Module) -> int:
    """Parameters that are not exactly 0 (the effective weights of a masked model)."""
    return sum(int(torch.count_nonzero(p)) for p in _plain(model).parameters())


def _plain(model: nn.Module) -> nn.Module:
    """`model` itself, or a copy without masks (zeros baked in) in eval mode."""
    if not is_masked(model):
        return model
    work = copy.deepcopy(model)
    remove_masks(work)
    return work.eval()


def file_sizes(model: nn.Module) -> dict[str, int]:
    """{"dense_bytes": size of torch.save(plain state dict), "sparse_bytes": size of pruning.save_sparse}."""
    with tempfile.TemporaryDirectory(prefix="pwoa-footprint-") as tmp:
        dense = Path(tmp) / "dense.pt"
        torch.save({k: v.cpu() for k, v in dense_state_dict(model).items()}, dense)
        sparse = save_sparse(_plain(model).cpu(), Path(tmp) / "sparse.pt")
        return {"dense_bytes": os.path.getsize(dense), "sparse_bytes": os.path.getsize(sparse)}


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """`utils.torch_threads(threads)` inside the block; None leaves the count as it is."""
    with torch_threads(threads) if threads is not None else nullcontext():
        yield


def _inputs(input_shape: Sequence[int], batch: int) -> torch.Tensor:
    return torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(0))


def latency_table(models: Mapping[str, nn.Module], input_shape: Sequence[int], batches: Sequence[int] = (1, 128),
                  repeats: int = 21, warmup: int = 3, threads: int | None = None) -> dict[str, dict[int, float]]:
    """{model name: {batch: median ms of one CPU forward pass}}, the models timed interleaved per batch size.

    input_shape: one input's (C, H, W); the inputs are seeded uniform [0, 1] images. Models are copied to
    the CPU in eval mode (masks removed: the masked forward is not what one would ship)."""
    work = {name: copy.deepcopy(_plain(m)).cpu().eval() for name, m in models.items()}
    out: dict[str, dict[int, float]] = {name: {} for name in work}
    with num_threads(threads), torch.inference_mode():
        for batch in batches:
            x = _inputs(input_shape, batch)
            for _ in range(warmup):
                for m in work.values():
                    m(x)
            times: dict[str, list[float]] = {name: [] for name in work}
            for _ in range(repeats):
                for name, m in work.items():
                    start = time.perf_counter()
                    m(x)
                    times[name].append(time.perf_counter() - start)
            for name, t in times.items():
                out[name][batch] = 1000 * statistics.median(t)
    return out


def latency_ms(model: nn.Module, input_shape: Sequence[int], batch: int = 1, repeats: int = 21, warmup: int = 3,
               threads: int | None = None) -> float:
    """Median milliseconds of one CPU forward pass of `model` on a batch of `batch` inputs of `input_shape`."""
    return latency_table({"m": model}, input_shape, (batch,), repeats, warmup, threads)["m"][batch]


def footprint_table(models: Mapping[str, nn.Module], input_shape: Sequence[int],
                    reference: nn.Module | None = None, batches: Sequence[int] = (1, 128), repeats: int = 21,
                    warmup: int = 3, threads: int | None = None, latency: bool = True) -> pd.DataFrame:
    """One row per model: params, nonzero, dense_bytes, sparse_bytes, ship_bytes (the smaller file),
    ship_format ("dense", "sparse" or "structured": smaller layers than `reference`), latency_ms_<batch> (when
    `latency`). Sizes in bytes, latencies in ms (median of `repeats`, CPU, `threads` threads)."""
    rows = []
    for name, model in models.items():
        sizes = file_sizes(model)
        structured = reference is not None and is_structured_state(reference, model.state_dict())
        fmt = "structured" if structured else "sparse" if sizes["sparse_bytes"] < sizes["dense_bytes"] else "dense"
        rows.append({"model": name, "params": parameter_count(model), "nonzero": nonzero_count(model), **sizes,
                     "ship_bytes": min(sizes.values()), "ship_format": fmt})
    table = pd.DataFrame(rows)
    if latency:
        lat = latency_table(models, input_shape, batches, repeats, warmup, threads)
        for batch in batches:
            table[f"latency_ms_{batch}"] = [lat[name][batch] for name in models]
    return table
