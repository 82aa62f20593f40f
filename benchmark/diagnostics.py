"""Gradient-masking diagnostics: named flags on the leaderboard row, each backed by evidence rows in
metrics.csv (condition ``diagnostics``), so a reviewer can check why a flag fired.

The checks follow Athalye, Carlini & Wagner 2018 ("Obfuscated Gradients Give a False Sense of Security"),
Carlini et al. 2019 ("On Evaluating Adversarial Robustness") and Tramer et al. 2020 ("On Adaptive Attacks").
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

ZERO_GRAD_TOLERANCE = 0.01  # share of clean inputs with an all-zero input gradient
CHANCE_MARGIN = 0.05  # accuracy at the large eps may exceed chance by at most this much
STEPS_TOLERANCE = 0.01  # robust accuracy may not rise by more than this with 5x the PGD steps
EOT_TOLERANCE = 0.01  # robust accuracy may not move by more than this between K and 2K draws
BLACKBOX_TOLERANCE = 0.005  # share of examples black-box attacks may break that white-box ones missed
OUTPUT_VARIATION_TOLERANCE = 1e-6  # max |difference| of two identical passes of a non-random model

FLAGS = {
    "eps-no-collapse": "accuracy under PGD at a large eps (0.5 on MNIST-scale, 64/255 on colour images) stays "
                       f"above chance + {CHANCE_MARGIN:.0%}: the attack is not reaching the model",
    "more-steps-helps-model": f"robust accuracy rises by more than {STEPS_TOLERANCE:.0%} when PGD gets 5x the steps: "
                              "the optimisation is not converging",
    "eot-not-converged": f"robust accuracy moves by more than {EOT_TOLERANCE:.0%} between K and 2K EOT draws",
    "blackbox-beats-whitebox": f"Square or the transfer attack breaks more than {BLACKBOX_TOLERANCE:.1%} of the examples "
                               "that every white-box attack missed: the gradients are masked",
    "zero-grad": f"more than {ZERO_GRAD_TOLERANCE:.0%} of clean inputs have an all-zero input gradient",
    "nan-grad": "some clean input has a non-finite input gradient",
    "probability-output": "the network's outputs already sum to one per row: probabilities fed to a cross-entropy",
    "randomness-unreported": "two identical forward passes differ although the plugin is declared non-random",
    "condition-failed": "an evaluation condition failed (the plugin raised, or returned NaN/inf or a wrong shape): "
                        "its metrics are missing, see the report",
}


def evidence_rows(eps: float, large_eps: float, attacks: dict[str, bool],
                  load: Callable[[str], np.ndarray], accuracy: Callable[[str, float], float]) -> list[dict]:
    """The numbers the attack-based flags are decided on.

    ``attacks`` maps attack names run at ``eps`` to whether they are white-box; ``load(condition_id)`` gives
    a condition's [R, N] correctness, or None if it failed; ``accuracy(name, eps)`` its mean accuracy, or
    NaN if it failed. Evidence that rests on a failed condition is left out.
    """
    from benchmark.evaluation import Condition

    rows = [("large_eps_accuracy", accuracy("pgd", large_eps)),
            ("more_steps_gain", accuracy("pgd-long", eps) - accuracy("pgd", eps))]
    if "pgd-eot2x" in attacks:
        rows.append(("eot_change", abs(accuracy("pgd-eot2x", eps) - accuracy("pgd", eps))))
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
    """The flags that fired, in the order of :data:`FLAGS`."""
    diag = metrics[metrics.condition == "diagnostics"].set_index("metric").value
    fired = {
        "eps-no-collapse": diag.get("large_eps_accuracy", 0.0) > 1 / num_classes + CHANCE_MARGIN,
        "more-steps-helps-model": diag.get("more_steps_gain", 0.0) > STEPS_TOLERANCE,
        "eot-not-converged": diag.get("eot_change", 0.0) > EOT_TOLERANCE,
        "blackbox-beats-whitebox": diag.get("blackbox_gain", 0.0) > BLACKBOX_TOLERANCE,
        "zero-grad": diag.get("zero_grad_share", 0.0) > ZERO_GRAD_TOLERANCE,
        "nan-grad": diag.get("nan_grad_share", 0.0) > 0,
        "probability-output": diag.get("probability_output_share", 0.0) > 0.5,
        "randomness-unreported": predictive != "stochastic" and diag.get("output_variation", 0.0) > OUTPUT_VARIATION_TOLERANCE,
        "condition-failed": bool((metrics.metric == "failed").any()),
    }
    return [name for name in FLAGS if fired[name]]
