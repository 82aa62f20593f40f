"""PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.

L-inf projected gradient ascent from a uniform random start, with restarts. Each example keeps the best
point seen over all steps and restarts. For non-random models a point the deployed rule misclassifies
beats any point it gets right (cross-entropy alone does not order them), and among equals the higher loss
wins. For stochastic models the highest EOT loss wins: whether K draws misclassify a point is itself
noisy, and a point that one draw set called broken is often classified correctly by fresh draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.attacks.base import Attack, input_gradient, project
from benchmark.predictive import Predictor


@dataclass(frozen=True)
class PGD(Attack):
    """L-inf PGD with random start and restarts, keeping each example's best point over all steps."""

    name = "pgd"
    steps: int = 20
    restarts: int = 1
    step_size: float = 2.5  # in units of eps / steps (Madry et al.)
    random_start: bool = True
    objective: str = "ce"  # "dlr" (benchmark.attacks.losses), or "likelihood": the plugin's own loss

    def __call__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        alpha = self.step_size * eps / self.steps
        best_x = x.clone()
        best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
        for _ in range(self.restarts):
            x_adv = project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps) if self.random_start else x.clone()
            for step in range(self.steps + 1):
                g = input_gradient(predictor, x_adv, y, draws, self.objective)
                score = g.loss if predictor.is_random else g.loss + 1e6 * g.wrong.float()  # scores x_adv
                improved = score > best_score
                best_x[improved] = x_adv[improved]
                best_score = torch.where(improved, score, best_score)
                if step < self.steps:
                    x_adv = project(x_adv + alpha * g.grad.sign(), x, eps).detach()
        return best_x
