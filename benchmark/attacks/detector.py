"""An adaptive attack on an uncertainty-based detector: misclassify the input AND keep its uncertainty score low.

A model that flags inputs whose uncertainty score s(x) exceeds a threshold t (``benchmark.uncertainty``) is only
as good as the attack that knows about the flag: Carlini & Wagner (AISec 2017, "Adversarial Examples Are Not
Easily Detected: Bypassing Ten Detection Methods") broke ten detectors by putting the detector into the attack's
loss, and Feng, Rudner, Tsilivis & Kempe (ICML 2024, "Attacking Bayes") did the same for the epistemic
uncertainty of Bayesian networks and ensembles. A non-adaptive attack follows the classification loss alone,
which typically raises the uncertainty as the point crosses the decision boundary (and stops there), so its points
are flagged and the detector looks good; this attack measures the detector against an attacker who knows it.

The problem is a constrained one: find x' in the eps-ball with argmax p(x') != y and s(x') <= t. It is solved, as
C&W do, by descending a penalty with a multiplier, here one per example,

    L_i(x) = relu(m(x) + KAPPA) + c_i * log(s(x) + TINY),

m(x) = log p_y - max_(j != y) log p_j the margin of the deployed log predictive (positive while correct), KAPPA a
small confidence margin that keeps the point from settling on the decision boundary, where the entropy is
highest. The score enters in log space, which frees the penalty of the score's scale: an entropy (at most
log C), a mutual information (often 1e-3) and a logit variance (tens to thousands) give the same steps. The score
term has no hinge at t: once the point is misclassified by KAPPA only the score is left to descend, so the attack
pushes the score as low as the ball allows, well under t (a margin against the fresh draws a stochastic model is
scored on, and a fair test of a detector's AUROC, not only of the one threshold). Rather than C&W's binary search
over a shared constant in repeated runs, c_i adapts during the one run, as a Lagrange multiplier would: it rises
(x MULTIPLIER_STEP a step) while the point is misclassified but still flagged, and falls while the point is
unflagged but still classified correctly, so each example finds its own balance of the two terms.

Steps are signed-gradient (L-inf) steps down L, projected onto the threat model (:func:`~base.project`), with a
cosine-decaying step size (FIRST_STEP eps to LAST_STEP eps): larger steps cross the boundary early, small ones
settle under the threshold at the end. The first step is smaller than APGD's (2 eps): a signed step is itself
high-frequency noise, which the score then has to undo; against the planted ensemble detector of the tests a
first step of 0.5 or 1 eps left 29% or 69% of the points unbroken, against 12% at 0.25 eps, and no planted
detector did better with a larger one. The first restart starts at the clean input (a random start adds
high-frequency noise, which many uncertainty scores respond to); later ones start uniformly in the ball, drawn
from a generator of the attack's own seeded with ``seed`` (the run's, through :meth:`DetectorAware.for_run`), so
the global generator that a stochastic model's draws use is neither reseeded nor drawn from.

Each example keeps its best point over all steps and restarts: a success (misclassified and s <= t) beats any
failure, a success of lower score beats one of higher, and a failure of lower violation, relu(m) + relu(log s -
log t), beats one of higher (a fixed measure of how far the point is from success, unlike L, whose c_i changes).
An example no step breaks returns its least-violating point.

Stochastic models (EOT, Athalye et al. 2018): every step computes the margin and the score from the same
``draws`` draws (``benchmark.uncertainty.predict``), so the attack follows the expectation of both. No single
draw set says for sure that a point succeeds, and the best of many noisy estimates is biased in its favour, so a
point that beats the best one on its own draws is scored again on fresh draws and kept only if it still beats it
there; that fresh status is the one later points must beat (after :class:`~pgd.PGD`'s rescoring). Every example
runs every step on every kind: a success still has its score to lower, so there is no active set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from benchmark.attacks.base import Attack, project
from benchmark.predictive import Predictor
from benchmark.uncertainty import SCORES_BY_KIND, predict

#: the confidence margin, in nats of log predictive, by which the point is pushed past the decision boundary
KAPPA = 0.1
#: added to the score and the threshold before their logs: a score of exactly 0 (a one-hot predictive) is finite
TINY = 1e-12
#: the multiplier's start, its factor per step and its bounds
MULTIPLIER, MULTIPLIER_STEP, MULTIPLIER_RANGE = 1.0, 1.2, (1e-3, 1e3)
#: the step size, in units of eps: cosine from the first to the last step
FIRST_STEP, LAST_STEP = 0.25, 0.01


@dataclass(frozen=True)
class _Status:
    """Where a batch of points stands: misclassified by the deployed rule, success (misclassified and s <= t), the
    score s, and the violation relu(m) + relu(log s - log t), zero for a success."""

    wrong: torch.Tensor
    success: torch.Tensor
    score: torch.Tensor
    violation: torch.Tensor

    def _values(self) -> tuple[torch.Tensor, ...]:
        return self.wrong, self.success, self.score, self.violation

    def beats(self, other: _Status) -> torch.Tensor:
        """Rows where this is the better point: success first, then the lower score (successes) or violation."""
        mine, theirs = self.success, other.success
        return ((mine & ~theirs) | (mine & theirs & (self.score < other.score))
                | (~mine & ~theirs & (self.violation < other.violation)))

    def take(self, index: torch.Tensor) -> _Status:
        return _Status(*(value[index] for value in self._values()))

    def put(self, index: torch.Tensor, new: _Status) -> _Status:
        """A copy with rows ``index`` replaced by ``new``."""
        values = [value.clone() for value in self._values()]
        for value, replacement in zip(values, new._values(), strict=True):
            value[index] = replacement
        return _Status(*values)


def _margin(log_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Log p_y - max_(j != y) log p_j: positive while the deployed rule is right."""
    return log_pred.gather(1, y[:, None]).squeeze(1) - log_pred.scatter(1, y[:, None], -torch.inf).amax(1)


