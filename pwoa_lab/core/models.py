"""Models by name. Inputs are images in [0, 1], outputs are logits.

Every model here has `forward_features(x) -> (logits, hiddens)`, where `hiddens` is the list of block
outputs Z_j that the HSIC term of PwoA uses (LeNet-3: relu(conv1), relu(conv2), relu(fc1); VGG-small: its
three stages; ResNet-18: stem,
8 blocks, pooled feature; WRN-34-10: stem, 15 blocks, pooled feature). A plain `model(x)` returns the logits
only. `logits_and_hiddens(model, x)` is the one way the rest of the kit asks for both. `Normalized(model, mean,
std)` puts a per-channel input normalization in front of any of them (imported teachers trained on normalized
inputs; `build_model(..., normalize=...)` rebuilds it from checkpoint metadata).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.datasets import dataset_info
from pwoa_lab.utils import check_choice


class HiddenModel(nn.Module):
    """Base class: subclasses implement `forward_features`; `forward` returns its logits."""
    hidden_names: list[str] = []

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def scaled(width: int, scale: float) -> int:
    """A layer width times `scale` (the width multiplier of a narrower network), rounded, at least 1."""
    if not scale > 0:
        raise ValueError(f"scale (the width multiplier) must be > 0; got {scale!r}")
    return max(1, round(width * scale))


class TwoConvNet(HiddenModel):
    """conv k x k, pool, conv k x k, pool, fc `hidden`, fc C ("same" padding): the small CNN and LeNet-3.
    `scale` multiplies every hidden width (32, 64 channels and `hidden` units)."""
    hidden_names = ["relu(conv1)", "relu(conv2)", "relu(fc1)"]

    def __init__(self, in_channels: int, num_classes: int, image_size: int, kernel: int, hidden: int,
                 scale: float = 1.0):
        super().__init__()
        c1, c2, hidden = scaled(32, scale), scaled(64, scale), scaled(hidden, scale)
        self.conv1 = nn.Conv2d(in_channels, c1, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(c1, c2, kernel, padding=kernel // 2)
        self.fc1 = nn.Linear(c2 * (image_size // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward_features(self, x):
        z1 = F.relu(self.conv1(x))
        z2 = F.relu(self.conv2(F.max_pool2d(z1, 2)))
        z3 = F.relu(self.fc1(F.max_pool2d(z2, 2).flatten(1)))
        return self.fc2(z3), [z1, z2, z3]


class SmallCNN(TwoConvNet):
    """A small CNN for 16x16 digits: conv 32 3x3, pool, conv 64 3x3, pool, fc 128, fc C."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 16, scale: float = 1.0):
        super().__init__(in_channels, num_classes, image_size, kernel=3, hidden=128, scale=scale)


class LeNet3(TwoConvNet):
    """LeNet-3 for 28x28 MNIST: conv 32 5x5, pool, conv 64 5x5, pool, fc 1024, fc C ("same" padding)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, scale: float = 1.0):
        super().__init__(in_channels, num_classes, image_size, kernel=5, hidden=1024, scale=scale)


class VGGSmall(HiddenModel):
    """A CIFAR net for CPUs: 3 stages of two (3x3 conv, BatchNorm, ReLU) with 32, 64, 128 channels, a 2x2 max-pool
    after each stage, a linear classifier `fc` on the flattened 128 x 4 x 4 map (0.31M parameters on CIFAR-10).
    Hidden layers for HSIC: the three stage outputs (before their pool)."""
    hidden_names = ["stage1", "stage2", "stage3"]

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: int = 32,
                 scale: float = 1.0):
        super().__init__()
        stages = [scaled(width * k, scale) for k in (1, 2, 4)]  # each rounded on its own: finer sizes
        layers, cin = [], in_channels
        for cout in (stages[0], stages[0], stages[1], stages[1], stages[2], stages[2]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(stages[2] * (image_size // 8) ** 2, num_classes)

    def forward_features(self, x):
        hiddens = []
        for stage in range(3):
            x = self.features[6 * stage:6 * stage + 6](x)
            hiddens.append(x)
            x = F.max_pool2d(x, 2)
        return self.fc(x.flatten(1)), hiddens


class BasicBlock(nn.Module):
    """ResNet basic block (post-activation)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(HiddenModel):
    """CIFAR ResNet-18: 3x3 stem, no max-pool, 4 stages of 2 basic blocks, global average pool (`scale`
    multiplies every width)."""
    hidden_names = ["stem"] + [f"block{i}" for i in range(1, 9)] + ["pool"]

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, scale: float = 1.0):
        super().__init__()
        stem = scaled(64, scale)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        blocks, cin = [], stem
        for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
            cout = scaled(cout, scale)
            blocks.append(BasicBlock(cin, cout, stride))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward_features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        hiddens = [out]
        for block in self.blocks:
            out = block(out)
            hiddens.append(out)
        pooled = F.adaptive_avg_pool2d(out, 1).flatten(1)
        hiddens.append(pooled)
        return self.fc(pooled), hiddens


