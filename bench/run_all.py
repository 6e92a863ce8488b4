"""Run every benchmark (each in its own subprocess), print a summary table, write bench/RESULTS.md.

    .venv/bin/python bench/run_all.py                  # what `make bench` runs (<= 20 min on a 2-core CPU)
    .venv/bin/python bench/run_all.py --quick          # reduced repetitions: a smoke check of the scripts
    .venv/bin/python bench/run_all.py --only bench_pgd_cost,bench_hbar_step --out /tmp/R.md

The benchmarks are not tests: a MISS is reported, not raised. Timings are medians of several repeats after
a warm-up, taken with time.perf_counter at torch's default thread count; they are only as good as the
machine is quiet, so the load average at the start and the end goes into the report.
`bench_demo.py --with-mnist` (the MNIST figure1 / figure3 wall times, 20 + 30 min targets) is not run here.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

# cheapest and most predictable first; the demo (the longest) last, with the rest of the budget as its timeout
BENCHMARKS = ["bench_pgd_cost", "bench_hbar_step", "bench_memory", "bench_teacher_cache", "bench_method_cost",
              "bench_footprint", "bench_sweep_ray", "bench_demo"]


def run_one(name: str, quick: bool, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="pwoa-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(_common.BENCH_DIR / f"{name}.py"), "--json", str(out)] + (["--quick"] if quick else [])
        if name == "bench_demo":   # let it report a timed-out demo (a lower bound) instead of being killed
            cmd += ["--timeout", f"{max(timeout - 20, 10):.0f}"]
        print(f"\n>>> {name} (time left {timeout:.0f} s)", flush=True)
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=_common.REPO, timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        wall = time.perf_counter() - start
        if out.exists():
            result = json.loads(out.read_text())
        else:
            result = {"benchmark": name, "figures": [], "notes": [f"no result: exit status {rc}"],
                      "command": _common.command_string([] if not quick else ["--quick"],
                                                        script=str(_common.BENCH_DIR / f"{name}.py"))}
        result["exit_status"] = rc
        result["subprocess_wall_seconds"] = wall
        return result


def summary_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        figs = r["figures"] or [{"name": "(no figure)", "value": None, "unit": "", "target": None, "passed": None}]
        for f in figs:
            rows.append([r["benchmark"], f["name"], _common.fmt_value(f), f["target"] or "-", _common.verdict(f)])
    return rows


def print_table(rows: list[list[str]]) -> None:
    head = ["benchmark", "figure", "value", "target", "result"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print("\n" + line + "\n" + "-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def write_markdown(path: Path, results: list[dict], machine: dict, load_start: str, load_end: str,
                   started: dt.datetime, total: float, quick: bool, argv: list[str]) -> None:
    md = ["# pwoa_lab benchmarks", "",
          f"Written by `{_common.command_string(argv, script=str(_common.BENCH_DIR / 'run_all.py'))}` "
          f"(`make bench`) on {started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()}; total wall time "
          f"{total / 60:.1f} min." + (" **--quick: reduced repetitions, a smoke check; the figures are not "
                                      "representative.**" if quick else ""), "",
          "## Machine", "",
          f"- cores (os.cpu_count()): {machine['cores']}",
          f"- CPU model: {machine['cpu_model']}",
          f"- torch threads (torch.get_num_threads(), default, not changed): {machine['torch_threads']}",
          f"- torch {machine['torch']}, Python {machine['python']}, CUDA: {machine['cuda'] or 'none'}",
          f"- load average (1/5/15 min, /proc/loadavg) at the start: {load_start}; at the end: {load_end}",
          ""]
    try:
        load1 = float(load_start.split()[0])
    except (ValueError, IndexError):
        load1 = 0.0
    if machine["cores"] and load1 > 0.5 * machine["cores"]:
        md += [f"**The machine was loaded** (load {load1:.1f} on {machine['cores']} cores at the start): "
               "other processes competed for the CPU, so absolute times are pessimistic and ratios noisy. "
               "Each figure is a median of interleaved repeats, which spreads the load over both sides of a "
               "ratio but cannot remove it.", ""]
    md += ["## Figures", "", "| benchmark | figure | value | target | result |", "|---|---|---|---|---|"]
    for row in summary_rows(results):
        md.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    md += ["", "## Commands and notes", ""]
    for r in results:
        md.append(f"### {r['benchmark']}")
        md.append("")
        md.append(f"- command: `{r['command']}`")
        wall = r.get("wall_seconds", r.get("subprocess_wall_seconds"))
        md.append(f"- wall time: {wall:.1f} s; exit status {r.get('exit_status')}; load at its start: "
                  f"{r.get('machine', {}).get('loadavg', 'n/a')}")
        for note in r.get("notes", []):
            if "\n" in note:
                first, rest = note.split("\n", 1)
                md += [f"- {first}", "", "```", rest.rstrip(), "```", ""]
            else:
                md.append(f"- {note}")
        md.append("")
    path.write_text("\n".join(md) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (smoke check)")
    p.add_argument("--only", default=None, help="comma list of benchmarks to run (default: all)")
    p.add_argument("--budget", type=float, default=1200, help="total seconds; later benchmarks are cut off")
    p.add_argument("--out", default=str(_common.BENCH_DIR / "RESULTS.md"))
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    names = BENCHMARKS if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmarks {sorted(unknown)}; valid: {', '.join(BENCHMARKS)}")
    started = dt.datetime.now().astimezone()
    load_start = _common.loadavg()
    machine = _common.machine_info()
    print(f"pwoa_lab benchmarks, {started:%Y-%m-%d %H:%M}; {machine['cores']} cores, {machine['cpu_model']}, "
          f"torch threads {machine['torch_threads']}; load {load_start}")
    start = time.perf_counter()
    results = []
    for name in names:
        left = args.budget - (time.perf_counter() - start)
        if left < 30:
            results.append({"benchmark": name, "figures": [], "exit_status": "skipped",
                            "notes": [f"skipped: the {args.budget:.0f} s budget was spent"],
                            "command": _common.command_string(["--quick"] if args.quick else [],
                                                              script=str(_common.BENCH_DIR / f"{name}.py"))})
            continue
        results.append(run_one(name, args.quick, left))
    total = time.perf_counter() - start
    load_end = _common.loadavg()
    print_table(summary_rows(results))
    print(f"\ntotal {total / 60:.1f} min; load at start {load_start}, at end {load_end}")
    out = Path(args.out)
    write_markdown(out, results, machine, load_start, load_end, started, total, args.quick, argv)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
