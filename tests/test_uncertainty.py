"""The uncertainty scores per predictive kind, and the rows that say whether they see an attack
(benchmark.uncertainty, benchmark.detection, the selective-prediction metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fakes import Tempered, planted_detector_data
from torch import nn

from benchmark.attacks.pgd import PGD
from benchmark.attacks.plan import MAIN, PlannedAttack
from benchmark.detection import attacked_rows, detection_rows, ood_rows
from benchmark.evaluation import Evaluator
from benchmark.metrics import auroc_interval, clean_threshold, risk_coverage, selective_metrics
from benchmark.names import CLEAN, DETECTION, OOD, ROBUST, adaptive_condition, condition_id
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.results import RunResults
from benchmark.runner import _evaluate
from benchmark.scoring import write_metrics
from benchmark.store import RunStore
from benchmark.uncertainty import (
    ENTROPY,
    LOGIT_VARIANCE,
    MUTUAL_INFORMATION,
    SCORES_BY_KIND,
    TOP_CLASS_VARIANCE,
    predict,
)
from benchmark.worst_case import WorstCase


class _Members(nn.Module):
    """An ensemble whose members give the fixed logits ``table`` [M, C] whatever the input."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def forward(self, x):
        return self.table[:, None, :].expand(-1, x.shape[0], -1) + 0 * x.flatten(1).sum(1)[None, :, None]


class _Moments(nn.Module):
    def __init__(self, mean, var):
        super().__init__()
        self.mean, self.var = torch.tensor([mean]), torch.tensor([var])

    def forward(self, x):
        scale = 1 + 0 * x.flatten(1).sum(1, keepdim=True)
        return self.mean * scale, self.var * scale


def _entropy(p):
    p = np.asarray(p, dtype=float)
    return float(-(p * np.log(p)).sum())


def test_each_kind_has_its_scores_and_entropy_is_that_of_the_deployed_predictive():
    x = torch.zeros(3, 1, 2, 2)
    members = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    out = predict(Predictor(_Members(members), "ensemble"), x)
    assert set(out.scores) == set(SCORES_BY_KIND["ensemble"]) == {ENTROPY, MUTUAL_INFORMATION}
    p = torch.softmax(torch.tensor(members), -1)
    mean = p.mean(0)
    assert out.scores[ENTROPY][0].item() == pytest.approx(_entropy(mean), abs=1e-5)
    # BALD: entropy of the mean less the mean entropy of the members
    expected_mi = _entropy(mean) - np.mean([_entropy(q) for q in p])
    assert out.scores[MUTUAL_INFORMATION][0].item() == pytest.approx(expected_mi, abs=1e-5)
    assert expected_mi > 0.1


def test_members_that_agree_have_no_mutual_information():
    out = predict(Predictor(_Members([[1.0, 0.0, -1.0]] * 4), "ensemble"), torch.zeros(2, 1, 2, 2))
    assert out.scores[MUTUAL_INFORMATION].abs().max().item() < 1e-6
    assert out.scores[ENTROPY].min().item() > 0.5


def test_moment_scores_are_the_propagated_variances():
    out = predict(Predictor(_Moments([3.0, 0.0, 1.0], [0.5, 2.0, 4.0]), "moments"), torch.zeros(2, 1, 2, 2))
    assert set(out.scores) == {ENTROPY, LOGIT_VARIANCE, TOP_CLASS_VARIANCE}
    assert out.scores[LOGIT_VARIANCE][0].item() == pytest.approx(6.5)
    assert out.scores[TOP_CLASS_VARIANCE][0].item() == pytest.approx(0.5)  # class 0 is predicted
    assert out.scores[ENTROPY][0].item() == pytest.approx(_entropy(out.probs[0].numpy()), abs=1e-5)


def test_scores_are_differentiable_in_the_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(2, 1, 2, 2, requires_grad=True)
    predict(Predictor(net, "deterministic"), x).scores[ENTROPY].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_threshold_keeps_ninety_five_percent_of_clean_correct_examples():
    scores = np.arange(200, dtype=float)
    correct = np.ones(200, dtype=bool)
    correct[190:] = False  # wrong examples do not set the threshold
    t = clean_threshold(scores, correct)
    kept = (scores[correct] <= t).mean()
    assert 0.95 <= kept < 0.96


def test_auroc_interval_covers_its_value_and_is_wide_on_few_points():
    negative, positive = torch.randn(400), torch.randn(400) + 1.0
    value, low, high = auroc_interval(negative, positive)
    assert low < value < high and 0.7 < value < 0.81
    _, few_low, few_high = auroc_interval(negative[:10], positive[:10])
    assert few_high - few_low > high - low
    assert all(math.isnan(v) for v in auroc_interval(negative, positive[:0]))


def test_risk_coverage_abstains_on_the_most_uncertain_first():
    uncertainty = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    correct = np.array([1, 1, 1, 0, 0])
    coverage, risk = risk_coverage(uncertainty, correct)
    np.testing.assert_allclose(coverage, [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 0, 0.25, 0.4])
    metrics = selective_metrics(uncertainty, correct)
    assert metrics["aurc"] == pytest.approx(np.mean([0, 0, 0, 0.25, 0.4]))
    assert metrics["accuracy_at_80_coverage"] == pytest.approx(0.75)
    assert metrics["accuracy_at_50_coverage"] == 1.0
    # a score that ranks the errors first does worse
    assert selective_metrics(-uncertainty, correct)["aurc"] > metrics["aurc"]


