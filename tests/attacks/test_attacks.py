import math

import pytest
import torch
from fakes import RowCounter, assert_in_threat_model
from torch import nn
from torch.nn import functional as F

from benchmark.attacks import FGSM, PGD, AutoAttack, input_gradient
from benchmark.layers.dropout import MCDropout
from benchmark.predictive import Predictor


def accuracy(predictor, x, y, draws=1):
    return (predictor.probs(x, draws).argmax(1) == y).float().mean().item()


def test_pgd_is_at_least_as_strong_as_fgsm(trained_mlp, mnist_sample):
    _, _, x, y = mnist_sample
    predictor = Predictor(trained_mlp, "deterministic")
    assert (accuracy(predictor, PGD(steps=20)(predictor, x, y, 0.1, 1), y)
            <= accuracy(predictor, FGSM()(predictor, x, y, 0.1, 1), y))


def test_pgd_keeps_a_found_adversarial_point(trained_mlp, mnist_sample):
    """Points misclassified at any step stay misclassified in the returned batch (best-point tracking)."""
    _, _, x, y = mnist_sample
    predictor = Predictor(trained_mlp, "deterministic")
    one_step = PGD(steps=1, step_size=1.0, random_start=False)(predictor, x, y, 0.15, 1)
    many = PGD(steps=30, step_size=1.0, random_start=False)(predictor, x, y, 0.15, 1)
    broken_early = predictor.probs(one_step).argmax(1) != y
    assert (predictor.probs(many).argmax(1) != y)[broken_early].all()


@pytest.mark.parametrize("restarts", [1, 2])
def test_pgd_active_set_breaks_the_same_examples_at_a_fraction_of_the_work(trained_mlp, mnist_sample, restarts):
    """A deterministic model's examples leave PGD once misclassified: the same examples end up broken as
    when every example runs every step, with fewer rows computed; switched off, every row runs to the end."""
    _, _, x, y = mnist_sample
    counted = RowCounter(trained_mlp)
    predictor = Predictor(counted, "deterministic")
    wrong = {}
    for stop in (True, False):
        counted.rows = 0
        torch.manual_seed(0)
        x_adv = PGD(steps=20, restarts=restarts, stop_when_broken=stop)(predictor, x, y, 0.15, 1)
        rows = counted.rows
        wrong[stop] = predictor.probs(x_adv).argmax(1) != y
        if stop:
            assert rows < 0.5 * restarts * 21 * len(y)  # most examples break within a few steps at eps 0.15
        else:
            assert rows == restarts * 21 * len(y)
    assert wrong[True].float().mean() > 0.8
    assert (wrong[True] != wrong[False]).sum() <= 1  # trajectories equal up to the rounding of other batch sizes


def test_pgd_runs_every_example_to_the_end_on_a_stochastic_model(mnist_sample):
    """No single evaluation of a stochastic model tells a point is broken: no example leaves early."""
    _, _, x, y = mnist_sample
    attacked = []

    class GradientRows(RowCounter):  # the rows of the attack's forward and backward passes, not of its scoring
        def forward(self, x):
            if torch.is_grad_enabled():
                attacked.append(x.shape[0])
            return self.module(x)

    predictor = Predictor(GradientRows(nn.Sequential(nn.Flatten(), MCDropout(0.5), nn.Linear(784, 10))), "stochastic")
    PGD(steps=5)(predictor, x[:50], y[:50], 0.3, 2)
    assert attacked == [50 * 2] * 6


@pytest.mark.slow
def test_autoattack_standard_is_at_least_as_strong_as_pgd(trained_mlp, mnist_sample):
    _, _, x, y = mnist_sample
    x, y = x[:40], y[:40]
    predictor = Predictor(trained_mlp, "deterministic")
    x_adv = AutoAttack(seed=0)(predictor, x, y, 0.1, 1)
    assert_in_threat_model(x_adv, x, 0.1)
    assert accuracy(predictor, x_adv, y) <= accuracy(predictor, PGD(steps=20)(predictor, x, y, 0.1, 1), y) + 1e-9


