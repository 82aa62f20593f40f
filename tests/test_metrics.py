"""Metrics checked against hand-worked examples and against torchmetrics itself."""

import math

import pytest
import torch
from torchmetrics.classification import BinaryAUROC, MulticlassCalibrationError

from benchmark.metrics import (
    N_BINS,
    auroc,
    classification_metrics,
    mean_interval,
    predictive_entropy,
    reliability_table,
)

# Four examples, three classes: two at confidence 0.9 (one right, one wrong) share a bin,
# 0.62 (right) and 0.7 (wrong) sit alone in theirs.
HAND_PROBS = torch.tensor(
    [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.62, 0.28, 0.10], [0.2, 0.7, 0.1]], dtype=torch.float64
)
HAND_Y = torch.tensor([0, 1, 0, 0])


def _random_probs(n: int = 500, c: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, c, generator=gen)
    return logits.softmax(dim=1), torch.randint(0, c, (n,), generator=gen)


def _ece_from_table(probs: torch.Tensor, y: torch.Tensor) -> float:
    table = reliability_table(probs, y).dropna()
    return float((table["count"] / len(y) * (table["accuracy"] - table["confidence"]).abs()).sum())


def test_hand_worked_example() -> None:
    metrics = classification_metrics(HAND_PROBS, HAND_Y)
    assert metrics["accuracy"] == pytest.approx(0.5)
    # 2/4 * |0.5 - 0.9| + 1/4 * |1 - 0.62| + 1/4 * |0 - 0.7|
    assert metrics["ece"] == pytest.approx(0.2 + 0.095 + 0.175, abs=1e-6)
    assert metrics["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.05) + math.log(0.62) + math.log(0.2)) / 4)
    # per example sum_c (p_c - onehot_c)^2: 0.015, 1.715, 0.2328, 1.14
    assert metrics["brier"] == pytest.approx((0.015 + 1.715 + 0.2328 + 1.14) / 4)


def test_ece_agrees_with_torchmetrics() -> None:
    probs, y = _random_probs()
    expected = MulticlassCalibrationError(num_classes=10, n_bins=N_BINS, norm="l1")(probs, y).item()
    assert classification_metrics(probs, y)["ece"] == pytest.approx(expected, abs=1e-6)


def test_confidence_one_falls_in_last_bin() -> None:
    # Textbook binning: both in [14/15, 1], accuracy 0.5, confidence 0.975 -> 0.475.
    # (torchmetrics alone puts 1.0 in a bin of its own and gives 0.525.)
    probs, y = torch.tensor([[1.0, 0.0], [0.95, 0.05]]), torch.tensor([1, 0])
    assert classification_metrics(probs, y)["ece"] == pytest.approx(0.475, abs=1e-6)
    assert reliability_table(probs, y)["count"].iloc[-1] == 2


def test_nll_is_finite_when_true_class_has_zero_probability() -> None:
    metrics = classification_metrics(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert metrics["nll"] == pytest.approx(-math.log(1e-12))
    assert metrics["brier"] == pytest.approx(2.0)


def test_entropy_extremes() -> None:
    assert predictive_entropy(torch.full((3, 10), 0.1)) == pytest.approx(torch.full((3,), math.log(10)))
    one_hot = torch.eye(4)
    assert torch.equal(predictive_entropy(one_hot), torch.zeros(4))
    assert classification_metrics(one_hot, torch.arange(4))["entropy"] == 0.0


def test_auroc_hand_worked() -> None:
    # positive beats negative in 3 of 4 pairs
    assert auroc(torch.tensor([0.1, 0.4]), torch.tensor([0.35, 0.8])) == pytest.approx(0.75)
    # a tie counts one half: (1 + 0.5 + 1 + 1) / 4
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 3.0])) == pytest.approx(0.875)


def test_auroc_agrees_with_torchmetrics() -> None:
    gen = torch.Generator().manual_seed(1)
    neg, pos = torch.rand(300, generator=gen), torch.rand(200, generator=gen) + 0.3
    target = torch.cat([torch.zeros(300), torch.ones(200)]).long()
    expected = BinaryAUROC()(torch.cat([neg, pos]).clamp(max=1.0), target).item()
    assert auroc(neg, pos.clamp(max=1.0)) == pytest.approx(expected, abs=1e-6)


def test_auroc_unbounded_scores_and_undefined_cases() -> None:
    # large scores must not be squashed into ties by a sigmoid
    assert auroc(torch.tensor([1000.0, 1001.0]), torch.tensor([1002.0, 1003.0])) == 1.0
    assert auroc(torch.tensor([5.0, 5.0]), torch.tensor([5.0])) == 0.5
    assert auroc(torch.tensor([]), torch.tensor([1.0])) == 0.5


def test_reliability_table_matches_ece() -> None:
    probs, y = _random_probs()
    probs[:50] = torch.nn.functional.one_hot(y[:50], 10).float()  # saturated confidences
    table = reliability_table(probs, y)
    assert list(table.columns) == ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]
    assert len(table) == N_BINS
    assert table["count"].sum() == len(y)
    assert table["bin_upper"].iloc[-1] == 1.0
    assert table.loc[table["count"] == 0, "confidence"].isna().all()
    assert _ece_from_table(probs, y) == pytest.approx(classification_metrics(probs, y)["ece"], abs=1e-6)
    assert _ece_from_table(HAND_PROBS, HAND_Y) == pytest.approx(0.47, abs=1e-6)


def test_mean_interval_single_run_is_the_wilson_interval() -> None:
    mean, low, high = mean_interval([0.9], 100)
    assert mean == 0.9
    assert (low, high) == pytest.approx((0.8256, 0.9448), abs=1e-4)  # Wilson 95% for 90 of 100, by hand


def test_mean_interval_at_zero_or_one_keeps_a_width() -> None:
    """0 of 500 robust does not prove a robust accuracy of exactly 0."""
    assert mean_interval([0.0], 500) == pytest.approx((0.0, 0.0, 1.96**2 / (500 + 1.96**2)), abs=1e-5)
    mean, low, high = mean_interval([1.0, 1.0, 1.0], 50)
    assert mean == high == 1.0 and low == pytest.approx(1 - 1.96**2 / (50 + 1.96**2), abs=1e-4)


def test_mean_interval_widens_with_spread_and_clips() -> None:
    _, low_tight, high_tight = mean_interval([0.5, 0.5, 0.5], 1000)
    _, low_wide, high_wide = mean_interval([0.4, 0.5, 0.6], 1000)
    assert high_wide - low_wide > high_tight - low_tight
    assert mean_interval([0.97, 1.0, 0.99], 20)[2] == 1.0
    with pytest.raises(ValueError):
        mean_interval([], 10)


def test_robust_auc_is_the_normalised_trapezoid_through_the_clean_accuracy():
    from benchmark.metrics import robust_auc

    # (0, 1.0) -> (0.1, 0.5) -> (0.2, 0.0): area 0.075 + 0.025 = 0.1 over eps 0.2
    assert robust_auc(1.0, [0.2, 0.1, 0.4], [0.0, 0.5, 0.0], 0.2) == pytest.approx(0.5)  # 0.4 lies beyond eps
    assert robust_auc(0.9, [0.1, 0.2, 0.3], [0.9, 0.9, 0.9], 0.3) == pytest.approx(0.9)  # nothing moves it
    assert math.isnan(robust_auc(0.9, [0.1, 0.2], [0.5, 0.1], 0.3))  # the eps itself is unknown
