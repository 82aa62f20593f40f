"""RobustBench zoo models as plugins (``--model robustbench:<ModelName>``), with a small zoo architecture and
random weights saved in RobustBench's layout; nothing is downloaded."""

import numpy as np
import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.registry import create_model
from benchmark.runner import RunRequest, run

try:
    from benchmark.robustbench_compat import import_robustbench

    import_robustbench()
except BenchmarkError as missing:  # the dev extra installs it
    pytest.skip(f"robustbench is not installed: {missing}", allow_module_level=True)
ZOO_NAME = "Ding2020MMA"  # a WideResNet-28-4, the smallest single-checkpoint L-inf CIFAR-10 entry


def _cifar10(root, n_train=64, n_test=4):
    """A tiny stand-in for cifar10.npz (random pixels: only the plumbing is tested)."""
    gen = np.random.default_rng(0)
    arrays = {"x_train": gen.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
              "y_train": gen.integers(0, 10, n_train), "x_test": gen.integers(0, 256, (n_test, 32, 32, 3),
                                                                               dtype=np.uint8),
              "y_test": gen.integers(0, 10, n_test)}
    np.savez(root / "cifar10.npz", **arrays)
    return root


def _zoo_weights(model_dir, seed=0):
    """Random weights for the zoo architecture, saved as RobustBench's checkpoints are: {'state_dict': ...} with
    DataParallel's ``module.`` prefix, under <model_dir>/cifar10/Linf/<name>.pt."""
    from benchmark.zoo import zoo_entries

    torch.manual_seed(seed)
    network = zoo_entries("cifar10")[ZOO_NAME]["model"]()
    path = model_dir / "cifar10" / "Linf" / f"{ZOO_NAME}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in network.state_dict().items()}, "epoch": 3}, path)
    return network


def test_a_missing_weights_file_is_one_line_naming_the_file_and_the_fetch(tmp_path):
    data = _cifar10(tmp_path)
    with pytest.raises(BenchmarkError) as error:
        run(RunRequest(model=f"robustbench:{ZOO_NAME}", dataset="cifar10", data_dir=data, model_dir=tmp_path / "zoo",
                       out=tmp_path, device="cpu", n_test=2))
    message = str(error.value)
    assert str(tmp_path / "zoo" / "cifar10" / "Linf" / f"{ZOO_NAME}.pt") in message
    assert f"benchmark fetch robustbench:{ZOO_NAME} --dataset cifar10 --model-dir {tmp_path / 'zoo'}" in message
    assert "\n" not in message


def test_unknown_zoo_names_and_datasets_are_refused(tmp_path):
    from benchmark.plugin import Task

    with pytest.raises(BenchmarkError, match="has no Linf model 'Nobody2099'"):
        create_model("robustbench:Nobody2099").build(Task("cifar10", (3, 32, 32), 10, 10))
    with pytest.raises(BenchmarkError, match="run it with --dataset cifar10"):
        create_model(f"robustbench:{ZOO_NAME}").build(Task("mnist", (1, 28, 28), 10, 10))
    plugin = create_model(f"robustbench:{ZOO_NAME}", model_dir=tmp_path)
    with pytest.raises(BenchmarkError, match="run it with --dataset cifar10"):  # a 3x32x32 dataset of its own
        plugin.load_weights(plugin.build(Task("my-cifar", (3, 32, 32), 10, 10)), Task("my-cifar", (3, 32, 32), 10, 10))


def test_the_zoo_weights_load_exactly_and_nothing_is_trained(tmp_path):
    from benchmark.plugin import Task

    reference = _zoo_weights(tmp_path / "zoo")
    plugin = create_model(f"robustbench:{ZOO_NAME}", model_dir=tmp_path / "zoo")
    task = Task("cifar10", (3, 32, 32), 10, 10)
    network = plugin.build(task)
    digest = plugin.load_weights(network, task)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(network.eval()(x), reference.eval()(x))
    assert len(digest) == 12


@pytest.mark.slow
def test_a_zoo_model_runs_end_to_end_and_its_row_says_published_weights(tmp_path):
    _zoo_weights(tmp_path / "zoo")
    row = run(RunRequest(model=f"robustbench:{ZOO_NAME}", dataset="cifar10", data_dir=_cifar10(tmp_path),
                         model_dir=tmp_path / "zoo", out=tmp_path, device="cpu", n_test=4, n_train=64, epochs=1))
    assert row["model"] == f"robustbench:{ZOO_NAME}" and row["predictive"] == "deterministic"
    assert row["training"] == "published weights" and row["train_seconds"] == 0
    assert "weights=given" not in row["protocol"]  # ranked with the trained rows of the same protocol
    assert not list((tmp_path / "checkpoints").glob("*Ding2020MMA*"))  # nothing trained, nothing cached


def test_benchmark_list_names_the_zoo_as_one_group():
    import re

    from typer.testing import CliRunner

    from benchmark.cli import app

    listing = CliRunner().invoke(app, ["list"], env={"COLUMNS": "300"}).output
    assert re.search(r"robustbench:<ModelName>: RobustBench zoo models, deterministic, .* \d+ for cifar10 \(Linf\)",
                     listing)
    assert "Ding2020MMA" not in listing  # a group, not every name


def test_benchmark_fetch_downloads_with_robustbenchs_downloader_to_where_a_run_looks(tmp_path, monkeypatch):
    """Offline up to the download: RobustBench's downloader is replaced by one that writes the checkpoint it would
    have fetched, and the run that follows reads it from there."""
    from typer.testing import CliRunner

    from benchmark.cli import app
    from benchmark.robustbench_compat import import_robustbench

    utils = import_robustbench("robustbench.utils")
    calls = []

    def download(gdrive_id, path):
        calls.append((gdrive_id, path))
        _zoo_weights(tmp_path / "scratch")
        (tmp_path / "scratch" / "cifar10" / "Linf" / f"{ZOO_NAME}.pt").rename(path)

    monkeypatch.setattr(utils, "download_gdrive_new", download)
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["fetch", f"robustbench:{ZOO_NAME}"])
    assert result.exit_code == 0, result.output
    expected = tmp_path / "cache" / "robustbench" / "cifar10" / "Linf" / f"{ZOO_NAME}.pt"
    assert [path for _, path in calls] == [expected] and calls[0][0]  # RobustBench's id for the file
    assert str(expected) in result.output  # one line, however long the path
    plugin = create_model(f"robustbench:{ZOO_NAME}")  # the default model directory is where fetch wrote
    from benchmark.plugin import Task

    task = Task("cifar10", (3, 32, 32), 10, 10)
    plugin.load_weights(plugin.build(task), task)
    again = CliRunner().invoke(app, ["fetch", f"robustbench:{ZOO_NAME}"])
    assert again.exit_code == 0 and len(calls) == 1  # there already: nothing downloaded


def test_a_failed_fetch_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from benchmark.robustbench_compat import import_robustbench
    from benchmark.zoo import fetch_weights

    def download(gdrive_id, path):
        path.write_bytes(b"half a file")
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(import_robustbench("robustbench.utils"), "download_gdrive_new", download)
    plugin = create_model(f"robustbench:{ZOO_NAME}", model_dir=tmp_path)
    from benchmark.plugin import Task

    with pytest.raises(BenchmarkError, match="name resolution") as error:
        fetch_weights(plugin, Task("cifar10", (3, 32, 32), 10, 10))
    assert "\n" not in str(error.value)
    assert not list(tmp_path.rglob("*.pt"))
