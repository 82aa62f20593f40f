"""Deep ensemble: independent members, the mean-softmax predictive, independent training gradients."""

import pytest
import torch
import torch.nn.functional as F

from benchmark.models.ensemble import DeepEnsemble
from benchmark.plugin import Task
from benchmark.predictive import Predictor

MNIST = Task(dataset="mnist", input_shape=(1, 28, 28), num_classes=10, n_train=60000)
CIFAR = Task(dataset="cifar10", input_shape=(3, 32, 32), num_classes=10, n_train=50000)


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


@pytest.mark.parametrize("task", [MNIST, CIFAR], ids=["1x28x28", "3x32x32"])
def test_five_members_output_stacked_logits(task):
    net = DeepEnsemble().build(task).eval()
    x = torch.rand(3, *task.input_shape)
    out = net(x)
    assert out.shape == (5, 3, 10)
    for k, member in enumerate(net.members):
        torch.testing.assert_close(out[k], member(x))


def test_members_are_initialised_independently():
    net = DeepEnsemble().build(MNIST)
    weights = [next(member.parameters()).flatten() for member in net.members]  # first conv's kernels
    for i in range(5):
        for j in range(i + 1, 5):
            assert not torch.equal(weights[i], weights[j])
            # independent draws from one init distribution: no more correlated than chance
            assert torch.corrcoef(torch.stack([weights[i], weights[j]]))[0, 1].abs() < 0.3
    out = net.eval()(torch.rand(4, 1, 28, 28))
    assert not torch.allclose(out[0], out[1])


def test_predictive_is_the_mean_softmax_of_the_members():
    net = DeepEnsemble().build(MNIST).eval()
    x = torch.rand(6, 1, 28, 28)
    by_hand = torch.stack([member(x).softmax(-1) for member in net.members]).mean(0)
    torch.testing.assert_close(Predictor(net, "ensemble").probs(x), by_hand)


def test_each_member_gets_the_gradient_of_its_own_cross_entropy():
    plugin = DeepEnsemble()
    net = plugin.build(MNIST)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    params = list(net.members[2].parameters())
    joint = torch.autograd.grad(plugin.loss(net, net(x), y, MNIST), params)
    own = torch.autograd.grad(F.cross_entropy(net.members[2](x), y), params)
    for a, b in zip(joint, own, strict=True):
        torch.testing.assert_close(a, b)
