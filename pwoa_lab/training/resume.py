"""Resume after an interrupt: the training state the loop writes after every epoch, and how it is read back.

With `state_path`, after every completed epoch the whole training state (student, optimizer, scheduler, method
state, random generators, history) is written there atomically, as tensors and plain containers only; it is read
back with `torch.load(weights_only=True)`, so a file someone else put there cannot run code. A state of another run
(its key differs), a damaged file or one that needs arbitrary unpickling is ignored with a warning, and the run
starts fresh.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from pwoa_lab.utils import atomic_write, load_error_words

STATE_FORMAT = "pwoa-lab-train-state"


def save_state(path: str | Path, key: str, state: dict) -> None:
    """Write a training state atomically (tensors and plain containers only)."""
    with atomic_write(path, overwrite=True) as tmp:
        torch.save({"format": STATE_FORMAT, "key": key, **state}, tmp)


def load_state(path: str | Path, key: str) -> dict | None:
    """The saved training state for `key`, or None: missing, of another run, damaged, or not loadable with
    weights_only=True (a file that would need arbitrary unpickling is refused; a warning says so)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, OSError, RuntimeError, EOFError, ValueError, KeyError) as err:
        # KeyError: a file that is no torch file at all
        # the kit's words (torch's own message would advise weights_only=False, which the kit never does)
        warnings.warn(f"ignoring the resume state {path} ({load_error_words(path, err)}); starting the run afresh",
                      stacklevel=3)
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("key") != key:
        return None
    return state


def rng_states(gens: dict[str, torch.Generator], device: torch.device) -> dict[str, torch.Tensor]:
    """The states of the run's generators, torch's global RNG and (on a GPU) the device's generator."""
    # on a GPU the adversarial batches' random starts come from the device's generator: a resumed run must
    # continue that stream too, or it drifts from the uninterrupted one
    cuda = {"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {**{name: g.get_state() for name, g in gens.items()}, "torch": torch.random.get_rng_state(), **cuda}


def set_rng_states(gens: dict[str, torch.Generator], states: dict[str, torch.Tensor], device: torch.device) -> None:
    """Put back what `rng_states` saved."""
    for name, g in gens.items():
        g.set_state(states[name])
    torch.random.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def run_state(run, done: int, opt, sched) -> dict:
    """Everything a resumed run needs after `done` completed epochs (`run`: the loop's per-run record)."""
    return {"done": done, "history": run.history, "train_seconds": run.train_seconds, "step": run.step,
            "student": run.student.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None, "method": run.method.state_dict(),
            "rng": rng_states(run.gens, run.device), "best": list(run.best) if run.best is not None else None,
            "best_state": run.best_state}


def restore(run, saved: dict, opt, sched) -> None:
    """Put a saved state (`run_state`) back into `run`, its optimizer and scheduler."""
    run.history[:] = saved["history"]
    run.train_seconds, run.step = saved["train_seconds"], saved["step"]
    run.method.load_state_dict(saved["method"])
    run.student.load_state_dict(saved["student"])
    opt.load_state_dict(saved["optimizer"])
    if sched is not None and saved["scheduler"] is not None:
        sched.load_state_dict(saved["scheduler"])
    set_rng_states(run.gens, saved["rng"], run.device)
    run.best = tuple(saved["best"]) if saved["best"] is not None else None
    run.best_state = saved["best_state"]


def save_or_warn(path: Path, key: str, state: dict) -> Path | None:
    """`save_state`, or a warning (and None: no more resume points) where the file cannot be written."""
    try:
        save_state(path, key, state)
        return path
    except OSError as err:  # a read-only or full folder must not stop the run
        warnings.warn(f"cannot save the training state to {path} ({err}); the run goes on without resume points",
                      stacklevel=3)
        return None
