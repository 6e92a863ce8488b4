"""`pwoa-lab figure3`: robustness vs training time, PwoA vs AdvPrune vs HYDRA over mix ratios
(`experiments.figures.figure3`): CSV + PNG."""
from __future__ import annotations

import argparse

from pwoa_lab import defaults
from pwoa_lab.cli.common import (add_command, add_common, add_figure_options, add_result_folder, check_out_folder,
                                 csv_file, interval_table, numbers, png_file, print_smoke_note, printable, seeds,
                                 teacher_of, write_results)

EXAMPLES = ["pwoa-lab figure3 --dataset digits --preset quick --out results/fig3",
            "pwoa-lab figure3 --dataset mnist --preset quick --rate 4 --mix-ratios 0,0.5,1 --seeds 0,1,2 --out results"]


def add_parser(sub) -> None:
    p = add_command(sub, "figure3", "robustness vs training time: PwoA vs AdvPrune vs HYDRA over mix ratios",
                    EXAMPLES,
                    about="Figure 3 of the paper: validation PGD accuracy over training time for each method and "
                          "mix ratio (the share of PGD batches), every run cached; the time each one needs to "
                          "reach PwoA's final accuracy, as a ratio to PwoA's.")
    add_figure_options(p)
    p.add_argument("--rate", type=float, default=4.0, help="the pruning rate of every run (default 4)")
    p.add_argument("--mix-ratios", default=None,
                   help="comma-separated (default: 0,0.2,0.4,0.6,0.8,1 with --preset paper, else 0,0.5,1)")
    p.add_argument("--methods", default=",".join(defaults.FIGURE3_METHODS),
                   help=f"comma list of methods (default {','.join(defaults.FIGURE3_METHODS)})")
    p.add_argument("--seeds", default=None, help="repeat every run once per seed, e.g. 0,1,2")
    p.add_argument("--n-per-class", type=int, default=None,
                   help="train every run on this many images per class (default: the preset's subset; "
                        "e.g. 300 on MNIST quick)")
    add_result_folder(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import mark_smoke, plot_figure3
    from pwoa_lab.experiments.figures import figure3, time_ratio_summary
    out = check_out_folder(args.out)
    ratios = None if args.mix_ratios is None else numbers(args.mix_ratios, "--mix-ratios", "0,0.5,1")
    methods = [m.strip() for m in args.methods.split(",")]
    curves, summary = figure3(args.dataset, rate=args.rate, mix_ratios=ratios, methods=methods, preset=args.preset,
                              seeds=seeds(args), teacher=teacher_of(args), root=args.root, device=args.device,
                              use_cache=not args.no_cache, n_per_class=args.n_per_class)
    stem = f"figure3_{args.dataset}_{args.preset}"
    fig = plot_figure3(curves.dropna(subset=["val_pgd"]), target=float(summary.target_val_pgd.iloc[0]),
                       title=f"Figure 3: {args.dataset} {args.rate:g}x, preset {args.preset}")
    mark_smoke(fig, args.preset)
    paths = write_results(out, [f"{stem}_curves.csv", f"{stem}_summary.csv", f"{stem}.png"],
                          [csv_file(curves), csv_file(summary), png_file(fig)])
    print_smoke_note(args.preset)
    print(printable(summary).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\ntime_ratio: time to reach PwoA's (r=0) final validation PGD accuracy / PwoA's time (NaN: never); "
          "mean over seeds [95% interval over seeds], where every seed reached it:")
    print(interval_table(time_ratio_summary(summary), ["method", "mix_ratio", "seeds", "reached"],
                         ["time_ratio", "pgd", "aa"]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
