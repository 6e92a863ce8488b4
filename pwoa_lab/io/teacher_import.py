"""Bring your own robust teacher: import public CIFAR checkpoints (TRADES, RobustBench, plain) safely.

    pwoa-lab import-teacher --arch wrn34_10 --dataset cifar10 --weights model_cifar_wrn.pt --format trades \\
        --eps 8/255 --source "TRADES, github.com/yaodongyu/TRADES" --out teacher.pt

What `import_teacher` does, in order (every failure is an error that says what to do):

1. Read the file with `torch.load(..., weights_only=True)`: tensors and plain containers only. A file that
   needs arbitrary unpickling (pickled classes, `argparse.Namespace`, numpy scalars, ...) is refused, because
   unpickling it can run code; the message says how to extract the bare weights once from a trusted file.
2. Find the state dict: the file itself, or its `state_dict` / `model_state_dict` / `model` / `net` entry.
3. Strip wrapper prefixes: DataParallel's `module.` (every format), RobustBench's `model.` (`robustbench`).
4. Normalization: a RobustBench model that normalizes inside carries buffers (`mu`/`sigma`, `mean`/`std` or
   `normalize.mean`/`normalize.std`); they are taken out of the state dict and become a `models.Normalized`
   wrapper, as do `--mean/--std` given by the user (both given: they must agree). The kit keeps feeding
   images in [0, 1]. TRADES models take [0, 1] inputs: no normalization.
5. Drop what the format declares unused: TRADES' WideResNet defines a `sub_block1` that its forward never
   calls (`trades` and `robustbench`; listed in the report and the metadata, never loaded into anything).
6. Rename public names to the kit's (`public_to_kit`, explicit rules per architecture, in
   `pwoa_lab.io.public_layouts`) and load strictly: every kit tensor filled, every file tensor used or dropped
   by step 5, equal shapes, finite values; otherwise a `TeacherImportError` listing what is missing, left over
   or mis-shaped. The one exception: BatchNorm `num_batches_tracked` counters absent from old (PyTorch < 0.4.1)
   files are set to 0 and listed as filled (they only matter for momentum=None BatchNorm, which no kit model
   uses).
7. Evaluate on the first `n` test images (natural, PGD, AutoAttack), so you see whether the published
   numbers reproduce before spending GPU-hours on pruning, and save a kit checkpoint whose metadata records
   the provenance: format, the file's sha256, its name and size, `source` (free text), dropped/filled tensors.

The public layouts (file name -> kit name, per architecture) and the strict mapping are in
`pwoa_lab.io.public_layouts`; its names (`public_to_kit`, `kit_to_public`, `to_public_layout`, `from_public_layout`,
`TeacherImportError`, ...) stay importable from here.
"""
from __future__ import annotations

import hashlib
import pickle
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.datasets import dataset_info, dataset_names
from pwoa_lab.core.models import HiddenModel, Normalized, build_model
from pwoa_lab.io.checkpoint import FORMAT as KIT_FORMAT
from pwoa_lab.io.public_layouts import (  # noqa: F401 (the public names stay importable from here)
    FORMATS,
    IMPORT_ARCHS,
    MAX_LISTED,
    NORM_KEYS,
    UNUSED_PREFIXES,
    MappingReport,
    TeacherImportError,
    arch_of,
    from_public_layout,
    kit_to_public,
    public_to_kit,
    to_public_layout,
)
from pwoa_lab.utils import check_choice, check_eps

STATE_ENTRIES = ("state_dict", "model_state_dict", "model", "net", "model_state")


def import_datasets() -> tuple[str, ...]:
    """The datasets whose public checkpoints can be imported (their records say so)."""
    return dataset_names(lambda info: info.public_teachers)


