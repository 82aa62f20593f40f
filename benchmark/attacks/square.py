"""Square Attack through pyautoattack: Andriushchenko et al., "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020.

A black-box check on the white-box attacks: it needs no gradient, so gradient masking cannot stop it.
For stochastic models each query is the K-draw average (the margin loss of the deployed rule, averaged
over EOT draws), so random-search steps are not chased by single-draw noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from benchmark.attacks.base import Attack, project
from benchmark.predictive import DeployedRule, Predictor


@dataclass(frozen=True)
class Square(Attack):
    """Gradient-free random search on the deployed rule's margin: the check against gradient masking."""

    name = "square"
    white_box = False
    queries: int = 1000
    p_init: float = 0.8
    seed: int = 0

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> Square:
        return replace(self, seed=seed)

    def __call__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        from pyautoattack.square import SquareAttack

        logging.getLogger("auto-attack").setLevel(logging.ERROR)
        attack = SquareAttack(DeployedRule(predictor, draws), p_init=self.p_init, n_queries=self.queries, eps=eps,
                              norm="Linf", n_restarts=1, seed=self.seed, verbose=False, device=x.device,
                              resc_schedule=False)
        with torch.no_grad():
            x_adv = attack.perturb(x.contiguous(), y)
        return project(x_adv.detach(), x, eps)
