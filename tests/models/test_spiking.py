"""Spiking networks: LIF dynamics by hand, the surrogate spike derivative, membrane noise, and the
likelihood-ratio gradient of snn-noise against the exact gradient of the expected loss.

The likelihood-ratio (LR) check: a linear layer with membrane noise, v = W x + b + sigma * eps, and a
cross-entropy on v. The expected loss E[L] is computed by Gauss-Hermite quadrature in float64 (exact to
~1e-10 for this smooth integrand) and differentiated by autograd: that is the reference gradient for W,
b and the noise parameters. The LR estimate is computed by the plugin's own code path (MembraneNoise,
likelihood_ratio_loss) in K independent groups of N draws; its standard error is the spread of the
group estimates / sqrt(K). The test requires every component within 4.5 standard errors of the
reference (seeded, so not flaky; 4.5 SE over ~20 components has a < 1e-3 chance to fail for an unbiased
estimator), and the standard errors small enough that a wrong sign or a missing factor would fail.
"""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers.spiking import (
    BPDA_SURROGATES,
    SURROGATE_SLOPE,
    TRAINING_SURROGATE,
    MembraneNoise,
    Readout,
    SpikingLayer,
    SpikingNetwork,
    Surrogate,
    leave_one_out_baseline,
    lif_step,
    likelihood_ratio_loss,
    spike,
    surrogate_derivative,
    surrogate_gradient,
)
from benchmark.models.snn import SNN
from benchmark.models.snn_noise import SNNNoise
from benchmark.plugin import EXACT_GRADIENT, Task

SMALL = Task("mnist", (1, 28, 28), 10, n_train=100)


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def _hand_stepped_lif(currents, beta, threshold):
    """Scalar loops: u_t = beta u_{t-1} + I_t - theta s_{t-1}, s_t = [u_t > theta], from u_0 = s_0 = 0."""
    steps, units = len(currents), len(currents[0])
    u, s = [0.0] * units, [0.0] * units
    membranes, spikes = [], []
    for t in range(steps):
        u = [beta * u[j] + currents[t][j] - threshold * s[j] for j in range(units)]
        s = [1.0 if u[j] > threshold else 0.0 for j in range(units)]
        membranes.append(list(u))
        spikes.append(list(s))
    return torch.tensor(membranes), torch.tensor(spikes)


def test_lif_step_follows_the_hand_stepped_recurrence():
    currents = torch.rand(12, 5) * 1.5
    beta, threshold = 0.8, 1.0
    ref_u, ref_s = _hand_stepped_lif(currents.tolist(), beta, threshold)
    state = (None, None)
    for t in range(len(currents)):
        state = lif_step(currents[t], *state, beta, threshold)
        torch.testing.assert_close(state[0], ref_u[t])
        torch.testing.assert_close(state[1], ref_s[t])
    assert 0 < ref_s.mean() < 1  # the currents make the neurons both fire and stay silent


def test_network_forward_is_the_simulated_recurrence_with_a_time_averaged_readout():
    hidden, readout = nn.Linear(4, 3), nn.Linear(3, 2)
    with torch.no_grad():
        hidden.weight.uniform_(0, 1)
    steps, beta = 5, 0.9
    network = SpikingNetwork(nn.Identity(), [nn.Flatten(), SpikingLayer(hidden, beta=beta)], Readout(readout),
                             steps).eval()
    x = torch.rand(2, 1, 2, 2)
    with torch.no_grad():
        out = network(x)
        expected = []
        for example in x.flatten(1):
            current = (hidden.weight @ example + hidden.bias).tolist()
            _, spikes = _hand_stepped_lif([current] * steps, beta, 1.0)
            expected.append((spikes @ readout.weight.T + readout.bias).mean(0))
    torch.testing.assert_close(out, torch.stack(expected))


def test_spike_is_a_step_with_the_fast_sigmoid_surrogate_derivative():
    u = torch.linspace(-2, 2, 41, dtype=torch.float64).requires_grad_()
    s = spike(u)
    assert torch.equal(s.detach(), (u > 0).double())
    (grad,) = torch.autograd.grad(s.sum(), u)
    assert (grad > 0).all()
    # the surrogate is the derivative of the fast sigmoid u / (1 + k|u|)
    v = u.detach().requires_grad_()
    (fast_sigmoid_grad,) = torch.autograd.grad((v / (1 + SURROGATE_SLOPE * v.abs())).sum(), v)
    torch.testing.assert_close(grad, fast_sigmoid_grad)
    torch.testing.assert_close(grad, surrogate_derivative(u.detach()))


