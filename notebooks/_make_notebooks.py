"""Build the course notebooks (notebooks/0*.ipynb) from this one script, without outputs.

    python notebooks/_make_notebooks.py          # rewrite every notebook
    python notebooks/_make_notebooks.py --check  # exit 1 if a notebook differs from what this script builds

Edit the notebooks here, not in Jupyter, so that the six stay consistent (same parameter cell, same set-up,
same runtime table). The committed notebooks carry no outputs and no execution counts
(tests/test_notebooks.py checks it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Measured runtimes on the project's 2-core CPU (Intel Xeon, no GPU), 2026-11-22.
# smoke: PWOA_SMOKE=1, cold cache, pytest --durations (7.5, 20, 32, 20, 36, 32 s).
# full: PWOA_SMOKE unset (preset "quick"), `bench/time_notebooks.py`: the course in order from an empty cache
# (9, 61, 151, 33, 414, 338 s; 16.8 min in all); 03 and 05 read some of 02's runs from the cache. Session 4: 02
# with the fine-tuning drift cell, alone from an empty cache, 222 s; smoke 11, 23, 40, 21, 34, 26 s.
# GPU: estimates, not measured (no GPU here).
RUNTIME = {
    "00": ("about 10 s", "about 10 s", "a few s"),
    "01": ("about 20 s", "about 1 min", "about 10 s (estimate)"),
    "02": ("about 40 s", "about 4 min", "about 40 s (estimate)"),
    "03": ("about 20 s", "about 35 s (after 02; more when run alone)", "about 10 s (estimate)"),
    "04": ("about 40 s", "about 7 min", "about 1 min (estimate)"),
    "05": ("about 30 s", "about 6 min (after 02)", "about 1 min (estimate)"),
    "06": ("about 20 s (measured; 1-2 min on a loaded CPU)", "about 30 min (48 runs of 25-50 s; estimate from the runs)", "about 5 min (estimate)"),
}


def runtime_note(nb: str) -> str:
    smoke, full, gpu = RUNTIME[nb]
    return (f"**Runtime.** {full} on a 2-core laptop-class CPU (measured, running the course in order from an "
            f"empty cache), {gpu} on a GPU; a second run reads "
            f"every trained model from the cache and takes seconds. Smoke mode (`PWOA_SMOKE=1`, for CI): "
            f"{smoke}. See `00_start_here.ipynb` for how these were measured.")


def params_cell(extra: str = "") -> str:
    return ("# Parameters. PWOA_SMOKE=1 shrinks data and epochs to seconds (tests, CI); leave it unset to learn.\n"
            "import os\n\n"
            'SMOKE = os.environ.get("PWOA_SMOKE", "0") == "1"\n'
            'PRESET = "smoke" if SMOKE else "quick"          # training schedules: pwoa_lab.presets.PRESETS\n'
            'cache_dir = os.environ.get("PWOA_CACHE_DIR")    # None: the package default (~/.cache/pwoa-lab)\n'
            'PROGRESS = not SMOKE                             # progress bars\n' + extra)


SETUP = """%matplotlib inline
import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

pd.set_option("display.precision", 2)
torch.manual_seed(0)


def show(fig):
    \"\"\"Display a matplotlib Figure once and close it.\"\"\"
    display(fig)
    plt.close(fig)"""


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


# =============================================================================================== 00

def nb00():
    return notebook([
        md("""
# 00 · Start here: a course on pruning robust networks without adversarial examples

This course reproduces, on a laptop, the ICDM 2022 paper *Pruning Adversarially Robust Neural Networks without
Adversarial Examples* (PwoA; Jian, Wang, Wang, Dy, Ioannidis; arXiv 2210.04311). All the logic lives in the
`pwoa_lab` package; the notebooks explain the ideas (maths first), call the package, and show a table and a
picture after every step, in the style of Kolter & Madry's *Adversarial Robustness: Theory and Practice* tutorial.