class FixedDraws(nn.Module):
    """A 'stochastic' net that cycles through known logits, to check the EOT loss by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits  # [D, C]
        self.calls = 0

    def forward(self, x):
        out = self.logits.repeat_interleave(x.shape[0] // self.logits.shape[0], dim=0)
        self.calls += 1
        return out + 0 * x.flatten(1)[:, :1]


def test_eot_loss_is_the_log_of_averaged_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [-1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    predictor = Predictor(FixedDraws(logits), "stochastic")
    x = torch.zeros(1, 1, 2, 2)
    loss = input_gradient(predictor, x, torch.tensor([0]), draws=3).loss
    mean_prob = torch.softmax(logits, dim=1).mean(0)
    assert loss.item() == pytest.approx(-math.log(mean_prob[0].item()), rel=1e-6)
    # not the mean of the per-draw losses, and not a softmax of averaged logits
    assert loss.item() != pytest.approx(-torch.log_softmax(logits, 1)[:, 0].mean().item(), rel=1e-3)
    assert loss.item() != pytest.approx(-torch.log_softmax(logits.mean(0), 0)[0].item(), rel=1e-3)


def test_stochastic_draws_are_batched_and_chunked():
    net = FixedDraws(torch.zeros(1, 4))
    predictor = Predictor(net, "stochastic", max_batch=10)
    out = predictor.draw_log_probs(torch.zeros(5, 1, 2, 2), draws=7)
    assert out.shape == (7, 5, 4)
    assert net.calls == 4  # 2 draws of 5 inputs per call


def test_attacks_never_switch_the_models_randomness_off(mnist_sample):
    """MC dropout stays random in eval mode, and no attack calls train() or eval() on the model."""
    _, _, x, y = mnist_sample
    x, y = x[:20], y[:20]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), MCDropout(0.5), nn.Linear(64, 10)).eval()
    mode_calls = []
    for module in net.modules():
        module.train = lambda mode=True, _m=module: mode_calls.append(mode) or _m
    predictor = Predictor(net, "stochastic")
    for attack in (FGSM(), PGD(steps=3), AutoAttack(seed=0)):
        attack(predictor, x, y, 0.1, draws=4)
    assert mode_calls == []
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))


class NoisyLinear(nn.Module):
    """A linear classifier on 4x4 images with Gaussian logit noise: a stochastic model for any class count."""

    def __init__(self, classes: int, noise: float):
        super().__init__()
        self.linear = nn.Linear(16, classes)
        with torch.no_grad():  # centred on the images' mean, so every class wins somewhere
            self.linear.weight.normal_(0, 1)
            self.linear.bias.copy_(-0.5 * self.linear.weight.sum(1))
        self.noise = noise

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        return logits + self.noise * torch.randn_like(logits)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["deterministic", "stochastic"])
@pytest.mark.parametrize("classes", [2, 3, 4])
def test_autoattack_runs_on_datasets_with_few_classes(classes, kind):
    """Targets are capped at classes - 1 and the DLR stages need three (untargeted) or four (targeted)
    classes: with fewer they are left out and the settings say so, instead of an IndexError inside
    pyautoattack that would fail the plugin's condition."""
    torch.manual_seed(0)
    net = NoisyLinear(classes, noise=0.0 if kind == "deterministic" else 0.05).eval()
    x = torch.rand(12, 1, 4, 4)
    predictor = Predictor(net, kind, num_classes=classes)
    y = predictor.probs(x, 8).argmax(1)
    eps = 0.03
    attack = AutoAttack(seed=0, queries=100)  # the stages, not the budget
    x_adv = attack(predictor, x, y, eps, draws=4)
    assert_in_threat_model(x_adv, x, eps)
    # some points survive APGD-CE, so the later (DLR, targeted) stages ran on them
    assert 0 < accuracy(predictor, x_adv, y, draws=8) < 1
    stages = attack.settings(predictor)["stages"]
    assert ("apgd-dlr" in stages or "apgd-t" in stages) == (classes >= 3)
    assert ("apgd-t" in stages) == (classes >= 4 and kind == "deterministic")


class FirstPassSpike(nn.Module):
    """A linear model, declared random, whose first pass is one lucky draw: the true class's logit far below the
    rest. Every later pass is the plain linear model."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.passes = 0

    def forward(self, x):
        logits = self.linear(x)
        self.passes += 1
        return logits - 100.0 * (self.passes == 1) * torch.ones_like(logits) * F.one_hot(
            torch.zeros(len(x), dtype=torch.long), 10)


def test_stochastic_pgd_does_not_keep_a_point_for_one_lucky_evaluation(mnist_sample):
    """The point that wins on one noisy K-draw loss is scored again on fresh draws: kept on its winning score, the
    random start (whose one evaluation was a lucky draw) shut out every later point that is better on average."""
    _, _, x, _ = mnist_sample
    torch.manual_seed(0)
    network = FirstPassSpike()
    x, y = x[:8], torch.zeros(8, dtype=torch.long)
    x_adv = PGD(steps=10)(Predictor(network, "stochastic"), x, y, 0.3, 1)
    with torch.no_grad():
        loss = F.cross_entropy(network.linear(x_adv), y, reduction="none")
        start_loss = F.cross_entropy(network.linear(x), y, reduction="none")
    assert (loss > start_loss + 1.0).all()
