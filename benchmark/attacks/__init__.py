"""Attacks, one module per family (after torchattacks' layout)."""

from benchmark.attacks.autoattack import AutoAttack
from benchmark.attacks.base import Attack, input_gradient, project
from benchmark.attacks.fgsm import FGSM
from benchmark.attacks.pgd import PGD

__all__ = ["Attack", "AutoAttack", "FGSM", "PGD", "input_gradient", "project"]
