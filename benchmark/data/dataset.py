"""The loaded-dataset record, the [0, 1] input scale, and where datasets are looked for on disk.

See docs/datasets.md for the data directory and the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.errors import BenchmarkError

DATA_DIR_ENV = "BENCHMARK_DATA_DIR"
CACHE_DIR_ENV = "BENCHMARK_CACHE_DIR"


@dataclass
class Dataset:
    """One loaded dataset; images are NCHW, uint8 (0..255) or float32 in [0, 1], as stored."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, int, int]
    eps_linf: float
    source: str
    description: str = ""
    note: str | None = None


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Models take inputs in [0, 1] (docs/datasets.md); datasets keep uint8 where the source is uint8, to save
    memory."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if x.dtype == torch.float32:
        return x
    raise TypeError(f"to_float expects a uint8 or float32 tensor, got {x.dtype}")


def one_line(exc: BaseException) -> str:
    """Third-party messages span lines; ours must fit on one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The argument, else $BENCHMARK_DATA_DIR, else none; a named directory must exist."""
    origin = "given"
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
        origin = f"from ${DATA_DIR_ENV}"
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise BenchmarkError(
            f"data directory {path} ({origin}) does not exist; pass an existing directory with --data-dir"
        )
    return path


def cache_dir_of(cache_dir: str | Path | None = None) -> Path:
    """What the benchmark downloads goes under: the argument, $BENCHMARK_CACHE_DIR, or ~/.cache/benchmark."""
    return Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or "~/.cache/benchmark").expanduser()


def cache_data_dir(cache_dir: str | Path | None) -> Path:
    """Torchvision data goes in <cache>/data (:func:`cache_dir_of`)."""
    return cache_dir_of(cache_dir) / "data"
