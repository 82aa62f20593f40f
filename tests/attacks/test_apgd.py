"""The harness's own APGD (Croce & Hein 2020): threat model, strength against pyautoattack's APGD and APGD-T on
the same points, the active set of non-random models, batched targets, and stochastic models."""

import numpy as np
import pytest
import torch
from fakes import assert_in_threat_model
from torch import nn

from benchmark.attacks import apgd as apgd_module
from benchmark.attacks.apgd import APGD, checkpoints
from benchmark.attacks.base import target_classes
from benchmark.attacks.losses import targeted_dlr
from benchmark.layers.dropout import MCDropout
from benchmark.predictive import Predictor

EPS = 0.08  # MNIST MLP: clean ~93%, APGD leaves ~27-30%, so the comparison is informative
TOL = 0.01  # one point of robust accuracy
LOSSES = ("ce", "dlr", "dlr-targeted")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def test_points(mnist_sample):
    _, _, x, y = mnist_sample
    return x[:200], y[:200]


class Recorder(nn.Module):
    """The wrapped network, keeping every batch it is called with."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = []

    def forward(self, x):
        self.calls.append(x.detach().clone())
        return self.net(x)


def accuracy(net, x_adv, y):
    with torch.no_grad():
        return (net(x_adv).argmax(1) == y).float().mean().item()


def owners(rows, x, eps):
    """The example each row is an attacked copy of: the one clean input within eps (L-inf). Two MNIST digits are
    about 1 apart in L-inf, so at eps <= 0.3 there is exactly one."""
    near = (rows[:, None] - x[None]).abs().flatten(2).amax(2) <= eps + 1e-6
    assert (near.sum(1) == 1).all()
    return near.int().argmax(1)


# ----------------------------------------------------------------------------------------------------
# pieces


def test_targeted_dlr_matches_pyautoattack_and_is_shift_and_scale_free():
    from pyautoattack.autopgd_base import APGDAttack_targeted

    torch.manual_seed(0)
    logits, y = torch.randn(64, 10) * 3, torch.randint(0, 10, (64,))
    target = (y + torch.randint(1, 10, (64,))) % 10
    reference = APGDAttack_targeted.__new__(APGDAttack_targeted)
    reference.y_target = target
    torch.testing.assert_close(targeted_dlr(logits, y, target), reference.dlr_loss_targeted(logits, y))
    torch.testing.assert_close(targeted_dlr(50 * logits + 3, y, target), targeted_dlr(logits, y, target))
    aimed_wins = logits.gather(1, target[:, None]) > logits.gather(1, y[:, None])
    assert ((targeted_dlr(logits, y, target) > 0) == aimed_wins.squeeze(1)).all()
    with pytest.raises(ValueError, match="at least 4 classes"):
        targeted_dlr(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long))


def test_checkpoints_are_the_papers():
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, Sec. 3.1)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(0) == []


def test_target_classes_are_the_top_ranked_classes_other_than_the_label():
    log_pred = torch.log_softmax(torch.tensor([[5.0, 1.0, 4.0, 3.0, 2.0], [0.0, 9.0, 1.0, 8.0, 2.0]]), 1)
    y = torch.tensor([0, 3])  # the second input is misclassified: its top class 1 is a target, never y
    assert target_classes(log_pred, y, 3).tolist() == [[2, 3, 4], [1, 4, 2]]


def test_unknown_loss_and_too_few_classes_are_refused(trained_mlp, test_points):
    x, y = test_points
    with pytest.raises(ValueError, match="loss"):
        APGD(loss="likelihood")(Predictor(trained_mlp, "deterministic"), x[:4], y[:4], EPS, 1)
    three = nn.Sequential(trained_mlp, nn.Linear(10, 3))
    with pytest.raises(ValueError, match="at least 4 classes"):
        APGD(loss="dlr-targeted", steps=2)(Predictor(three, "deterministic"), x[:4], y[:4] % 3, EPS, 1)


class Bowl(nn.Module):
    """Three classes, z_0 = 10 ||x - c||^2 and z_1 = z_2 = 0: the cross-entropy of class 0 is highest at c, inside
    the ball, where the point is still classified as 0 (ties go to the first class), so no example breaks.
    Its input gradient's sign is -sign(x - c): a signed step moves each pixel towards c."""

    def __init__(self, centre):
        super().__init__()
        self.centre = centre

    def forward(self, x):
        z0 = 10 * (x - self.centre).pow(2).flatten(1).sum(1)
        return torch.stack([z0, torch.zeros_like(z0), torch.zeros_like(z0)], 1)


