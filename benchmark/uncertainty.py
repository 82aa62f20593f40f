"""Uncertainty scores of the deployed predictive, per predictive kind, each defined once.

A model's uncertainty is meant to say when it is being fooled: the density-propagation papers plot a predictive
variance that grows with noise and attack strength, and Bayesian and ensemble models are meant to flag inputs off
the data by their epistemic uncertainty (Feng, Rudner, Tsilivis & Kempe 2024, "Attacking Bayes", test whether
either survives an attack). Every score here is read from the same forward pass that gives the deployed
predictive (:class:`benchmark.predictive.Predictor`), and is differentiable, so that an attack can follow it
(``benchmark.attacks.detector``). The higher a score, the more uncertain the model.

=========================  =====================================  ===============================================
score                      kinds                                  definition
=========================  =====================================  ===============================================
``entropy``                every kind                             H[p̄], p̄ the deployed predictive
``mutual_information``     stochastic, ensemble                   H[p̄] - mean_d H[p_d] over the draws (members) d:
                                                                  the epistemic part (Houlsby et al. 2011, BALD)
``logit_variance``         moments                                sum_c var_c of the Gaussian logits propagated
``top_class_variance``     moments                                var of the logit of the predicted class
=========================  =====================================  ===============================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.predictive import Predictor, gaussian_softmax_log_predictive, refuse_nan

ENTROPY = "entropy"
MUTUAL_INFORMATION = "mutual_information"
LOGIT_VARIANCE = "logit_variance"
TOP_CLASS_VARIANCE = "top_class_variance"

#: the scores of each predictive kind, in the order they are reported
SCORES_BY_KIND: dict[str, tuple[str, ...]] = {
    "deterministic": (ENTROPY,),
    "stochastic": (ENTROPY, MUTUAL_INFORMATION),
    "ensemble": (ENTROPY, MUTUAL_INFORMATION),
    "moments": (ENTROPY, LOGIT_VARIANCE, TOP_CLASS_VARIANCE),
}
#: every score, in report order
SCORES: tuple[str, ...] = (ENTROPY, MUTUAL_INFORMATION, LOGIT_VARIANCE, TOP_CLASS_VARIANCE)
#: the score behind the board's detection columns: the epistemic one, where the kind has one (what the methods'
#: papers propose to detect with), else the predictive entropy
PRIMARY_SCORE: dict[str, str] = {"deterministic": ENTROPY, "stochastic": MUTUAL_INFORMATION,
                                 "ensemble": MUTUAL_INFORMATION, "moments": LOGIT_VARIANCE}


@dataclass(frozen=True)
class Prediction:
    """The deployed predictive of a batch and its uncertainty scores, from one set of draws."""

    log_predictive: Tensor  # [B, C]
    scores: dict[str, Tensor]  # score name -> [B]

    @property
    def probs(self) -> Tensor:
        return self.log_predictive.exp()


def _entropy(log_probs: Tensor) -> Tensor:
    """Entropy (nats) over the last axis, from log-probabilities: finite, with finite gradients, where a probability
    underflows to 0 (the log-softmax stays finite there; xlogy's gradient at 0 is not)."""
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def predict(predictor: Predictor, x: Tensor, draws: int = 1) -> Prediction:
    """The deployed log predictive of ``x`` (``draws`` draws for a stochastic model) and every score of the
    predictor's kind, from the same network pass; differentiable in ``x``."""
    kind = predictor.kind
    if kind == "moments":
        mean, var = predictor.moments(x)
        log_pred = gaussian_softmax_log_predictive(mean, var)
        top = log_pred.argmax(dim=-1, keepdim=True)
        scores = {LOGIT_VARIANCE: var.sum(dim=-1), TOP_CLASS_VARIANCE: var.gather(-1, top).squeeze(-1)}
    else:
        log_probs = predictor.draw_log_probs(x, draws)  # [D, B, C]
        log_pred = torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
        scores = {}
        if kind in ("stochastic", "ensemble"):
            # clamped: the difference of two float sums can dip below its true minimum, zero
            scores[MUTUAL_INFORMATION] = (_entropy(log_pred) - _entropy(log_probs).mean(dim=0)).clamp_min(0.0)
    scores = {ENTROPY: _entropy(log_pred), **scores}
    return Prediction(refuse_nan(log_pred), {name: scores[name] for name in SCORES_BY_KIND[kind]})
