"""`pwoa-lab evaluate`: natural and robust accuracy of a checkpoint (`core.evaluation.evaluate`), as a table or JSON."""
from __future__ import annotations

import argparse

import json

from pwoa_lab import defaults
from pwoa_lab.cli.common import add_command, add_common, checkpoint_help, per_dataset, resolve_checkpoint

EXAMPLES = ["pwoa-lab evaluate --checkpoint teacher.pt --dataset mnist --attacks natural,fgsm,pgd,cw,aa --n 1000",
            "pwoa-lab evaluate --checkpoint digits --attacks natural,pgd --n 500 --format json"]


def add_parser(sub) -> None:
    p = add_command(sub, "evaluate", "natural and robust accuracy of a checkpoint", EXAMPLES)
    p.add_argument("--checkpoint", required=True, help=checkpoint_help())
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--attacks", default="natural,fgsm,pgd",
                   help="comma list of natural,fgsm,pgd,cw,aa,worst (worst: per point the worst case of PGD and "
                        "AutoAttack; default natural,fgsm,pgd)")
    p.add_argument("--eps", type=float, default=None, help="default: the checkpoint's eps")
    p.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--pgd-steps", type=int, default=None,
                   help="PGD steps (default: the dataset's: " + per_dataset("pgd_steps") + "; the step size stays "
                        "the dataset's)")
    p.add_argument("--split", default="test", help="test or val (default test)")
    p.add_argument("--aa-version", default=defaults.AA_VERSION, choices=("standard", "fast"),
                   help=f"AutoAttack's version (default {defaults.AA_VERSION}: the kit's evaluations use it; "
                        "standard: the full RobustBench AutoAttack, slower)")
    p.add_argument("--format", default="table", choices=["table", "json"], help="how to print the rows (default table)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.core.attacks import attack_options
    from pwoa_lab.core.data import dataset_info, load_dataset
    import torch

    from pwoa_lab.core.evaluation import EVAL_SEED, evaluate
    from pwoa_lab.io.checkpoint import load_checkpoint
    from pwoa_lab.utils import forked_rng, get_device
    device = get_device(args.device)
    model, meta = load_checkpoint(resolve_checkpoint(args.checkpoint), device, expect={"dataset": args.dataset})
    dataset = args.dataset or meta["dataset"]
    eps = args.eps if args.eps is not None else meta.get("eps", dataset_info(dataset).eps)
    if args.pgd_steps is not None and args.pgd_steps < 1:
        raise ValueError(f"--pgd-steps must be >= 1; got {args.pgd_steps}")
    options = attack_options(dataset, eps, args.pgd_steps)  # the step size stays the dataset's (CIFAR: 2/255)
    options["aa"] = {"version": args.aa_version}
    test = load_dataset(dataset, args.split, args.root)
    with forked_rng():  # the attacks' random starts: the same numbers every time
        torch.manual_seed(EVAL_SEED)
        table = evaluate(model, test, args.attacks, eps=eps, n=args.n, attack_options=options, device=device)
    table.insert(0, "checkpoint", str(args.checkpoint))
    if args.format == "json":
        print(json.dumps(table.to_dict("records"), indent=2))
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0
