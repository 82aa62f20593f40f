"""baseline-noise: the baseline's network, the baseline's recipe with KAP's sigma, and training batches that the
network really sees noised with that sigma (a spy on its inputs during the shared loop); deterministic deployed."""

from dataclasses import replace

import pytest
import torch

from benchmark.layers.cnn import make_cnn
from benchmark.models.baseline import cnn_recipe
from benchmark.models.baseline_noise import BaselineNoise
from benchmark.models.kap import KAP
from benchmark.plugin import Task
from benchmark.registry import get_plugin_class
from benchmark.training import train

SMALL = Task("mnist", (1, 28, 28), 10, n_train=64)
COLOUR = Task("cifar10", (3, 12, 12), 10, n_train=64)  # the VGG-style net, small and fast

pytestmark = pytest.mark.usefixtures("seeded", "one_thread")  # tests/conftest.py: small nets, small batches


@pytest.mark.parametrize("profile", ["quick", "standard"])
@pytest.mark.parametrize("task", [SMALL, COLOUR])
def test_recipe_is_the_baselines_with_kaps_sigma(task, profile):
    task = replace(task, profile=profile)
    config = BaselineNoise().train_config(task)
    assert config.noise_sigma == KAP().noise_sigma(task) > 0
    assert replace(config, noise_sigma=0.0) == cnn_recipe(task)


def test_sigma_follows_kaps_definition(monkeypatch):
    """One definition: changing KAP's sigma changes baseline-noise's."""
    monkeypatch.setattr(KAP, "noise_sigma", lambda self, task: 0.123)
    assert BaselineNoise().train_config(SMALL).noise_sigma == 0.123


@pytest.mark.parametrize("task", [SMALL, COLOUR])
def test_network_is_the_baselines(task):
    assert [type(m) for m in BaselineNoise().build(task)] == [type(m) for m in make_cnn(task)]
    assert get_plugin_class("baseline-noise") is BaselineNoise


@pytest.mark.parametrize("task", [SMALL, COLOUR])
def test_training_batches_are_noised_with_kaps_sigma_and_the_predictive_is_deterministic(task):
    """Flat grey images: what the network sees in training is 0.5 + sigma * n clipped to [0, 1]. The median
    absolute deviation from 0.5 is 0.6745 sigma (clipping at 0 and 1 lies beyond it), so it estimates sigma."""
    plugin = BaselineNoise()
    sigma = KAP().noise_sigma(task)
    network = plugin.build(task)
    seen = []
    network.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone())
                                      if module.training else None)
    x, y = torch.full((64, *task.input_shape), 0.5), torch.randint(0, 10, (64,))
    config = replace(plugin.train_config(task), epochs=1, min_steps=0, batch_size=32)
    train(plugin, network, x, y, task, config, torch.device("cpu"), seed=0)
    assert len(seen) == 2  # one forward per step, both noised
    fed = torch.cat(seen)
    assert fed.min() >= 0 and fed.max() <= 1
    assert (fed - 0.5).abs().median() / 0.6745 == pytest.approx(sigma, rel=0.03)
    assert (fed - 0.5).mean().abs() < 0.01
    # deployed: no noise, the same logits for the same input
    network.eval()
    probe = torch.rand(4, *task.input_shape)
    with torch.no_grad():
        assert torch.equal(network(probe), network(probe))
    assert plugin.predictive == "deterministic"
