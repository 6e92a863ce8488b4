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
6. Rename public names to the kit's (`public_to_kit`, explicit rules per architecture, below) and load
   strictly: every kit tensor filled, every file tensor used or dropped by step 5, equal shapes, finite
   values; otherwise a `TeacherImportError` listing what is missing, left over or mis-shaped. The one
   exception: BatchNorm `num_batches_tracked` counters absent from old (PyTorch < 0.4.1) files are set
   to 0 and listed as filled (they only matter for momentum=None BatchNorm, which no kit model uses).
7. Evaluate on the first `n` test images (natural, PGD, AutoAttack), so you see whether the published
   numbers reproduce before spending GPU-hours on pruning, and save a kit checkpoint whose metadata records
   the provenance: format, the file's sha256, its name and size, `source` (free text), dropped/filled tensors.

Public layouts (file name -> kit name; `k = (g - 1) * n + j` with n blocks per group, 5 for WRN-34):

    WRN-34-10 (TRADES, RobustBench)          kit WideResNet
      conv1.weight                             conv1.weight
      block{g}.layer.{j}.bn1|conv1|bn2|conv2   blocks.{k}.bn1|conv1|bn2|conv2
      block{g}.layer.{j}.convShortcut.weight   blocks.{k}.shortcut.weight
      bn1.*                                    bn.*
      fc.weight, fc.bias                       fc.weight, fc.bias
      sub_block1.*                             (dropped: defined but never used by TRADES' forward)
    ResNet-18 (kuangliu/pytorch-cifar, TRADES, RobustBench)   kit ResNet18
      conv1.weight, bn1.*                      conv1.weight, bn1.*
      layer{s}.{j}.*  (shortcut.0|1 inside)    blocks.{2 (s - 1) + j}.*
      linear.weight, linear.bias               fc.weight, fc.bias

Names that match no public rule pass through unchanged, so the kit's own names load too (`plain`).
`to_public_layout` is the inverse (kit -> public), used by the tests' round trips.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab.core.models import HiddenModel, Normalized, ResNet18, WideResNet, build_model
from pwoa_lab.io.checkpoint import FORMAT as KIT_FORMAT
from pwoa_lab.io.checkpoint import CheckpointError
from pwoa_lab.utils import check_choice, check_eps

FORMATS = ("trades", "robustbench", "plain")
IMPORT_ARCHS = ("wrn34_10", "resnet18")
IMPORT_DATASETS = ("cifar10", "cifar100")
STATE_ENTRIES = ("state_dict", "model_state_dict", "model", "net", "model_state")
NORM_KEYS = (("mu", "sigma"), ("mean", "std"), ("normalize.mean", "normalize.std"))
UNUSED_PREFIXES = {"trades": ("sub_block1.",), "robustbench": ("sub_block1.",), "plain": ()}
# The usual per-channel statistics of the training sets (`--mean cifar10 --std cifar10`).
DATASET_STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
                 "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
MAX_LISTED = 12


class TeacherImportError(CheckpointError):
    """A weights file that cannot be imported as asked (the message lists what does not fit)."""


@dataclass
class MappingReport:
    """How a file's tensors became the kit model's."""
    fmt: str
    loaded: int = 0                                        # kit tensors filled from the file
    stripped: list[str] = field(default_factory=list)      # wrapper prefixes removed ("module.", "model.")
    dropped: list[str] = field(default_factory=list)       # file tensors deliberately unused (original names)
    filled: list[str] = field(default_factory=list)        # kit tensors absent from the file, set to defaults
    normalize: dict[str, list[float]] | None = None        # {"mean": [C], "std": [C]} or None
    normalize_from: str = "none"                           # where `normalize` came from

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        out = [f"format {self.fmt}: {self.loaded} tensors loaded strictly"
               + (f" (prefix {', '.join(repr(p) for p in self.stripped)} stripped)" if self.stripped else "")]
        if self.dropped:
            prefixes = sorted({name.split(".")[0] + "." for name in self.dropped})
            out.append(f"dropped {len(self.dropped)} unused tensors ({', '.join(p + '*' for p in prefixes)})")
        if self.filled:
            out.append(f"filled {len(self.filled)} BatchNorm num_batches_tracked counters absent from the file "
                       "with 0")
        if self.normalize is None:
            out.append("no input normalization: the model takes images in [0, 1]")
        else:
            mean = ", ".join(f"{v:.4f}" for v in self.normalize["mean"])
            std = ", ".join(f"{v:.4f}" for v in self.normalize["std"])
            out.append(f"input normalization ({self.normalize_from}): mean ({mean}), std ({std})")
        return out


# ----------------------------------------------------------------------------------------------- names


def _blocks_per_group(names: Sequence[str]) -> int:
    """n for a kit WideResNet state dict: its `blocks.{k}.conv1.weight` count / 3."""
    count = sum(1 for name in names if re.fullmatch(r"blocks\.\d+\.conv1\.weight", name))
    if count % 3:
        raise ValueError(f"a WideResNet has 3 groups of equal size; these names hold {count} blocks")
    return count // 3


def public_to_kit(name: str, arch: str, n: int = 5) -> str:
    """The kit name of public tensor `name` (rules in the module docstring); unchanged if no rule matches.

    `n`: blocks per group of the kit WideResNet (5 for WRN-34); a block index j >= n matches no rule."""
    if arch == "wrn34_10":
        m = re.fullmatch(r"block([123])\.layer\.(\d+)\.(.+)", name)
        if m:
            g, j, rest = int(m[1]), int(m[2]), m[3]
            if j >= n:
                return name
            rest = re.sub(r"^convShortcut\.", "shortcut.", rest)
            return f"blocks.{(g - 1) * n + j}.{rest}"
        if name.startswith("bn1."):
            return "bn." + name.removeprefix("bn1.")
        return name
    if arch == "resnet18":
        m = re.fullmatch(r"layer([1234])\.([01])\.(.+)", name)
        if m:
            return f"blocks.{2 * (int(m[1]) - 1) + int(m[2])}.{m[3]}"
        if name.startswith("linear."):
            return "fc." + name.removeprefix("linear.")
        return name
    raise ValueError(f"no public layout known for architecture {arch!r}; known: {', '.join(IMPORT_ARCHS)}")


def kit_to_public(name: str, arch: str, n: int = 5) -> str:
    """The public (TRADES / RobustBench / pytorch-cifar) name of kit tensor `name`: inverse of `public_to_kit`."""
    if arch == "wrn34_10":
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
        if m:
            k, rest = int(m[1]), m[2]
            rest = re.sub(r"^shortcut\.", "convShortcut.", rest)
            return f"block{k // n + 1}.layer.{k % n}.{rest}"
        if name.startswith("bn."):
            return "bn1." + name.removeprefix("bn.")
        return name
    if arch == "resnet18":
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
        if m:
            k = int(m[1])
            return f"layer{k // 2 + 1}.{k % 2}.{m[2]}"
        if name.startswith("fc."):
            return "linear." + name.removeprefix("fc.")
        return name
    raise ValueError(f"no public layout known for architecture {arch!r}; known: {', '.join(IMPORT_ARCHS)}")


def arch_of(model: nn.Module) -> str:
    """'wrn34_10' or 'resnet18' for a kit model (bare or `Normalized`); other models have no public layout."""
    inner = model.model if isinstance(model, Normalized) else model
    if isinstance(inner, WideResNet):
        return "wrn34_10"
    if isinstance(inner, ResNet18):
        return "resnet18"
    raise ValueError(f"{type(inner).__name__} has no public layout; importable: WideResNet (wrn34_10), ResNet18")


def to_public_layout(state: Mapping[str, torch.Tensor], arch: str, fmt: str = "plain", *,
                     dataparallel: bool = False, norm_keys: tuple[str, str] = ("mu", "sigma"),
                     sub_block1: bool | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A kit state dict rewritten the way a public checkpoint of format `fmt` stores it.

    - names per `kit_to_public`; `fmt="robustbench"` puts them under `model.`;
    - a `Normalized` model's state (`mean`, `std`, `model.*`) keeps its normalization only in the
      robustbench layout, as buffers named `norm_keys` shaped [1, C, 1, 1]; other layouts raise ValueError;
    - `sub_block1` (default: True for a trades WRN): add TRADES' unused `sub_block1.*` tensors (WRN only; seeded
      random values shaped like block1's, as an untrained module would hold);
    - `dataparallel`: prefix every name with `module.`.
    """
    check_choice(fmt, FORMATS, "format")
    state = dict(state)
    norm = None
    if "mean" in state and "std" in state and any(k.startswith("model.") for k in state):
        norm = (state.pop("mean"), state.pop("std"))
        state = {k.removeprefix("model."): v for k, v in state.items()}
    n = _blocks_per_group(list(state)) if arch == "wrn34_10" else 0
    out = {kit_to_public(k, arch, n): v.detach().clone() for k, v in state.items()}
    if sub_block1 if sub_block1 is not None else (fmt == "trades" and arch == "wrn34_10"):
        if arch != "wrn34_10":
            raise ValueError("sub_block1 exists only in TRADES' WideResNet")
        gen = torch.Generator().manual_seed(seed)
        for k, v in list(out.items()):
            if k.startswith("block1."):
                extra = torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
                out["sub_block1." + k.removeprefix("block1.")] = extra.to(v.dtype)
    if fmt == "robustbench":
        out = {"model." + k: v for k, v in out.items()}
        if norm is not None:
            out[norm_keys[0]] = norm[0].detach().clone().view(1, -1, 1, 1)
            out[norm_keys[1]] = norm[1].detach().clone().view(1, -1, 1, 1)
    elif norm is not None:
        raise ValueError(f"the {fmt} layout has no place for an input normalization; export the inner model "
                         "and pass --mean/--std when importing, or use the robustbench layout")
    if dataparallel:
        out = {"module." + k: v for k, v in out.items()}
    return out


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


# ----------------------------------------------------------------------------------------------- mapping


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str, report: MappingReport) -> dict[str, torch.Tensor]:
    """Remove `prefix` when every name carries it (a wrapper's; a partial prefix is left for the error)."""
    if state and all(k.startswith(prefix) for k in state):
        report.stripped.append(prefix)
        return {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _take_normalization(state: dict[str, torch.Tensor], report: MappingReport,
                        where: str) -> dict[str, list[float]] | None:
    """Pop one (mean, std) buffer pair (NORM_KEYS) from `state`; None if there is none."""
    found = [pair for pair in NORM_KEYS if pair[0] in state or pair[1] in state]
    if not found:
        return None
    if len(found) > 1 or not all(k in state for k in found[0]):
        raise TeacherImportError(f"{where}: ambiguous normalization buffers "
                                 f"{[k for pair in found for k in pair if k in state]}: expected exactly one "
                                 f"pair of {', '.join('/'.join(p) for p in NORM_KEYS)}")
    mean, std = (state.pop(k).detach().float().flatten() for k in found[0])
    report.normalize_from = f"file buffers {'/'.join(found[0])}"
    return {"mean": mean.tolist(), "std": std.tolist()}


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def _hints(file_names: Sequence[str], arch: str, n: int, fmt: str) -> list[str]:
    """Likely causes of a mismatch, from the file's names."""
    hints = []
    for prefix, cure in (("module.", "every format strips it only when all names carry it"),
                         ("model.", "use --format robustbench"), ("sub_block1.", "use --format trades")):
        if any(k.startswith(prefix) for k in file_names):
            hints.append(f"names starting with {prefix!r} are present ({cure})")
    if arch == "wrn34_10":
        js = {int(m[1]) for k in file_names if (m := re.match(r"(?:.*\.)?block1\.layer\.(\d+)\.", k))}
        if js and max(js) + 1 != n:
            hints.append(f"the file holds a WideResNet with {max(js) + 1} blocks per group "
                         f"(WRN-{6 * (max(js) + 1) + 4}), the kit's model has {n} (WRN-{6 * n + 4}); the kit "
                         "imports WRN-34-10 (--arch wrn34_10) and ResNet-18 only")
    if arch == "wrn34_10" and any(re.match(r"(?:.*\.)?layer1\.0\.", k) for k in file_names):
        hints.append("the names look like a ResNet (layer1.*): try --arch resnet18")
    if fmt != "robustbench" and any(k in file_names for pair in NORM_KEYS for k in pair):
        hints.append("normalization buffers (mu/sigma, mean/std) are present: --format robustbench reads them")
    if arch == "resnet18" and any("block1.layer." in k for k in file_names):
        hints.append("the names look like a WideResNet (block1.layer.*): try --arch wrn34_10")
    return hints


def from_public_layout(state: Mapping[str, torch.Tensor], model: HiddenModel, fmt: str,
                       where: str = "weights") -> tuple[dict[str, torch.Tensor], MappingReport]:
    """Map a public state dict onto bare kit `model`'s names and check it strictly (steps 3-6).

    Returns (a state dict that `model.load_state_dict(..., strict=True)` accepts, in the model's dtypes,
    report with any normalization found in the file). Raises TeacherImportError listing missing, left-over
    and mis-shaped tensors, with hints."""
    check_choice(fmt, FORMATS, "format")
    arch = arch_of(model)
    report = MappingReport(fmt)
    target = model.state_dict()
    n = _blocks_per_group(list(target)) if arch == "wrn34_10" else 0
    state = _strip_prefix(dict(state), "module.", report)
    if fmt == "robustbench":  # buffers beside `model.` (normalize_model) or inside it (a model's own mu/sigma)
        report.normalize = _take_normalization(state, report, where)
        state = _strip_prefix(state, "model.", report)
        if report.normalize is None:
            report.normalize = _take_normalization(state, report, where)
    mapped: dict[str, tuple[str, torch.Tensor]] = {}
    leftover, collisions = [], []
    for name, tensor in state.items():
        if name.startswith(UNUSED_PREFIXES[fmt]):
            report.dropped.append(name)
            continue
        kit = public_to_kit(name, arch, n)
        if kit not in target:
            leftover.append(name if kit == name else f"{name} (as {kit})")
        elif kit in mapped:
            collisions.append(f"{mapped[kit][0]} and {name} -> {kit}")
        else:
            mapped[kit] = (name, tensor)
    missing = [k for k in target if k not in mapped]
    report.filled = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in report.filled]
    shapes = [f"{kit} (file {mapped[kit][0]}): file {list(t.shape)} vs kit {list(target[kit].shape)}"
              for kit, (_, t) in mapped.items() if t.shape != target[kit].shape]
    bad = [f"{name}" for kit, (name, t) in mapped.items()
           if t.is_floating_point() and t.shape == target[kit].shape and not torch.isfinite(t).all()]
    if missing or leftover or collisions or shapes or bad:
        parts = [f"{where}: the tensors do not fit the kit's {arch} ({fmt} format; a strict load needs every kit "
                 "tensor filled, every file tensor used, equal shapes):"]
        for label, items in (("missing (kit tensors the file does not fill)", missing),
                             ("left over (file tensors that map to no kit tensor)", leftover),
                             ("two file tensors for one kit tensor", collisions),
                             ("shape mismatch", shapes), ("non-finite values (damaged file?)", bad)):
            if items:
                parts.append(f"  {label}, {len(items)}: {_listed(items)}")
        parts += [f"  hint: {h}" for h in _hints(list(state), arch, n, fmt)]
        parts.append("  check --arch, --dataset (number of classes) and --format")
        raise TeacherImportError("\n".join(parts))
    out = {kit: t.detach().to(dtype=target[kit].dtype).clone() for kit, (_, t) in mapped.items()}
    for kit in report.filled:
        out[kit] = torch.zeros_like(target[kit])
    report.loaded = len(mapped)
    return out, report


def _as_stats(value: Sequence[float] | str | None, which: int, what: str) -> list[float] | None:
    """--mean / --std: C numbers, a comma list, or a dataset name (DATASET_STATS)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in DATASET_STATS:
            return list(DATASET_STATS[value][which])
        try:
            value = [float(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(f"--{what} takes comma-separated numbers or one of {', '.join(DATASET_STATS)}, "
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
                     aa_version: str = "standard", pgd_steps: int | None = None, root: str | Path | None = None,
                     device: str | torch.device | None = None, progress: bool = True) -> pd.DataFrame:
    """Natural, PGD and AutoAttack accuracy (%) on the first `n` (`aa_n` for AA, default n; 0 skips AA) test
    images: one row per attack (attack, eps, n, accuracy, seconds, setting). PGD: the kit's default for the dataset
    (CIFAR: 10 steps of 2/255) unless `pgd_steps` (step 2.5 eps / steps) is given. Seeded (seed 0)."""
    from pwoa_lab.core.attacks import default_attack_options
    from pwoa_lab.core.data import load_dataset
    from pwoa_lab.core.evaluation import evaluate
    from pwoa_lab.utils import forked_rng, get_device
    device = get_device(device)
    model = model.to(device).eval()
    test = load_dataset(dataset, "test", root)
    options = default_attack_options(dataset, eps)
    if pgd_steps:
        options["pgd"] = {"steps": pgd_steps, "alpha": 2.5 * eps / pgd_steps}
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
                   aa_n: int | None = None, aa_version: str = "standard", pgd_steps: int | None = None,
                   root: str | Path | None = None, device: str | None = None, overwrite: bool = False,
                   progress: bool = True) -> ImportResult:
    """Import a public robust teacher (see the module docstring): map, load strictly, evaluate on `n` test
    images (n=0 skips it), save a kit checkpoint at `out` (None: do not save) with provenance metadata.

    `eps`: the L-inf radius the model was trained for (float or "8/255"; default: the dataset's, 8/255)."""
    from pwoa_lab.io.checkpoint import command_line, save_checkpoint
    check_choice(arch, IMPORT_ARCHS, "architecture")
    check_choice(dataset, IMPORT_DATASETS, "dataset")
    check_choice(fmt, FORMATS, "format")
    check_choice(aa_version, ("standard", "fast"), "AutoAttack version")
    eps = parse_eps(eps)
    from pwoa_lab.core.data import dataset_info
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
