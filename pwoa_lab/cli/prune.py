"""`pwoa-lab prune`: prune a checkpoint with one method (`experiments.prune.prune_checkpoint`), resumable."""
from __future__ import annotations

import argparse
import sys

from pwoa_lab.cli.common import (add_budget_factors, add_command, add_common, add_design, add_preset, add_scope,
                                 budget_overrides, check_out_file, checkpoint_help, config_default, config_option,
                                 design_overrides, design_words, resolve_checkpoint, scope_overrides)

EXAMPLES = ["pwoa-lab prune --checkpoint teacher.pt --method pwoa --rate 4 --preset quick --out pruned.pt",
            "pwoa-lab prune --checkpoint digits --method hydra --rate 4 --out hydra.pt   # run again to resume",
            "pwoa-lab prune --checkpoint digits --method pwoa --rate 4 --structure structured --schedule iterative "
            "--out s.pt",
            "pwoa-lab prune --checkpoint digits --method naive --rate 8 --lr-factor 1/3 --out naive_lr3.pt   # one "
            "point of a frontier"]


def add_parser(sub) -> None:
    from pwoa_lab.training.methods import PruneConfig as C
    from pwoa_lab.training.registry import method_help
    p = add_command(sub, "prune", "prune a checkpoint with one of the registered methods (resumable)", EXAMPLES,
                    about="Prune a checkpoint with one of the registered methods on a preset's schedule, evaluate "
                          "it and save it. Interrupted, the same command resumes from the last finished epoch "
                          "(kept in OUT.state). Options left out take the run config's defaults.")
    p.add_argument("--checkpoint", required=True, help=checkpoint_help())
    config_option(p, "--method", C, "method", method_help())
    p.add_argument("--rate", type=float, required=True, help="pruning rate R > 1 (keep 1/R of the weights)")
    add_preset(p)
    config_option(p, "--mix-ratio", C, "mix_ratio", "probability of a PGD batch (default: the method's)", type=float)
    add_scope(p)
    add_design(p)
    add_budget_factors(p)
    p.add_argument("--n", type=int, default=None, help="evaluate on the first N test images (default: all)")
    p.add_argument("--out", required=True, help="dense checkpoint path; a compact FILE.sparse.pt is written too "
                                                "(not with --structure structured: the file is already small)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.experiments.prune import prune_checkpoint
    from pwoa_lab.training.methods import PruneConfig
    out = check_out_file(args.out, args.overwrite)  # before any training: a trained model is never lost to it
    method = args.method or config_default(PruneConfig, "method")
    design = design_overrides(args, [method])
    overrides = {**scope_overrides(args), **design, **budget_overrides(args)}
    if args.mix_ratio is not None:
        overrides["mix_ratio"] = args.mix_ratio
    result = prune_checkpoint(resolve_checkpoint(args.checkpoint), out, args.rate, method=args.method,
                              preset=args.preset, seed=args.seed, n=args.n, root=args.root, device=args.device,
                              overwrite=args.overwrite, teacher_name=str(args.checkpoint), log=print, **overrides)
    print(result.sparsity.to_string(index=False))
    print({k: round(v, 2) for k, v in result.metrics.items()})
    print(f"{design_words(design)}; parameters {result.params:,} of the teacher's {result.teacher_params:,} "
          f"({100 * result.params / result.teacher_params:.1f}%)")
    for u in result.unsaved:
        print(f"pwoa-lab: cannot write {u.asked} ({u.why}); the trained model is saved at {u.saved} instead: move "
              "it where you want it", file=sys.stderr)
    saved, sparse = result.saved, result.saved_sparse
    if result.structured:  # channels removed: the file is already the small model
        print(f"saved {saved} (structured: a smaller plain model without masks, {saved.stat().st_size / 1e6:.2f} MB)")
    else:
        print(f"saved {saved} (dense with zeros, {saved.stat().st_size / 1e6:.2f} MB) and {sparse} "
              f"(compact, {sparse.stat().st_size / 1e6:.2f} MB)")
    return 0 if result.complete else 1