# ----------------------------------------------------------------------------------------------- reading


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict {name: tensor} in a weights file, read with `torch.load(weights_only=True)` only.

    Accepts a bare state dict or a dict holding one under `state_dict`, `model_state_dict`, `model`, `net`
    or `model_state` (other entries, e.g. epoch numbers or optimizer state, are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise TeacherImportError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line
                       or "WeightsUnpickler error" in line), str(err).splitlines()[0] if str(err) else "")
        raise TeacherImportError(
            f"{path} needs arbitrary unpickling to load ({detail}). The kit reads weights with "
            "torch.load(weights_only=True) only, because unpickling other Python objects can execute code. If "
            "you trust where the file comes from, extract its tensors once in a separate Python process, e.g. "
            "`sd = torch.load(FILE, weights_only=False); torch.save(sd.get('state_dict', sd), 'weights.pt')` "
            "(for a pickled model: `torch.save(model.state_dict(), 'weights.pt')`), and import weights.pt") \
            from err
    except Exception as err:  # truncated zip, not a torch file, ...
        raise TeacherImportError(f"{path} could not be read as a PyTorch weights file ({type(err).__name__}: "
                                 f"{err}); the file is truncated, damaged or not a torch.save file") from err
    if isinstance(obj, dict) and obj.get("format") == KIT_FORMAT:
        raise TeacherImportError(f"{path} is already a pwoa-lab checkpoint: use it directly (--checkpoint)")
    if _is_state(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_ENTRIES:
            if _is_state(obj.get(key)):
                return obj[key]
    what = f"a dict with keys {sorted(map(str, obj))[:MAX_LISTED]}" if isinstance(obj, dict) else \
        f"a {type(obj).__name__}"
    raise TeacherImportError(f"{path} holds {what}, not a state dict: expected {{name: tensor}} or a dict with "
                             f"one under {', '.join(STATE_ENTRIES)}")


def _as_stats(value: Sequence[float] | str | None, which: int, what: str) -> list[float] | None:
    """--mean / --std: C numbers, a comma list, or the name of a dataset whose record has channel statistics."""
    if value is None:
        return None
    if isinstance(value, str):
        named = dataset_names(lambda info: info.stats is not None)
        if value in named:
            return list(dataset_info(value).stats[which])
        try:
            value = [float(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(f"--{what} takes comma-separated numbers or one of {', '.join(named)}, "
                             f"not {value!r}") from None
    return [float(v) for v in value]


def load_public_weights(source: str | Path | Mapping[str, torch.Tensor], model: HiddenModel, fmt: str = "plain",
                        mean: Sequence[float] | str | None = None, std: Sequence[float] | str | None = None
                        ) -> tuple[HiddenModel, MappingReport]:
    """Load a public weights file (or state dict) into bare kit `model` strictly; wrap it in `Normalized` when
    the file carries normalization buffers or `mean`/`std` are given ([C] floats, "a,b,c", or a dataset name).

    Returns (model in eval mode, report). File and user statistics must agree when both are present."""
    where = str(source) if isinstance(source, (str, Path)) else "state dict"
    state = read_weights(source) if isinstance(source, (str, Path)) else dict(source)
    kit_state, report = from_public_layout(state, model, fmt, where)
    user_mean, user_std = _as_stats(mean, 0, "mean"), _as_stats(std, 1, "std")
    if (user_mean is None) != (user_std is None):
        raise ValueError("give both --mean and --std, or neither")
    if user_mean is not None:
        if report.normalize is not None and not all(
                len(report.normalize[k]) == len(v) and torch.allclose(torch.tensor(report.normalize[k]),
                                                                      torch.tensor(v), atol=1e-4)
                for k, v in (("mean", user_mean), ("std", user_std))):
            raise TeacherImportError(f"{where}: the file's normalization buffers say mean {report.normalize['mean']}"
                                     f", std {report.normalize['std']}, but --mean/--std say {user_mean}, "
                                     f"{user_std}; drop --mean/--std (the file's values are what it was trained "
                                     "with) or fix them")
        if report.normalize is None:
            report.normalize, report.normalize_from = {"mean": user_mean, "std": user_std}, "--mean/--std"
    model.load_state_dict(kit_state, strict=True)
    if report.normalize is not None:
        channels = next(model.parameters()).shape[1]
        if len(report.normalize["mean"]) != channels:
            raise TeacherImportError(f"{where}: normalization has {len(report.normalize['mean'])} channels, the "
                                     f"model's input has {channels}")
        wrapped = Normalized(model, report.normalize["mean"], report.normalize["std"])
        for attr in ("kit_name", "kit_dataset"):
            if hasattr(model, attr):
                setattr(wrapped, attr, getattr(model, attr))
        model = wrapped
    return model.eval(), report


# ----------------------------------------------------------------------------------------------- import


def parse_eps(value: float | str | None) -> float | None:
    """An L-inf radius from a float or a fraction string such as "8/255" (None stays None)."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else check_eps(value)
    try:
        return check_eps(float(Fraction(str(value).strip())))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"eps must be a number or a fraction like 8/255, not {value!r}") from None


def evaluate_teacher(model: nn.Module, dataset: str, eps: float, n: int = 1000, aa_n: int | None = None,
                     aa_version: str = defaults.AA_VERSION, pgd_steps: int | None = None,
                     root: str | Path | None = None, device: str | torch.device | None = None,
                     progress: bool = True) -> pd.DataFrame:
    """Natural, PGD and AutoAttack accuracy (%) on the first `n` (`aa_n` for AA, default n; 0 skips AA) test
    images: one row per attack (attack, eps, n, accuracy, seconds, setting). PGD: `attacks.attack_options(dataset,
    eps, pgd_steps)`, the evaluation's PGD for the dataset (CIFAR: 10 steps of 2/255) with `pgd_steps` steps when
    given (0 or None: the dataset's); the step size stays the dataset's fixed one where it has one (CIFAR: 2/255),
    else 2.5 eps / steps, as `pwoa-lab evaluate --pgd-steps` does. AutoAttack: `aa_version` (default
    `defaults.AA_VERSION`). Seeded (seed 0)."""
    from pwoa_lab.core.attacks import attack_options
    from pwoa_lab.core.data import load_dataset
    from pwoa_lab.core.evaluation import evaluate
    from pwoa_lab.utils import forked_rng, get_device
    device = get_device(device)
    model = model.to(device).eval()
    test = load_dataset(dataset, "test", root)
    options = attack_options(dataset, eps, pgd_steps or None)
    options["aa"] = {"version": aa_version}
    aa_n = n if aa_n is None else aa_n
    with forked_rng():
        torch.manual_seed(0)
        table = evaluate(model, test, ["natural", "pgd"], eps=eps, n=n, attack_options=options, device=device,
                         progress=progress)
        if aa_n:
            table = pd.concat([table, evaluate(model, test, ["aa"], eps=eps, n=aa_n, attack_options=options,
                                               device=device, progress=progress)], ignore_index=True)
    table["setting"] = table["attack"].map({
        "natural": "clean images", "pgd": f"PGD-{options['pgd']['steps']}, step {options['pgd']['alpha']:.4f}",
        "aa": f"AutoAttack {aa_version}"})
    return table


@dataclass
class ImportResult:
    """An imported teacher: the model (eval mode), its checkpoint metadata, how it was mapped, its accuracy."""
    model: HiddenModel
    meta: dict[str, Any]
    report: MappingReport
    evaluation: pd.DataFrame | None
    path: Path | None


def import_teacher(arch: str, dataset: str, weights: str | Path, fmt: str = "plain", eps: float | str | None = None,
                   out: str | Path | None = None, mean: Sequence[float] | str | None = None,
                   std: Sequence[float] | str | None = None, source: str = "", n: int = 1000,
                   aa_n: int | None = None, aa_version: str = defaults.AA_VERSION, pgd_steps: int | None = None,
                   root: str | Path | None = None, device: str | None = None, overwrite: bool = False,
                   progress: bool = True) -> ImportResult:
    """Import a public robust teacher (see the module docstring): map, load strictly, evaluate on `n` test
    images (n=0 skips it), save a kit checkpoint at `out` (None: do not save) with provenance metadata.

    `eps`: the L-inf radius the model was trained for (float or "8/255"; default: the dataset's, 8/255);
    `aa_version`: "fast" or "standard" (default `defaults.AA_VERSION`; report "standard" next to published numbers);
    `pgd_steps`: as `evaluate_teacher`."""
    from pwoa_lab.io.checkpoint import command_line, save_checkpoint
    check_choice(arch, IMPORT_ARCHS, "architecture")
    check_choice(dataset, import_datasets(), "dataset")
    check_choice(fmt, FORMATS, "format")
    check_choice(aa_version, ("standard", "fast"), "AutoAttack version")
    eps = parse_eps(eps)
    eps = dataset_info(dataset).eps if eps is None else eps
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; refusing to overwrite it (pass --overwrite or choose another --out)")
    weights = Path(weights)
    model, report = load_public_weights(weights, build_model(arch, dataset), fmt, mean, std)
    if progress:
        print(f"imported {weights.name} as {arch} for {dataset}")
        for line in report.lines():
            print("  " + line)
    start = time.perf_counter()
    evaluation = None
    if n:
        if progress:
            print(f"evaluating on the first {n} test images (natural, PGD, AutoAttack {aa_version} on "
                  f"{n if aa_n is None else aa_n}) at eps {eps:.5f} ...")
        evaluation = evaluate_teacher(model, dataset, eps, n, aa_n, aa_version, pgd_steps, root, device, progress)
    meta = {"model": arch, "dataset": dataset, "eps": eps, "kind": "teacher",
            "import": {"format": fmt, "file": weights.name, "bytes": weights.stat().st_size,
                       "sha256": file_sha256(weights), "source": source, "tensors": report.loaded,
                       "stripped": report.stripped, "dropped": report.dropped, "filled": report.filled,
                       "normalize_from": report.normalize_from},
            "command": command_line()}
    if evaluation is not None:
        meta["metrics"] = {"test": {r.attack: float(r.accuracy) for r in evaluation.itertuples()},
                           "test_n": {r.attack: int(r.n) for r in evaluation.itertuples()},
                           "eval_seconds": time.perf_counter() - start}
    model = model.cpu()
    path = save_checkpoint(out, model, meta, overwrite=overwrite) if out is not None else None
    return ImportResult(model, meta, report, evaluation, path)
