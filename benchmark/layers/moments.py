"""Gaussian moment propagation through the linear parts of a network, with diagonal covariances.

Shared by the density-propagating plugins: EnDP (Carannante, Dera, Rasool, Bouaynaya, Mihaylova,
"Robust Learning via Ensemble Density Propagation in Deep Neural Networks", MLSP 2020,
arXiv 2111.05953) and VDP/eVI (Dera et al., IEEE Trans. Signal Processing 2021). The two differ
only at the nonlinearities, which therefore live with each plugin; the Gaussian layers, the
softmax moment rule, the likelihood and each layer's KL term are the same and live here (summed over a
network by ``benchmark.layers.variational.kl_divergence``).

Weights are Gaussian, w ~ N(M, σ²) independently, with one variance σ² = softplus(ρ) per output
channel/unit. Activations carry a mean and a *diagonal* variance: the original code keeps a full
spatial covariance per channel (about 100 MB per CIFAR image in the first layer), which we replace by
its diagonal, so correlations between units are dropped. Every module maps a ``(mean, var)`` pair to
a ``(mean, var)`` pair; the Gaussian layers also take a plain tensor (var = 0), so a network can be
fed images directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.layers.normalize import Normalize

Moments = tuple[Tensor, Tensor]

#: ρ such that σ² = softplus(ρ) ≈ 0.01 at initialisation (Carannante et al. 2020)
RHO_INIT = -4.6
#: std of the initial weight means (Carannante et al. 2020)
MEAN_INIT_STD = 0.01


def _split(x: Tensor | Moments) -> tuple[Tensor, Tensor | None]:
    """A plain tensor is a point mass: its variance is zero, represented by None to skip the work."""
    if isinstance(x, Tensor):
        return x, None
    return x


class _GaussianWeights(nn.Module):
    """Weight means M, per-output-unit variance σ² = softplus(ρ), deterministic bias."""

    def __init__(self, weight_shape: tuple[int, ...], mean_std: float, rho_init: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(weight_shape) * mean_std)
        self.rho = nn.Parameter(torch.full((weight_shape[0],), rho_init))
        self.bias = nn.Parameter(torch.zeros(weight_shape[0]))

    @property
    def weight_var(self) -> Tensor:
        """σ² per output unit; softplus keeps it positive without a constraint."""
        return F.softplus(self.rho)

    def kl(self) -> Tensor:
        """Σ over weights of KL(N(M, σ²) ‖ N(0, 1)) = ½(σ² + M² − 1 − log σ²)."""
        var = self.weight_var
        fan_in = self.weight[0].numel()
        return 0.5 * (self.weight.pow(2).sum() + fan_in * (var - 1.0 - var.log()).sum())


class GaussianConv2d(_GaussianWeights):
    """Convolution with Gaussian kernels, propagating mean and diagonal variance.

    For output z = Σ_i w_i x_i + b with independent w_i ~ N(M_i, σ²) and x_i ~ (μ_i, v_i):
    E z = Σ M_i μ_i + b and Var z = Σ M_i² v_i + σ² Σ (μ_i² + v_i), i.e.
    ``var = conv(v, M²) + σ²·conv(μ² + v, 1)``. The all-ones kernel sums over input channels too,
    so the second term is one single-channel convolution of the channel-summed energy, shared by
    every output channel and scaled by its σ².
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, mean_std: float = MEAN_INIT_STD, rho_init: float = RHO_INIT):
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), mean_std, rho_init)
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor | Moments) -> Moments:
        mean, var = _split(x)
        out_mean = F.conv2d(mean, self.weight, self.bias, self.stride, self.padding)
        energy = mean.pow(2) if var is None else mean.pow(2) + var
        ones = energy.new_ones((1, 1, *self.weight.shape[-2:]))
        patch_energy = F.conv2d(energy.sum(1, keepdim=True), ones, None, self.stride, self.padding)
        out_var = self.weight_var.view(1, -1, 1, 1) * patch_energy
        if var is not None:
            out_var = out_var + F.conv2d(var, self.weight.pow(2), None, self.stride, self.padding)
        return out_mean, out_var


class GaussianLinear(_GaussianWeights):
    """Fully connected layer with Gaussian weights: mean = μMᵀ + b, var = v(M²)ᵀ + σ²(Σv + Σμ²)."""

    def __init__(self, in_features: int, out_features: int, mean_std: float = MEAN_INIT_STD,
                 rho_init: float = RHO_INIT):
        super().__init__((out_features, in_features), mean_std, rho_init)

    def forward(self, x: Tensor | Moments) -> Moments:
        mean, var = _split(x)
        out_mean = F.linear(mean, self.weight, self.bias)
        energy = mean.pow(2) if var is None else mean.pow(2) + var
        out_var = self.weight_var * energy.sum(-1, keepdim=True)
        if var is not None:
            out_var = out_var + F.linear(var, self.weight.pow(2))
        return out_mean, out_var


