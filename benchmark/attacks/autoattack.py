"""AutoAttack through pyautoattack: Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020.

Deterministic, moment and ensemble models get the standard version (APGD-CE, APGD-T, FAB-T, Square) on
the log of their predictive distribution, with C - 1 target classes where a dataset has fewer than ten.
The targeted DLR loss of APGD-T needs four classes and the DLR loss three: below that those stages are
replaced (APGD-DLR for three classes) or left out (two classes), and the settings say so.

Stochastic models get APGD-CE and APGD-DLR, where every forward
pass APGD makes is the log-mean-exp over ``draws`` batched samples, so each step follows the deployed
rule (pyautoattack's own ``rand`` version averages single-draw gradients instead). Their final points are
re-evaluated with fresh randomness by the harness, not trusted from AutoAttack's last pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from benchmark.attacks.base import Attack, project
from benchmark.predictive import DeployedRule, Predictor

#: the standard version: its stages, target classes and Square queries (for at least ten classes)
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
STANDARD_TARGETS = 9
STANDARD_SQUARE_QUERIES = 5000


@dataclass(frozen=True)
class AutoAttack(Attack):
    """AutoAttack's standard ensemble, or APGD-CE and APGD-DLR on the K-draw average for stochastic models."""

    name = "autoattack"
    seed: int = 0

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> AutoAttack:
        return replace(self, seed=seed)

    def version_for(self, predictor: Predictor) -> str:
        return "rand-eot" if predictor.is_random else "standard"

    def settings(self, predictor: Predictor) -> dict:
        classes = predictor.num_classes
        stages = self.stages(predictor, classes) if classes else None
        return {**super().settings(predictor), "version": self.version_for(predictor), "stages": stages}

    def stages(self, predictor: Predictor, classes: int) -> list[str]:
        """The AutoAttack stages run for ``classes`` classes: APGD-T's targeted DLR needs four classes,
        the DLR loss three (Croce & Hein 2020, eq. 4 and its targeted form)."""
        if predictor.is_random:
            return ["apgd-ce", "apgd-dlr"] if classes >= 3 else ["apgd-ce"]
        if classes >= 4:
            return list(STANDARD)
        return ["apgd-ce", "apgd-dlr", "fab-t", "square"] if classes == 3 else ["apgd-ce", "fab-t", "square"]

    def __call__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        from pyautoattack import AutoAttack as PyAutoAttack

        logging.getLogger("auto-attack").setLevel(logging.ERROR)
        model = DeployedRule(predictor, draws)
        if predictor.num_classes is None:  # learnt from the first output
            with torch.no_grad():
                model(x[:1])
        if predictor.is_random:
            return project(self._apgd_eot(predictor, model, x.contiguous(), y, eps, draws), x, eps)
        classes = predictor.num_classes
        aa = PyAutoAttack(model, version="custom", attacks=self.stages(predictor, classes), eps=eps, norm="Linf",
                          seed=self.seed, device=x.device)
        # the standard version's settings (pyautoattack's _set_version), targets capped by the class count
        aa.apgd.n_restarts = aa.fab.n_restarts = aa.apgd_targeted.n_restarts = 1
        aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = min(STANDARD_TARGETS, classes - 1)
        aa.square.n_queries = STANDARD_SQUARE_QUERIES
        aa.verbose = False
        x_adv, _ = aa.run_standard_evaluation(x.contiguous(), y, batch_size=x.shape[0])
        return project(x_adv.detach(), x, eps)

    def _apgd_eot(self, predictor: Predictor, model: DeployedRule, x: torch.Tensor, y: torch.Tensor,
                  eps: float, draws: int) -> torch.Tensor:
        """APGD-CE and APGD-DLR on the K-draw average, each returning its highest-loss point for every
        example (AutoAttack's own loop would hand back the clean input wherever one noisy check said the
        model was right, and lock in points one noisy check called broken). Per example, the candidate with
        the lower true-class probability under fresh draws is kept."""
        from pyautoattack.autopgd_base import APGDAttack

        apgd = APGDAttack(model, n_restarts=1, n_iter=100, eps=eps, norm="Linf", eot_iter=1, rho=0.75,
                          seed=self.seed, device=x.device, verbose=False)
        best, best_p = x.clone(), torch.full((x.shape[0],), float("inf"), device=x.device)
        for stage in self.stages(predictor, predictor.num_classes):
            apgd.loss = stage.removeprefix("apgd-")
            candidate = apgd.perturb(x, y, best_loss=True).detach()
            p_true = predictor.probs(candidate, draws).gather(1, y[:, None]).squeeze(1)
            better = p_true < best_p
            best[better], best_p[better] = candidate[better], p_true[better]
        return best
