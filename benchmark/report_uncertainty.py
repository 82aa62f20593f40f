"""The report's section "Does the uncertainty see the attack?" (docs/protocol.md, "Uncertainty under attack"): the
detection, out-of-distribution and selective-prediction rows of ``benchmark.detection`` as tables, and two figures
drawn from the run's stored arrays: each score's distribution on clean, noisy, adversarial and adaptive-adversarial
points, and the risk-coverage curves.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import figures
from benchmark.detection import adaptive_points, fooled_examples
from benchmark.errors import BenchmarkError
from benchmark.evaluation import selection_of
from benchmark.metrics import COVERAGES, clean_threshold, coverage_metric
from benchmark.names import (
    ADAPTIVE,
    CLEAN,
    DETECTION,
    NOISE,
    OOD,
    ROBUST,
    adaptive_condition,
    condition_id,
    same_eps,
    score_metric,
)
from benchmark.render import (
    Block,
    Heading,
    Image,
    Interval,
    Paragraph,
    Table,
    eps_text,
    missing,
    num,
)
from benchmark.results import RunResults
from benchmark.store import RunStore
from benchmark.uncertainty import ENTROPY, SCORES, SCORES_BY_KIND
from benchmark.worst_case import WorstCase, worst_cases

#: the section's figures, drawn from the run's stored condition arrays
UNCERTAINTY_FIGURES = ("uncertainty.png", "risk_coverage.png")
#: the noisy inputs the score figure shows: the largest sigma below this one (the largest of the sweep is often
#: past the point where the model still classifies at all), else the largest there is
NOISE_SHOWN_BELOW = 0.5
DETECTION_TEXT = (
    "Each uncertainty score of the model's predictive kind (benchmark.uncertainty; higher is more uncertain) as a "
    "detector of attacks. AUROC: how well the score tells the worst-case adversarial points that fooled the model "
    "from the clean inputs it classifies correctly (0.5: blind, 1: every attack seen). Threshold: the score that "
    "keeps 95% of those clean inputs (5% false alarms); an input above it is flagged. Robust or detected: the "
    "share of examples whose point is classified correctly or flagged; robust accuracy is its floor. Adaptive: the "
    "same against an attack that also holds the score under the threshold (benchmark.attacks.detector): the drop "
    "from the non-adaptive figure is the detection an attacker who knows about it takes away. Brackets: 95% "
    "bootstrap (AUROC) and binomial (accuracy) intervals.")
SELECTIVE_TEXT = (
    "Calibration of the worst-case adversarial points against clean and noisy inputs, and selective prediction: "
    "the model abstains on its most uncertain inputs by predictive entropy, the score every kind has. AURC is the "
    "area under the risk-coverage curve (mean error rate over every coverage; lower is better); the coverage "
    "columns are the accuracy on the share of inputs kept.")


def uncertainty_section(run_dir: Path, config: dict, results: RunResults, out_dir: Path) -> list[Block]:
    """The section "Does the uncertainty see the attack?": detection of the attacks by each uncertainty score,
    out-of-distribution detection, calibration and selective prediction on clean, noisy and attacked inputs, and
    the figures drawn from the stored arrays. Empty for a run stored before the harness kept the scores."""
    kind_scores = SCORES_BY_KIND.get(config.get("predictive"), SCORES)
    measured = set(results.metrics.metric[results.metrics.condition.isin([DETECTION, OOD])])
    scores = tuple(s for s in kind_scores if score_metric(s, "auroc") in measured)
    selective = results.table(CLEAN)
    if not scores and "aurc" not in selective:
        return []
    eps = float(config["eps"])
    blocks: list[Block] = [Heading("Does the uncertainty see the attack?")]
    detection = results.table(DETECTION)
    if not detection.empty:
        blocks += [Heading("Detection of the attacks", level=3), Paragraph(DETECTION_TEXT),
                   Table(_detection_table(detection, results, scores, eps))]
    blocks += _ood_blocks(config, results, scores)
    blocks += [Heading("Calibration and selective prediction under attack", level=3), Paragraph(SELECTIVE_TEXT),
               Table(_selective_table(results, eps))]
    drawn = _uncertainty_figures(run_dir, config, results, scores, out_dir)
    blocks += [Image(name, alt) for name, alt in drawn]
    return blocks


def _detection_table(detection: pd.DataFrame, results: RunResults, scores: tuple[str, ...],
                     dataset_eps: float) -> pd.DataFrame:
    """One row per eps and score: AUROC and robust-or-detected accuracy, each non-adaptive and adaptive with its
    interval, the threshold and the robust accuracy they are read against."""
    def cell(row: pd.Series, detector: str, metric: str) -> object:
        value = row.get(score_metric(detector, metric))
        return "—" if missing(value) else Interval(value, row.get(score_metric(detector, f"{metric}_ci_low")),
                                                   row.get(score_metric(detector, f"{metric}_ci_high")))

    rows = []
    for e, row in detection.iterrows():
        robust = results.at(ROBUST, float(e))
        for score in scores:
            adaptive = f"{score}_{ADAPTIVE}"
            threshold = row.get(score_metric(score, "threshold"))
            rows.append([eps_text(float(e), dataset_eps) + (" (dataset ε)" if same_eps(e, dataset_eps) else ""),
                         score, num(None if robust is None else robust.get("accuracy")),
                         cell(row, score, "auroc"), cell(row, adaptive, "auroc"),
                         cell(row, score, "robust_or_detected"), cell(row, adaptive, "robust_or_detected"),
                         "n/a" if missing(threshold) else f"{float(threshold):.4g}"])
    return pd.DataFrame(rows, columns=["ε", "score", "robust accuracy", "AUROC", "AUROC, adaptive",
                                       "robust or detected", "robust or detected, adaptive", "threshold"])


def _ood_blocks(config: dict, results: RunResults, scores: tuple[str, ...]) -> list[Block]:
    """Each score's AUROC for telling another dataset's test images from the clean ones; where none was scored, the
    reason the run recorded (``config["ood"]``), if any."""
    ood_set = config.get("ood")
    values = [(s, results.value(OOD, score_metric(s, "auroc"))) for s in scores]
    values = [(s, v) for s, v in values if not missing(v)]
    if not values:
        return [Paragraph(f"Out-of-distribution detection: not measured ({ood_set}).")] if ood_set else []
    table = pd.DataFrame([(s, Interval(v, results.value(OOD, score_metric(s, "auroc_ci_low")),
                                       results.value(OOD, score_metric(s, "auroc_ci_high")))) for s, v in values],
                         columns=["score", f"AUROC, {ood_set} against clean"])
    return [Heading("Out-of-distribution inputs", level=3),
            Paragraph(f"How well each score tells the test images of another dataset ({ood_set}) from every clean "
                      "test image (0.5: blind), with its 95% bootstrap interval."), Table(table)]


def _selective_table(results: RunResults, dataset_eps: float) -> pd.DataFrame:
    """Accuracy, calibration (ECE, NLL, Brier) and selective prediction (AURC, accuracy at each coverage) on clean
    inputs, at each noise sigma and on the worst-case points at each eps."""
    metrics = ["accuracy", "ece", "nll", "brier", "aurc", *(coverage_metric(c) for c in COVERAGES)]
    labels = ["accuracy", "ECE", "NLL", "Brier", "AURC", *(f"accuracy at {round(100 * c)}% coverage"
                                                           for c in COVERAGES)]
    parts = [("clean", results.table(CLEAN))]
    noise = results.noise_curve()
    parts += [(f"noise σ = {s:g}", noise.loc[[s]]) for s in noise.index if float(s) > 0]
    robust = results.table(ROBUST)
    parts += [(f"attacked, ε = {eps_text(float(e), dataset_eps)} (worst case)", robust.loc[[e]])
              for e in robust.index]
    rows = [[label, *(num(frame.iloc[0].get(m)) if not frame.empty else "n/a" for m in metrics)]
            for label, frame in parts]
    return pd.DataFrame(rows, columns=["inputs", *labels])


def _uncertainty_figures(run_dir: Path, config: dict, results: RunResults, scores: tuple[str, ...],
                         out_dir: Path) -> list[tuple[str, str]]:
    """Draw the score distributions and the risk-coverage curves from the run's stored condition arrays (the
    rows do not hold per-example values); return the (file, alternative text) of each drawn. Nothing for a run
    whose clean condition failed or stored no scores.

    The worst case at each eps is rebuilt as ``benchmark.scoring`` builds it (:func:`_worst_cases`), so that the
    adversarial points shown are those the detection rows were measured on."""
    store = RunStore(run_dir)
    failures = store.failures()

    @functools.cache
    def arrays(condition: str) -> dict[str, np.ndarray] | None:
        found = condition not in failures and (store.conditions / f"{condition}.npz").exists()
        return store.load_arrays(condition) if found else None

    clean = arrays(condition_id(CLEAN))
    if clean is None or ENTROPY not in clean:
        return []
    eps = float(config["eps"])
    cases = _worst_cases(config, results, arrays)
    case = next((c for c in cases if same_eps(c.eps, eps)), None)
    sigma = _noise_shown(results, arrays)
    noisy = None if sigma is None else arrays(condition_id(NOISE, sigma))
    clean_correct = clean["correct"][0]  # as benchmark.detection: the first judged evaluation

    panels, thresholds = {}, {}
    for score in (s for s in scores if s in clean):
        groups = {"clean, correctly classified": clean[score][clean_correct]}
        if noisy is not None and score in noisy:
            groups[f"noisy, σ = {sigma:g}"] = _per_example(noisy[score])
        if case is not None:
            fooled = fooled_examples(case.correct, clean_correct)
            groups[f"adversarial, ε = {eps_text(eps)}, fooled the model"] = case.point_values(arrays, score)[fooled]
            adaptive = arrays(condition_id(adaptive_condition(score), case.eps))
            if adaptive is not None and score in adaptive:
                attacked, points = adaptive_points(adaptive, score)
                groups[f"adaptive adversarial, ε = {eps_text(eps)}, fooled the model"] = points[
                    attacked & fooled_examples(adaptive["correct"], clean_correct)]
        threshold = results.value(DETECTION, score_metric(score, "threshold"), eps)
        thresholds[score] = clean_threshold(clean[score], clean_correct) if missing(threshold) else threshold
        panels[score] = groups
    drawn = []
    if panels:
        figures.plot_score_distributions(panels, thresholds, out_dir / UNCERTAINTY_FIGURES[0])
        drawn.append((UNCERTAINTY_FIGURES[0], "Each uncertainty score on clean, noisy, adversarial and adaptive "
                                              "adversarial inputs, with the detector's threshold"))
    unattacked = {"clean": (clean[ENTROPY], clean_correct)}
    if noisy is not None:
        unattacked[f"noise σ = {sigma:g}"] = (_per_example(noisy[ENTROPY]), noisy["correct"][0])
    attacked = {f"attacked, ε = {eps_text(c.eps, eps)}": (c.point_values(arrays, ENTROPY), c.correct.mean(axis=0))
                for c in cases}
    figures.plot_risk_coverage(unattacked, attacked, out_dir / UNCERTAINTY_FIGURES[1])
    drawn.append((UNCERTAINTY_FIGURES[1], "Risk against coverage by predictive entropy on clean, noisy and "
                                          "attacked inputs"))
    return drawn


def _worst_cases(config: dict, results: RunResults, arrays) -> list[WorstCase]:
    """The worst case at each eps (``benchmark.worst_case``) from the stored arrays: the candidates are the run's
    attack conditions (an attack of ``config["attack_settings"]`` at an eps), in the order of ``metrics.csv``,
    which is the plan's (a tie between two points goes to the earlier, as in scoring). None where the points
    cannot be chosen again (a random model's run stored before the selection evaluations were kept)."""
    names = set(config.get("attack_settings") or {})
    rows = results.metrics[results.metrics.condition.isin(names) & results.metrics.param.notna()]
    attacks = [(condition_id(name, float(param)), float(param))
               for name, param in rows[["condition", "param"]].drop_duplicates().itertuples(index=False)]
    if not attacks:
        return []
    random = config.get("predictive") == "stochastic"  # benchmark.predictive.Predictor.is_random

    def selection(condition: str) -> np.ndarray | None:
        found = arrays(condition)
        return None if found is None else selection_of(found, random, condition)

    try:
        return worst_cases(attacks, arrays, selection)
    except BenchmarkError:
        return []


def _noise_shown(results: RunResults, arrays) -> float | None:
    """The sigma of the noisy inputs the figures show (:data:`NOISE_SHOWN_BELOW`), among those stored."""
    sigmas = [float(s) for s in results.noise_curve().index
              if float(s) > 0 and arrays(condition_id(NOISE, float(s))) is not None]
    below = [s for s in sigmas if s < NOISE_SHOWN_BELOW]
    return max(below) if below else max(sigmas, default=None)


def _per_example(values: np.ndarray) -> np.ndarray:
    """A stored score as one value per example: [N] as is, [R, N] (one per judged evaluation) as its mean."""
    return values.mean(axis=0) if values.ndim == 2 else values
