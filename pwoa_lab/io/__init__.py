"""Files the kit reads and writes: checkpoints, public teachers, the result cache. Above `core` and `pruning`.

- `checkpoint`: weights + metadata (architecture, dataset, eps, seed, metrics, command, versions), strict loading,
  the shipped teachers (`load_teacher`);
- `teacher_import`: public CIFAR checkpoints (TRADES, RobustBench, plain layouts) mapped onto the kit's models
  (`public_layouts`: the name mapping);
- `cache`: the on-disk result store, keyed by configuration and a fingerprint of the kit's code.
"""
