"""The adaptive attack on each uncertainty score's detector, as a condition of its own (``adaptive-<score>`` at each
eps of the sweep, after every attack there; docs/protocol.md, "Uncertainty under attack"). The attack itself is
``benchmark.attacks.detector``; what its points say is ``benchmark.detection``.
"""

from __future__ import annotations

import numpy as np

from benchmark.attacks.detector import DetectorAware
from benchmark.errors import PluginOutputError
from benchmark.evaluation import Condition, Evaluator, attack_conditions, selection_of
from benchmark.metrics import clean_threshold
from benchmark.names import ADAPTIVE, CLEAN, EVADED, condition_id, metric_row, same_eps
from benchmark.worst_case import worst_cases


def run_adaptive(evaluator: Evaluator, condition: Condition):
    """The adaptive attack on the detector of one score (``benchmark.attacks.detector``) at one eps, with the
    threshold of 5% false alarms on the clean correctly classified examples. It runs on the examples the attacks
    before it broke in some judged evaluation (the others are robust already, and a constrained attack would
    not break them where the free ones failed), except, for a non-random model, those whose point already went
    unflagged: nothing is left to find there."""
    score, eps = condition.name.removeprefix(ADAPTIVE + "-"), float(condition.param)
    clean = evaluator.load(condition_id(CLEAN)) if evaluator.load is not None else None
    if clean is None:
        raise PluginOutputError("the clean condition failed, so the detector has no threshold")
    threshold = clean_threshold(clean[score], clean["correct"][0])
    def selection(condition_id: str) -> np.ndarray:
        return selection_of(evaluator.load(condition_id), evaluator.predictor.is_random, condition_id)

    case = next((c for c in worst_cases(attack_conditions(evaluator), evaluator.load, selection)
                 if same_eps(c.eps, eps)), None)
    if case is None:
        raise PluginOutputError(f"an attack at eps {eps:g} or below failed, so no point is known to start from")
    attacked = ~case.correct.all(axis=0)
    if not evaluator.predictor.is_random:
        attacked &= case.point_values(evaluator.load, score) > threshold
    attack = DetectorAware(score=score).against(threshold).for_run(evaluator.seed, None)
    index = np.flatnonzero(attacked)

    def batch_outcomes(seed, xb, yb):
        return evaluator._judge(attack(evaluator.predictor, xb, yb, eps, evaluator.eot), yb, seed)

    arrays = evaluator._attack_arrays(index, evaluator._map(condition, batch_outcomes, index))
    # the share of all examples whose adaptive point fooled the model unflagged, mean over the re-evaluations
    evaded = (~arrays["correct"] & (np.nan_to_num(arrays[score], nan=np.inf) <= threshold)).mean()
    return [metric_row(condition.name, eps, name, value) for name, value in
            (("attacked", len(index)), ("threshold", threshold), (EVADED, evaded))], arrays
