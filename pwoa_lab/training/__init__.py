"""Training: the one loop, the methods it runs, their registry and the presets. Above `core`, `pruning`, `io`.

- `loop`: `fit(student, phases, method, config, ...)`, the one training loop (batches, mix ratio, timing,
  validation history, NaN stop, checkpoint selection, resume); `RunConfig` and `Phase` are its data; `resume`:
  the saved training state; `validation`: the per-epoch validation and which epoch's weights a run keeps;
- `methods`: every way the kit trains, one module per method (a loss and small hooks), plus ADMM pruning, HYDRA
  and teachers; `registry`: the table of methods every other layer reads;
- `presets`: every schedule in one table, one block per (preset, dataset).
"""
# the built-in methods register themselves: whoever imports any part of the training layer finds them registered
from pwoa_lab.training import methods  # noqa: F401,E402
