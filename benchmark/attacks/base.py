"""Typed interface shared by every attack (after Foolbox's attack classes).

An attack receives the :class:`~benchmark.predictive.Predictor`, never the bare network, so the loss it
follows is always the deployed rule's: the EOT loss over ``draws`` samples for stochastic models.

As in Foolbox 3, calling an attack is final and enforces the threat model for every attack: a subclass
implements :meth:`Attack.perturb`, and :meth:`Attack.__call__` refuses any result outside the eps-ball
around ``x`` or outside [0, 1], so no attack's point can be scored unchecked. An attack has no name of its
own: its class is its family, and the condition it runs as is named by its plan line
(:class:`~benchmark.attacks.plan.PlannedAttack`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import ClassVar, final

import torch

from benchmark.attacks.losses import LOSSES
from benchmark.errors import HarnessBug, PluginOutputError
from benchmark.predictive import Predictor

#: how far past eps a returned point may lie: the float rounding of x + eps and of the projection
ROUNDING = 1e-6

@dataclass(frozen=True)
class Attack(ABC):
    """An L-inf attack; its dataclass fields are its settings, recorded with every result."""

    white_box: ClassVar[bool] = True  # follows the model's gradients (black-box attacks check those)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in vars(cls):
            raise TypeError(f"{cls.__name__} overrides Attack.__call__, which checks the threat model for every "
                            f"attack; implement perturb() instead")

    @final
    def __call__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        """Adversarial inputs for ``x``: :meth:`perturb`'s, refused unless within the threat model."""
        x_adv = self.perturb(predictor, x, y, eps, draws)
        check_threat_model(type(self).__name__, x_adv, x, eps)
        return x_adv

    @abstractmethod
    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        """Return adversarial inputs within the eps-ball around ``x`` and inside [0, 1]."""

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> Attack:
        """The attack bound to a run: attacks with a generator of their own take the run's seed, the
        transfer attack its surrogate (name, predictor). Default: nothing to bind."""
        return self

    def settings(self, predictor: Predictor) -> dict:
        """What is recorded with every result for this attack on ``predictor``."""
        return asdict(self)


@dataclass(frozen=True)
class Gradient:
    """What one forward and backward pass tells an attack about a batch."""

    loss: torch.Tensor  # per-example EOT loss
    wrong: torch.Tensor  # the deployed rule (over the same draws) misclassifies
    grad: torch.Tensor  # d loss / d input


def objective_loss(predictor: Predictor, x: torch.Tensor, y: torch.Tensor, draws: int,
                   objective: str = "ce") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss of ``objective`` at ``x`` and the log predictive it was computed from (one set of draws)."""
    if objective == "likelihood":
        return predictor.likelihood_objective(x, y)
    log_pred = predictor.log_predictive(x, draws)
    return LOSSES[objective](log_pred, y), log_pred


def input_gradient(predictor: Predictor, x: torch.Tensor, y: torch.Tensor, draws: int,
                   objective: str = "ce") -> Gradient:
    """Per-example loss and its gradient with respect to the input (the network's parameters get none)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss, log_pred = objective_loss(predictor, x, y, draws, objective)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return Gradient(loss.detach(), log_pred.detach().argmax(-1) != y, grad)


def check_threat_model(attack: str, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    """Raise unless ``x_adv`` has the shape of ``x`` and lies within its eps-ball (L-inf, up to ``ROUNDING``)
    and inside [0, 1]: a point outside is the harness's bug. A non-finite point is the plugin's: its input
    gradients were not finite."""
    if x_adv.shape != x.shape:
        raise HarnessBug(f"{attack} returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}")
    if x_adv.numel() == 0:
        return
    if not torch.isfinite(x_adv).all():
        raise PluginOutputError(f"{attack} produced NaN inputs: the network's input gradients are not finite")
    if (x_adv - x).abs().max() > eps + ROUNDING or x_adv.min() < 0 or x_adv.max() > 1:
        raise HarnessBug(f"{attack} left the eps-ball or [0, 1]")


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the eps-ball around ``x`` and the valid image range."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def target_classes(log_pred: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """``[B, count]``: the ``count`` classes other than y that ``log_pred`` ranks highest, best first; for a
    correctly classified input these are the classes ranked 2 to count + 1 (the targets of APGD-T and FAB-T)."""
    return log_pred.scatter(1, y[:, None], -torch.inf).topk(count, dim=1).indices
