"""`pwoa-lab train-teacher`: adversarially train a robust teacher (`experiments.runs.train_teacher`) and save it."""
from __future__ import annotations

import argparse

from pwoa_lab.cli.common import add_command, add_common, check_out_file, config_option, config_values

EXAMPLES = ["pwoa-lab train-teacher --dataset mnist --model lenet3 --epochs 6 --out teacher.pt"]


def add_parser(sub) -> None:
    from pwoa_lab.core.datasets import DATASETS
    from pwoa_lab.training.methods import TeacherConfig as C
    p = add_command(sub, "train-teacher", "adversarially train a robust teacher", EXAMPLES,
                    about="Adversarially train a robust teacher (the weights of the best validation epoch) and "
                          "save it as a checkpoint. Options left out take TeacherConfig's defaults.")
    p.add_argument("--dataset", required=True, help=", ".join(DATASETS))
    config_option(p, "--model", C, "model", "small_cnn, lenet3, vgg_small, resnet18, wrn34_10 (default: per dataset)")
    config_option(p, "--method", C, "method", "pgd (PGD-AT), fgsm_rs (fast AT) or none (plain CE)")
    config_option(p, "--eps", C, "eps", "the L-inf radius on [0, 1] inputs (default: the dataset's eps)", type=float)
    config_option(p, "--epochs", C, "epochs", "training epochs", type=int)
    config_option(p, "--batch-size", C, "batch_size", "training batch size", type=int)
    config_option(p, "--lr", C, "lr", "learning rate", type=float)
    config_option(p, "--lr-schedule", C, "lr_schedule", "constant or cosine")
    config_option(p, "--optimizer", C, "optimizer", "adam or sgd (momentum 0.9)")
    config_option(p, "--weight-decay", C, "weight_decay", "weight decay", type=float)
    config_option(p, "--pgd-steps", C, "adv_steps", "PGD steps of the training attack", type=int)
    config_option(p, "--eps-ramp", C, "eps_ramp_epochs", "epochs over which eps ramps up", type=float)
    config_option(p, "--n-per-class", C, "n_per_class",
                  "train on a class-balanced subset of this many images per class (default: the whole split)",
                  type=int)
    config_option(p, "--val-n", C, "val_n", "validation images per epoch (for checkpoint selection)", type=int)
    config_option(p, "--val-pgd-steps", C, "val_pgd_steps", "PGD steps of that validation", type=int)
    p.add_argument("--test-n", type=int, default=0, help="also evaluate on this many test images (default 0: no)")
    p.add_argument("--storage-dtype", default="float32", help="float32 or float16 (half the file size)")
    p.add_argument("--out", required=True, help="the checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.core.attacks import attack_options
    from pwoa_lab.core.data import load_dataset
    from pwoa_lab.core.evaluation import evaluate
    from pwoa_lab.experiments.runs import train_teacher
    from pwoa_lab.io.checkpoint import command_line, save_checkpoint
    from pwoa_lab.training.methods import TeacherConfig
    out = check_out_file(args.out, args.overwrite)
    config = TeacherConfig(**config_values(args, TeacherConfig))
    model, history, metrics = train_teacher(config, root=args.root)
    meta = {"model": model.kit_name, "dataset": args.dataset, "eps": metrics["eps"], "seed": config.seed,
            "kind": "teacher", "config": config.to_dict(), "metrics": metrics, "command": command_line(),
            "history": history.to_dict("records")}
    if args.test_n:
        test = load_dataset(args.dataset, "test", args.root)
        table = evaluate(model, test, ["natural", "pgd"], eps=metrics["eps"], n=args.test_n,
                         attack_options=attack_options(args.dataset, metrics["eps"]))
        meta["metrics"]["test"] = {r.attack: r.accuracy for r in table.itertuples()}
        print(table.to_string(index=False))
    save_checkpoint(out, model, meta, storage_dtype=args.storage_dtype, overwrite=args.overwrite)
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
