"""The harness's own targeted L-inf FAB (FAB-T): its exact L-inf projection against a linear program, its
strength against pyautoattack's FAB-T, the batched targets, the active set, the threat model, the refusal of
random predictors and its own generator."""

import numpy as np
import pytest
import torch
from fakes import assert_in_threat_model
from torch import nn

from benchmark.attacks.fab import FAB, NEWTON_STEPS, linf_boundary_step
from benchmark.predictive import Predictor

EPS = 0.08  # MNIST MLP: clean ~93%, FAB-T leaves ~27%, so the comparison is informative
TOL = 0.01  # one point of robust accuracy


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def test_points(mnist_sample):
    _, _, x, y = mnist_sample
    return x[:200], y[:200]


class Recording(nn.Module):
    """The network, recording the rows of every call and whether it was a gradient pass."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = []

    def forward(self, x):
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.net(x)


def robust_accuracy(net, x_adv, x, y, eps=EPS):
    """AutoAttack's count: an example is broken only by a misclassified point within eps."""
    with torch.no_grad():
        correct = net(x_adv).argmax(1) == y
    outside = (x_adv - x).flatten(1).abs().amax(1) > eps + 1e-6
    return (correct | outside).float().mean().item()


# ----------------------------------------------------------------------------------------------------
# the L-inf projection onto a hyperplane within the box


def linprog_step(point, w, value):
    """min ||d||_inf s.t. w.d = -value, 0 <= point + d <= 1, as a linear program in (d, s); None if infeasible."""
    from scipy.optimize import linprog

    dim = point.size
    cost = np.zeros(dim + 1)
    cost[-1] = 1.0
    eye = np.eye(dim)
    bound = np.hstack([np.vstack([eye, -eye]), -np.ones((2 * dim, 1))])  # d_i - s <= 0, -d_i - s <= 0
    res = linprog(cost, A_ub=bound, b_ub=np.zeros(2 * dim), A_eq=np.append(w, 0.0)[None], b_eq=[-value],
                  bounds=[(-p, 1.0 - p) for p in point] + [(0.0, None)], method="highs")
    assert res.status in (0, 2), res.message
    return res.fun if res.status == 0 else None


@pytest.mark.parametrize("newton_steps", [0, NEWTON_STEPS, 60])  # all rows sorted; the default; Newton alone
def test_projection_is_feasible_and_as_small_as_the_linear_program(newton_steps):
    pytest.importorskip("scipy")
    g = torch.Generator().manual_seed(0)
    rows, dim = 300, 12
    points = torch.rand(rows, dim, generator=g, dtype=torch.float64)
    points[:100] = (points[:100] > 0.5).double()  # image-like rows: pixels at 0 or 1
    w = torch.randn(rows, dim, generator=g, dtype=torch.float64) * (torch.rand(rows, dim, generator=g) > 0.2)
    w[0] = 0.0  # no gradient: nothing can move
    value = torch.randn(rows, generator=g, dtype=torch.float64) * torch.rand(rows, generator=g, dtype=torch.float64) * 3
    value[1] = 0.0  # already on the hyperplane
    step = linf_boundary_step(points.float(), w.float(), value.float(), newton_steps).double()
    moved = points + step
    assert moved.min() >= -1e-6 and moved.max() <= 1 + 1e-6
    feasible = infeasible = 0
    for i in range(rows):
        best = linprog_step(points[i].numpy(), w[i].numpy(), value[i].item())
        norm = step[i].abs().max().item()
        if best is None:  # out of reach: as far towards the hyperplane as the box allows
            infeasible += 1
            reach = (w[i].abs() * torch.where(w[i] * -value[i] > 0, 1 - points[i], points[i])).sum()
            assert reach == 0 or torch.sign(w[i] @ step[i]) == torch.sign(-value[i])
            assert (w[i] @ step[i]).abs().item() == pytest.approx(reach.item(), rel=1e-5, abs=1e-6)
        else:
            feasible += 1
            assert abs(value[i].item() + (w[i] @ step[i]).item()) <= 1e-5 * max(1.0, abs(value[i].item()))
            assert norm <= best + 1e-6, (i, norm, best)
    assert feasible > 100 and infeasible > 20  # both cases are exercised
    assert step[0].abs().max() == 0 and step[1].abs().max() == 0


# ----------------------------------------------------------------------------------------------------
# strength


def pyautoattack_fab_t(net, x, y, eps, steps, targets):
    from pyautoattack.fab_pt import FABAttack_PT

    return FABAttack_PT(net, norm="Linf", n_restarts=1, n_iter=steps, eps=eps, targeted=True,
                        n_target_classes=targets, seed=0, device=x.device).perturb(x, y)


