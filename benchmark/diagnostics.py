"""Gradient-masking diagnostics: named flags on the leaderboard row, each backed by evidence rows in
metrics.csv (condition ``diagnostics``), so a reviewer can check why a flag fired.

Every flag is declared once, in :data:`FLAGS`: its name, the metric it is decided on, its threshold, when it
fires and what that means. :func:`flags` (the leaderboard row) and the report (its table of checks) read it.

The checks follow Athalye, Carlini & Wagner 2018 ("Obfuscated Gradients Give a False Sense of Security"),
Carlini et al. 2019 ("On Evaluating Adversarial Robustness") and Tramer et al. 2020 ("On Adaptive Attacks").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmark.attacks.plan import MAIN, MORE_DRAWS, MORE_STEPS
from benchmark.names import CLEAN, DIAGNOSTICS, condition_id, metric_row
from benchmark.randomness import SHARED_CORRELATION

if TYPE_CHECKING:  # the reader builds the leaderboard row from these flags: a runtime import would be a cycle
    from benchmark.results import RunResults

ZERO_GRAD_TOLERANCE = 0.01  # share of clean inputs with an all-zero input gradient
CHANCE_MARGIN = 0.05  # accuracy at the large eps may exceed chance by at most this much
#: significance level of the paired tests that compare two attacks on the same examples (:func:`sign_test`):
#: a difference that re-evaluation noise alone would produce this rarely fires a flag
ALPHA = 0.01
OUTPUT_VARIATION_TOLERANCE = 1e-6  # max |difference| of two identical passes of a non-random model
PROBABILITY_OUTPUT_SHARE = 0.5  # share of output rows that already sum to one


def _above(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return value > threshold


def _above_chance(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return value > 1 / num_classes + threshold


def _above_unless_random(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return predictive != "stochastic" and value > threshold


def _below(value: float, threshold: float, num_classes: int, predictive: str) -> bool:
    return value < threshold


@dataclass(frozen=True)
class Flag:
    """One gradient-masking check.

    ``evidence`` is the metric of condition ``diagnostics`` in metrics.csv it is decided on (absent counts as
    0.0); None means the number of failed conditions. ``fires(value, threshold, num_classes, predictive)`` says
    whether the flag fires; ``meaning`` is what a fired flag tells a reader.
    """

    name: str
    evidence: str | None
    threshold: float
    meaning: str
    fires: Callable[[float, float, int, str], bool] = _above
    absent: float = 0.0  # the evidence's value when it was not measured (a p-value: 1)

    def value(self, results: RunResults) -> float:
        """The evidence of this flag in a run's results."""
        if self.evidence is None:
            return float(len(results.failed))
        return results.evidence.get(self.evidence, self.absent)

    def fired(self, results: RunResults, num_classes: int, predictive: str) -> bool:
        return bool(self.fires(self.value(results), self.threshold, num_classes, predictive))


