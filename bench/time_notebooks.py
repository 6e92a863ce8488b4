"""Wall time of each course notebook in full mode (PWOA_SMOKE unset, the `quick` preset), in course order.

Every notebook runs headless in a fresh "python3" kernel with MPLBACKEND=Agg; all of them share one result cache
(PWOA_CACHE_DIR), fresh and empty at the start unless --cache-dir is given, so the times are those of a student
who runs the course in order from an empty cache (02 trains the Figure 1 runs that 03 and 05 read back). The
executed copies are written to --out-dir. Not part of `make bench` (about half an hour on a 2-core CPU).

    .venv/bin/python bench/time_notebooks.py [--only 02,04] [--cache-dir DIR] [--out-dir DIR] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nbformat

from pwoa_lab.course import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"


def time_notebook(path: Path, out_dir: Path, timeout: int = 3600) -> dict:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = None
    try:
        execute_notebook(nb, NB_DIR, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - reported, and the executed copy is kept for a look
        error = f"{type(err).__name__}: {str(err)[-500:]}"
    wall = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    return {"notebook": path.stem, "wall_s": round(wall, 1), "error": error}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,04 (default: all)")
    p.add_argument("--cache-dir", default=None, help="result cache (default: a fresh temporary folder)")
    p.add_argument("--out-dir", default=None, help="where the executed notebooks go (default: a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="PWOA_SMOKE=1 (a check of this script)")
    args = p.parse_args(argv)
    paths = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        paths = [q for q in paths if q.name[:2] in wanted]
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="pwoa-nb-cache-"))
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="pwoa-nb-out-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(PWOA_CACHE_DIR=str(cache), MPLBACKEND="Agg")
    if args.smoke:
        os.environ["PWOA_SMOKE"] = "1"
    else:
        os.environ.pop("PWOA_SMOKE", None)
    rows = []
    for path in paths:
        row = time_notebook(path, out_dir)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"total {sum(r['wall_s'] for r in rows) / 60:.1f} min; cache {cache}; executed copies in {out_dir}")
    return rows


if __name__ == "__main__":
    main()
