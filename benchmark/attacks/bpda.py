"""BPDA variants: an attack run through another backward pass of a network whose forward is not differentiable.

Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security: Circumventing Defenses to
Adversarial Examples", ICML 2018, section 4.1: where a layer's forward has no useful derivative, back-propagate
through a differentiable approximation of it. Which approximation guides the attack best is not known in advance,
and the one a network was trained with need not be it: a plugin whose ``gradients`` are surrogates names others
(``ModelPlugin.gradient_variants``), and each becomes an attack of its own, ``<planned name>-<variant>``. The
wrapped attack is unchanged; only the derivative its gradients are computed with differs, so its result is an
ordinary white-box result and enters the worst case as one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

import torch

from benchmark.attacks.base import Attack
from benchmark.predictive import Predictor


@dataclass(frozen=True)
class BPDA(Attack):
    """``attack`` with the network's backward switched to ``variant`` (``switch()``) while it runs."""

    attack: Attack
    variant: str
    switch: Callable[[], AbstractContextManager] = field(compare=False, repr=False)

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        with self.switch():
            return self.attack(predictor, x, y, eps, draws)

    def for_run(self, seed: int, surrogate) -> BPDA:
        return replace(self, attack=self.attack.for_run(seed, surrogate))

    def settings(self, predictor: Predictor) -> dict:
        return {"backward": self.variant, **self.attack.settings(predictor)}
