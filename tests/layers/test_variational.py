"""The shared mean-field layers: local reparameterization against explicit weight samples, the per-example
weight sampling mode (its plumbing, the covariance across positions local reparameterization lacks), the
KL against its closed form and a Monte Carlo estimate, weight samples, the mean network, the KL sum.

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
    set_sampling,
    swap_layers,
)

S = 20_000


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


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


def test_weight_sampling_applies_one_kernel_draw_per_example():
    """In ``"weights"`` mode row i of the output is the convolution of row i with the i-th of the draws
    ``sample_weights(n)`` makes from the same random state."""
    layer = set_sampling(_randomise(MeanFieldConv2d(2, 3, 3, stride=2, padding=1)), "weights")
    x = torch.randn(4, 2, 7, 7)
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    weights, biases = layer.sample_weights(4)
    with torch.no_grad():
        expected = torch.cat([F.conv2d(x[i:i + 1], weights[i], biases[i], stride=2, padding=1) for i in range(4)])
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(weights[0], weights[1])
    assert layer(x[:0]).shape == (0, 3, 4, 4)


@pytest.mark.parametrize("mode", ["local", "weights"])
def test_conv_positions_share_a_kernel_draw_only_under_weight_sampling(mode):
    """Two output positions of one channel, one kernel draw: Cov(z_p, z_q) = Σ_k σ_k² x_{p+k} x_{q+k} + σ_b²
    (Kingma et al. 2015). Weight sampling has it; local reparameterization draws the positions independently
    (covariance 0): exact marginals, not the joint law of a weight draw."""
    layer = set_sampling(_randomise(MeanFieldConv2d(2, 1, 3)), mode)
    x = torch.rand(1, 2, 4, 4) + 0.5  # two output positions side by side, sharing two of their three columns
    with torch.no_grad():
        z = layer(x.expand(S, 2, 4, 4))[:, 0, 0, :]  # [S, 2]
        var_w = layer.weight_sigma.square()[0]
        exact = (var_w * x[0, :, :3, :3] * x[0, :, :3, 1:]).sum() + layer.bias_sigma.square()[0]
    cov = ((z[:, 0] - z[:, 0].mean()) * (z[:, 1] - z[:, 1].mean())).mean()
    # a Gaussian pair's sample covariance has sd √((σ_0² σ_1² + c²) / S) ≤ √(2 σ_0² σ_1² / S)
    tol = 5 * (2 * z[:, 0].var() * z[:, 1].var() / S).sqrt()
    assert exact > 10 * tol
    if mode == "weights":
        assert abs(cov - exact) < tol
    else:
        assert abs(cov) < tol


def test_weight_sampling_of_a_dense_layer_has_the_law_of_explicit_weight_draws():
    """A dense layer keeps local reparameterization in ``"weights"`` mode: given one input row, W a + b with
    independent Gaussian rows of W has independent Gaussian units with the moments local reparameterization
    samples. Compared with n explicit draws applied row by row."""
    layer = set_sampling(_randomise(MeanFieldLinear(12, 4)), "weights")
    x = torch.randn(1, 12)
    with torch.no_grad():
        sampled = layer(x.expand(S, 12))
        weights, biases = layer.sample_weights(S)
        explicit = torch.einsum("soi,i->so", weights, x[0]) + biases
    _check_moments(sampled, explicit)
    corr = torch.corrcoef(sampled.T)[0, 1:]  # units of one row: independent under both
    assert (corr.abs() < 5 / S ** 0.5).all() and (torch.corrcoef(explicit.T)[0, 1:].abs() < 5 / S ** 0.5).all()


def test_sampling_defaults_to_local_and_the_mode_is_checked():
    net = nn.Sequential(MeanFieldConv2d(1, 2, 3), nn.Flatten(), MeanFieldLinear(8, 2))
    assert {net[0].sampling, net[2].sampling} == {"local"}
    set_sampling(net, "weights")
    assert {net[0].sampling, net[2].sampling} == {"weights"}
    with pytest.raises(ValueError):
        set_sampling(net, "explicit")


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
    batched, batched_bias = layer.sample_weights(S)  # S independent draws along a leading axis
    assert batched.shape == (S, 5, 6) and batched_bias.shape == (S, 5)
    torch.testing.assert_close(batched.detach().std(0), sigma, rtol=0.04, atol=0)
    torch.testing.assert_close(batched_bias.detach().std(0), layer.bias_sigma.detach(), rtol=0.04, atol=0)
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
