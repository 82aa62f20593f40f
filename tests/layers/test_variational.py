"""The shared mean-field layers: local reparameterization against explicit weight samples, the KL
against its closed form and a Monte Carlo estimate, weight samples, the mean network, the KL sum.

Monte Carlo checks use S seeded draws: the sample mean has standard error sd/√S, the sample variance
about var·√(2/S); the tolerances are several standard errors, and every test is seeded.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers.moments import GaussianLinear
from benchmark.layers.variational import (
    MeanFieldConv2d,
    MeanFieldLinear,
    kl_divergence,
    mean_field,
    posterior_mean,
    swap_layers,
)

S = 20_000


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise(layer):
    with torch.no_grad():
        layer.weight_mu.normal_(0, 0.3)
        layer.weight_rho.uniform_(-3.0, -0.5)
        layer.bias_mu.normal_()
        layer.bias_rho.uniform_(-3.0, -1.0)
    return layer


def _check_moments(lrt, explicit):
    """lrt, explicit: [S, ...] outputs of the local reparameterization and of explicit weight samples."""
    sd = explicit.std(0)
    tol = 5 * sd / S ** 0.5
    assert ((lrt.mean(0) - explicit.mean(0)).abs() <= tol).all()
    torch.testing.assert_close(lrt.var(0), explicit.var(0), rtol=0.06, atol=1e-6)


def test_linear_local_reparameterization_matches_weight_samples():
    layer = _randomise(MeanFieldLinear(12, 4))
    x = torch.randn(1, 12)
    with torch.no_grad():
        lrt = layer(x.expand(S, 12))
        explicit = torch.stack([F.linear(x[0], *layer.sample_weights()) for _ in range(S)])
    _check_moments(lrt, explicit)
    # and the moments by hand: E z = μx + μ_b, Var z = σ²x² + σ_b²
    torch.testing.assert_close(explicit.mean(0), (layer.weight_mu @ x[0] + layer.bias_mu).detach(),
                               atol=float(5 * explicit.std(0).max() / S ** 0.5), rtol=0)


def test_conv_local_reparameterization_matches_weight_samples():
    layer = _randomise(MeanFieldConv2d(2, 3, 3, stride=2, padding=1))
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        lrt = layer(x.expand(S, 2, 5, 5))
        draws = [layer.sample_weights() for _ in range(S)]
        weights = torch.stack([w for w, _ in draws])
        biases = torch.stack([b for _, b in draws])
        # one grouped convolution applies the s-th weight draw to the s-th copy of x
        explicit = F.conv2d(x.expand(S, 2, 5, 5).reshape(1, S * 2, 5, 5), weights.reshape(S * 3, 2, 3, 3),
                            stride=2, padding=1, groups=S).reshape(S, 3, 3, 3) + biases.view(S, 3, 1, 1)
    assert lrt.shape == explicit.shape
    _check_moments(lrt, explicit)


def test_noise_is_fresh_per_call_and_per_example_in_eval_mode():
    layer = MeanFieldLinear(5, 3, rho_init=0.0).eval()
    x = torch.randn(1, 5).expand(4, 5)
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a[0], a[1])


def test_sample_weights_statistics_and_gradient():
    layer = _randomise(MeanFieldLinear(6, 5))
    with torch.no_grad():
        draws = torch.stack([layer.sample_weights()[0] for _ in range(S)])
    sigma = layer.weight_sigma.detach()
    assert ((draws.mean(0) - layer.weight_mu.detach()).abs() <= 5 * sigma / S ** 0.5).all()
    torch.testing.assert_close(draws.std(0), sigma, rtol=0.04, atol=0)
    weight, bias = layer.sample_weights()
    (weight.sum() + bias.sum()).backward()
    for p in (layer.weight_mu, layer.weight_rho, layer.bias_mu, layer.bias_rho):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
    prior_std = 0.7
    layer = _randomise(MeanFieldLinear(3, 2, prior_std=prior_std))
    mu = torch.cat([layer.weight_mu.flatten(), layer.bias_mu]).detach()
    sigma = torch.cat([layer.weight_sigma.flatten(), layer.bias_sigma]).detach()
    q, p = torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, prior_std)
    torch.testing.assert_close(layer.kl().detach(), torch.distributions.kl_divergence(q, p).sum())
    w = q.sample((200_000,))
    mc = (q.log_prob(w) - p.log_prob(w)).sum(1)
    assert abs(mc.mean() - layer.kl().item()) < 5 * mc.std() / len(mc) ** 0.5


def test_kl_divergence_sums_every_layer_with_a_kl():
    a, b = MeanFieldConv2d(1, 2, 3), MeanFieldLinear(4, 2)
    moment = GaussianLinear(3, 2)
    net = nn.Sequential(a, nn.ReLU(), nn.Sequential(b, moment))
    torch.testing.assert_close(kl_divergence(net), a.kl() + b.kl() + moment.kl())
    assert kl_divergence(nn.Linear(2, 2)).item() == 0.0


def test_swap_layers_keeps_the_function_at_zero_variance_and_posterior_mean_is_deterministic():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
    x = torch.rand(2, 1, 4, 4)
    expected = net(x)
    swap_layers(net, lambda m: mean_field(m, rho_init=-30.0))
    assert isinstance(net[0], MeanFieldConv2d) and isinstance(net[3], MeanFieldLinear)
    torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        net[0].weight_rho.fill_(0.0)
    mean_net = posterior_mean(net)
    assert isinstance(mean_net[0], nn.Conv2d) and isinstance(mean_net[3], nn.Linear)
    torch.testing.assert_close(mean_net(x), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(net(x), expected, atol=1e-3)  # the original stays stochastic
