"""EnDP and the shared moment layers: each propagation rule against Monte Carlo, the loss, the plugin.

Monte Carlo checks draw S weight and input samples and compare the sample mean and variance with
the propagated ones. With S draws the sample mean has standard error sd/√S and the sample variance
about var·√(2/S) (more for heavy-tailed outputs such as products of Gaussians), so the tolerances
below are a few standard errors; every test is seeded, so they are not flaky.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.layers.moments import (
    GaussianConv2d,
    GaussianLinear,
    MomentFlatten,
    MomentMaxPool2d,
    gaussian_likelihood_loss,
    softmax_moments,
)
from benchmark.layers.variational import kl_divergence
from benchmark.models.endp import EnDP, EnsembleELU
from benchmark.plugin import Task

S = 40_000
# 5% relative on the variance is about 7 standard errors of a Gaussian sample variance at S = 40k
# (√(2/S) = 0.7%), leaving room for the heavier tails of products of Gaussians
VAR_RTOL = 0.05


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def _random_moments(*shape):
    return torch.randn(shape), 0.02 + 0.1 * torch.rand(shape)


def _check_against_samples(samples, mean, var):
    """samples: [S, ...] Monte Carlo outputs; mean/var: propagated moments of the same shape."""
    mc_mean, mc_var = samples.mean(0), samples.var(0)
    mean_tol = 5 * (mc_var / samples.shape[0]).sqrt()  # 5 standard errors of the MC mean
    assert ((mc_mean - mean).abs() <= mean_tol).all(), (mc_mean - mean).abs().max()
    torch.testing.assert_close(var, mc_var, rtol=VAR_RTOL, atol=1e-6)


def test_gaussian_conv_matches_monte_carlo():
    layer = GaussianConv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        layer.weight.normal_(0, 0.3)
        layer.rho.copy_(torch.tensor([-3.0, -2.0, -4.0]))
        layer.bias.normal_()
    mean, var = _random_moments(1, 2, 4, 4)
    with torch.no_grad():
        out_mean, out_var = layer((mean, var))
        weight_std = layer.weight_var.view(-1, 1, 1, 1).sqrt()
        weights = layer.weight + weight_std * torch.randn(S, *layer.weight.shape)
        x = mean + var.sqrt() * torch.randn(S, 2, 4, 4)
        # one grouped convolution applies the s-th weight sample to the s-th input sample
        samples = F.conv2d(x.reshape(1, S * 2, 4, 4), weights.reshape(S * 3, 2, 3, 3), padding=1, groups=S)
        samples = samples.reshape(S, 3, 4, 4) + layer.bias.view(1, 3, 1, 1)
    _check_against_samples(samples, out_mean[0], out_var[0])


def test_gaussian_linear_matches_monte_carlo():
    layer = GaussianLinear(20, 5)
    with torch.no_grad():
        layer.weight.normal_(0, 0.3)
        layer.rho.fill_(-3.0)
        layer.bias.normal_()
    mean, var = _random_moments(20)
    with torch.no_grad():
        out_mean, out_var = layer((mean.unsqueeze(0), var.unsqueeze(0)))
        weights = layer.weight + layer.weight_var.view(-1, 1).sqrt() * torch.randn(S, 5, 20)
        x = mean + var.sqrt() * torch.randn(S, 20)
        samples = torch.einsum("soi,si->so", weights, x) + layer.bias
    _check_against_samples(samples, out_mean[0], out_var[0])


@pytest.mark.parametrize("layer", [GaussianConv2d(2, 3, 3), GaussianLinear(5, 3)])
def test_plain_tensor_input_means_zero_variance(layer):
    x = torch.randn(2, 2, 5, 5) if isinstance(layer, GaussianConv2d) else torch.randn(2, 5)
    for a, b in zip(layer(x), layer((x, torch.zeros_like(x))), strict=True):
        torch.testing.assert_close(a, b)


def _elu_moments_by_quadrature(mean, var, nodes=200):
    """Reference moments of ELU(N(μ, v)) by Gauss-Hermite quadrature in float64."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    z, w = torch.tensor(z), torch.tensor(w / w.sum())
    out = F.elu(mean.double().unsqueeze(-1) + var.double().sqrt().unsqueeze(-1) * z)
    m = (out * w).sum(-1)
    return m, ((out - m.unsqueeze(-1)) ** 2 * w).sum(-1)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_ensemble_elu_matches_reference_moments(mode):
    mean = torch.linspace(-3, 3, 25)
    var = torch.logspace(-2, 0.5, 25)
    act = EnsembleELU(n_samples=S)
    getattr(act, mode)()
    out_mean, out_var = act((mean, var))
    ref_mean, ref_var = _elu_moments_by_quadrature(mean, var)
    # S samples: the mean is within 5 standard errors, the variance within VAR_RTOL
    assert ((out_mean - ref_mean).abs() <= 5 * (ref_var / S).sqrt() + 1e-6).all()
    torch.testing.assert_close(out_var.double(), ref_var, rtol=VAR_RTOL, atol=1e-6)


def test_ensemble_elu_passes_gradients_to_mean_and_variance():
    mean = torch.randn(8, requires_grad=True)
    var = torch.rand(8).add(0.1).requires_grad_()
    out_mean, out_var = EnsembleELU()((mean, var))
    mean_grad, var_grad = torch.autograd.grad((out_mean + out_var).sum(), (mean, var))
    assert mean_grad.abs().min() > 0 and var_grad.abs().min() > 0


def test_ensemble_elu_zero_variance_has_finite_gradient():
    mean = torch.randn(8, requires_grad=True)
    var = torch.zeros(8, requires_grad=True)
    out_mean, out_var = EnsembleELU()((mean, var))
    grads = torch.autograd.grad((out_mean + out_var).sum(), (mean, var))
    torch.testing.assert_close(out_mean, F.elu(mean))
    assert all(torch.isfinite(g).all() for g in grads)


