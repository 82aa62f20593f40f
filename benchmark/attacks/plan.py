"""A profile's attacks, declared as data (after Foolbox's attacks-as-configuration).

A plan is a tuple of :class:`PlannedAttack`: which attack with which settings, how many EOT draws it
gets, which models it applies to and what it is there to check. The evaluator only binds a plan to a
run (the run seed, the transfer surrogate); it decides nothing. Adding an attack is one module in
``benchmark.attacks`` plus one line in :func:`attack_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.attacks.apgd import APGD
from benchmark.attacks.autoattack import AutoAttack
from benchmark.attacks.base import Attack
from benchmark.attacks.doubled import Doubled
from benchmark.attacks.fgsm import FGSM
from benchmark.attacks.pgd import PGD
from benchmark.attacks.square import Square
from benchmark.attacks.transfer import Transfer

#: the condition names the gradient-masking checks compare (``benchmark.diagnostics``)
MAIN = "pgd"  # the main white-box attack, the one run over the whole eps sweep
MORE_STEPS = "pgd-long"
MORE_DRAWS = "pgd-eot2x"
MARGIN = "pgd-dlr"  # the main attack on the DLR margin instead of the cross-entropy
TARGETED = "apgd-t"  # APGD on the targeted DLR margin, towards the few classes ranked next to the true one
DOUBLED = "strongest-2x"  # the convergence check: the strongest attack a model gets, with twice its budget
#: the plan's attacks, strongest first: the first a model gets is the one the convergence check doubles
STRONGEST = ("autoattack", TARGETED, MORE_STEPS)
#: target classes of the targeted line (AutoAttack's APGD-T takes nine; the few ranked highest break most)
TARGETED_CLASSES = 3
#: the main attack through each of the plugin's other backward passes: conditions ``pgd-bpda-<variant>``
BPDA_PREFIX = "pgd-bpda"

#: EOT draws per step: the profile's K, twice K, or one (attacks that follow no randomness)
Draws = Literal["eot", "double-eot", "single"]
#: which models an attack applies to: all, random ones, those with their own likelihood, those with a
#: transfer surrogate, those with at least three classes (the DLR margin's denominator needs a third) or four
#: (the targeted DLR margin's needs a fourth), those with other backward passes
#: (``ModelPlugin.gradient_variants``: the attack runs once through each, as ``<name>-<variant>``)
Needs = Literal["always", "randomness", "likelihood", "surrogate", "three-classes", "four-classes",
                "gradient-variants"]
#: why a plan line does not apply to a model, by what it needs (recorded with the run and shown in its report)
NOT_APPLICABLE = {"randomness": "the model is not random",
                  "likelihood": "the plugin declares no likelihood of its own",
                  "surrogate": "no deterministic surrogate to craft on",
                  "three-classes": "the DLR margin needs at least three classes",
                  "four-classes": "the targeted DLR margin needs at least four classes",
                  "gradient-variants": "the network declares no other backward pass"}


@dataclass(frozen=True)
class PlannedAttack:
    """One line of a plan; ``name`` is the condition's name in metrics.csv, and the only name an attack has
    (its class is its family: the same PGD runs as ``pgd``, ``pgd-eot2x`` and ``pgd-bpda-<variant>``)."""

    name: str
    attack: Attack
    purpose: str
    draws: Draws = "eot"
    needs: Needs = "always"

    def draws_for(self, eot: int) -> int:
        return {"eot": eot, "double-eot": 2 * eot, "single": 1}[self.draws]


def attack_plan(pgd_steps: int, pgd_restarts: int, square_queries: int, autoattack: bool) -> tuple[PlannedAttack, ...]:
    """The attack set of a profile, in the order the conditions run (white-box first; black-box attacks
    run on the examples every white-box attack missed)."""
    pgd = PGD(steps=pgd_steps, restarts=pgd_restarts)
    plan = [
        PlannedAttack("fgsm", FGSM(), "one signed-gradient step"),
        PlannedAttack(MAIN, pgd, "the main white-box attack, also run over the eps sweep"),
        PlannedAttack(MORE_STEPS, PGD(steps=5 * pgd_steps, restarts=pgd_restarts),
                      "5x the steps: robust accuracy must not rise (more-steps-helps-model)"),
        PlannedAttack(MORE_DRAWS, pgd, "PGD with 2K EOT draws: robust accuracy must not change (eot-not-converged)",
                      draws="double-eot", needs="randomness"),
        PlannedAttack(MARGIN, PGD(steps=pgd_steps, restarts=pgd_restarts, objective="dlr"),
                      "PGD on the scale-free DLR margin of the deployed log predictive (Croce & Hein 2020): the "
                      "cross-entropy saturates on large logits", needs="three-classes"),
        PlannedAttack("pgd-likelihood", PGD(steps=pgd_steps, restarts=pgd_restarts, objective="likelihood"),
                      "PGD on the plugin's own likelihood instead of the cross-entropy",
                      draws="single", needs="likelihood"),
        PlannedAttack(BPDA_PREFIX, pgd, "PGD through another surrogate derivative of the non-differentiable forward "
                      "(BPDA, Athalye et al. 2018): the training surrogate need not guide an attacker best",
                      needs="gradient-variants"),
        PlannedAttack(TARGETED, APGD(loss="dlr-targeted", steps=5 * pgd_steps, targets=TARGETED_CLASSES),
                      f"APGD-T (Croce & Hein 2020) towards each of the {TARGETED_CLASSES} classes ranked next to the "
                      "true one: an untargeted loss follows one direction, a targeted one reaches the boundary the "
                      "untargeted attacks miss", needs="four-classes"),
    ]
    if autoattack:
        plan.append(PlannedAttack("autoattack", AutoAttack(),
                                  "AutoAttack (standard; APGD-CE and APGD-DLR on the K-draw "
                                  "average for stochastic models)"))
    plan += [
        PlannedAttack(DOUBLED, Doubled(of=STRONGEST),
                      "the strongest attack with twice its steps and queries, at the dataset's eps on the examples "
                      "every attack left standing: doubling must not pay (strongest-attack-not-converged)"),
        PlannedAttack("square", Square(queries=square_queries),
                      "black-box random search on the K-draw-averaged margin, "
                      "on the examples the white-box attacks missed"),
        PlannedAttack("transfer", Transfer(steps=pgd_steps, restarts=pgd_restarts),
                      "PGD on the deterministic surrogate, evaluated on this model",
                      draws="single", needs="surrogate"),
    ]
    return tuple(plan)
