"""`pwoa-lab import-teacher`: public robust weights as a teacher checkpoint (`io.teacher_import`), evaluated."""
from __future__ import annotations

import argparse

from pwoa_lab import defaults
from pwoa_lab.cli.common import add_command, add_common, check_out_file, per_dataset

EXAMPLES = ["pwoa-lab import-teacher --arch wrn34_10 --dataset cifar10 --weights model_cifar_wrn.pt --format trades "
            "--eps 8/255 --source github.com/yaodongyu/TRADES --n 1000 --out teachers/trades_wrn.pt"]


def _import_datasets() -> list[str]:
    from pwoa_lab.io.teacher_import import import_datasets
    return list(import_datasets())


def add_parser(sub) -> None:
    p = add_command(sub, "import-teacher", "import public robust weights (TRADES, RobustBench, plain) as a teacher "
                                           "checkpoint, and evaluate them", EXAMPLES)
    p.add_argument("--arch", required=True, help="wrn34_10 or resnet18")
    p.add_argument("--dataset", required=True, help=" or ".join(_import_datasets()))
    p.add_argument("--weights", required=True, help="the public .pt/.pth file (read with weights_only=True)")
    p.add_argument("--format", default="plain",
                   help="trades (drops the unused sub_block1), robustbench (strips 'model.', reads mu/sigma "
                        "buffers) or plain (public or kit names; default); a 'module.' prefix is stripped in all")
    p.add_argument("--eps", default=None, help="L-inf radius the model was trained for, e.g. 8/255 "
                                               "(default: the dataset's)")
    p.add_argument("--mean", default=None, help="input normalization the model expects: three numbers "
                                                "'0.4914,0.4822,0.4465' or a dataset name ("
                                                + ", ".join(_import_datasets()) + ")")
    p.add_argument("--std", default=None, help="as --mean, for the standard deviations")
    p.add_argument("--source", default="", help="where the weights come from (recorded in the metadata)")
    p.add_argument("--n", type=int, default=1000, help="evaluate on the first N test images (default 1000; 0: skip)")
    p.add_argument("--aa-n", type=int, default=None, help="AutoAttack images (default: --n; 0: skip AA)")
    p.add_argument("--aa-version", default=defaults.AA_VERSION, choices=("standard", "fast"),
                   help=f"AutoAttack's version (default {defaults.AA_VERSION}: the kit's evaluations use it; "
                        "standard: the full RobustBench AutoAttack, slower)")
    p.add_argument("--pgd-steps", type=int, default=None,
                   help="PGD steps of the evaluation (default: the dataset's: " + per_dataset("pgd_steps") + ")")
    p.add_argument("--out", required=True, help="the kit checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.io.teacher_import import import_teacher
    check_out_file(args.out, args.overwrite)
    result = import_teacher(args.arch, args.dataset, args.weights, fmt=args.format, eps=args.eps, out=args.out,
                            mean=args.mean, std=args.std, source=args.source, n=args.n, aa_n=args.aa_n,
                            aa_version=args.aa_version, pgd_steps=args.pgd_steps, root=args.root,
                            device=args.device, overwrite=args.overwrite)
    if result.evaluation is not None:
        table = result.evaluation[["attack", "setting", "eps", "n", "accuracy", "seconds"]]
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print("compare with the numbers published for these weights (same eps and attack) before pruning")
    info = result.meta["import"]
    print(f"saved {result.path} (sha256 of {info['file']}: {info['sha256'][:16]}..., source: "
          f"{info['source'] or 'not given'})")
    return 0
