"""Structured (channel) pruning: remove whole filters / neurons and the matching inputs of the next layers.

Weight pruning (``pwoa_lab.pruning``) zeroes single weights: the model keeps its dense shape and runs no faster.
Here a pruned model is *physically smaller*: the same architecture family with fewer channels, a plain
``nn.Module`` without masks, whose ``forward_features`` and ``hidden_names`` still work (so HSIC / PwoA do).
The channel surgery itself is Torch-Pruning's (``torch_pruning.DependencyGraph``): removing output channel c
of a layer also removes input c of every layer that reads it (through pooling, flatten, residual additions and
BatchNorm), which the graph finds by tracing one forward pass.

Read top to bottom:

1. ``channel_groups(model, input_shape, scope)``: the prunable channel groups. A group is one set of coupled
   output channels: rooted at a conv / linear layer, plus every layer whose output channels must go with it
   (e.g. the BatchNorm after it, or the convs added to it in a residual block). The classifier's outputs and
   the input image's channels are never pruned; scope "hidden" also keeps the first layer's outputs;
   "convs" prunes conv channels only.
2. ``channel_scores``: importance of each channel of a group, summed over the group's member layers:
   ``"magnitude"`` the squared L2 norm of the channel's filter (output row), ``"gradient"`` the first-order
   Taylor score sum |w * dL/dw| over that row (from ``pruning.gradient_importance``, Molchanov et al. 2019).
3. ``channels_to_remove(scores, fraction)``: exactly ``round(fraction * c)`` lowest-scoring channels of each
   group (at most c - 1: a layer never loses all its channels).
4. ``channel_masks``: the same removal as masks (whole output rows + biases zeroed), for schedules that prune
   gradually before the physical removal; ``prune_channels``: the physical removal (Torch-Pruning).
5. The rate: ``fraction_for_rate(model, input_shape, rate)`` maps a pruning rate R to the channel fraction p.
   **Rate R, structured, means: the pruned model has at most 1/R of the dense model's parameters (every
   parameter, biases included), with the same fraction p of channels removed from every group, p the smallest
   multiple of 1/1000 that gets there.** A layer between two pruned layers loses inputs and outputs, so its
   size falls like (1 - p)^2: on LeNet-3 about half of the channels go at 4x (p = 0.502: 16 / 32 / 510 of
   32 / 64 / 1024 channels kept), and the model then holds 24.997% of the teacher's parameters. The same rate in weight
   pruning keeps 1/R of the weights *of the pruned layers*, in a dense-shaped model: at equal R the two have
   about the same number of non-zero parameters.
6. Saving: ``save_structured`` / ``load_structured`` store the state dict with its shapes plus the
   architecture's name; loading rebuilds the architecture (``models.build_model``), resizes every layer to the
   stored shapes (``resize_to_state``) and loads the weights with ``torch.load(weights_only=True)``.
7. ``ChannelADMM``: ADMM towards channel sparsity (the structured counterpart of ``pruning.ADMM``).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from pwoa_lab.core.models import is_structured_state, resize_to_state
from pwoa_lab.pruning.admm import ADMM
from pwoa_lab.pruning.export import _check_plain
from pwoa_lab.pruning.masks import effective_weight, is_masked, prunable_modules, remove_masks
from pwoa_lab.utils import atomic_write, check_choice, check_rate, load_error_words

IMPORTANCES = ("magnitude", "gradient")
STRUCTURED_SCOPES = ("all", "hidden", "convs")
STRUCTURED_FORMAT = "pwoa-lab-structured"
STRUCTURED_VERSION = 1
_WEIGHTED = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable set of coupled output channels.

    root: module name of the conv / linear layer the group is named after; channels: how many it has;
    members: module names whose output channels are these same channels, root first (conv, linear, BatchNorm)."""
    root: str
    channels: int
    members: tuple[str, ...]


# ----------------------------------------------------------------------------------------------- groups

