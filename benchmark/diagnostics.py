"""Gradient-masking diagnostics: named flags on the leaderboard row, each backed by evidence rows in
metrics.csv (condition ``diagnostics``), so a reviewer can check why a flag fired.

Every flag is declared once, in :data:`FLAGS`: its name, the metric it is decided on, its threshold, when it
fires and what that means. :func:`flags` (the leaderboard row) and the report (its table of checks) read it.

The checks follow Athalye, Carlini & Wagner 2018 ("Obfuscated Gradients Give a False Sense of Security"),
Carlini et al. 2019 ("On Evaluating Adversarial Robustness") and Tramer et al. 2020 ("On Adaptive Attacks").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.attacks.plan import MAIN, MORE_DRAWS, MORE_STEPS
from benchmark.randomness import SHARED_CORRELATION

ZERO_GRAD_TOLERANCE = 0.01  # share of clean inputs with an all-zero input gradient
CHANCE_MARGIN = 0.05  # accuracy at the large eps may exceed chance by at most this much
STEPS_TOLERANCE = 0.01  # robust accuracy may not rise by more than this with 5x the PGD steps
EOT_TOLERANCE = 0.01  # robust accuracy may not move by more than this between K and 2K draws
BLACKBOX_TOLERANCE = 0.005  # share of examples black-box attacks may break that white-box ones missed
OUTPUT_VARIATION_TOLERANCE = 1e-6  # max |difference| of two identical passes of a non-random model
PROBABILITY_OUTPUT_SHARE = 0.5  # share of output rows that already sum to one


def _above(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return value > threshold


def _above_chance(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return value > 1 / num_classes + threshold


def _above_unless_random(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return predictive != "stochastic" and value > threshold


@dataclass(frozen=True)
class Flag:
    """One gradient-masking check.

    ``evidence`` is the metric of condition ``diagnostics`` in metrics.csv it is decided on (absent counts as
    0.0); None means the number of failed conditions (rows with metric ``failed``). ``fires(value, threshold,
    num_classes, predictive)`` says whether the flag fires; ``meaning`` is what a fired flag tells a reader.
    """

    name: str
    evidence: str | None
    threshold: float
    meaning: str
    fires: Callable[[float, float, int, str], bool] = _above

    def value(self, metrics: pd.DataFrame) -> float:
        """The evidence of this flag in ``metrics``."""
        if self.evidence is None:
            return float((metrics.metric == "failed").sum())
        return metrics[metrics.condition == "diagnostics"].set_index("metric").value.get(self.evidence, 0.0)

    def fired(self, metrics: pd.DataFrame, num_classes: int, predictive: str) -> bool:
        return bool(self.fires(self.value(metrics), self.threshold, num_classes, predictive))


#: Every flag, in the order the leaderboard's ``flags`` column lists them.
FLAGS: tuple[Flag, ...] = (
    Flag("eps-no-collapse", "large_eps_accuracy", CHANCE_MARGIN,
         "accuracy under PGD at a large eps (0.5 on MNIST-scale, 64/255 on colour images) stays "
         f"above chance + {CHANCE_MARGIN:.0%}: the attack is not reaching the model", _above_chance),
    Flag("more-steps-helps-model", "more_steps_gain", STEPS_TOLERANCE,
         f"robust accuracy rises by more than {STEPS_TOLERANCE:.0%} when PGD gets 5x the steps: "
         "the optimisation is not converging"),
    Flag("eot-not-converged", "eot_change", EOT_TOLERANCE,
         f"robust accuracy moves by more than {EOT_TOLERANCE:.0%} between K and 2K EOT draws"),
    Flag("blackbox-beats-whitebox", "blackbox_gain", BLACKBOX_TOLERANCE,
         f"Square or the transfer attack breaks more than {BLACKBOX_TOLERANCE:.1%} of the examples "
         "that every white-box attack missed: the gradients are masked"),
    Flag("zero-grad", "zero_grad_share", ZERO_GRAD_TOLERANCE,
         f"more than {ZERO_GRAD_TOLERANCE:.0%} of clean inputs have an all-zero input gradient"),
    Flag("nan-grad", "nan_grad_share", 0.0, "some clean input has a non-finite input gradient"),
    Flag("probability-output", "probability_output_share", PROBABILITY_OUTPUT_SHARE,
         "the network's outputs already sum to one per row: probabilities fed to a cross-entropy"),
    Flag("randomness-unreported", "output_variation", OUTPUT_VARIATION_TOLERANCE,
         "two identical forward passes differ although the plugin is declared non-random", _above_unless_random),
    Flag("shared-randomness", "row_correlation", SHARED_CORRELATION,
         "copies of one input in one batch get correlated outputs: the network shares its random draw across "
         "the batch, so the K EOT draws and S decision draws are fewer than they seem"),
    Flag("condition-failed", None, 0.0,
         "an evaluation condition failed (the plugin raised, or returned NaN/inf or a wrong shape): "
         "its metrics are missing, see the report"),
)


def evidence_rows(eps: float, large_eps: float, attacks: dict[str, bool],
                  load: Callable[[str], np.ndarray], accuracy: Callable[[str, float], float]) -> list[dict]:
    """The numbers the attack-based flags are decided on.

    ``attacks`` maps attack names run at ``eps`` to whether they are white-box; ``load(condition_id)`` gives
    a condition's [R, N] correctness, or None if it failed; ``accuracy(name, eps)`` its mean accuracy, or
    NaN if it failed. Evidence that rests on a failed condition is left out.
    """
    from benchmark.evaluation import Condition

    rows = [("large_eps_accuracy", accuracy(MAIN, large_eps)),
            ("more_steps_gain", accuracy(MORE_STEPS, eps) - accuracy(MAIN, eps))]
    if MORE_DRAWS in attacks:
        rows.append(("eot_change", abs(accuracy(MORE_DRAWS, eps) - accuracy(MAIN, eps))))
    correct = {"clean": load(Condition("clean").id)} | {name: load(Condition(name, eps).id) for name in attacks}
    if all(c is not None for c in correct.values()):
        white = correct["clean"]
        for name, is_white in attacks.items():
            if is_white:
                white = white & correct[name]
        every = white
        for name, is_white in attacks.items():
            if not is_white:
                every = every & correct[name]
        rows.append(("blackbox_gain", float(white.mean() - every.mean())))
    return [{"condition": "diagnostics", "param": None, "metric": metric, "value": float(value)}
            for metric, value in rows if not np.isnan(value)]


def flags(metrics: pd.DataFrame, num_classes: int, predictive: str) -> list[str]:
    """The names of the flags that fired, in the order of :data:`FLAGS`."""
    return [flag.name for flag in FLAGS if flag.fired(metrics, num_classes, predictive)]
