"""VDP: the Taylor and unscented activation rules and a whole propagated network against Monte Carlo.

Monte Carlo estimates with S draws have standard errors sd/√S (mean) and about var·√(2/S) (variance);
tolerances are a few standard errors, and every test is seeded.
"""

import pytest
import torch
import torch.nn.functional as F

from benchmark.layers.moments import GaussianLinear, gaussian_likelihood_loss
from benchmark.models.vdp import VDP, TaylorReLU, UnscentedReLU, VDPUnscented, unscented_moments
from benchmark.plugin import Task
from benchmark.registry import get_plugin_class

S = 200_000
MNIST = Task(dataset="mnist", input_shape=(1, 28, 28), num_classes=10, n_train=60000)
CIFAR = Task(dataset="cifar10", input_shape=(3, 32, 32), num_classes=10, n_train=50000)


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def test_taylor_relu_matches_monte_carlo_for_small_variance():
    # |μ| >= 0.3 and sd <= 0.05: the ReLU is linear within 6 sd of every mean, where the rule is exact
    mean = torch.cat([torch.linspace(-2, -0.3, 10), torch.linspace(0.3, 2, 10)])
    var = torch.linspace(1e-4, 2.5e-3, 20)
    out_mean, out_var = TaylorReLU()((mean, var))
    samples = F.relu(mean + var.sqrt() * torch.randn(S, 20))
    torch.testing.assert_close(out_mean, samples.mean(0), rtol=0, atol=5 * (2.5e-3 / S) ** 0.5)
    torch.testing.assert_close(out_var, samples.var(0), rtol=0.03, atol=1e-7)


def test_taylor_relu_is_first_order_only():
    # at μ = 0 the Taylor rule gives mean 0 and variance 0; the true ReLU moments are σ/√(2π) and
    # σ²(1/2 − 1/(2π)): the rule must not be mistaken for an exact one
    out_mean, out_var = TaylorReLU()((torch.zeros(1), torch.ones(1)))
    assert out_mean.item() == 0.0 and out_var.item() == 0.0


def _mc_moments(f, mean, var):
    samples = f(mean + var.sqrt() * torch.randn(S, *mean.shape, dtype=mean.dtype))
    return samples.mean(0), samples.var(0)


def test_unscented_rule_is_exact_for_a_quadratic_with_three_units():
    # with n = 3 sigma-point pairs the unscented transform (κ = 0) matches the mean and the variance of
    # x² exactly: E = μ² + v, Var = 4μ²v + 2v²; Monte Carlo must agree with it
    mean = torch.tensor([-1.0, 0.2, 1.5], dtype=torch.float64)
    var = torch.tensor([0.3, 0.5, 0.1], dtype=torch.float64)
    out_mean, out_var = unscented_moments(torch.square, mean, var, n=3)
    torch.testing.assert_close(out_mean, mean**2 + var)
    torch.testing.assert_close(out_var, 4 * mean**2 * var + 2 * var**2)
    mc_mean, mc_var = _mc_moments(torch.square, mean, var)
    torch.testing.assert_close(out_mean, mc_mean, rtol=0, atol=0.01)
    torch.testing.assert_close(out_var, mc_var, rtol=0.03, atol=0)


def test_unscented_rule_matches_monte_carlo_for_a_smooth_activation():
    # tanh over three units with moderate variance: the unscented moments are accurate to higher order
    mean = torch.tensor([-0.8, 0.1, 0.9], dtype=torch.float64)
    var = torch.tensor([0.05, 0.1, 0.02], dtype=torch.float64)
    out_mean, out_var = unscented_moments(torch.tanh, mean, var, n=3)
    mc_mean, mc_var = _mc_moments(torch.tanh, mean, var)
    torch.testing.assert_close(out_mean, mc_mean, rtol=0, atol=5e-3)
    torch.testing.assert_close(out_var, mc_var, rtol=0.08, atol=0)


