"""Reading npz files and checking their arrays: the image, pixel and label rules shared by the built-in and the
manifest datasets (docs/datasets.md, "Arrays")."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from benchmark.data.dataset import one_line
from benchmark.errors import BenchmarkError


def read_npz(path: Path, keys: tuple[str, ...]) -> list[np.ndarray]:
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
        raise BenchmarkError(f"{path} is not a readable npz archive ({one_line(exc)}); replace the file") from exc


def nchw_images(x: np.ndarray, layout: str | None, shape: tuple[int, int, int], where: str) -> np.ndarray:
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


def check_pixels(x: np.ndarray, dtype: str | None, where: str) -> None:
    """uint8 means 0..255; float32 must already be in [0, 1] because models assume that scale."""
    allowed = (dtype,) if dtype else ("uint8", "float32")
    if x.dtype.name not in allowed:
        raise BenchmarkError(f"{where}: images are {x.dtype}, expected {' or '.join(allowed)}")
    if x.dtype == np.float32 and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise BenchmarkError(
            f"{where}: float32 images must be finite and in [0, 1] (min {x.min()}, max {x.max()}); "
            f"store uint8 0..255 or rescale"
        )


def int64_labels(y: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
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
