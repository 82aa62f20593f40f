"""The out-of-distribution (OOD) partner of a dataset: the images a model's uncertainty scores should tell apart
from its own test images (OOD-detection AUROC, as in torch-uncertainty and OpenOOD).

The pairing is defined here, once, by input shape:

- ``(1, 28, 28)``: ``mnist`` and ``mnist-5k`` get ``fashion-mnist``, ``fashion-mnist`` gets ``mnist``; any other
  grey 28x28 dataset (a custom manifest) gets ``mnist``. The two are the usual near-OOD pair for 28x28 sets.
- ``(3, 32, 32)`` (``cifar10``, ``cifar10-jpeg``, any custom colour 32x32 set): the suite ships no second natural
  colour dataset, so the partner is ``mnist-rgb32``, MNIST test digits zero-padded from 28x28 to 32x32 and repeated
  over the three channels. It is always available (through the mnist-5k fallback), but it is far-OOD: grey digits
  on black are far easier to separate from CIFAR than a natural-image set such as SVHN, so AUROCs against it read
  higher than the published CIFAR-10 vs SVHN numbers.
- any other shape: no partner; :func:`ood_partner` raises BenchmarkError.

The partner is loaded through :func:`benchmark.data.load_dataset`, so the data directory, the cache, the
torchvision download and the mnist -> mnist-5k fallback all apply, and its name says what was really used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.data import load_dataset
from benchmark.data.dataset import Dataset, one_line
from benchmark.errors import BenchmarkError

__all__ = ["MNIST_RGB32", "OOD_PAIRS", "OutOfDistribution", "load_out_of_distribution", "ood_partner"]

MNIST_RGB32 = "mnist-rgb32"
GREY28 = (1, 28, 28)
RGB32 = (3, 32, 32)
# Named grey 28x28 pairs; any other grey 28x28 dataset gets mnist.
OOD_PAIRS = {"mnist": "fashion-mnist", "mnist-5k": "fashion-mnist", "fashion-mnist": "mnist"}


@dataclass(frozen=True)
class OutOfDistribution:
    """The partner's test images, ready to score next to the dataset's own test set."""

    name: str  # what the report prints, e.g. "fashion-mnist" or "mnist-rgb32 (mnist digits padded to 32x32, ...)"
    x: torch.Tensor  # [n, *input_shape], uint8 (0..255) or float32 in [0, 1], as the partner stores them
    note: str | None = None  # the partner's own note (e.g. that mnist fell back to mnist-5k); None when clean


def ood_partner(dataset_name: str, input_shape: tuple[int, int, int]) -> str:
    """The name of ``dataset_name``'s OOD partner (module docstring); BenchmarkError where its shape has none."""
    shape = tuple(input_shape)
    if shape == GREY28:
        return OOD_PAIRS.get(dataset_name, "mnist")
    if shape == RGB32:
        return MNIST_RGB32
    raise BenchmarkError(
        f"dataset {dataset_name!r} has no out-of-distribution partner: its input shape {shape} is neither "
        f"{GREY28} (mnist / fashion-mnist) nor {RGB32} ({MNIST_RGB32})"
    )


def load_out_of_distribution(
    dataset: Dataset,
    n: int | None,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> OutOfDistribution:
    """The first ``n`` test images of ``dataset``'s partner (all of them for None, fewer if the partner has fewer).

    BenchmarkError, naming the partner, when it has none, cannot be loaded, or its images are not exactly
    ``dataset.input_shape``: the caller records that the OOD condition did not run, and why.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise BenchmarkError(f"the number of out-of-distribution images must be a positive integer, got {n!r}")
    partner = ood_partner(dataset.name, dataset.input_shape)
    source = "mnist" if partner == MNIST_RGB32 else partner
    try:
        loaded = load_dataset(source, data_dir, download=download, cache_dir=cache_dir)
    except BenchmarkError as exc:
        raise BenchmarkError(
            f"out-of-distribution set {partner} for {dataset.name} could not be loaded: {one_line(exc)}"
        ) from exc
    x = loaded.x_test if n is None else loaded.x_test[:n]
    name = loaded.name
    if partner == MNIST_RGB32:
        x = _grey28_to_rgb32(x, loaded.name)
        name = f"{MNIST_RGB32} ({loaded.name} digits padded to 32x32, grey to RGB)"
    if tuple(x.shape[1:]) != tuple(dataset.input_shape):
        raise BenchmarkError(
            f"out-of-distribution set {name} for {dataset.name} has images of shape {tuple(x.shape[1:])}, "
            f"not the dataset's {tuple(dataset.input_shape)}"
        )
    return OutOfDistribution(name=name, x=x, note=loaded.note)


def _grey28_to_rgb32(x: torch.Tensor, source: str) -> torch.Tensor:
    """Centre 28x28 grey digits on a black 32x32 canvas (2 pixels each side, as the LeNet paper padded MNIST) and
    repeat them over three channels; the dtype is kept, so uint8 stays 0..255."""
    if tuple(x.shape[1:]) != GREY28:
        raise BenchmarkError(
            f"out-of-distribution set {MNIST_RGB32} needs {GREY28} images from {source}, got {tuple(x.shape[1:])}"
        )
    return torch.nn.functional.pad(x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()
