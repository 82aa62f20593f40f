"""The speed scripts under benchmarks/ run end to end at tiny sizes on the CPU and print their tables.

No timings are asserted (the figures are the scripts' output, see benchmarks/README.md): these only check
that each script's main runs, prints a table and returns rows, and that the reference ResNet-18 loads the
pyautoattack checkpoint strictly and classifies cifar10-jpeg images sensibly.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATASETS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def _main(name: str):
    return importlib.import_module(name).main


def _printed_table(capsys) -> str:
    out = capsys.readouterr().out
    assert "┏" in out and "┃" in out, out  # a rich table
    return out


def test_attack_speed_runs(capsys):
    # seed 1: the tiny random net gets all 4 random images wrong, so AutoAttack's later stages (Square's 5,000
    # queries on every image left standing) have nothing to attack and the test stays fast
    rows = _main("attack_speed")(["--device", "cpu", "--model", "tiny", "--dataset", "random", "--n", "4",
                                  "--steps", "2", "--eps", "8", "--seed", "1"])
    out = _printed_table(capsys)
    methods = {r["method"] for r in rows}
    assert methods == {"pgd", "torchattacks-pgd", "apgd-ce", "pyautoattack-apgd-ce", "autoattack", "pyautoattack",
                       "autoattack-floor"}
    attacks = [r for r in rows if r["method"] != "autoattack-floor"]
    assert all(r["seconds"] > 0 and 0 <= r["robust_acc"] <= 1 for r in attacks)
    floor = next(r for r in rows if r["method"] == "autoattack-floor")
    assert floor["survivors"] == 0 and floor["seconds"] == 0  # every image misclassified: nothing to spend
    assert "speed-up" in out


def test_autoattack_floor_counts_the_standard_budget_on_the_survivors():
    speed = importlib.import_module("attack_speed")
    # APGD-CE + APGD-T: (1 + T) x 101 gradients; FAB-T: T x 100 gradients and forward passes; Square 5,000
    assert speed.standard_passes(10) == (10 * 101 + 9 * 100, 9 * 100 + 5000)
    assert speed.standard_passes(3) == (3 * 101 + 2 * 100, 2 * 100 + 5000)
    common = importlib.import_module("common")
    torch.manual_seed(0)
    net = common.TinyNet().eval()
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 10, (6,))
    survivors = torch.tensor([True, False, True, True, False, False])
    floor = speed.autoattack_floor(net, x, y, survivors, 2, torch.device("cpu"))
    gradients, forwards = speed.standard_passes(10)
    assert floor["survivors"] == 3 and floor["gradients"] == 3 * gradients and floor["forwards"] == 3 * forwards
    expected = floor["gradients"] / floor["gradient_rate"] + floor["forwards"] / floor["forward_rate"]
    assert floor["seconds"] == pytest.approx(expected)
    assert floor["forward_rate"] > 0 and floor["gradient_rate"] > 0


def test_limit_runs(capsys):
    rows = _main("limit")(["--device", "cpu", "--model", "tiny", "--dataset", "random", "--n", "4", "--steps", "2",
                           "--iters", "2"])
    _printed_table(capsys)
    assert rows[0]["fraction_of_floor"] == 1.0 and rows[-1]["method"].startswith("harness PGD")


def test_eot_speed_runs(capsys):
    rows = _main("eot_speed")(["--device", "cpu", "--network", "tiny-dropout", "--dataset", "random", "--n", "4",
                               "--eot", "2", "--samples", "2", "--iters", "2"])
    _printed_table(capsys)
    assert len(rows) == 2 and all(r["seconds"] > 0 for r in rows)


def test_scaling_runs(capsys):
    out = _main("scaling")(["--device", "cpu", "--n", "2", "--batch-size", "2", "--samples", "1", "--eot", "1",
                            "--steps", "1", "--n-list", "--samples-list", "2", "--eot-list", "--batch-list",
                            "--moment-plugins", "baseline", "vdp", "--iters", "1"])
    _printed_table(capsys)
    assert [r["varied"] for r in out["sweep"]] == ["base", "samples"]
    assert all(isinstance(r["pgd_s"], float) for r in out["sweep"])
    assert [r["plugin"] for r in out["plugins"]] == ["baseline", "vdp"]


@pytest.mark.skipif(importlib.util.find_spec("pyautoattack") is None, reason="pyautoattack not installed")
def test_reference_checkpoint_is_a_plain_state_dict_and_loads_strictly():
    common = importlib.import_module("common")
    state = torch.load(common.reference_checkpoint(), map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    model = common.ResNet18()
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected name


@pytest.mark.skipif(not (SHARED_DATASETS / "cifar10-jpeg" / "dataset.json").is_file(), reason="no cifar10-jpeg copy")
def test_reference_model_classifies_cifar10_jpeg():
    common = importlib.import_module("common")
    torch.set_num_threads(1)
    model = common.load_model("resnet18", torch.device("cpu"))
    images = common.load_images("cifar10-jpeg", str(SHARED_DATASETS), 32, torch.device("cpu"))
    assert "not the official CIFAR-10" in images.label
    assert common.accuracy(model, images.x, images.y, 32) > 0.5


def test_clean_accuracy_finds_each_models_own_newest_checkpoint(tmp_path):
    import os

    find = _main("clean_accuracy").__globals__["find_checkpoint"]
    (tmp_path / "checkpoints").mkdir()
    old, new, other = (tmp_path / "checkpoints" / n for n in
                       ("mnist-snn-0a.safetensors", "mnist-snn-1b.safetensors", "mnist-snn-noise-2c.safetensors"))
    for i, path in enumerate((old, new, other)):
        path.write_bytes(b"")
        os.utime(path, (1000 + i, 1000 + i))
    assert find(tmp_path, "mnist", "snn") == new  # not the older one, nor snn-noise's
    assert find(tmp_path, "mnist", "snn-noise") == other
    with pytest.raises(SystemExit, match="no checkpoint of bbb"):
        find(tmp_path, "mnist", "bbb")


@pytest.mark.parametrize("model", ["baseline", "mc-dropout"])
def test_clean_accuracy_scores_the_deployed_rule(tmp_path, model, capsys):
    """A checkpoint whose last layer always says class 3 scores the share of 3s in the test set."""
    from benchmark.checkpoints import save_checkpoint
    from benchmark.data import load_dataset
    from benchmark.plugin import Task
    from benchmark.registry import create_model

    dataset = load_dataset("mnist-5k", download=False)
    task = Task(dataset.name, dataset.input_shape, dataset.num_classes, len(dataset.y_train), "quick")
    network = create_model(model).build(task)
    last = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), 10).float())
    save_checkpoint(network, tmp_path / "checkpoints" / f"mnist-5k-{model}-00.safetensors", {})
    rows = _main("clean_accuracy")([model, "--out", str(tmp_path), "--dataset", "mnist-5k", "--samples", "2"])
    _printed_table(capsys)
    assert rows == [{"model": model, "correct": int((dataset.y_test == 3).sum()), "total": len(dataset.y_test),
                     "checkpoint": f"mnist-5k-{model}-00.safetensors"}]


@pytest.mark.slow
def test_gpu_check_runs_every_script_at_tiny_sizes_and_prints_one_summary():
    """The GPU check's own entry point, as a user runs it, at CPU plumbing sizes (what CI can check of it)."""
    import subprocess

    result = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--sizes", "tiny"], capture_output=True,
                            text=True, env={**os.environ, "PYTHON": sys.executable, "COLUMNS": "200"}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = result.stdout[result.stdout.index("gpu_check (tiny sizes)"):]
    for script in ("attack_speed", "limit", "eot_speed", "scaling"):
        assert f"{script}" in summary
    assert summary.count("wall time of the script") == 4
    assert "faster than pyautoattack rand" in summary and "of the bare forward+backward throughput" in summary


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATASETS.exists(), reason="needs ../shared/datasets")
def test_eot_convergence_compares_each_k_with_half_of_it(tmp_path, capsys):
    rows = _main("eot_convergence")(["--plugin", "mc-dropout", "--data-dir", str(SHARED_DATASETS), "--n", "8",
                                     "--eot", "1", "2", "--steps", "1", "--epochs", "1", "--cache", str(tmp_path)])
    out = _printed_table(capsys)
    assert [r["eot"] for r in rows] == [1, 2] and "smallest K" in out
    assert rows[0]["p_vs_half"] != rows[0]["p_vs_half"] and 0 <= rows[1]["p_vs_half"] <= 1  # NaN: nothing before


def test_adaptive_strength_runs_both_budgets_on_the_same_flagged_points(tmp_path, capsys):
    found = _main("adaptive_strength")(["--plugin", "baseline", "--data-dir", str(SHARED_DATASETS), "--n", "16",
                                        "--eps", "0.3", "--steps", "3", "--scale", "2", "--epochs", "1",
                                        "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    assert "protocol: 3 steps x 1 restarts" in out and "2x: 6 steps x 2 restarts" in out
    assert 0 <= found["protocol"] <= 1 and 0 <= found["2x"] <= 1 and 0 <= found["p"] <= 1
