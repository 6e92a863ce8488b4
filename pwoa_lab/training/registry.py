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
cross-entropy PGD of a mixed-in adversarial batch (e.g. TRADES' KL attack). The built-in methods register themselves
in `pwoa_lab.training.methods` (one module each), which `pwoa_lab.training` imports: whoever imports this module
finds the table complete.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from pwoa_lab.utils import Registry, code_digest

ROLES = ("", "control", "baseline", "distillation", "proposed")
TEACHER = "teacher"  # the method column of the dense teacher's rows (not a registered method)
CAPACITY = "capacity"  # the method column of the capacity control: a dense network of the pruned size, trained
#                        adversarially with the teacher's recipe (pwoa_lab.experiments.capacity)


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
    cost: int = 3                              # 1: no training, 2: plain fine-tuning, 3: a teacher forward, HSIC
    #                                            or PGD batches (runs are scheduled costliest first)
    role: str = ""                             # its part in the paper's claim: "control" (pruning, no training),
    #                                            "baseline" (naive pruning), "distillation" (the proposed method
    #                                            without its regularizer) or "proposed" (PwoA); "" for the others

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"a method name is lower-case letters, digits and _; got {self.name!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(repr(r) for r in ROLES)}; got {self.role!r}")
        if not 0.0 <= self.mix_ratio <= 1.0:
            raise ValueError(f"mix_ratio must lie in [0, 1]; got {self.mix_ratio}")

    def style(self) -> dict:
        """matplotlib keyword arguments: color, marker, label."""
        return {"color": self.color, "marker": self.marker, "label": self.label or self.name}


_REGISTRY: Registry = Registry("method")  # name -> MethodSpec, and which module registered each


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add a method; a name already registered is an error unless `replace=True`."""
    return _REGISTRY.add(spec.name, spec, replace)


def unregister(name: str) -> None:
    """Remove a method (e.g. one a test or notebook added)."""
    _REGISTRY.remove(name)


def method_spec(name: str) -> MethodSpec:
    """The spec of `name`, or a ValueError that lists the registered methods."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(method_names())}")
    return _REGISTRY[name]


def method_names(config: type | None = None) -> tuple[str, ...]:
    """Registered method names in display order (only those of one config class when `config` is given)."""
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))
    return tuple(s.name for s in specs if config is None or s.config is config)


def method_with_role(role: str) -> str:
    """The name of the registered method that plays `role` in the paper's claim (see `MethodSpec.role`); a
    ValueError when none or several do."""
    names = [s.name for s in _REGISTRY.values() if role and s.role == role]
    if len(names) != 1:
        raise ValueError(f"{len(names)} registered methods have the role {role!r} ({', '.join(names) or 'none'}); "
                         "exactly one must (MethodSpec.role)")
    return names[0]


def method_order() -> tuple[str, ...]:
    """The order of rows in tables: the teacher first, then every method, then the capacity control."""
    return (TEACHER,) + method_names() + (CAPACITY,)


def method_help() -> str:
    """One line per method for the CLI's help."""
    return "; ".join(f"{s.name}: {s.help}" for s in (method_spec(n) for n in method_names()) if s.help)


def method_code(name: str) -> str | None:
    """A fingerprint of a method defined outside the kit: its spec's fields and the source of its loss, its
    adversarial hook and its config class. None for the kit's own methods, which the run store keys by the
    package's source. A method registered again with an edited loss gets another fingerprint, so its runs are
    computed again rather than served from the cache."""
    spec = method_spec(name)
    if defining_module(name) is None:
        return None
    return code_digest({f.name: getattr(spec, f.name) for f in fields(spec)})


def defining_module(name: str) -> str | None:
    """The module that registered a method from outside the kit ("__main__" for a notebook or script), None for
    the kit's own methods."""
    method_spec(name)
    return _REGISTRY.user_module(name)
