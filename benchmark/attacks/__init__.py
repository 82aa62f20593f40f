"""Attacks, one module per family (after torchattacks' layout)."""

from benchmark.attacks.autoattack import AutoAttack
from benchmark.attacks.base import Attack, input_gradient, project
from benchmark.attacks.fgsm import FGSM
from benchmark.attacks.pgd import PGD
from benchmark.attacks.square import Square
from benchmark.attacks.transfer import Transfer

__all__ = ["Attack", "AutoAttack", "FGSM", "PGD", "Square", "Transfer", "input_gradient", "project"]