def _example(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Two constant inputs [2, *input_shape] = 0.5 on the model's device (two: BatchNorm needs more than one;
    constant: tracing must not draw from the global random stream, which a seeded run relies on)."""
    return torch.full((2, *input_shape), 0.5, device=next(model.parameters()).device)


def _classifier(model: nn.Module) -> str:
    """The module name of the last linear layer (its outputs are the logits: never pruned)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return names[-1]


def dependency_graph(model: nn.Module, input_shape: tuple[int, ...]):
    """Torch-Pruning's dependency graph of `model` (traced in eval mode, so BatchNorm statistics stay put)."""
    import torch_pruning as tp
    if is_masked(model):
        raise ValueError("the model carries pruning masks; call pruning.remove_masks first")
    was_training = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=_example(model, input_shape))
    finally:
        model.train(was_training)


def channel_groups(model: nn.Module, input_shape: tuple[int, ...], scope: str = "all") -> list[ChannelGroup]:
    """The prunable channel groups of `model` (see the module docstring), in model order.

    input_shape: one input's (C, H, W). `model` may carry masks (they are ignored: the graph is traced on a copy).
    """
    check_choice(scope, STRUCTURED_SCOPES, "structured scope")
    plain = copy.deepcopy(model)
    if is_masked(plain):
        remove_masks(plain)
    keys = prunable_modules(plain, scope)
    roots = {n for n, _ in plain.named_modules() if f"{n}.weight" in keys} - {_classifier(plain)}
    DG = dependency_graph(plain, input_shape)
    names = {m: n for n, m in plain.named_modules()}
    ignored = [m for n, m in plain.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in roots]
    groups = []
    for group in DG.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv2d, nn.Linear)):
        root = names[group[0].dep.target.module]
        channels = len(group[0].idxs)
        members = [root]
        for dep, idxs in group:
            module = dep.target.module
            if (DG.is_out_channel_pruning_fn(dep.handler) and isinstance(module, _WEIGHTED)
                    and module in names and names[module] not in members and len(idxs) == channels):
                members.append(names[module])
        groups.append(ChannelGroup(root, channels, tuple(members)))
    order = list(dict(plain.named_modules()))
    return sorted(groups, key=lambda g: order.index(g.root))


# ----------------------------------------------------------------------------------------------- scores

def _rows(t: torch.Tensor) -> torch.Tensor:
    """[out, ...] -> [out, rest] (a BatchNorm's 1-D weight becomes [out, 1])."""
    return t.reshape(t.shape[0], -1)


def channel_scores(model: nn.Module, groups: list[ChannelGroup], importance: str = "magnitude",
                   weight_scores: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{group root: scores [channels]} summed over the group's members.

    importance "magnitude": sum of squared weights of each channel's output row (filter norm^2; a BatchNorm
    member adds its gamma^2); "gradient": sum of |w * dL/dw| over the row, from `weight_scores` =
    ``pruning.gradient_importance(model, x, y, scope="all")`` (BatchNorm members add nothing). Effective (masked)
    weights are used, so a channel removed by ``channel_masks`` scores 0.
    """
    check_choice(importance, IMPORTANCES, "importance")
    if importance == "gradient" and weight_scores is None:
        raise ValueError('importance="gradient" needs weight_scores (pruning.gradient_importance)')
    out = {}
    for g in groups:
        total = None
        for name in g.members:
            module = model.get_submodule(name)
            if importance == "magnitude":
                s = _rows(effective_weight(module).detach().float()).pow(2).sum(1)
            elif f"{name}.weight" in weight_scores:
                s = _rows(weight_scores[f"{name}.weight"].float()).sum(1)
            else:
                continue
            total = s if total is None else total + s.to(total.device)
        out[g.root] = total.cpu()
    return out


def removal_count(channels: int, fraction: float) -> int:
    """How many of `channels` go at channel fraction p: round(p * channels), at most channels - 1."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"channel fraction must lie in [0, 1); got {fraction}")
    return min(round(fraction * channels), channels - 1)


