"""Every attack answers to one threat model: ``Attack.__call__`` is final and refuses points outside it."""

import importlib
import inspect
import pkgutil
from contextlib import nullcontext
from dataclasses import dataclass

import pytest
import torch
from fakes import assert_in_threat_model
from torch import nn

import benchmark.attacks
from benchmark.attacks import APGD, FAB, FGSM, PGD, Attack, AutoAttack, Square, Transfer
from benchmark.attacks.bpda import BPDA
from benchmark.attacks.detector import DetectorAware
from benchmark.attacks.doubled import Doubled
from benchmark.attacks.plan import PlannedAttack
from benchmark.errors import HarnessBug, PluginOutputError
from benchmark.evaluation import Condition, Evaluator
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile

EPS = 0.1

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def attack_classes() -> list[type[Attack]]:
    """Every concrete attack the harness defines, found in every module of ``benchmark.attacks`` (exported or not)."""
    for module in pkgutil.walk_packages(benchmark.attacks.__path__, "benchmark.attacks."):
        importlib.import_module(module.name)
    found, todo = set(), [Attack]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("benchmark.attacks.") and not inspect.isabstract(cls):
                found.add(cls)
    return sorted(found, key=lambda cls: cls.__name__)


#: each attack class with small settings, bound to a run as the evaluator binds it (seed 0; the transfer attack
#: crafts on the model itself). A class missing here fails the test below: a new attack is never skipped.
SMALL = {
    APGD: lambda: APGD(steps=5),
    AutoAttack: lambda: AutoAttack(steps=3, queries=20),
    BPDA: lambda: BPDA(PGD(steps=3), "none", nullcontext),
    # a threshold above any entropy of ten classes: the detector never flags, and the attack only has to fool
    DetectorAware: lambda: DetectorAware(steps=5).against(10.0),
    Doubled: lambda: Doubled(of=("pgd",)).bound_to({"pgd": PGD(steps=2)}),
    FAB: lambda: FAB(steps=3, targets=2),
    FGSM: FGSM,
    PGD: lambda: PGD(steps=3, restarts=2),
    Square: lambda: Square(queries=100),
    Transfer: lambda: Transfer(steps=3),
}


@pytest.mark.parametrize("cls", attack_classes(), ids=lambda cls: cls.__name__)
def test_every_attack_stays_in_the_threat_model_and_lowers_accuracy(trained_mlp, mnist_sample, cls):
    assert cls in SMALL, f"add {cls.__name__} with small settings to SMALL"
    _, _, x, y = mnist_sample
    x, y = x[:32], y[:32]
    predictor = Predictor(trained_mlp, "deterministic")
    attack = SMALL[cls]().for_run(0, ("itself", predictor))
    torch.manual_seed(0)
    x_adv = attack.perturb(predictor, x, y, EPS, 1)  # unchecked: the attack's own result meets the threat model
    assert_in_threat_model(x_adv, x, EPS)
    with torch.no_grad():
        clean = (predictor.probs(x).argmax(1) == y).float().mean()
        robust = (predictor.probs(x_adv).argmax(1) == y).float().mean()
    assert clean > 0.85 and robust < clean - 0.2


@dataclass(frozen=True)
class Returns(Attack):
    """Returns ``make(x, eps)``, whatever it is."""

    make: object = None

    def perturb(self, predictor, x, y, eps, draws):
        return self.make(x, eps)


def _call(make, x=None):
    x = torch.full((3, 1, 2, 2), 0.5) if x is None else x
    predictor = Predictor(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "deterministic")
    return Returns(make)(predictor, x, torch.zeros(len(x), dtype=torch.long), EPS, 1)


@pytest.mark.parametrize("make", [
    lambda x, eps: x + eps + 1e-4,  # just past the ball
    lambda x, eps: x - 2 * eps,
    lambda x, eps: x.clone().fill_(1.0) + 1e-3,  # outside [0, 1]
    lambda x, eps: x[:2],  # fewer examples: the ball check alone would broadcast
], ids=["past-eps", "far", "above-one", "shape"])
def test_a_point_outside_the_threat_model_is_a_harness_bug(make):
    with pytest.raises(HarnessBug, match="Returns (left the eps-ball or \\[0, 1\\]|returned shape)"):
        _call(make)


def test_points_on_the_balls_surface_pass_and_are_returned_unchanged():
    x = torch.tensor([0.0, 0.05, 0.5, 1.0]).view(4, 1, 1, 1).repeat(1, 1, 2, 2)
    x_adv = _call(lambda x, eps: (x + eps).clamp(0, 1), x)
    assert torch.equal(x_adv, (x + EPS).clamp(0, 1))
    assert _call(lambda x, eps: x[:0], x[:0]).shape == (0, 1, 2, 2)  # an empty batch has nothing to check


def test_nan_points_are_the_plugins_error():
    """Non-finite input gradients make NaN points: the plugin's failure, reported for its condition."""
    with pytest.raises(PluginOutputError, match="Returns produced NaN inputs: the network's input gradients"):
        _call(lambda x, eps: torch.where(x > 0, torch.nan, x))


def test_the_evaluator_scores_no_point_outside_the_threat_model():
    """The check is the attack's, on every path: an evaluator running a plan line meets it too."""
    x, y = torch.full((4, 1, 2, 2), 0.5), torch.zeros(4, dtype=torch.long)
    predictor = Predictor(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "deterministic")
    plan = (PlannedAttack("leaves", Returns(lambda x, eps: x + 2 * eps), "leaves the ball"),)
    evaluator = Evaluator(predictor, x, y, get_profile("quick", attacks=plan), EPS, torch.device("cpu"), 0)
    with pytest.raises(HarnessBug, match="left the eps-ball"):
        evaluator.run(Condition("leaves", EPS))


def test_call_cannot_be_overridden():
    """An attack that defined its own ``__call__`` would skip the check; the class is refused when defined."""
    with pytest.raises(TypeError, match="Unchecked overrides Attack.__call__.*implement perturb"):
        class Unchecked(Attack):
            def __call__(self, predictor, x, y, eps, draws):
                return x + 1

            def perturb(self, predictor, x, y, eps, draws):
                return x
