"""Small shared helpers: seeding, device choice, thread count, argument checks, atomic file writes.

Everything that must behave the same across the kit lives here once: `set_seed` is the one place seeds
are set, `get_device` picks cuda, then mps, then cpu, `torch_threads` fixes the intra-op thread count of a run,
and the `check_*` functions give the error messages users see for bad input. Files: `atomic_write` (no
half-written file), `reserve_paths` (one free suffix for a set of output files, taken atomically),
`check_writable_folder` (an output folder checked before any work) and `load_error_words` (why a torch file
cannot be read, in the kit's words). `Registry` is the one table of named entries (datasets, methods) that knows
which module registered each, and `code_digest` the one fingerprint of a user's code (what the run store keys a
user's dataset or method by).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import inspect
import json
import math
import os
import pickle
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch


def use_deterministic_kernels() -> None:
    """On a CUDA machine, ask torch for deterministic kernels (done once, when the kit is imported).

    The kit's numbers are cached by configuration, and a sweep's worker processes must agree with a rerun in one
    process: on a GPU that needs deterministic cuDNN convolutions and a fixed cuBLAS workspace (cuBLAS reads
    CUBLAS_WORKSPACE_CONFIG when its first handle is made, so it is set here, before any CUDA work; a value the
    user set stays). warn_only: an op without a deterministic kernel warns instead of failing. Undo with
    `torch.use_deterministic_algorithms(False)` for speed when bit-identical reruns do not matter.
    """
    if not torch.cuda.is_available():
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


use_deterministic_kernels()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` inside the block; the caller's count is restored after.

    A CPU's float reductions are split between the threads, so their order (and the last bits of every sum)
    depends on the count: a run computed inside this block gives the same weights whatever the caller's count."""
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the one asked for, else $PWOA_DEVICE, else cuda, then mps, then cpu."""
    source = "the device asked for"
    if device is None or str(device) == "auto":
        device, source = os.environ.get("PWOA_DEVICE") or None, "PWOA_DEVICE"  # e.g. cpu keeps a busy GPU free
    if device is not None and str(device) != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"{source} is {str(device)!r}, which is not a device: use cpu, cuda, cuda:N or mps") \
                from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{source} is {str(device)!r}, but torch sees no CUDA device here: use cpu (or mps on "
                             "a Mac)")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------------- checks

def _as_float(value: Any, name: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number ({hint}); got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number ({hint}); got {value!r}")
    return value


def check_eps(eps: Any) -> float:
    """An L-inf radius on [0, 1] images: a finite number in [0, 1] (MNIST 0.3, CIFAR 8/255)."""
    eps = _as_float(eps, "eps", "an L-inf radius in [0, 1] on [0, 1] images, e.g. 0.3 for MNIST, 8/255 for CIFAR")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1] (images are in [0, 1]; e.g. 0.3 for MNIST, 8/255 for CIFAR); got {eps}")
    return eps


def check_rate(rate: Any) -> float:
    """A pruning rate R > 1 (keep 1/R of the weights): 2, 4, 8, 16, 32, ..."""
    rate = _as_float(rate, "rate", "a pruning rate > 1, e.g. 2, 4, 8, 16")
    if rate <= 1.0:
        raise ValueError(f"rate must be a number > 1 (keep 1/rate of the weights), e.g. 2, 4, 8, 16; got {rate}")
    return rate


def check_budget_factor(value: Any, name: str) -> float:
    """A fine-tuning budget factor (lr_factor, epoch_factor): a finite number > 0, a multiple of the preset's."""
    value = _as_float(value, name, "a multiple of the preset's value, e.g. 0.1, 1/3, 1, 3")
    if value <= 0:
        raise ValueError(f"{name} must be a number > 0 (a multiple of the preset's value, e.g. 0.1, 1/3, 1, 3); "
                         f"got {value:g}")
    return value


def check_mix_ratio(r: Any) -> float:
    """A mix ratio in [0, 1]: the probability that a batch is replaced by PGD examples."""
    r = _as_float(r, "mix_ratio", "a probability in [0, 1]; 0 = pure PwoA, 1 = every batch adversarial")
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"mix_ratio must lie in [0, 1] (0 = pure PwoA, 1 = every batch adversarial); got {r}")
    return r


def check_choice(value: str, choices: Any, what: str) -> str:
    """`value` if it is one of `choices`, else a ValueError that lists the valid ones."""
    valid = sorted(choices)
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


# ----------------------------------------------------------------------------------------------- files

