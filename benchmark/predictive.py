"""The deployed decision rule of a network, per predictive kind (see ``benchmark.plugin``).

Everything the harness computes (accuracy, calibration, attack losses) goes through
:class:`Predictor`, so a stochastic model is always judged and attacked by the rule it is deployed
with: the mean softmax over draws, and the log of that mean (log-mean-exp of log-softmax) as the loss
(Athalye et al. 2018, "Obfuscated Gradients"; Zimmermann 2019). A moment model is judged on the
predictive distribution its Gaussian logits define, E[softmax(z)] with z ~ N(mean, diag var)
(:func:`gaussian_softmax_log_predictive`), not on the softmax of the mean alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import PluginOutputError
from benchmark.outputs import checked_logits
from benchmark.progress import network_pass

#: per-example loss of a plugin's own likelihood, from the network's output and the labels
Likelihood = Callable[[object, torch.Tensor], torch.Tensor]

#: fixed standard-normal points per example behind a moment model's predictive. On EnDP's MNIST logits
#: (variances 5 to 30) 2048 points are within 0.008 of a 200k-draw Monte Carlo estimate of every probability
#: (0.001 on average; 512 points: 0.02), at about 0.1 s per forward and backward pass of 250 examples on one
#: CPU thread, a fraction of the network's own pass
MOMENT_DRAWS = 2048
#: sqrt has an infinite slope at 0: variances below this are floored before it (and zeros stay zero)
_VAR_FLOOR = 1e-12


@functools.lru_cache(maxsize=16)
def normal_points(draws: int, classes: int) -> torch.Tensor:
    """Fixed standard-normal points ``[classes, draws]`` (float64, CPU), the same for every call.

    Quasi-Monte Carlo: a scrambled Sobol sequence (seed 0) through the normal quantile, in antithetic pairs
    (e, -e) so every odd moment is exactly zero, then whitened (when draws/2 > classes) so the sample
    covariance is exactly the identity: the average over the points is exact for every polynomial of degree
    up to 3 in the logits, so its error on E[softmax(z)] vanishes like var² as var -> 0, and it converges to
    the expectation as the number of points grows.
    """
    if draws < 2 or draws % 2:
        raise ValueError(f"draws must be even (antithetic pairs), got {draws}")
    uniform = torch.quasirandom.SobolEngine(classes, scramble=True, seed=0).draw(draws // 2, dtype=torch.float64)
    half = math.sqrt(2.0) * torch.erfinv(2.0 * uniform.clamp(1e-10, 1.0 - 1e-10) - 1.0)
    points = torch.cat([half, -half])
    if draws // 2 > classes:
        chol = torch.linalg.cholesky(points.T @ points / draws)
        return torch.linalg.solve_triangular(chol, points.T, upper=False)
    return (points / points.pow(2).mean(0).sqrt()).T


def gaussian_log_softmax_draws(mean: torch.Tensor, var: torch.Tensor, draws: int = MOMENT_DRAWS) -> torch.Tensor:
    """Log-softmax of z = mean + sqrt(var)·e at the fixed points e of :func:`normal_points`, ``[B, C, draws]``."""
    points = normal_points(draws, mean.shape[-1]).to(mean)
    std = var.clamp_min(_VAR_FLOOR).sqrt() * (var > 0)  # zero variance: exactly zero, with a finite gradient
    return torch.addcmul(mean.unsqueeze(-1), std.unsqueeze(-1), points).log_softmax(dim=-2)


def gaussian_softmax_log_predictive(mean: torch.Tensor, var: torch.Tensor, draws: int = MOMENT_DRAWS) -> torch.Tensor:
    """The log of E[softmax(z)], z ~ N(mean, diag var), ``[B, C]``: the predictive distribution of Gaussian logits.

    EnDP and VDP propagate the logits' mean and variance (Carannante et al., MLSP 2020; Dera et al., IEEE
    TSP 2021); the papers' softmax mean, softmax(mean), is the first-order (Taylor) approximation of this
    expectation and ignores the variance. The expectation has no closed form; it is averaged over the
    fixed points of :func:`normal_points` in log space (log-mean-exp of log-softmax, so saturated
    probabilities keep finite logs), which makes it a deterministic, differentiable function of
    (mean, var), exact at var = 0. Only the ``[B, C]`` logits are multiplied by the draws, never the network.
    """
    return torch.logsumexp(gaussian_log_softmax_draws(mean, var, draws), dim=-1) - math.log(draws)


def refuse_nan(log_pred: torch.Tensor) -> torch.Tensor:
    """``log_pred`` unchanged, or :class:`PluginOutputError` if any of it is NaN: an attack must not read NaN
    losses as "no progress"."""
    if torch.isnan(log_pred).any():
        bad = torch.isnan(log_pred).any(-1).sum().item()
        raise PluginOutputError(f"the network's outputs for {bad} of {log_pred.shape[0]} inputs are NaN")
    return log_pred


class Predictor:
    """Wraps a trained network; never changes its mode or its randomness.

    ``max_batch`` bounds how many inputs go through the network in one call: stochastic draws are
    batched by repeating the inputs along the batch axis, in chunks of at most that size. ``trunk`` is a
    stochastic network's ``(trunk, head)`` split (``ModelPlugin.deterministic_trunk``): then the trunk runs
    once per input and only its output is repeated through the head, one row per draw.
    ``likelihood`` is the plugin's own per-example training loss (moment models), a second objective
    attacks can follow. Every output is checked against the contract (shape, a class count that does
    not change between calls); :meth:`probs` also refuses NaN/inf, raising :class:`PluginOutputError`.

    One distribution per kind decides, is scored and is attacked: :meth:`probs` (accuracy, ECE, NLL,
    Brier, entropy, the noise AUROC) is ``exp`` of :meth:`log_predictive` (every attack loss but the
    plugin's own likelihood, and every attack's "misclassified" test). For a moment model that is the
    Gaussian-logit predictive E[softmax(z)], z ~ N(mean, diag var), averaged over fixed points
    (:func:`gaussian_softmax_log_predictive`): deterministic (``draws`` is ignored, R = 1 re-evaluation)
    and differentiable. It decides by the argmax of that predictive mean; the papers' argmax of
    softmax(mean) is its first-order approximation, and the two agree wherever the variance is small
    against the gap between the top logits.
    """

    def __init__(self, network: nn.Module, kind: str, max_batch: int = 4096, likelihood: Likelihood | None = None,
                 num_classes: int | None = None, trunk: tuple[nn.Module, nn.Module] | None = None):
        if trunk is not None and kind != "stochastic":
            raise ValueError(f"a deterministic trunk saves draws of a stochastic network; this one is {kind}")
        self.network = network
        self.trunk = trunk
        self.kind = kind
        self.max_batch = max_batch
        self.likelihood = likelihood
        self.num_classes = num_classes
        self._members: int | None = None

    def _checked(self, out, batch: int) -> torch.Tensor:
        """The logits (the mean for moment models) of one network call, after checking them against the
        contract and against earlier calls (class count, ensemble size)."""
        network_pass()
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

    def _moments(self, out, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The checked (mean, var) of one call of a moment network."""
        return self._checked(out, batch), out[1]

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (mean, var) of a moment network's logits at ``x``, checked against the contract."""
        if self.kind != "moments":
            raise ValueError(f"only a moments network propagates a variance; this one is {self.kind}")
        return self._moments(self.network(x), x.shape[0])

    def draw_log_probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Log-softmax of each draw, ``[D, B, C]``: D = draws (stochastic), M members (ensemble), the
        ``MOMENT_DRAWS`` fixed Gaussian-logit points (moments), else 1."""
        if self.kind == "stochastic":
            return self._stochastic_draws(x, draws)
        if self.kind == "moments":
            return gaussian_log_softmax_draws(*self.moments(x)).permute(2, 0, 1)
        logits = self._checked(self.network(x), x.shape[0])
        return F.log_softmax(logits, dim=-1) if self.kind == "ensemble" else F.log_softmax(logits, dim=-1).unsqueeze(0)

    def _stochastic_draws(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        per_call = max(1, self.max_batch // max(1, x.shape[0]))
        network, rows = self.network, x
        if self.trunk is not None:  # the deterministic part once per input, the random head once per draw
            trunk, network = self.trunk
            rows = trunk(x)
        chunks = []
        remaining = draws
        while remaining > 0:
            n = min(per_call, remaining)
            out = self._checked(network(rows.repeat(n, *([1] * (rows.dim() - 1)))), n * x.shape[0])
            chunks.append(F.log_softmax(out, dim=-1).view(n, x.shape[0], -1))
            remaining -= n
        return torch.cat(chunks, dim=0)

    def log_predictive(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """Log of the draw-averaged probabilities, ``[B, C]``: the quantity every loss is computed on (for a
        moment model the Gaussian-logit predictive, whatever ``draws``)."""
        if self.kind == "moments":
            log_pred = gaussian_softmax_log_predictive(*self.moments(x))
        else:
            log_probs = self.draw_log_probs(x, draws)
            log_pred = torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
        return refuse_nan(log_pred)

    def likelihood_objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The plugin's own per-example loss on its raw output (moment models' Gaussian likelihood), and the
        deployed log predictive of the same forward pass (which says whether the point is misclassified);
        the attack losses on the log predictive are in ``benchmark.attacks.losses``."""
        out = self.network(x)
        loss = self.likelihood(out, y)
        if torch.isnan(loss).any():
            raise PluginOutputError("the plugin's likelihood is NaN")
        if self.kind == "moments":
            return loss, gaussian_softmax_log_predictive(*self._moments(out, x.shape[0]))
        return loss, F.log_softmax(self._checked(out, x.shape[0]), dim=-1)

    @torch.no_grad()
    def probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        p = self.log_predictive(x, draws).exp()
        if not torch.isfinite(p).all():
            bad = (~torch.isfinite(p)).any(-1).sum().item()
            raise PluginOutputError(f"the predictive probabilities of {bad} of {x.shape[0]} inputs are NaN or inf")
        return p

