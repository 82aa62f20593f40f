"""L-inf Square Attack: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020: Algorithm 1 with the L-inf proposal of Algorithm 2.

A black-box check on the white-box attacks: it needs no gradient, so gradient masking cannot stop it. As in
the paper: the start is vertical stripes of width one, each column and channel at +eps or -eps from the
original; every step draws, per example, a square window of side h = round(sqrt(p * H * W)) at a uniformly
random place and sets each channel of it to original +eps or -eps (a random sign per channel), clipped to
[0, 1]; the candidate replaces the current point if it lowers the margin loss
log p_y - max_{j != y} log p_j. p starts at ``p_init`` and halves at iterations 10, 50, 200, 500, 1000, 2000,
4000, 6000 and 8000 of a 10,000-query run (the paper's schedule), rescaled linearly to the budget.

Where this departs from the paper, and why:

- Every query is the deployed rule, ``predictor.log_predictive(x, draws)``: the K-draw average for a
  stochastic model. ``queries`` counts the candidates (the start included) each example gets.
- A window whose candidate equals the current point (every channel already at the drawn sign) gets new
  signs (up to ``SIGN_TRIES`` times) instead of spending a query on an unchanged point; on one-channel
  images late in the schedule (1x1 windows) that is every other draw.
- Deterministic, moment and ensemble models: an example stops once its margin is negative (exact, it is
  misclassified). Stochastic models: no margin is exact, so every example is searched for the whole
  budget, and the acceptance rule avoids the winner's curse: a point accepted because one noisy
  evaluation was low would otherwise keep that lucky value as the bar every later candidate must beat.
  Instead, the current point of each example is re-evaluated with fresh draws in the same batched call
  as its candidate, and its margin is the mean of those re-evaluations since it was accepted, leaving out
  the evaluation that got it accepted (selected for being low); a candidate is accepted if its own fresh
  margin is below that mean. The mean is unbiased and its noise shrinks with every re-evaluation; after
  ``REEVALUATIONS`` of them (a quarter of one evaluation's noise) the current point is no longer
  re-evaluated, as the candidate's own noise then dominates the comparison. The stripes start is not
  selected, so its first evaluation counts. A stochastic model thus costs up to twice ``queries`` K-draw
  evaluations per example, the price of a comparison that lucky draws cannot win for good.
- Each example returns its current point, the best by this rule: never the clean input, and never
  dropped because one last noisy check called it correct; the harness re-evaluates it with fresh draws.
- The attack's randomness (stripes, windows, signs) comes from a ``torch.Generator`` of its own seeded
  with ``seed``; the global generator, which a stochastic model's draws use, is never reseeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from benchmark.attacks.base import Attack, project
from benchmark.predictive import Predictor

#: iterations of a 10,000-query run at which p halves (Andriushchenko et al. 2020)
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: re-evaluations after which a stochastic model's current point keeps its mean margin (noise / 4)
REEVALUATIONS = 16
#: fresh sign draws for a window that would not change the current point
SIGN_TRIES = 10


def p_schedule(p_init: float, iteration: int, queries: int) -> float:
    """The share of pixels a window covers at ``iteration`` of a ``queries``-query run."""
    scaled = int(iteration / queries * 10_000)
    return p_init / 2 ** sum(scaled > t for t in HALVINGS)


def window_side(p: float, height: int, width: int) -> int:
    """Side of a square covering a share ``p`` of an ``height`` x ``width`` image (at least one pixel)."""
    return min(max(round(math.sqrt(p * height * width)), 1), height, width)


def margin(log_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The margin loss, log p_y - max_{j != y} log p_j: negative once the deployed rule misclassifies."""
    true = log_pred.gather(1, y[:, None]).squeeze(1)
    return true - log_pred.scatter(1, y[:, None], -math.inf).max(1).values


def _signs(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform +-1, drawn on the CPU generator so a seed gives the same attack on every device."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).float().to(device)


@dataclass(frozen=True)
class Square(Attack):
    """Gradient-free random search on the deployed rule's margin: the check against gradient masking."""

    white_box = False
    queries: int = 1000
    p_init: float = 0.8
    seed: int = 0

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> Square:
        return replace(self, seed=seed)

    @torch.no_grad()
    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        n, channels, height, width = x.shape

        def query(points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return margin(predictor.log_predictive(points, draws), labels)

        plus, minus = (x + eps).clamp(0.0, 1.0), (x - eps).clamp(0.0, 1.0)
        best = torch.where(_signs(generator, (n, channels, 1, width), x.device) > 0, plus, minus)  # stripes
        best_margin = query(best, y)  # stochastic: the mean of ``evaluations`` fresh evaluations
        total, evaluations = best_margin.clone(), torch.ones_like(best_margin)
        for iteration in range(1, self.queries):
            active = (torch.arange(n, device=x.device) if predictor.is_random
                      else torch.nonzero(best_margin >= 0).squeeze(1))
            if active.numel() == 0:
                break
            side = window_side(p_schedule(self.p_init, iteration, self.queries), height, width)
            candidate = self._candidates(generator, plus[active], minus[active], best[active], side)
            if predictor.is_random:
                again = active[evaluations[active] < REEVALUATIONS]
                margins = query(torch.cat([candidate, best[again]]), torch.cat([y[active], y[again]]))
                new, fresh = margins[:active.numel()], margins[active.numel():]
                total[again] += fresh
                evaluations[again] += 1
                best_margin[again] = total[again] / evaluations[again]
            else:
                new = query(candidate, y[active])
            accept = new < best_margin[active]
            chosen = active[accept]
            best[chosen] = candidate[accept]
            best_margin[chosen] = new[accept]
            total[chosen], evaluations[chosen] = 0.0, 0.0  # the selected evaluation is left out of the mean
        return project(best, x, eps)

    @staticmethod
    def _candidates(generator: torch.Generator, plus: torch.Tensor, minus: torch.Tensor, best: torch.Tensor,
                    side: int) -> torch.Tensor:
        """``best`` with one square window per example set to the original +eps or -eps (``plus``, ``minus``,
        clipped to [0, 1]), a sign per channel."""
        n, channels, height, width = best.shape
        device = best.device
        top = torch.randint(0, height - side + 1, (n, 1), generator=generator).to(device)
        left = torch.randint(0, width - side + 1, (n, 1), generator=generator).to(device)
        rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
        rows, cols = (rows >= top) & (rows < top + side), (cols >= left) & (cols < left + side)
        window = (rows[:, :, None] & cols[:, None, :])[:, None]  # [n, 1, H, W]
        outside = ~window
        # per example and channel: is the window already all at +eps (at -eps)? Then that sign changes nothing
        at_plus = ((best == plus) | outside).flatten(2).all(2)
        at_minus = ((best == minus) | outside).flatten(2).all(2)
        # SIGN_TRIES draws of the signs at once; each example takes its first draw that changes its window
        tries = _signs(generator, (SIGN_TRIES, n, channels), device)
        changes = ~torch.where(tries > 0, at_plus, at_minus).all(2)  # [tries, n]
        signs = tries[changes.int().argmax(0), torch.arange(n, device=device)]  # the first (or try 0)
        return torch.where(window, torch.where(signs[:, :, None, None] > 0, plus, minus), best)
