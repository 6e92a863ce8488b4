"""The method registry: every pruning method of the kit, registered once, read by everything that lists methods.

A `MethodSpec` says what a method is (its run-config class, its loss, whether it reads the dense teacher, its
default mix ratio, the config fields it ignores, the adversarial batch it trains on) and how it is shown (label,
colour, marker, place in tables). The CLI's `--method` choices and help, the presets, the figures, the plots and
the classroom explorer all read this table, so a new method is one `register(...)` call:

    from pwoa_lab.training.registry import MethodSpec, register
    from pwoa_lab.training.methods import PruneConfig

    def l1_loss(student, batch, phase, ctx):                       # (student, batch, phase, ctx) -> (loss, terms)
        ce = F.cross_entropy(student(batch.inputs), batch.y)
        return ce + 1e-5 * sum(p.abs().sum() for p in student.parameters()), {"ce": ce.item()}

    register(MethodSpec("l1", PruneConfig, loss=l1_loss, label="CE + L1", color="tab:olive", marker="*"))

A method of the ADMM pipeline is its loss (`pwoa_lab.training.methods.AdmmPruning` runs it); one that needs other
phases brings its own config class (`HydraConfig`). `adversarial(student, x, y, config) -> x_adv` replaces the
cross-entropy PGD of a mixed-in adversarial batch (e.g. TRADES' KL attack). The built-in methods are registered by
`pwoa_lab.training.methods`; the functions below import it first, so the table is always complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class MethodSpec:
    """One method: what it computes and how tables and plots show it."""
    name: str                                  # what --method, configs and result tables say
    config: type                               # its run-config class (PruneConfig, HydraConfig, ...)
    loss: Callable | None = None               # (student, batch, phase, ctx) -> (loss, terms); None: no training
    #                                            (oneshot) or a config class that makes its own method (HYDRA)
    uses_teacher: bool = False                 # reads the dense teacher's outputs while training
    mix_ratio: float = 0.0                     # default probability of an adversarial batch
    ignores: tuple[str, ...] = ()              # config fields it never reads (reset, so sweeps don't repeat runs)
    adversarial: Callable | None = None        # (student, x, y, config) -> x_adv; None: cross-entropy PGD
    trains: bool = True                        # False: no training at all, one run whatever the seed (a control)
    label: str = ""                            # legend and table label
    color: str = "black"
    marker: str = "o"
    order: int = 100                           # place in tables and legends (the teacher is 0)
    help: str = ""                             # one line for the CLI's help

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"a method name is lower-case letters, digits and _; got {self.name!r}")
        if not 0.0 <= self.mix_ratio <= 1.0:
            raise ValueError(f"mix_ratio must lie in [0, 1]; got {self.mix_ratio}")

    def style(self) -> dict:
        """matplotlib keyword arguments: color, marker, label."""
        return {"color": self.color, "marker": self.marker, "label": self.label or self.name}


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add a method; a name already registered is an error unless `replace=True`."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"method {spec.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method (e.g. one a test or notebook added)."""
    _REGISTRY.pop(name, None)


def _builtins() -> dict[str, MethodSpec]:
    import pwoa_lab.training.methods  # noqa: F401  registers the built-in methods on first import
    return _REGISTRY


def method_spec(name: str) -> MethodSpec:
    """The spec of `name`, or a ValueError that lists the registered methods."""
    specs = _builtins()
    if name not in specs:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(method_names())}")
    return specs[name]


def method_names(config: type | None = None) -> tuple[str, ...]:
    """Registered method names in display order (only those of one config class when `config` is given)."""
    specs = sorted(_builtins().values(), key=lambda s: (s.order, s.name))
    return tuple(s.name for s in specs if config is None or s.config is config)


def method_order() -> tuple[str, ...]:
    """The order of rows in tables: the teacher first, then every method."""
    return ("teacher",) + method_names()


def method_help() -> str:
    """One line per method for the CLI's help."""
    return "; ".join(f"{s.name}: {s.help}" for s in (method_spec(n) for n in method_names()) if s.help)