def channels_to_remove(scores: Mapping[str, torch.Tensor], fraction: float,
                       removed: Mapping[str, list[int]] | None = None) -> dict[str, list[int]]:
    """{group root: sorted channel indices to remove}: the removal_count(c, fraction) lowest scores per group.

    `removed` (channels already removed by masks) are removed first, so a later, larger fraction only adds."""
    out = {}
    for root, s in scores.items():
        s = s.clone().float()
        if removed and removed.get(root):
            s[list(removed[root])] = -1.0
        n = removal_count(s.numel(), fraction)
        out[root] = sorted(torch.argsort(s, stable=True)[:n].tolist())
    return out


# ----------------------------------------------------------------------------------------------- pruning

def channel_masks(model: nn.Module, groups: list[ChannelGroup], remove: Mapping[str, list[int]]
                  ) -> dict[str, torch.Tensor]:
    """Masks {tensor name: BoolTensor} (for ``pruning.apply_masks``) that zero the output rows and biases of
    the removed channels in every member of their group: the masked model computes exactly what the
    physically pruned one does (a removed channel outputs 0 everywhere)."""
    masks = {}
    for g in groups:
        idxs = list(remove.get(g.root, []))
        for name in g.members:
            module = model.get_submodule(name)
            for tensor in ("weight", "bias"):
                if getattr(module, tensor, None) is None:
                    continue
                t = effective_weight(module, tensor)
                mask = torch.ones_like(t, dtype=torch.bool)
                mask[idxs] = False
                masks[f"{name}.{tensor}"] = mask
    return masks


def prune_channels(model: nn.Module, input_shape: tuple[int, ...], remove: Mapping[str, list[int]]) -> nn.Module:
    """Physically remove the given output channels {group root: indices} (and every coupled input) in place,
    with Torch-Pruning. `model` must carry no masks. Parameters are replaced: build optimizers afterwards.
    Returns `model`."""
    DG = dependency_graph(model, input_shape)
    for root, idxs in remove.items():
        if not idxs:
            continue
        module = model.get_submodule(root)
        pruner = DG.get_pruner_of_module(module)
        DG.get_pruning_group(module, pruner.prune_out_channels, list(idxs)).prune()
    return model


def structured_prune(model: nn.Module, input_shape: tuple[int, ...], fraction: float,
                     importance: str = "magnitude", scope: str = "all",
                     weight_scores: Mapping[str, torch.Tensor] | None = None) -> dict[str, list[int]]:
    """One shot: remove `fraction` of the channels of every group by `importance`, physically, in place.

    Returns the removed indices {group root: [indices in the original numbering]}."""
    groups = channel_groups(model, input_shape, scope)
    remove = channels_to_remove(channel_scores(model, groups, importance, weight_scores), fraction)
    prune_channels(model, input_shape, remove)
    return remove


def parameter_count(model: nn.Module) -> int:
    """Every parameter of `model` (weights and biases, BatchNorm affine included)."""
    return sum(p.numel() for p in model.parameters())


