"""The convergence check of an attack set: its strongest attack run again with twice its budget.

A robust accuracy is only as good as the attacks behind it. Carlini et al. 2019 ("On Evaluating Adversarial
Robustness", Sec. 4) ask that an evaluation show its attacks have converged: more iterations must not find
more. The plan's attacks are listed strongest first (:data:`~benchmark.attacks.plan.STRONGEST`); the first a
model gets is run again with twice its steps and queries, at the dataset's eps, on the examples every attack
left standing. What it breaks there enters the worst case, and the ``strongest-attack-not-converged`` flag
fires when it breaks more than re-evaluation noise explains: doubling still paid, so the number may be too high.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from benchmark.attacks.base import Attack
from benchmark.predictive import Predictor

#: the settings that are an attack's budget: doubled
BUDGETS = ("steps", "queries")


@dataclass(frozen=True)
class Doubled(Attack):
    """The first of ``of`` (condition names, strongest first) that a model gets, with twice its budget."""

    of: tuple[str, ...] = ()
    attack: Attack | None = None
    doubles: str = ""  # the condition whose attack was doubled

    def bound_to(self, attacks: dict[str, Attack]) -> Doubled | None:
        """The check bound to the attacks a model gets (condition name -> attack, already bound to the run), or
        None where it gets none of ``of``."""
        name = next((name for name in self.of if name in attacks), None)
        if name is None:
            return None
        inner = attacks[name]
        budget = {field: 2 * getattr(inner, field) for field in BUDGETS if hasattr(inner, field)}
        return replace(self, attack=replace(inner, **budget), doubles=name)

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        if self.attack is None:
            raise ValueError("a Doubled check runs bound to a model's attacks (Doubled.bound_to)")
        return self.attack(predictor, x, y, eps, draws)

    def settings(self, predictor: Predictor) -> dict:
        inner = self.attack.settings(predictor) if self.attack is not None else {}
        return {"doubles": self.doubles, "attack": type(self.attack).__name__, **inner}