#: each surrogate's primitive (the smooth step it is the derivative of, from the papers cited in
#: benchmark.layers.spiking), its peak at u = 0 and its integral over the real line, as functions of the slope k
PRIMITIVES = {
    "fast-sigmoid": (lambda u, k: u / (1 + k * u.abs()), lambda k: 1.0, lambda k: 2 / k),
    "sigmoid": (lambda u, k: torch.sigmoid(k * u), lambda k: k / 4, lambda k: 1.0),
    "arctan": (lambda u, k: torch.arctan(torch.pi * k * u / 2) / torch.pi + 0.5, lambda k: k / 2, lambda k: 1.0),
}


@pytest.mark.parametrize("shape", list(PRIMITIVES))
@pytest.mark.parametrize("slope", [1.0, 5.0, 10.0])
def test_each_surrogate_is_the_derivative_of_its_smooth_step_with_the_documented_peak_and_area(shape, slope):
    primitive, peak, area = PRIMITIVES[shape]
    u = torch.linspace(-3, 3, 601, dtype=torch.float64).requires_grad_()
    (expected,) = torch.autograd.grad(primitive(u, slope).sum(), u)
    derivative = Surrogate(shape, slope)(u.detach())
    torch.testing.assert_close(derivative, expected)
    assert derivative.max().item() == pytest.approx(peak(slope))  # u = 0 is on the grid
    wide = torch.linspace(-2000, 2000, 4_000_001, dtype=torch.float64)  # heavy tails: integrate far out
    assert torch.trapezoid(Surrogate(shape, slope)(wide), wide).item() == pytest.approx(area(slope), rel=2e-3)


def test_the_rectangular_surrogate_is_a_unit_box_of_width_one_over_k():
    for slope in (1.0, 4.0):
        u = torch.tensor([-0.51, -0.49, 0.0, 0.49, 0.51], dtype=torch.float64) / slope
        torch.testing.assert_close(Surrogate("rectangular", slope)(u), torch.tensor([0, 1, 1, 1, 0.0],
                                                                                    dtype=torch.float64) * slope)
    assert not Surrogate("exact")(torch.randn(100)).any()
    with pytest.raises(ValueError, match="unknown surrogate"):
        Surrogate("triangle")


def test_the_bpda_family_spans_shapes_and_slopes_besides_the_training_surrogate():
    """The issue's minimum: at least two shapes times two slopes, none of them the surrogate trained with."""
    shapes, slopes = {s.shape for s in BPDA_SURROGATES}, {s.slope for s in BPDA_SURROGATES}
    assert len(shapes) >= 2 and len(slopes) >= 2
    assert {(a, k) for a in shapes for k in slopes} == {(s.shape, s.slope) for s in BPDA_SURROGATES}
    assert TRAINING_SURROGATE not in BPDA_SURROGATES and "exact" not in shapes
    assert list(SNN().gradient_variants(nn.Linear(1, 1))) == [*(s.name for s in BPDA_SURROGATES), EXACT_GRADIENT]


@pytest.mark.parametrize("plugin", [SNN(), SNNNoise()])
def test_a_gradient_variant_changes_the_input_gradient_and_nothing_else(plugin):
    network = plugin.build(SMALL).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])

    def output_and_gradient():
        torch.manual_seed(1)  # the same noise draws in snn-noise
        xg = x.clone().requires_grad_()
        out = network(xg)
        (grad,) = torch.autograd.grad(F.cross_entropy(out, y), xg)
        return out.detach(), grad

    own_out, own_grad = output_and_gradient()
    variants = plugin.gradient_variants(network)
    for name, switch in variants.items():
        with switch():
            out, grad = output_and_gradient()
        assert torch.equal(out, own_out), name  # the forward is untouched
        if name == EXACT_GRADIENT:
            assert not grad.any()  # the spikes' true derivative: zero, so is every input gradient
        else:
            assert grad.abs().sum() > 0 and not torch.allclose(grad, own_grad), name
    assert torch.equal(output_and_gradient()[1], own_grad)  # every layer got its own surrogate back
    with pytest.raises(RuntimeError), surrogate_gradient(network, Surrogate("exact")):
        raise RuntimeError  # restored on an error too
    assert all(m.surrogate == TRAINING_SURROGATE for m in network.modules() if isinstance(m, SpikingLayer))


