"""Transfer attack: PGD on a deterministic surrogate, evaluated on the model under test.

If a model's own gradients are masked (stochastic, quantized, saturated), adversarial examples crafted on
a smooth surrogate of the same data often still fool it (Papernot et al. 2017; Athalye et al. 2018). The
surrogate is the plugin's own deterministic version where it declares one (e.g. posterior-mean weights,
dropout off), else the baseline trained on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from benchmark.attacks.base import Attack
from benchmark.attacks.pgd import PGD
from benchmark.predictive import Predictor


@dataclass(frozen=True)
class Transfer(Attack):
    """PGD crafted on a deterministic surrogate, evaluated on the model under test."""

    white_box = False
    surrogate: Predictor | None = field(default=None, compare=False, repr=False)
    surrogate_name: str = "baseline"
    steps: int = 20
    restarts: int = 1

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> Transfer:
        if surrogate is None:
            raise ValueError("the transfer attack needs a surrogate; plan it with needs='surrogate'")
        name, predictor = surrogate
        return replace(self, surrogate=predictor, surrogate_name=name)

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        return PGD(steps=self.steps, restarts=self.restarts, stop_when_broken=False)(self.surrogate, x, y, eps, 1)

    def settings(self, predictor: Predictor) -> dict:
        return {"surrogate": self.surrogate_name, "steps": self.steps, "restarts": self.restarts}
