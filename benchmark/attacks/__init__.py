"""Attacks, one module per family (after torchattacks' layout)."""

from benchmark.attacks.apgd import APGD
from benchmark.attacks.autoattack import AutoAttack
from benchmark.attacks.base import Attack, input_gradient, project
from benchmark.attacks.fab import FAB
from benchmark.attacks.fgsm import FGSM
from benchmark.attacks.pgd import PGD
from benchmark.attacks.square import Square
from benchmark.attacks.transfer import Transfer

__all__ = ["APGD", "Attack", "AutoAttack", "FAB", "FGSM", "PGD", "Square", "Transfer", "input_gradient", "project"]