def test_at_least_as_strong_as_pyautoattack_fab_t(trained_mlp, test_points):
    x, y = test_points
    targets, steps = 3, 50
    ours = FAB(steps=steps, targets=targets)(Predictor(trained_mlp, "deterministic"), x, y, EPS, 1)
    theirs = pyautoattack_fab_t(trained_mlp, x, y, EPS, steps, targets)
    assert_in_threat_model(ours, x, EPS)
    clean = robust_accuracy(trained_mlp, x, x, y)
    mine, reference = robust_accuracy(trained_mlp, ours, x, y), robust_accuracy(trained_mlp, theirs, x, y)
    assert mine <= reference + TOL, (mine, reference)
    assert mine < clean - 0.3  # it does break the model: ~93% clean, ~27% left


def test_first_iteration_is_pyautoattacks(trained_mlp, test_points):
    """After one iteration and with eps = 1 (every adversarial point counts) both return, per example, the first
    iterate of the first target (in rank order) that is adversarial: the same targets, projection and biased step."""
    x, y = test_points
    for targets in (1, 3):
        ours = FAB(steps=1, targets=targets)(Predictor(trained_mlp, "deterministic"), x, y, 1.0, 1)
        theirs = pyautoattack_fab_t(trained_mlp, x, y, 1.0, 1, targets)
        assert (theirs != x).flatten(1).any(1).sum() > 100  # most examples break in one step
        assert (ours - theirs).abs().max().item() < 1e-5


# ----------------------------------------------------------------------------------------------------
# batching, active set, threat model


def test_targets_batched_and_misclassified_examples_untouched(trained_mlp, test_points):
    x, y = test_points
    with torch.no_grad():
        correct = trained_mlp(x).argmax(1) == y
    assert 0 < (~correct).sum() < len(y)
    net = Recording(trained_mlp)
    targets = 4
    x_adv = FAB(steps=3, targets=targets)(Predictor(net, "deterministic"), x, y, EPS, 1)
    gradient_rows = [rows for rows, grad in net.calls if grad]
    assert len(gradient_rows) == 3  # one gradient pass per iteration
    assert gradient_rows[0] == targets * int(correct.sum())  # every target of every correct example, at once
    assert torch.equal(x_adv[~correct], x[~correct])  # already misclassified: returned as it is
    assert_in_threat_model(x_adv, x, EPS)


def test_targets_capped_at_the_other_classes(test_points):
    x, y = test_points
    net = Recording(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)))
    y = net.net(x).argmax(1)  # all correct
    FAB(steps=1, targets=9)(Predictor(net, "deterministic"), x, y, EPS, 1)
    assert [rows for rows, grad in net.calls if grad] == [2 * len(y)]


def test_active_set_shrinks_and_broken_examples_are_returned(trained_mlp, test_points):
    x, y = test_points
    eps, steps, targets = 0.3, 20, 3  # large eps: almost every example breaks within a few steps
    net = Recording(trained_mlp)
    x_adv = FAB(steps=steps, targets=targets)(Predictor(net, "deterministic"), x, y, eps, 1)
    assert_in_threat_model(x_adv, x, eps)
    with torch.no_grad():
        correct = trained_mlp(x).argmax(1) == y
        still = trained_mlp(x_adv).argmax(1) == y
    assert still.float().mean() < 0.05
    gradient_rows = [rows for rows, grad in net.calls if grad]
    assert sum(gradient_rows) < 0.2 * steps * targets * int(correct.sum())
    changed = (x_adv != x).flatten(1).any(1)
    assert torch.equal(changed, correct & ~still)  # broken examples moved, the others are the original


def test_unbroken_examples_are_the_original(trained_mlp, test_points):
    x, y = test_points
    x_adv = FAB(steps=10, targets=2)(Predictor(trained_mlp, "deterministic"), x, y, 0.02, 1)
    assert_in_threat_model(x_adv, x, 0.02)
    with torch.no_grad():
        still = trained_mlp(x_adv).argmax(1) == y
    assert still.any()
    assert torch.equal(x_adv[still], x[still])


def test_random_predictor_refused(trained_mlp, test_points):
    x, y = test_points
    with pytest.raises(ValueError, match="deterministic"):
        FAB(steps=1)(Predictor(trained_mlp, "stochastic"), x[:4], y[:4], EPS, 4)


def test_restarts_use_their_own_generator(trained_mlp, test_points):
    x, y = test_points[0][:60], test_points[1][:60]
    predictor = Predictor(trained_mlp, "deterministic")
    attack = FAB(steps=5, restarts=3, targets=2).for_run(7, None)
    assert attack.seed == 7
    state = torch.get_rng_state()
    first = attack(predictor, x, y, 0.05, 1)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is neither drawn from nor reseeded
    assert torch.equal(attack(predictor, x, y, 0.05, 1), first)
    single = FAB(steps=5, restarts=1, targets=2)(predictor, x, y, 0.05, 1)
    broken = lambda adv: (trained_mlp(adv).argmax(1) != y).sum().item()  # noqa: E731
    with torch.no_grad():
        assert broken(first) >= broken(single)  # restarts only add examples
