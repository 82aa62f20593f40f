"""The predictive distribution of a moment model (EnDP, VDP): E[softmax(z)], z ~ N(mean, diag var), against
Monte Carlo, and the harness scoring and attacking it instead of softmax(mean).

The reference draws N = 200,000 antithetic samples in float64; each probability then has a standard error
se = sd/√N of at most 0.5/√N ≈ 1.1e-3. The harness averages over MOMENT_DRAWS = 2048 fixed quasi-random
points, whose own error grows with the variance: measured at most 8e-4 for variances up to 2 and 0.0042
(0.0011 on average, reference noise included) for variances of 5 to 30, the range of EnDP's MNIST logits.
Tolerances are about twice those errors plus 5 standard errors of the reference; every draw is seeded.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.attacks.base import input_gradient
from benchmark.errors import PluginOutputError
from benchmark.metrics import classification_metrics
from benchmark.predictive import MOMENT_DRAWS, Predictor, gaussian_softmax_log_predictive, normal_points

N_REFERENCE = 200_000


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def _monte_carlo(mean: torch.Tensor, var: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """E[softmax(z)] from N_REFERENCE antithetic draws in float64, and its standard error per entry."""
    mean, std = mean.double(), var.double().sqrt()
    generator = torch.Generator().manual_seed(seed)
    total, squares = torch.zeros_like(mean), torch.zeros_like(mean)
    for _ in range(N_REFERENCE // 20_000):
        e = torch.randn(10_000, *mean.shape, generator=generator, dtype=torch.float64)
        p = torch.cat([(mean + std * e).softmax(-1), (mean - std * e).softmax(-1)])
        total, squares = total + p.sum(0), squares + p.pow(2).sum(0)
    expected = total / N_REFERENCE
    return expected, ((squares / N_REFERENCE - expected**2).clamp_min(0) / N_REFERENCE).sqrt()


class TinyMoments(nn.Module):
    """A moments network: Gaussian logits whose mean and variance both depend on the input."""

    def __init__(self, var_scale: float, classes: int = 10):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.mean = nn.Parameter(3 * torch.randn(16, classes, generator=generator))
        self.log_var = nn.Parameter(torch.randn(16, classes, generator=generator))
        self.var_scale = var_scale

    def forward(self, x):
        h = x.flatten(1)
        return h @ self.mean, self.var_scale * F.softplus(h @ self.log_var)


def test_predictive_matches_monte_carlo_for_moderate_and_large_variances():
    generator = torch.Generator().manual_seed(0)
    mean = 2 * torch.randn(16, 10, generator=generator, dtype=torch.float64)
    var = torch.cat([2 * torch.rand(8, 10, generator=generator, dtype=torch.float64),  # moderate: up to 2
                     5 + 25 * torch.rand(8, 10, generator=generator, dtype=torch.float64)])  # EnDP-like: 5 to 30
    reference, se = _monte_carlo(mean, var)
    error = (gaussian_softmax_log_predictive(mean, var).exp() - reference).abs()
    assert (error[:8] <= 0.002 + 5 * se[:8]).all(), error[:8].max()
    assert (error[8:] <= 0.01 + 5 * se[8:]).all(), error[8:].max()
    assert error[8:].mean() < 0.0025
    # the variance matters at this scale: softmax(mean) is far off the predictive
    assert (mean.softmax(-1) - reference)[8:].abs().max() > 0.2


def test_zero_variance_is_the_softmax_of_the_mean_with_finite_gradients():
    mean = (3 * torch.randn(5, 10)).requires_grad_()
    var = torch.zeros(5, 10, requires_grad=True)
    log_pred = gaussian_softmax_log_predictive(mean, var)
    torch.testing.assert_close(log_pred, mean.log_softmax(-1), rtol=0, atol=1e-5)
    grads = torch.autograd.grad(log_pred[:, 0].sum(), (mean, var))
    assert all(torch.isfinite(g).all() for g in grads)


def test_gradients_match_finite_differences():
    mean = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    var = (0.1 + torch.rand(2, 4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, v: gaussian_softmax_log_predictive(m, v, draws=64), (mean, var))


def test_fixed_points_are_antithetic_whitened_and_reproducible():
    points = normal_points(MOMENT_DRAWS, 10)
    assert points.shape == (10, MOMENT_DRAWS)
    torch.testing.assert_close(points[:, : MOMENT_DRAWS // 2], -points[:, MOMENT_DRAWS // 2 :])
    torch.testing.assert_close(points @ points.T / MOMENT_DRAWS, torch.eye(10, dtype=torch.float64))
    normal_points.cache_clear()
    # seeded, not a fresh draw (which would differ by O(1)); the whitening's rounding may follow the thread count
    torch.testing.assert_close(normal_points(MOMENT_DRAWS, 10), points, rtol=0, atol=1e-10)


def test_the_harness_scores_the_gaussian_logit_predictive_not_the_softmax_of_the_mean():
    """Fails while Predictor.probs ignores the variance (softmax of the mean)."""
    x = torch.rand(16, 1, 4, 4)
    network = TinyMoments(var_scale=20.0).eval()
    probs = Predictor(network, "moments").probs(x)
    with torch.no_grad():
        mean, var = network(x)
    reference, se = _monte_carlo(mean, var)
    assert ((probs.double() - reference).abs() <= 0.01 + 5 * se).all()
    # a large variance makes the model less confident than softmax(mean) says, and the scores show it
    mean_only = mean.softmax(-1)
    assert (probs.max(-1).values < mean_only.max(-1).values).all()
    y = mean.argmax(-1)
    full, point = classification_metrics(probs, y), classification_metrics(mean_only, y)
    assert full["nll"] > point["nll"] + 0.1 and full["entropy"] > point["entropy"] + 0.1
    assert abs(full["ece"] - point["ece"]) > 0.05


def test_without_variance_the_harness_keeps_the_softmax_of_the_mean():
    x = torch.rand(8, 1, 4, 4)
    network = TinyMoments(var_scale=0.0).eval()
    with torch.no_grad():
        mean, _ = network(x)
    torch.testing.assert_close(Predictor(network, "moments").probs(x), mean.softmax(-1), rtol=0, atol=1e-5)


def test_moment_predictive_is_deterministic_and_differentiable_in_the_input():
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 10, (8,))
    predictor = Predictor(TinyMoments(var_scale=5.0).eval(), "moments")
    assert not predictor.is_random
    assert torch.equal(predictor.log_predictive(x), predictor.log_predictive(x))
    assert torch.equal(predictor.probs(x, draws=1), predictor.probs(x, draws=7))  # draws: not random
    gradient = input_gradient(predictor, x, y, draws=1)
    assert torch.isfinite(gradient.grad).all() and (gradient.grad.flatten(1).abs().sum(1) > 0).all()
    torch.testing.assert_close(gradient.loss, -predictor.log_predictive(x).gather(1, y[:, None]).squeeze(1))


def test_the_variance_moves_the_attack_loss():
    """The loss an attack follows has a gradient through the variance, which softmax(mean) would not."""
    mean = torch.tensor([[2.0, 0.0, -1.0]])
    var = torch.tensor([[4.0, 1.0, 1.0]], requires_grad=True)
    loss = -gaussian_softmax_log_predictive(mean, var)[0, 0]
    (grad,) = torch.autograd.grad(loss, var)
    assert grad[0, 0] > 0  # more variance on the winning logit lowers its expected probability


def test_draws_likelihood_and_predictive_agree():
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 10, (6,))
    network = TinyMoments(var_scale=3.0).eval()
    predictor = Predictor(network, "moments", likelihood=lambda out, labels: out[1].sum(-1))
    log_pred = predictor.log_predictive(x)
    draws = predictor.draw_log_probs(x)
    assert draws.shape == (MOMENT_DRAWS, 6, 10)
    torch.testing.assert_close(torch.logsumexp(draws, 0) - math.log(MOMENT_DRAWS), log_pred)
    loss, objective_log_pred = predictor.likelihood_objective(x, y)
    assert loss.shape == (6,)
    torch.testing.assert_close(objective_log_pred, log_pred)  # "misclassified" follows the deployed rule


def test_negative_variance_is_refused():
    class Negative(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10), -torch.ones(x.shape[0], 10)

    with pytest.raises(PluginOutputError, match="negative"):
        Predictor(Negative(), "moments").probs(torch.zeros(2, 1, 4, 4))
