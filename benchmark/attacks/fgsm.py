"""FGSM: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.attacks.base import Attack, input_gradient, project
from benchmark.predictive import Predictor


@dataclass(frozen=True)
class FGSM(Attack):
    """One signed-gradient step of size eps on the deployed rule's loss."""

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        grad = input_gradient(predictor, x, y, draws).grad
        return project(x + eps * grad.sign(), x, eps).detach()
