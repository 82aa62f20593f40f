"""The deployed decision rule of a network, per predictive kind (see ``benchmark.plugin``).

Everything the harness computes (accuracy, calibration, attack losses) goes through
:class:`Predictor`, so a stochastic model is always judged and attacked by the rule it is deployed
with: the mean softmax over draws, and the log of that mean (log-mean-exp of log-softmax) as the loss
(Athalye et al. 2018, "Obfuscated Gradients"; Zimmermann 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import PluginOutputError
from benchmark.outputs import checked_logits

#: per-example loss of a plugin's own likelihood, from the network's output and the labels
Likelihood = Callable[[object, torch.Tensor], torch.Tensor]


class Predictor:
    """Wraps a trained network; never changes its mode or its randomness.

    ``max_batch`` bounds how many inputs go through the network in one call: stochastic draws are
    batched by repeating the inputs along the batch axis, in chunks of at most that size.
    ``likelihood`` is the plugin's own per-example training loss (moment models), a second objective
    attacks can follow. Every output is checked against the contract (shape, a class count that does
    not change between calls); :meth:`probs` also refuses NaN/inf, raising :class:`PluginOutputError`.
    """

    def __init__(self, network: nn.Module, kind: str, max_batch: int = 4096, likelihood: Likelihood | None = None,
                 num_classes: int | None = None):
        self.network = network
        self.kind = kind
        self.max_batch = max_batch
        self.likelihood = likelihood
        self.num_classes = num_classes
        self._members: int | None = None

    def _checked(self, out, batch: int) -> torch.Tensor:
        """The logits (the mean for moment models) of one network call, after checking them against the
        contract and against earlier calls (class count, ensemble size)."""
        out = checked_logits(self.kind, out, batch, self.num_classes)
        self.num_classes = out.shape[-1]
        if self.kind == "ensemble":
            self._members = self._members or out.shape[0]
            if out.shape[0] != self._members:
                raise PluginOutputError(f"ensemble returned {out.shape[0]} members, earlier calls {self._members}")
        return out

    @property
    def is_random(self) -> bool:
        return self.kind == "stochastic"

    def draw_log_probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Log-softmax of each draw, ``[D, B, C]``: D = draws (stochastic), M members (ensemble), else 1."""
        if self.kind == "stochastic":
            return self._stochastic_draws(x, draws)
        logits = self._checked(self.network(x), x.shape[0])
        return F.log_softmax(logits, dim=-1) if self.kind == "ensemble" else F.log_softmax(logits, dim=-1).unsqueeze(0)

    def _stochastic_draws(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        per_call = max(1, self.max_batch // max(1, x.shape[0]))
        chunks = []
        remaining = draws
        while remaining > 0:
            n = min(per_call, remaining)
            out = self._checked(self.network(x.repeat(n, *([1] * (x.dim() - 1)))), n * x.shape[0])
            chunks.append(F.log_softmax(out, dim=-1).view(n, x.shape[0], -1))
            remaining -= n
        return torch.cat(chunks, dim=0)

    def log_predictive(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Log of the draw-averaged probabilities, ``[B, C]``: the quantity every loss is computed on."""
        log_probs = self.draw_log_probs(x, draws)
        log_pred = torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
        if torch.isnan(log_pred).any():  # an attack must not read NaN losses as "no progress"
            bad = torch.isnan(log_pred).any(-1).sum().item()
            raise PluginOutputError(f"the network's outputs for {bad} of {x.shape[0]} inputs are NaN")
        return log_pred

    def likelihood_objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The plugin's own per-example loss on its raw output (moment models' Gaussian likelihood), and the
        log-softmax of the same forward pass; the attack losses on the log predictive are in
        ``benchmark.attacks.losses``."""
        out = self.network(x)
        loss = self.likelihood(out, y)
        if torch.isnan(loss).any():
            raise PluginOutputError("the plugin's likelihood is NaN")
        return loss, F.log_softmax(self._checked(out, x.shape[0]), dim=-1)

    @torch.no_grad()
    def probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        p = self.log_predictive(x, draws).exp()
        if not torch.isfinite(p).all():
            bad = (~torch.isfinite(p)).any(-1).sum().item()
            raise PluginOutputError(f"the predictive probabilities of {bad} of {x.shape[0]} inputs are NaN or inf")
        return p


class DeployedRule(nn.Module):
    """The predictor as an ``nn.Module`` returning log predictive probabilities (valid logits), for
    attack libraries that expect a model: every call is the K-draw average of the deployed rule."""

    def __init__(self, predictor: Predictor, draws: int):
        super().__init__()
        self.predictor = predictor
        self.draws = draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor.log_predictive(x, self.draws)
