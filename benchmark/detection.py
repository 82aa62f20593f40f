"""Does the uncertainty see the attack? The rows a run's uncertainty scores (``benchmark.uncertainty``) give, from
points the protocol already has: its worst-case adversarial points at each eps, the adaptive attack's points, the
noisy inputs and another dataset's images.

- **Detection** at each eps, per score: the AUROC for telling the adversarial points that fooled the model (of
  examples it classifies correctly when clean) from the clean correctly classified inputs, and "robust or detected"
  accuracy, where an example is safe if its point is classified correctly or flagged (its score above the clean
  threshold of 5% false alarms, :func:`benchmark.metrics.clean_threshold`). The same under the adaptive attack,
  which also holds the score under the threshold (``benchmark.attacks.detector``): the gap says how much detection
  survives an adversary who knows about it (Carlini & Wagner 2017; Feng et al. 2024).
- **Calibration and selective prediction under attack**: ECE, NLL and Brier of the worst-case points, and the
  risk-coverage summary (AURC, accuracy at 90, 80 and 50% coverage) on clean, noisy and attacked inputs, the
  model abstaining on its most uncertain inputs by predictive entropy, the one score every kind has.
- **Out of distribution**: the AUROC of each score for telling another dataset's test images from the clean ones.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.metrics import (
    auroc_interval,
    classification_metrics,
    clean_threshold,
    ece_interval,
    mean_interval,
    selective_metrics,
)
from benchmark.names import (
    ADAPTIVE,
    CLEAN,
    DETECTION,
    OOD,
    ROBUST,
    adaptive_condition,
    condition_id,
    metric_row,
    score_metric,
)
from benchmark.uncertainty import ENTROPY
from benchmark.worst_case import Arrays, WorstCase


def detection_rows(scores: tuple[str, ...], cases: list[WorstCase], arrays: Arrays) -> list[dict]:
    """The ``detection`` rows at each eps of ``cases`` for each of ``scores``; ``arrays(id)`` a condition's stored
    arrays (None for a failed or absent one)."""
    clean = arrays(condition_id(CLEAN))
    clean_correct = clean["correct"][0]
    rows = []
    for case in cases:
        for score in scores:
            threshold = clean_threshold(clean[score], clean_correct)
            point = case.point_values(arrays, score)
            flagged = point > threshold
            fooled = fooled_examples(case.correct, clean_correct)
            rows += _detection(case.eps, score, clean[score][clean_correct], point[fooled],
                               case.correct | flagged)
            rows.append(metric_row(DETECTION, case.eps, score_metric(score, "threshold"), threshold))
            adaptive = arrays(condition_id(adaptive_condition(score), case.eps))
            if adaptive is None:
                continue
            attacked, adaptive_score = adaptive_points(adaptive, score)
            adaptive_fooled = attacked & fooled_examples(adaptive["correct"], clean_correct)
            # the attacker's point: the adaptive one where it fooled the model, else the non-adaptive one
            either = np.where(adaptive_fooled, adaptive_score, point)
            adaptive_safe = np.where(attacked, adaptive["correct"] | (adaptive_score > threshold), True)
            rows += _detection(case.eps, f"{score}_{ADAPTIVE}", clean[score][clean_correct],
                               either[fooled | adaptive_fooled], (case.correct | flagged) & adaptive_safe)
    return rows


def fooled_examples(correct: np.ndarray, clean_correct: np.ndarray) -> np.ndarray:
    """The examples an attack fooled: classified correctly on the clean input (a clean error is no adversarial
    point), wrong at their point in most of its R re-evaluations (``correct`` [R, N])."""
    return clean_correct & (correct.mean(axis=0) < 0.5)


def adaptive_points(adaptive: dict[str, np.ndarray], score: str) -> tuple[np.ndarray, np.ndarray]:
    """Which examples the adaptive attack on ``score`` attacked (the others are NaN in every evaluation), and its
    points' score, the mean over their R re-evaluations (0 where not attacked)."""
    attacked = ~np.isnan(adaptive[score]).all(axis=0)
    return attacked, np.nanmean(np.where(attacked, adaptive[score], 0.0), axis=0)


def _detection(eps: float, detector: str, clean: np.ndarray, fooled: np.ndarray, safe: np.ndarray) -> list[dict]:
    """The AUROC with its bootstrap interval and the robust-or-detected accuracy with its interval (``safe`` [R, N]
    per re-evaluation) of one detector (a score, or ``<score>_adaptive`` under the adaptive attack) at one eps."""
    value, low, high = auroc_interval(torch.as_tensor(clean), torch.as_tensor(fooled))
    accuracy, acc_low, acc_high = mean_interval(list(safe.mean(axis=1)), safe.shape[1])
    names = {"auroc": value, "auroc_ci_low": low, "auroc_ci_high": high, "robust_or_detected": accuracy,
             "robust_or_detected_ci_low": acc_low, "robust_or_detected_ci_high": acc_high}
    return [metric_row(DETECTION, eps, score_metric(detector, name), v) for name, v in names.items()]


def attacked_rows(cases: list[WorstCase], arrays: Arrays, y: np.ndarray) -> list[dict]:
    """Calibration (ECE, NLL, Brier) and selective prediction of the worst-case points at each eps, as ``robust``
    rows."""
    rows = []
    for case in cases:
        probs = torch.as_tensor(case.point_values(arrays, "probs"), dtype=torch.float32)
        rows += calibration_rows(ROBUST, case.eps, probs, torch.as_tensor(y))
        selective = selective_metrics(case.point_values(arrays, ENTROPY), case.correct.mean(axis=0))
        rows += [metric_row(ROBUST, case.eps, name, value) for name, value in selective.items()]
    return rows


def calibration_rows(condition: str, param: float | None, probs: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """ECE with its bootstrap interval, NLL and Brier of ``probs`` against ``y``, as ``condition``'s rows."""
    calibration = classification_metrics(probs, y)
    low, high = ece_interval(probs, y)
    return [metric_row(condition, param, name, value) for name, value in
            (("ece", calibration["ece"]), ("ece_ci_low", low), ("ece_ci_high", high), ("nll", calibration["nll"]),
             ("brier", calibration["brier"]))]


def selective_rows(condition: str, param: float | None, stored: dict[str, np.ndarray]) -> list[dict]:
    """Selective prediction on a clean or noisy condition's inputs, as its own rows."""
    return [metric_row(condition, param, name, value)
            for name, value in selective_metrics(stored[ENTROPY], stored["correct"][0]).items()]


def clean_interval_rows(stored: dict[str, np.ndarray], y: np.ndarray) -> list[dict]:
    """The clean ECE's bootstrap interval (its value is among the clean condition's own rows)."""
    low, high = ece_interval(torch.as_tensor(stored["probs"]), torch.as_tensor(y))
    return [metric_row(CLEAN, None, "ece_ci_low", low), metric_row(CLEAN, None, "ece_ci_high", high)]


def ood_rows(scores: tuple[str, ...], clean: dict[str, np.ndarray], ood: dict[str, np.ndarray]) -> list[dict]:
    """The AUROC of each score, with its bootstrap interval, for telling the other dataset's images from every clean
    test image (correct or not: a detector of foreign inputs does not know the label)."""
    rows = []
    for score in scores:
        value, low, high = auroc_interval(torch.as_tensor(clean[score]), torch.as_tensor(ood[score]))
        rows += [metric_row(OOD, None, score_metric(score, name), v)
                 for name, v in (("auroc", value), ("auroc_ci_low", low), ("auroc_ci_high", high))]
    return rows

