"""The adaptive attack on an uncertainty detector (benchmark.attacks.detector): on planted detectors, whose score
rises with the input's high-frequency energy, a non-adaptive PGD is caught and DetectorAware is not; EOT on a
stochastic model; every kind; refusals; its own seeded generator."""

import math

import pytest
import torch
from fakes import Tempered, assert_in_threat_model, energy, planted_detector_data
from torch import nn

from benchmark.attacks.detector import DetectorAware
from benchmark.attacks.pgd import PGD
from benchmark.metrics import auroc
from benchmark.predictive import Predictor
from benchmark.uncertainty import predict

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CLASSES, N, EPS = 4, 128, 0.15


@pytest.fixture(scope="module")
def data():
    return planted_detector_data(N, CLASSES)


class Moments(nn.Module):
    """Moments: linear logit means, every logit's variance k * energy."""

    def __init__(self, w, k=1.0):
        super().__init__()
        self.w, self.k = w, k

    def forward(self, x):
        mean = (x.flatten(1) - 0.5) @ self.w.T
        return mean, (self.k * energy(x))[:, None].expand_as(mean).contiguous()


class Noisy(Tempered):
    """Stochastic: the tempered logits plus fresh Gaussian noise on every call."""

    def forward(self, x):
        z = super().forward(x)
        return z + torch.randn_like(z)


class Members(nn.Module):
    """Ensemble: members share the linear logits and disagree along their own direction in proportion to the
    energy, so the mutual information rises with it."""

    def __init__(self, w, members=4, k=20.0):
        super().__init__()
        self.w, self.k = w, k
        self.directions = torch.randn(members, 1, w.shape[0], generator=torch.Generator().manual_seed(1))

    def forward(self, x):
        z = (x.flatten(1) - 0.5) @ self.w.T
        return z + self.k * energy(x)[None, :, None] * self.directions


def labelled(predictor, x):
    """The model's own clean predictions as labels: every clean example is "clean correct"."""
    with torch.no_grad():
        return predictor.log_predictive(x, 64).argmax(1)


def threshold(clean_score):
    """t: the 95th percentile of the clean correct examples' scores, a 5% false-alarm rate."""
    return torch.quantile(clean_score, 0.95).item()


def outcome(predictor, x_adv, y, score, draws=1):
    """Misclassified by the deployed rule, and the score, on one (fresh) set of draws."""
    with torch.no_grad():
        prediction = predict(predictor, x_adv, draws)
    return prediction.log_predictive.argmax(1) != y, prediction.scores[score]


@pytest.mark.parametrize("kind, network, score", [("deterministic", Tempered, "entropy"),
                                                  ("moments", Moments, "logit_variance")])
def test_pgd_is_caught_and_the_adaptive_attack_is_not(data, kind, network, score):
    x, w = data
    predictor = Predictor(network(w), kind)
    y = labelled(predictor, x)
    clean_wrong, clean_score = outcome(predictor, x, y, score)
    assert not clean_wrong.any()
    t = threshold(clean_score)

    results = {}
    for name, attack in (("pgd", PGD(steps=20)), ("adaptive", DetectorAware(score=score, steps=50).against(t))):
        torch.manual_seed(0)
        x_adv = attack(predictor, x, y, EPS, 1)
        assert_in_threat_model(x_adv, x, EPS)
        wrong, s = outcome(predictor, x_adv, y, score)
        results[name] = dict(robust=1 - wrong.float().mean().item(), auroc=auroc(clean_score, s[wrong]),
                             robust_or_detected=(~wrong | (s > t)).float().mean().item(),
                             flagged=(s[wrong] > t).float().mean().item())
    print(kind, score, results)
    pgd, adaptive = results["pgd"], results["adaptive"]
    # the non-adaptive attack breaks most points, but the detector catches most of what it breaks
    assert pgd["robust"] < 0.3 and pgd["flagged"] > 0.8 and pgd["auroc"] > 0.9
    # the adaptive attack at the same eps: the detector no longer tells its points from clean ones
    assert adaptive["auroc"] < 0.65 and adaptive["flagged"] < 0.1
    assert adaptive["robust_or_detected"] <= pgd["robust"] + 0.05


@pytest.mark.parametrize("score", ["entropy", "mutual_information"])
def test_eot_on_a_stochastic_model(data, score):
    x, w = data
    predictor = Predictor(Noisy(w), "stochastic")
    draws = 8
    y = labelled(predictor, x)
    torch.manual_seed(0)
    _, clean_score = outcome(predictor, x, y, score, draws)
    t = threshold(clean_score)
    x_adv = DetectorAware(score=score, steps=30).against(t)(predictor, x, y, EPS, draws)
    assert_in_threat_model(x_adv, x, EPS)
    wrong, s = outcome(predictor, x_adv, y, score, draws)  # fresh draws, not the ones the attack chose on
    success = (wrong & (s <= t)).float().mean().item()
    print(score, "success on fresh draws", success)
    assert success > 0.8


def test_ensemble_mutual_information(data):
    x, w = data
    predictor = Predictor(Members(w), "ensemble")
    y = labelled(predictor, x)
    _, clean_score = outcome(predictor, x, y, "mutual_information")
    t = threshold(clean_score)
    pgd_wrong, pgd_score = outcome(predictor, PGD(steps=20)(predictor, x, y, EPS, 1), y, "mutual_information")
    x_adv = DetectorAware(score="mutual_information", steps=30).against(t)(predictor, x, y, EPS, 1)
    assert_in_threat_model(x_adv, x, EPS)
    wrong, s = outcome(predictor, x_adv, y, "mutual_information")
    print("ensemble: pgd flagged", (pgd_score[pgd_wrong] > t).float().mean().item(),
          "adaptive success", (wrong & (s <= t)).float().mean().item())
    assert (pgd_score[pgd_wrong] > t).float().mean() > 0.5  # the planted detector catches PGD
    assert (wrong & (s <= t)).float().mean() > 0.8


def test_restarts_use_the_attacks_own_generator(data):
    """Random restarts come from ``seed`` (bound per run by for_run): the same seed gives the same points, and the
    global generator, which a stochastic model's draws use, is untouched."""
    x, w = data
    predictor = Predictor(Tempered(w), "deterministic")
    y = labelled(predictor, x)
    attack = DetectorAware(steps=3, restarts=3).against(0.5)
    bound = attack.for_run(7, None)
    assert bound.seed == 7 and bound.threshold == 0.5 and attack.against(0.2).threshold == 0.2
    state = torch.random.get_rng_state()
    first = bound(predictor, x[:16], y[:16], EPS, 1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, bound(predictor, x[:16], y[:16], EPS, 1))
    assert bound.settings(predictor)["threshold"] == 0.5


def test_refusals(data):
    x, w = data
    deterministic, moments = Predictor(Tempered(w), "deterministic"), Predictor(Moments(w), "moments")
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="no 'mutual_information' score"):
        DetectorAware(score="mutual_information").against(0.5)(deterministic, x[:4], y, EPS, 1)
    with pytest.raises(ValueError, match="no 'mutual_information' score"):
        DetectorAware(score="mutual_information").against(0.5)(moments, x[:4], y, EPS, 1)
    with pytest.raises(ValueError, match="no 'variance' score"):
        DetectorAware(score="variance").against(0.5)(moments, x[:4], y, EPS, 1)
    for threshold in (math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="threshold"):
            DetectorAware(threshold=threshold)(deterministic, x[:4], y, EPS, 1)
