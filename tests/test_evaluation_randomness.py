"""The randomness the evaluator draws: the noise sweep (clipped, seeded, independent of the model's draws) and
the re-evaluation of adversarial points (independent of whatever randomness the attack used)."""

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.attacks import Attack
from benchmark.attacks.plan import PlannedAttack
from benchmark.evaluation import Condition, Evaluator
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile


class Recorder(nn.Module):
    """A 'stochastic' two-class net whose every call draws one Gaussian per row and records inputs and draws."""

    def __init__(self):
        super().__init__()
        self.inputs, self.draws = [], []

    def forward(self, x):
        draw = torch.randn(x.shape[0])
        self.inputs.append(x.detach().clone())
        self.draws.append(draw)
        return torch.stack([draw, -draw], dim=1) + 0 * x.flatten(1)[:, :1]


def _evaluator(network, kind="stochastic", plan=(), seed=0, n=40, x=None):
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)) if x is None else x
    y = torch.zeros(n, dtype=torch.long)
    profile = get_profile("quick", attacks=plan, samples=1, reevals=2, batch_size=n)
    return Evaluator(Predictor(network, kind, num_classes=2), x, y, profile, 0.3, torch.device("cpu"), seed)


def _noisy_inputs(sigma, seed=0, x=None):
    net = Recorder()
    evaluator = _evaluator(net, seed=seed, x=x)
    evaluator.run(Condition("noise", sigma))
    (inputs,) = net.inputs
    return evaluator.x, inputs, net.draws[0]


def test_noise_is_clipped_to_the_image_range_and_has_the_asked_spread():
    """Images at 0.5 with sigma 0.3: a share 2(1 - Phi(0.5 / 0.3)) of the pixels is clipped to exactly 0 or 1,
    and the rest follow the normal truncated at +-0.5."""
    clean, noisy, _ = _noisy_inputs(0.3, x=torch.full((40, 1, 28, 28), 0.5))
    a = 0.5 / 0.3
    phi, inside_mass = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), math.erf(a / math.sqrt(2))
    clipped = (noisy == 0) | (noisy == 1)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert clipped.float().mean().item() == pytest.approx(1 - inside_mass, abs=0.01)
    truncated_std = 0.3 * math.sqrt(1 - 2 * a * phi / inside_mass)
    assert (noisy - clean)[~clipped].std().item() == pytest.approx(truncated_std, abs=0.005)


def test_noise_is_seeded_by_the_run_seed_and_differs_between_sigmas_and_seeds():
    first, again = _noisy_inputs(0.1)[1], _noisy_inputs(0.1)[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, _noisy_inputs(0.1, seed=1)[1])
    clean, other, _ = _noisy_inputs(0.2)
    # a different sigma is not the same noise rescaled: its condition has a seed of its own
    inside = (first > 0) & (first < 1) & (other > 0) & (other < 1)
    assert not torch.allclose((first - clean)[inside] * 2, (other - clean)[inside], atol=1e-4)


def test_input_noise_is_independent_of_the_models_own_draws():
    """Before, the input noise and the model's first random draws came from one seed: identical streams."""
    clean, noisy, draws = _noisy_inputs(0.05, x=torch.full((40, 1, 28, 28), 0.5))  # 10 sigma from the clip
    noise = (noisy - clean).flatten() / 0.05
    for chunk in (noise[:40], noise.view(40, -1)[:, 0]):  # the model's 40 draws against the first noise values
        assert abs(np.corrcoef(chunk.numpy(), draws.numpy())[0, 1]) < 0.5


@dataclass(frozen=True)
class Reseeds(Attack):
    """Returns the clean input after drawing from the global generator ``draws`` times and then reseeding it."""

    reseed: int = 0
    burn: int = 0

    def perturb(self, predictor, x, y, eps, draws):
        torch.randn(self.burn)
        torch.manual_seed(self.reseed)
        return x.clone()


def _reevaluation(attack: Attack) -> np.ndarray:
    evaluator = _evaluator(Recorder(), plan=(PlannedAttack("reseeds", attack, "test"),))
    rows, arrays = evaluator.run(Condition("reseeds", 0.3))
    return arrays["correct"]


def test_re_evaluation_does_not_depend_on_the_randomness_the_attack_used():
    """The re-evaluation draws its own randomness: an attack that reseeds the global generator (as pyautoattack
    does) or uses more or less of it cannot choose the draws its points are judged with."""
    reference = _reevaluation(Reseeds())
    for attack in (Reseeds(reseed=7), Reseeds(burn=1000), Reseeds(reseed=7, burn=3)):
        assert np.array_equal(_reevaluation(attack), reference), attack
    assert not np.array_equal(reference[0], reference[1])  # the R re-evaluations differ from each other