def bowl(eps):
    x = torch.full((32, 1, 4, 4), 0.5)
    centre = x + eps * (1.6 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 0.8)
    return x, torch.zeros(32, dtype=torch.long), centre


def test_the_first_steps_are_algorithm_1s():
    """x(1) = P(x(0) + eta sign(g)), eta = 2 eps, without momentum; x(2) = P(x(1) + 0.75 (z(2) - x(1)) + 0.25
    (x(1) - x(0))) with z(2) = P(x(1) + eta sign(g(1))) (Croce & Hein 2020, Algorithm 1)."""
    from benchmark.attacks.base import project

    eps = 0.1
    x, y, centre = bowl(eps)
    net = Recorder(Bowl(centre))
    APGD(loss="ce", steps=100)(Predictor(net, "deterministic"), x, y, eps, 1)  # first checkpoint: step 22
    _, x0, x1, x2 = net.calls[:4]  # the clean pass, the start, two steps

    def ascent(point):
        return -(point - centre).sign()

    torch.testing.assert_close(x1, project(x0 + 2 * eps * ascent(x0), x, eps))
    z2 = project(x1 + 2 * eps * ascent(x1), x, eps)
    torch.testing.assert_close(x2, project(x1 + 0.75 * (z2 - x1) + 0.25 * (x1 - x0), x, eps))


def test_the_step_size_halves_until_the_best_point_reaches_an_interior_maximum():
    """With a fixed step of 2 eps the iterates jump around the bowl's top at c (0.4 eps away at best); the
    checkpoints halve the step eight times in 100 steps, so the best point ends within a few hundredths of eps."""
    eps = 0.1
    x, y, centre = bowl(eps)
    x_adv = APGD(loss="ce", steps=100)(Predictor(Bowl(centre), "deterministic"), x, y, eps, 1)
    assert (x_adv - centre).abs().max().item() < 0.05 * eps


# ----------------------------------------------------------------------------------------------------
# threat model and strength


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("eps", [0.08, 0.3])
def test_points_stay_in_the_threat_model(trained_mlp, test_points, loss, eps):
    x, y = test_points
    x, y = x[:50], y[:50]
    x_adv = APGD(loss=loss, steps=10, restarts=2, targets=3)(Predictor(trained_mlp, "deterministic"), x, y, eps, 1)
    assert_in_threat_model(x_adv, x, eps)


def test_the_global_generator_is_left_alone(trained_mlp, test_points):
    x, y = test_points
    state = torch.get_rng_state()
    APGD(loss="dlr-targeted", steps=5, restarts=2, targets=3, seed=7)(
        Predictor(trained_mlp, "deterministic"), x[:20], y[:20], EPS, 1)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("loss", LOSSES)
