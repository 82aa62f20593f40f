"""The one-point worst case at each eps of a run: which adversarial point stands for each example, and how it is
judged. The robust accuracy (``benchmark.scoring``), the uncertainty measured on attacked inputs
(``benchmark.detection``) and the examples the adaptive attack on the detector runs on (``benchmark.evaluation``)
all read the same choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.metrics import strongest_point
from benchmark.names import CLEAN, condition_id

#: a condition's stored arrays by its id; None for a failed condition
Arrays = Callable[[str], "dict[str, np.ndarray] | None"]


@dataclass(frozen=True)
class WorstCase:
    """The worst case at one eps.

    ``correct`` [R, N]: the judged outcome of each example's point (:func:`benchmark.metrics.strongest_point`; an
    example the cascade stopped counts as broken). ``every`` [R, N]: survived every candidate in the same
    re-evaluation, the conservative figure. ``source`` [N]: the id of the condition whose stored point stands for
    each example (the candidate with a point and the lowest mean selection score), which is where that point's
    probabilities and uncertainty scores are read.
    """

    eps: float
    correct: np.ndarray
    every: np.ndarray
    source: np.ndarray

    def point_values(self, arrays: Arrays, key: str) -> np.ndarray:
        """Each example's ``key`` at its point: ``probs`` [N, C] as stored; a score, stored [N] by the clean
        condition and [R, N] by an attack (one per judged evaluation), as its mean over the judged evaluations."""
        out = None
        for condition in np.unique(self.source):
            stored = arrays(str(condition))[key]
            if key != "probs" and stored.ndim == 2:
                stored = stored.mean(axis=0)
            if out is None:
                out = np.full(stored.shape, np.nan, dtype=float)
            mine = self.source == condition
            out[mine] = stored[mine]
        return out


def worst_cases(attacks: Sequence[tuple[str, float]], arrays: Arrays, selection: Callable[[str], np.ndarray]
                ) -> list[WorstCase]:
    """The worst case at each eps of ``attacks`` ((condition id, eps) of every attack condition), smallest eps
    first. The candidates at an eps are the clean point, every attack there and at every smaller eps (their balls
    lie inside this one, so the curve cannot rise). A failed attack leaves the worst case at its eps, and so at
    every larger one, unknown: the list stops there rather than report an inflated figure. ``selection(id)`` is a
    condition's selection scores [E, N]."""
    clean = condition_id(CLEAN)
    every = arrays(clean)["correct"]
    judged_candidates = [(every, selection(clean))]
    point_candidates = [(clean, selection(clean).mean(axis=0))]
    out = []
    for eps in sorted({e for _, e in attacks}):
        here = [c for c, e in attacks if e == eps]
        if any(arrays(c) is None for c in here):
            break
        for c in here:
            correct, scores = arrays(c)["correct"], selection(c)
            every = every & correct
            # an example the cascade stopped was broken in every selection evaluation of some earlier point: it stays
            # broken (-inf: chosen, and its judged outcome here is broken), and its point is the earlier one
            judged_candidates.append((correct, np.where(np.isnan(scores), -np.inf, scores)))
            point_candidates.append((c, scores.mean(axis=0)))
        out.append(WorstCase(eps, strongest_point(judged_candidates), every, _sources(point_candidates)))
    return out


def _sources(candidates: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per example, the candidate with a point (no NaN) and the lowest mean selection score, the earlier on a tie."""
    lowest = np.full(candidates[0][1].shape, np.inf)
    source = np.full(lowest.shape, candidates[0][0], dtype=object)
    for condition, score in candidates:
        better = score < lowest
        source, lowest = np.where(better, condition, source), np.where(better, score, lowest)
    return source
