"""Calibration, uncertainty and robust-accuracy metrics shared by the evaluator, leaderboard and report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, multiclass_calibration_error

from benchmark.names import eps_up_to, same_eps

N_BINS = 15

# torchmetrics bins with bucketize(right=True), which counts a confidence of exactly 1.0 in a hidden
# (n_bins + 1)-th bin (Lightning-AI/torchmetrics#3510); saturated float32 softmaxes hit it all the time.
# Moving 1.0 down one float32 ulp puts it in the last bin, as in Guo et al. (2017), and moves the ECE by < 1e-7.
_BELOW_ONE = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


def predictive_entropy(probs: Tensor) -> Tensor:
    """Entropy (nats) of each row; xlogy makes 0 * log 0 = 0 so one-hot rows give 0, not NaN."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def _top_label(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 top-label confidence (capped below 1.0) and correctness, exactly as the ECE sees them."""
    confidence, prediction = probs.float().clamp(max=_BELOW_ONE).max(dim=1)
    return confidence, prediction.eq(y)


def classification_metrics(probs: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy, ECE, NLL, Brier and mean entropy of predictive probabilities [N, C] against labels [N]."""
    n_classes = probs.shape[1]
    p_true = probs.gather(1, y.long().unsqueeze(1)).squeeze(1)
    one_hot = torch.nn.functional.one_hot(y.long(), n_classes).to(probs.dtype)
    ece = multiclass_calibration_error(
        probs.float().clamp(max=_BELOW_ONE), y, num_classes=n_classes, n_bins=N_BINS, norm="l1"
    )
    return {
        "accuracy": probs.argmax(dim=1).eq(y).double().mean().item(),
        "ece": ece.item(),
        "nll": -p_true.clamp(min=1e-12).log().mean().item(),
        "brier": (probs - one_hot).pow(2).sum(dim=1).mean().item(),
        "entropy": predictive_entropy(probs).mean().item(),
    }


def auroc(scores_negative: Tensor, scores_positive: Tensor) -> float:
    """AUROC of a score for separating positives (e.g. noisy inputs) from negatives; 0.5 when undefined.

    The scores go in as dense ranks in [0, 1]: torchmetrics squashes anything outside [0, 1] with a
    sigmoid, which would turn large scores (variances, logits) into ties.
    """
    if scores_negative.numel() == 0 or scores_positive.numel() == 0:
        return 0.5
    scores = torch.cat([scores_negative.flatten(), scores_positive.flatten()]).double()
    unique, ranks = torch.unique(scores, sorted=True, return_inverse=True)
    preds = ranks.double() / max(unique.numel() - 1, 1)
    target = torch.cat([torch.zeros(scores_negative.numel()), torch.ones(scores_positive.numel())]).long()
    return binary_auroc(preds, target).item()


def reliability_table(probs: Tensor, y: Tensor, n_bins: int = N_BINS) -> pd.DataFrame:
    """Per-bin mean confidence, accuracy and count, binned exactly as the ECE so the diagram and the ECE agree."""
    confidence, correct = _top_label(probs, y)
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype)
    index = (torch.bucketize(confidence, boundaries, right=True) - 1).clamp(0, n_bins - 1)
    frame = pd.DataFrame(
        {"bin": index.numpy(), "confidence": confidence.double().numpy(), "accuracy": correct.double().numpy()}
    )
    per_bin = frame.groupby("bin").agg(
        confidence=("confidence", "mean"), accuracy=("accuracy", "mean"), count=("bin", "size")
    )
    per_bin = per_bin.reindex(range(n_bins))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": per_bin["confidence"].to_numpy(),
            "accuracy": per_bin["accuracy"].to_numpy(),
            "count": per_bin["count"].fillna(0).astype(int).to_numpy(),
        }
    )


#: the standard normal quantile of a two-sided 95% interval
Z95 = 1.959963984540054


def mean_interval(per_run_accuracy: Sequence[float], n_examples: int) -> tuple[float, float, float]:
    """Mean and 95% interval of a robust accuracy re-evaluated R times with fresh randomness.

    The binomial sampling error of n examples is the Wilson score interval (Wilson 1927), which, unlike
    the normal approximation, keeps a width at an accuracy of 0 or 1: 0 correct out of 500 still allows
    up to 0.0076. The run-to-run spread of a stochastic model (zero for a single run) widens it, so one
    lucky re-evaluation cannot look precise.
    """
    runs = np.asarray(per_run_accuracy, dtype=float)
    if runs.size == 0 or n_examples < 1:
        raise ValueError("mean_interval needs at least one run and one example")
    mean = float(runs.mean())
    spread = float(runs.var(ddof=1)) if runs.size > 1 else 0.0
    z2, n = Z95 ** 2, n_examples
    centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
    wilson = Z95 / (1 + z2 / n) * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n))
    half = math.sqrt(wilson ** 2 + z2 * spread / runs.size)
    return mean, max(0.0, min(mean, centre - half)), min(1.0, max(mean, centre + half))


def selection_score(probs: Tensor, y: Tensor) -> Tensor:
    """How strong an adversarial point is, from one evaluation of the deployed predictive ``probs`` [N, C]: the
    margin p_y - max_{j != y} p_j (Carlini & Wagner 2017, on probabilities), less 1 where the argmax is not y, so
    that every misclassified point ranks below every correctly classified one (an exact tie too) and the score is
    >= 0 exactly where the decision is right. The lower, the stronger."""
    label = y.long()[:, None]
    others = probs.scatter(1, label, -torch.inf).max(dim=1).values
    return probs.gather(1, label).squeeze(1) - others - (probs.argmax(dim=1) != y).to(probs.dtype)


def strongest_point(candidates: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The robust outcome [R, N] with one adversarial point per example, the field's worst case (Madry et al. 2018;
    Croce & Hein 2020 keep one point per example across AutoAttack's stages).

    ``candidates`` are ``(judged, selection)`` per condition: the correctness [R, N] (or [1, N]) of its points in the
    R judged evaluations, and their :func:`selection_score` [E, N] in E evaluations on independent draws. Per
    example the candidate with the lowest mean selection score is chosen, the earlier on a tie, and its judged
    outcome is the result: the choice never sees the judged draws, so the chosen point is judged on fresh
    randomness, and a random model's own noise is not scored as a vulnerability. NaN (no point: an example the
    condition did not attack) is never chosen, and an example no candidate has a point for counts as broken. For a
    non-random model the choice falls on a misclassified candidate wherever there is one: the result is exactly
    the conjunction over the candidates.
    """
    lowest = np.full(candidates[0][0].shape[1], np.inf)
    chosen = np.zeros((1, lowest.size), dtype=bool)
    for judged, selection in candidates:
        score = np.asarray(selection, dtype=float).mean(axis=0)
        better = score < lowest  # NaN, no point, never wins
        chosen, lowest = np.where(better, judged, chosen), np.where(better, score, lowest)
    return chosen


def robust_auc(clean_acc: float, eps_points: Sequence[float], robust_accs: Sequence[float], eps: float) -> float:
    """Normalised area under the robust-accuracy-against-eps curve on [0, eps]: the trapezoid rule through
    (0, clean accuracy) and each measured point up to ``eps``, divided by ``eps``. It lies in [0, 1], equals the
    clean accuracy for a model no attack moves and 0 for one that is wrong everywhere; unlike the accuracy at
    ``eps`` alone it separates models that all fall to 0 at the largest eps. NaN if ``eps`` itself was not
    measured (a failed attack leaves the curve unknown)."""
    points = sorted((float(e), float(a)) for e, a in zip(eps_points, robust_accs, strict=True)
                    if 0 < e and eps_up_to(e, eps))
    if eps <= 0 or not points or not same_eps(points[-1][0], eps) or math.isnan(clean_acc):
        return float("nan")
    xs, ys = np.array([0.0] + [e for e, _ in points]), np.array([clean_acc] + [a for _, a in points])
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / eps)


