"""`pwoa-lab figure1`: robustness vs pruning rate, naive vs PwoA (`experiments.figures.figure1`): CSV + PNG."""
from __future__ import annotations

import argparse

from pwoa_lab import defaults
from pwoa_lab.cli.common import (add_budgets, add_command, add_common, add_control, add_design, add_figure_options,
                                 add_result_folder, add_scope, add_workers, check_out_folder, csv_file,
                                 design_overrides, design_words, mean_std_table, numbers, png_file, print_smoke_note,
                                 resolve_workers, scope_overrides, seeds, teacher_of, verdict_line, write_results)

EXAMPLES = ["pwoa-lab figure1 --dataset digits --preset quick --out results/fig1",
            "pwoa-lab figure1 --dataset digits --preset quick --rates 2,4,8 --scope hidden --seeds 0,1,2 --out results"]


def add_parser(sub) -> None:
    from pwoa_lab.training.registry import method_help
    p = add_command(sub, "figure1", "robustness vs pruning rate, naive vs PwoA (CSV + PNG)", EXAMPLES,
                    about="Figure 1 of the paper: natural and robust accuracy of each method at each pruning rate, "
                          "every run cached (run the same command again to resume); a CSV of the runs, one of the "
                          "seed summary and a PNG, and the paper's claim checked per rate.")
    add_figure_options(p)
    p.add_argument("--rates", default="2,4,8,16", help="comma list of pruning rates (default 2,4,8,16)")
    p.add_argument("--methods", default=",".join(defaults.FIGURE1_METHODS),
                   help=f"comma list of methods (default {','.join(defaults.FIGURE1_METHODS)}; {method_help()})")
    p.add_argument("--seeds", default=None, help="run every (method, rate) once per seed, e.g. 0,1,2 "
                                                 "(default: the one --seed)")
    add_scope(p)
    add_design(p)
    add_workers(p, "prune runs")
    add_result_folder(p)
    add_common(p)
    p.add_argument("--tune", default="none", choices=("none", "budget"),
                   help="none: the paper's protocol (the preset's budget); budget: every budget of --budgets runs "
                        "and each method gets the one it does best with on the validation split")
    add_budgets(p)
    add_control(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.core.intervals import VERDICT_RULE
    from pwoa_lab.course.plots import mark_smoke, plot_figure1
    from pwoa_lab.experiments.capacity import CAPACITY_RULE, capacity_in_words, capacity_verdicts
    from pwoa_lab.experiments.confidence import environment_line
    from pwoa_lab.experiments.figures import claim_in_words, figure1, phenomenon, seed_summary
    from pwoa_lab.experiments.frontier import figure1_tuned, parse_budgets
    from pwoa_lab.training.registry import TEACHER, method_spec, method_with_role
    out = check_out_folder(args.out)  # before any run: results are never computed for nowhere
    rates = numbers(args.rates, "--rates")
    methods = [m.strip() for m in args.methods.split(",")]
    run_seeds = seeds(args)
    design = design_overrides(args, methods)
    lr_factors, epoch_factors = parse_budgets(args.budgets)
    run_args = dict(preset=args.preset, seeds=run_seeds, teacher=teacher_of(args), root=args.root,
                    device=args.device, workers=resolve_workers(args.workers, args.device), backend=args.backend,
                    address=args.address, control=args.control, **scope_overrides(args), **design)
    if args.tune == "budget":  # every budget runs; each method's is chosen on the validation split
        df = figure1_tuned(args.dataset, rates=rates, methods=methods, lr_factors=lr_factors,
                           epoch_factors=epoch_factors, extend=not args.no_extend, **run_args)
    else:
        df = figure1(args.dataset, rates=rates, methods=methods, use_cache=not args.no_cache, **run_args)
    for field, value in design.items():  # which design every pruned row used ("-": the teacher)
        df[field] = [("-" if m == TEACHER else value) for m in df.method]
    summary = seed_summary(df)
    stem = f"figure1_{args.dataset}_{args.preset}" + ("_tuned" if args.tune == "budget" else "")
    scope = args.scope or "all"
    design_title = "".join(f", {v}" for v in design.values())
    fig = plot_figure1(df, summary=summary,
                       title=f"Figure 1: {args.dataset}, preset {args.preset}, scope {scope}{design_title}, "
                             f"{len(run_seeds)} seed{'s' if len(run_seeds) > 1 else ''}")
    mark_smoke(fig, args.preset)
    csv, summary_csv, png = write_results(out, [f"{stem}.csv", f"{stem}_summary.csv", f"{stem}.png"],
                                          [csv_file(df), csv_file(summary), png_file(fig)])
    print_smoke_note(args.preset)
    print(f"scope {scope} (which weights are pruned), {design_words(design)}, seeds "
          f"{', '.join(map(str, run_seeds))}; mean over seeds and test images [95% interval over both]; "
          + environment_line(df))
    print(mean_std_table(summary, ["natural", "pgd", "aa", "pgd_last"]))
    if args.tune == "budget":
        chosen = df[[m != TEACHER and method_spec(m).trains for m in df.method]].drop_duplicates(["method", "rate"])
        print("budgets chosen on validation (highest val PGD within 1 point of the best val natural): "
              + "; ".join(f"{m} {r:g}x: {b}" for m, r, b in zip(chosen.method, chosen.rate, chosen.budget)))
    print("aa: per test point the worst case of PGD and AutoAttack (AutoAttack runs only on the points PGD did not "
          "break); pgd_last: the last epoch's model, where checkpoint selection (best validation PGD) kept another "
          "one")
    if {method_with_role("baseline"), method_with_role("proposed")} <= set(methods):
        print("\nThe paper's claim (naive pruning collapses to at most a third of the teacher's robust accuracy, "
              f"PwoA stays within 3 points of it), per rate; {VERDICT_RULE}:")
        for metric in ("pgd", "aa"):
            if summary[metric].notna().any():
                for line in claim_in_words(phenomenon(df, metric), metric):
                    print(verdict_line(args.preset, line))
    if args.control:
        print(f"\nThe capacity control: each pruned method against a dense network of its size trained with the "
              f"teacher's recipe, per rate; {CAPACITY_RULE}:")
        for metric in ("pgd", "aa"):
            if summary[metric].notna().any():
                for line in capacity_in_words(capacity_verdicts(df, metric), metric):
                    print(verdict_line(args.preset, line))
    print(f"\nwrote {csv}, {summary_csv} and {png}")
    return 0
