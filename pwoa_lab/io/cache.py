"""An on-disk cache of expensive results, keyed by their full configuration.

An entry is a folder `<cache dir>/<kind>/<key>/` holding `result.json` (the row, the history, the full
configuration, seed, versions, device, wall time) and optionally `model.pt` (sparse pruned weights).
The key is a hash of the configuration, the kit's version and a fingerprint of the kit's source code
(`code_fingerprint`: every `.py` file of the package), so neither a changed parameter nor an edited module
(say `hsic.py`) ever returns a stale result: after an edit, runs are computed again. Entries are written atomically: `result.json` is renamed into place last, so an interrupted run
leaves no entry that a later run would trust.

Processes share a cache safely: `ResultCache.lock(key)` is a per-key file lock (`<kind>/.locks/<key>.lock`,
the `filelock` package), taken by whoever computes that entry; another process that needs the same entry waits for
it and reads it instead of computing it again. The lock is the operating system's (flock), so a process that is
killed releases it: a stale lock file is never a reason to wait. Where the cache cannot be written there is nothing
to share and the lock is always free.

Where: the `cache_dir` argument, else $PWOA_CACHE_DIR, else ~/.cache/pwoa-lab.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from filelock import FileLock, Timeout

from pwoa_lab import __version__
from pwoa_lab.utils import atomic_write, config_key


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PWOA_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "pwoa-lab"


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole pwoa_lab package


def source_fingerprint(package_dir: str | Path) -> str:
    """A hash of every `.py` file under `package_dir` (relative paths and contents, in sorted order)."""
    root = Path(package_dir)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """The fingerprint of the kit's own source as it is on disk (computed once per process)."""
    return source_fingerprint(PACKAGE_DIR)


def entry_key(kind: str, config: dict[str, Any]) -> str:
    """The cache key of a configuration (kit version and code fingerprint included)."""
    return config_key({"kind": kind, "kit_version": __version__, "code": code_fingerprint(), **config})


_STORED: dict[str, int] = {}  # entries this process stored, by kind: what an interrupted command can say it kept


def stored_count(*kinds: str) -> int:
    """How many entries of `kinds` this process has stored so far (e.g. the runs an interrupted command kept)."""
    return sum(_STORED.get(kind, 0) for kind in kinds)


class ResultCache:
    """Get and put JSON results (and side files) under `cache_root(cache_dir)/kind/key/`."""

    def __init__(self, kind: str, cache_dir: str | Path | None = None, enabled: bool = True):
        self.kind, self.enabled = kind, enabled
        self.root = cache_root(cache_dir) / kind

    def folder(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored result of `key`, or None (also for a damaged entry, which is then ignored)."""
        if not self.enabled:
            return None
        path = self.folder(key) / "result.json"
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):  # missing, unreadable or half-written
            return None

    def put(self, key: str, result: dict[str, Any]) -> Path:
        """Store `result` (JSON-able) for `key`; raises a clear error when the cache cannot be written."""
        folder = self.folder(key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_write(folder / "result.json", overwrite=True) as tmp:
                with open(tmp, "w") as f:
                    json.dump(result, f, indent=1, default=str)
        except OSError as err:
            raise cache_error(self.root, err) from err
        _STORED[self.kind] = _STORED.get(self.kind, 0) + 1
        return folder / "result.json"

    def clear(self, key: str) -> None:
        shutil.rmtree(self.folder(key), ignore_errors=True)

    def lock(self, key: str) -> "EntryLock":
        """The inter-process lock of computing `key` (see the module docstring): `with cache.lock(key): ...`
        waits for it; `lock.acquire(blocking=False)` only tries."""
        return EntryLock(self.root / ".locks" / f"{key}.lock")


def compute_once(cache: ResultCache, items: Sequence[Any], key: Callable[[Any], str], read: Callable[[Any], bool],
                 compute: Callable[[list, dict[str, "EntryLock | None"]], None], use_cache: bool = True,
                 on_wait: Callable[[int], None] | None = None) -> None:
    """Compute each of `items` that the store lacks, once across the processes sharing `cache`.

    An item whose lock (`cache.lock(key(item))`) this process gets is read again (another process may have stored it
    since the caller looked) and, still missing, handed to `compute(mine, locks)` with the others of its round; their
    locks are held meanwhile (`locks[key(item)]`; `compute` may release each as soon as its item is stored). Items
    another process holds are waited for afterwards (`on_wait(how many)` first) and read back; one that process
    stopped without storing is computed here in the next round. `read(item)`: read the stored result (the caller
    keeps it) and say whether there was one. `compute` is called at least once, with an empty `mine` where nothing
    is left, so that a caller can run other jobs beside the first round."""
    pending, first = list(items), True
    while pending or first:
        first = False
        mine, busy, locks = [], [], {}
        for item in pending:
            lock = cache.lock(key(item)) if use_cache else None
            if lock is not None and not lock.acquire(blocking=False):
                busy.append(item)  # another process is computing it
                continue
            if read(item):  # stored by another process since the caller's first look
                if lock is not None:
                    lock.release()
                continue
            mine.append(item)
            locks[key(item)] = lock
        try:
            compute(mine, locks)
        finally:
            for lock in locks.values():
                if lock is not None:
                    lock.release()
        pending = []
        if busy and on_wait is not None:
            on_wait(len(busy))
        for item in busy:
            with cache.lock(key(item)):  # released when that process stores the entry, or stops
                found = read(item)
            if not found:  # that process stopped or its computation failed: compute it here
                pending.append(item)


class EntryLock:
    """A file lock that is always free where its folder cannot be written (a read-only cache: nothing to share).

    Not re-entrant across objects: one process takes one key's lock once (two objects on the same file in one
    process would wait for each other)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock: FileLock | None = None
        self.held = False

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock (wait for it, or return False at once when another process holds it and not `blocking`)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = self._lock or FileLock(self.path)
            self._lock.acquire(timeout=-1 if blocking else 0)
        except Timeout:
            return False
        except OSError:  # a read-only or full cache folder: no other process can store this entry either
            self._lock = None
        self.held = True
        return True

    def release(self) -> None:
        if self.held and self._lock is not None:
            self._lock.release()
        self.held = False

    def __enter__(self) -> "EntryLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def cache_error(root: Path, err: OSError) -> OSError:
    """A clear message for a cache folder that is read-only or full."""
    if err.errno == errno.ENOSPC:
        why = "the disk is full"
    elif err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        why = "the folder is read-only"
    else:
        why = str(err)
    return OSError(err.errno, f"cannot write the result cache in {root} ({why}); free space or point "
                              "PWOA_CACHE_DIR (or cache_dir=...) at a writable folder; nothing was lost")