def test_max_pool_matches_monte_carlo_when_well_separated():
    # in each 2x2 window one unit leads by >= 2 while the stds are <= 0.2: the max is that unit
    windows = torch.stack([2.0 * torch.randperm(4) + 8 * k for k in range(4)])  # [window, position]
    mean = windows.view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(1, 1, 4, 4)
    var = 0.01 + 0.03 * torch.rand(1, 1, 4, 4)
    out_mean, out_var = MomentMaxPool2d(2)((mean, var))
    samples = F.max_pool2d(mean + var.sqrt() * torch.randn(S, 1, 4, 4), 2)
    _check_against_samples(samples, out_mean[0], out_var[0])


def test_flatten_keeps_moments_together():
    mean, var = _random_moments(2, 3, 4, 4)
    out_mean, out_var = MomentFlatten()((mean, var))
    assert out_mean.shape == out_var.shape == (2, 48)
    torch.testing.assert_close(out_var, var.reshape(2, 48))


def test_softmax_moment_rule_matches_monte_carlo_for_small_variance():
    # the rule is first order: exact as v -> 0, with an O(v) curvature error; at v ~ 1e-3 that error
    # and the MC error (sqrt(2/S) ~ 0.7%) are both within 5% of the covariance
    mean = torch.randn(2, 5)
    var = 1e-3 * (0.5 + torch.rand(2, 5))
    probs, cov = softmax_moments(mean, var)
    samples = (mean + var.sqrt() * torch.randn(S, 2, 5)).softmax(-1)
    mc_mean = samples.mean(0)
    centred = samples - mc_mean
    mc_cov = torch.einsum("sbi,sbj->bij", centred, centred) / (S - 1)
    torch.testing.assert_close(probs, mc_mean, rtol=0, atol=1e-3)
    rel = torch.linalg.matrix_norm(cov - mc_cov) / torch.linalg.matrix_norm(mc_cov)
    assert (rel < 0.05).all(), rel


def test_loss_equals_the_gaussian_nll_formula():
    mean = torch.randn(3, 4, dtype=torch.float64)
    var = torch.rand(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    probs, cov = softmax_moments(mean, var)
    cov = cov + 1e-3 * torch.eye(4, dtype=torch.float64)
    r = F.one_hot(y, 4).double() - probs
    expected = 0.5 * (torch.einsum("bi,bij,bj->b", r, torch.linalg.inv(cov), r) + torch.logdet(cov))
    torch.testing.assert_close(gaussian_likelihood_loss(mean, var, y, 4), expected.mean())


@pytest.mark.parametrize("scale", [0.0, 1e-12, 1.0, 1e8])
def test_loss_finite_with_finite_gradients_for_singular_covariance(scale):
    # var ~ 0 and saturated softmax both make Σ_y (numerically) zero: the jitter must carry it;
    # at large var the null direction of Σ_y must not be lost to rounding
    mean = torch.tensor([[0.0, 1.0, -1.0], [30.0, -30.0, 0.0]], requires_grad=True)
    var = torch.full((2, 3), scale, requires_grad=True)
    loss = gaussian_likelihood_loss(mean, var, torch.tensor([1, 0]), 3)
    grads = torch.autograd.grad(loss, (mean, var))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    layer = GaussianLinear(4, 3)
    assert kl_divergence(layer) > 0
    with torch.no_grad():
        layer.weight.zero_()
        layer.rho.fill_(float(np.log(np.e - 1)))  # softplus(ρ) = 1
    torch.testing.assert_close(kl_divergence(layer), torch.tensor(0.0))


MNIST = Task(dataset="mnist", input_shape=(1, 28, 28), num_classes=10, n_train=60000)
CIFAR = Task(dataset="cifar10", input_shape=(3, 32, 32), num_classes=10, n_train=50000)


@pytest.mark.parametrize("task", [MNIST, CIFAR], ids=["1x28x28", "3x32x32"])
def test_build_outputs_mean_and_nonnegative_variance(task):
    net = EnDP().build(task)
    for mode in ("train", "eval"):
        getattr(net, mode)()
        mean, var = net(torch.rand(2, *task.input_shape))
        assert mean.shape == var.shape == (2, task.num_classes)
        assert (var >= 0).all() and torch.isfinite(mean).all() and torch.isfinite(var).all()


def test_eval_is_deterministic_and_train_draws_fresh_samples():
    net = EnDP().build(MNIST)
    x = torch.rand(4, 1, 28, 28)
    net.eval()
    first, second = net(x), net(x)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    net.train()
    first, second = net(x), net(x)
    assert not torch.equal(first[1], second[1])


def test_loss_decreases_on_a_tiny_batch():
    plugin = EnDP()
    net = plugin.build(MNIST)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def eval_loss():
        net.eval()  # fixed draws, so before and after are comparable
        with torch.no_grad():
            return plugin.loss(net, net(x), y, MNIST).item()

    before = eval_loss()
    net.train()
    for _ in range(15):
        loss = plugin.loss(net, net(x), y, MNIST)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < before - 1.0


def test_likelihood_objective_is_per_example_and_matches_the_training_loss():
    task = Task(dataset="mnist", input_shape=(1, 28, 28), num_classes=10, n_train=100, profile="quick")
    plugin = EnDP()
    network = plugin.build(task).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    output = network(x)
    per_example = plugin.likelihood(output, y, task)
    assert per_example.shape == (6,)
    torch.testing.assert_close(per_example.mean(), gaussian_likelihood_loss(*output, y, 10))