@contextlib.contextmanager
def atomic_write(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only when the block succeeds.

    A crash or Ctrl-C inside the block leaves no half-written `path`. An existing `path` is kept
    (FileExistsError) unless `overwrite=True`.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass overwrite=True / --overwrite, "
                              "or choose another path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        try:
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        except PermissionError:  # a file system without Unix modes (a mounted share, vfat): the file is still good
            pass
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def reserve_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The first free suffix for a whole set of output files: `paths` as given, else each `stem-2.ext`, then
    `stem-3.ext`, ... with the same number for every file of the set (results are never overwritten).

    Each file is reserved by creating it empty and exclusively (O_EXCL), so two processes that write into the same
    folder at once never pick the same name, nor a mixed set; write the contents with
    `atomic_write(path, overwrite=True)`. A set of which any file exists is skipped whole."""
    paths = [Path(p) for p in paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidates = [p if n == 1 else p.with_name(f"{p.stem}-{n}{p.suffix}") for p in paths]
        made: list[Path] = []
        try:
            for c in candidates:
                os.close(os.open(c, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                made.append(c)
            return candidates
        except FileExistsError:
            for c in made:  # another process holds part of this set (or an old file does): try the next number
                c.unlink(missing_ok=True)
        n += 1


def write_reserved(paths: Sequence[Path], writers: Sequence[Callable[[Path], None]]) -> list[Path]:
    """Write a set of output files: `reserve_paths(paths)`, then `writers[i](tmp)` writes file i to a temporary
    path that is renamed onto the reserved name (`atomic_write`). On an error the still-empty reservations are
    removed and the error is raised; returns the paths written."""
    reserved = reserve_paths(paths)
    try:
        for path, write in zip(reserved, writers):
            with atomic_write(path, overwrite=True) as tmp:
                write(tmp)
    except BaseException:
        for path in reserved:
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()
        raise
    return reserved


def check_writable_folder(folder: str | Path, option: str = "--out", given: str | Path | None = None) -> Path:
    """`folder` if files can be written there (a missing folder: if it can be created in its nearest existing
    parent), else an error that says what to do; `given`: the option's value as the user wrote it (default:
    `folder`). Probes with a real file, since os.access does not see a read-only file system or every permission
    (and a root user passes it everywhere). Nothing is left behind."""
    folder = Path(folder)
    given = folder if given is None else given
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{option} {given}: {existing} is a file, not a folder; choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".pwoa-lab-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        why = "the file system is read-only" if err.errno == errno.EROFS else \
            "the disk is full" if err.errno == errno.ENOSPC else err.strerror or str(err)
        raise PermissionError(f"{option} {given}: cannot write in {existing} ({why}); choose an {option} in a "
                              "writable folder (nothing was computed)") from None
    return folder


def load_error_words(path: str | Path, err: BaseException) -> str:
    """Why torch.load(weights_only=True) could not read `path`, in the kit's words: never torch's advice to retry
    with weights_only=False (the kit reads weights-only data, always)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as read_err:
        return f"cannot open it: {read_err.strerror or read_err}"
    if not head:
        return "the file is empty: 0 bytes"
    if isinstance(err, pickle.UnpicklingError):
        return ("it holds Python objects that only arbitrary unpickling could load, which the kit never does, "
                "since that can run code")
    if isinstance(err, EOFError):
        return "the file ends early"
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # neither torch's zip format nor a (legacy) pickle
        return "it is not a torch.save file"
    text = str(err).strip()
    if "zip archive" in text or "central directory" in text:
        return "it is not a complete torch.save file: a truncated or damaged archive"
    first = text.splitlines()[0] if text else ""
    if "weights_only" in first.lower() or "weights only" in first.lower():
        first = "not readable as tensors and plain containers"
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (used as a cache key)."""
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions that a saved result records."""
    import torchvision

    from pwoa_lab import __version__
    # plain str: torch.__version__ is a TorchVersion, which torch.load(weights_only=True) refuses to unpickle
    return {"pwoa_lab": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": str(np.__version__)}


def run_environment(device: str | torch.device) -> dict[str, Any]:
    """Where a result was computed: device, the CPU's instruction set as torch reports it (e.g. AVX512), the torch
    version and torch's intra-op thread count. Another CPU or thread count gives other low-order bits, and after many
    epochs other numbers, within the intervals the kit prints."""
    return {"device": str(device), "cpu": str(torch.backends.cpu.get_cpu_capability()),
            "torch": str(torch.__version__), "threads": int(torch.get_num_threads())}


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's weights (names, shapes and values): identifies a teacher in cache keys."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def forked_rng():
    """A context in which torch's CPU RNG (and the current CUDA device's) may be reseeded or drawn from, and is
    restored on exit: a side computation (validation, evaluation) never shifts the main run's random stream."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    return torch.random.fork_rng(devices=devices)


# ----------------------------------------------------------------------------------------------- registries

class Registry(dict):
    """Named entries (the datasets, the methods) and the module that registered each: the kit's own (a module of
    `pwoa_lab`) or a user's ("__main__" for a notebook or script)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self._module: dict[str, str] = {}

    def add(self, name: str, entry: Any, replace: bool = False, depth: int = 2) -> Any:
        """Register `entry` under `name`; the module that called the public register function `depth` frames up
        is recorded. A name already registered is an error unless `replace=True`."""
        if name in self and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to redefine it")
        self[name] = entry
        self._module[name] = sys._getframe(depth).f_globals.get("__name__", "__main__")
        return entry

    def remove(self, name: str) -> None:
        self.pop(name, None)
        self._module.pop(name, None)

    def user_module(self, name: str) -> str | None:
        """The module that registered `name` from outside the kit, None for the kit's own entries."""
        module = self._module.get(name, "__main__")
        return None if module.split(".")[0] == "pwoa_lab" else module


def code_text(obj: Any) -> str:
    """The source of a function or class (a functools.partial: of its function), its bytecode and constants where
    no source is kept (defined by exec), else its repr: what a fingerprint of a user's code reads."""
    obj = getattr(obj, "func", obj)
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        return repr(obj)
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr((code.co_code, code.co_consts)) if code is not None else repr(obj)


def code_digest(parts: dict[str, Any]) -> str:
    """A short fingerprint (16 hex digits) of named parts, each read with `code_text`: a user's dataset or method
    whose code changed gets another one, so the run store computes its runs again instead of serving stale ones."""
    digest = hashlib.sha256()
    for name, part in parts.items():
        digest.update(f"{name}={code_text(part)}\n".encode())
    return digest.hexdigest()[:16]
