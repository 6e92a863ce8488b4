"""An on-disk cache of expensive results, keyed by their full configuration.

An entry is a folder `<cache dir>/<kind>/<key>/` holding `result.json` (the row, the history, the full
configuration, seed, versions, device, wall time) and optionally `model.pt` (sparse pruned weights).
The key is a hash of the configuration, the kit's version and a fingerprint of the kit's source code
(`code_fingerprint`: every `.py` file of the package), so neither a changed parameter nor an edited module
(say `hsic.py`) ever returns a stale result: after an edit, runs are computed again. Entries are written atomically: `result.json` is renamed into place last, so an interrupted run
leaves no entry that a later run would trust.

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
from typing import Any

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
        return folder / "result.json"

    def clear(self, key: str) -> None:
        shutil.rmtree(self.folder(key), ignore_errors=True)


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
