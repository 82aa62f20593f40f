"""AutoAttack: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, run on the harness's own attacks.

Deterministic, moment and ensemble models get the standard version: APGD-CE, APGD-T, FAB-T and Square
(:class:`~apgd.APGD`, :class:`~fab.FAB`, :class:`~square.Square`) with the paper's budgets (100 steps, one
restart, nine target classes, 5,000 queries), on the log of the deployed predictive distribution. As in
the paper each stage attacks only the examples every earlier stage left correctly classified, and within
each stage an example leaves the moment it is misclassified: the robust accuracy is that of running every
stage on every example, at the cost of attacking only what is still standing. Where a dataset has fewer
than ten classes the targets are C - 1; the targeted DLR loss of APGD-T needs four classes and the DLR
loss three: below that those stages are replaced (APGD-DLR for three classes) or left out (two classes),
and the settings say so.

Stochastic models get APGD-CE and APGD-DLR on the K-draw average of the deployed rule (the ``rand``
version's stages; its own code averages single-draw gradients instead), every example attacked with every
stage; per example the candidate with the lowest true-class probability under fresh draws is kept. The
harness re-evaluates the final points with fresh randomness; no single check here decides that one is
broken.

pyautoattack is the cross-check: the tests hold this engine to at least its strength on the same points.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from benchmark.attacks.apgd import APGD
from benchmark.attacks.base import Attack, project
from benchmark.attacks.fab import FAB
from benchmark.attacks.square import Square
from benchmark.predictive import Predictor

#: the standard version: its stages, APGD and FAB steps, target classes and Square queries (for ten classes)
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
STANDARD_STEPS = 100
STANDARD_TARGETS = 9
STANDARD_SQUARE_QUERIES = 5000


@dataclass(frozen=True)
class AutoAttack(Attack):
    """AutoAttack's standard ensemble, or APGD-CE and APGD-DLR on the K-draw average for stochastic models."""

    seed: int = 0
    steps: int = STANDARD_STEPS  # of every APGD and FAB stage
    queries: int = STANDARD_SQUARE_QUERIES  # of the Square stage

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

    def stage_attack(self, stage: str, classes: int) -> Attack:
        """The attack behind one stage, with the standard version's settings."""
        targets = min(STANDARD_TARGETS, classes - 1)
        return {"apgd-ce": APGD(loss="ce", steps=self.steps, seed=self.seed),
                "apgd-dlr": APGD(loss="dlr", steps=self.steps, seed=self.seed),
                "apgd-t": APGD(loss="dlr-targeted", steps=self.steps, targets=targets, seed=self.seed),
                "fab-t": FAB(steps=self.steps, targets=targets, seed=self.seed),
                "square": Square(queries=self.queries, seed=self.seed)}[stage]

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        if predictor.num_classes is None:  # learnt from the first output
            with torch.no_grad():
                predictor.probs(x[:1], draws)
        stages = [self.stage_attack(s, predictor.num_classes) for s in self.stages(predictor, predictor.num_classes)]
        if predictor.is_random:
            return self._best_of(stages, predictor, x, y, eps, draws)
        x_adv = x.clone()
        with torch.no_grad():
            standing = predictor.probs(x).argmax(1) == y
        for attack in stages:
            index = torch.nonzero(standing).squeeze(1)
            if len(index) == 0:
                break
            candidate = attack(predictor, x[index], y[index], eps, draws)
            with torch.no_grad():
                broken = predictor.probs(candidate).argmax(1) != y[index]
            x_adv[index[broken]] = candidate[broken]
            standing[index[broken]] = False
        return project(x_adv, x, eps)

    @staticmethod
    def _best_of(stages: list[Attack], predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float,
                 draws: int) -> torch.Tensor:
        """Every stage on every example; per example the candidate of lowest true-class probability under one
        fresh K-draw evaluation (a noisy model's final check would otherwise lock in lucky draws)."""
        best, best_p = x.clone(), torch.full((x.shape[0],), float("inf"), device=x.device)
        for attack in stages:
            candidate = attack(predictor, x, y, eps, draws)
            with torch.no_grad():
                p_true = predictor.probs(candidate, draws).gather(1, y[:, None]).squeeze(1)
            better = p_true < best_p
            best[better], best_p[better] = candidate[better], p_true[better]
        return project(best, x, eps)
