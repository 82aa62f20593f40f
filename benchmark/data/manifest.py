"""Manifest datasets: every subdirectory of the data directory that holds a dataset.json registers a dataset, with
no code. The format is in docs/datasets.md, "Manifest datasets"; _FIELDS below is its checkable half."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.data.arrays import check_pixels, int64_labels, nchw_images, read_npz
from benchmark.data.builtin import BUILTIN_DATASETS
from benchmark.data.dataset import Dataset, one_line
from benchmark.errors import BenchmarkError

MANIFEST = "dataset.json"
# Dataset names become file names (leaderboards/<dataset>.csv), so they may not hold path separators.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")


def _is_name(v: object) -> bool:
    return isinstance(v, str) and _NAME_RE.match(v) is not None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_file_name(v: object) -> bool:
    """A path relative to the manifest's directory that stays inside it."""
    return isinstance(v, str) and v != "" and not Path(v).is_absolute() and ".." not in Path(v).parts


@dataclass(frozen=True)
class _Rule:
    """What one field must be: ``check(value, manifest)``, and the words an error shows (``{num_classes}`` is
    filled in from the manifest). ``then(value, manifest, where)``, if any, checks what lies inside the field."""

    check: Callable[[object, dict], bool]
    expected: str
    required: bool = True
    then: Callable[[object, dict, str], None] | None = None


def _check_splits(splits: dict, m: dict, where: str) -> None:
    """splits.train and splits.test: each an object whose fields follow _SPLIT_FIELDS."""
    for split in _SPLITS:
        _fields(_field(splits, split, _SPLIT, f"{where} splits"), _SPLIT_FIELDS, f"{where} splits.{split}")


def _check_every_file_has_a_sha256(sha256: dict, m: dict, where: str) -> None:
    for split in _SPLITS:
        for file in m["splits"][split]["files"]:
            if file not in sha256:
                raise BenchmarkError(f"{where}: no sha256 for {file!r}; add it (run: sha256sum {file})")


# The top-level fields of dataset.json, checked in this order: a rule relies on the fields above it (class_names
# on num_classes, sha256 on splits), and a manifest with several errors reports the first.
_FIELDS = {
    "name": _Rule(lambda v, m: _is_name(v), "a name of letters, digits, '.', '_' or '-'"),
    "num_classes": _Rule(lambda v, m: _is_int(v) and v >= 2, "an integer >= 2"),
    "splits": _Rule(lambda v, m: isinstance(v, dict), "an object with train and test", then=_check_splits),
    "sha256": _Rule(
        lambda v, m: isinstance(v, dict) and all(isinstance(h, str) and _HEX64_RE.match(h) for h in v.values()),
        "an object mapping each file name to its 64-hex-digit sha256",
        then=_check_every_file_has_a_sha256,
    ),
    "description": _Rule(lambda v, m: isinstance(v, str), "a string", required=False),
    "class_names": _Rule(
        lambda v, m: isinstance(v, list) and len(v) == m["num_classes"] and all(isinstance(s, str) for s in v),
        "a list of num_classes ({num_classes}) strings",
    ),
    "input_shape": _Rule(
        lambda v, m: isinstance(v, list) and len(v) == 3 and all(_is_int(d) and d > 0 for d in v),
        "[C, H, W] with positive integers",
    ),
    "array_layout": _Rule(lambda v, m: v in ("NHWC", "NCHW"), '"NHWC" or "NCHW"'),
    "dtype": _Rule(lambda v, m: v in ("uint8", "float32"), '"uint8" or "float32"'),
    "eps_linf": _Rule(
        lambda v, m: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= 1,
        "a number in (0, 1] on the [0, 1] input scale",
    ),
}
_SPLITS = ("train", "test")
_SPLIT = _Rule(lambda v, m: isinstance(v, dict), "an object with files, x and y")
# The fields of splits.train and splits.test.
_SPLIT_FIELDS = {
    "files": _Rule(
        lambda v, m: isinstance(v, list) and v and all(map(_is_file_name, v)),
        "a non-empty list of npz file names relative to the manifest",
    ),
    "x": _Rule(lambda v, m: isinstance(v, str) and v != "", "an array key in the npz files"),
    "y": _Rule(lambda v, m: isinstance(v, str) and v != "", "an array key in the npz files"),
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


def find_manifests(root: Path | None) -> dict[str, Path]:
    """Name -> manifest for every immediate subdirectory of the data dir that holds a dataset.json."""
    found: dict[str, Path] = {}
    if root is None:
        return found
    for path in sorted(sub / MANIFEST for sub in root.iterdir()):
        if not path.is_file():
            continue
        name = _field(_read_json(path), "name", _FIELDS["name"], str(path))
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
        raise BenchmarkError(f"{path} is not valid JSON ({one_line(exc)}); fix the manifest") from exc
    if not isinstance(manifest, dict):
        raise BenchmarkError(f"{path}: the manifest must be a JSON object")
    return manifest


def _field(obj: dict, key: str, rule: _Rule, where: str):
    """obj[key] if present and valid, else a BenchmarkError saying what was expected."""
    expected = rule.expected.format_map(obj) if "{" in rule.expected else rule.expected
    if key not in obj:
        raise BenchmarkError(f"{where}: missing required field {key!r} ({expected})")
    value = obj[key]
    if not rule.check(value, obj):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise BenchmarkError(f"{where}: field {key!r} must be {expected}, got {shown}")
    return value


def _fields(obj: dict, rules: dict[str, _Rule], where: str) -> dict:
    """``obj`` once every field of ``rules`` that it holds or must hold has passed, in order."""
    for key, rule in rules.items():
        if rule.required or key in obj:
            value = _field(obj, key, rule, where)
            if rule.then is not None:
                rule.then(value, obj, where)
    return obj


def _parse_manifest(path: Path) -> _Manifest:
    """Check every field of a dataset.json up front, so a bad manifest fails before any data is read."""
    where = str(path)
    m = _fields(_read_json(path), _FIELDS, where)
    return _Manifest(
        name=m["name"],
        description=m.get("description", ""),
        num_classes=m["num_classes"],
        class_names=m["class_names"],
        input_shape=tuple(m["input_shape"]),
        layout=m["array_layout"],
        dtype=m["dtype"],
        eps_linf=float(m["eps_linf"]),
        splits={split: tuple(m["splits"][split][k] for k in ("files", "x", "y")) for split in _SPLITS},
        sha256=m["sha256"],
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


def load_manifest_dataset(path: Path) -> Dataset:
    """Verify every file's checksum, then read each split's files in order and concatenate them."""
    m = _parse_manifest(path)
    root = path.parent
    for file in dict.fromkeys(f for files, _, _ in m.splits.values() for f in files):
        _verify_sha256(root / file, m.sha256[file], path)
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split, (files, x_key, y_key) in m.splits.items():
        xs, ys = [], []
        for file in files:
            x, y = read_npz(root / file, (x_key, y_key))
            x = nchw_images(x, m.layout, m.input_shape, f"{root / file} {x_key}")
            check_pixels(x, m.dtype, f"{root / file} {x_key}")
            xs.append(x)
            ys.append(int64_labels(y, len(x), m.num_classes, f"{root / file} {y_key}"))
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
