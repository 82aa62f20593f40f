"""The rule a claim's verdict follows: an effect with its interval, tested at points fixed before looking.

A claim is tested only at the points its paper states (its eps or sigma), else at the dataset's eps, or over the
noise sweep: never at whichever point of a sweep happens to favour it. At each point the effect is the difference of
two measured accuracies, the model's less its reference's, with a 95% interval from the two accuracies' own
intervals (independent normal errors, each standard error the half-width over 1.96) and a one-sided p-value. Several
points are corrected together by Holm's step-down procedure (Holm 1979), which holds the family-wise error at 5%. An
effect supports the claim where it is significant after the correction and at least :data:`MINIMUM_GAIN`: a gain of
a fraction of a point, however certain, is no robustness a reader would care about.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from benchmark.metrics import Z95
from benchmark.render import interval_text

#: the family-wise error rate of a claim's tests
ALPHA = 0.05
#: the smallest gain in accuracy that supports a claim, however significant (two points)
MINIMUM_GAIN = 0.02


@dataclass(frozen=True)
class Interval:
    """A measured accuracy (or AUROC, or ECE) and its 95% interval."""

    value: float
    low: float
    high: float

    def above(self, other: Interval) -> bool:
        """Whether this interval lies wholly above ``other``'s."""
        return self.low > other.high

    @property
    def standard_error(self) -> float:
        return (self.high - self.low) / (2 * Z95)

    def text(self) -> str:
        return interval_text(self.value, self.low, self.high)


@dataclass(frozen=True)
class Effect:
    """The difference ``mine - theirs`` at one point, its 95% interval and the one-sided p-value of "greater"."""

    at: str
    difference: float
    low: float
    high: float
    p: float

    def text(self) -> str:
        return f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def effect(mine: Interval, theirs: Interval, at: str) -> Effect:
    """The effect of ``mine`` over ``theirs`` at the point ``at``; p = 1 - Phi(d / se), 0 or 1 where se is 0."""
    difference = mine.value - theirs.value
    se = math.hypot(mine.standard_error, theirs.standard_error)
    if se == 0:
        p = 0.0 if difference > 0 else 1.0
    else:
        p = 0.5 * math.erfc(difference / se / math.sqrt(2))
    return Effect(at, difference, difference - Z95 * se, difference + Z95 * se, p)


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down test: which of the hypotheses are rejected at family-wise error ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def supporting(effects: Sequence[Effect]) -> list[Effect]:
    """The effects that support a claim: significant after Holm's correction over all of them, and at least
    :data:`MINIMUM_GAIN`."""
    significant = holm([e.p for e in effects])
    return [e for e, s in zip(effects, significant, strict=True) if s and e.difference >= MINIMUM_GAIN]


def cost(mine: Interval, theirs: Interval) -> float | None:
    """The points of accuracy a claim's gain costs on clean inputs: the clean loss where it is significant (5%) and
    at least :data:`MINIMUM_GAIN`, else None."""
    loss = effect(theirs, mine, "clean")
    return loss.difference if loss.p < ALPHA and loss.difference >= MINIMUM_GAIN else None
