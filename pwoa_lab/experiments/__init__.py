"""Experiments: runs cached by configuration and code, jobs, sweeps, the paper's figures and analyses.

Above `training`. Everything here returns DataFrames or dataclasses and never draws.
- `runs`: one run (`run_config`), a teacher (`train_teacher`), the cached run store (`prune_row`, `teacher_row`);
- `jobs`: many runs at once in local worker processes or on Ray; `sweep`: run-config fields x seeds, one table;
- `figures`: Figure 1 and Figure 3; `analyses`: layer sensitivity, fine-tuning drift, learning curves;
  `design_space`: robust accuracy against real model size and latency.
"""
