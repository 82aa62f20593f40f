"""AutoAttack through pyautoattack: Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020.

Deterministic, moment and ensemble models get the standard version (APGD-CE, APGD-T, FAB-T, Square) on
the log of their predictive distribution. Stochastic models get APGD-CE and APGD-DLR, where every forward
pass AutoAttack makes is the log-mean-exp over ``draws`` batched samples, so each step follows the
deployed rule (pyautoattack's own ``rand`` version averages single-draw gradients instead). Their final
points are re-evaluated with fresh randomness by the harness, not trusted from AutoAttack's last pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from benchmark.attacks.base import Attack, project
from benchmark.predictive import DeployedRule, Predictor


@dataclass(frozen=True)
class AutoAttack(Attack):
    name = "autoattack"
    seed: int = 0

    def version_for(self, predictor: Predictor) -> str:
        return "rand-eot" if predictor.is_random else "standard"

    def __call__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        from pyautoattack import AutoAttack as PyAutoAttack

        logging.getLogger("auto-attack").setLevel(logging.ERROR)
        model = DeployedRule(predictor, draws)
        if predictor.is_random:
            aa = PyAutoAttack(model, attacks=["apgd-ce", "apgd-dlr"], version="custom", eps=eps,
                              norm="Linf", seed=self.seed, device=x.device)
            aa.apgd.n_restarts = 1
        else:
            aa = PyAutoAttack(model, version="standard", eps=eps, norm="Linf", seed=self.seed, device=x.device)
        aa.verbose = False
        x_adv, _ = aa.run_standard_evaluation(x.contiguous(), y, batch_size=x.shape[0])
        return project(x_adv.detach(), x, eps)
