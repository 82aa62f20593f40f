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
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from benchmark.attacks.base import input_gradient
from benchmark.attacks.plan import DOUBLED, MAIN, MARGIN, MORE_DRAWS, MORE_STEPS, TARGETED
from benchmark.binarization import CORRECT_PASS_RATE, SAMPLE, passes_that_fire
from benchmark.evaluation import Condition, Evaluator
from benchmark.metrics import strongest_point
from benchmark.names import CLEAN, DIAGNOSTICS, condition_id, metric_row
from benchmark.outputs import logits_of
from benchmark.randomness import SHARED_CORRELATION, row_correlation

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
    whether the flag fires; ``meaning`` is what a fired flag tells a reader. A flag is a promise: it ``demotes``
    the row (ranks it apart, unsettles the claims resting on it) only when it says the published number may be
    too high; the others are information for the reader. ``scope`` says which numbers it bears on: the attacks'
    (the robust accuracies) or every number of the run (noise, certified, clean).
    """

    name: str
    evidence: str | None
    threshold: float
    meaning: str
    fires: Callable[[float, float, int, str], bool] = _above
    absent: float = 0.0  # the evidence's value when it was not measured (a p-value: 1)
    demotes: bool = True
    scope: Literal["attacks", "every number"] = "attacks"

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
         f"(one-sided paired sign test, p < {ALPHA}): the short PGD had not converged. Information only: the robust "
         "accuracy already rests on the longer attack", _below, 1.0, demotes=False),
    Flag("strongest-attack-not-converged", "doubled_p", ALPHA,
         "the strongest attack of the plan, run again with twice its steps and queries on the examples every attack "
         "left standing at the dataset's eps, breaks more of them than re-evaluation noise explains (one-sided "
         f"paired sign test, p < {ALPHA}): doubling the budget still pays, so the robust accuracy may be too high",
         _below, 1.0),
    Flag("eot-not-converged", "eot_p", ALPHA,
         f"PGD with 2K EOT draws and with K draws disagree on examples beyond noise (two-sided paired sign test, "
         f"p < {ALPHA})", _below, 1.0),
    Flag("blackbox-beats-whitebox", "blackbox_p", ALPHA,
         "with Square's and the transfer attack's points among the candidates, the one-point worst case breaks more "
         "examples than with the white-box attacks' alone, more than re-evaluation noise explains (one-sided paired "
         f"sign test, p < {ALPHA}): the black-box attacks find what the gradients miss, so they are masked",
         _below, 1.0),
    Flag("losses-disagree", "losses_p", ALPHA,
         "PGD on the cross-entropy and on the DLR margin, or an untargeted attack and the targeted APGD-T, break "
         "different examples, one of the two more of them than chance explains (two-sided paired sign test, "
         f"Bonferroni over the pairs and the eps of the sweep, p < {ALPHA}): no one loss finds the worst case and "
         "the robust accuracy rests on their union. Information only: the union holds both, and a targeted attack "
         "outdoes untargeted ones on plain networks too (a briefly trained MNIST CNN, 300 images, eps 0.2: APGD-T "
         "left 0.050, PGD-20 on the DLR margin 0.097, corrected p = 0.001)", _below, 1.0, demotes=False),
    Flag("binarization-failed", "binarization_p", ALPHA,
         "the run's attacks missed the adversarial example planted in the eps-ball of a two-class readout of the "
         "model's outputs (the binarization test, Zimmermann et al. 2022) more often than an attack that finds it in "
         f"{CORRECT_PASS_RATE:.0%} of the tests would (one-sided binomial test, p < {ALPHA}; of {SAMPLE} conclusive "
         f"tests, {passes_that_fire(SAMPLE, ALPHA)} or fewer passed): the attacks miss adversarial examples that "
         "exist, so the robust accuracy may be too high", _below, 1.0),
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
         "two identical forward passes differ although the plugin is declared non-random", _above_unless_random,
         scope="every number"),
    Flag("shared-randomness", "row_correlation", SHARED_CORRELATION,
         "copies of one input in one batch get correlated outputs: the network shares its random draw across "
         "the batch, so the K EOT draws and S decision draws are fewer than they seem",
         scope="every number"),
    Flag("condition-failed", None, 0.0,
         "an evaluation condition failed (the plugin raised, or returned NaN/inf or a wrong shape): "
         "its metrics are missing, see the report", scope="every number"),
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


def two_sided_sign_test(first: np.ndarray, second: np.ndarray) -> float:
    """:func:`sign_test` in both directions: the probability, were both attacks equally strong, of discordant
    examples at least this lopsided either way."""
    return min(1.0, 2 * min(sign_test(first, second), sign_test(second, first)))


#: the attack pairs the ``losses-disagree`` check compares: the cross-entropy against the DLR margin, and each
#: untargeted loss against the targeted one (a pair is left out where the plan lacks one of its attacks)
LOSS_PAIRS = ((MAIN, MARGIN), (MAIN, TARGETED), (MARGIN, TARGETED))


def evidence_rows(eps: float, large_eps: float, attacks: dict[str, bool],
                  load: Callable[[str], np.ndarray], accuracy: Callable[[str, float], float],
                  sweep: Sequence[float] = (), bpda: Sequence[str] = (),
                  selection: Callable[[str], np.ndarray] | None = None) -> list[dict]:
    """The numbers the attack-based flags are decided on: accuracy differences for the reader, and the
    p-values of paired sign tests over examples (:func:`sign_test`) that the flags fire on.

    ``attacks`` maps attack names run at ``eps`` (and at every eps of ``sweep``) to whether they are white-box;
    ``load(condition_id)`` gives a condition's [R, N] correctness, or None if it failed; ``accuracy(name, eps)``
    its mean accuracy, or NaN if it failed. The paired tests look at every eps of the sweep (the cascade leaves an
    eps only the survivors of the smaller ones), Bonferroni-corrected over it (and over :data:`LOSS_PAIRS`).
    The black-box check compares, at each eps, the one-point worst case (:func:`benchmark.metrics.strongest_point`)
    over clean and the white-box attacks with the one over clean and every attack, each chosen on the selection
    draws (``selection(condition_id)``, a condition's [R, N] selection scores) and judged on its own fresh ones: a
    black-box attack that adds nothing then changes the outcome as often one way as the other, where the
    conjunction of the judged outcomes could only fall. Without ``selection`` it is left out. ``losses_gap`` is the
    largest accuracy difference between the two attacks of a pair of :data:`LOSS_PAIRS`. ``bpda`` names the attacks
    that ran the main attack through other backward passes: ``surrogate_gain`` is how much lower the strongest of
    them left the accuracy than the main attack through the plugin's own, the largest such difference over the
    sweep (the cascade leaves a large eps only the survivors of the smaller ones; :func:`strongest_backward` names
    it). Evidence that rests on a failed condition is left out.
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
    losses_p, losses_gaps = [], []
    for at in sorted({eps, *sweep}):
        correct = {CLEAN: load(condition_id(CLEAN))} | {name: load(condition_id(name, at)) for name in attacks}
        main, longer, more_draws = (correct.get(name) for name in (MAIN, MORE_STEPS, MORE_DRAWS))
        if main is not None and longer is not None:
            tests["more_steps_p"].append(sign_test(longer, main))
            tests["fewer_steps_p"].append(sign_test(main, longer))
        if main is not None and more_draws is not None:
            tests["eot_p"].append(two_sided_sign_test(more_draws, main))
        for first, second in LOSS_PAIRS:
            if correct.get(first) is not None and correct.get(second) is not None:
                losses_p.append(two_sided_sign_test(correct[first], correct[second]))
                losses_gaps.append(abs(float(correct[first].mean() - correct[second].mean())))
        if selection is None or any(c is None for c in correct.values()):
            continue
        # an example an attack did not run on gives no point from it (NaN): a black-box attack left out where a
        # white-box point was broken already must not win there by its absence
        candidates = {name: (correct[name], selection(condition_id(name, at))) for name in attacks}
        clean = (correct[CLEAN], selection(condition_id(CLEAN)))
        white = strongest_point([clean, *(pair for name, pair in candidates.items() if attacks[name])])
        every = strongest_point([clean, *candidates.values()])
        gains.append(float(white.mean() - every.mean()))
        p_values.append(sign_test(white, every))
    rows += [(metric, min(1.0, len(p) * min(p))) for metric, p in tests.items() if p]
    if losses_p:
        rows += [("losses_gap", max(losses_gaps)), ("losses_p", min(1.0, len(losses_p) * min(losses_p)))]
    if p_values:
        rows += [("blackbox_gain", max(gains)), ("blackbox_p", min(1.0, len(p_values) * min(p_values)))]
    return [metric_row(DIAGNOSTICS, None, metric, value) for metric, value in rows if not np.isnan(value)]


def strongest_backward(accuracies: dict[str, float]) -> str | None:
    """The attack, among the main one through the plugin's own backward and its runs through other backward passes
    (``accuracies``: name -> accuracy at one eps, in plan order), that left the lowest accuracy; the first on a tie,
    so the plugin's own wins ties when listed first; None when none finished."""
    finished = {name: value for name, value in accuracies.items() if not np.isnan(value)}
    return min(finished, key=finished.get) if finished else None


def convergence_rows(eps: float, attacks: Sequence[str], load: Callable[[str], np.ndarray | None],
                     selection: Callable[[str], np.ndarray | None]) -> list[dict]:
    """The evidence of ``strongest-attack-not-converged``: at the dataset's ``eps``, the one-point worst case
    (:func:`benchmark.metrics.strongest_point`) over clean and every attack in ``attacks`` (those run there, the
    convergence check left out), against the same with the convergence check's points among the candidates
    (:data:`~benchmark.attacks.plan.DOUBLED`, run on the examples all of them left standing). ``doubled_gain`` is
    how much lower the second left the accuracy, ``doubled_p`` the one-sided paired sign test that it is lower.
    Each worst case is judged on its own candidates' fresh draws, so a check that adds nothing changes outcomes
    as often one way as the other. Nothing where the check did not run or a condition it rests on failed."""
    names = [CLEAN, *(condition_id(name, eps) for name in attacks), condition_id(DOUBLED, eps)]
    candidates = [(load(name), selection(name)) for name in names]
    if any(judged is None or chosen is None for judged, chosen in candidates):
        return []
    without, with_doubled = strongest_point(candidates[:-1]), strongest_point(candidates)
    return [metric_row(DIAGNOSTICS, None, "doubled_gain", float(without.mean() - with_doubled.mean())),
            metric_row(DIAGNOSTICS, None, "doubled_p", sign_test(without, with_doubled))]


def flags(results: RunResults, num_classes: int, predictive: str) -> list[str]:
    """The names of the flags that fired in a run's results, in the order of :data:`FLAGS`."""
    return [flag.name for flag in FLAGS if flag.fired(results, num_classes, predictive)]


def demoting(names: Sequence[str], scope: str = "attacks") -> list[str]:
    """The flags among ``names`` that say a number of ``scope`` may be too high: for the attacks' numbers every
    demoting flag, for the others ("every number") only those that bear on every number of the run. Names no
    flag has any more (a board published before it was retired) demote, as they did when published."""
    known = {flag.name: flag for flag in FLAGS}
    return [name for name in names if name not in known or known[name].demotes and (
        scope == "attacks" or known[name].scope == "every number")]


def run_diagnostics(evaluator: Evaluator):
    """Input gradients of the deployed rule at the clean points (and, for a network with surrogate gradients,
    under the forward's true derivative: what an attack without BPDA would get), the raw output's range, whether
    two identical forward passes of a model declared non-random agree, and whether a random model's draws
    are independent across the rows of a batch (``benchmark.randomness``): the ``diagnostics`` condition, the
    evidence of the flags below."""

    def batch_counts(_, xb, yb):
        predictor = evaluator.predictor
        grad = input_gradient(predictor, xb, yb, evaluator.eot).grad.flatten(1)
        exact = np.nan
        # the forward's true derivative: zero almost everywhere for a piecewise-constant one
        if evaluator.exact_gradient is not None:
            with evaluator.exact_gradient():
                exact = (input_gradient(predictor, xb, yb, evaluator.eot).grad.flatten(1).abs().sum(1) == 0).sum()
        with torch.no_grad():
            first, second = evaluator.predictor.network(xb), evaluator.predictor.network(xb)
            first, second = logits_of(first), logits_of(second)
            sums_to_one = ((first.sum(-1) - 1).abs() < 1e-4) & (first.min(-1).values >= 0)
            correlation = row_correlation(evaluator.predictor.network, xb) if evaluator.predictor.is_random else np.nan
            return ((grad.abs().sum(1) == 0).sum().item(), (~torch.isfinite(grad)).any(1).sum().item(),
                    sums_to_one.flatten().float().mean().item() * len(yb), (first - second).abs().max().item(),
                    correlation, float(exact), len(yb))

    # every batch's result is the same 7-tuple: the transposed columns have equal length
    zero, nonfinite, prob_rows, variations, correlations, exact_zero, sizes = zip(
        *evaluator._map(Condition(DIAGNOSTICS), batch_counts), strict=True)
    zero, nonfinite, prob_rows, variation, n = (sum(zero), sum(nonfinite), sum(prob_rows), max(variations),
                                                sum(sizes))
    rows = [metric_row(DIAGNOSTICS, None, "zero_grad_share", zero / n),
            metric_row(DIAGNOSTICS, None, "nan_grad_share", nonfinite / n),
            metric_row(DIAGNOSTICS, None, "probability_output_share", prob_rows / n),
            metric_row(DIAGNOSTICS, None, "output_variation", variation)]
    if evaluator.predictor.is_random:
        rows.append(metric_row(DIAGNOSTICS, None, "row_correlation", float(np.nanmean(correlations))))
    if evaluator.exact_gradient is not None:
        rows.append(metric_row(DIAGNOSTICS, None, "exact_zero_grad_share", sum(exact_zero) / n))
    return rows, {"n": np.array([n])}
