"""The run store: files readable as any other file the user writes, a run's identity its numbers' alone."""

import os
import stat

import pytest

from benchmark.errors import BenchmarkError
from benchmark.store import RunStore, atomic_write_text, identity


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "index.html", "<p>board</p>")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "index.html").stat().st_mode) == mode
    assert (tmp_path / "index.html").read_text() == "<p>board</p>"


def test_descriptive_keys_are_not_part_of_a_runs_identity():
    config = {"model": "endp", "eps": 0.3, "date": "2026-12-07", "notes": [], "dataset_source": "a/mnist.npz"}
    described = {**config, "date": "2026-12-08", "notes": ["MNIST NOT FOUND, looked in: ..."],
                 "dataset_source": "b/mnist.npz"}
    assert identity(described) == identity(config) == {"model": "endp", "eps": 0.3}
    assert identity({**config, "eps": 0.1}) != identity(config)


def test_a_resumed_run_keeps_its_config_unless_the_numbers_would_differ(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_config({"model": "endp", "eps": 0.3, "notes": []})
    store.write_config({"model": "endp", "eps": 0.3, "notes": ["another fallback note"]})
    assert store.config()["notes"] == []
    with pytest.raises(BenchmarkError, match="different config"):
        store.write_config({"model": "endp", "eps": 0.1, "notes": []})