class WideBlock(nn.Module):
    """Pre-activation wide ResNet block."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(HiddenModel):
    """WRN-depth-width (WRN-34-10 by default): 3 groups of (depth - 4) / 6 pre-activation blocks."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, depth: int = 34,
                 widen: int = 10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for group, stride in zip(range(1, 4), (1, 2, 2)):
            for i in range(n):
                blocks.append(WideBlock(cin, widths[group], stride if i == 0 else 1))
                cin = widths[group]
        self.blocks = nn.ModuleList(blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.hidden_names = ["stem"] + [f"block{i}" for i in range(1, len(blocks) + 1)] + ["pool"]

    def forward_features(self, x):
        out = self.conv1(x)
        hiddens = [out]
        for block in self.blocks:
            out = block(out)
            hiddens.append(out)
        pooled = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        hiddens.append(pooled)
        return self.fc(pooled), hiddens


class Normalized(HiddenModel):
    """`model` applied to (x - mean) / std: a network trained on normalized inputs, still fed [0, 1] images.

    `mean`, `std`: one value per input channel (e.g. CIFAR-10's (0.4914, 0.4822, 0.4465), (0.2471, 0.2435,
    0.2616)), kept as buffers [1, C, 1, 1] so they travel with the weights. `forward_features` and
    `hidden_names` are the wrapped model's, so the HSIC term sees the same block outputs; the wrapped
    model's weights are named `model.<name>` in the state dict.
    """

    def __init__(self, model: HiddenModel, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() != std_t.numel() or mean_t.numel() == 0:
            raise ValueError(f"normalization needs one mean and one std per input channel; got {mean_t.numel()} "
                             f"means and {std_t.numel()} stds")
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise ValueError(f"normalization std must be finite and > 0 (got mean {mean_t.tolist()}, "
                             f"std {std_t.tolist()})")
        self.model = model
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))
        self.hidden_names = list(model.hidden_names)

    def normalization(self) -> dict[str, list[float]]:
        """{"mean": [C floats], "std": [C floats]}: what checkpoint metadata records to rebuild the wrapper."""
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def forward_features(self, x):
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"input has {x.shape[1]} channels, the normalization has {self.mean.shape[1]}")
        return self.model.forward_features((x - self.mean) / self.std)


def normalization_of(model: nn.Module) -> dict[str, list[float]] | None:
    """The input normalization a model applies ({"mean": [...], "std": [...]}), or None for [0, 1] models."""
    return model.normalization() if isinstance(model, Normalized) else None


MODELS: dict[str, Callable[..., HiddenModel]] = {
    "small_cnn": SmallCNN,
    "lenet3": LeNet3,
    "vgg_small": VGGSmall,
    "resnet18": ResNet18,
    "wrn34_10": WideResNet,
}


def build_model(name: str | None, dataset: str, normalize: dict[str, Sequence[float]] | None = None,
                scale: float = 1.0) -> HiddenModel:
    """A freshly initialised model `name` (default: the dataset's default) shaped for `dataset`.

    `normalize` ({"mean": [C], "std": [C]}, as checkpoint metadata records it) wraps it in `Normalized`. `scale`:
    every hidden width times this (a narrower network of the same family; 1: the model itself).
    """
    info = dataset_info(dataset)
    name = info.default_model if name is None else check_choice(name, MODELS, "model")
    channels, size, _ = info.shape
    extra = {} if scale == 1.0 else {"scale": scale}  # models without a width multiplier take the default only
    model = MODELS[name](in_channels=channels, num_classes=info.num_classes, image_size=size, **extra)
    if normalize is not None:
        if set(normalize) != {"mean", "std"}:
            raise ValueError(f"normalize must be {{'mean': [...], 'std': [...]}}, got keys {sorted(normalize)}")
        if len(normalize["mean"]) != channels:
            raise ValueError(f"normalize has {len(normalize['mean'])} channel means, {dataset} images have "
                             f"{channels} channels")
        model = Normalized(model, normalize["mean"], normalize["std"])
    model.kit_name, model.kit_dataset = name, dataset  # recorded in checkpoints
    return model


def logits_and_hiddens(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits [B, C] and the hidden block outputs [B, ...] that the HSIC term uses."""
    inner = getattr(model, "module", model)  # DataParallel-style wrappers
    if not hasattr(inner, "forward_features"):
        raise TypeError(f"{type(inner).__name__} has no forward_features(); use a model from "
                        f"pwoa_lab.core.models ({', '.join(MODELS)}) or add one that returns (logits, hiddens)")
    return inner.forward_features(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_RESIZABLE = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


def resize_to_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Resize every conv / linear / BatchNorm layer of `model` (in place) to the tensor shapes in `state`, so
    that ``model.load_state_dict(state)`` fits: how a structured-pruned model (whole channels removed) is rebuilt from its architecture.
    Layers already of the right shape are left alone. Returns `model`."""
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if not isinstance(module, _RESIZABLE) or key not in state:
            continue
        shape = tuple(state[key].shape)
        if tuple(module.weight.shape) == shape:
            continue
        if isinstance(module, nn.Conv2d):
            module.out_channels, module.in_channels = shape[0], shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = shape
        else:
            module.num_features = shape[0]
        for tensor in ("weight", "bias"):
            old = getattr(module, tensor, None)
            if isinstance(old, nn.Parameter):
                target = state[f"{name}.{tensor}" if name else tensor].shape
                setattr(module, tensor, nn.Parameter(torch.empty(target, dtype=old.dtype, device=old.device),
                                                     requires_grad=old.requires_grad))
        for buf in ("running_mean", "running_var"):
            old = getattr(module, buf, None)
            if old is not None:
                setattr(module, buf, torch.empty(shape[0], dtype=old.dtype, device=old.device))
    return model


def is_structured_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> bool:
    """True if some tensor of `state` has another shape than the same tensor of `model` (a pruned architecture)."""
    own = model.state_dict()
    return any(k in own and tuple(own[k].shape) != tuple(v.shape) for k, v in state.items())
