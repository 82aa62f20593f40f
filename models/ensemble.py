"""Deep ensembles: Lakshminarayanan, Pritzel, Blundell, "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles", NeurIPS 2017.

M = 5 copies of the baseline CNN (:func:`benchmark.layers.cnn.make_cnn`), each with its own random
initialisation, trained with a proper scoring rule (the negative log-likelihood, i.e. the
cross-entropy, for classification); the predictive distribution is the mean of the members' softmax.
``network(x)`` returns every member's logits ``[M, B, C]`` (predictive kind "ensemble").

Differences from the paper, on purpose:

- No adversarial training. The paper offers it as an optional addition (FGSM at ε = 1% of the input
  range, reported both with and without); this benchmark measures what uncertainty alone buys under
  attack, so adversarial training would confound the comparison with the other methods.
- The members see the same minibatch order: they are trained together by the shared training loop
  on the sum of their cross-entropies, whose gradient is independent per member (no parameter is
  shared), so each member follows its own optimisation path from its own initialisation; the paper
  also shuffles the data independently per member. Random initialisation is the source of
  diversity the paper identifies as the important one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.claim import bayesian_claims
from benchmark.layers.cnn import make_cnn
from benchmark.models.baseline import cnn_recipe
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


class Ensemble(nn.Module):
    """Independent member networks; the forward returns their logits stacked as ``[M, B, C]``."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members])


@register_model("ensemble")
class DeepEnsemble(ModelPlugin):
    """Deep ensemble of M = 5 baseline CNNs (Lakshminarayanan et al. 2017); mean softmax predictive."""

    predictive = "ensemble"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "Deep ensemble: 5 independently initialised baseline CNNs, mean softmax"
    claims = bayesian_claims("Deep ensemble", "ensemble", "one network")
    members = 5

    def build(self, task: Task) -> nn.Module:
        # built one after the other from the same stream of random numbers: every member gets its own init
        return Ensemble([make_cnn(task) for _ in range(self.members)])

    def train_config(self, task: Task) -> TrainConfig:
        """Each member gets the baseline's recipe (Adam, cosine decay; 2 epochs quick, 20 or 60 standard),
        so the ensemble is compared with a baseline trained exactly like each of its members (with one
        epoch per member, the quick ensemble scored below a single baseline on MNIST: 97.8% vs 98.7%)."""
        return cnn_recipe(task)

    def surrogate(self, network: nn.Module) -> nn.Module:
        """The first member: a deterministic network trained on the same data, the transfer attack's
        source (cheaper than training a separate baseline, and at least as close to the ensemble)."""
        return network.members[0]
