"""Bayes by Backprop: every layer mean-field, the loss is the per-example negative ELBO, the deployed
network is random in eval mode with per-example noise, the surrogate is the posterior-mean network."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers.variational import (
    LocalReparameterization,
    MeanFieldConv2d,
    MeanFieldLinear,
    gaussian_kl,
)
from benchmark.models.bbb import BayesByBackprop
from benchmark.plugin import Task

pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_weight_layer_is_mean_field_and_loss_is_the_elbo(shape):
    plugin = BayesByBackprop()
    task = Task("t", shape, 10, n_train=5000)
    network = plugin.build(task)
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in network.modules())
    layers = [m for m in network.modules() if isinstance(m, (MeanFieldConv2d, MeanFieldLinear))]
    assert len(layers) == sum(1 for m in network.modules() if isinstance(m, LocalReparameterization)) >= 4
    x, y = torch.rand(3, *shape), torch.randint(0, 10, (3,))
    out = network(x)
    kl = sum(gaussian_kl(m.weight_mu, m.weight_sigma, 1.0) + gaussian_kl(m.bias_mu, m.bias_sigma, 1.0) for m in layers)
    torch.testing.assert_close(plugin.loss(network, out, y, task), F.cross_entropy(out, y) + kl / 5000)


def test_deployed_network_is_random_per_example_in_eval_mode_and_surrogate_is_its_mean():
    plugin = BayesByBackprop()
    task = Task("t", (1, 28, 28), 10, n_train=100)
    network = plugin.build(task).eval()
    with torch.no_grad():
        for m in network.modules():
            if isinstance(m, LocalReparameterization):
                m.weight_rho.fill_(-2.0)
    x = torch.rand(1, 1, 28, 28).expand(2000, 1, 28, 28)
    with torch.no_grad():
        draws = network(x)
        surrogate = plugin.surrogate(network)
        mean_out = surrogate(x[:1])
    assert not torch.allclose(draws[0], draws[1])
    assert draws.std(0).min() > 0
    torch.testing.assert_close(surrogate(x[:1]), mean_out)
    # the first layer's pre-activation mean is the mean network's: check through the first conv
    first = next(m for m in network.modules() if isinstance(m, MeanFieldConv2d))
    first_mean = next(m for m in surrogate.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        z = first(x[:500])
        expected = first_mean(x[:1])
    assert ((z.mean(0) - expected[0]).abs() <= 5 * z.std(0) / 500 ** 0.5 + 1e-6).all()