def test_at_least_as_strong_as_pyautoattacks_apgd(trained_mlp, test_points, loss):
    """Same loss, 100 steps, one restart, eps, seed; APGD-T with the same three target classes per example.
    Robust accuracy of a deterministic model: the fraction with argmax(net(x_adv)) == y."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    x, y = test_points
    harness = APGD(loss=loss, steps=100, targets=3, seed=0)(Predictor(trained_mlp, "deterministic"), x, y, EPS, 1)
    if loss == "dlr-targeted":
        reference = APGDAttack_targeted(trained_mlp, n_iter=100, eps=EPS, seed=0, n_target_classes=3, device="cpu")
    else:
        reference = APGDAttack(trained_mlp, n_iter=100, eps=EPS, seed=0, loss=loss, device="cpu")
    direct = reference.perturb(x, y)
    assert_in_threat_model(harness, x, EPS)
    acc = {"clean": accuracy(trained_mlp, x, y), "harness": accuracy(trained_mlp, harness, y),
           "pyautoattack": accuracy(trained_mlp, direct, y)}
    assert 0.1 < acc["pyautoattack"] < acc["clean"] - 0.1, acc  # partially robust: the counts can differ
    assert acc["harness"] <= acc["pyautoattack"] + TOL, acc


# ----------------------------------------------------------------------------------------------------
# active set (non-random models)


@pytest.mark.parametrize("interval", [1, 5], ids=["cpu-every-pass", "accelerator-every-5"])
@pytest.mark.parametrize("loss", ["ce", "dlr-targeted"])
def test_broken_examples_leave_and_stay_broken(trained_mlp, test_points, monkeypatch, loss, interval):
    """Every batch the network sees is traced back to its examples. An example leaves once any evaluated copy
    of it is misclassified (at once when compacting every pass, within ``interval`` passes otherwise) and is
    then returned misclassified; an example never misclassified is returned classified correctly. Most
    examples break in a few steps at this eps, so far fewer rows are computed than steps * batch."""
    monkeypatch.setattr(apgd_module, "compaction_interval", lambda device: interval)
    x, y = test_points
    x, y = x[:100], y[:100]
    eps, steps, restarts, targets = 0.15, 50, 2, 3
    net = Recorder(trained_mlp)
    x_adv = APGD(loss=loss, steps=steps, restarts=restarts, targets=targets)(
        Predictor(net, "deterministic"), x, y, eps, 1)
    assert_in_threat_model(x_adv, x, eps)

    first_wrong = torch.full((len(y),), len(net.calls))  # index of the first call misclassifying each example
    last_seen = torch.full((len(y),), -1)
    for call, rows in enumerate(net.calls):
        who = owners(rows, x, eps)
        with torch.no_grad():
            wrong = trained_mlp(rows).argmax(1) != y[who]
        last_seen[who] = call
        hit = torch.unique(who[wrong])
        first_wrong[hit] = torch.minimum(first_wrong[hit], torch.tensor(call))
    ever_wrong = first_wrong < len(net.calls)
    copies = targets if loss == "dlr-targeted" else 1
    rows_seen = sum(len(rows) for rows in net.calls)

    assert ever_wrong.float().mean() > 0.8  # precondition: most examples break
    with torch.no_grad():
        assert torch.equal(trained_mlp(x_adv).argmax(1) != y, ever_wrong)
    assert (last_seen[ever_wrong] - first_wrong[ever_wrong] <= interval - 1).all()
    assert rows_seen < 0.25 * (steps + 1) * restarts * copies * len(y), rows_seen


# ----------------------------------------------------------------------------------------------------
# APGD-T: all targets in one batch


def test_targets_run_batched_on_the_top_ranked_wrong_classes(trained_mlp, test_points, monkeypatch):
    """Every pass carries all T copies of every example still attacked (T * B rows, not T runs of B), and the
    copies of an example aim at the T classes its clean predictive ranks highest after y, one each."""
    seen = []

    def recording_targeted_dlr(log_pred, y, target):
        seen.append(target.clone())
        return targeted_dlr(log_pred, y, target)

    monkeypatch.setattr(apgd_module, "targeted_dlr", recording_targeted_dlr)
    x, y = test_points
    x, y = x[:40], y[:40]
    eps, steps, targets = 0.02, 6, 3
    net = Recorder(trained_mlp)
    APGD(loss="dlr-targeted", steps=steps, targets=targets)(Predictor(net, "deterministic"), x, y, eps, 1)

    with torch.no_grad():
        clean = trained_mlp(x)
    correct = clean.argmax(1) == y
    assert correct.sum() >= 30  # precondition
    sizes = [len(rows) for rows in net.calls]
    assert sizes[0] == len(y)  # the clean pass
    assert sizes[1] == targets * correct.sum().item()  # all copies of every correctly classified example at once
    assert len(sizes) <= 1 + (steps + 1) + 1  # one pass per step (plus the clean and the final margin passes)
    assert len(seen) <= steps + 1 and [len(t) for t in seen] == sizes[1:len(seen) + 1]  # one loss per pass

    who = owners(net.calls[1], x, eps)
    expected = clean.scatter(1, y[:, None], -torch.inf).topk(targets, 1).indices
    for i in torch.nonzero(correct).squeeze(1).tolist():
        assert sorted(seen[0][who == i].tolist()) == sorted(expected[i].tolist())
    assert set(who.tolist()) == set(torch.nonzero(correct).squeeze(1).tolist())


# ----------------------------------------------------------------------------------------------------
# stochastic models: no active set, own generator

DRAWS = 4
EVAL_DRAWS = 32


@pytest.fixture(scope="module")
def dropout_net(trained_mlp):
    """The trained MLP with MC dropout before its last layer: every forward pass is one draw."""
    return nn.Sequential(*trained_mlp[:3], MCDropout(0.3), trained_mlp[3]).eval()


def deployed_accuracy(predictor, x, y):
    accs = []
    for seed in (101, 102, 103):
        torch.manual_seed(seed)
        accs.append((predictor.probs(x, EVAL_DRAWS).argmax(1) == y).float().mean().item())
    return float(np.mean(accs))


@pytest.mark.parametrize("loss,restarts", [("ce", 2), ("dlr-targeted", 1)])
def test_stochastic_models_run_every_step_and_lose_accuracy(dropout_net, test_points, loss, restarts):
    x, y = test_points
    x, y = x[:60], y[:60]
    steps, targets = 20, 2
    copies = targets if loss == "dlr-targeted" else 1
    net = Recorder(dropout_net)
    predictor = Predictor(net, "stochastic")
    torch.manual_seed(0)
    x_adv = APGD(loss=loss, steps=steps, restarts=restarts, targets=targets)(predictor, x, y, EPS, DRAWS)
    assert_in_threat_model(x_adv, x, EPS)
    sizes = [len(rows) for rows in net.calls]
    # the clean pass, every step of every restart on the whole batch, one evaluation of the candidates per restart
    assert sizes == [DRAWS * len(y)] + ([DRAWS * copies * len(y)] * (steps + 2)) * restarts
    clean_acc, adv_acc = deployed_accuracy(predictor, x, y), deployed_accuracy(predictor, x_adv, y)
    assert clean_acc > 0.8 and adv_acc < clean_acc - 0.2, (clean_acc, adv_acc)


def test_stochastic_runs_repeat_with_the_same_seeds_and_the_starts_follow_the_attack_seed(dropout_net, test_points):
    x, y = test_points
    x, y = x[:30], y[:30]
    predictor = Predictor(dropout_net, "stochastic")

    def run(attack_seed, global_seed, steps):
        torch.manual_seed(global_seed)
        return APGD(loss="ce", steps=steps, seed=attack_seed)(predictor, x, y, EPS, DRAWS)

    # no steps: the output is the random start, which only the attack's own seed decides
    start = run(0, 5, 0)
    assert torch.equal(start, run(0, 6, 0))
    assert not torch.equal(start, run(1, 5, 0))
    assert ((start - x).abs().flatten(1).amax(1) > 0.9 * EPS).float().mean() > 0.9  # near the surface of the ball
    # with steps: the same attack and global seeds repeat exactly; another global seed changes the model's
    # draws (it would not if the attack reseeded the global generator with its own seed)
    attacked = run(0, 5, 5)
    assert torch.equal(attacked, run(0, 5, 5))
    assert not torch.equal(attacked, run(0, 6, 5))
    assert not torch.equal(attacked, run(1, 5, 5))
