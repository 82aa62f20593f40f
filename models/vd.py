"""Variational dropout with learned dropout rates: Kingma, Salimans, Welling, "Variational Dropout and
the Local Reparameterization Trick", NeurIPS 2015, in the per-weight form of Molchanov, Ashukha,
Vetrov, "Variational Dropout Sparsifies Deep Neural Networks", ICML 2017.

Each weight is w = θ (1 + √α ε), ε ~ N(0, 1), i.e. q(w) = N(θ, α θ²): Gaussian dropout whose rate α
is a variational parameter, here one per weight (Kingma et al.'s "independent weight noise", variant
B, with the finest granularity of Molchanov et al.). The prior is the log-uniform p(|w|) ∝ 1/|w|, the
only prior under which Gaussian dropout is variational inference; its KL depends on α alone,

    −KL(q ‖ p) = ½ log α − E_{ε~N(1, α)} log|ε| + const,

and has no closed form. Kingma et al. fit a cubic in α, −KL ≈ ½ log α + 1.16145 α − 1.50204 α² +
0.58630 α³, valid for α ≤ 1 only, and cap α at 1. Molchanov et al. fit the whole range,

    −KL ≈ k₁ σ(k₂ + k₃ log α) − ½ log(1 + 1/α) − k₁,  k₁ = 0.63576, k₂ = 1.87320, k₃ = 1.48695,

which we use: it lets α grow past 1, which is where learned dropout rates go for weights the data
do not need (Molchanov et al.'s sparsification), and inside α ≤ 1 it agrees with Kingma's cubic
(tests/test_vd.py checks both against a numerical estimate of the expectation). With α unbounded, the
multiplicative parameterisation's gradients have a variance growing with α, so we use Molchanov et
al.'s *additive* reparameterisation: the parameters are θ and log σ² (σ² = α θ²), and the noise added
to a pre-activation has variance Σ σ² a², independent of θ (local reparameterization, as in
``benchmark.layers.variational``); log α = log σ² − log θ² is clipped to [−8, 8] inside the KL, as in their
code. Biases are deterministic (not regularised), as in both papers.

The deployed network draws fresh noise on every call, so the harness's decision is the mean softmax
over S draws of q. Molchanov et al. instead predict with the mean network after dropping the weights
with log α > 3: that is the deterministic ``surrogate`` here (the transfer attack's source).

Deviations: architecture and budget. Kingma et al. used MLPs on MNIST and a conv net on CIFAR-10;
Molchanov et al. LeNet-300-100 and LeNet-5 on MNIST and a VGG-like net on CIFAR-10, trained 200 epochs
(lr 1e-3 decayed linearly to 0, KL weight annealed from 0 to 1 over the first epochs, or from a
pretrained net for VGG; from memory of the paper, unverified here). We make every conv and dense layer
of the benchmark's CNNs (``benchmark.layers.cnn.make_cnn``: a LeNet-5-like net on 28x28, VGG-style on 32x32)
variational dropout layers, with Adam and cosine decay for 2 epochs (≥ 900 steps) on the quick profile
and 20/60 on standard, the KL weight annealed linearly from 0 to 1 over the first ``KL_WARMUP`` of
training; log σ² starts at −10 (α ≈ 0 for typical weights: the net starts deterministic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.claim import bayesian_claims
from benchmark.layers.cnn import make_cnn
from benchmark.layers.variational import (
    ConvGeometry,
    DenseGeometry,
    LocalReparameterization,
    conv_geometry,
    elbo_loss,
    posterior_mean,
    swap_layers,
)
from benchmark.models.bbb import variational_recipe
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model

# Molchanov et al. 2017's fit of the negative KL to the log-uniform prior
K1, K2, K3 = 0.63576, 1.87320, 1.48695
#: log α bounds inside the KL (Molchanov et al.'s code)
LOG_ALPHA_CLIP = 8.0
#: Molchanov et al.'s test-time rule: weights with log α above this are dropped
PRUNE_LOG_ALPHA = 3.0
#: initial log σ² (Molchanov et al.)
LOG_SIGMA2_INIT = -10.0
#: fraction of training over which the KL weight rises linearly from 0 to 1
KL_WARMUP = 0.25


def neg_kl_log_uniform(log_alpha: Tensor) -> Tensor:
    """Molchanov et al.'s approximation of −KL(N(θ, αθ²) ‖ log-uniform), elementwise, 0 as α → ∞.

    ½ log(1 + 1/α) is written as ½ softplus(−log α), stable for any log α.
    """
    return K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1


class _DropoutWeights(LocalReparameterization):
    """Weights N(θ, σ²) with σ² = exp(log σ²) (additive reparameterisation), deterministic bias."""

    def __init__(self, template: nn.Module, log_sigma2_init: float):
        super().__init__()
        self.weight = nn.Parameter(template.weight.detach().clone())
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, log_sigma2_init))
        self.bias = nn.Parameter(template.bias.detach().clone())

    @property
    def log_alpha(self) -> Tensor:
        """Log α = log σ² − log θ², clipped to [−8, 8]."""
        return (self.log_sigma2 - torch.log(self.weight.square() + 1e-8)).clamp(-LOG_ALPHA_CLIP, LOG_ALPHA_CLIP)

    def weight_moments(self) -> tuple[Tensor, Tensor, Tensor, None]:
        return self.weight, self.log_sigma2.exp(), self.bias, None

    def kl(self) -> Tensor:
        return -neg_kl_log_uniform(self.log_alpha).sum()

    def deterministic(self) -> nn.Module:
        """Molchanov et al.'s test-time layer: the means θ, with the weights of log α > 3 set to zero."""
        weight = self.weight.masked_fill(self.log_alpha > PRUNE_LOG_ALPHA, 0.0)
        return self.deterministic_layer(weight, self.bias)


