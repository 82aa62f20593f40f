"""Variational dropout: the KL approximations against a numerical estimate of the log-uniform KL, the
layers' noise model, the pruned surrogate, the plugin's loss and KL schedule."""

import math

import pytest
import torch
import torch.nn.functional as F

from benchmark.layers.variational import kl_divergence
from benchmark.models.vd import (
    K1,
    VariationalDropout,
    VariationalDropoutConv2d,
    VariationalDropoutLinear,
    neg_kl_log_uniform,
)
from benchmark.plugin import Task

pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def neg_kl_numerical(alpha: float, n: int = 2_000_000) -> float:
    """½ log α − E log|1 + √α z|, z ~ N(0, 1): −KL(N(θ, αθ²) ‖ log-uniform) up to its constant (Kingma et al.
    2015, eq. for the log-uniform prior), the expectation on n stratified normal quantiles (float64)."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    z = math.sqrt(2.0) * torch.erfinv(2 * u - 1)
    return 0.5 * math.log(alpha) - torch.log((1 + math.sqrt(alpha) * z).abs()).mean().item()


def neg_kl_kingma(alpha: float) -> float:
    """Kingma et al. 2015's cubic fit, for α ≤ 1."""
    return 0.5 * math.log(alpha) + 1.16145 * alpha - 1.50204 * alpha ** 2 + 0.58630 * alpha ** 3


@pytest.mark.parametrize("alpha", [1e-3, 0.05, 0.3, 0.7, 1.0, 3.0, 20.0, 400.0])
def test_sparse_vd_kl_matches_the_numerical_kl(alpha):
    # the fit's constant −k₁ makes it vanish as α → ∞; the numerical form vanishes as α → 0 instead
    approx = neg_kl_log_uniform(torch.tensor(math.log(alpha), dtype=torch.float64)).item() + K1
    assert abs(approx - neg_kl_numerical(alpha)) < 0.01


def test_kingma_cubic_matches_the_numerical_kl_up_to_a_constant_for_alpha_up_to_one():
    # Kingma et al.'s cubic is a fit with a free constant, accurate to a few hundredths over α ≤ 1;
    # the sparse-VD fit agrees with it there up to the same tolerance
    alphas = [1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0]
    to_numerical = [neg_kl_kingma(a) - neg_kl_numerical(a) for a in alphas]
    assert max(to_numerical) - min(to_numerical) < 0.04
    to_sparse = [neg_kl_kingma(a) - neg_kl_log_uniform(torch.tensor(math.log(a), dtype=torch.float64)).item()
                 for a in alphas]
    assert max(to_sparse) - min(to_sparse) < 0.05


def test_kl_decreases_in_alpha_and_vanishes_for_large_alpha():
    log_alpha = torch.linspace(-8, 8, 50)
    kl = -neg_kl_log_uniform(log_alpha)
    assert (kl[1:] < kl[:-1]).all() and (kl > 0).all()
    assert kl[-1] < 2e-3


def test_layer_noise_is_gaussian_dropout_with_the_learned_alpha():
    layer = VariationalDropoutLinear(8, 3)
    with torch.no_grad():
        layer.log_sigma2.uniform_(-4, -1)
    x = torch.randn(1, 8)
    S = 20_000
    with torch.no_grad():
        out = layer(x.expand(S, 8))
    expected_var = F.linear(x.square(), layer.log_sigma2.exp())[0]
    expected_mean = F.linear(x, layer.weight, layer.bias)[0]
    assert ((out.mean(0) - expected_mean).abs() < 5 * expected_var.sqrt() / S ** 0.5).all()
    torch.testing.assert_close(out.var(0), expected_var.detach(), rtol=0.05, atol=0)
    # σ² = α θ²: the layer's α is σ²/θ²
    big = layer.weight.abs() > 0.02  # log α = log σ² − log(θ² + 1e-8): the 1e-8 matters below
    alpha = layer.log_alpha.exp()
    torch.testing.assert_close((alpha * layer.weight.square())[big], layer.log_sigma2.exp()[big], rtol=1e-3, atol=0)


def test_kl_sums_the_per_weight_terms_and_surrogate_prunes_high_alpha():
    conv = VariationalDropoutConv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        conv.log_sigma2.copy_(torch.log(conv.weight.square())
                              + torch.where(torch.rand_like(conv.weight) < 0.5, 5.0, -5.0))
    torch.testing.assert_close(conv.kl(), -neg_kl_log_uniform(conv.log_alpha).sum())
    det = conv.deterministic()
    pruned = conv.log_alpha > 3
    assert pruned.any() and (~pruned).any()
    assert (det.weight[pruned] == 0).all()
    torch.testing.assert_close(det.weight[~pruned], conv.weight[~pruned])


def test_plugin_anneals_the_kl_and_its_loss_is_the_elbo():
    plugin = VariationalDropout()
    task = Task("t", (1, 28, 28), 10, n_train=1000)
    net = plugin.build(task)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    out = net(x)
    plugin.before_step(net, 0.0)
    torch.testing.assert_close(plugin.loss(net, out, y, task), F.cross_entropy(out, y))
    plugin.before_step(net, 0.9)
    torch.testing.assert_close(plugin.loss(net, out, y, task), F.cross_entropy(out, y) + kl_divergence(net) / 1000)
    assert not torch.allclose(net(x), net(x.clone()))  # stochastic
    surrogate = plugin.surrogate(net)
    torch.testing.assert_close(surrogate(x), surrogate(x))
