"""What the file-backed datasets share: the error for missing files, an opt-in download, the fixed val split."""
from __future__ import annotations

import os
from pathlib import Path

import torch

SPLIT_SEED = 0  # the fixed seed of the train/val (and digits test) split: never change it


def download_default(download: bool | None) -> bool:
    """Whether missing files may be downloaded: the argument, else PWOA_DOWNLOAD=1 (true, yes); off by default."""
    if download is not None:
        return download
    return os.environ.get("PWOA_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")


def missing_error(name: str, folder: Path, files: list[str]) -> FileNotFoundError:
    """The error of a dataset whose files are not where the kit looked: it says how to point the kit at them."""
    return FileNotFoundError(
        f"dataset {name!r}: files not found in {folder} (looked for {', '.join(files)}). Point the kit at a "
        f"folder that holds them: --root FOLDER on the command line, root=... in Python, or the PWOA_DATA_ROOT "
        f"environment variable (now {os.environ.get('PWOA_DATA_ROOT', 'unset')!r}); or allow a download "
        "(online) with PWOA_DOWNLOAD=1.")


def download_into(cls, root: Path, train: bool, name: str, folder: Path, files: list[str]) -> None:
    """torchvision's download of `cls` into `root`; on failure the folders it created and left empty are removed
    (an offline machine keeps no empty `MNIST/raw`), and the error names the files, --root and PWOA_DATA_ROOT."""
    below = [root / d for d in reversed(folder.relative_to(root).parents) if d != Path(".")] + [folder]
    new = [d for d in [root, *below] if not d.exists()]  # top down: e.g. root/MNIST, root/MNIST/raw
    try:
        cls(str(root), train=train, download=True)
    except Exception as err:  # offline, read-only root, ...
        for d in reversed(new):
            try:
                d.rmdir()  # only if empty: a partial download stays for a retry to see
            except OSError:
                pass
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"{missing_error(name, folder, files)} A download was tried and failed ({why}): "
                                "is this machine offline?") from err


def split_of_training_set(x: torch.Tensor, y: torch.Tensor, n_val: int, split: str
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """`split` ("train" or "val") of a training set: a fixed seeded hold-out of `n_val` images for validation."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    index = perm[:n_val] if split == "val" else perm[n_val:]
    index = torch.sort(index).values
    return x[index], y[index]