def auroc_interval(scores_negative: Tensor, scores_positive: Tensor, resamples: int = 1000,
                   seed: int = 0) -> tuple[float, float, float]:
    """:func:`auroc` and its 95% percentile bootstrap interval (Efron & Tibshirani 1993), each group resampled
    with replacement on its own; NaN where a group is empty (no adversarial point fooled the model, say)."""
    if scores_negative.numel() == 0 or scores_positive.numel() == 0:
        return float("nan"), float("nan"), float("nan")
    generator = torch.Generator().manual_seed(seed)
    negative, positive = scores_negative.flatten().double(), scores_positive.flatten().double()
    draws = [auroc(negative[torch.randint(negative.numel(), (negative.numel(),), generator=generator)],
                   positive[torch.randint(positive.numel(), (positive.numel(),), generator=generator)])
             for _ in range(resamples)]
    low, high = np.quantile(draws, [0.025, 0.975])
    return auroc(negative, positive), float(low), float(high)


#: the share of inputs a selective classifier keeps, at which the report gives its accuracy
COVERAGES = (0.9, 0.8, 0.5)


def coverage_metric(coverage: float) -> str:
    """The metric name of the accuracy at one coverage (``accuracy_at_80_coverage``)."""
    return f"accuracy_at_{round(100 * coverage)}_coverage"