@dataclass(frozen=True)
class DetectorAware(Attack):
    """L-inf attack that misclassifies while keeping one uncertainty score at or below the detector's threshold."""

    score: str = "entropy"  # a name from benchmark.uncertainty.SCORES_BY_KIND[predictor.kind]
    threshold: float = math.inf  # the detector's threshold t on the score: bind it per run with against()
    steps: int = 100
    restarts: int = 1
    seed: int = 0  # the random starts of restarts after the first

    def against(self, threshold: float) -> DetectorAware:
        """The attack aimed at a detector that flags scores above ``threshold``."""
        return replace(self, threshold=float(threshold))

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> DetectorAware:
        return replace(self, seed=seed)

    @torch.no_grad()
    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        kind_scores = SCORES_BY_KIND.get(predictor.kind, ())
        if self.score not in kind_scores:
            raise ValueError(f"a {predictor.kind} predictor has no {self.score!r} score; it has {list(kind_scores)}")
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"DetectorAware needs the detector's finite, non-negative threshold on {self.score!r} "
                             f"(bind it with .against(t)), got {self.threshold}")
        if self.steps < 0 or self.restarts < 1:
            raise ValueError(f"DetectorAware needs steps >= 0 and restarts >= 1, got {self.steps}, {self.restarts}")
        x, y = x.detach().float(), y.to(x.device)
        n = x.shape[0]
        if n == 0:
            return x.clone()
        generator = torch.Generator().manual_seed(self.seed)
        best = x.clone()
        inf = torch.full((n,), torch.inf, device=x.device)
        never = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_status = _Status(never, never, inf, inf)
        for restart in range(self.restarts):
            if restart == 0:
                x_adv = x.clone()
            else:  # uniform in the ball, drawn on the CPU from the attack's own generator
                x_adv = project(x + eps * (2 * torch.rand(x.shape, generator=generator) - 1).to(x.device), x, eps)
            multiplier = torch.full((n,), MULTIPLIER, device=x.device)
            for k in range(self.steps + 1):
                status, grad = self._evaluate(predictor, x_adv, y, multiplier, draws)
                improved = status.beats(best_status)
                if improved.any():
                    rows = torch.nonzero(improved).squeeze(1)
                    candidate, new = x_adv[rows], status.take(rows)
                    if predictor.is_random:  # kept only if it still wins on fresh draws, whose status is kept
                        new = self._status(predictor, candidate, y[rows], draws)
                        keep = new.beats(best_status.take(rows))
                        rows, candidate, new = rows[keep], candidate[keep], new.take(keep)
                    best[rows] = candidate
                    best_status = best_status.put(rows, new)
                if k == self.steps:
                    break
                # misclassified but flagged: weigh the score more; unflagged but still right: weigh it less
                flagged = status.score > self.threshold
                multiplier = torch.where(status.wrong & flagged, multiplier * MULTIPLIER_STEP, multiplier)
                multiplier = torch.where(~status.wrong & ~flagged, multiplier / MULTIPLIER_STEP, multiplier)
                multiplier = multiplier.clamp(*MULTIPLIER_RANGE)
                eta = eps * (LAST_STEP + (FIRST_STEP - LAST_STEP) * 0.5 * (1 + math.cos(math.pi * k / self.steps)))
                x_adv = project(x_adv - eta * grad.sign(), x, eps)
        return project(best, x, eps)

    def _status(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, draws: int) -> _Status:
        """The status of ``x`` on one fresh set of draws."""
        prediction = predict(predictor, x, draws)
        return _status(prediction.log_predictive, y, prediction.scores[self.score], self.threshold)

    def _evaluate(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, multiplier: torch.Tensor,
                  draws: int) -> tuple[_Status, torch.Tensor]:
        """The status of ``x`` and dL / dx, from one forward pass (one set of draws)."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            prediction = predict(predictor, x, draws)
            score = prediction.scores[self.score]
            penalty = torch.relu(_margin(prediction.log_predictive, y) + KAPPA) + multiplier * torch.log(score + TINY)
            (grad,) = torch.autograd.grad(penalty.sum(), x)
        status = _status(prediction.log_predictive.detach(), y, score.detach(), self.threshold)
        return status, grad


def _status(log_pred: torch.Tensor, y: torch.Tensor, score: torch.Tensor, threshold: float) -> _Status:
    """The status of points from their deployed log predictive (misclassified: its argmax, as the harness scores
    it) and their score."""
    wrong = log_pred.argmax(1) != y
    excess = torch.relu(torch.log(score + TINY) - math.log(threshold + TINY))
    return _Status(wrong, wrong & (score <= threshold), score, torch.relu(_margin(log_pred, y)) * ~wrong + excess)
