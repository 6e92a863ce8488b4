"""Real size and speed of pruned LeNet-3 (MNIST) at 4x: dense teacher vs weight pruning vs structured pruning.

The models: the shipped MNIST teacher (else a seeded random LeNet-3: sizes and timings do not depend on the
weights' values); "weight 4x": one-shot per-layer magnitude pruning of every conv and linear weight (masks
removed: the dense-shaped model with 3/4 zeros); "structured 4x": one-shot channel pruning by filter norm
(`pwoa_lab.pruning.structured`, rate 4 = at most a quarter of the teacher's parameters, a plain smaller LeNet-3).
Training does not change any of these figures, so no training is done here.

For each: parameters, non-zero parameters, the dense file (torch.save of the state dict), the compact sparse
file (pruning.save_sparse) and the file to ship (the smaller), and CPU latency of one forward pass at batch 1
and batch 128 (median of interleaved repeats after a warm-up, torch.inference_mode, `--threads` threads).

Figures: structured params / teacher params (target <= 0.25); teacher / structured latency at batch 128
(target >= 2); teacher / weight latency at batch 128 (no target: weight pruning is not faster).
Run alone, it writes its section of bench/RESULTS.md (between bench_footprint markers; --no-write: don't).

    .venv/bin/python bench/bench_footprint.py [--quick] [--threads N] [--repeats N]
"""
from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

SHAPE = (1, 28, 28)
START, END = "<!-- bench_footprint:start -->", "<!-- bench_footprint:end -->"


def models(seed: int):
    from pwoa_lab import pruning
    from pwoa_lab.pruning import structured
    teacher, where = _common.lenet3_teacher("mnist", seed)
    weight = copy.deepcopy(teacher)
    pruning.prune_by_magnitude(weight, 4)
    pruning.remove_masks(weight)
    small = copy.deepcopy(teacher)
    fraction = structured.fraction_for_rate(small, SHAPE, 4)
    structured.structured_prune(small, SHAPE, fraction)
    return {"teacher (dense)": teacher, "weight 4x": weight, "structured 4x": small}, where, fraction


def body(args) -> dict:
    import torch
    from pwoa_lab.pruning.footprint import footprint_table
    nets, where, fraction = models(args.seed)
    threads = args.threads or torch.get_num_threads()
    repeats = args.repeats or (5 if args.quick else 31)
    load_before = _common.loadavg()
    table = footprint_table(nets, SHAPE, reference=nets["teacher (dense)"], batches=(1, 128), repeats=repeats,
                            warmup=2 if args.quick else 5, threads=threads)
    load_after = _common.loadavg()
    t = table.set_index("model")
    teacher, weight, small = (t.loc[k] for k in nets)
    shapes = {name: [tuple(m.weight.shape) for m in (n.conv1, n.conv2, n.fc1, n.fc2)] for name, n in nets.items()}
    figures = [
        _common.figure("structured 4x params / teacher params", small.params / teacher.params, "ratio", "<= 0.25"),
        _common.figure("teacher / structured 4x latency, batch 128", teacher.latency_ms_128 / small.latency_ms_128,
                       "x", ">= 2"),
        _common.figure("teacher / structured 4x latency, batch 1", teacher.latency_ms_1 / small.latency_ms_1, "x"),
        _common.figure("teacher / weight 4x latency, batch 128", teacher.latency_ms_128 / weight.latency_ms_128, "x"),
        _common.figure("weight 4x sparse file / teacher dense file", weight.sparse_bytes / teacher.dense_bytes,
                       "ratio"),
        _common.figure("structured 4x file / teacher dense file", small.ship_bytes / teacher.dense_bytes, "ratio"),
    ]
    md = markdown_table(table)
    notes = [f"models: {where}; weight 4x = one-shot per-layer magnitude masks on every conv/linear weight; "
             f"structured 4x = channel fraction {fraction:.3f} removed by filter norm (kept channels conv1/conv2/fc1: "
             f"{nets['structured 4x'].conv1.out_channels}/{nets['structured 4x'].conv2.out_channels}/"
             f"{nets['structured 4x'].fc1.out_features})",
             f"latency: median of {repeats} interleaved repeats, torch threads {threads}, load average before / "
             f"after timing: {load_before} / {load_after}",
             "table (bytes; ms):\n" + md]
    return {"figures": figures, "notes": notes,
            "details": {"table": table.to_dict("records"), "shapes": {k: [list(s) for s in v] for k, v in shapes.items()},
                        "threads": threads, "repeats": repeats, "load_before": load_before, "load_after": load_after}}


def markdown_table(table) -> str:
    head = "| model | params | non-zero | dense file | sparse file | file to ship | latency b1 | latency b128 |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.model} | {r.params:,} | {r.nonzero:,} | {r.dense_bytes / 1e6:.2f} MB | "
                     f"{r.sparse_bytes / 1e6:.2f} MB | {r.ship_bytes / 1e6:.2f} MB ({r.ship_format}) | "
                     f"{r.latency_ms_1:.2f} ms | {r.latency_ms_128:.1f} ms |")
    return "\n".join(lines)


def write_section(result: dict, path: Path) -> None:
    """Replace (or append) the bench_footprint section of RESULTS.md."""
    d = result["details"]
    lines = [START, "## Footprint: LeNet-3 (MNIST) at 4x, dense vs weight vs structured", "",
             f"Written by `{result['command']}`; machine: {result['machine']['cores']} cores, "
             f"{result['machine']['cpu_model']}, torch {result['machine']['torch']}; torch threads {d['threads']}, "
             f"median of {d['repeats']} interleaved repeats; load average (1/5/15 min) before / after timing: "
             f"{d['load_before']} / {d['load_after']}.", "", markdown_table(_frame(d["table"])), ""]
    for f in result["figures"]:
        lines.append(f"- {f['name']}: {_common.fmt_value(f)} (target {f['target'] or '-'}: {_common.verdict(f)})")
    lines += ["", result["notes"][0], END]
    text = path.read_text() if path.exists() else ""
    section = "\n".join(lines)
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def _frame(records):
    import pandas as pd
    return pd.DataFrame(records)


def main(argv=None) -> dict:
    p = _common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads for the timing (default: torch's)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per model and batch (default 31)")
    p.add_argument("--no-write", action="store_true", help="do not write the section of bench/RESULTS.md")
    args, _ = p.parse_known_args(argv)
    result = _common.run_script("bench_footprint", body, p, argv)
    if not args.no_write and not args.json and not args.quick:
        write_section(result, _common.BENCH_DIR / "RESULTS.md")
        print(f"wrote its section of {_common.BENCH_DIR / 'RESULTS.md'}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PWOA_DOWNLOAD", "0")
    main()
