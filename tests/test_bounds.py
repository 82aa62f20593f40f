"""Interval bound propagation is sound: every input sampled from the eps-ball (uniformly, at its corners,
and by signed-gradient search for each logit's extremes) has logits inside the propagated bounds.

Containment alone cannot catch bounds that are too tight but still loose enough for deep random nets, so
each rule is also checked to be exact on its own (an affine map reaches both ends at a corner, monotone
layers map the ends): exact primitives compose into sound bounds."""

import pytest
import torch
from fakes import ball_samples
from torch import nn

from benchmark.bounds import (
    CERTIFY_MARGIN,
    certified,
    certified_margin,
    input_box,
    propagate,
    worst_case_logits,
)
from benchmark.layers.normalize import Normalize

TOL = 1e-9  # float64 rounding


def conv_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        Normalize((0.4, 0.5), (0.2, 0.3)),
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ELU(),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 16), nn.Tanh(), nn.Linear(16, 5),
    ).double()


def dense_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 12 * 12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 5)).double()


def optimised_extremes(net: nn.Module, x: torch.Tensor, eps: float,
                       steps: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Per logit, the smallest and largest value found by signed-gradient descent/ascent inside the box:
    a strong search for inputs that would break the bounds (random samples rarely reach the extremes)."""
    lower, upper = input_box(x, eps)
    with torch.no_grad():
        classes = net(x).shape[-1]
    found = []
    for sign in (-1.0, 1.0):
        best = torch.full((x.shape[0], classes), -sign * float("inf"), dtype=x.dtype)
        for k in range(classes):
            z = (lower + upper) / 2
            for _ in range(steps):
                z.requires_grad_(True)
                out = net(z)[:, k]
                (grad,) = torch.autograd.grad(sign * out.sum(), z)
                with torch.no_grad():
                    z = torch.minimum(torch.maximum(z + 2 * eps / steps * 4 * grad.sign(), lower), upper)
                    value = net(z)[:, k]
                    best[:, k] = torch.maximum(best[:, k], value) if sign > 0 else torch.minimum(best[:, k], value)
        found.append(best)
    return found[0], found[1]


@pytest.mark.parametrize("make", [conv_net, dense_net])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3])
def test_bounds_contain_every_sampled_input(make, seed, eps):
    net = make(seed)
    torch.manual_seed(100 + seed)
    x = torch.rand(4, 2, 12, 12, dtype=torch.float64)
    lower, upper = propagate(net, *input_box(x, eps))
    assert (lower <= upper).all()
    with torch.no_grad():
        outs = net(ball_samples(x, eps, 400).flatten(0, 1)).view(400, 4, -1)
    assert (outs >= lower - TOL).all() and (outs <= upper + TOL).all()
    lowest, highest = optimised_extremes(net, x, eps)
    assert (lowest >= lower - TOL).all() and (highest <= upper + TOL).all()


def test_a_point_box_gives_the_forward_pass():
    net = conv_net(3)
    x = torch.rand(3, 2, 12, 12, dtype=torch.float64)
    lower, upper = propagate(net, x, x)
    torch.testing.assert_close(lower, net(x).detach())
    torch.testing.assert_close(upper, net(x).detach())


def test_affine_bounds_are_exact():
    """For one affine map the interval is attained: at the corner x = c + sign(W_i) r for unit i."""
    torch.manual_seed(0)
    layer = nn.Linear(20, 6).double()
    lower, upper = torch.rand(1, 20, dtype=torch.float64) * 0.5, None
    upper = lower + torch.rand(1, 20, dtype=torch.float64) * 0.5
    low, high = propagate([layer], lower, upper)
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    corners_hi = centre + layer.weight.sign() * radius  # row i maximises unit i
    corners_lo = centre - layer.weight.sign() * radius
    with torch.no_grad():
        torch.testing.assert_close(layer(corners_hi).diagonal(), high[0])
        torch.testing.assert_close(layer(corners_lo).diagonal(), low[0])


def test_conv_bounds_are_attained():
    """Every output unit of a strided, padded convolution reaches its interval end at the box corner
    that follows the sign of its weights (found by autograd)."""
    torch.manual_seed(1)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    lower = torch.rand(1, 2, 7, 7, dtype=torch.float64) * 0.5
    upper = lower + torch.rand_like(lower) * 0.5
    low, high = propagate([layer], lower, upper)
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    for unit in [(0, 0, 0), (1, 2, 3), (2, 3, 3), (0, 1, 2)]:
        probe = centre.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(layer(probe)[(0, *unit)], probe)
        with torch.no_grad():
            assert (layer(centre + grad.sign() * radius)[(0, *unit)].item()
                    == pytest.approx(high[(0, *unit)].item(), abs=1e-12))
            assert (layer(centre - grad.sign() * radius)[(0, *unit)].item()
                    == pytest.approx(low[(0, *unit)].item(), abs=1e-12))


def test_monotone_layers_map_the_ends_exactly():
    lower = torch.rand(2, 2, 6, 6, dtype=torch.float64) - 0.5
    upper = lower + torch.rand_like(lower)
    for layer in (nn.ReLU(), nn.ELU(), nn.Tanh(), nn.MaxPool2d(2), Normalize((0.4, 0.5), (0.2, 0.3)), nn.Flatten()):
        low, high = propagate([layer], lower, upper)
        torch.testing.assert_close(low, layer(lower))
        torch.testing.assert_close(high, layer(upper))


def test_bounds_are_nested_in_eps():
    net = conv_net(4)
    x = torch.rand(2, 2, 12, 12, dtype=torch.float64)
    small, large = propagate(net, *input_box(x, 0.05)), propagate(net, *input_box(x, 0.1))
    assert (large[0] <= small[0] + TOL).all() and (small[1] <= large[1] + TOL).all()


def test_input_box_is_clipped_to_the_image_range():
    x = torch.tensor([[0.0, 0.05, 0.5, 0.97, 1.0]])
    lower, upper = input_box(x, 0.1)
    torch.testing.assert_close(lower, torch.tensor([[0.0, 0.0, 0.4, 0.87, 0.9]]))
    torch.testing.assert_close(upper, torch.tensor([[0.1, 0.15, 0.6, 1.0, 1.0]]))


def test_custom_weights_are_used_for_the_layers_they_name():
    """The weight source replaces a layer's parameters (one posterior draw of a Bayesian layer)."""
    net = dense_net(5)
    x = torch.rand(2, 2, 12, 12, dtype=torch.float64)
    first = net[1]
    swapped = (torch.zeros_like(first.weight), torch.ones_like(first.bias))
    lower, upper = propagate(net, x, x, lambda m: swapped if m is first else None)
    expected = net[2:](torch.ones(2, 32, dtype=torch.float64))
    torch.testing.assert_close(lower, expected.detach().expand_as(lower))


@pytest.mark.parametrize("layer", [nn.GELU(), nn.SiLU(), nn.Dropout(0.5), nn.BatchNorm1d(4), nn.LeakyReLU(-0.1)])
def test_layers_without_a_sound_rule_are_refused(layer):
    with pytest.raises(TypeError):
        propagate([layer], torch.zeros(2, 4), torch.ones(2, 4))


def test_bounds_are_differentiable_in_the_weights():
    net = dense_net(6)
    x = torch.rand(2, 2, 12, 12, dtype=torch.float64)
    lower, upper = propagate(net, *input_box(x, 0.1))
    (upper - lower).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_worst_case_logits_and_the_certificate_by_hand():
    lower = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.4, 0.0], [1.0, 1.0, 1.0]])
    upper = torch.tensor([[3.0, 1.5, 1.9], [2.0, 0.6, 0.1], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 1, 2])
    torch.testing.assert_close(worst_case_logits(lower, upper, y),
                               torch.tensor([[2.0, 1.5, 1.9], [2.0, 0.4, 0.1], [1.0, 1.0, 1.0]]))
    torch.testing.assert_close(certified_margin(lower, upper, y), torch.tensor([0.1, -1.6, 0.0]))
    assert certified(lower, upper, y).tolist() == [True, False, False]  # a tie is not certified
    assert CERTIFY_MARGIN < 0.1


def test_a_plugin_layer_is_certified_through_its_own_interval_rule():
    """A third-party layer needs no entry in benchmark.bounds: its interval_bounds method is the rule."""

    class Shift(nn.Module):
        def forward(self, x):
            return x + 1.0

        def interval_bounds(self, lower, upper):
            return lower + 1.0, upper + 1.0

    class NoRule(nn.Module):
        def forward(self, x):
            return x * x

    lower, upper = torch.zeros(2, 3), torch.ones(2, 3)
    low, high = propagate(nn.Sequential(Shift(), nn.ReLU()), lower, upper)
    torch.testing.assert_close(low, lower + 1.0)
    torch.testing.assert_close(high, upper + 1.0)
    with pytest.raises(TypeError, match="no sound rule for NoRule"):
        propagate([NoRule()], lower, upper)
