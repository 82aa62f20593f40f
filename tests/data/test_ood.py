"""The out-of-distribution partner of a dataset: the pairs, n, the mnist-rgb32 images, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATASETS

from benchmark.data import Dataset, load_dataset, ood
from benchmark.data.ood import MNIST_RGB32, load_out_of_distribution, ood_partner
from benchmark.errors import BenchmarkError

SHARED = SHARED_DATASETS


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """The developer's own data and cache directories must not leak into the tests."""
    monkeypatch.delenv("BENCHMARK_DATA_DIR", raising=False)
    monkeypatch.delenv("BENCHMARK_CACHE_DIR", raising=False)


def _write_npz(path: Path, seed: int, n_test: int = 10) -> np.ndarray:
    """A tiny built-in npz (random 28x28 images, fewer than the official sizes); returns its x_test."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(1, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 6, dtype=np.uint8),
        "x_test": rng.integers(1, 256, (n_test, 28, 28), dtype=np.uint8),  # no zero pixel: the pad is visible
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    np.savez(path, **arrays)
    return arrays["x_test"]


def _record(name: str, shape: tuple[int, int, int]) -> Dataset:
    """A stand-in dataset: only its name and input shape matter to the partner."""
    x = torch.zeros((2, *shape), dtype=torch.uint8)
    y = torch.zeros(2, dtype=torch.int64)
    return Dataset(name, x, y, x, y, 10, [str(i) for i in range(10)], shape, 0.1, "test")


@pytest.fixture
def data_dir(tmp_path):
    """A data dir with tiny mnist.npz and fashion_mnist.npz; returns (dir, mnist x_test, fashion x_test)."""
    return tmp_path, _write_npz(tmp_path / "mnist.npz", 0), _write_npz(tmp_path / "fashion_mnist.npz", 1)


@pytest.mark.parametrize(
    "name, shape, partner",
    [
        ("mnist", (1, 28, 28), "fashion-mnist"),
        ("mnist-5k", (1, 28, 28), "fashion-mnist"),
        ("fashion-mnist", (1, 28, 28), "mnist"),
        ("my-digits", (1, 28, 28), "mnist"),
        ("cifar10", (3, 32, 32), MNIST_RGB32),
        ("cifar10-jpeg", (3, 32, 32), MNIST_RGB32),
        ("my-colour", (3, 32, 32), MNIST_RGB32),
    ],
)
def test_partner(name, shape, partner):
    assert ood_partner(name, shape) == partner


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 32, 32), (3, 28, 28)])
def test_shape_without_partner_is_refused(tmp_path, shape):
    with pytest.raises(BenchmarkError, match=r"'tiny' has no out-of-distribution partner") as info:
        load_out_of_distribution(_record("tiny", shape), 4, tmp_path, download=False, cache_dir=tmp_path)
    assert "\n" not in str(info.value) and str(shape) in str(info.value)


@pytest.mark.parametrize("own, partner, index", [("mnist", "fashion-mnist", 2), ("fashion-mnist", "mnist", 1)])
def test_grey_pairs_load_the_partner_test_images(data_dir, own, partner, index):
    root = data_dir[0]
    dataset = load_dataset(own, root, download=False, cache_dir=root / "cache")
    out = load_out_of_distribution(dataset, 4, root, download=False, cache_dir=root / "cache")
    assert out.name == partner and out.x.dtype == torch.uint8
    assert np.array_equal(out.x.numpy(), data_dir[index][:4].reshape(4, 1, 28, 28))


def test_n_is_honoured(data_dir):
    root = data_dir[0]
    for n, expected in ((1, 1), (7, 7), (None, 10), (50, 10)):  # the first n; all for None or past the end
        out = load_out_of_distribution(_record("mnist", (1, 28, 28)), n, root, download=False, cache_dir=root)
        assert len(out.x) == expected
        assert np.array_equal(out.x.numpy()[:, 0], data_dir[2][:expected])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(BenchmarkError, match="positive integer"):
            load_out_of_distribution(_record("mnist", (1, 28, 28)), bad, root, download=False, cache_dir=root)


def test_cifar10_jpeg_gets_mnist_rgb32(data_dir):
    root, mnist_x, _ = data_dir
    out = load_out_of_distribution(_record("cifar10-jpeg", (3, 32, 32)), 5, root, download=False, cache_dir=root)
    assert out.name.startswith("mnist-rgb32 (mnist digits") and out.note is not None  # the tiny npz note
    assert out.x.shape == (5, 3, 32, 32) and out.x.dtype == torch.uint8
    x = out.x.numpy()
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
    assert np.array_equal(x[:, 0, 2:30, 2:30], mnist_x[:5])  # the digit, centred
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert (x[:, :, border] == 0).all() and (x[:, :, ~border] > 0).all()


def test_mnist_rgb32_offline_falls_back_to_mnist_5k(tmp_path):
    out = load_out_of_distribution(_record("cifar10", (3, 32, 32)), 3, None, download=False, cache_dir=tmp_path)
    assert out.name.startswith("mnist-rgb32 (mnist-5k digits") and "MNIST NOT FOUND" in out.note
    assert out.x.shape == (3, 3, 32, 32)


def test_unloadable_partner_names_it(tmp_path):
    """fashion-mnist offline with no data dir: the error says which partner and why, on one line."""
    with pytest.raises(BenchmarkError, match="out-of-distribution set fashion-mnist for mnist could not be loaded: "
                                             "fashion-mnist not found") as info:
        load_out_of_distribution(_record("mnist", (1, 28, 28)), 4, None, download=False, cache_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_partner_of_another_shape_is_refused(monkeypatch, tmp_path):
    """A partner whose images are not the dataset's input shape (here a faked load) is never scored."""
    wrong = _record("fashion-mnist", (1, 32, 32))
    monkeypatch.setattr(ood, "load_dataset", lambda *a, **k: wrong)
    with pytest.raises(BenchmarkError, match=r"fashion-mnist for mnist has images of shape \(1, 32, 32\), not"):
        load_out_of_distribution(_record("mnist", (1, 28, 28)), 2, tmp_path, download=False, cache_dir=tmp_path)


@pytest.mark.skipif(not (SHARED / "mnist.npz").exists() or not (SHARED / "fashion_mnist.npz").exists(),
                    reason="needs ../shared/datasets/mnist.npz and fashion_mnist.npz")
def test_shared_datasets(tmp_path):
    mnist = load_dataset("mnist", SHARED, download=False, cache_dir=tmp_path)
    out = load_out_of_distribution(mnist, 100, SHARED, download=False, cache_dir=tmp_path)
    with np.load(SHARED / "fashion_mnist.npz") as npz:
        fashion = npz["x_test"][:100]
    assert out.name == "fashion-mnist" and out.note is None
    assert np.array_equal(out.x.numpy().reshape(100, 28, 28), fashion)
    manifest = SHARED / "cifar10-jpeg" / "dataset.json"  # its shape, without decoding 60,000 images
    shape = tuple(json.loads(manifest.read_text())["input_shape"]) if manifest.exists() else (3, 32, 32)
    colour = load_out_of_distribution(_record("cifar10-jpeg", shape), 8, SHARED, download=False, cache_dir=tmp_path)
    assert colour.name.startswith("mnist-rgb32 (mnist digits") and colour.note is None
    assert colour.x.shape == (8, 3, 32, 32)
    assert np.array_equal(colour.x[:, 1, 2:30, 2:30].numpy(), mnist.x_test[:8, 0].numpy())
