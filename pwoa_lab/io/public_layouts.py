"""Public checkpoint layouts (TRADES, RobustBench, pytorch-cifar) and the kit's names: the rules, both ways, strict.

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

`from_public_layout` applies the rules to a whole state dict (strip wrapper prefixes, take RobustBench's
normalization buffers out, drop what a format declares unused, rename, check strictly); `pwoa_lab.io.teacher_import`
reads the file and builds the teacher around it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from pwoa_lab.core.models import HiddenModel, Normalized, ResNet18, WideResNet
from pwoa_lab.io.checkpoint import CheckpointError
from pwoa_lab.utils import check_choice

FORMATS = ("trades", "robustbench", "plain")
IMPORT_ARCHS = ("wrn34_10", "resnet18")
NORM_KEYS = (("mu", "sigma"), ("mean", "std"), ("normalize.mean", "normalize.std"))
UNUSED_PREFIXES = {"trades": ("sub_block1.",), "robustbench": ("sub_block1.",), "plain": ()}
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