def risk_coverage(uncertainty: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve of a classifier that abstains on its most uncertain inputs (Geifman & El-Yaniv
    2017): for k = 1..n, the coverage k/n and the error rate on the k least uncertain inputs. ``correct`` may be a
    fraction per input (the share of re-evaluations a random model got right). Ties keep the inputs' order.
    Hand-written: torchmetrics (1.9) has no risk-coverage metric."""
    order = np.argsort(np.asarray(uncertainty, dtype=float), kind="stable")
    errors = np.cumsum(1.0 - np.asarray(correct, dtype=float)[order])
    kept = np.arange(1, len(order) + 1)
    return kept / len(order), errors / kept


def selective_metrics(uncertainty: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """The area under the risk-coverage curve (AURC, the mean risk over every coverage; lower is better) and the
    accuracy at each of :data:`COVERAGES`."""
    coverage, risk = risk_coverage(uncertainty, correct)
    out = {"aurc": float(risk.mean())}
    for c in COVERAGES:
        k = max(1, int(math.ceil(c * len(risk))))
        out[coverage_metric(c)] = float(1.0 - risk[k - 1])
    return out


def clean_threshold(scores: np.ndarray, correct: np.ndarray, false_alarms: float = 0.05) -> float:
    """The detector's threshold: the score that keeps ``1 - false_alarms`` of the clean correctly classified
    examples at or below it (95%: 5% false alarms); an input scoring above it is flagged."""
    kept = np.asarray(scores, dtype=float)[np.asarray(correct, dtype=bool)]
    return float(np.quantile(kept, 1.0 - false_alarms, method="higher")) if kept.size else float("nan")


def ece_interval(probs: Tensor, y: Tensor, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the ECE (:func:`classification_metrics`' binning), the examples
    resampled with replacement: ECE = sum over bins of |sum_i (correct_i - confidence_i)| / n, so a resample is a
    vector of counts per example and every resample is one matrix product (torchmetrics' BootStrapper would
    recompute the binned metric once per resample)."""
    confidence, correct = _top_label(probs, y)
    boundaries = torch.linspace(0, 1, N_BINS + 1, dtype=confidence.dtype)
    index = (torch.bucketize(confidence, boundaries, right=True) - 1).clamp(0, N_BINS - 1).numpy()
    gap = np.zeros((len(index), N_BINS))
    gap[np.arange(len(index)), index] = correct.double().numpy() - confidence.double().numpy()
    counts = np.random.default_rng(seed).multinomial(len(index), np.full(len(index), 1 / len(index)), size=resamples)
    draws = np.abs(counts @ gap).sum(axis=1) / len(index)
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)
