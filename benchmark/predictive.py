"""The deployed decision rule of a network, per predictive kind (see ``benchmark.plugin``).

Everything the harness computes (accuracy, calibration, attack losses) goes through
:class:`Predictor`, so a stochastic model is always judged and attacked by the rule it is deployed
with: the mean softmax over draws, and the log of that mean (log-mean-exp of log-softmax) as the loss
(Athalye et al. 2018, "Obfuscated Gradients"; Zimmermann 2019).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Predictor:
    """Wraps a trained network; never changes its mode or its randomness.

    ``max_batch`` bounds how many inputs go through the network in one call: stochastic draws are
    batched by repeating the inputs along the batch axis, in chunks of at most that size.
    """

    def __init__(self, network: nn.Module, kind: str, max_batch: int = 4096):
        self.network = network
        self.kind = kind
        self.max_batch = max_batch

    @property
    def is_random(self) -> bool:
        return self.kind == "stochastic"

    def draw_log_probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Log-softmax of each draw, ``[D, B, C]``: D = draws (stochastic), M members (ensemble), else 1."""
        if self.kind == "deterministic":
            return F.log_softmax(self.network(x), dim=-1).unsqueeze(0)
        if self.kind == "moments":
            mean, _ = self.network(x)
            return F.log_softmax(mean, dim=-1).unsqueeze(0)
        if self.kind == "ensemble":
            return F.log_softmax(self.network(x), dim=-1)
        return self._stochastic_draws(x, draws)

    def _stochastic_draws(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        per_call = max(1, self.max_batch // max(1, x.shape[0]))
        chunks = []
        remaining = draws
        while remaining > 0:
            n = min(per_call, remaining)
            out = self.network(x.repeat(n, *([1] * (x.dim() - 1))))
            chunks.append(F.log_softmax(out, dim=-1).view(n, x.shape[0], -1))
            remaining -= n
        return torch.cat(chunks, dim=0)

    def log_predictive(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Log of the draw-averaged probabilities, ``[B, C]``: the quantity every loss is computed on."""
        log_probs = self.draw_log_probs(x, draws)
        return torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])

    def loss(self, x: torch.Tensor, y: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Per-example cross-entropy of the deployed predictive distribution (the EOT loss)."""
        return F.nll_loss(self.log_predictive(x, draws), y, reduction="none")

    @torch.no_grad()
    def probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        return self.log_predictive(x, draws).exp()
