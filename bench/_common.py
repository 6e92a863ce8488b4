"""Shared helpers of the benchmark scripts (not a benchmark itself).

Every benchmark script has `main(argv) -> dict` and, run as a script, prints its figures and the exact
command, and with `--json PATH` also writes the dict there (run_all.py collects them that way).

The dict of a benchmark:
    {"benchmark": name, "command": "...", "figures": [figure, ...], "details": {...}, "notes": [...],
     "machine": {...}, "wall_seconds": float}
a figure:
    {"name": str, "value": float | bool | None, "unit": "ratio" | "x" | "s" | "MiB" | "bool",
     "target": "<= 1.10" | ">= 1.3" | "== True" | None, "passed": bool | None}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
ENV_THAT_MATTERS = ("PWOA_DATA_ROOT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # shown in front of commands
BENCH_DIR = REPO / "bench"

# Benchmarks never touch the network: a missing dataset falls back (digits) instead of downloading.
os.environ.setdefault("PWOA_DOWNLOAD", "0")


# ----------------------------------------------------------------------------------------------- machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def machine_info() -> dict[str, Any]:
    import torch
    info = {"cores": os.cpu_count(), "cpu_model": cpu_model(), "torch_threads": torch.get_num_threads(),
            "torch": str(torch.__version__), "python": platform.python_version(), "loadavg": loadavg(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


# ----------------------------------------------------------------------------------------------- timing

def sync(device) -> None:
    import torch
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device="cpu") -> float:
    """Seconds of one call of `fn` (synchronized on CUDA)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                        device="cpu") -> dict[str, dict[str, Any]]:
    """Median seconds of each function, measured interleaved (A B A B ...) after `warmup` calls of each.

    Interleaving spreads the drift of a shared, loaded machine over all contenders instead of
    letting it land on whichever was measured last.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_call(fn, device))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "all_s": v}
            for k, v in times.items()}


# ----------------------------------------------------------------------------------------------- results

def figure(name: str, value, unit: str, target: str | None = None) -> dict[str, Any]:
    """A figure with its target checked: target like '<= 1.10', '>= 1.3', '== True' or None."""
    passed = None
    if target is not None and value is not None:
        op, ref = target.split(maxsplit=1)
        if op == "==":
            passed = str(value) == ref
        else:
            ref_f = float(ref)
            passed = {"<=": value <= ref_f, ">=": value >= ref_f, "<": value < ref_f, ">": value > ref_f}[op]
    return {"name": name, "value": value, "unit": unit, "target": target, "passed": passed}


def command_string(argv: Sequence[str] | None = None, script: str | None = None) -> str:
    """The exact command line (relative to the repository root when possible) that ran this benchmark."""
    exe = sys.executable
    if Path(sys.prefix).resolve() == (REPO / ".venv").resolve():
        exe = ".venv/bin/python"
    script = script or sys.argv[0]
    try:
        script = os.path.relpath(Path(script).resolve(), REPO)
    except ValueError:
        pass
    args = list(sys.argv[1:] if argv is None else argv)
    # --json is plumbing between run_all.py and the script, not part of what is measured
    clean, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--json":
            skip = True
            continue
        if a.startswith("--json="):
            continue
        clean.append(a)
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ENV_THAT_MATTERS if os.environ.get(k)]
    return " ".join(env + [shlex.join([exe, script, *clean])])


def fmt_value(fig: dict[str, Any]) -> str:
    v, unit = fig["value"], fig["unit"]
    if v is None:
        return "n/a"
    if unit == "bool":
        return str(v)
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:.3f}"


def verdict(fig: dict[str, Any]) -> str:
    return {True: "pass", False: "MISS", None: "-"}[fig["passed"]]


def report(result: dict[str, Any]) -> None:
    """Print a benchmark's figures and the command that produced them."""
    print(f"\n== {result['benchmark']} ==")
    for fig in result["figures"]:
        target = fig["target"] or "(no target)"
        print(f"  {fig['name']}: {fmt_value(fig)}   target {target}   {verdict(fig)}")
    for note in result.get("notes", []):
        print(f"  note: {note}")
    print(f"  command: {result['command']}")
    print(f"  wall: {result['wall_seconds']:.1f} s, load at start: {result['machine']['loadavg']}")


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="reduced repetitions (a smoke check of the script)")
    p.add_argument("--json", default=None, help="also write the result dict as JSON to this path")
    p.add_argument("--seed", type=int, default=0)
    return p


def run_script(name: str, body: Callable[[argparse.Namespace], dict[str, Any]], parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse args, run `body`, fill in the common fields, print, and write --json."""
    args = parser.parse_args(argv)
    start = time.perf_counter()
    machine = machine_info()
    result = body(args)
    result = {"benchmark": name, "command": command_string(argv, script=str(BENCH_DIR / f"{name}.py")),
              "machine": machine, "notes": [], "details": {}, **result,
              "wall_seconds": time.perf_counter() - start}
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return result


# ----------------------------------------------------------------------------------------------- data

def mnist_available() -> bool:
    """MNIST's four IDX files are under the kit's data root ($PWOA_DATA_ROOT, else data/)."""
    from pwoa_lab.core.data import check_available
    try:
        check_available("mnist")
    except FileNotFoundError:
        return False
    return True


def lenet3_teacher(dataset: str, seed: int):
    """A LeNet-3 teacher for `dataset`: the shipped one when it exists and is LeNet-3, else a seeded random
    LeNet-3 (timings do not depend on the weights' values). Returns (model, description)."""
    import torch
    from pwoa_lab.io.checkpoint import shipped_teachers, load_checkpoint
    from pwoa_lab.core.models import build_model
    path = shipped_teachers().get(dataset)
    if path is not None and path.is_file():
        try:
            model, meta = load_checkpoint(path, "cpu")
            if meta.get("model") == "lenet3":
                return model.eval(), f"shipped teacher {path.name}"
        except Exception as err:  # a teacher being rewritten by a training run, ...
            print(f"  (shipped teacher {path} unusable: {err}; using a random LeNet-3)")
    torch.manual_seed(seed)
    return build_model("lenet3", dataset).eval(), f"seeded random LeNet-3 (seed {seed})"
