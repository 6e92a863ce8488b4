"""A class pack: the runs of one cache as one file, for an instructor to compute once and students to import.

    pwoa-lab cache export --out class.pack [--dataset digits]     # the instructor, after the figures ran
    pwoa-lab cache import class.pack                              # each student: the notebooks read them at once

A pack is a gzipped tar of stored entries (`<kind>/<key>/result.json` and the pruned weights beside it; never resume
states or locks) and a `manifest.json` that names the kit version and the code fingerprint that made them. The
run store keys every entry by that fingerprint, so a pack from another version of the kit would never be read:
importing it is refused with a message that names both versions. Importing keeps every entry the cache already
has (nothing is overwritten) and writes each new one atomically (its folder is renamed into place complete).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pwoa_lab import __version__
from pwoa_lab.io.cache import cache_root, code_fingerprint
from pwoa_lab.utils import atomic_write

FORMAT = "pwoa-lab-class-pack"
KINDS = ("prune_row", "teacher_row", "capacity_row")  # the stores a figure reads
SKIPPED = ("state.pt",)  # resume states: a finished run needs none


@dataclass(frozen=True)
class PackInfo:
    """What an export wrote or an import read: the pack file, its entries (per kind), those added to the cache and
    those it had already, its size in bytes and the seconds it took."""
    path: Path
    entries: dict[str, int]
    added: int
    kept: int
    size: int
    seconds: float


def _wanted(folder: Path, dataset: str | None) -> bool:
    """An entry of this kit's code (entries of other code are never read by it) and of `dataset` (when given)."""
    try:
        record = json.loads((folder / "result.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    if record.get("code", code_fingerprint()) != code_fingerprint():
        return False
    return dataset is None or (record.get("row") or {}).get("dataset") == dataset


def export_pack(out: str | Path, cache_dir: str | Path | None = None, dataset: str | None = None,
                overwrite: bool = False) -> PackInfo:
    """Write the cache's stored runs of this kit's code (those of `dataset` only, when given) into the pack `out`
    (atomically; an existing file is refused unless `overwrite`)."""
    start = time.perf_counter()
    out, root = Path(out), cache_root(cache_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; refusing to overwrite it (choose another --out, or --overwrite)")
    folders = [f for kind in KINDS if (root / kind).is_dir() for f in sorted((root / kind).iterdir())
               if f.is_dir() and not f.name.startswith(".") and (f / "result.json").is_file() and _wanted(f, dataset)]
    if not folders:
        raise ValueError(f"no stored runs{f' of {dataset!r}' if dataset else ''} in the cache {root}: run the "
                         "figures first (the same preset and options the class will use), then export")
    manifest = {"format": FORMAT, "kit_version": __version__, "code": code_fingerprint(),
                "created": time.strftime("%Y-%m-%d %H:%M:%S"), "dataset": dataset,
                "entries": {kind: sum(f.parent.name == kind for f in folders) for kind in KINDS}}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, overwrite=overwrite) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            for folder in folders:
                for path in sorted(folder.iterdir()):
                    if path.is_file() and path.name not in SKIPPED:
                        tar.add(path, arcname=f"{folder.parent.name}/{folder.name}/{path.name}", recursive=False)
    return PackInfo(out, manifest["entries"], 0, 0, out.stat().st_size, time.perf_counter() - start)


def read_manifest(pack: str | Path) -> dict:
    """The manifest of a pack, or a ValueError that says the file is not one."""
    try:
        with tarfile.open(pack, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member is not None else None
    except (tarfile.TarError, KeyError, OSError, EOFError, json.JSONDecodeError) as err:
        raise ValueError(f"{pack} is not a pwoa-lab class pack ({type(err).__name__}: {err}); make one with "
                         "`pwoa-lab cache export --out FILE`") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{pack} is not a pwoa-lab class pack (no {FORMAT} manifest)")
    return manifest


def import_pack(pack: str | Path, cache_dir: str | Path | None = None) -> PackInfo:
    """Add a pack's runs to the cache: entries the cache has already are kept as they are; a pack made by another
    version of the kit (another code fingerprint) is refused before anything is written."""
    start = time.perf_counter()
    pack, root = Path(pack), cache_root(cache_dir)
    if not pack.is_file():
        raise FileNotFoundError(f"no class pack at {pack}")
    manifest = read_manifest(pack)
    if manifest.get("code") != code_fingerprint() or manifest.get("kit_version") != __version__:
        raise ValueError(
            f"{pack} was made by pwoa-lab {manifest.get('kit_version')} (code {str(manifest.get('code'))[:12]}, "
            f"{manifest.get('created')}); this kit is pwoa-lab {__version__} (code {code_fingerprint()[:12]}). The "
            "runs are keyed by the code that made them, so this kit would never read them: ask for a pack made "
            "with this version of the kit (the same commit), or install the version that made it")
    added = kept = 0
    with tarfile.open(pack, "r:gz") as tar, tempfile.TemporaryDirectory(dir=_writable(root)) as staging:
        groups: dict[tuple[str, str], list[tarfile.TarInfo]] = {}
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.name == "manifest.json":
                continue
            if len(parts) != 3 or parts[0] not in KINDS or not member.isfile() or \
                    any(p in ("", ".", "..") or p.startswith(".") for p in parts):
                raise ValueError(f"{pack} holds {member.name!r}, which no class pack holds: refusing to import it")
            groups.setdefault((parts[0], parts[1]), []).append(member)
        for (kind, key), members in groups.items():
            target = root / kind / key
            if (target / "result.json").is_file():
                kept += 1
                continue
            folder = Path(staging) / kind / key
            folder.mkdir(parents=True)
            for member in members:
                with tar.extractfile(member) as src, open(folder / Path(member.name).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                folder.rename(target)  # the whole entry at once
            else:  # an unfinished entry (a resume state, say): kept; the finished files go in, result.json last
                for path in sorted(folder.iterdir(), key=lambda p: p.name == "result.json"):
                    os.replace(path, target / path.name)
            added += 1
    return PackInfo(pack, dict(manifest.get("entries", {})), added, kept, pack.stat().st_size,
                    time.perf_counter() - start)


def _writable(root: Path) -> Path:
    """The cache root, created if needed (the staging folder lives beside the entries: one file system, so the
    final rename is atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    return root
