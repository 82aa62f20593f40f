"""STF-BNN: deterministic during the shared loop, only the first layer stochastic after finalize, the
rest frozen (weights and batch-norm statistics), the SVI phase moves the first layer's q."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from benchmark.layers.variational import LocalReparameterization, MeanFieldConv2d
from benchmark.models.stf_bnn import STFBNN, FirstLayerPosterior, first_layer
from benchmark.plugin import Task
from benchmark.training import train

pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def _data(n, shape):
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8)
    y = torch.randint(0, 10, (n,))
    return x, y


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_only_the_first_layer_is_variational_and_the_rest_is_frozen(shape):
    plugin = STFBNN()
    n = 64
    task = Task("t", shape, 10, n_train=n)
    network = plugin.build(task)
    variational = [m for m in network.modules() if isinstance(m, LocalReparameterization)]
    assert len(variational) == 1 and isinstance(variational[0], MeanFieldConv2d)
    assert isinstance(next(m for m in network.modules() if isinstance(m, (FirstLayerPosterior, nn.Conv2d))),
                      FirstLayerPosterior)
    config = dataclasses.replace(plugin.train_config(task), epochs=1, min_steps=2, batch_size=32,
                                 extra={"svi_epochs": 2, "svi_lr": 0.05})
    x, y = _data(n, shape)
    phase1 = {}

    def record(network, *args):
        phase1.update({k: v.clone() for k, v in network.state_dict().items()})
        probe = torch.rand(2, *shape)
        network.eval()
        torch.testing.assert_close(network(probe), network(probe))  # deterministic in phase 1
        network.train()
        STFBNN.finalize(plugin, network, *args)

    plugin.finalize = record
    train(plugin, network, x, y, task, config, torch.device("cpu"), seed=0)
    after = network.state_dict()
    first = first_layer(network)
    moved = [k for k in after if not torch.equal(after[k], phase1[k])]
    assert moved and all(k.startswith(next(n for n, m in network.named_modules() if m is first)) for k in moved)
    assert any(k.endswith("weight_rho") for k in moved)
    assert all(p.requires_grad for p in network.parameters())
    assert bool(first.stochastic)
    probe = torch.rand(2, *shape)
    assert not torch.allclose(network(probe), network(probe))  # stochastic in eval mode
    # the rest of the network is deterministic: with the first layer at its mean, the output repeats
    surrogate = plugin.surrogate(network)
    assert not any(isinstance(m, (LocalReparameterization, FirstLayerPosterior)) for m in surrogate.modules())
    torch.testing.assert_close(surrogate(probe), surrogate(probe))


def test_checkpoint_state_loads_into_a_fresh_build():
    plugin = STFBNN()
    task = Task("t", (1, 28, 28), 10, n_train=10)
    trained = plugin.build(task)
    first_layer(trained).stochastic.fill_(False)
    fresh = plugin.build(task)
    fresh.load_state_dict(copy.deepcopy(trained.state_dict()), strict=True)
    assert not bool(first_layer(fresh).stochastic)
