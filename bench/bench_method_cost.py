"""Training cost of PwoA (mix ratio 0) vs AdvPrune (mix ratio 1, PGD-40 examples on every batch).

Runs `engine.prune_and_finetune` with method="pwoa" and method="advprune" on identical schedules (1 ADMM +
1 retraining epoch, batch 128, LeNet-3, the same class-balanced subset: MNIST when the data root holds it,
else digits with LeNet-3 at 16x16) and compares the training seconds per epoch (the engine's
`train_seconds`, evaluation excluded). AdvPrune's PGD is set explicitly to MNIST's 40 steps of 0.01, so the
digits fallback measures the same attack cost.

Figure: PwoA epoch time / AdvPrune epoch time (no target). The paper's argument: a PGD-k batch costs about
1 + k clean passes, so AdvPrune should be roughly k + 1 = 41 times slower, i.e. a ratio near 1/41 = 0.024
(PwoA's step also carries the KD and, when retraining, the HSIC terms; a PGD step back-propagates to the
input only).

    .venv/bin/python bench/bench_method_cost.py [--quick] [--repeats N] [--n-per-class N]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

PGD_STEPS, PGD_ALPHA = 40, 0.01


def body(args) -> dict:
    from pwoa_lab.core.data import load_dataset
    from pwoa_lab.training.methods import PruneConfig
    from pwoa_lab.experiments.runs import run_config

    dataset = "mnist" if _common.mnist_available() else "digits"
    teacher, teacher_desc = _common.lenet3_teacher(dataset, args.seed)
    n_per_class = args.n_per_class or (13 if args.quick else 64)
    train = load_dataset(dataset, "train", n_per_class=n_per_class, seed=args.seed)
    val = load_dataset(dataset, "val").head(64)
    repeats = args.repeats or (1 if args.quick else 2)
    epochs = 2

    def config(method: str) -> PruneConfig:
        return PruneConfig(dataset=dataset, method=method, rate=4, admm_epochs=1, admm_every=1, retrain_epochs=1,
                           batch_size=128, lr_schedule="constant", val_n=64, val_pgd_steps=1, n_per_class=n_per_class,
                           adv_steps=PGD_STEPS, adv_alpha=PGD_ALPHA, seed=args.seed, device="cpu")

    def run(method: str):
        result = run_config(teacher, config(method), train=train, val=val, progress=False)
        h = result.history
        per_phase = h.train_seconds.diff().fillna(h.train_seconds).tolist()  # seconds of each epoch
        return result.train_seconds, per_phase, float(h.adv_batch_fraction.mean())

    run("pwoa")  # warm-up (one-time allocations); AdvPrune's ~400 passes per epoch amortize their own
    secs = {"pwoa": [], "advprune": []}
    phases, adv_fraction = {}, {}
    for _ in range(repeats):
        for method in ("pwoa", "advprune"):
            s, per_phase, frac = run(method)
            secs[method].append(s)
            phases[method] = per_phase
            adv_fraction[method] = frac
    med = {m: statistics.median(v) / epochs for m, v in secs.items()}
    ratio = med["pwoa"] / med["advprune"]
    print(f"  {dataset}, {len(train)} images: PwoA {med['pwoa']:.2f} s/epoch, AdvPrune (PGD-{PGD_STEPS}) "
          f"{med['advprune']:.2f} s/epoch (median of {repeats}); PwoA/AdvPrune {ratio:.4f} "
          f"(AdvPrune is {1 / ratio:.1f}x slower; paper's estimate {PGD_STEPS + 1}x)")
    notes = [f"dataset {dataset} ({len(train)} training images), teacher: {teacher_desc}; AdvPrune adversarial "
             f"batch fraction {adv_fraction['advprune']:.2f}, PwoA {adv_fraction['pwoa']:.2f}",
             f"AdvPrune / PwoA = {1 / ratio:.1f} (paper: about 1 + k = {PGD_STEPS + 1} clean passes per batch); "
             f"last run's seconds per epoch [ADMM, retrain]: PwoA {[round(v, 2) for v in phases['pwoa']]}, "
             f"AdvPrune {[round(v, 2) for v in phases['advprune']]}"]
    figures = [_common.figure("PwoA epoch time / AdvPrune (PGD-40) epoch time", ratio, "ratio", None),
               _common.figure("PwoA epoch time", med["pwoa"], "s", None),
               _common.figure("AdvPrune epoch time", med["advprune"], "s", None)]
    return {"figures": figures, "notes": notes,
            "details": {"dataset": dataset, "n_train": len(train), "train_seconds": secs, "epochs": epochs,
                        "per_epoch_median_s": med, "advprune_over_pwoa": 1 / ratio, "repeats": repeats}}


def main(argv=None) -> dict:
    p = _common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 2; quick 1)")
    p.add_argument("--n-per-class", type=int, default=None, help="training images per class (default 64; quick 13)")
    return _common.run_script("bench_method_cost", body, p, argv)


if __name__ == "__main__":
    main()