def fraction_for_rate(model: nn.Module, input_shape: tuple[int, ...], rate: float, scope: str = "all",
                      resolution: int = 1000) -> float:
    """The channel fraction p for structured rate R: the smallest k / `resolution` whose pruned model holds at
    most parameter_count(model) / R parameters (found by bisection; each probe prunes a copy). A ValueError
    when even the largest fraction cannot (e.g. scope "hidden" with a big first layer at a high rate)."""
    check_rate(rate)
    base = copy.deepcopy(model)
    if is_masked(base):
        remove_masks(base)
    groups = channel_groups(base, input_shape, scope)
    target = parameter_count(base) / rate

    def size(k: int) -> int:
        probe = copy.deepcopy(base)
        p = k / resolution
        prune_channels(probe, input_shape, {g.root: list(range(removal_count(g.channels, p))) for g in groups})
        return parameter_count(probe)

    lo, hi = 0, resolution - 1
    if size(hi) > target:
        raise ValueError(f"structured pruning cannot reach rate {rate:g} with scope {scope!r}: removing "
                         f"{hi / resolution:.1%} of the channels still leaves {size(hi):,} > {target:,.0f} parameters")
    while lo < hi:
        mid = (lo + hi) // 2
        if size(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo / resolution


# ----------------------------------------------------------------------------------------------- save / load

def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """{parameter or buffer name: shape}: what a structured file stores to rebuild the architecture."""
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def save_structured(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None,
                    overwrite: bool = False) -> Path:
    """Save a (structured-)pruned model as a plain file: its state dict, layer shapes, and architecture
    (model name and dataset, from ``build_model``'s ``kit_name`` / ``kit_dataset``, and the input normalization
    if any) in `metadata`. Written atomically; an existing file is kept unless ``overwrite=True``."""
    from pwoa_lab.core.models import normalization_of
    if is_masked(model):
        raise ValueError("the model carries pruning masks; call pruning.remove_masks first")
    metadata = dict(metadata or {})
    arch = {"model": getattr(model, "kit_name", None), "dataset": getattr(model, "kit_dataset", None),
            "normalize": normalization_of(model)}
    metadata = {**arch, **metadata}
    if metadata["model"] is None or metadata["dataset"] is None:
        raise ValueError("cannot tell the architecture: pass metadata={'model': ..., 'dataset': ...} "
                         "(a model from pwoa_lab.core.models.build_model records them itself)")
    _check_plain(metadata, "metadata")
    payload = {"format": STRUCTURED_FORMAT, "version": STRUCTURED_VERSION, "shapes": layer_shapes(model),
               "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "metadata": metadata}
    with atomic_write(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_structured(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read a ``save_structured`` file: (plain model in eval mode, metadata). Loaded with weights_only=True."""
    from pwoa_lab.core.models import build_model
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # empty, truncated, foreign: the kit's words, not torch's advice
        raise ValueError(f"{path} is not a pwoa-lab structured checkpoint (cannot read it: "
                         f"{load_error_words(path, err)}); re-create it") from None
    if not isinstance(payload, dict) or payload.get("format") != STRUCTURED_FORMAT:
        raise ValueError(f"{path} is not a pwoa-lab structured checkpoint (no format marker {STRUCTURED_FORMAT!r})")
    if payload.get("version") != STRUCTURED_VERSION:
        raise ValueError(f"{path}: version {payload.get('version')!r}, this code reads {STRUCTURED_VERSION}")
    meta = dict(payload["metadata"])
    model = build_model(meta["model"], meta["dataset"], meta.get("normalize"))
    state = payload["state"]
    resize_to_state(model, state)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


# ----------------------------------------------------------------------------------------------- ADMM

class ChannelADMM(ADMM):
    """ADMM towards channel sparsity: Z_l is W_l with all but its `keep_l` output rows of largest L2 norm set
    to 0 (the Euclidean projection onto "at most keep_l non-zero rows"), one term per group root layer.

    Same penalty / update / residual / state as ``pruning.ADMM``; ``masks()`` gives row masks and
    ``removed()`` the channels outside the support, per group root, for ``prune_channels``."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], fraction: float, rho0: float = 0.01,
                 rho_growth: float = 1.35, rho_max: float = 1.0) -> None:
        self.rate = float("nan")
        self._set_rho_schedule(rho0, rho_growth, rho_max)
        self.modules = {f"{g.root}.weight": model.get_submodule(g.root) for g in groups}
        self.keep = {f"{g.root}.weight": g.channels - removal_count(g.channels, fraction) for g in groups}
        self._start(rho0)

    def _set_z(self, key: str, v: torch.Tensor) -> None:
        norms = _rows(v).pow(2).sum(1)
        rows = torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
        rows[torch.topk(norms, self.keep[key], sorted=False).indices] = True
        self._support[key] = rows.view(-1, *([1] * (v.dim() - 1))).expand_as(v).clone()
        self.Z[key] = torch.where(self._support[key], v, torch.zeros_like(v))

    def removed(self) -> dict[str, list[int]]:
        """{group root: sorted indices of the channels outside Z's support}."""
        return {key[: -len(".weight")]: sorted((~_rows(mask)[:, 0]).nonzero().flatten().tolist())
                for key, mask in self._support.items()}
