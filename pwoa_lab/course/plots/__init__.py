"""Plots of the kit's result tables (matplotlib; every function returns the Figure, nothing is shown).

Every function takes `ax=` (an Axes, or a sequence of Axes for the multi-panel plots) to draw into a figure
of the caller's; without it, it makes its own figure. The widgets compose these functions.

- `plot_figure1`: robust (and natural) accuracy vs pruning rate per method, teacher as a reference line
  (the paper's Fig. 1(b)).
- `plot_figure3`: robust accuracy vs training time, one curve per method over its mix ratios (Fig. 3).
- `plot_history`: validation accuracy over epochs of one run.
- `plot_finetune_drift`: validation accuracy over fine-tuning epochs after one-shot pruning, per method and lr.
- `plot_information_plane`: nHSIC(X, Z_j) vs nHSIC(Y, Z_j) per layer over training.
- `plot_weight_histogram`: kept vs pruned weights of a layer; `plot_accuracy_bars`: accuracies side by side.
- `plot_adversarial_grid`: natural vs adversarial images with predictions.
- `plot_design_space`: robust accuracy vs real model size or latency over the pruning design space.
- `plot_sweep`: a metric against one grid field of a sweep, one line per value of another.
- `plot_frontier`: natural vs robust accuracy over the fine-tuning budget, per rate.
- `plot_intervals`: estimates with their 95% intervals as whiskers.
- `mark_smoke`: the smoke preset's "not a result" note above a figure's title.

By subject: `plots.paper` (the method styles, Figures 1 and 3), `plots.runs` (single runs and models),
`plots.comparisons` (design space, sweeps, frontier, intervals) and `plots.explorer_figures` (the classroom
explorer's figures); every plot above, the styles and labels are importable from `pwoa_lab.course.plots`.
"""

from pwoa_lab.course.plots.comparisons import (
    DESIGN_MARKER,
    DESIGN_X_LABEL,
    SCHEDULE_LINE,
    plot_design_space,
    plot_frontier,
    plot_intervals,
    plot_sweep,
)
from pwoa_lab.course.plots.paper import (
    METHOD_STYLE,
    METRIC_LABEL,
    TEACHER_STYLE,
    mark_smoke,
    plot_figure1,
    plot_figure3,
)
from pwoa_lab.course.plots.runs import (
    plot_accuracy_bars,
    plot_adversarial_grid,
    plot_finetune_drift,
    plot_history,
    plot_information_plane,
    plot_learning_curve,
    plot_weight_histogram,
)

__all__ = ["METHOD_STYLE", "METRIC_LABEL", "TEACHER_STYLE", "DESIGN_X_LABEL", "SCHEDULE_LINE", "DESIGN_MARKER",
           "plot_figure1", "plot_figure3", "plot_history", "plot_finetune_drift", "plot_learning_curve",
           "plot_information_plane", "plot_weight_histogram", "plot_accuracy_bars", "plot_adversarial_grid",
           "plot_design_space", "plot_sweep", "plot_frontier", "plot_intervals", "mark_smoke"]
