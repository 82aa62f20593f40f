"""PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.

L-inf projected gradient ascent from a uniform random start, with restarts. Each example keeps the best
point seen over all steps and restarts. For non-random models a point the deployed rule misclassifies
beats any point it gets right (cross-entropy alone does not order them), and among equals the higher loss
wins. For stochastic models the highest EOT loss wins: whether K draws misclassify a point is itself
noisy, and a point that one draw set called broken is often classified correctly by fresh draws. A point that
wins is scored again on K fresh draws, and that score is the one later points must beat: the loss that made it
win is the maximum of noisy estimates, biased upwards, and a lucky early point kept on it would shut out later
points that are better on average.

Active set: on a non-random model a misclassified point is exact, so with ``stop_when_broken`` an example
leaves the batch the step it is first misclassified (and skips later restarts); the robust accuracy is the
same as attacking it to the end, at a fraction of the cost once most examples are broken. The batch is
compacted at every step: on the CPU the check costs nothing, and a broken example left in would cost a
whole forward and backward. The transfer attack turns it off: there the point crafted on the surrogate
is evaluated on another model, and the highest-loss misclassified point transfers better than the first.
Stochastic models never stop early: no single evaluation tells that a point is broken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.attacks.base import Attack, input_gradient, objective_loss, project
from benchmark.predictive import Predictor


@dataclass(frozen=True)
class PGD(Attack):
    """L-inf PGD with random start and restarts, keeping each example's best point over all steps."""

    steps: int = 20
    restarts: int = 1
    step_size: float = 2.5  # in units of eps / steps (Madry et al.)
    random_start: bool = True
    objective: str = "ce"  # "dlr" (benchmark.attacks.losses), or "likelihood": the plugin's own loss
    stop_when_broken: bool = True  # non-random models: drop an example once misclassified (module docstring)

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        alpha = self.step_size * eps / self.steps
        best_x = x.clone()
        best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
        early_stop = self.stop_when_broken and not predictor.is_random
        broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            # the start is drawn for the whole batch, so the generator's stream does not depend on who is left
            start = project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps) if self.random_start else x.clone()
            live = torch.nonzero(~broken).squeeze(1)
            x_adv, x_live, y_live = start[live], x[live], y[live]
            for step in range(self.steps + 1):
                if len(live) == 0:
                    break
                g = input_gradient(predictor, x_adv, y_live, draws, self.objective)
                score = g.loss if predictor.is_random else g.loss + 1e6 * g.wrong.float()  # scores x_adv
                improved = score > best_score[live]
                best_x[live[improved]] = x_adv[improved]
                if predictor.is_random and improved.any():  # the winner's score on draws that did not select it
                    with torch.no_grad():
                        score = score.clone()
                        score[improved] = objective_loss(predictor, x_adv[improved], y_live[improved], draws,
                                                         self.objective)[0]
                best_score[live[improved]] = score[improved]
                if step == self.steps:
                    break
                x_adv = project(x_adv + alpha * g.grad.sign(), x_live, eps).detach()
                if early_stop and g.wrong.any():
                    broken[live[g.wrong]] = True
                    keep = ~g.wrong
                    live, x_adv, x_live, y_live = live[keep], x_adv[keep], x_live[keep], y_live[keep]
        return best_x
