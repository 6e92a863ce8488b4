"""`pwoa-lab frontier`: natural vs robust accuracy of each method over its fine-tuning budget
(`experiments.frontier.frontier`): CSV + PNG + a verdict per rate."""
from __future__ import annotations

import argparse

from pwoa_lab import defaults
from pwoa_lab.cli.common import (add_budgets, add_command, add_common, add_control, add_figure_options,
                                 add_result_folder, add_scope, add_workers, check_out_folder, csv_file, interval_table,
                                 numbers, png_file, print_smoke_note, resolve_workers, scope_overrides, seeds,
                                 teacher_of, verdict_line, write_results)

EXAMPLES = ["pwoa-lab frontier --dataset digits --preset quick --rates 4,8 --seeds 0,1,2 --out results/frontier",
            "pwoa-lab frontier --dataset mnist --preset quick --budgets lr=0.1,1/3,1,3 epochs=1,3 --out results"]


def add_parser(sub) -> None:
    from pwoa_lab.training.registry import method_help
    p = add_command(sub, "frontier", "natural vs robust accuracy of each method over its fine-tuning budget "
                                     "(CSV + PNG + verdict per rate)", EXAMPLES,
                    about="Each method run at every fine-tuning budget (factors of the preset's learning rates and "
                          "epochs), every run cached: natural vs robust accuracy, each method's front, and per "
                          "rate whether PwoA's front lies above naive pruning's.")
    add_figure_options(p)
    p.add_argument("--rates", default="4,8", help="comma list of pruning rates (default 4,8)")
    p.add_argument("--methods", default=",".join(defaults.FRONTIER_METHODS),
                   help=f"comma list of methods that train (default {','.join(defaults.FRONTIER_METHODS)}; "
                        f"{method_help()})")
    p.add_argument("--seeds", default="0,1,2", help="every point once per seed (default 0,1,2)")
    add_scope(p)
    add_budgets(p, default=["lr=0.1,1/3,1,3", "epochs=1"])
    add_workers(p)
    add_result_folder(p, no_cache=False)
    add_common(p)
    add_control(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import mark_smoke, plot_frontier
    from pwoa_lab.experiments.confidence import environment_line
    from pwoa_lab.experiments.frontier import FRONT_RULE, budget_label, frontier, parse_budgets
    out = check_out_folder(args.out)  # before any run: results are never computed for nowhere
    lr_factors, epoch_factors = parse_budgets(args.budgets)
    rates = numbers(args.rates, "--rates")
    methods = [m.strip() for m in args.methods.split(",")]
    run_seeds = seeds(args)
    fr = frontier(args.dataset, rates, methods, lr_factors, epoch_factors, run_seeds, args.preset,
                  teacher=teacher_of(args), root=args.root, device=args.device, extend=not args.no_extend,
                  workers=resolve_workers(args.workers, args.device), backend=args.backend, address=args.address,
                  control=args.control, **scope_overrides(args))
    stem = f"frontier_{args.dataset}_{args.preset}"
    scope = args.scope or "all"
    fig = plot_frontier(fr.points, title=f"frontier: {args.dataset}, preset {args.preset}, scope {scope}, "
                                         f"{len(run_seeds)} seed(s)\npoints: learning-rate factor[/epoch factor]; "
                                         "lines: each method's front")
    mark_smoke(fig, args.preset)
    csv, png = write_results(out, [f"{stem}.csv", f"{stem}.png"],
                             [csv_file(fr.points.drop(columns="point")), png_file(fig)])
    shown = fr.points.assign(budget=[budget_label(a, b) if k == "method" else "-"
                                     for a, b, k in zip(fr.points.lr_factor, fr.points.epoch_factor, fr.points.kind)])
    print_smoke_note(args.preset)
    print(f"robust = {fr.robust_metric} (per point the worst case of PGD and AutoAttack where the preset runs "
          f"AutoAttack); mean over seeds {', '.join(map(str, run_seeds))} and the test images, [95% interval over "
          f"both]; {environment_line(fr.runs)}")
    print("budget: how the fine-tuning ran, as multiples of the preset's schedule: lr x3 is three times the "
          "learning rate (not more training), epochs x3 three times the epochs")
    print(interval_table(shown, ["rate", "method", "budget"], ["natural", "robust"], ["on_front"]))
    if len(fr.extensions):
        print("\nThe grid extended where a best validation point lay on its edge:")
        for row in fr.extensions.itertuples():
            added = f"added {row.axis.split('_')[0]} x{row.factor:.3g}" if row.factor == row.factor else "stopped"
            print(f"- {row.method} {row.rate:g}x: {added} ({row.why})")
    if len(fr.verdicts):
        print(f"\nPwoA's front against naive's, per rate ({FRONT_RULE}):")
        for row in fr.verdicts.itertuples():
            print(verdict_line(args.preset, f"{row.rate:g}x: {row.verdict.upper()}. {row.text}"))
    if args.control:
        print("\nThe capacity rows: a dense network of the pruned network's size, trained with the teacher's recipe "
              "(one point per rate; a front above it holds more than that size does, one below it loses more)")
    print(f"\nwrote {csv} and {png}")
    return 0
