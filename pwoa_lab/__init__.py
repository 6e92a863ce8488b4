"""pwoa-lab: a study kit for pruning adversarially robust networks without adversarial examples (PwoA).

The layers, each a module with one job, each using only those before it:

    data -> models (checkpoint, imports) -> attacks (adversarial_training) -> losses (distillation, hsic, hydra)
    -> pruning -> loop (the one training loop) -> methods (a config + a loss + hooks per method) -> presets
    -> evaluation -> runs (cached by configuration and code) -> jobs (worker processes)
    -> figures, analyses -> plots -> widgets, cli -> notebooks
"""
__version__ = "0.1.0"
