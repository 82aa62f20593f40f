"""The run store: one directory per run, written so that an interrupted run resumes where it stopped.

Layout of ``runs/<run-id>/``:
- ``config.json``: everything that defines the run (model, dataset, profile, seeds, S/K/R, attack settings)
- ``conditions/<id>.csv`` and ``conditions/<id>.npz``: the metrics rows and per-example arrays of each
  finished evaluation condition; a condition counts as done only when both exist (the .csv is written last)
- ``conditions/<id>.failed.json``: instead of those, for a condition the plugin made fail (its error)
- ``metrics.csv``: long format ``condition, param, metric, value``, the union of the finished conditions
- ``reliability.csv``: the clean-data reliability table
- ``summary.json``: the leaderboard row of this run

Every file is written to a temporary name and renamed, so a kill never leaves a half-written file.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.names import METRIC_COLUMNS

#: where a command keeps runs/, checkpoints/ and leaderboards/ unless ``--out`` says otherwise: a folder of the
#: user's own, so that a run from inside a checkout never rewrites the published leaderboards/ (``--out .`` does)
DEFAULT_OUT = Path("results")
#: config keys that describe a run without deciding its numbers: when it started, where the data was found and
#: what the loader said about it (a failed download leaves a folder that changes the fallback's note)
DESCRIPTIVE_KEYS = ("date", "notes", "dataset_source", "dataset_description")


def identity(config: dict) -> dict:
    """What decides a run's numbers: its config less :data:`DESCRIPTIVE_KEYS`. Its digest names the run's
    directory, so a rerun that differs only in description resumes the same run."""
    return {key: value for key, value in config.items() if key not in DESCRIPTIVE_KEYS}


def slug(name: str) -> str:
    """A file-system-safe form of a (possibly user-supplied) name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` through a synced temporary file and a rename: a kill leaves the old file or the new one.
    The file gets the mode an ordinary ``open`` would give it (0666 less the umask), not mkstemp's private 0600:
    the pages and tables are for others to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    """Write ``obj`` atomically as indented JSON with sorted keys (anything else JSON lacks as its str)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path):
    """A JSON file of the run directory; an unreadable or malformed one is a :class:`BenchmarkError`."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"cannot read {path}: {exc}") from exc


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conditions = self.root / "conditions"

    @property
    def run_id(self) -> str:
        return self.root.name

    def write_config(self, config: dict) -> None:
        existing = self.root / "config.json"
        if existing.exists():  # a resumed run keeps the description it started with
            old, new = read_json(existing), json.loads(json.dumps(config, default=str))
            if identity(old) != identity(new):
                raise BenchmarkError(f"{self.root} holds a run with a different config; use another --out")
            return
        self._write_json(existing, config)

    def write_summary(self, row: dict) -> None:
        self._write_json(self.root / "summary.json", row)

    def _write_json(self, path: Path, obj) -> None:
        self._write(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())

    def config(self) -> dict:
        return read_json(self.root / "config.json")

    def is_done(self, condition_id: str) -> bool:
        finished = ((self.conditions / f"{condition_id}.csv").exists()
                    and (self.conditions / f"{condition_id}.npz").exists())
        return finished or self.failure(condition_id) is not None

    def save_condition(self, condition_id: str, rows: list[dict], arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        self._write(self.conditions / f"{condition_id}.npz", buffer.getvalue())
        self._write(self.conditions / f"{condition_id}.csv",
                    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(index=False).encode())

    def save_failure(self, condition_id: str, error: str) -> None:
        self._write(self.conditions / f"{condition_id}.failed.json",
                    json.dumps({"condition": condition_id, "error": error}, indent=2).encode())

    def failure(self, condition_id: str) -> str | None:
        """The recorded error of a failed condition, or None."""
        path = self.conditions / f"{condition_id}.failed.json"
        return read_json(path)["error"] if path.exists() else None

    def failures(self) -> dict[str, str]:
        return {p.name.removesuffix(".failed.json"): read_json(p)["error"]
                for p in sorted(self.conditions.glob("*.failed.json"))}

    def _write(self, path: Path, data: bytes) -> None:
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise BenchmarkError(f"cannot write {path}: {exc.strerror or exc}; the finished conditions of {self.root} "
                                 "are intact and the same command resumes from them once there is room") from exc

    def load_arrays(self, condition_id: str) -> dict[str, np.ndarray]:
        with np.load(self.conditions / f"{condition_id}.npz", allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def load_rows(self, condition_id: str) -> pd.DataFrame:
        return pd.read_csv(self.conditions / f"{condition_id}.csv")

    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        self._write(self.root / name, frame.to_csv(index=False).encode())

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.root / "metrics.csv")


def list_runs(out_dir: Path) -> list[RunStore]:
    """Finished runs (those with a summary) under ``out_dir/runs``."""
    runs_dir = Path(out_dir) / "runs"
    if not runs_dir.is_dir():
        return []
    return [RunStore(p) for p in sorted(runs_dir.iterdir()) if (p / "summary.json").exists()]