**Contents**
1. [The story in four sentences](#story)
2. [The route through the course](#route)
3. [Parameters](#params)
4. [Data set-up](#data)
5. [Device check](#device)
6. [The shipped robust teachers](#teachers)
7. [Caching, smoke mode and runtimes](#cache)
8. [Things to try](#try)

""" + runtime_note("00")),
        md("""
<a id="story"></a>
## 1. The story in four sentences

1. A robust model (the **teacher**) was adversarially trained at great cost: every training step solved an inner
   maximisation $\\max_{\\|\\delta\\|_\\infty\\le\\epsilon}\\ell(f_\\theta(x+\\delta),y)$ with PGD.
2. Someone else must make it small (**prune** it) and has no budget to generate adversarial examples.
3. **Naive pruning** (prune, then fine-tune with cross-entropy on natural images) keeps natural accuracy but
   destroys robustness (paper Fig. 1b).
4. **PwoA** prunes with natural images only: self-distillation from the dense robust teacher ($L_D$) keeps the
   robustness and the HSIC bottleneck ($L_H$, HBaR) adds to it, at a fraction of the cost of adversarial pruning
   (AdvPrune, HYDRA; paper Fig. 3).

$$L_{\\text{PwoA}}(\\theta) = \\underbrace{T^2\\,\\mathrm{KL}\\big(\\sigma(f_{\\theta_0}(x)/T)\\,\\|\\,\\sigma(f_\\theta(x)/T)\\big)}_{L_D}
 + \\underbrace{\\sum_j \\lambda_x\\,\\mathrm{nHSIC}(X,Z_j) - \\lambda_y\\,\\mathrm{nHSIC}(Y,Z_j)}_{L_H}
 \\quad(+\\ \\text{the ADMM penalty while pruning})$$
"""),
        md("""
<a id="route"></a>
## 2. The route through the course

| notebook | what you learn | paper |
| --- | --- | --- |
| `01_adversarial_examples` | what an adversarial example is; FGSM and PGD in a few lines of PyTorch; robust vs undefended model; security curves | Fig. 1(a) |
| `02_naive_pruning_breaks_robustness` | magnitude pruning, ADMM, naive fine-tuning keeps natural accuracy but loses robustness; prune-rate slider | Fig. 1(b) |
| `03_distillation_and_hsic` | temperature and soft labels; HSIC on toy data; the HBaR loss; the information plane; λ sliders | Sec. IV |
| `04_efficiency_and_mix_ratio` | PwoA vs AdvPrune vs HYDRA: robustness per second of training; the mix ratio | Fig. 3 |
| `05_rigorous_evaluation` | AutoAttack, gradient-masking sanity checks, the paper's tables, running the `paper` preset on a GPU | Tables II–IV |
| `06_pruning_design_space` | weight vs structured pruning, magnitude vs gradient importance, one-shot vs ADMM vs iterative; robust accuracy against real file size and CPU latency | beyond the paper |

Read them in order; each one only needs the package and the shipped teacher, so you may also jump in anywhere.
"""),
        md("""
<a id="params"></a>
## 3. Parameters

Every notebook starts with the same cell. `PWOA_SMOKE=1` (set by the tests) shrinks data and epochs so that the
notebook runs in about a minute; the numbers it prints are then meaningless. Without it, the notebooks use the
`quick` preset: real (if short) training runs on the 16×16 `digits` data that ship with scikit-learn.
"""),
        code(params_cell()),
        code(SETUP + """

import pwoa_lab
from pwoa_lab import checkpoint, data, models, utils

print("pwoa_lab", pwoa_lab.__version__, "from", os.path.dirname(pwoa_lab.__file__))
print("torch", torch.__version__)"""),
        md("""
<a id="data"></a>
## 4. Data set-up

The course runs on **`digits`**: scikit-learn's bundled 8×8 handwritten digits, upsampled to 16×16. It needs no
download and no files. Its splits are fixed: 1,259 training, 179 validation (for choosing checkpoints; never the
test set) and 359 test images, all as tensors in $[0,1]$ (no normalisation, so $\\epsilon$ is in pixel units).

MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 are read from a **data root**: the `root=` argument of every
function, else the `PWOA_DATA_ROOT` environment variable, else the project's `data/` folder. Online, torchvision
downloads the files there; offline, point `PWOA_DATA_ROOT` at a folder in torchvision's layout
(`MNIST/raw/*.gz`, `cifar-10-batches-py/`). The folder may be read-only. `PWOA_DOWNLOAD=0` forbids downloads.
"""),
        code("""
print("data root:", data.data_root(), "(PWOA_DATA_ROOT =", os.environ.get("PWOA_DATA_ROOT"), ")")
splits = {s: data.load_dataset("digits", s) for s in data.SPLITS}
info = data.dataset_info("digits")
display(pd.DataFrame([{"split": s, "images": len(d), "shape": tuple(d.x.shape[1:]), "min": float(d.x.min()),
                       "max": float(d.x.max())} for s, d in splits.items()]))
display(pd.DataFrame([vars(i) for i in data.DATASETS.values()]).set_index("name"))"""),
        md("One training image of every class, as the models see them:"),
        code("""
train = splits["train"]
fig, axes = plt.subplots(1, 10, figsize=(12, 1.6))
for c, ax in enumerate(axes):
    i = int((train.y == c).nonzero()[0])
    ax.imshow(train.x[i, 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(str(c))
    ax.axis("off")
fig.suptitle("digits (16x16, values in [0, 1])")
show(fig)"""),
        md("""
<a id="device"></a>
## 5. Device check

`pwoa_lab.utils.get_device()` picks `cuda`, then `mps`, then `cpu`; every function also takes `device=`. The
`quick` preset is sized for a laptop CPU. The `paper` preset (notebook 05, last section) needs a GPU.
"""),
        code("""
device = utils.get_device()
print("device:", device)
print("CUDA available:", torch.cuda.is_available(),
      "| GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("CPU threads torch uses:", torch.get_num_threads())"""),
        md("""
<a id="teachers"></a>
## 6. The shipped robust teachers

Training a robust teacher is the expensive step that PwoA does not repeat, so the kit ships them:
`checkpoint.load_teacher("digits")` (a small CNN, PGD adversarial training at the kit's `digits` radius,
`data.dataset_info("digits").eps`) and, once trained, `checkpoint.load_teacher("mnist")` (LeNet-3, PGD-AT at
$\\epsilon=0.3$). A checkpoint stores the weights
and what they are: architecture, dataset, $\\epsilon$, seed, metrics, the command that made it.
"""),
        code("""
rows = []
for name, path in checkpoint.SHIPPED_TEACHERS.items():
    row = {"dataset": name, "file": path.name, "present": path.is_file()}
    if path.is_file():
        model, meta = checkpoint.load_checkpoint(path)
        metrics = meta.get("metrics", {})
        row.update(model=meta["model"], eps=meta.get("eps"), params=models.count_parameters(model),
                   val_natural=metrics.get("val_natural"), val_pgd=metrics.get("val_pgd"),
                   train_minutes=metrics.get("train_seconds", float("nan")) / 60)
    rows.append(row)
display(pd.DataFrame(rows))

teacher, meta = checkpoint.load_teacher("digits")
print(teacher)
print("command:", meta.get("command"))"""),
        md("The teacher's training curve, from the history stored in its checkpoint:"),
        code("""
history = pd.DataFrame(meta.get("history", []))
fig, ax = plt.subplots(figsize=(6, 3.3))
if len(history):
    ax.plot(history.epoch, history.val_natural, label="val natural")
    ax.plot(history.epoch, history.val_pgd, label="val PGD")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.legend()
ax.set_title("digits teacher: PGD adversarial training")
ax.grid(alpha=0.3)
show(fig)"""),
        md("""
<a id="cache"></a>
## 7. Caching, smoke mode and runtimes

Every pruning run is cached on disk by its full configuration (teacher weights, schedule, seed, evaluation
settings, kit version), in `PWOA_CACHE_DIR` (default `~/.cache/pwoa-lab`); every notebook passes `cache_dir` to
the package. So the first run of a notebook trains, every later run (and every slider position you visited)
is read back in seconds. `pwoa-lab figure1 --dataset digits --preset quick` (what `make demo` runs) fills the
same cache as notebook 02.

| notebook | smoke (`PWOA_SMOKE=1`) | full (`quick` preset), CPU | full, GPU |
| --- | --- | --- | --- |
""" + "\n".join(f"| `{n}` | {RUNTIME[n][0]} | {RUNTIME[n][1]} | {RUNTIME[n][2]} |" for n in RUNTIME) + """

How these were measured, on a 2-core CPU (Intel Xeon, no GPU): smoke times with `pytest tests/test_notebooks.py`
(cold cache); full times with `python bench/time_notebooks.py`, which runs the course in order from an empty
cache, as a student would (03 and 05 read some of 02's runs from the cache). The GPU column is an estimate, not a
measurement. A second run of any notebook reads every trained model from the cache and takes seconds.
"""),
        md("""
<a id="try"></a>
## 8. Things to try

1. Set `PWOA_SMOKE=1` in the shell before `jupyter lab` and run a notebook end to end: how long does it take?
2. Point `PWOA_CACHE_DIR` at an empty folder and time notebook 02 twice: the second run reads everything back.
3. Load the other splits and check that no test image also appears in the training split
   (hint: `torch.cdist` on the flattened images).
4. Use `pwoa-lab evaluate --checkpoint digits --attacks natural,fgsm,pgd --n 359` from a terminal and compare
   with the teacher metrics above.
"""),
    ])


# =============================================================================================== 01

def nb01():
    return notebook([
        md("""
# 01 · Adversarial examples

An **adversarial example** is a natural input plus a perturbation too small to change what a human sees, chosen
to change what the model predicts (the idea of the paper's Fig. 1(a)). This notebook builds FGSM and PGD by
hand, checks them against `pwoa_lab.attacks`, and compares the robust teacher with an undefended model.

**Contents**
1. [Parameters and set-up](#setup)
2. [The threat model](#threat)
3. [An undefended model](#undefended)
4. [FGSM in five lines](#fgsm)
5. [PGD in ten lines](#pgd)
6. [Natural vs adversarial images](#grid)
7. [An ε slider](#slider)
8. [Security curves: accuracy vs ε](#curve)
9. [Things to try](#try)

""" + runtime_note("01")),
        md('<a id="setup"></a>\n## 1. Parameters and set-up'),
        code(params_cell('N = 40 if SMOKE else None            # test images used (None: all 359)\n'
                         'UNDEFENDED_EPOCHS = 3 if SMOKE else 15\n'
                         '# security curve: eps as multiples of the training eps\n'
                         'EPS_FRACTIONS = (0, 0.5, 1, 2) if SMOKE else (0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2)')),
        code(SETUP + """
import torch.nn.functional as F

from pwoa_lab import attacks, checkpoint, data, plots, widgets
from pwoa_lab.methods import TeacherConfig
from pwoa_lab.runs import train_teacher

test = data.load_dataset("digits", "test").head(N)
x, y = test.x, test.y
teacher, meta = checkpoint.load_teacher("digits")
EPS = meta["eps"]                                       # the radius the teacher was trained for
OPTIONS = attacks.default_attack_options("digits", EPS)  # the kit's PGD / CW strength for digits
print(f"{len(test)} test images, teacher trained at eps = {EPS}, evaluation options {OPTIONS}")"""),
        md("""
<a id="threat"></a>
## 2. The threat model

A classifier $h_\\theta$ maps an image $x\\in[0,1]^{C\\times H\\times W}$ to logits. The adversary may add any
$\\delta$ with $\\|\\delta\\|_\\infty\\le\\epsilon$ (every pixel moves by at most $\\epsilon$) and keeps $x+\\delta$ in
$[0,1]$. It looks for the perturbation with the largest loss:

$$\\max_{\\|\\delta\\|_\\infty\\le\\epsilon}\\ \\ell\\big(h_\\theta(x+\\delta),\\,y\\big).$$

**Robust accuracy** at $\\epsilon$ is the accuracy on the adversary's best answer. An attack only finds *some*
$\\delta$, so the robust accuracy it reports is an *upper bound* on the true one: stronger attacks give lower,
more honest numbers (notebook 05). For `digits` the kit uses the radius printed above (`EPS`, the teacher's
training radius); the paper uses $0.3$ on MNIST and $8/255$ on CIFAR.

**Adversarial training** (how the teacher was made) solves the min-max problem
$\\min_\\theta \\mathbb{E}_{(x,y)}\\max_{\\|\\delta\\|_\\infty\\le\\epsilon}\\ell(h_\\theta(x+\\delta),y)$ with PGD for the
inner max: about $k+1$ times the cost of normal training for PGD-$k$. That cost is what PwoA avoids paying again.
"""),
        md("""
<a id="undefended"></a>
## 3. An undefended model

For comparison we train the same architecture with plain cross-entropy on natural images
(`TeacherConfig(method="none")`): seconds on a CPU.
"""),
        code("""
plain, plain_history, plain_metrics = train_teacher(
    TeacherConfig(dataset="digits", method="none", epochs=UNDEFENDED_EPOCHS, val_pgd_steps=5 if SMOKE else 20,
                  seed=0), progress=PROGRESS)
display(plain_history.round(2))

fig, ax = plt.subplots(figsize=(6, 3.3))
ax.plot(plain_history.epoch, plain_history.val_natural, "o-", label="val natural")
ax.plot(plain_history.epoch, plain_history.val_pgd, "o-", label=f"val PGD (eps={EPS})")
ax.set_xlabel("epoch")
ax.set_ylabel("accuracy (%)")
ax.set_title("undefended model: accurate, not robust")
ax.grid(alpha=0.3)
ax.legend()
show(fig)"""),
        code("""
MODELS = {"robust teacher": teacher, "undefended": plain}
display(pd.DataFrame([{"model": name, "natural accuracy (%)": 100 * attacks.accuracy(m, x, y)}
                      for name, m in MODELS.items()]))"""),
        md("""
<a id="fgsm"></a>
## 4. FGSM in five lines

The **fast gradient sign method** (Goodfellow et al. 2015) linearises the loss around $x$ and takes the best
step under the $\\ell_\\infty$ constraint, which is the sign of the gradient:

$$\\delta_{\\text{FGSM}} = \\epsilon\\cdot\\operatorname{sign}\\big(\\nabla_x\\,\\ell(h_\\theta(x),y)\\big),\\qquad
x_{\\text{adv}} = \\operatorname{clip}_{[0,1]}(x+\\delta).$$

Plain PyTorch (the model in eval mode, so dropout / batch-norm statistics do not move):
"""),
        code("""
def my_fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    grad, = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


rows = []
for name, model in MODELS.items():
    model.eval()
    ours, kit = my_fgsm(model, x, y, EPS), attacks.fgsm(model, x, y, EPS)
    rows.append({"model": name, "FGSM acc, ours (%)": 100 * attacks.accuracy(model, ours, y),
                 "FGSM acc, pwoa_lab (%)": 100 * attacks.accuracy(model, kit, y),
                 "max |x_ours - x_kit|": float((ours - kit).abs().max()),
                 "max |delta|": float((ours - x).abs().max())})
fgsm_table = pd.DataFrame(rows)
display(fgsm_table)"""),
        md("""
<a id="pgd"></a>
## 5. PGD in ten lines

**Projected gradient descent** (Madry et al. 2018) repeats small signed steps of size $\\alpha$ and projects back
onto the allowed set after each one, from a random start in the ball:

$$x^{0} = x + U(-\\epsilon,\\epsilon),\\qquad
x^{t+1} = \\Pi_{\\{\\|x'-x\\|_\\infty\\le\\epsilon\\}\\cap[0,1]}\\Big(x^{t} + \\alpha\\,\\operatorname{sign}\\nabla_x\\ell(h_\\theta(x^t),y)\\Big).$$

The projection on an $\\ell_\\infty$ ball is a clamp. We use the kit's evaluation strength for `digits` (`OPTIONS`,
printed above: 20 steps of $\\alpha = 2.5\\epsilon/20$). To compare with `pwoa_lab.attacks.pgd_linf` number for number, both draw their random start from
a generator with the same seed.
"""),
        code("""
def my_pgd(model, x, y, eps, alpha, steps, generator=None):
    noise = torch.rand(x.shape, generator=generator)
    x_adv = (x + (2 * noise - 1) * eps).clamp(0, 1)              # random start in the ball
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()              # ascent step
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)  # projection
    return x_adv.detach()


steps, alpha = OPTIONS["pgd"]["steps"], OPTIONS["pgd"]["alpha"]
rows, ADV = [], {}
for name, model in MODELS.items():
    ours = my_pgd(model, x, y, EPS, alpha, steps, torch.Generator().manual_seed(0))
    kit = attacks.pgd_linf(model, x, y, EPS, alpha=alpha, steps=steps, generator=torch.Generator().manual_seed(0))
    ADV[name] = kit
    rows.append({"model": name, f"PGD-{steps} acc, ours (%)": 100 * attacks.accuracy(model, ours, y),
                 f"PGD-{steps} acc, pwoa_lab (%)": 100 * attacks.accuracy(model, kit, y),
                 "max |x_ours - x_kit|": float((ours - kit).abs().max()),
                 "max |delta|": float((ours - x).abs().max())})
pgd_table = pd.DataFrame(rows)
display(pgd_table)"""),
        md("Both columns agree: the few lines above *are* the attacks the kit uses. A bar chart of the two tables:"),
        code("""
fig, ax = plt.subplots(figsize=(6, 3.3))
names = list(MODELS)
nat = [100 * attacks.accuracy(MODELS[n], x, y) for n in names]
fg = fgsm_table.iloc[:, 2].tolist()
pg = pgd_table.iloc[:, 2].tolist()
for k, (vals, label) in enumerate([(nat, "natural"), (fg, f"FGSM eps={EPS}"), (pg, f"PGD-{steps} eps={EPS}")]):
    ax.bar(np.arange(len(names)) + 0.27 * (k - 1), vals, width=0.27, label=label)
ax.set_xticks(range(len(names)), names)
ax.set_ylabel("test accuracy (%)")
ax.set_ylim(0, 100)
ax.legend(fontsize=8)
ax.set_title("robust teacher vs undefended model")
show(fig)"""),
        md("""
<a id="grid"></a>
## 6. Natural vs adversarial images

Top row: natural test images with the model's prediction; bottom row: the PGD adversarial versions. Titles are
green when right and red when wrong. For the undefended model the two rows look the same to us and the
predictions change; the robust teacher mostly keeps its answers.
"""),
        code("""
for name, model in MODELS.items():
    with torch.no_grad():
        pred, pred_adv = model(x).argmax(1), model(ADV[name]).argmax(1)
    fig = plots.plot_adversarial_grid(x, ADV[name], pred, pred_adv, y, n=8)
    fig.suptitle(f"{name}: natural (top) vs PGD eps={EPS} (bottom)", fontsize=10)
    show(fig)"""),
        md("The perturbation itself, $x_{adv}-x$, on the scale $[-\\epsilon,\\epsilon]$. Compare the two models: "
           "against a robust model the attack has to spend its budget on pixels that matter to the class (strokes), "
           "against an undefended one almost any direction works."),
        code("""
fig, axes = plt.subplots(2, 6, figsize=(9, 3.2))
for row, name in enumerate(MODELS):
    for i in range(6):
        axes[row][i].imshow((ADV[name] - x)[i, 0], cmap="seismic", vmin=-EPS, vmax=EPS)
        axes[row][i].axis("off")
    axes[row][0].set_title(name, fontsize=9, loc="left")
fig.suptitle("perturbations x_adv - x (red +, blue -)")
show(fig)"""),
        md("""
<a id="slider"></a>
## 7. An ε slider

`widgets.eps_view(models, data, eps)` attacks every model at one $\\epsilon$ and returns a table and the image
grid of the first model; `widgets.eps_widget` wires it to a slider. The plain call comes first (a widget
callback would hide an exception):
"""),
        code("""
table, fig = widgets.eps_view(MODELS, test, eps=EPS, n=len(test))
display(table.round(2))
show(fig)"""),
        code("""
display(widgets.eps_widget(MODELS, test, eps_max=min(1.0, 2 * EPS), n=len(test)))"""),
        md("""
<a id="curve"></a>
## 8. Security curves: accuracy vs ε

A single number hides a lot. A **security curve** plots robust accuracy against the attack budget $\\epsilon$:
at $\\epsilon=0$ it starts at natural accuracy; it must go down as $\\epsilon$ grows, and PGD must be at or below
FGSM. (If PGD were *above* FGSM, the gradients would be misleading the attack: see notebook 05.)
"""),
        code("""
rows = []
for name, model in MODELS.items():
    for eps in [f * EPS for f in EPS_FRACTIONS]:
        table = attacks.evaluate(model, test, ["fgsm", "pgd"], eps=eps,
                                 attack_options=attacks.default_attack_options("digits", eps), progress=False)
        rows += [{"model": name, "eps": eps, "attack": r.attack, "accuracy": r.accuracy} for r in table.itertuples()]
curve = pd.DataFrame(rows)
display(curve.pivot_table(index="eps", columns=["model", "attack"], values="accuracy"))"""),
        code("""
fig, ax = plt.subplots(figsize=(6.5, 4))
colors = {"robust teacher": "tab:blue", "undefended": "tab:red"}
for (name, attack), part in curve.groupby(["model", "attack"]):
    ax.plot(part.eps, part.accuracy, "o-" if attack == "pgd" else "s--", color=colors[name],
            label=f"{name}, {attack.upper()}")
ax.axvline(EPS, color="gray", ls=":", label=f"training eps = {EPS}")
ax.set_xlabel("eps (L-inf)")
ax.set_ylabel("test accuracy (%)")
ax.set_ylim(-2, 102)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
ax.set_title("security curves")
show(fig)"""),
        md("""
<a id="try"></a>
## 9. Things to try

1. Remove the random start from `my_pgd` (start at $x$): does PGD get weaker or stronger on each model?
2. Replace `grad.sign()` by the normalised gradient `grad / grad.abs().amax((1, 2, 3), keepdim=True)`: you get
   an $\\ell_\\infty$ attack that is much weaker; why is the sign the right step for an $\\ell_\\infty$ budget?
3. Run PGD with 1, 5, 20 and 100 steps on the teacher: where does the robust accuracy stop falling?
4. Train the undefended model for more epochs: does its natural accuracy reach the teacher's? Its robust accuracy?
5. Use `TeacherConfig(method="fgsm_rs", epochs=20)` (fast adversarial training) and add it to `MODELS`: where
   does it sit on the security curve?
6. Try the CW attack (`attacks.cw_linf`), which maximises the margin $\\max_{j\\ne y}z_j-z_y$ instead of the
   cross-entropy.
"""),
    ])


# =============================================================================================== 02

def nb02():
    return notebook([
        md("""
# 02 · Naive pruning breaks robustness

Pruning removes weights. Done the usual way (remove the small ones, fine-tune with cross-entropy on natural
images) it keeps a robust model's natural accuracy and loses its robustness: the paper's Fig. 1(b), which we
reproduce here on `digits`.

**Contents**
1. [Parameters and set-up](#setup)
2. [Magnitude pruning, one shot](#magnitude)
3. [ADMM pruning and the naive loss](#admm)
4. [Figure 1(b): robustness vs pruning rate](#fig1)
5. [A prune-rate slider](#slider)
6. [Per-layer sparsity and the weights that were kept](#layers)
7. [Things to try](#try)

""" + runtime_note("02")),
        md('<a id="setup"></a>\n## 1. Parameters and set-up'),
        code(params_cell('RATES = (4, 16) if SMOKE else (2, 4, 8, 16)   # pruning rates R: keep 1/R of the weights\n'
                         'SEEDS = (0,) if SMOKE else (0, 1, 2)          # every run once per seed: mean and spread\n'
                         'N = 40 if SMOKE else 200                      # test images for the one-shot demo')),
        code(SETUP + """

from pwoa_lab import analyses, attacks, checkpoint, data, figures, plots, presets, pruning, runs, widgets
from pwoa_lab.presets import preset_config

teacher, meta = checkpoint.load_teacher("digits")
EPS = meta["eps"]
test = data.load_dataset("digits", "test")
OPTIONS = attacks.default_attack_options("digits", EPS)
print(f"teacher: {meta['model']}, eps = {EPS}, rates {RATES}, preset {PRESET!r}")"""),
        md("""
<a id="magnitude"></a>
## 2. Magnitude pruning, one shot

A pruning rate $R$ keeps $1/R$ of the weights: $2\\times,4\\times,8\\times,16\\times$ are sparsities $0.5, 0.75,
0.875, 0.9375$. Per layer $l$ we keep the $k_l=\\lceil |W_l|/R\\rfloor$ weights of largest magnitude: a binary mask
$M_l$ and the pruned weights $W_l\\odot M_l$. The paper prunes every layer at the same rate (per-layer uniform);
the kit does that for every conv and linear weight.

Removing weights without any retraining already hurts; how much, at each rate?
"""),
        code("""
rows = []
xs, ys = test.x[:N], test.y[:N]
for rate in (1,) + tuple(RATES):
    model = copy.deepcopy(teacher)
    if rate > 1:
        pruning.prune_by_magnitude(model, rate)
    table = attacks.evaluate(model, (xs, ys), ["natural", "pgd"], eps=EPS, attack_options=OPTIONS, progress=False)
    rows.append({"rate": rate, "sparsity": float(pruning.sparsity_report(model).iloc[-1].sparsity),
                 **{r.attack: r.accuracy for r in table.itertuples()}})
oneshot = pd.DataFrame(rows)
display(oneshot)

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(oneshot.rate, oneshot.natural, "o-", label="natural")
ax.plot(oneshot.rate, oneshot.pgd, "s-", label=f"PGD eps={EPS}")
ax.set_xscale("log", base=2)
ax.set_xticks(oneshot.rate, [f"{r:g}x" for r in oneshot.rate])
ax.set_xlabel("pruning rate (1x = dense teacher)")
ax.set_ylabel("test accuracy (%)")
ax.set_ylim(-2, 102)
ax.grid(alpha=0.3)
ax.legend()
ax.set_title("one-shot magnitude pruning, no fine-tuning")
show(fig)"""),
        md("""
Which layers does that damage come from? `analyses.layer_sensitivity` prunes one layer at a time (still one
shot, no fine-tuning), then all of them, then all but the first conv layer and the classifier (`scope="hidden"`).
At 8x the two smallest layers (288 and 1,290 weights, about 1% of the network) do most of the damage: the first
conv layer keeps 36 weights for its 32 filters. (At 16x every layer hurts; try it.) Keeping them dense is a
common convention in the pruning literature; the kit prunes every layer by default, as the paper's per-layer
uniform rule does.
"""),
        code("""
SENS_RATE = 8
sens = analyses.layer_sensitivity(teacher, "digits", SENS_RATE, n=N)
display(sens.round(1))
fig, ax = plt.subplots(figsize=(6.5, 3.3))
ax.bar(sens.pruned, sens.pgd, color="tab:red")
ax.set_ylabel(f"PGD accuracy (%), eps={EPS}")
ax.set_title(f"one-shot {SENS_RATE}x, one layer at a time")
ax.tick_params(axis="x", labelrotation=30)
show(fig)"""),
        md("""
With the first conv layer and the classifier kept dense (`scope="hidden"`), one-shot pruning at 8x costs little
robust accuracy. So is robustness lost in the pruning, or in the fine-tuning that every pruning method does
afterwards to win natural accuracy back? `analyses.finetune_drift` separates the two: it prunes the teacher
once by magnitude (epoch 0), then fine-tunes the masked model on natural images with each loss (naive
cross-entropy, distillation `kd`, PwoA) at two learning rates, and records validation accuracy after every epoch.
Read the right panel from epoch 0: how far does each loss pull robust accuracy down, and how does that depend on
the learning rate? The left panel shows what the fine-tuning is for.
"""),
        code("""
drift = analyses.finetune_drift(teacher, "digits", SENS_RATE, methods=("naive", "kd", "pwoa"),
                                   lrs=(5e-4,) if SMOKE else (5e-4, 5e-5), epochs=1 if SMOKE else 6,
                                   preset=PRESET, scope="hidden", cache_dir=cache_dir, progress=PROGRESS)
display(drift.pivot_table(index=["method", "lr"], columns="epoch", values="val_pgd").round(1))
show(plots.plot_finetune_drift(drift, title=f"one-shot {SENS_RATE}x (scope hidden), then fine-tuning"))"""),
        md("""
If fine-tuning on natural images is what loses the robustness, does it lose it because it sees *more data*, or
because it takes *more optimizer steps*? `analyses.learning_curve` separates the two (both after one-shot
pruning): (a) the number of training images at a fixed number of optimizer steps, and (b) the number of steps
on a fixed set of images. On MNIST (the README's table) PwoA at 8x fell from 77 (600 images per class) to 52
(the whole training split) with the same number of epochs; ten times the data at the same epochs is also ten
times the steps. Here on digits (126 images per class at most):
"""),
        code("""
curve = analyses.learning_curve(teacher, "digits", rates=(SENS_RATE,), methods=("naive", "pwoa"),
                                sizes=(12, 120) if SMOKE else (12, 40, 120), fixed_steps=40 if SMOKE else 120,
                                steps=(40,) if SMOKE else (38, 114, 342), fixed_size=120, preset=PRESET,
                                scope="hidden", cache_dir=cache_dir, progress=PROGRESS)
display(curve.round(1))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, axis, x in zip(axes, ("data", "steps"), ("images", "steps")):
    for method, part in curve[curve.axis == axis].groupby("method"):
        ax.plot(part[x], part.pgd, marker="o", label=method, color=plots.METHOD_STYLE[method]["color"])
    ax.axhline(float(curve.loc[curve.method == "oneshot", "pgd"].iloc[0]), ls=":", color="gray",
               label="one-shot, no training")
    ax.set_xscale("log")
    ax.set_xlabel(f"{x} ({'fixed steps' if axis == 'data' else 'fixed images'})")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("test PGD accuracy (%)")
axes[0].legend(fontsize=8)
show(fig)"""),
        md("""
<a id="admm"></a>
## 3. ADMM pruning and the naive loss

Hard pruning in one shot is crude. The paper (following Ye et al. 2019) lets the weights move toward a sparse
solution first, with ADMM on the constrained problem $\\min_W L(W)$ s.t. $\\|W_l\\|_0\\le k_l$:

$$\\min_W\\ L(W) + \\sum_l \\frac{\\rho_l}{2}\\,\\|W_l - Z_l + U_l\\|_F^2,$$

and every few epochs $Z_l\\leftarrow\\Pi_{\\|\\cdot\\|_0\\le k_l}(W_l+U_l)$ (keep the $k_l$ largest),
$U_l\\leftarrow U_l+W_l-Z_l$, $\\rho_l\\leftarrow\\min(1, 1.35\\rho_l)$. Then the model is hard-pruned to the
support of $Z$ and retrained with the mask held (pruned weights stay exactly 0).

The pipeline is the same for every method; only $L$ changes. **Naive pruning** uses the plain cross-entropy on
natural images,

$$L_{CE}(\\theta)=\\mathbb{E}_{(x,y)}\\,\\ell_{CE}(f_\\theta(x), y),$$

which rewards natural accuracy only: nothing tells the pruned network to stay robust. **PwoA** replaces it by
$L_D + L_H$ (notebook 03). `figures.figure1` runs both at every rate and evaluates natural, FGSM, PGD and
(in the `quick` preset) AutoAttack accuracy on the test set; every run is cached.
"""),
        md('<a id="fig1"></a>\n## 4. Figure 1(b): robustness vs pruning rate'),
        code("""
fig1 = figures.figure1(dataset="digits", rates=RATES, methods=("oneshot", "naive", "pwoa"), preset=PRESET,
                       seeds=SEEDS, cache_dir=cache_dir, progress=PROGRESS)
summary = figures.seed_summary(fig1)
display(summary.round(2))"""),
        code("""
show(plots.plot_figure1(fig1, metrics=("natural", "pgd", "aa"),
                        title=f"Figure 1(b) on digits (preset {PRESET})"))"""),
        md("""
Each point is the mean over `SEEDS` with a bar of one standard deviation; the x axis gives each rate with the share
of the *whole network's* weights that are zero. The grey line is the control **one-shot pruning with no training
at all**: magnitude pruning of the teacher, nothing else. Compare it with the two fine-tuned methods. It keeps
much of the teacher's robust accuracy; it is natural accuracy that fine-tuning buys back, and on natural images
that fine-tuning is what costs robustness. Distillation (PwoA) slows that loss; naive cross-entropy does not.

The paper's claim, checked on this table: relative to the dense teacher, naive pruning keeps natural accuracy but
its robust (PGD) accuracy falls, while PwoA stays close to the teacher. `figures.phenomenon` puts the means side
by side (`naive_over_teacher`: the fraction of the teacher's robust accuracy naive pruning keeps; `pwoa_gap`:
how many points PwoA is below the teacher), and `figures.claim_in_words` says per rate whether the claim holds.
With the `smoke` preset the runs are too short to show it.
"""),
        code("""
check = figures.phenomenon(summary, "pgd")
display(check.round(2))
for line in figures.claim_in_words(check, "pgd"):
    print(line)"""),
        md("The training curve of one naive run (validation accuracy per epoch; ADMM, then the hard prune, then "
           "masked retraining): natural accuracy recovers after the hard prune, robust accuracy does not."),
        code("""
row, history = runs.prune_row(teacher, preset_config("digits", PRESET, method="naive", rate=RATES[-1]),
                                     presets.eval_settings("digits", PRESET), cache_dir,
                                     progress=PROGRESS)
show(plots.plot_history(history.dropna(subset=["val_pgd"]), title=f"naive pruning at {RATES[-1]}x"))"""),
        md("""
<a id="slider"></a>
## 5. A prune-rate slider

`widgets.prune_rate_view(teacher, rate=..., method=...)` prunes (or reads the cache), and returns the teacher vs
the pruned model (natural / FGSM / PGD) and the histogram of the teacher's largest layer split into the weights
that the pruned model kept (blue) and removed (red). Plain call first, then the slider: every position
computed above in Figure 1 comes from the cache at once; a new method or rate trains first (progress bar).
"""),
        code("""
table, fig = widgets.prune_rate_view(teacher, "digits", rate=RATES[-1], method="naive", preset=PRESET,
                                     cache_dir=cache_dir, progress=PROGRESS)
display(table.round(2))
show(fig)"""),
        code("""
display(widgets.prune_rate_widget(teacher, "digits", preset=PRESET, rates=RATES, methods=("naive", "pwoa", "kd"),
                                  cache_dir=cache_dir))"""),
        md("""
<a id="layers"></a>
## 6. Per-layer sparsity and the weights that were kept

`pruning.sparsity_report` lists every pruned layer: shape, weights, non-zeros, sparsity. With per-layer uniform
pruning every layer ends at the same sparsity $1-1/R$ (up to rounding), from the tiny first conv layer
(288 weights) to `fc1`, which holds most of the weights and so most of the savings.
"""),
        code("""
pruned = runs.load_cached_model(row["key"], teacher, cache_dir)
report = pruning.sparsity_report(pruned)
display(report)

layers = report[report.layer != "total"]
fig, ax = plt.subplots(figsize=(6, 3.3))
ax.bar(layers.layer, layers.params, color="lightgray", label="weights")
ax.bar(layers.layer, layers.nonzero, color="tab:blue", label="non-zero after pruning")
ax.set_yscale("log")
ax.set_ylabel("count")
ax.legend(fontsize=8)
ax.set_title(f"naive {RATES[-1]}x: sparsity {float(report.iloc[-1].sparsity):.3f}")
show(fig)"""),
        md("Kept vs pruned weights of every layer, as histograms of the *teacher's* weights (magnitude pruning removes "
           "the middle of each histogram; ADMM lets weights move first, so the cut is not perfectly sharp):"),
        code("""
teacher_weights = dict(teacher.named_parameters())
for name, w in pruning.prunable_weights(pruned).items():
    fig = plots.plot_weight_histogram(teacher_weights[name], w != 0, title=f"{name}: naive {RATES[-1]}x")
    show(fig)"""),
        md("""
<a id="try"></a>
## 7. Things to try

1. Compare per-layer and global magnitude pruning: `pruning.magnitude_masks(teacher, 8, mode="global")`. Which
   layers end sparser? What happens to one-shot PGD accuracy?
2. Pass `scope="reference"` to `figures.figure1` (the reference code's rule: convs and a layer named `fc`,
   so on LeNet only the conv layers are pruned). How much of the model is actually compressed then? (`pruning.sparsity_report(model, "all")`.)
   Then `scope="hidden"` (first conv and classifier dense): how close does PwoA get to the teacher at 4x and 8x?
   (The README has the table from `pwoa-lab figure1 --dataset digits --preset quick --scope hidden`.)
3. Move the slider to `kd` (distillation alone, no HSIC term): where does it land between naive and PwoA?
4. Go beyond 16x: `figures.figure1(rates=(32, 64), ...)`. Where does PwoA break too?
5. Make naive pruning longer (`retrain_epochs=40` as an override to `figure1`): does more cross-entropy
   fine-tuning bring robustness back, or push it further down?
6. Run `analyses.finetune_drift` with `scope="all"`, then at 16x, then with `epochs=15`. Does distillation
   stop the fall of robust accuracy, or only slow it down? (The README has the MNIST numbers at 8x.)
"""),
    ])


# =============================================================================================== 03

def nb03():
    return notebook([
        md("""
# 03 · Self-distillation and the HSIC bottleneck

PwoA's loss has two parts: self-distillation from the dense robust teacher ($L_D$), and the HSIC bottleneck
($L_H$, from HBaR, Wang et al. 2021). This notebook takes them apart: soft labels and temperature; what HSIC
measures, on toy data where we know the answer; the HBaR loss; and how naive and PwoA training move each layer
in the *information plane*.

**Contents**
1. [Parameters and set-up](#setup)
2. [Self-distillation: temperature and soft labels](#kd)
3. [HSIC on toy data](#hsic)
4. [The HBaR loss on the teacher](#hbar)
5. [The information plane: naive vs PwoA](#plane)
6. [λx and λy sliders](#lambda)
7. [Things to try](#try)

""" + runtime_note("03")),
        md('<a id="setup"></a>\n## 1. Parameters and set-up'),
        code(params_cell('RATE = 16 if SMOKE else 8     # pruning rate of the information-plane runs\n'
                         'M = 128                       # batch size for HSIC (the paper: 128)')),
        code(SETUP + """

from pwoa_lab import checkpoint, data, distillation, hsic, models, plots, presets, runs, widgets
from pwoa_lab.presets import preset_config

teacher, meta = checkpoint.load_teacher("digits")
train, test = data.load_dataset("digits", "train"), data.load_dataset("digits", "test")"""),
        md("""
<a id="kd"></a>
## 2. Self-distillation: temperature and soft labels

The teacher's softmax at temperature $T$, $p_T(x)=\\sigma(f_{\\theta_0}(x)/T)$, is its "dark knowledge": at
$T=1$ it is almost one-hot; at high $T$ it shows how the teacher ranks the *other* classes, i.e. the geometry of
its robust logits. PwoA's student $\\theta$ starts as a copy of the teacher $\\theta_0$ and, while being pruned,
matches these soft labels:

$$L_D(\\theta) = T^2\\cdot\\frac{1}{B}\\sum_{i=1}^B \\mathrm{KL}\\Big(\\sigma\\big(f_{\\theta_0}(x_i)/T\\big)\\,\\Big\\|\\,
\\sigma\\big(f_\\theta(x_i)/T\\big)\\Big),\\qquad T=30.$$

The $T^2$ factor keeps gradient sizes comparable across temperatures (the gradient of the KL w.r.t. the logits
scales like $1/T^2$). No labels and no adversarial examples are needed: only natural images and the teacher.
"""),
        code("""
TEMPS = (1, 4, 30)
with torch.no_grad():
    logits = teacher(test.x[:3])
rows = []
for t in TEMPS:
    p = distillation.soft_labels(logits, t)
    rows.append({"T": t, "max prob (image 0)": float(p[0].max()), "entropy (nats, image 0)":
                 float(torch.special.entr(p[0]).sum()), "2nd class (image 0)": int(p[0].argsort()[-2])})
display(pd.DataFrame(rows))

fig, axes = plt.subplots(1, len(TEMPS), figsize=(11, 3), sharey=True)
for ax, t in zip(axes, TEMPS):
    p = distillation.soft_labels(logits, t)[0]
    ax.bar(range(10), p, color=["tab:green" if c == int(test.y[0]) else "tab:gray" for c in range(10)])
    ax.set_title(f"T = {t}")
    ax.set_xticks(range(10))
    ax.set_xlabel("class")
axes[0].set_ylabel("teacher probability")
fig.suptitle(f"soft labels of one test image (true class {int(test.y[0])}, green)")
fig.tight_layout()
show(fig)"""),
        md("""
The $T^2$ factor, checked: the gradient of $\\mathrm{KL}$ w.r.t. the student logits shrinks like $1/T^2$;
$T^2\\,\\mathrm{KL}$ keeps it of order one. The student here is the teacher plus a little weight noise.
"""),
        code("""
student = copy.deepcopy(teacher)
with torch.no_grad():
    for p in student.parameters():
        p.add_(0.05 * p.abs().mean() * torch.randn_like(p))
rows = []
x_batch = train.x[:M]
with torch.no_grad():
    t_logits = teacher(x_batch)
for t in (1, 4, 10, 30, 100):
    s_logits = student(x_batch).detach().requires_grad_(True)
    loss = distillation.kd_loss(s_logits, t_logits, t)
    grad, = torch.autograd.grad(loss, s_logits)
    rows.append({"T": t, "T^2 KL": loss.item(), "KL": loss.item() / t ** 2,
                 "|grad| of T^2 KL": grad.norm().item(), "|grad| of KL": grad.norm().item() / t ** 2})
kd_table = pd.DataFrame(rows)
display(kd_table)

fig, ax = plt.subplots(figsize=(5.5, 3.3))
ax.loglog(kd_table["T"], kd_table["|grad| of T^2 KL"], "o-", label="T^2 KL (used)")
ax.loglog(kd_table["T"], kd_table["|grad| of KL"], "s--", label="KL alone")
ax.set_xlabel("temperature T")
ax.set_ylabel("gradient norm w.r.t. logits")
ax.grid(alpha=0.3, which="both")
ax.legend()
show(fig)"""),
        md("""
<a id="hsic"></a>
## 3. HSIC on toy data

The **Hilbert–Schmidt independence criterion** measures dependence between two variables $A, B$ from a batch of
$m$ pairs $(a_i,b_i)$. Build one kernel (similarity) matrix per variable, $K_{ij}=k(a_i,a_j)$ and
$L_{ij}=l(b_i,b_j)$, centre them with $H=I-\\tfrac1m\\mathbf 1\\mathbf 1^\\top$, and compare:

$$\\mathrm{HSIC}_b(A,B)=\\frac{1}{(m-1)^2}\\operatorname{tr}(KHLH).$$

For a characteristic kernel (the Gaussian) the population HSIC is 0 **exactly** when $A$ and $B$ are
independent. The kit uses the dimension-scaled Gaussian kernel
$k(a,a')=\\exp\\!\\big(-\\|a-a'\\|^2/(2\\sigma^2 d)\\big)$ with $\\sigma=5$ (so a layer of any width $d$ gets a
sensible bandwidth) and a linear kernel on one-hot labels.

HBaR uses the **normalised** HSIC, which is scale-free and so comparable across layers:

$$\\mathrm{nHSIC}(A,B)=\\operatorname{tr}(R_A R_B),\\qquad R=\\tilde K(\\tilde K+\\varepsilon m I)^{-1},\\quad
\\tilde K = HKH,\\ \\varepsilon=10^{-5}.$$

Toy data where we know the truth: $x\\in\\mathbb R^{20}$ Gaussian; a *dependent* $z=3\\tanh(xW/\\sqrt{20})+$ small
noise; an *independent* $z'$ made the same way from a fresh $x'$ (same marginal distribution, no link to $x$).
"""),
        code("""
def toy(m, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 20, generator=g, dtype=torch.float64)
    w = torch.randn(20, 10, generator=g, dtype=torch.float64)
    z_dep = 3 * torch.tanh(x @ w / 20 ** 0.5) + 0.05 * torch.randn(m, 10, generator=g, dtype=torch.float64)
    z_ind = 3 * torch.tanh(torch.randn(m, 20, generator=g, dtype=torch.float64) @ w / 20 ** 0.5)
    return x, z_dep, z_ind


rows = []
for seed in range(5):
    x_, z_dep, z_ind = toy(M, seed)
    rows.append({"seed": seed,
                 "HSIC_b dependent": hsic.biased_hsic(x_, z_dep).item(),
                 "HSIC_b independent": hsic.biased_hsic(x_, z_ind).item(),
                 "nHSIC dependent": hsic.normalized_hsic(x_, z_dep).item(),
                 "nHSIC independent": hsic.normalized_hsic(x_, z_ind).item()})
toy_table = pd.DataFrame(rows).set_index("seed")
toy_table["HSIC_b ratio"] = toy_table["HSIC_b dependent"] / toy_table["HSIC_b independent"]
toy_table["nHSIC ratio"] = toy_table["nHSIC dependent"] / toy_table["nHSIC independent"]
pd.set_option("display.float_format", lambda v: f"{v:.4g}")
display(toy_table)
pd.reset_option("display.float_format")"""),
        md("""
**Teaching point.** With the paper's wide kernel ($\\sigma=5$) and a batch of $m=128$, the biased HSIC separates
dependent from independent data clearly (ratio well above 1), but the normalised HSIC barely does (ratio near 1):
the centred kernel of a random batch has many eigenvalues above the tiny ridge $\\varepsilon m$, so each $R$ is
close to a projection on a large subspace, and two such projections overlap a lot whether or not the variables
are related. nHSIC is a good *regulariser signal* (smooth, scale-free, differentiable) but a poor *independence
test* on small batches. The bandwidth $\\sigma$ matters for both:
"""),
        code("""
SIGMAS = (0.1, 0.3, 1, 2, 5, 10, 30, 100)
rows = []
for sigma in SIGMAS:
    for seed in range(3):
        x_, z_dep, z_ind = toy(M, seed)
        rows.append({"sigma": sigma, "seed": seed,
                     "HSIC_b": hsic.biased_hsic(x_, z_dep, sigma).item() / hsic.biased_hsic(x_, z_ind, sigma).item(),
                     "nHSIC": hsic.normalized_hsic(x_, z_dep, sigma).item() / hsic.normalized_hsic(x_, z_ind, sigma).item()})
sweep = pd.DataFrame(rows).groupby("sigma")[["HSIC_b", "nHSIC"]].mean()
display(sweep.rename(columns=lambda c: c + " dependent / independent"))

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.semilogx(sweep.index, sweep["HSIC_b"], "o-", label="HSIC_b")
ax.semilogx(sweep.index, sweep["nHSIC"], "s-", label="nHSIC")
ax.axhline(1, color="gray", ls=":")
ax.axvline(5, color="tab:blue", ls="--", alpha=0.5, label="sigma = 5 (paper)")
ax.set_yscale("log")
ax.set_xlabel("kernel bandwidth sigma")
ax.set_ylabel("dependent / independent")
ax.set_title(f"how well each estimator separates (m = {M})")
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
show(fig)"""),
        md("""
Very small $\\sigma$: every kernel matrix is close to the identity (each point only resembles itself), so neither
estimator sees anything. Very large $\\sigma$ makes the Gaussian kernel nearly linear. The biased HSIC is a good
test over a wide middle range; nHSIC needs a much wider kernel before it separates.

<a id="hbar"></a>
## 4. The HBaR loss on the teacher

HBaR (the HSIC bottleneck as a regulariser) asks every hidden layer $Z_j$ to forget about the input and remember
the label:

$$L_H(\\theta)=\\sum_j\\Big[\\lambda_x\\,\\mathrm{nHSIC}(X,Z_j)-\\lambda_y\\,\\mathrm{nHSIC}(Y,Z_j)\\Big].$$

Squeezing $\\mathrm{nHSIC}(X,Z_j)$ makes the layer less sensitive to small input changes (robustness);
rewarding $\\mathrm{nHSIC}(Y,Z_j)$ keeps what is needed to classify. The paper uses
$\\lambda_x=2\\cdot10^{-4}, \\lambda_y=5\\cdot10^{-5}$ on MNIST, and so does the kit's `digits` preset. The three
hidden layers of the small CNN, on one batch of 128 training images:
"""),
        code("""
xb, yb = train.x[:M], train.y[:M]
with torch.no_grad():
    _, hiddens = models.logits_and_hiddens(teacher, xb)
loss, terms = hsic.hbar_loss(xb, yb, hiddens, 10, lambda_x=2e-4, lambda_y=5e-5)
hbar_table = pd.DataFrame({"layer": teacher.hidden_names, "shape": [tuple(h.shape[1:]) for h in hiddens],
                           "nHSIC(X, Z)": terms.hsic_xz, "nHSIC(Y, Z)": terms.hsic_yz})
display(hbar_table)
print(f"L_H = {loss.item():.5f}   (upper bound of nHSIC with HKH centring: m - 1 = {M - 1}; Y has rank <= 9)")

fig, ax = plt.subplots(figsize=(5, 3.6))
ax.plot(terms.hsic_xz, terms.hsic_yz, "o-")
for name, a, b in zip(teacher.hidden_names, terms.hsic_xz, terms.hsic_yz):
    ax.annotate(name, (a, b), fontsize=8, xytext=(4, 4), textcoords="offset points")
ax.set_xlabel("nHSIC(X, Z)")
ax.set_ylabel("nHSIC(Y, Z)")
ax.set_title("the dense teacher's layers in the information plane")
ax.grid(alpha=0.3)
show(fig)"""),
        md("""
<a id="plane"></a>
## 5. The information plane: naive vs PwoA

Every pruning run records, after each validation, $\\mathrm{nHSIC}(X,Z_j)$ and $\\mathrm{nHSIC}(Y,Z_j)$ of every
layer on a fixed validation batch. Plotting one against the other over training (dots get darker as training
goes on) shows how the loss moves each layer. We prune at the same rate with the naive loss and with PwoA
(cached runs: notebook 02 already trained them if you ran it with the same cache). Rows without validation
(`val_pgd` is NaN) carry no HSIC values and are dropped.
"""),
        code("""
SETTINGS = presets.eval_settings("digits", PRESET)
rows, histories = [], {}
for method in ("naive", "pwoa"):
    row, hist = runs.prune_row(teacher, preset_config("digits", PRESET, method=method, rate=RATE), SETTINGS,
                               cache_dir, progress=PROGRESS)
    rows.append(row)
    label = plots.METHOD_STYLE[method]["label"]
    histories[label] = hist.dropna(subset=["val_pgd"])
display(pd.DataFrame(rows)[["method", "rate", "natural", "fgsm", "pgd", "aa", "train_seconds", "cached"]].round(2))
hsic_cols = [c for c in histories[label].columns if c.startswith("hsic_")]
display(histories[label][["phase", "epoch", "val_natural", "val_pgd"] + hsic_cols].round(2))"""),
        code("""
show(plots.plot_information_plane(histories, teacher.hidden_names))"""),
        md("""
Read it layer by layer. $L_{CE}$ only asks for the right label, so nothing holds the layers where the robust
teacher had them; $L_D$ pulls the student's logits toward the teacher's, and $L_H$ explicitly pushes
$\\mathrm{nHSIC}(X,Z_j)$ down and $\\mathrm{nHSIC}(Y,Z_j)$ up. Do the two runs end in different places? Compare
with the dense teacher's points in Section 4. (With the `smoke` preset the runs are a few epochs long and the
curves are short.)

<a id="lambda"></a>
## 6. λx and λy sliders

`widgets.lambda_view` prunes with $L_D$ alone ($\\lambda=0$) and with $L_D+L_H$ at the chosen weights (cached),
and shows their accuracies and information planes. Plain call with the paper's values, then the sliders
(a new pair of values trains two runs first):
"""),
        code("""
table, fig = widgets.lambda_view(teacher, "digits", lambda_x=2e-4, lambda_y=5e-5, rate=RATE, preset=PRESET,
                                 cache_dir=cache_dir, progress=PROGRESS)
display(table.round(2))
show(fig)"""),
        code("""
display(widgets.lambda_widget(teacher, "digits", rate=RATE, preset=PRESET, cache_dir=cache_dir))"""),
        md("""
<a id="try"></a>
## 7. Things to try

1. In the toy example, grow the batch: `toy(512, 0)`. Does nHSIC separate better? (Cost: an $m\\times m$ solve.)
2. Replace the wide kernel by $\\sigma=1$ in `hsic.normalized_hsic`; which layers of the teacher change most?
3. Compare centrings: `hsic.normalized_hsic(a, b, centering="kh")` (the reference code's one-sided $KH$) and
   `"hkh"` (the HBaR paper): same value up to round-off; why? (hint: $H$ is idempotent, and the trace is cyclic)
4. Distil at $T=1$ instead of $30$ (`runs.prune_row(teacher, preset_config("digits", PRESET,
   method="kd", rate=RATE, temperature=1.0), ...)`). What happens to the robust accuracy?
5. Push $\\lambda_x$ to $2\\cdot10^{-2}$ with the slider: at what point does the bottleneck squeeze out the
   label information too, and natural accuracy drop?
"""),
    ])


# =============================================================================================== 04

def nb04():
    return notebook([
        md("""
# 04 · Efficiency: PwoA vs adversarial pruning, and the mix ratio

PwoA never generates adversarial examples. The baselines do: **AdvPrune** (Ye et al. 2019) runs the same ADMM
pipeline with cross-entropy on PGD examples, and **HYDRA** (Sehwag et al. 2020) learns which weights to keep with
the TRADES loss. The paper's Fig. 3 plots robust accuracy against training time and finds that the baselines
need several times PwoA's time to reach its robustness. The **mix ratio** $r$ interpolates: with probability $r$
a batch is replaced by PGD examples.

**Contents**
1. [Parameters and set-up](#setup)
2. [The cost of a batch](#cost)
3. [Figure 3: robust accuracy vs training time](#fig3)
4. [The time ratio](#ratio)
5. [Mix-ratio slider and method checkboxes](#slider)
6. [Things to try](#try)

""" + runtime_note("04")),
        md('<a id="setup"></a>\n## 1. Parameters and set-up'),
        code(params_cell('# the paper: (0, 0.2, 0.4, 0.6, 0.8, 1), many hours on a CPU at r near 1 (see the runtime note)\n'
                         'MIX_RATIOS = (0, 1) if SMOKE else (0, 0.5, 1)\n'
                         'METHODS = ("pwoa", "advprune", "hydra")\n'
                         'RATE = 4')),
        code(SETUP + """

from pwoa_lab import checkpoint, data, figures, plots, runs, widgets
from pwoa_lab.presets import preset_config

teacher, meta = checkpoint.load_teacher("digits")
info = data.dataset_info("digits")
k_mix = preset_config("digits", PRESET).resolved().adv_steps
k_trades = preset_config("digits", PRESET, method="hydra").resolved().adv_steps
print(f"PGD steps of a mixed-in batch: {k_mix} (ADMM methods), TRADES inner steps: {k_trades} (HYDRA, preset {PRESET})")"""),
        md("""
<a id="cost"></a>
## 2. The cost of a batch

With mix ratio $r$, each batch is, with probability $r$, replaced by PGD-$k$ examples made against the current
student, and all loss terms then use that batch. A PGD-$k$ attack costs $k$ forward-backward passes, so the
expected cost of a batch is

$$\\text{cost}(r)\\approx(1+k\\,r)\\ \\text{clean passes}.$$

$r=0$ is pure PwoA (distillation also needs a teacher forward pass, cached here since `digits` has no
augmentation); $r=1$ with cross-entropy is AdvPrune; HYDRA at $r=1$ is TRADES (its own inner PGD-$k$ on a KL
loss). The loss of each method at mix ratio $r$, on a batch $\\tilde x$ that is adversarial with probability $r$:

| method | loss on the batch | adversarial examples |
| --- | --- | --- |
| PwoA | $L_D(\\tilde x)+L_H(\\tilde x)$ (+ ADMM) | only when $r>0$ |
| AdvPrune | $L_{CE}(\\tilde x)$ (+ ADMM) | $r=1$ in the original |
| HYDRA | TRADES: $\\ell_{CE}(f(x),y)+\\beta\\,\\mathrm{KL}(f(x)\\|f(x_{adv}))$ on scores, then weights | $r=1$ in the original |
"""),
        code("""
r = np.linspace(0, 1, 11)
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(r, 1 + k_mix * r, label=f"PwoA / AdvPrune, PGD-{k_mix}")
ax.plot(r, 1 + k_trades * r, label=f"HYDRA (TRADES), PGD-{k_trades}")
ax.set_xlabel("mix ratio r")
ax.set_ylabel("expected cost per batch (clean passes)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
ax.set_title("the cost model 1 + k r")
show(fig)
display(pd.DataFrame({"r": r[::2], f"1 + {k_mix} r": 1 + k_mix * r[::2], f"1 + {k_trades} r": 1 + k_trades * r[::2]}))"""),
        md("""
<a id="fig3"></a>
## 3. Figure 3: robust accuracy vs training time

`figures.figure3` prunes the teacher at rate 4 with every method at every mix ratio (cached per run), and
returns `curves` (one row per run and epoch: training seconds so far, validation natural and PGD accuracy) and
`summary` (one row per run: final test accuracies, total training seconds and the time ratio of Section 4).
Training time excludes evaluation.
"""),
        code("""
curves, summary = figures.figure3(dataset="digits", rate=RATE, mix_ratios=MIX_RATIOS, methods=METHODS,
                                      preset=PRESET, cache_dir=cache_dir, progress=PROGRESS)
display(summary.round(2))"""),
        code("""
target = float(summary.target_val_pgd.iloc[0])
show(plots.plot_figure3(curves.dropna(subset=["val_pgd"]), target=target,
                        title=f"Figure 3 on digits, {RATE}x (preset {PRESET})"))"""),
        md("""
<a id="ratio"></a>
## 4. The time ratio

The paper compares methods by the time they need to reach PwoA's robustness. The kit measures it the same way:

$$\\text{time ratio}=\\frac{\\text{training seconds until the run's validation PGD accuracy first reaches }
a^\\star\\text{ with an already sparse model}}{\\text{PwoA's } (r=0)\\text{ total training seconds}},$$

where $a^\\star$ is PwoA's ($r=0$) final validation PGD accuracy (the dotted line above). Only epochs after the
hard prune count (`retrain` for the ADMM methods, `finetune` for HYDRA): a dense model in the middle of ADMM is
not a pruned model yet. NaN means the run never reached $a^\\star$; on CIFAR-100 the paper's baselines never do.
Since it is measured wall time, it depends on the machine, and on a busy machine it is noisy: compare it with the
$1+kr$ cost model.
"""),
        code("""
ratio = summary.pivot_table(index="mix_ratio", columns="method", values="time_ratio", dropna=False)
display(ratio.round(2))
seconds = summary.pivot_table(index="mix_ratio", columns="method", values="train_seconds")
display(seconds.round(1))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
for method, part in summary.groupby("method"):
    style = plots.METHOD_STYLE[method]
    ax1.plot(part.mix_ratio, part.train_seconds, marker=style["marker"], color=style["color"], label=style["label"])
    ax2.plot(part.mix_ratio, part.time_ratio, marker=style["marker"], color=style["color"], label=style["label"])
ax1.set_xlabel("mix ratio r")
ax1.set_ylabel("total training seconds")
ax1.set_title("cost of a run")
ax2.axhline(1, color="gray", ls=":")
ax2.set_xlabel("mix ratio r")
ax2.set_ylabel("time to reach PwoA (r=0) / PwoA's time")
ax2.set_title("time ratio (missing point: never reached)")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
show(fig)"""),
        md("""
<a id="slider"></a>
## 5. Mix-ratio slider and method checkboxes

`widgets.mix_ratio_view(curves, summary, mix_ratio, methods)` redraws Figure 3 with the chosen methods and the mix
ratios up to the slider's value (PwoA at $r=0$ always shown); no training, only the results above. Plain call,
then the widget:
"""),
        code("""
table, fig = widgets.mix_ratio_view(curves, summary, mix_ratio=max(MIX_RATIOS), methods=("pwoa", "advprune"))
display(table.round(2))
show(fig)"""),
        code("""
display(widgets.mix_ratio_widget(curves, summary))"""),
        md("""
<a id="try"></a>
## 6. Things to try

1. Time one PwoA epoch and one AdvPrune ($r=1$) epoch (`curves.groupby(["method", "mix_ratio"]).train_seconds`):
   is the ratio close to $1+k$?
2. Does mixing in adversarial batches help PwoA? Compare the final PGD and AutoAttack accuracy of PwoA at
   $r=0$ and $r=1$ in `summary`, and their cost.
3. Make the mixed-in attack cheaper: `preset_config("digits", PRESET, method="advprune", adv_steps=3)` with
   `runs.prune_row`. Does AdvPrune become faster than PwoA to reach the target? Is its AutoAttack
   accuracy still as good?
4. Run `figure3` at rate 16: does the gap between PwoA and the baselines grow with the pruning rate?
5. From a terminal: `pwoa-lab figure3 --dataset digits --preset quick` writes the same curves and summary to CSV.
"""),
    ])


# =============================================================================================== 05

def nb05():
    return notebook([
        md("""
# 05 · Rigorous evaluation

A robust-accuracy number is only as good as the attack behind it. PGD with a fixed step can overstate robustness
(on a small CNN for `digits` PGD-trained at $\\epsilon=0.2$, PGD-20 read 33.5% where AutoAttack read about 22%),
and a model can
*look* robust because its gradients are useless to the attacker (gradient masking). This notebook runs
AutoAttack, the standard sanity checks, the paper's tables, and explains how to run the full `paper` preset on a
GPU.

**Contents**
1. [Parameters and set-up](#setup)
2. [AutoAttack](#aa)
3. [Gradient-masking sanity checks](#checks)
4. [The paper's tables: L_CE vs L_D vs L_D + L_H](#tables)
5. [Running the paper preset on a GPU](#gpu)
6. [Things to try](#try)

""" + runtime_note("05")),
        md('<a id="setup"></a>\n## 1. Parameters and set-up'),
        code(params_cell('RATES = (4, 16) if SMOKE else (2, 4, 8, 16)\n'
                         'N = 40 if SMOKE else None               # test images for natural / FGSM / PGD / CW (None: all 359)\n'
                         'AA_N = 20 if SMOKE else 100             # test images for AutoAttack\n'
                         'AA_VERSION = "fast" if SMOKE else "standard"\n'
                         'SEEDS = (0,) if SMOKE else (0, 1, 2)     # Tables II-IV: mean and spread over seeds\n'
                         'STEPS = (5, 10, 20) if SMOKE else (5, 10, 20, 50, 100)   # PGD steps for the monotonicity check')),
        code(SETUP + """

from pwoa_lab import attacks, checkpoint, data, figures, plots, presets, runs
from pwoa_lab.methods import TeacherConfig
from pwoa_lab.runs import train_teacher
from pwoa_lab.presets import preset_config

teacher, meta = checkpoint.load_teacher("digits")
EPS = meta["eps"]
test = data.load_dataset("digits", "test")
OPTIONS = {**attacks.default_attack_options("digits", EPS), "aa": {"version": AA_VERSION}}
print(f"eps = {EPS}; attacks: {OPTIONS}")"""),
        md("""
<a id="aa"></a>
## 2. AutoAttack

AutoAttack (Croce & Hein 2020) is a parameter-free ensemble: **APGD-CE** (PGD on the cross-entropy with an
adaptive step size and momentum), **APGD-T** (targeted APGD on the difference-of-logits-ratio loss, over the top
target classes), **FAB-T** (a minimum-norm attack) and **Square** (a score-based black-box attack, immune to
gradient masking). An image counts as robust only if *every* attack fails on it:

$$\\text{AA accuracy}=\\frac1n\\sum_i \\mathbb 1\\big[\\,h(x_i+\\delta)=y_i\\ \\ \\forall\\,\\delta\\in\\{\\delta_{\\text{APGD-CE}},
\\delta_{\\text{APGD-T}},\\delta_{\\text{FAB-T}},\\delta_{\\text{Square}}\\}\\big].$$

`attacks.autoattack(model, x, y, eps, version="standard")` runs it through `pyautoattack`; `version="fast"`
(APGD-CE + APGD-T over 3 targets) is a teaching shortcut for quick checks: report `standard`.
"""),
        code("""
aa_table = attacks.evaluate(teacher, test, ["natural", "fgsm", "pgd", "cw", "aa"], eps=EPS, n=AA_N,
                            attack_options=OPTIONS, progress=PROGRESS)
display(aa_table.round(2))

fig, ax = plt.subplots(figsize=(5.5, 3.3))
ax.bar(aa_table.attack, aa_table.accuracy, color=["gray", "tab:orange", "tab:blue", "tab:purple", "black"])
ax.set_ylabel("accuracy (%)")
ax.set_ylim(0, 100)
ax.set_title(f"dense teacher, eps = {EPS}, first {AA_N} test images (AA {AA_VERSION})")
for i, v in enumerate(aa_table.accuracy):
    ax.text(i, v + 1, f"{v:.1f}", ha="center", fontsize=8)
show(fig)"""),
        md("""
<a id="checks"></a>
## 3. Gradient-masking sanity checks

Carlini et al. (2019, *On Evaluating Adversarial Robustness*) and Athalye et al. (2018) list signs that an
evaluation is broken. Each check below compares numbers that must be ordered a certain way if the attacks work;
a failure means the robustness number cannot be trusted.

| check | why it must hold |
| --- | --- |
| PGD at $\\epsilon=0$ = natural accuracy | an attack with no budget changes nothing |
| PGD $\\le$ FGSM | PGD contains FGSM-like steps and searches more |
| more PGD steps never higher | a longer search finds at least as much (same step size and start) |
| AA $\\le$ PGD | AutoAttack includes stronger attacks than PGD |
| undefended model near 0 under PGD | if a plain model resists, the attack is broken |
| accuracy falls as $\\epsilon$ grows | a larger ball contains the smaller one |

We need an undefended model again (notebook 01): plain cross-entropy training, seconds.
"""),
        code("""
plain, _, _ = train_teacher(TeacherConfig(dataset="digits", method="none", epochs=3 if SMOKE else 15,
                                          val_pgd_steps=5 if SMOKE else 20, seed=0), progress=PROGRESS)

def acc(model, attack, eps=EPS, n=N, **options):
    opts = {**OPTIONS, attack: {**OPTIONS.get(attack, {}), **options}}
    return float(attacks.evaluate(model, test, [attack], eps=eps, n=n, attack_options=opts,
                                  progress=False).accuracy.iloc[0])

natural = acc(teacher, "natural")
pgd0 = acc(teacher, "pgd", eps=0.0)
fgsm_, pgd_ = acc(teacher, "fgsm"), acc(teacher, "pgd")
by_steps = {k: acc(teacher, "pgd", steps=k) for k in STEPS}
pgd_aa, aa_ = aa_table.set_index("attack").accuracy[["pgd", "aa"]]   # Section 2, first AA_N images
plain_pgd = acc(plain, "pgd")
by_eps = {e: acc(teacher, "pgd", eps=e) for e in (EPS / 2, EPS, 2 * EPS)}
tol = 100 / len(test.head(N)) + 1e-9      # one image

steps_vals = list(by_steps.values())
eps_vals = list(by_eps.values())
checks = pd.DataFrame([
    {"check": "PGD at eps = 0 equals natural", "measured": f"{pgd0:.1f} vs {natural:.1f}", "pass": pgd0 == natural},
    {"check": "PGD <= FGSM", "measured": f"{pgd_:.1f} <= {fgsm_:.1f}", "pass": pgd_ <= fgsm_},
    {"check": "more PGD steps never higher (1-image tolerance)",
     "measured": " >= ".join(f"{v:.1f}" for v in steps_vals) + f" (steps {list(STEPS)})",
     "pass": all(b <= a + tol for a, b in zip(steps_vals, steps_vals[1:]))},
    {"check": f"AA <= PGD (first {AA_N} images)", "measured": f"{aa_:.1f} <= {pgd_aa:.1f}", "pass": aa_ <= pgd_aa},
    {"check": "undefended model near 0 under PGD (< 10%)", "measured": f"{plain_pgd:.1f}", "pass": plain_pgd < 10},
    {"check": "accuracy falls as eps grows", "measured": " >= ".join(f"{v:.1f}" for v in eps_vals),
     "pass": all(b <= a for a, b in zip(eps_vals, eps_vals[1:]))},
])
display(checks)"""),
        code("""
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.plot(list(by_steps), steps_vals, "o-")
ax1.set_xscale("log")
ax1.set_xlabel("PGD steps (fixed step size)")
ax1.set_ylabel("robust accuracy (%)")
ax1.set_title("more steps: never higher")
ax2.plot([0.0] + list(by_eps), [natural] + eps_vals, "o-")
ax2.set_xlabel("eps")
ax2.set_ylabel("PGD accuracy (%)")
ax2.set_title("larger eps: lower accuracy")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
show(fig)"""),
        md("""
<a id="tables"></a>
## 4. The paper's tables: $L_{CE}$ vs $L_D$ vs $L_D+L_H$

Tables II–IV of the paper report, per dataset and pruning rate, the natural and robust accuracies of the three
losses: $L_{CE}$ (naive), $L_D$ (distillation alone) and $L_D+L_H$ (PwoA). Here on `digits`: each pruned model
comes from `runs.prune_row` (cached; notebooks 02 and 03 may already have trained them), then is evaluated
with FGSM, PGD-20, CW-20 and AutoAttack. $L_D$ is run with $\\lambda_x=\\lambda_y=0$, i.e. without the HSIC term.
"""),
        code("""
LOSSES = {"oneshot": "one-shot (no training)", "naive": "L_CE", "kd": "L_D", "pwoa": "L_D + L_H"}
SETTINGS = presets.eval_settings("digits", PRESET)
rows = []
for seed in SEEDS:
    for rate in RATES:
        for method, loss_name in LOSSES.items():
            extra = {"lambda_x": 0.0, "lambda_y": 0.0} if method == "kd" else {}
            config = preset_config("digits", PRESET, method=method, rate=rate, seed=seed, **extra)
            row, _ = runs.prune_row(teacher, config, SETTINGS, cache_dir, progress=PROGRESS)
            model = runs.load_cached_model(row["key"], teacher, cache_dir)
            table = attacks.evaluate(model, test, ["natural", "fgsm", "pgd", "cw"], eps=EPS, n=N,
                                     attack_options=OPTIONS, progress=False)
            result = {r.attack: r.accuracy for r in table.itertuples()}
            result["aa"] = float(attacks.evaluate(model, test, ["aa"], eps=EPS, n=AA_N, attack_options=OPTIONS,
                                                  progress=False).accuracy.iloc[0])
            rows.append({"rate": f"{rate:g}x", "loss": loss_name, "seed": seed, **result,
                         "sparsity": row["sparsity"]})
per_seed = pd.DataFrame(rows)
metrics = ["natural", "fgsm", "pgd", "cw", "aa"]
grouped = per_seed.groupby(["rate", "loss"], sort=False)
paper_table = grouped[metrics + ["sparsity"]].mean()
spread = grouped[metrics].std(ddof=1)   # NaN with one seed
paper_table.columns = ["Natural", "FGSM", "PGD", "CW", f"AA ({AA_VERSION}, n={AA_N})", "sparsity"]
spread.columns = paper_table.columns[:-1]
shown = paper_table.copy().astype(object)
for col in spread.columns:
    shown[col] = [f"{m:.2f}" + ("" if s != s else f" ± {s:.2f}") for m, s in zip(paper_table[col], spread[col])]
shown["sparsity"] = paper_table["sparsity"].map("{:.3f}".format)
dense = aa_table.set_index("attack").accuracy
display(shown.style.set_caption(
    f"digits, eps = {EPS}, mean ± std over seeds {SEEDS}; dense teacher on the first {AA_N} images: natural "
    f"{dense['natural']:.1f}, PGD {dense['pgd']:.1f}, AA {dense['aa']:.1f}"))"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
colors = {name: plots.METHOD_STYLE[method]["color"] for method, name in LOSSES.items()}
flat = paper_table.reset_index()
for ax, metric in zip(axes, ["PGD", paper_table.columns[4]]):
    for k, loss_name in enumerate(LOSSES.values()):
        part = flat[flat.loss == loss_name]
        ax.bar(np.arange(len(part)) + 0.2 * (k - 1.5), part[metric], width=0.2, color=colors[loss_name],
               yerr=spread.reset_index().loc[lambda d: d.loss == loss_name, metric], label=loss_name)
    ax.axhline(dense["aa" if metric.startswith("AA") else "pgd"], color="black", ls="--", label="dense teacher")
    ax.set_xticks(range(len(RATES)), [f"{r:g}x" for r in RATES])
    ax.set_xlabel("pruning rate")
    ax.set_title(metric)
    ax.grid(alpha=0.3, axis="y")
axes[0].set_ylabel("robust accuracy (%)")
axes[0].legend(fontsize=8)
show(fig)"""),
        md("""
<a id="gpu"></a>
## 5. Running the paper preset on a GPU

The `quick` preset shortens everything to fit a laptop. The `paper` preset holds the reference schedules:
50 ADMM epochs + 100 masked-retraining epochs, batch 128, seed 1234; Adam (MNIST) or SGD with cosine decay (CIFAR);
evaluation on the full test set with PGD-40 (MNIST) or PGD-10 (CIFAR) and AutoAttack `standard` on 1,000 images.
It needs a GPU (`--device cuda`, picked automatically when present) and, except for `digits`, the datasets under
`PWOA_DATA_ROOT` (or internet access for torchvision to download them). Results are cached like everything else
and written as CSV + PNG under `--out`.

**MNIST, LeNet-3** (paper: $\\epsilon=0.3$). The kit ships a PGD-trained LeNet-3 teacher (`--checkpoint mnist`)
once it has been trained; to make your own:

```bash
export PWOA_DATA_ROOT=/path/to/data            # holds MNIST/raw/*.gz (or leave unset and let torchvision download)
pwoa-lab train-teacher --dataset mnist --model lenet3 --method pgd --epochs 40 --pgd-steps 40 --out teachers/mnist_lenet3.pt
pwoa-lab evaluate --checkpoint teachers/mnist_lenet3.pt --attacks natural,fgsm,pgd,cw,aa
pwoa-lab figure1 --dataset mnist --preset paper --checkpoint teachers/mnist_lenet3.pt --methods naive,kd,pwoa --out results/paper
pwoa-lab figure3 --dataset mnist --preset paper --checkpoint teachers/mnist_lenet3.pt --out results/paper
```

**CIFAR-10, ResNet-18 or WRN-34-10** ($\\epsilon=8/255$, PGD-10 with step $2/255$). The paper starts from public
TRADES / LBGAT WRN-34-10 models; the kit cannot import those files directly, so train a teacher with the kit
(ResNet-18: hours on one GPU; WRN-34-10: about ten times that) or convert a public state dict into a kit checkpoint
with `pwoa_lab.checkpoint.save_checkpoint(path, model, {"model": "wrn34_10", "dataset": "cifar10", "eps": 8/255})`:

```bash
pwoa-lab train-teacher --dataset cifar10 --model resnet18 --method pgd --epochs 100 --lr-schedule cosine --out teachers/cifar10_resnet18.pt
pwoa-lab prune --checkpoint teachers/cifar10_resnet18.pt --method pwoa --rate 4 --preset paper --out results/paper/cifar10_pwoa_4x.pt
pwoa-lab figure1 --dataset cifar10 --preset paper --checkpoint teachers/cifar10_resnet18.pt --methods naive,kd,pwoa --out results/paper
pwoa-lab train-teacher --dataset cifar10 --model wrn34_10 --method pgd --epochs 100 --lr-schedule cosine --out teachers/cifar10_wrn34.pt
```

CIFAR-100: `--dataset cifar100` (the preset switches to $\\lambda_x=5\\cdot10^{-7}$, $\\lambda_y=2\\cdot10^{-6}$).
The same is available from Python: `figures.figure1(dataset="mnist", preset="paper", teacher="teachers/...pt")`.
Independent numbers to compare with (Piras et al. 2024, CIFAR-10 ResNet-18, clean / AA %): PwoA at 90% sparsity
83.29 / 45.35, HYDRA 76.74 / 43.34, ADMM robust pruning 80.54 / 43.68.

<a id="try"></a>
## 6. Things to try

1. Run the sanity checks on a pruned model (`runs.load_cached_model`) instead of the teacher: do they all
   still pass?
2. Compare AutoAttack `fast` and `standard` on the same 100 images: how much does FAB-T + Square add?
3. Find a PGD configuration (steps, step size, restarts) whose accuracy matches AutoAttack on the teacher; the
   method doc observed PGD-20 overstating robustness by 10+ points on small models.
4. Add the CW attack with more steps (`acc(teacher, "cw", steps=100)`). Is it stronger than PGD here?
5. Evaluate at the MNIST setting from a terminal: `pwoa-lab evaluate --checkpoint mnist --attacks
   natural,fgsm,pgd,cw,aa --n 1000`.
"""),
    ])


# The measured answer of notebook 06 (Section 7): filled in from the runs named in it.
ANSWER_06 = """
<a id="answer"></a>
## 7. PwoA-S vs naive structured pruning: the measured answer

Measured on the project's 2-core CPU with the `quick` presets, the ADMM schedule and magnitude importance (the
paper's pipeline; "-S": structured at the same rate), mean ± std over seeds 0, 1, 2. PGD: PGD-20 on all 359
digits test images, PGD-40 on the first 500 MNIST test images; AA: the per-point worst case of PGD and
AutoAttack (fast) on the first 100 test images. Accuracies in %.

| dataset | rate | naive-S PGD | naive-S AA | **PwoA-S PGD** | **PwoA-S AA** | PwoA (weight) PGD | PwoA (weight) AA |
| --- | --- | --- | --- | --- | --- | --- | --- |
| digits (teacher 34.3 / 16.0) | 2x | 0.4 ± 0.6 | 0.7 ± 1.2 | **27.8 ± 0.4** | **10.0 ± 1.0** | 32.6 ± 0.6 | 15.0 ± 1.0 |
| digits | 4x | 0.2 ± 0.3 | 0.0 ± 0.0 | **17.4 ± 1.2** | **6.0 ± 0.0** | 25.2 ± 1.1 | 9.3 ± 0.6 |
| MNIST (teacher 93.0 / 92.0) | 2x | 12.1 ± 11.7 | 4.0 ± 4.4 | **90.1 ± 0.1** | **88.7 ± 1.2** | 92.4 ± 0.2 | 91.0 ± 1.0 |
| MNIST | 4x | 1.0 ± 1.2 | 0.3 ± 0.6 | **68.5 ± 1.6** | **58.3 ± 1.5** | 88.4 ± 0.3 | 86.0 ± 1.0 |

Natural accuracy: naive-S 96.8 / 94.8 (digits 2x / 4x) and 98.9 / 98.7 (MNIST), PwoA-S 91.0 / 90.5 and 98.2 / 98.0.

What this says:
- **PwoA-S keeps far more robustness than naive structured pruning** at 2x and 4x on both data sets: naive
  structured pruning ends at 0-12% PGD and 0-4% AA, PwoA-S at 17-90% PGD. The paper's finding carries over to
  structured pruning.
- **Structured pruning costs more robustness than weight pruning at the same parameter count** (digits 4x:
  37,759 parameters vs 38,002 non-zero weights): with the paper's ADMM schedule 17.4 vs 25.2 PGD on digits,
  68.5 vs 88.4 on MNIST. What it buys: a 4x smaller plain file and a faster model. Digits, one thread, batch 128:
  teacher and every weight-pruned model 21.4 ms; structured 17.4 / 9.4 / 6.2 ms at 2x / 4x / 8x. LeNet-3 at 4x
  (`bench/bench_footprint.py`): 46.8 -> 19.4 ms (2.4x) at batch 128, 13.1 -> 3.3 MB.
- **The schedule matters more for structured pruning than the loss's details.** On digits at 4x, PwoA-S with
  one-shot or iterative pruning keeps 23.8 ± 0.2 and 24.0 ± 0.2 PGD (8.3 / 8.0 AA), ADMM only 17.4; at 8x
  (one seed) ADMM collapses to 3.1 PGD, one-shot and iterative keep 18-19. For weight pruning the iterative
  schedule is best (4x: 28.5 ± 0.7 PGD, 10.7 AA; ADMM 25.2, one-shot 24.8).
- **Gradient importance did not help.** |w dL/dw| on natural images ranks the weights of a *robust* model by
  their effect on the *natural* loss; weight pruning at 4x lost robustness with it (PwoA one-shot 12.0 ± 1.0 vs
  24.8 ± 1.3 PGD, iterative 17.7 vs 28.5). Structured: one-shot 20.1 vs 23.8, ADMM 19.4 vs 17.4.
- Naive pruning loses the robustness on every axis: at most 8.1 PGD and 2.7 AA (means over seeds) at 2x and
  4x over the whole digits grid, 10.9 and 3.0 at 8x (one-shot, one seed).

The whole digits grid (2 structures x 2 importances x 3 schedules x 2 losses at 2x and 4x with 3 seeds, 8x with
one seed; 168 runs, about 2 h of wall time on this 2-core CPU, shared) was run with `python -m pwoa_lab.design_space
--dataset digits --rates 2,4 --seeds 0,1,2 --threads 1 --out ...` (in parts, e.g. `--schedules admm
--importances magnitude`); MNIST with `PWOA_DATA_ROOT=... python -m pwoa_lab.design_space --dataset mnist
--rates 2,4 --seeds 0,1,2 --structures structured --importances magnitude --schedules admm --aa-n 100` (and
`--structures weight --losses pwoa`). MNIST's AA is on 100 images instead of the preset's 500 (CPU time).
"""


# =============================================================================================== 06

def nb06():
    return notebook([
        md("""
# 06 · The pruning design space and its security cost

Notebooks 02–05 prune single weights on the paper's schedule (ADMM, then one hard prune). A pruning course
also teaches the other choices, and each one changes what a pruned robust model keeps:

| axis | choices | what changes |
| --- | --- | --- |
| **structure** | weight (masks) · structured (whole channels) | only structured pruning makes the model physically smaller and faster |
| **importance** | magnitude $\\lvert w\\rvert$ · gradient $\\lvert w\\,\\partial L/\\partial w\\rvert$ | which weights or channels count as unimportant |
| **schedule** | one-shot · ADMM · iterative (cubic) | how the network gets from dense to sparse |
| **loss** | naive $L_{CE}$ · PwoA $L_D+L_H$ | what the fine-tuning asks for: the paper's question |

This notebook builds each axis, then runs the grid (cached) and plots robust accuracy (PGD, AutoAttack) against
what a user pays: the **file to ship** and the **CPU latency**. The paper's losses with a structured rate are
called **PwoA-S** here.

**Contents**
1. [Parameters and set-up](#setup)
2. [Weight vs structured pruning: what "smaller" means](#structure)
3. [Magnitude vs gradient importance](#importance)
4. [One-shot, ADMM and iterative schedules](#schedule)
5. [The experiment: accuracy vs size and latency](#grid)
6. [Choose the axes (widget)](#widget)
7. [PwoA-S vs naive structured pruning: the measured answer](#answer)
8. [Things to try](#try)

""" + runtime_note("06")),
        md('<a id="setup"></a>\n## 1. Parameters and set-up'),
        code(params_cell('RATES = (4,) if SMOKE else (2, 4)            # the full study: 2x-8x, 3 seeds (Section 7)\n'
                         'SEEDS = (0,)\n'
                         'STRUCTURES = ("weight", "structured")\n'
                         'IMPORTANCES = ("magnitude",) if SMOKE else ("magnitude", "gradient")\n'
                         'SCHEDULES = ("oneshot",) if SMOKE else ("oneshot", "admm", "iterative")\n'
                         'LOSSES = ("naive", "pwoa")\n'
                         'OVERRIDES = dict(admm_epochs=1, retrain_epochs=1, n_per_class=30) if SMOKE else {}   # PruneConfig fields\n'
                         'N = 50 if SMOKE else None                   # test images for the one-shot checks (None: all)\n'
                         'REPEATS = 3 if SMOKE else 21                # latency: timed repeats (median)\n'
                         'THREADS = 1                                  # torch threads for the latency')),
        code(SETUP + """

from pwoa_lab import (attacks, checkpoint, data, design_space, footprint, plots, presets, pruning, structured,
                      widgets)
from pwoa_lab.presets import preset_config

teacher, meta = checkpoint.load_teacher("digits")
EPS = meta["eps"]
SHAPE = data.dataset_info("digits").shape            # one input: (1, 16, 16)
train, test = data.load_dataset("digits", "train"), data.load_dataset("digits", "test")
OPTIONS = attacks.default_attack_options("digits", EPS)
print(f"teacher: {meta['model']}, {structured.parameter_count(teacher):,} parameters, eps = {EPS}")"""),
        md("""
<a id="structure"></a>
## 2. Weight vs structured pruning: what "smaller" means

**Weight pruning** sets single weights to 0 (masks). The layer shapes do not change, so the model computes as
much as before; only a compact sparse file (bitmask + kept values, `pruning.save_sparse`) is smaller.

**Structured pruning** removes whole output channels (filters of a conv, neurons of a linear layer) *and* the
matching inputs of every layer that reads them. The result is a smaller dense network of the same family:
fewer parameters, a smaller plain file, fewer multiply-adds. The kit leaves the surgery to Torch-Pruning's
dependency graph (`pwoa_lab.structured`), which traces one forward pass and finds every coupled tensor (through
pooling, `flatten`, BatchNorm and residual additions). The classifier's outputs and the image's channels stay.

**What rate R means for a structured model.** A layer between two pruned layers loses inputs *and* outputs,
so removing a fraction $p$ of the channels of every layer keeps about $(1-p)^2$ of its weights. The kit picks
the smallest $p$ (in steps of 1/1000) for which the whole model holds at most $1/R$ of the teacher's
parameters (`structured.fraction_for_rate`): about half of the channels at 4x. Weight pruning at rate $R$ keeps
$1/R$ of the weights, so the two have about the same number of non-zero parameters: a fair comparison.
"""),
        code("""
RATE = 4
weight_model = copy.deepcopy(teacher)
pruning.prune_by_magnitude(weight_model, RATE)
pruning.remove_masks(weight_model)
struct_model = copy.deepcopy(teacher)
fraction = structured.fraction_for_rate(struct_model, SHAPE, RATE)
removed = structured.structured_prune(struct_model, SHAPE, fraction)
print(f"rate {RATE}x -> channel fraction p = {fraction:.3f}; channels removed per layer:",
      {k: len(v) for k, v in removed.items()})
print(struct_model)

models = {"dense teacher": teacher, f"weight {RATE}x": weight_model, f"structured {RATE}x": struct_model}
fp = footprint.footprint_table(models, SHAPE, reference=teacher, repeats=REPEATS, threads=THREADS)
display(fp)"""),
        code("""
def layer_counts(model):
    return {name: int((p != 0).sum()) for name, p in model.named_parameters() if name.endswith("weight")}

counts = pd.DataFrame({name: layer_counts(m) for name, m in models.items()})
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
counts.plot.bar(ax=ax1, logy=True, rot=0, color=["black", "tab:blue", "tab:green"])
ax1.set_ylabel("non-zero weights")
ax1.set_title(f"where the weights are, {RATE}x")
x = np.arange(len(fp))
ax2.bar(x - 0.2, fp.ship_bytes / 1e3, width=0.4, label="file to ship (kB)", color="tab:gray")
ax2b = ax2.twinx()
ax2b.bar(x + 0.2, fp.latency_ms_128, width=0.4, label="latency, batch 128 (ms)", color="tab:orange")
ax2.set_xticks(x, fp.model)
ax2.set_ylabel("file to ship (kB)")
ax2b.set_ylabel("CPU latency, batch 128 (ms)")
ax2.set_title("size and speed")
handles = ax2.get_legend_handles_labels()[0] + ax2b.get_legend_handles_labels()[0]
ax2b.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
fig.tight_layout()
show(fig)"""),
        md("""
The weight-pruned model has the teacher's parameter count and latency: its zeros are still multiplied. Its
sparse file is about a quarter of the dense one plus a bitmask (1 bit per weight). The structured model is a
quarter of the teacher in parameters *and* in its plain file, and it runs faster; how much faster depends on
the layer (on this tiny CNN the first conv layer's activations dominate at batch 1; `bench/bench_footprint.py`
measures LeNet-3 on MNIST).

<a id="importance"></a>
## 3. Magnitude vs gradient importance

Magnitude pruning assumes that small weights matter little. The **first-order Taylor** (SNIP-style) importance
asks instead how much the loss would change if a weight were set to 0:

$$L(w - w_i e_i) \\approx L(w) - w_i\\,\\frac{\\partial L}{\\partial w_i}
\\quad\\Rightarrow\\quad s_i = \\Big\\lvert w_i\\,\\frac{\\partial L}{\\partial w_i}\\Big\\rvert,$$

with $L$ the cross-entropy on natural training images (`pruning.gradient_importance`; the kit uses 512).
Channels score the sum over their filter (Molchanov et al. 2019). On a *trained* network the gradient of the
training loss is small and noisy, so the two rankings can disagree a lot:
"""),
        code("""
x_imp, y_imp = train.x[:512], train.y[:512]
grad_scores = pruning.gradient_importance(teacher, x_imp, y_imp)
mag_scores = {k: w.abs() for k, w in pruning.prunable_weights(teacher).items()}
rows = []
for layer in mag_scores:
    a = pruning.importance_masks({layer: mag_scores[layer]}, RATE)[layer]
    b = pruning.importance_masks({layer: grad_scores[layer]}, RATE)[layer]
    rows.append({"layer": layer, "weights": a.numel(), "kept by both": int((a & b).sum()),
                 "overlap (Jaccard)": float((a & b).sum() / (a | b).sum())})
display(pd.DataFrame(rows))

one_shot = []
for name, scores in (("magnitude", mag_scores), ("gradient", grad_scores)):
    model = copy.deepcopy(teacher)
    pruning.apply_masks(model, pruning.importance_masks(scores, RATE))
    table = attacks.evaluate(model, test, ["natural", "pgd"], eps=EPS, n=N, attack_options=OPTIONS, progress=False)
    one_shot.append({"importance": name, **{r.attack: r.accuracy for r in table.itertuples()}})
display(pd.DataFrame(one_shot).set_index("importance").rename(columns=lambda c: f"{c}, one-shot {RATE}x, no training"))

layer = max(mag_scores, key=lambda k: mag_scores[k].numel())
fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.loglog(mag_scores[layer].flatten() + 1e-12, grad_scores[layer].flatten() + 1e-12, ".", ms=1, alpha=0.3)
ax.set_xlabel("|w|")
ax.set_ylabel("|w dL/dw|")
ax.set_title(f"{layer}: two importances of the same weights")
ax.grid(alpha=0.3, which="both")
show(fig)"""),
        md("""
<a id="schedule"></a>
## 4. One-shot, ADMM and iterative schedules

All three are fields of the same pipeline (`PruneConfig(schedule=...)`), with the same training budget
(`admm_epochs + retrain_epochs` epochs) and any loss:

- **one-shot**: prune to the final rate by importance, then fine-tune with the loss for all epochs.
- **ADMM** (the paper): `admm_epochs` epochs pull the weights towards the sparse set (the penalty
  $\\rho/2\\,\\lVert W-Z+U\\rVert^2$; structured: towards few non-zero *rows*), then one hard prune and
  `retrain_epochs` of masked fine-tuning.
- **iterative** (Zhu & Gupta 2017): the sparsity grows over the first `admm_epochs` epochs on a cubic schedule,
  $s_t = s_f\\,\\big(1-(1-t/n)^3\\big)$, fast at first and slowly at the end, recomputing the masks by importance
  at every step among the weights still kept (pruned weights stay 0); then `retrain_epochs` at $s_f$.
  Structured: channel masks while the fraction grows, the physical removal when retraining begins.

The sparsity each schedule trains at, epoch by epoch (digits `quick` preset: 6 + 12 epochs):
"""),
        code("""
cfg = preset_config("digits", "quick", rate=RATE)
n, total = cfg.admm_epochs, cfg.admm_epochs + cfg.retrain_epochs
final = 1 - 1 / RATE
epochs = np.arange(1, total + 1)
fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.step(epochs, [final] * total, where="post", ls=":", label="one-shot")
ax.step(epochs, [0.0 if e <= n else final for e in epochs], where="post", label="ADMM (hard prune after epoch n)")
ax.step(epochs, [pruning.cubic_sparsity(min(e, n), n, final) for e in epochs], where="post", ls="--",
        label="iterative (cubic)")
ax.set_xlabel("epoch")
ax.set_ylabel("sparsity of the pruned layers")
ax.set_title(f"{RATE}x: sparsity while training (ADMM is dense but pulled towards Z)", fontsize=9)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
show(fig)"""),
        md("""
<a id="grid"></a>
## 5. The experiment: accuracy vs size and latency

`design_space.design_space` runs every combination of the chosen axes, rates and seeds through
`runs.prune_row` (cached: a second run of this cell reads everything back) and measures each model's footprint
(`footprint`: parameters, files, CPU latency; latency once per architecture). With `SMOKE` the grid is tiny.
"""),
        code("""
SETTINGS = presets.eval_settings("digits", PRESET)
ds = design_space.design_space(teacher, "digits", rates=RATES, seeds=SEEDS, structures=STRUCTURES,
                               importances=IMPORTANCES, schedules=SCHEDULES, losses=LOSSES, preset=PRESET,
                               settings=SETTINGS, cache_dir=cache_dir, repeats=REPEATS, threads=THREADS,
                               progress=PROGRESS, **OVERRIDES)
display(design_space.mean_std_table(ds[ds.method != "teacher"], ("natural", "pgd", "aa")))"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(15, 4.8), sharey=True)
plots.plot_design_space(ds, x="ship_bytes", metric="pgd", ax=axes[0])
plots.plot_design_space(ds, x="latency_ms_128", metric="pgd", ax=axes[1])
axes[0].get_legend().remove()                     # one legend, right of the second panel
fig.suptitle(f"digits, preset {PRESET}: PGD accuracy against the file to ship and the CPU latency")
fig.tight_layout()
show(fig)"""),
        md("""
<a id="widget"></a>
## 6. Choose the axes (widget)

`widgets.design_space_view(ds, x=..., metric=..., structures=..., ...)` filters the table above and redraws;
nothing trains. Plain call first, then the widget (x axis, metric, and which values of each axis to show):
"""),
        code("""
table, fig = widgets.design_space_view(ds, x="latency_ms_128", metric="aa" if ds.aa.notna().any() else "pgd",
                                       losses=("pwoa",))
display(table)
show(fig)"""),
        code("""
display(widgets.design_space_widget(ds))"""),
        md(ANSWER_06),
        md("""
<a id="try"></a>
## 8. Things to try

1. Add `scope="hidden"` to `design_space.design_space(...)` (it passes PruneConfig fields on): keeping the first
   layer and the classifier dense helped weight pruning at 8x (README). Does it help structured pruning?
2. Run the grid at 8x (`RATES = (2, 4, 8)`): where does structured pruning stop keeping any robustness?
3. `importance="gradient"` uses cross-entropy on natural images. Write a gradient importance on the
   *distillation* loss instead (`pruning.gradient_importance(..., loss_fn=...)` takes any loss): does the
   ranking move towards the magnitude one?
4. Time the models with `THREADS = 2` and at batch 1 (`footprint.latency_table(..., batches=(1,))`): when does
   structured pruning stop paying off, and why (hint: per-call overhead vs multiply-adds)?
5. Prune a ResNet-18 structurally (`structured.structured_prune(build_model("resnet18", "cifar10"), (3, 32, 32),
   0.5)`) and print it: which channels had to go together because of the residual additions
   (`structured.channel_groups`)?
6. Export the structured model for a user: `structured.save_structured(model, "small.pt")`, then
   `structured.load_structured("small.pt")` in a fresh kernel: a plain `nn.Module`, no masks, no kit state.
"""),
    ])


NOTEBOOKS = {
    "00_start_here.ipynb": nb00,
    "01_adversarial_examples.ipynb": nb01,
    "02_naive_pruning_breaks_robustness.ipynb": nb02,
    "03_distillation_and_hsic.ipynb": nb03,
    "04_efficiency_and_mix_ratio.ipynb": nb04,
    "05_rigorous_evaluation.ipynb": nb05,
    "06_pruning_design_space.ipynb": nb06,
}


def build() -> dict[str, str]:
    out = {}
    for name, make in NOTEBOOKS.items():
        nb = make()
        for i, cell in enumerate(nb.cells):  # stable ids: the files only change when the content does
            cell.id = f"{name[:2]}-{i:02d}"
        nbformat.validate(nb)
        out[name] = nbformat.writes(nb) + "\n"
    return out


def main(argv: list[str]) -> int:
    built = build()
    if "--check" in argv:
        stale = [n for n, text in built.items() if not (HERE / n).is_file() or (HERE / n).read_text() != text]
        if stale:
            print("out of date (run python notebooks/_make_notebooks.py):", ", ".join(stale))
            return 1
        return 0
    for name, text in built.items():
        (HERE / name).write_text(text)
        print("wrote", HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
