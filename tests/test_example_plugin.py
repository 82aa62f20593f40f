"""The example plugin CONTRIBUTING.md shows: the file a newcomer copies runs end to end, and a recipe too short to
train a model says so."""

import math
import re
from pathlib import Path

import pytest
import torch

from benchmark.plugin import Task
from benchmark.registry import create_model, list_models
from benchmark.runner import RunRequest, run
from benchmark.training import FEW_STEPS, train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dropout_mlp.py"


def test_contributing_shows_the_example_file_as_it_is():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "CONTRIBUTING.md").read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks


@pytest.mark.slow
def test_the_example_plugin_runs_end_to_end_and_trains_enough(tmp_path, capsys):
    row = run(RunRequest(model=f"{EXAMPLE}:dropout-mlp", dataset="mnist-5k", n_test=40, out=tmp_path,
                         device="cpu"))
    assert row["predictive"] == "stochastic" and row["samples"] > 1
    assert row["clean_acc"] >= 0.85  # min_steps: 32 steps an epoch would leave it near 0.8
    assert "optimisation steps" not in capsys.readouterr().err


def test_a_recipe_with_few_steps_is_warned_about(capsys):
    plugin = create_model(f"{EXAMPLE}:dropout-mlp")
    task = Task("mnist-5k", (1, 28, 28), 10, 64)
    network = plugin.build(task)
    config = plugin.train_config(task)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    train(plugin, network, x, y, task, config.__class__(epochs=2, batch_size=32), torch.device("cpu"), 0)
    err = " ".join(capsys.readouterr().err.split())
    assert f"dropout-mlp trains for only 4 optimisation steps (2 epoch(s) of 2), fewer than {FEW_STEPS}" in err


@pytest.mark.parametrize("profile", ["quick", "standard"])
def test_no_bundled_recipe_is_too_short_on_the_smallest_dataset(profile):
    task = Task("mnist-5k", (1, 28, 28), 10, 4000, profile)
    for name in list_models():
        config = create_model(name).train_config(task)
        steps_per_epoch = math.ceil(task.n_train / config.batch_size)
        assert steps_per_epoch * max(config.epochs, math.ceil(config.min_steps / steps_per_epoch)) >= FEW_STEPS, name
