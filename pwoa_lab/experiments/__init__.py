"""Experiments: runs cached by configuration and code, jobs, sweeps, the paper's figures and analyses.

Above `training`. Everything here returns DataFrames or dataclasses and never draws.
- `runs`: one run (`run_config`), a teacher (`train_teacher`), the cached run store (`prune_row`, `teacher_row`);
- `prune`: one checkpoint pruned, evaluated and saved as files (`prune_checkpoint`: what `pwoa-lab prune` runs);
- `jobs`: many jobs at once in local worker processes or on Ray; `batch`: many cached runs through them;
  `sweep`: run-config fields x seeds, one table;
- `figures`: Figure 1 and Figure 3; `frontier`: the trade-off over the fine-tuning budget (`budgets`: the grid,
  its extension, the budget chosen on validation); `confidence`: intervals of a table's runs;
  `analyses`: layer sensitivity, fine-tuning drift, learning curves; `design_space`: robust accuracy against real
  model size and latency; `explore`: what the classroom explorer computes.
"""
