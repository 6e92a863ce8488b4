"""Training: the one loop, the methods it runs, their registry and the presets. Above `core`, `pruning`, `io`.

- `loop`: `fit(student, phases, method, config, ...)`, the one training loop (batches, mix ratio, timing,
  validation history, NaN stop, checkpoint selection, resume); `RunConfig` and `Phase` are its data;
- `methods`: every way the kit trains, as a config plus a loss and small hooks (ADMM pruning, HYDRA, teachers);
- `presets`: every schedule in one table, one block per (preset, dataset).
"""