@pytest.mark.parametrize("plugin", [SNN(), SNNNoise()])
def test_input_gradient_through_the_surrogate_is_nonzero(plugin):
    network = plugin.build(SMALL).eval()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(F.cross_entropy(network(x), torch.tensor([0, 1, 2])), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_snn_is_deterministic_and_snn_noise_draws_noise_in_eval_mode():
    x = torch.rand(2, 1, 28, 28)
    snn, noisy = SNN().build(SMALL).eval(), SNNNoise().build(SMALL).eval()
    with torch.no_grad():
        assert torch.equal(snn(x), snn(x))
        assert not torch.equal(noisy(x), noisy(x))
        quiet = SNNNoise().surrogate(noisy)
        assert not any(isinstance(m, MembraneNoise) for m in quiet.modules())
        assert torch.equal(quiet(x), quiet(x))


def test_likelihood_ratio_mode_sends_no_gradient_through_the_spikes():
    plugin = SNNNoise()
    network = plugin.build(SMALL).train()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    out = network(x)
    assert not out.requires_grad  # the dynamics ran on detached draws
    draws = network.draw_logits
    assert draws.shape == (network.train_draws, 4, 10) and network.score.shape == (network.train_draws, 4)
    loss = plugin.loss(network, out, y, SMALL)
    expected = F.cross_entropy(draws.flatten(0, 1), y.repeat(network.train_draws))
    torch.testing.assert_close(loss.detach(), expected)  # the value is the cross-entropy of the draws
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    network.eval()  # drops the training records, so the trained network can be copied (transfer surrogate)
    assert network.score is None and plugin.surrogate(network) is not None


def test_leave_one_out_baseline_excludes_the_own_loss():
    losses = torch.tensor([[1.0, 4.0], [3.0, 8.0], [5.0, 0.0]])
    torch.testing.assert_close(leave_one_out_baseline(losses, 0), torch.tensor([[4.0, 4.0], [3.0, 2.0], [2.0, 6.0]]))


def _expected_loss_by_quadrature(layer, noise, x, y, nodes=40):
    """E[CE(W x + b + sigma eps, y)] over eps ~ N(0, I_3) by tensor-product Gauss-Hermite quadrature (float64)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    z, w = torch.tensor(z), torch.tensor(w / w.sum())
    grid = torch.stack(torch.meshgrid(z, z, z, indexing="ij"), -1).reshape(-1, 3)
    weights = (w[:, None, None] * w[None, :, None] * w[None, None, :]).reshape(-1)
    mean = layer(x)  # [1, 3]
    v = mean + noise.sigma(mean) * grid
    return (weights * F.cross_entropy(v, y.expand(len(grid)), reduction="none")).sum()


@pytest.mark.parametrize("draws_axis", [False, True])
def test_likelihood_ratio_gradient_is_unbiased_for_weights_and_noise_levels(draws_axis):
    layer = nn.Linear(4, 3).double()
    noise = MembraneNoise(3, sigma_init=0.8).double()
    with torch.no_grad():
        layer.weight.normal_(0, 0.8)
        noise.rho.copy_(torch.tensor([-0.5, 0.3, 0.0]))
    params = [layer.weight, layer.bias, noise.rho]
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([1])

    reference = torch.autograd.grad(_expected_loss_by_quadrature(layer, noise, x, y), params)

    groups, n = 40, 4000
    estimates = []
    for _ in range(groups):
        score = []
        v = noise(layer(x.expand(n, -1).detach()), score)
        losses = F.cross_entropy(v, y.expand(n), reduction="none")
        if draws_axis:  # [draws, B]: 2000 draws for each of 2 (identical) examples
            loss = likelihood_ratio_loss(losses.view(-1, 2), score[0].view(-1, 2))
        else:  # [B]: leave-one-out over the batch
            loss = likelihood_ratio_loss(losses, score[0])
        estimates.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    estimates = torch.stack(estimates)
    mean, se = estimates.mean(0), estimates.std(0) / groups ** 0.5
    ref = torch.cat([g.flatten() for g in reference])
    assert ((mean - ref).abs() <= 4.5 * se).all(), ((mean - ref) / se)
    # precise enough to catch a wrong sign or a missing 1/sigma: the standard errors are small against the gradient
    assert se.max() < 0.1 * ref.abs().max()
    assert ref[-3:].abs().min() > 5 * se[-3:].max()  # the noise-level gradients are resolved too


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 4)])
def test_noise_score_has_the_gradient_of_the_gaussian_log_density(shape):
    noise = MembraneNoise(3, sigma_init=0.5).double()
    with torch.no_grad():
        noise.rho.copy_(torch.tensor([-1.0, 0.2, 0.7]))
    mean = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    score = []
    value = noise(mean, score)
    assert not value.requires_grad
    grads = torch.autograd.grad(score[0].sum(), (mean, noise.rho))
    sigma = noise.sigma(mean)
    log_density = (-0.5 * ((value - mean) / sigma) ** 2 - sigma.log().expand(shape)).sum()
    expected = torch.autograd.grad(log_density, (mean, noise.rho))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