def _stored(n=100, seed=0):
    """Stored arrays of a non-random model: clean (scores low, all correct), one attack at eps 0.1 that fools half
    the examples at points whose score is high, and an adaptive attack that fools them with low scores."""
    rng = np.random.default_rng(seed)
    clean_score = rng.uniform(0, 1, n)
    fooled = np.arange(n) < n // 2
    attack_score = np.where(fooled, rng.uniform(2, 3, n), rng.uniform(0, 1, n))
    probs = np.tile([0.9, 0.05, 0.05], (n, 1)).astype(np.float32)
    return {
        condition_id(CLEAN): {"correct": np.ones((1, n), bool), ENTROPY: clean_score, "probs": probs},
        condition_id("pgd", 0.1): {"correct": ~fooled[None], ENTROPY: attack_score[None], "probs": probs},
        condition_id(adaptive_condition(ENTROPY), 0.1): {
            "correct": ~fooled[None],
            ENTROPY: np.where(fooled, rng.uniform(0, 0.5, n), np.nan)[None]},
    }, fooled


def _case(fooled):
    source = np.where(fooled, condition_id("pgd", 0.1), condition_id(CLEAN)).astype(object)
    return WorstCase(0.1, ~fooled[None], ~fooled[None], source)


def _rows(rows):
    return {(r["condition"], r["param"], r["metric"]): r["value"] for r in rows}


def test_detection_sees_a_flagged_attack_and_loses_it_to_the_adaptive_one():
    stored, fooled = _stored()
    rows = _rows(detection_rows((ENTROPY,), [_case(fooled)], stored.get))
    assert rows[(DETECTION, 0.1, "entropy_auroc")] == 1.0  # every fooling point scores above every clean one
    # every fooled example is flagged: all safe
    assert rows[(DETECTION, 0.1, "entropy_robust_or_detected")] == 1.0
    # the adaptive points fool the model below the threshold: detection is gone, and so is every fooled example
    assert rows[(DETECTION, 0.1, "entropy_adaptive_auroc")] < 0.6
    assert rows[(DETECTION, 0.1, "entropy_adaptive_robust_or_detected")] == pytest.approx(0.5)


def test_without_an_adaptive_condition_there_are_no_adaptive_rows():
    stored, fooled = _stored()
    del stored[condition_id(adaptive_condition(ENTROPY), 0.1)]
    rows = _rows(detection_rows((ENTROPY,), [_case(fooled)], stored.get))
    assert (DETECTION, 0.1, "entropy_auroc") in rows
    assert not any("adaptive" in metric for _, _, metric in rows)


def test_calibration_and_selective_prediction_of_the_attacked_points():
    stored, fooled = _stored()
    labels = np.where(fooled, 1, 0)  # every point predicts class 0: the fooled ones are wrong
    rows = _rows(attacked_rows([_case(fooled)], stored.get, labels))
    # confident (0.9) on every point, right on half of them: overconfident by 0.4
    assert rows[(ROBUST, 0.1, "ece")] == pytest.approx(0.4, abs=1e-4)
    # entropy ranks the fooled points last: at 50% coverage the model keeps only correct ones
    assert rows[(ROBUST, 0.1, "accuracy_at_50_coverage")] == 1.0
    assert rows[(ROBUST, 0.1, "accuracy_at_90_coverage")] < 0.6


def test_ood_auroc_per_score():
    clean = {ENTROPY: np.linspace(0, 1, 50)}
    rows = _rows(ood_rows((ENTROPY,), clean, {ENTROPY: np.linspace(2, 3, 50)}))
    assert rows[(OOD, None, "entropy_auroc")] == 1.0
    rows = _rows(ood_rows((ENTROPY,), clean, {ENTROPY: np.linspace(0, 1, 50)}))
    assert rows[(OOD, None, "entropy_auroc")] == pytest.approx(0.5, abs=0.05)


def test_a_run_measures_a_planted_detector_and_the_adaptive_attack_takes_it_away(tmp_path):
    """The issue's acceptance test, through the evaluator and the scoring: a model whose entropy rises with the
    input's high-frequency energy flags what PGD finds (AUROC near 1, robust-or-detected far above robust), and the
    adaptive attack brings its AUROC towards chance and "robust or detected" down to the robust accuracy. Every
    clean, noisy and attacked point stores its score."""
    x, w = planted_detector_data(128, 4)
    network = Tempered(w)
    y = network(x).argmax(1)  # the model's own labels: every clean point is correct
    profile = get_profile("quick", attacks=(PlannedAttack(MAIN, PGD(steps=20), "the main attack"),),
                          noise_sigmas=(0.0, 0.05), eps_fractions=(1.0,), batch_size=128)
    evaluator = Evaluator(Predictor(network, "deterministic"), x, y, profile, 0.15, torch.device("cpu"), 0)
    store = RunStore(tmp_path / "run")
    _evaluate(evaluator, store, "planted")
    write_metrics(evaluator, store)
    for condition in (condition_id(CLEAN), condition_id("noise", 0.05)):
        assert store.load_arrays(condition)[ENTROPY].shape == (128,)
    assert store.load_arrays(condition_id(MAIN, 0.15))[ENTROPY].shape == (1, 128)
    results = RunResults.read(store.root)
    detection = results.at(DETECTION, 0.15)
    robust = results.value(ROBUST, "accuracy", 0.15)
    assert robust < 0.5  # PGD breaks most of them
    assert detection["entropy_auroc"] > 0.9
    assert detection["entropy_robust_or_detected"] > robust + 0.3
    assert detection["entropy_adaptive_auroc"] < 0.65
    assert detection["entropy_adaptive_robust_or_detected"] < robust + 0.1
    assert detection["entropy_adaptive_robust_or_detected"] >= robust  # robust accuracy is its floor
