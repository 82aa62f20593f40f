"""VDP: variational density propagation (Dera, Rasool, Bouaynaya et al., "PremiUm-CNN: Propagating
Uncertainty Towards Robust Convolutional Neural Networks", IEEE Trans. Signal Processing 2021; the
extended variational inference (eVI) of their earlier work).

Gaussian weights w ~ N(M, σ²) with one variance per output unit; every layer maps the mean and
variance of its input to the mean and variance of its output. The linear layers, max-pool, softmax
moments, Gaussian likelihood and KL term are shared with EnDP (:mod:`benchmark.layers.moments`); what is VDP's
own is the rule at the nonlinearities:

- ``taylor`` (the paper's main rule): first-order Taylor expansion around the mean,
  mean f(μ), variance v·f′(μ)² (the diagonal of Σ ⊙ f′(μ)f′(μ)ᵀ).
- ``unscented``: the unscented transform of the layer's n units with 2n sigma points
  μ ± √(n·v_i)·e_i and weights 1/(2n). With a diagonal covariance, unit j sees μ_j at the 2n − 2
  points that move other units and μ_j ± √(n v_j) at its own two, so the transform reduces per unit
  to mean m_j = f(μ_j) + (f(μ_j + s) + f(μ_j − s) − 2f(μ_j))/(2n) and variance
  ((2n − 2)(f(μ_j) − m_j)² + (f(μ_j + s) − m_j)² + (f(μ_j − s) − m_j)²)/(2n), s = √(n v_j), with
  n = the number of units of one example at that layer. Registered as ``vdp-unscented``.

The network returns the mean and variance of the logits (predictive kind "moments"); the loss is the
Gaussian likelihood of the one-hot label under the first-order softmax moments plus τ·KL (the
regulariser on M and σ²), as for EnDP.

Differences from the paper, on purpose: diagonal instead of full covariances (as in EnDP); no
dropout layer (the MNIST net has none; the paper's rule for dropout would scale the variance of kept
units by 1/(1 − p)²); the CIFAR net is EnDP's (six 3x3 convs), not verified against PremiUm-CNN's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.claim import Claim
from benchmark.layers.moments import (
    GaussianConv2d,
    GaussianLinear,
    MomentFlatten,
    MomentMaxPool2d,
    Moments,
    cifar_moment_net,
    gaussian_likelihood_loss,
)
from benchmark.layers.normalize import Normalize
from benchmark.layers.variational import kl_divergence
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


class TaylorReLU(nn.Module):
    """First-order Taylor moments of the ReLU: mean relu(μ), variance v·1[μ > 0] (f′ = step)."""

    def forward(self, x: Moments) -> Moments:
        mean, var = x
        return F.relu(mean), var * (mean > 0).to(var.dtype)


def unscented_moments(f, mean: Tensor, var: Tensor, n: int) -> Moments:
    """Per-unit moments of f under the unscented transform of n independent units (see module docstring)."""
    spread = (n * var).clamp_min(1e-12).sqrt()  # floored: sqrt has an infinite slope at 0
    centre, up, down = f(mean), f(mean + spread), f(mean - spread)
    out_mean = centre + (up + down - 2 * centre) / (2 * n)
    out_var = ((2 * n - 2) * (centre - out_mean).pow(2) + (up - out_mean).pow(2) + (down - out_mean).pow(2)) / (2 * n)
    return out_mean, out_var


class UnscentedReLU(nn.Module):
    """ReLU moments by the unscented transform over all units of one example (n = C·H·W or features)."""

    def forward(self, x: Moments) -> Moments:
        mean, var = x
        return unscented_moments(F.relu, mean, var, mean[0].numel())


def _activation(rule: str) -> nn.Module:
    return {"taylor": TaylorReLU, "unscented": UnscentedReLU}[rule]()


def _small_net(num_classes: int, rule: str) -> nn.Sequential:
    """The paper's MNIST net: conv 32@5x5, ReLU, 2x2 max-pool, FC to the classes (28 -> 24 -> 12)."""
    return nn.Sequential(
        Normalize((0.5,), (0.5,)),
        GaussianConv2d(1, 32, 5),
        _activation(rule),
        MomentMaxPool2d(2),
        MomentFlatten(),
        GaussianLinear(32 * 12 * 12, num_classes),
    )