#: Every flag, in the order the leaderboard's ``flags`` column lists them.
FLAGS: tuple[Flag, ...] = (
    Flag("eps-no-collapse", "large_eps_accuracy", CHANCE_MARGIN,
         "accuracy under PGD at a large eps (0.5 on MNIST-scale, 64/255 on colour images) stays "
         f"above chance + {CHANCE_MARGIN:.0%}: the attack is not reaching the model", _above_chance),
    Flag("more-steps-helps-model", "more_steps_p", ALPHA,
         "examples survive PGD with 5x the steps that PGD broke, more often than re-evaluation noise explains "
         f"(one-sided paired sign test, p < {ALPHA}): the loss landscape misleads the attack", _below, 1.0),
    Flag("short-attack-not-converged", "fewer_steps_p", ALPHA,
         "PGD with 5x the steps breaks examples PGD missed, more often than re-evaluation noise explains "
         f"(one-sided paired sign test, p < {ALPHA}): the profile's PGD had not converged", _below, 1.0),
    Flag("eot-not-converged", "eot_p", ALPHA,
         f"PGD with 2K EOT draws and with K draws disagree on examples beyond noise (two-sided paired sign test, "
         f"p < {ALPHA})", _below, 1.0),
    Flag("blackbox-beats-whitebox", "blackbox_p", ALPHA,
         "Square or the transfer attack breaks examples that every white-box attack missed, more of them than "
         f"chance explains (one-sided paired sign test, p < {ALPHA}): the gradients are masked", _below, 1.0),
    Flag("zero-grad", "zero_grad_share", ZERO_GRAD_TOLERANCE,
         f"more than {ZERO_GRAD_TOLERANCE:.0%} of clean inputs have an all-zero input gradient"),
    Flag("shattered-gradients", "exact_zero_grad_share", ZERO_GRAD_TOLERANCE,
         f"under the forward's true derivative more than {ZERO_GRAD_TOLERANCE:.0%} of clean inputs have an all-zero "
         "input gradient (a piecewise-constant forward, e.g. spikes: shattered gradients, Athalye et al. 2018): the "
         "white-box attacks follow surrogate derivatives (BPDA), the plugin's and the pgd-bpda variants, and the "
         "robust accuracy rests on the worst case over them and the black-box attacks"),
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


def sign_test(first: np.ndarray, second: np.ndarray) -> float:
    """One-sided paired sign test over examples (exact McNemar for binary outcomes): the probability, were
    both attacks equally strong, that ``first`` leaves at least this many examples more robust than
    ``second`` does. ``first`` and ``second`` are [R, N] correctness arrays of the same examples; each
    example's outcome is its share of the R re-evaluations it survived, so re-evaluation noise is in the
    null hypothesis rather than in the evidence."""
    a, b = first.mean(axis=0), second.mean(axis=0)
    wins, losses = int((a > b).sum()), int((a < b).sum())
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n if n else 1.0


def evidence_rows(eps: float, large_eps: float, attacks: dict[str, bool],
                  load: Callable[[str], np.ndarray], accuracy: Callable[[str, float], float],
                  sweep: Sequence[float] = (), bpda: Sequence[str] = ()) -> list[dict]:
    """The numbers the attack-based flags are decided on: accuracy differences for the reader, and the
    p-values of paired sign tests over examples (:func:`sign_test`) that the flags fire on.

    ``attacks`` maps attack names run at ``eps`` (and at every eps of ``sweep``) to whether they are white-box;
    ``load(condition_id)`` gives a condition's [R, N] correctness, or None if it failed; ``accuracy(name, eps)``
    its mean accuracy, or NaN if it failed. The black-box check looks at every eps of the sweep (the cascade
    leaves an eps only the survivors of the smaller ones), Bonferroni-corrected. ``bpda`` names the attacks that
    ran the main attack through other backward passes: ``surrogate_gain`` is how much lower the strongest of them
    left the accuracy than the main attack through the plugin's own, the largest such difference over the sweep
    (the cascade leaves a large eps only the survivors of the smaller ones; :func:`strongest_backward` names it).
    Evidence that rests on a failed condition is left out.
    """
    rows = [("large_eps_accuracy", accuracy(MAIN, large_eps)),
            ("more_steps_gain", accuracy(MORE_STEPS, eps) - accuracy(MAIN, eps))]
    if MORE_DRAWS in attacks:
        rows.append(("eot_change", abs(accuracy(MORE_DRAWS, eps) - accuracy(MAIN, eps))))
    if bpda:  # np.min is NaN where one of them failed: that eps is left out
        gains = [accuracy(MAIN, at) - float(np.min([accuracy(name, at) for name in bpda]))
                 for at in sorted({eps, *sweep})]
        rows.append(("surrogate_gain", max((g for g in gains if not np.isnan(g)), default=float("nan"))))
    # the paired comparisons at every eps of the sweep, Bonferroni-corrected: under the cascade an eps holds only
    # the survivors of the smaller ones, so at the dataset eps alone there may be nothing left to compare
    tests = {"more_steps_p": [], "fewer_steps_p": [], "eot_p": []}
    gains, p_values = [], []
    for at in sorted({eps, *sweep}):
        correct = {CLEAN: load(condition_id(CLEAN))} | {name: load(condition_id(name, at)) for name in attacks}
        main, longer, more_draws = (correct.get(name) for name in (MAIN, MORE_STEPS, MORE_DRAWS))
        if main is not None and longer is not None:
            tests["more_steps_p"].append(sign_test(longer, main))
            tests["fewer_steps_p"].append(sign_test(main, longer))
        if main is not None and more_draws is not None:
            tests["eot_p"].append(min(1.0, 2 * min(sign_test(more_draws, main), sign_test(main, more_draws))))
        if any(c is None for c in correct.values()):
            continue
        white = correct[CLEAN]
        for name, is_white in attacks.items():
            if is_white:
                white = white & correct[name]
        every = white
        for name, is_white in attacks.items():
            if not is_white:
                every = every & correct[name]
        gains.append(float(white.mean() - every.mean()))
        p_values.append(sign_test(white, every))
    rows += [(metric, min(1.0, len(p) * min(p))) for metric, p in tests.items() if p]
    if p_values:
        rows += [("blackbox_gain", max(gains)), ("blackbox_p", min(1.0, len(p_values) * min(p_values)))]
    return [metric_row(DIAGNOSTICS, None, metric, value) for metric, value in rows if not np.isnan(value)]


def strongest_backward(accuracies: dict[str, float]) -> str | None:
    """The attack, among the main one through the plugin's own backward and its runs through other backward passes
    (``accuracies``: name -> accuracy at one eps, in plan order), that left the lowest accuracy; the first on a tie,
    so the plugin's own wins ties when listed first; None when none finished."""
    finished = {name: value for name, value in accuracies.items() if not np.isnan(value)}
    return min(finished, key=finished.get) if finished else None


def flags(results: RunResults, num_classes: int, predictive: str) -> list[str]:
    """The names of the flags that fired in a run's results, in the order of :data:`FLAGS`."""
    return [flag.name for flag in FLAGS if flag.fired(results, num_classes, predictive)]
