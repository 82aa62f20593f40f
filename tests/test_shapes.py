"""Plugins on a user's own dataset: any image shape from 8x8 up and any class count from 2 for the plugins built
on the benchmark's CNNs; the others say in `benchmark list` which shapes they take and why."""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmark.attacks.plan import attack_plan
from benchmark.layers.cnn import make_cnn
from benchmark.plugin import Task
from benchmark.profiles import PROFILES
from benchmark.registry import create_model, list_models
from benchmark.runner import RunRequest, run


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 20, 20), (3, 16, 16), (3, 8, 8), (2, 12, 9), (4, 24, 17)])
@pytest.mark.parametrize("classes", [2, 3, 4])
def test_the_benchmark_cnn_builds_for_any_shape_from_8x8_and_any_class_count(shape, classes):
    network = make_cnn(Task("any", shape, classes, 10))
    assert network(torch.rand(2, *shape)).shape == (2, classes)


def test_the_mnist_and_cifar_nets_are_unchanged():
    """Published rows were trained on these: the first dense layer keeps its width."""
    widths = {shape: next(m for m in make_cnn(Task("d", shape, 10, 10)) if isinstance(m, torch.nn.Linear)).in_features
              for shape in ((1, 28, 28), (3, 32, 32))}
    assert widths == {(1, 28, 28): 32 * 7 * 7, (3, 32, 32): 256 * 4 * 4}


def test_every_bundled_plugin_either_takes_any_shape_or_says_why_not():
    for name in list_models():
        plugin = create_model(name)
        if not type(plugin).__module__.startswith("benchmark.models."):
            continue  # plugin files other tests registered in this process
        if plugin.input_shapes is None:
            assert plugin.supports((3, 16, 16)) and plugin.supports((1, 20, 20)) and not plugin.supports((1, 4, 4))
        else:
            assert plugin.shapes_reason, name  # shown by `benchmark list`
            assert not plugin.supports((3, 16, 16)) and plugin.shapes_reason in plugin.shapes_text()


def _manifest(root, name, shape, classes, n_train=64, n_test=8):
    """A dataset.json folder of random images (NCHW float32 in [0, 1])."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        np.savez(folder / f"{split}.npz", x=rng.random((n, *shape), dtype=np.float32), y=rng.integers(0, classes, n))
    (folder / "dataset.json").write_text(json.dumps({
        "name": name, "description": f"random {shape} images, {classes} classes", "num_classes": classes,
        "class_names": [f"c{i}" for i in range(classes)], "input_shape": list(shape), "array_layout": "NCHW",
        "dtype": "float32", "eps_linf": 0.1,
        "splits": {s: {"files": [f"{s}.npz"], "x": "x", "y": "y"} for s in ("train", "test")},
        "sha256": {f"{s}.npz": hashlib.sha256((folder / f"{s}.npz").read_bytes()).hexdigest()
                   for s in ("train", "test")}}))
    return root


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """One output directory and one 3x16x16, 4-class manifest dataset for the whole module."""
    root = tmp_path_factory.mktemp("odd-shapes")
    _manifest(root / "data", "rgb16", (3, 16, 16), 4)
    _manifest(root / "data", "gray20", (1, 20, 20), 3)
    return root


def _tiny_plan(monkeypatch):
    monkeypatch.setitem(PROFILES, "quick", replace(PROFILES["quick"], attacks=attack_plan(
        pgd_steps=2, pgd_restarts=1, square_queries=5, autoattack=False)))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if create_model(n).supports((3, 16, 16))
                                  and type(create_model(n)).__module__.startswith("benchmark.models.")])
def test_a_3x16x16_four_class_manifest_dataset_runs_with_every_plugin_that_claims_it(odd, name, monkeypatch):
    _tiny_plan(monkeypatch)
    row = run(RunRequest(model=name, dataset="rgb16", data_dir=odd / "data", out=odd / "out", device="cpu",
                         n_test=8, epochs=1))
    assert row["dataset"] == "rgb16" and 0 <= row["robust_acc"] <= row["clean_acc"] <= 1
    assert "condition-failed" not in row["flags"]


@pytest.mark.slow
def test_a_grayscale_20x20_three_class_dataset_runs_end_to_end(odd, monkeypatch):
    _tiny_plan(monkeypatch)
    row = run(RunRequest(model="mc-dropout", dataset="gray20", data_dir=odd / "data", out=odd / "out", device="cpu",
                         n_test=8, epochs=1))
    assert row["dataset"] == "gray20" and "transfer" in row["attacks"]  # its baseline surrogate built as well


@pytest.mark.slow
def test_a_plugin_on_a_shape_the_baseline_refuses_runs_without_the_transfer_attack(tmp_path, monkeypatch):
    """The surrogate obeys the same rule: no baseline is built for a shape the baseline does not take."""
    _tiny_plan(monkeypatch)
    plugin = tmp_path / "small_images.py"
    plugin.write_text(
        "from torch import nn\n"
        "from benchmark.plugin import ModelPlugin\n"
        "from benchmark.registry import register_model\n\n\n"
        "@register_model('six-pixel-linear')\n"
        "class SixPixelLinear(ModelPlugin):\n"
        "    input_shapes = ((1, 6, 6),)\n"
        "    shapes_reason = 'a test plugin'\n\n"
        "    def build(self, task):\n"
        "        return nn.Sequential(nn.Flatten(), nn.Linear(36, task.num_classes))\n")
    _manifest(tmp_path / "data", "tiny6", (1, 6, 6), 5)
    row = run(RunRequest(model=f"{plugin}:six-pixel-linear", dataset="tiny6", data_dir=tmp_path / "data",
                         out=tmp_path / "out", device="cpu", n_test=8, epochs=1))
    assert "transfer" not in row["attacks"].split("+")
    assert not list((tmp_path / "out" / "checkpoints").glob("*baseline*"))
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert "transfer" in json.loads((run_dir / "config.json").read_text())["attacks_not_applicable"]
