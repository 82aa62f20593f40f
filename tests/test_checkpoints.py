from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.checkpoints import load_checkpoint, read_state, save_checkpoint
from benchmark.errors import BenchmarkError


class Exploit:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": Exploit(marker)}, path)
    with pytest.raises(BenchmarkError, match="refusing checkpoint"):
        read_state(path)
    assert not marker.exists()


def test_safetensors_round_trip_and_foreign_checkpoint(tmp_path):
    net = nn.Linear(3, 2)
    path = tmp_path / "net.safetensors"
    save_checkpoint(net, path, {"plugin": "x"})
    other = nn.Linear(3, 2)
    load_checkpoint(other, path)
    assert torch.equal(other.weight, net.weight)
    with pytest.raises(BenchmarkError, match="does not fit"):
        load_checkpoint(nn.Linear(4, 2), path)


def test_corrupt_safetensors_is_refused(tmp_path):
    path = tmp_path / "net.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(BenchmarkError, match="not a valid safetensors"):
        read_state(path)


def test_plain_tensor_pt_files_are_accepted(tmp_path):
    net = nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    other = nn.Linear(3, 2)
    load_checkpoint(other, tmp_path / "net.pt")
    assert torch.equal(other.bias, net.bias)


@pytest.mark.slow
def test_a_raw_pickle_given_as_checkpoint_is_one_error_line_with_the_right_hint(tmp_path):
    """torch's protocol warning used to add two lines, and the hint spoke of the cache (--retrain)."""
    import pickle
    import subprocess
    import sys

    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"weight": Exploit(marker)}))
    result = subprocess.run([sys.executable, "-m", "benchmark", "run", "--model", "baseline", "--dataset", "mnist-5k",
                             "--checkpoint", str(path), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "400"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing checkpoint"), result.stderr
    assert "--retrain" not in lines[0] and "checkpoint of this plugin's network" in lines[0]
    assert not marker.exists()


def test_a_checkpoint_of_another_model_names_its_misfits_in_one_line(tmp_path):
    path = tmp_path / "other.safetensors"
    save_checkpoint(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), path, {})
    with pytest.raises(BenchmarkError) as error:
        load_checkpoint(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), path)
    message = str(error.value)
    assert "\n" not in message
    assert "2 missing keys (2.bias, 2.weight)" in message
    assert "2 unexpected keys (1.bias, 1.weight)" in message
    assert "2 shape mismatches (0.bias: (4,) for (5,), 0.weight: (4, 3) for (5, 3))" in message


def test_state_misfit_shows_the_first_keys_and_counts_the_rest():
    from benchmark.checkpoints import state_misfit

    expected = {f"w{i}": torch.zeros(1) for i in range(5)}
    assert state_misfit(expected, dict(expected)) == ""
    assert state_misfit(expected, {}) == "5 missing keys (w0, w1, w2 and 2 more)"
