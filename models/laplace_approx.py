"""Last-layer Laplace approximation: Daxberger, Kristiadi, Immer, Eschenhagen, Bauer, Hennig, "Laplace
Redux: Effortless Bayesian Deep Learning", NeurIPS 2021 (the ``laplace-torch`` package).

The baseline CNN is trained as usual (MAP); then, in ``finalize``, laplace-torch fits a Gaussian
posterior over the last linear layer's weights and bias, N(θ_MAP, Σ), with Σ the inverse of the
generalised Gauss-Newton (GGN) Hessian of the cross-entropy plus the prior precision, the prior
precision chosen by maximising the marginal likelihood. The GGN is Kronecker-factored (KFAC), the
paper's recommended default (last layer, KFAC, GGN). The exact ("full") last-layer GGN was tried:
the same posterior family, but laplace-torch's marginal-likelihood loop then factorises a
1,290 x 1,290 matrix per step, 80 s on two shared CPU cores against 0.5 s for KFAC.

Predictive: the linearised (GLM) model with the probit approximation of the softmax integral,
p(y | x) ≈ softmax(f_μ / √(1 + π/8 · diag Var f)) where f_μ = W φ(x) + b and
Var f = J Σ Jᵀ with the last-layer Jacobian J = [φ(x)ᵀ ⊗ I_C, I_C]. With the features φ(x) fixed,
Var f_c = φ̃ᵀ Σ_cc φ̃ for φ̃ = [φ, 1] and Σ_cc the block of Σ belonging to class c. The network
computes this itself from the posterior covariance held in a buffer (the checkpoint holds tensors
only) and returns the probit-scaled logits: a deterministic predictor with exact input gradients,
whose softmax is laplace-torch's ``la(x, pred_type="glm", link_approx="probit")`` (tested).

Differences from the paper, on purpose: only the probit link (the paper also offers Monte Carlo
over the linearised logits, which would make the predictor stochastic); the posterior is fitted on
the network in eval mode (batch-norm statistics as deployed). The module is named
``laplace_approx`` so that it cannot shadow the ``laplace`` package.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

from benchmark.claim import bayesian_claims
from benchmark.data import to_float
from benchmark.layers.cnn import make_cnn
from benchmark.models.baseline import cnn_recipe
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


class LastLayerLaplace(nn.Module):
    """A MAP network whose last module is ``nn.Linear``, plus the last layer's posterior covariance.

    ``posterior_cov`` is over laplace-torch's parameter order: the weight matrix row by row (class c,
    feature h at c·H + h), then the bias. Zero (before the fit) gives the MAP logits.
    """

    def __init__(self, net: nn.Sequential):
        super().__init__()
        if not isinstance(net[-1], nn.Linear):
            raise ValueError("the last module must be nn.Linear")
        self.net = net
        last = net[-1]
        n = last.weight.numel() + last.out_features
        self.register_buffer("posterior_cov", torch.zeros(n, n))
        self.register_buffer("prior_precision", torch.zeros(1))

    def features(self, x: Tensor) -> Tensor:
        return self.net[:-1](x)

    def class_variances(self, phi: Tensor) -> Tensor:
        """diag(J Σ Jᵀ) per example: Var f_c = φ̃ᵀ Σ_cc φ̃, ``[B, C]``."""
        last = self.net[-1]
        classes, width = last.out_features, last.in_features
        cov = self.posterior_cov
        weights = cov[: classes * width, : classes * width].view(classes, width, classes, width)
        blocks = torch.stack([weights[c, :, c, :] for c in range(classes)])                # [C, H, H]
        cross = cov[: classes * width, classes * width:].view(classes, width, classes)
        cross = torch.stack([cross[c, :, c] for c in range(classes)])                        # [C, H]
        bias = cov[classes * width:, classes * width:].diagonal()                             # [C]
        return (torch.einsum("bh,chk,bk->bc", phi, blocks, phi) + 2 * phi @ cross.T + bias).clamp_min(0)

    def forward(self, x: Tensor) -> Tensor:
        phi = self.features(x)
        mean = self.net[-1](phi)
        return mean / torch.sqrt(1 + math.pi / 8 * self.class_variances(phi))


def fit_last_layer_laplace(network: LastLayerLaplace, loader: DataLoader) -> object:
    """Fit laplace-torch's last-layer KFAC-GGN Laplace around the MAP net, tune the prior precision
    by marginal likelihood, and copy the posterior covariance into the network's buffers. Returns the
    fitted laplace-torch object."""
    from laplace import Laplace

    was_training = network.training
    network.eval()  # batch-norm statistics and dropout as deployed
    la = Laplace(network.net, "classification", subset_of_weights="last_layer", hessian_structure="kron")
    la.fit(loader)
    la.optimize_prior_precision(method="marglik")
    with torch.no_grad():  # the dense Σ of the last layer (1,290 x 1,290 on MNIST): small enough to store
        network.posterior_cov.copy_(la.posterior_precision.to_matrix(exponent=-1).to(network.posterior_cov))
        network.prior_precision.copy_(la.prior_precision.reshape(-1)[:1].to(network.prior_precision))
    network.train(was_training)
    return la


@register_model("laplace")
class LaplacePlugin(ModelPlugin):
    """Last-layer Laplace with a KFAC GGN (Daxberger et al. 2021) and the probit GLM predictive."""

    predictive = "deterministic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "Last-layer Laplace (KFAC GGN, marginal-likelihood prior) with the probit linearised predictive"
    claims = bayesian_claims("Laplace", "laplace", "a point estimate")

    def build(self, task: Task) -> nn.Module:
        return LastLayerLaplace(make_cnn(task))

    def train_config(self, task: Task) -> TrainConfig:
        """The baseline's recipe: the Laplace fit is post hoc, around the same MAP network."""
        return cnn_recipe(task)

    def finalize(self, network: nn.Module, x: Tensor, y: Tensor, task: Task, config: TrainConfig,
                 device: torch.device, seed: int) -> None:
        """Fit the posterior on the whole training set (the GGN is a sum over it)."""
        data = _FloatImages(x, y, device)
        batches = BatchSampler(SequentialSampler(data), batch_size=256, drop_last=False)
        fit_last_layer_laplace(network, DataLoader(data, sampler=batches, batch_size=None))

    def surrogate(self, network: nn.Module) -> nn.Module:
        """The MAP network (the posterior mean), returning logits."""
        return network.net


class _FloatImages(TensorDataset):
    """Training images converted to float in [0, 1] on the fly, on the fit's device; indexed by a
    whole batch of indices at once (no per-image collation)."""

    def __init__(self, x: Tensor, y: Tensor, device: torch.device):
        super().__init__(x, y)
        self.device = device

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return to_float(x).to(self.device), y.to(self.device)