class MomentMaxPool2d(nn.Module):
    """Max-pool the means and keep the variance of the winning unit (Carannante et al. 2020).

    Exact only when one unit per window dominates (mean gaps large against the stds); otherwise the
    max of Gaussians has a larger mean and a smaller variance than the winner's, which is ignored.
    """

    def __init__(self, kernel_size: int, stride: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size

    def forward(self, x: Moments) -> Moments:
        mean, var = x
        out_mean, idx = F.max_pool2d(mean, self.kernel_size, self.stride, return_indices=True)
        out_var = var.flatten(2).gather(2, idx.flatten(2)).view_as(out_mean)
        return out_mean, out_var


class MomentFlatten(nn.Module):
    """Flatten mean and variance alike (the diagonal covariance is elementwise)."""

    def forward(self, x: Moments) -> Moments:
        mean, var = x
        return mean.flatten(1), var.flatten(1)


def softmax_moments(mean_logits: Tensor, var_logits: Tensor) -> tuple[Tensor, Tensor]:
    """First-order (Taylor) moments of softmax(f) for f ~ N(μ_f, diag v_f) (Dera et al. 2021).

    μ_y = softmax(μ_f), Σ_y = J diag(v_f) Jᵀ with the softmax Jacobian J = diag(μ_y) − μ_y μ_yᵀ
    (symmetric). Σ_y is singular: J maps the all-ones direction to zero. Returns ``[B, C]`` and
    ``[B, C, C]``.
    """
    probs = mean_logits.softmax(-1)
    jac = torch.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)
    cov = (jac * var_logits.unsqueeze(-2)) @ jac
    return probs, cov


def gaussian_likelihood_loss(
    mean_logits: Tensor, var_logits: Tensor, y: Tensor, num_classes: int, jitter: float = 1e-3,
    reduction: str = "mean",
) -> Tensor:
    """Gaussian negative log-likelihood of the one-hot label under the softmax moments: batch mean,
    or per example with ``reduction="none"``.

    ½ (y − μ_y)ᵀ(Σ_y + εI)⁻¹(y − μ_y) + ½ log det(Σ_y + εI), the data term of EnDP/eVI (Carannante
    et al. 2020; Dera et al. 2021), without the constant ½ C log 2π. The jitter ε makes the singular
    Σ_y positive definite; the solve and the log-determinant both come from one Cholesky factor, which
    is cheaper and better conditioned than an explicit inverse. The work is done in float64 (C x C
    matrices, cheap): in float32 the rounding of J diag(v) J along its null direction exceeds ε once
    v reaches ~1e6, and the factorisation fails.
    """
    probs, cov = softmax_moments(mean_logits.double(), var_logits.double())
    eye = torch.eye(num_classes, dtype=cov.dtype, device=cov.device)
    chol = torch.linalg.cholesky(cov + jitter * eye)
    resid = (F.one_hot(y, num_classes).to(probs.dtype) - probs).unsqueeze(-1)
    mahalanobis = (resid * torch.cholesky_solve(resid, chol)).sum((-2, -1))
    log_det = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    per_example = (0.5 * (mahalanobis + log_det)).to(mean_logits.dtype)
    return per_example if reduction == "none" else per_example.mean()


#: σ² ≈ 1e-4 for the CIFAR net's initial weight variance, see :func:`cifar_moment_net`
_CIFAR_RHO_INIT = -9.2


def cifar_moment_net(in_channels: int, size: int, num_classes: int,
                     activation: Callable[[], nn.Module]) -> nn.Sequential:
    """EnDP's CIFAR-10 net, shared with VDP: six 3x3 Gaussian convs [32,32,64,64,128,128], each followed
    by ``activation()`` (EnDP's ELU ensemble, VDP's Taylor or unscented ReLU), a 2x2 max-pool after
    every second conv, FC to the classes.

    Initialised differently from the EnDP paper (means std 0.01, σ² = 0.01), which does not train this
    seven-layer net here: with σ² = 100·M² every layer's output is mostly injected noise, the ELU
    ensembles turn that variance into large means, the softmax saturates on the wrong class, its
    Jacobian (and so the likelihood's gradient) vanishes and the loss stalls near 1/(2ε) (on the
    CIFAR-10 JPEG copy, 30-120 Adam steps at lr 1e-3 and 5e-3: loss 500-900, chance accuracy).
    Means at std 1/√fan_in and σ² ≈ 1e-4 keep the signal's scale and a σ²·fan_in noise share of at
    most ~0.1 per layer; the same run then reached 38% accuracy on training images after 120 steps
    of 64. Not tuned further (no GPU was available).
    """
    def conv(cin: int, cout: int) -> GaussianConv2d:
        return GaussianConv2d(cin, cout, 3, padding=1, mean_std=(9 * cin) ** -0.5, rho_init=_CIFAR_RHO_INIT)

    layers: list[nn.Module] = [Normalize((0.5,) * in_channels, (0.5,) * in_channels)]
    channels = in_channels
    for width in (32, 64, 128):
        for _ in range(2):
            layers += [conv(channels, width), activation()]
            channels = width
        layers.append(MomentMaxPool2d(2))
    features = channels * (size // 8) ** 2
    layers += [MomentFlatten(),
               GaussianLinear(features, num_classes, mean_std=features ** -0.5, rho_init=_CIFAR_RHO_INIT)]
    return nn.Sequential(*layers)
