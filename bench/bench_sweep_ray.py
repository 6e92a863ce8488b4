"""Overhead of the Ray backend of `pwoa_lab.experiments.sweep` against the local process pool, on this machine.

A smoke sweep of 8 runs (naive and PwoA x 2x and 4x x 2 seeds, digits), each backend from an empty cache:
local with 2 worker processes; Ray with a local cluster that the sweep starts and stops itself (its start is
part of the time, as a user of `--backend ray` on one machine would see it), and Ray on a cluster already
running. Figures: the wall-time ratios Ray / local (target <= 1.3 with the start) and each backend's time to its
first finished run. Needs the cluster extra
(`pip install -e '.[cluster]'`).

    .venv/bin/python bench/bench_sweep_ray.py [--repeats N]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

GRID = {"method": ["naive", "pwoa"], "rate": [2, 4]}
SEEDS = (0, 1)


def timed_sweep(backend: str) -> dict[str, float]:
    from pwoa_lab.experiments.sweep import sweep
    first: list[float] = []
    with tempfile.TemporaryDirectory(prefix="pwoa-bench-sweep-") as cache:
        start = time.perf_counter()
        result = sweep(GRID, seeds=SEEDS, dataset="digits", preset="smoke", cache_dir=cache, backend=backend,
                       workers=2, progress=False, errors="raise",
                       on_run=lambda point: first.append(time.perf_counter() - start) if not first else None)
        wall = time.perf_counter() - start
    if result.submitted != len(SEEDS) * 4:
        raise RuntimeError(f"expected {len(SEEDS) * 4} computed runs, got {result.submitted}")
    return {"wall": wall, "first": first[0], "pgd": float(result.runs.pgd.mean())}


def timed_on_running_cluster() -> dict[str, float]:
    """The Ray backend on a cluster that is already up (started outside the timing): the per-task overhead alone."""
    import ray
    from pwoa_lab.experiments.jobs import start_local_ray_defaults
    start_local_ray_defaults()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return timed_sweep("ray")
    finally:
        ray.shutdown()


def body(args) -> dict:
    import ray  # noqa: F401  (fail early and clearly when the extra is missing)
    repeats = args.repeats or (1 if args.quick else 2)
    runs = {"local": [], "ray": [], "ray_running": []}
    for _ in range(repeats):  # interleaved, so that a change of load hits all three
        runs["local"].append(timed_sweep("local"))
        runs["ray"].append(timed_sweep("ray"))
        runs["ray_running"].append(timed_on_running_cluster())
    med = {b: {k: statistics.median(r[k] for r in rs) for k in ("wall", "first")} for b, rs in runs.items()}
    same = len({round(r["pgd"], 6) for rs in runs.values() for r in rs}) == 1
    figures = [
        _common.figure("ray / local wall time, 8 smoke runs (cluster start included)",
                       med["ray"]["wall"] / med["local"]["wall"], "ratio", "<= 1.3"),
        _common.figure("local: wall time", med["local"]["wall"], "s"),
        _common.figure("ray / local wall time on a cluster already running", med["ray_running"]["wall"]
                       / med["local"]["wall"], "ratio"),
        _common.figure("ray: wall time", med["ray"]["wall"], "s"),
        _common.figure("local: time to the first result", med["local"]["first"], "s"),
        _common.figure("ray: time to the first result", med["ray"]["first"], "s"),
        _common.figure("same mean PGD accuracy on both backends", same, "bool", "== True"),
    ]
    return {"figures": figures, "details": {"runs": runs, "repeats": repeats},
            "notes": [f"median of {repeats} interleaved repeat(s); each from an empty cache; the local backend uses 2 "
                      "worker processes, Ray one CPU per task on a local cluster it starts and stops"]}


def main(argv=None) -> dict:
    parser = _common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    return _common.run_script("bench_sweep_ray", body, parser, argv)


if __name__ == "__main__":
    main()