#: the abstract's words (the body of the paper could not be read: every figure is "not retrieved")
VDP_WORDS = ("Comprehensive experiments ... demonstrate: 1) superior robustness against noise and adversarial "
             "attacks, 2) self-assessment through predictive uncertainty that increases quickly with increasing levels "
             "of noise or attacks")


@register_model("vdp")
class VDP(ModelPlugin):
    """VDP (Dera et al., IEEE TSP 2021): Gaussian weights, first-order Taylor moments at the ReLUs."""

    predictive = "moments"
    shapes_reason = "the paper's MNIST net and EnDP's CIFAR-10 net, whose moment layers are sized for these inputs"
    summary = "Variational density propagation: Gaussian weights, Taylor-linearised moments at nonlinearities"
    claims = (
        Claim("VDP", ("vdp", "vdp-unscented"), "Dera et al., IEEE TSP 2021", "robust to random noise", "noise",
              reference="vdp-twin", datasets=("mnist", "cifar10"), words=VDP_WORDS,
              threat="Gaussian noise; sigma not retrieved", comparison="a deterministic CNN of the same architecture"),
        Claim("VDP", ("vdp", "vdp-unscented"), "Dera et al., IEEE TSP 2021", "robust to adversarial attacks",
              "attack", reference="vdp-twin", datasets=("mnist", "cifar10"), words=VDP_WORDS,
              paper_attack="FGSM on the Gaussian likelihood (the authors' code)",
              comparison="a deterministic CNN of the same architecture"),
        Claim("VDP", ("vdp", "vdp-unscented"), "Dera et al., IEEE TSP 2021", "its predictive variance rises on "
              "adversarial inputs, so the model signals when it is fooled", "uncertainty",
              datasets=("mnist", "cifar10"),
              words="self-assessment through predictive uncertainty that increases quickly with increasing levels of "
              "noise or attacks", comparison="chance (AUROC 0.5)"),
    )
    rule = "taylor"
    #: KL weight per batch, applied to the whole KL as in EnDP (see models.endp.EnDP.loss)
    tau = 1e-6

    def build(self, task: Task) -> nn.Module:
        channels, height, _ = task.input_shape
        if task.is_small_grayscale:
            return _small_net(task.num_classes, self.rule)
        return cifar_moment_net(channels, height, task.num_classes, lambda: _activation(self.rule))

    def train_config(self, task: Task) -> TrainConfig:
        """The paper: Adam lr 1e-4, 10 epochs (MNIST). Here lr 5e-3 with a cosine schedule, as for EnDP:
        from means at std 0.01, 1e-4 moves too slowly for a budget of minutes (full MNIST, 1 epoch at
        lr 1e-3: 93.9% test accuracy; 2 epochs at 5e-3: 97.8%). Quick: 2 epochs (at least 900
        steps); standard: the paper's 10. CIFAR: lr 1e-3, 2 / 30 epochs (a budget, not tuned)."""
        if task.is_small_grayscale:
            return TrainConfig(epochs=2 if task.profile == "quick" else 10, lr=5e-3, min_steps=900)
        return TrainConfig(epochs=2 if task.profile == "quick" else 30, lr=1e-3)

    def loss(self, network: nn.Module, output, y: Tensor, task: Task) -> Tensor:
        mean, var = output
        return gaussian_likelihood_loss(mean, var, y, task.num_classes) + self.tau * kl_divergence(network)

    def likelihood(self, output, y: Tensor, task: Task) -> Tensor:
        """Per-example Gaussian NLL: the harness attacks it as well as the cross-entropy of the mean."""
        mean, var = output
        return gaussian_likelihood_loss(mean, var, y, task.num_classes, reduction="none")


@register_model("vdp-unscented")
class VDPUnscented(VDP):
    """VDP with the unscented transform at the ReLUs instead of the Taylor rule (Dera et al. 2021)."""

    summary = "VDP with unscented-transform moments at the nonlinearities"
    rule = "unscented"
