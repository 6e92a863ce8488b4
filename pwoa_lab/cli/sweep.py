"""`pwoa-lab sweep`: any run-config fields x seeds, each run cached (`experiments.sweep.sweep`): CSV + a plot."""
from __future__ import annotations

import argparse
import sys

from pwoa_lab.cli.common import (add_command, add_common, add_figure_options, add_result_folder, add_workers,
                                 check_out_folder, csv_file, png_file, print_smoke_note, printable, resolve_workers,
                                 seeds, teacher_of, write_results)

EXAMPLES = ["pwoa-lab sweep --dataset digits --preset quick --grid method=naive,pwoa --grid rate=2,4,8 "
            "--grid lambda_x=2e-4,2e-2 --seeds 0,1,2 --out results/lambda"]


def add_parser(sub) -> None:
    p = add_command(sub, "sweep", "any run-config fields x seeds, each run cached; a CSV and a plot", EXAMPLES,
                    about="Run the product of --grid values once per seed, every run cached (a failed run does not "
                          "stop the others; run the same command again to retry only those): a CSV of the runs, "
                          "a summary over seeds and a plot of one metric.")
    add_figure_options(p)
    p.add_argument("--grid", action="append", required=True, metavar="FIELD=V1,V2",
                   help="a run-config field and its values (repeat for more fields; the runs are their product), "
                        "e.g. method=naive,pwoa, rate=2,4,8, lambda_x=2e-4,2e-2, scope=all,hidden")
    p.add_argument("--seeds", default=None, help="every grid point once per seed, e.g. 0,1,2 (default: --seed)")
    p.add_argument("--metric", default="pgd", help="plotted metric: natural, fgsm, pgd, aa (default pgd)")
    p.add_argument("--x", default=None, help="grid field on the x axis (default: the first varied one)")
    p.add_argument("--hue", default=None, help="grid field that colours the lines (default: the next varied one)")
    add_workers(p)
    add_result_folder(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import mark_smoke, plot_sweep
    from pwoa_lab.experiments.sweep import PLOT_METRICS, parse_grid, sweep
    from pwoa_lab.utils import check_choice
    out = check_out_folder(args.out)  # the output and the plot's options before any run
    check_choice(args.metric, PLOT_METRICS, "--metric")
    grid = parse_grid(args.grid)
    x = args.x or next((k for k in grid if len(grid[k]) > 1 and k != "method"), next(iter(grid)))
    hue = args.hue if args.hue is not None else next((k for k in grid if k != x and len(grid[k]) > 1), None)
    for name in (x, hue):
        if name is not None and name not in grid and name not in ("method", "rate", "seed"):
            raise ValueError(f"--x / --hue name a grid field; this grid has: {', '.join(grid)}")
    run_seeds = seeds(args)
    result = sweep(grid, seeds=run_seeds, dataset=args.dataset, preset=args.preset, teacher=teacher_of(args),
                   root=args.root, device=args.device, use_cache=not args.no_cache, backend=args.backend,
                   address=args.address, workers=resolve_workers(args.workers, args.device))
    stem = f"sweep_{args.dataset}_{args.preset}"
    names, writers = [f"{stem}.csv", f"{stem}_summary.csv"], [csv_file(result.runs), csv_file(result.summary)]
    if len(result.runs):
        fig = plot_sweep(result.runs, x=x, metric=args.metric, hue=hue,
                         title=f"sweep: {args.dataset}, preset {args.preset}, {len(run_seeds)} seed(s)")
        mark_smoke(fig, args.preset)
        names, writers = names + [f"{stem}_{args.metric}.png"], writers + [png_file(fig)]
    csv, summary_csv, *png = write_results(out, names, writers)
    png = png[0] if png else None
    shown = [c for c in result.summary.columns if not c.endswith("_std") and c not in ("natural_last", "pgd_last")]
    metrics = [c for c in shown if c in ("natural", "fgsm", "pgd", "aa", "sparsity")]
    print_smoke_note(args.preset)
    print(printable(result.summary[shown].round({m: 2 for m in metrics})).to_string(index=False))  # values as given
    print(f"\n{len(result.runs)} runs ({result.submitted} computed, the rest from the cache); wrote {csv}, "
          f"{summary_csv}" + (f" and {png}" if len(result.runs) else ""))
    if len(result.failed):
        print(f"\n{len(result.failed)} run(s) failed (rerun the same command to retry only these):", file=sys.stderr)
        for row in result.failed.drop(columns="traceback").to_dict("records"):
            error = row.pop("error")
            print(f"- {row}: {error}", file=sys.stderr)
        return 1
    return 0
