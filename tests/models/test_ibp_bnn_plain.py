"""ibp-bnn-plain: its training loss is the plain ELBO of one weight draw per batch, by hand, whatever eps and the
warm-up say; on the same weights and draw the robust plugin's loss equals it only at eps = 0 and exceeds it at its
training eps; everything else (net, recipe, deployment, certification) is ibp-bnn's."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers.variational import LocalReparameterization, kl_divergence
from benchmark.models.ibp_bnn import IBPBNN, IBPBNNPlain
from benchmark.plugin import ModelPlugin, Task
from benchmark.registry import get_plugin_class

MNIST = Task("mnist", (1, 28, 28), 10, 1000, "quick")
SMALL_COLOUR = Task("cifar10", (3, 12, 12), 10, 1000, "quick")  # the CIFAR architecture, small and fast


def _draw_forward(network: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """f_w(x) for the weight draw made after ``torch.manual_seed(seed)`` (layer by layer, weight then bias)."""
    torch.manual_seed(seed)
    for module in network:
        if isinstance(module, LocalReparameterization):
            weight, bias = module.sample_weights()
            x = module.transform(x, weight, bias)
        else:
            x = module(x)
    return x


@pytest.mark.parametrize("task", [MNIST, SMALL_COLOUR])
def test_loss_is_the_plain_elbo_of_one_draw_and_ignores_eps(task):
    plugin = IBPBNNPlain()
    torch.manual_seed(0)
    network = plugin.build(task).train()
    for layer in network:  # a wide posterior: draws differ clearly from the mean and from one another
        if isinstance(layer, LocalReparameterization):
            nn.init.constant_(layer.weight_rho, -3.0)
    x, y = torch.rand(6, *task.input_shape), torch.randint(0, 10, (6,))
    losses = []
    for progress in (0.0, 0.3, 0.9):  # the robust plugin's eps warm-up would move eps from 0 to its target
        plugin.before_step(network, progress)
        torch.manual_seed(5)
        losses.append(plugin.loss(network, network(x), y, task))
    with torch.no_grad():
        logits = _draw_forward(network, x, 5)
    expected = F.cross_entropy(logits, y) + kl_divergence(network) / task.n_train
    for loss in losses:
        torch.testing.assert_close(loss, expected)
    # one draw for the whole batch: the same row twice gets the same logits in training
    torch.manual_seed(1)
    twice = network(torch.cat([x[:1], x[:1]]))
    torch.testing.assert_close(twice[0], twice[1])


def test_the_robust_loss_differs_from_it_except_at_eps_zero():
    plain, robust = IBPBNNPlain(), IBPBNN()
    torch.manual_seed(0)
    plain_net = plain.build(MNIST).train()
    robust_net = robust.build(MNIST).train()
    robust_net.load_state_dict(plain_net.state_dict())  # the same posterior
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.manual_seed(5)
    plain_loss = plain.loss(plain_net, plain_net(x), y, MNIST)
    losses = {}
    for eps in (0.0, robust.training_eps(MNIST)):
        robust_net.train_eps = eps
        torch.manual_seed(5)  # the same weight draw
        losses[eps] = robust.loss(robust_net, robust_net(x), y, MNIST)
    torch.testing.assert_close(losses[0.0], plain_loss)  # no ball: the mixture is the clean softmax
    assert losses[robust.training_eps(MNIST)] > plain_loss + 1e-3


def test_everything_but_the_likelihood_is_ibp_bnns():
    plain, robust = IBPBNNPlain(), IBPBNN()
    assert get_plugin_class("ibp-bnn-plain") is IBPBNNPlain and plain.mixing(MNIST) == 1.0
    plain_config, robust_config = plain.train_config(MNIST), robust.train_config(MNIST)
    assert {k: v for k, v in vars(plain_config).items() if k != "extra"} == \
        {k: v for k, v in vars(robust_config).items() if k != "extra"}
    assert "train_eps" not in plain_config.extra and plain_config.extra["lambda"] == 1.0
    assert plain_config.extra["rho_init"] == robust_config.extra["rho_init"]
    # certified by the harness like ibp-bnn (its interval_logits), deployed with one weight draw per row
    assert type(plain).interval_logits is IBPBNN.interval_logits is not ModelPlugin.interval_logits
    torch.manual_seed(0)
    network = plain.build(MNIST).eval()
    assert [type(m) for m in network] == [type(m) for m in robust.build(MNIST)]
    assert {m.sampling for m in network if isinstance(m, LocalReparameterization)} == {"weights"}
    x = torch.rand(2, 1, 28, 28)
    low, high = plain.interval_logits(network, x, x)
    assert low.shape == high.shape == (2, 10) and (low <= high).all()