def test_unscented_relu_uses_every_unit_of_the_example():
    # the layer's n is the number of units per example: a [2, 3] input is two examples of n = 3
    mean, var = torch.randn(2, 3), torch.rand(2, 3)
    expected = unscented_moments(F.relu, mean, var, n=3)
    for a, b in zip(UnscentedReLU()((mean, var)), expected, strict=True):
        torch.testing.assert_close(a, b)


def test_taylor_chain_matches_monte_carlo_for_small_weight_variance():
    # a fixed input through Gaussian linear -> Taylor ReLU -> Gaussian linear: the first layer's units
    # use independent weight rows, so they are independent and the diagonal covariance is exact; what
    # remains is the first-order error at the ReLU, which vanishes with the weight variance. (Through a
    # conv the shared kernel correlates neighbouring units and the diagonal drops that: about 20% on
    # the logits' variance of the MNIST net, which is the documented diagonal approximation.)
    first, second = GaussianLinear(20, 30), GaussianLinear(30, 5)
    with torch.no_grad():
        first.weight.normal_(0, 0.5)
        second.weight.normal_(0, 0.5)
        first.bias.normal_()
        first.rho.fill_(-9.0)  # σ² ≈ 1.2e-4: hidden sd ≈ 0.05
        second.rho.fill_(-9.0)
        x = torch.randn(1, 20)
        pre = first(x)[0][0]
        first.bias += 0.5 * torch.sign(pre)  # hidden means at least 0.5 (10 sd) from the ReLU's kink
    with torch.no_grad():
        mean, var = second(TaylorReLU()(first(x)))
        draws = 50_000
        w1 = first.weight + first.weight_var.view(-1, 1).sqrt() * torch.randn(draws, 30, 20)
        w2 = second.weight + second.weight_var.view(-1, 1).sqrt() * torch.randn(draws, 5, 30)
        hidden = F.relu(torch.einsum("soi,i->so", w1, x[0]) + first.bias)
        logits = torch.einsum("soi,si->so", w2, hidden) + second.bias
    mc_mean, mc_var = logits.mean(0), logits.var(0)
    assert ((mc_mean - mean[0]).abs() <= 5 * (mc_var / draws).sqrt()).all()
    torch.testing.assert_close(var[0], mc_var, rtol=0.04, atol=0)  # √(2/50000) ≈ 0.6% sampling error


@pytest.mark.parametrize("plugin", [VDP, VDPUnscented])
@pytest.mark.parametrize("task", [MNIST, CIFAR], ids=["1x28x28", "3x32x32"])
def test_build_outputs_mean_and_nonnegative_variance(plugin, task):
    mean, var = plugin().build(task).eval()(torch.rand(2, *task.input_shape))
    assert mean.shape == var.shape == (2, 10)
    assert (var >= 0).all() and torch.isfinite(mean).all() and torch.isfinite(var).all()


@pytest.mark.parametrize("plugin", [VDP, VDPUnscented])
def test_loss_decreases_on_a_tiny_batch_with_finite_input_gradients(plugin):
    plugin = plugin()
    net = plugin.build(MNIST)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = plugin.loss(net, net(x), y, MNIST).item()
    for _ in range(15):
        loss = plugin.loss(net, net(x), y, MNIST)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert plugin.loss(net, net(x), y, MNIST).item() < before - 1.0
    x = x.requires_grad_()
    grad = torch.autograd.grad(net(x)[0].sum(), x)[0]
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_registered_as_moments_models_with_the_shared_likelihood():
    assert get_plugin_class("vdp") is VDP and get_plugin_class("vdp-unscented") is VDPUnscented
    net = VDP().build(MNIST).eval()
    output, y = net(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])
    per_example = VDP().likelihood(output, y, MNIST)
    assert per_example.shape == (4,)
    torch.testing.assert_close(per_example.mean(), gaussian_likelihood_loss(*output, y, 10))
