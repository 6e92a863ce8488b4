"""PGD-k cost over its physical floor.

Figure: time of `pwoa_lab.core.attacks.pgd_linf(model, x, y, eps=0.3, alpha=0.01, steps=k)` divided by the time of
k plain forward + backward passes (gradient with respect to the input only, the same model, batch and loss)
in a bare loop. LeNet-3 on MNIST-shaped random inputs in [0, 1], batch 128, k = 10 and 40.
Target <= 1.10: everything PGD adds to the k gradient passes (random start, sign, projection, input checks,
eval-mode switching) must cost under 10 %.

    .venv/bin/python bench/bench_pgd_cost.py [--quick] [--repeats N]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

TARGET = "<= 1.10"
STEPS = (10, 40)
BATCH = 128


def body(args) -> dict:
    import torch
    import torch.nn.functional as F
    from pwoa_lab.core.attacks import pgd_linf
    from pwoa_lab.core.models import build_model
    from pwoa_lab.utils import set_seed

    set_seed(args.seed)
    model = build_model("lenet3", "mnist").eval()       # parameters keep requires_grad, as a student's do
    x = torch.rand(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    eps, alpha = 0.3, 0.01
    repeats = args.repeats or (2 if args.quick else 5)

    def floor(k: int) -> None:
        for _ in range(k):
            x_ = x.detach().clone().requires_grad_(True)
            loss = F.cross_entropy(model(x_), y, reduction="sum")
            torch.autograd.grad(loss, x_)

    figures, details = [], {}
    for k in STEPS:
        gen = torch.Generator().manual_seed(args.seed)
        timings = _common.interleaved_medians(
            {"pgd": lambda k=k: pgd_linf(model, x, y, eps, alpha=alpha, steps=k, generator=gen),
             "floor": lambda k=k: floor(k)}, repeats=repeats, warmup=1)
        ratio = timings["pgd"]["median_s"] / timings["floor"]["median_s"]
        details[f"k={k}"] = {**timings, "ratio": ratio,
                             "per_pass_ms": 1000 * timings["floor"]["median_s"] / k}
        figures.append(_common.figure(f"PGD-{k} time / {k} fwd+bwd (input grad)", ratio, "ratio", TARGET))
        print(f"  k={k}: pgd {timings['pgd']['median_s']:.3f} s, floor {timings['floor']['median_s']:.3f} s "
              f"(median of {repeats}), ratio {ratio:.3f}")
    return {"figures": figures, "details": {**details, "repeats": repeats, "batch": BATCH, "model": "lenet3",
                                            "input": "random [0,1] 1x28x28"}}


def main(argv=None) -> dict:
    p = _common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 5; quick 2)")
    return _common.run_script("bench_pgd_cost", body, p, argv)


if __name__ == "__main__":
    main()