class VariationalDropoutLinear(DenseGeometry, _DropoutWeights):
    """A dense layer with per-weight variational dropout: weights N(θ, σ²), initialised like ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, log_sigma2_init: float = LOG_SIGMA2_INIT):
        super().__init__(nn.Linear(in_features, out_features), log_sigma2_init)
        self.in_features, self.out_features = in_features, out_features

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class VariationalDropoutConv2d(ConvGeometry, _DropoutWeights):
    """A conv layer with per-weight variational dropout: weights N(θ, σ²), initialised like ``nn.Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 log_sigma2_init: float = LOG_SIGMA2_INIT):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), log_sigma2_init)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, padding


def variational_dropout(layer: nn.Module) -> nn.Module | None:
    """The variational dropout counterpart of an ``nn.Linear``/``nn.Conv2d`` (θ = its weights), else None."""
    if isinstance(layer, nn.Linear):
        new = VariationalDropoutLinear(layer.in_features, layer.out_features)
    elif isinstance(layer, nn.Conv2d):
        new = VariationalDropoutConv2d(layer.in_channels, layer.out_channels, **conv_geometry(layer))
    else:
        return None
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        new.bias.copy_(layer.bias)
    return new.to(layer.weight.device)


@register_model("vd")
class VariationalDropout(ModelPlugin):
    """Variational dropout (Molchanov et al. 2017): every conv and dense layer with learned per-weight rates."""

    predictive = "stochastic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "variational dropout: learned per-weight Gaussian dropout rates, log-uniform prior (sparse-VD KL)"
    claims = bayesian_claims("Variational dropout", "vd", "a point estimate")

    def __init__(self) -> None:
        self.kl_weight = 1.0

    def build(self, task: Task) -> nn.Module:
        return swap_layers(make_cnn(task), variational_dropout)

    def train_config(self, task: Task) -> TrainConfig:
        return variational_recipe(task)

    def before_step(self, network: nn.Module, progress: float) -> None:
        self.kl_weight = min(1.0, progress / KL_WARMUP)

    def loss(self, network: nn.Module, output, y, task: Task):
        return elbo_loss(network, output, y, task.n_train, self.kl_weight)

    def surrogate(self, network: nn.Module) -> nn.Module:
        """Molchanov et al.'s deterministic test network: posterior means, weights with log α > 3 pruned."""
        return posterior_mean(network)
