"""Datasets: one record each, the only place the kit keeps a dataset's facts.

A `DatasetInfo` holds everything the rest of the kit asks about a dataset: its shape and classes, the threat model
(eps, the evaluation PGD), the training attack's steps, the default model, the shipped teacher's file, the channel
statistics of public teachers, how its splits are read and which files it needs. Every built-in dataset is one
module of this package (`digits`, `mnist`, `cifar`); a new dataset is one `register_dataset(DatasetInfo(...))`
(plus a preset block in `pwoa_lab.training.presets`, and a teacher file if one ships).
"""
from pwoa_lab.core.datasets.record import (DATASETS, SPLITS, DatasetInfo, dataset_code, dataset_info,  # noqa: F401
                                           dataset_module, dataset_names, register_dataset, unregister_dataset)
# registers the built-in datasets, in the order menus and help list them
from pwoa_lab.core.datasets import digits, mnist, cifar  # noqa: F401,E402,I001
