"""Resolve a dataset name to tensors: the built-in datasets, the mnist-5k fallback and manifest datasets.

The rules are in docs/datasets.md. Everything a user can get wrong (a missing directory, a corrupt file, a bad
manifest) raises BenchmarkError with a one-line message that says what to fix.

Modules: ``dataset`` (the Dataset record, the [0, 1] scale, the data and cache directories), ``builtin``
(MNIST, Fashion-MNIST, CIFAR-10, mnist-5k), ``arrays`` (npz files and the checks on their arrays),
``manifest`` (dataset.json).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from benchmark.data.builtin import BUILTIN_DATASETS, BUILTINS, load_builtin, mnist_5k
from benchmark.data.dataset import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    Dataset,
    cache_data_dir,
    resolve_data_dir,
    to_float,
)
from benchmark.data.manifest import MANIFEST, find_manifests, load_manifest_dataset
from benchmark.errors import BenchmarkError

__all__ = [
    "BUILTIN_DATASETS",
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "MANIFEST",
    "Dataset",
    "available_datasets",
    "load_dataset",
    "to_float",
]


def available_datasets(data_dir: str | Path | None = None) -> list[str]:
    """The names load_dataset accepts: the built-ins, then the manifests found under the data dir."""
    return [*BUILTIN_DATASETS, *find_manifests(resolve_data_dir(data_dir))]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Load ``name``; a missing ``mnist`` degrades to ``mnist-5k`` with a loud ``note`` instead of failing."""
    root = resolve_data_dir(data_dir)
    custom = find_manifests(root)
    if name in custom:
        return load_manifest_dataset(custom[name])
    if name == "mnist-5k":
        return mnist_5k()
    if name in BUILTINS:
        return load_builtin(name, root, cache_data_dir(cache_dir), download)
    known = [*BUILTIN_DATASETS, *custom]
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    where = "" if root else " (custom datasets are found in the data directory: pass --data-dir)"
    raise BenchmarkError(f"unknown dataset {name!r}; {hint}available: {', '.join(known)}{where}")
