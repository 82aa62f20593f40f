"""The suite is at least as strong as RobustBench's own evaluation: on the same deterministic model, images and
eps, its robust accuracy is not higher than what robustbench's ``benchmark`` (AutoAttack standard) reports. The
images are fed through robustbench's API in place of its CIFAR-10 download."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.checkpoints import load_checkpoint
from benchmark.errors import BenchmarkError
from benchmark.plugin import Task
from benchmark.registry import create_model
from benchmark.robustbench_compat import import_robustbench
from benchmark.runner import RunRequest, run

try:
    robustbench_eval = import_robustbench("robustbench.eval")
except BenchmarkError as missing:  # the dev extra installs it
    pytest.skip(f"robustbench is not installed: {missing}", allow_module_level=True)

PLUGIN = f"{Path(__file__).parent / 'plugins' / 'good_plugin.py'}:tiny-linear"
EPS = 8 / 255


def _learnable_cifar(root: Path, n_train=600, n_test=40) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3x32x32, 10-class stand-in for cifar10.npz that a linear model learns: each class a fixed random
    pattern, each image its class's pattern plus noise."""
    gen = np.random.default_rng(0)
    patterns = gen.uniform(0.2, 0.8, (10, 32, 32, 3))

    def images(n):
        y = gen.integers(0, 10, n)
        x = np.clip(patterns[y] + gen.normal(0, 0.15, (n, 32, 32, 3)), 0, 1)
        return (x * 255).round().astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = images(n_train), images(n_test)
    np.savez(root / "cifar10.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return torch.from_numpy(x_test).permute(0, 3, 1, 2).contiguous().float() / 255, torch.from_numpy(y_test)


@pytest.mark.slow
def test_the_suite_is_not_weaker_than_robustbenchs_benchmark(tmp_path, monkeypatch):
    x, y = _learnable_cifar(tmp_path)
    row = run(RunRequest(model=PLUGIN, dataset="cifar10", data_dir=tmp_path, out=tmp_path, device="cpu",
                         profile="quick", n_test=len(y), epochs=3))
    network = create_model(PLUGIN).build(Task("cifar10", (3, 32, 32), 10, 600))
    (weights,) = (tmp_path / "checkpoints").glob("*tiny-linear*.safetensors")
    load_checkpoint(network, weights)
    monkeypatch.setattr(robustbench_eval, "load_clean_dataset", lambda dataset, n, data_dir, prepr: (x[:n], y[:n]))
    clean, robust = robustbench_eval.benchmark(network.eval(), n_examples=len(y), dataset="cifar10",
                                               threat_model="Linf", eps=EPS, device=torch.device("cpu"),
                                               batch_size=len(y))
    assert row["clean_acc"] == pytest.approx(clean)  # the same model on the same images
    assert 0 < robust < clean  # a case where the attack has work to do
    assert row["robust_acc"] <= robust, (row["robust_acc"], robust)
