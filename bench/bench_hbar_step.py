"""The HBaR overhead of one PwoA training step.

Figure: time of one training step with KD + HBaR over the same step with KD only. LeNet-3, MNIST-shaped
random inputs in [0, 1], batch 128, teacher logits precomputed. A step is: forward with
`models.logits_and_hiddens`, loss, backward, Adam step. KD: `distillation.kd_loss` (T = 30); HBaR:
`hsic.hbar_loss` over the 3 hidden layers (lambda_x 2e-4, lambda_y 5e-5, sigma 5, HKH centering).
Target <= 1.3.

It also times the pieces of the HSIC term (forward only, and forward + backward of the HSIC term alone:
Gaussian kernels, centering, the soft-projection solves) so that a miss says where the time goes.

    .venv/bin/python bench/bench_hbar_step.py [--quick] [--repeats N] [--profile]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

TARGET = "<= 1.3"
BATCH = 128
LAMBDA_X, LAMBDA_Y, SIGMA, TEMPERATURE = 2e-4, 5e-5, 5.0, 30.0


def body(args) -> dict:
    import torch
    from pwoa_lab import hsic
    from pwoa_lab.distillation import kd_loss
    from pwoa_lab.models import build_model, logits_and_hiddens
    from pwoa_lab.utils import set_seed

    set_seed(args.seed)
    model = build_model("lenet3", "mnist").train()
    teacher = build_model("lenet3", "mnist").eval()
    x = torch.rand(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    with torch.no_grad():
        t_logits = teacher(x)                         # precomputed, as the engine's teacher cache does
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    repeats = args.repeats or (3 if args.quick else 9)

    def step(with_hbar: bool) -> None:
        opt.zero_grad(set_to_none=True)
        logits, hiddens = logits_and_hiddens(model, x)
        loss = kd_loss(logits, t_logits, TEMPERATURE)
        if with_hbar:
            h, _ = hsic.hbar_loss(x, y, hiddens, 10, LAMBDA_X, LAMBDA_Y, SIGMA, "hkh")
            loss = loss + h
        loss.backward()
        opt.step()

    timings = _common.interleaved_medians({"kd": lambda: step(False), "kd+hbar": lambda: step(True)},
                                          repeats=repeats, warmup=2)
    ratio = timings["kd+hbar"]["median_s"] / timings["kd"]["median_s"]
    print(f"  KD step {timings['kd']['median_s'] * 1000:.1f} ms, KD+HBaR step "
          f"{timings['kd+hbar']['median_s'] * 1000:.1f} ms (median of {repeats}), ratio {ratio:.3f}")

    # pieces of the HSIC term, on detached hidden activations that require grad (no network involved)
    with torch.no_grad():
        _, hiddens0 = logits_and_hiddens(model, x)
    hid = [h.detach().clone().requires_grad_(True) for h in hiddens0]
    kx = hsic.gaussian_kernel(x, SIGMA)
    kz = [hsic.gaussian_kernel(h.detach(), SIGMA) for h in hid]
    kcs = [hsic.center(k) for k in kz]

    def hsic_forward():
        with torch.no_grad():
            hsic.hbar_loss(x, y, hid, 10, LAMBDA_X, LAMBDA_Y, SIGMA, "hkh")

    def hsic_fwd_bwd():
        h, _ = hsic.hbar_loss(x, y, hid, 10, LAMBDA_X, LAMBDA_Y, SIGMA, "hkh")
        torch.autograd.grad(h, hid)

    def kernels():   # the Gaussian kernels of X and the 3 hidden layers (forward)
        with torch.no_grad():
            hsic.gaussian_kernel(x, SIGMA)
            for h in hid:
                hsic.gaussian_kernel(h, SIGMA)

    def centering():  # the 5 centerings (X, Y, 3 layers)
        with torch.no_grad():
            for _ in range(5):
                hsic.center(kx)

    def solves():     # the 5 soft projections (X, Y, 3 layers): one 128x128 solve each
        with torch.no_grad():
            for kc in kcs + kcs[:2]:
                hsic.soft_projection(kc)

    pieces = _common.interleaved_medians({"hsic_forward": hsic_forward, "hsic_forward_backward": hsic_fwd_bwd,
                                          "kernels_fwd": kernels, "centering_fwd": centering,
                                          "solves_fwd": solves}, repeats=repeats, warmup=1)
    kd_ms = timings["kd"]["median_s"] * 1000
    breakdown = {k: round(v["median_s"] * 1000, 2) for k, v in pieces.items()}
    print("  HSIC pieces (ms, median): " + ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    extra_ms = (timings["kd+hbar"]["median_s"] - timings["kd"]["median_s"]) * 1000
    hidden_dims = [int(h[0].numel()) for h in hid]
    notes = []
    analysis = (f"HBaR adds {extra_ms:.1f} ms to a {kd_ms:.1f} ms KD step; the HSIC term alone costs "
                f"{breakdown['hsic_forward_backward']:.1f} ms forward+backward ({breakdown['hsic_forward']:.1f} ms "
                f"forward: kernels {breakdown['kernels_fwd']:.1f}, centering {breakdown['centering_fwd']:.1f}, "
                f"solves {breakdown['solves_fwd']:.1f}). The kernels are Gram matrices Z Z^T of the flattened "
                f"hidden layers (d = {hidden_dims}): 2*m^2*d flops each, {2 * BATCH**2 * sum(hidden_dims) / 1e9:.2f} "
                f"GFLOP forward and twice that backward, against about "
                f"{3 * _lenet3_forward_flops(BATCH) / 1e9:.1f} GFLOP for the network's forward+backward.")
    if ratio > 1.3:
        notes.append("MISS explained: " + analysis)
    else:
        notes.append(analysis)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step(True)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        print(table)
        notes.append("profile (top ops by self CPU time over 3 KD+HBaR steps):\n" + table)
    figures = [_common.figure("KD+HBaR step / KD step (LeNet-3, batch 128)", ratio, "ratio", TARGET)]
    return {"figures": figures, "notes": notes,
            "details": {"steps": timings, "hsic_pieces_ms": breakdown, "repeats": repeats,
                        "kd_step_ms": kd_ms, "hbar_extra_ms": extra_ms, "hidden_dims": hidden_dims}}


def _lenet3_forward_flops(batch: int) -> float:
    conv1 = 28 * 28 * 32 * 25 * 1 * 2
    conv2 = 14 * 14 * 64 * 32 * 25 * 2
    fc1 = 3136 * 1024 * 2
    fc2 = 1024 * 10 * 2
    return batch * (conv1 + conv2 + fc1 + fc2)


def main(argv=None) -> dict:
    p = _common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 9; quick 3)")
    p.add_argument("--profile", action="store_true", help="also print a torch.profiler table of 3 HBaR steps")
    return _common.run_script("bench_hbar_step", body, p, argv)


if __name__ == "__main__":
    main()
