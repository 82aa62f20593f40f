"""Mean-field variational layers with the local reparameterization trick, shared by the weight-space
variational plugins (``bbb``, ``vd``, ``stf-bnn``) and the certifiable ``ibp-bnn``.

Every weight is an independent Gaussian, w ~ N(μ, σ²). For a layer that is linear in its weights,
z = Σ_i w_i a_i + b, the pre-activation given the input a is Gaussian too:

    E z = Σ μ_i a_i + μ_b,    Var z = Σ σ_i² a_i² + σ_b²,

so instead of sampling one weight matrix per mini-batch, the *local reparameterization trick*
(Kingma, Salimans, Welling, "Variational Dropout and the Local Reparameterization Trick", NeurIPS
2015) samples the pre-activation directly, z = E z + √(Var z) · ζ with ζ ~ N(0, 1) drawn per example
and per unit. A dense layer computes both moments with two matrix products, a convolution with two
convolutions, conv(a, μ) and conv(a², σ²). The noise of different examples is independent, as the
harness requires of a stochastic network (it repeats inputs along the batch axis to draw), and the
gradient estimator has a lower variance than per-batch weight sampling. Note that within one example
the noise of units sharing weights (one conv kernel at two positions) is drawn independently: each
*marginal* is exact, the correlations across positions are not (Kingma et al. 2015, Molchanov et al.
2017 make the same approximation for convolutions).

A layer can instead sample ``"weights"``: one independent draw of its weights per example, the exact law
of the Bayesian network (what ``ibp-bnn`` deploys, so that the draws it certifies and the draws it deploys
have one law). A dense layer meets one input vector per example, and the pre-activations of a weight draw
are then independent across units with exactly the moments above: local reparameterization *is* an exact
sampler of a per-example weight draw there, and is kept. A convolution applies its kernel at every
position, so it draws one kernel per example and applies each with one grouped convolution
(``groups = batch``), as cheap as the two convolutions of local reparameterization.

API
---
``LocalReparameterization``
    Base class of a layer whose weights are independent Gaussians. Subclasses give the geometry
    (``transform(x, weight, bias)``: ``F.linear`` or ``F.conv2d``) and the distribution
    (``weight_moments() -> (w_mean, w_var, b_mean, b_var or None)`` and ``kl()``). It provides
    ``forward(x)`` (fresh noise on every call in train *and* eval mode, drawn as ``sampling`` says:
    ``"local"``, the default, local reparameterization; ``"weights"``, one weight draw per example),
    ``sample_weights(n=None) -> (weight, bias)`` (one draw, differentiable in the variational parameters,
    for interval bound propagation; with ``n``, n independent draws stacked on a leading axis),
    ``mean_weights() -> (weight, bias)`` and ``deterministic()`` (an
    ``nn.Linear``/``nn.Conv2d`` holding the mean weights, built by the geometry's
    ``deterministic_layer(weight, bias)``). ``DenseGeometry`` and ``ConvGeometry`` are the two geometry
    mixins; a new distribution (e.g. the ``vd`` plugin's log-uniform prior) subclasses both ways. A geometry
    whose local reparameterization is not the law of a weight draw (``local_is_exact = False``) gives
    ``transform_per_example(x, weight, bias)``, row i of x through draw i.
``set_sampling(network, mode)``
    Sets ``sampling`` (``"local"`` or ``"weights"``) on every variational layer of ``network``.
``MeanFieldLinear(in_features, out_features, prior_std=1.0, rho_init=-5.0)`` and
``MeanFieldConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, prior_std=1.0, rho_init=-5.0)``
    Gaussian weights *and* biases, σ = softplus(ρ), parameters ``weight_mu, weight_rho, bias_mu,
    bias_rho``; prior N(0, prior_std²) on every weight and bias (Blundell et al., "Weight Uncertainty in
    Neural Networks", ICML 2015); ``kl()`` the closed-form KL(q ‖ p) summed over the layer. The means
    start at PyTorch's default initialisation of the deterministic layer, ρ at ``rho_init``
    (σ ≈ 0.0067 for -5). ``from_layer(layer, ...)`` builds one with the geometry (and, with
    ``copy_weights=True``, the weights as means) of an ``nn.Linear``/``nn.Conv2d``.
``kl_divergence(module)``
    Σ of ``kl()`` over every submodule that has one (these layers, the Gaussian moment layers of
    ``benchmark.layers.moments``, the variational dropout layers of the ``vd`` plugin): a layer's ``kl()``
    covers its own parameters only.
``swap_layers(network, convert)``
    Replaces, in place, every submodule for which ``convert(module)`` returns a module (e.g. every
    ``nn.Conv2d``/``nn.Linear`` of a baseline architecture by its mean-field counterpart), so the
    plugins reuse the architectures of ``benchmark.layers.cnn`` rather than copying them.
``elbo_loss(network, logits, y, n_train, kl_weight=1.0)``
    The negative ELBO per training example: the cross-entropy of one draw of the logits (a one-sample
    estimate of the expected NLL) plus ``kl_weight`` · KL(q ‖ p) / n_train (Blundell et al. 2015).
``posterior_mean(network)``
    A deep copy with every ``LocalReparameterization`` layer replaced by its ``deterministic()``
    version: the deterministic surrogate the harness attacks for transfer. A layer class may override
    ``deterministic()`` (variational dropout prunes weights there).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.layers.noise import standard_normal_like

#: added to the pre-activation variance under the square root: keeps the gradient finite where the
#: variance is exactly zero (a zero input and a deterministic bias), negligible elsewhere (std 1e-8)
VAR_FLOOR = 1e-16


#: how a variational layer's forward pass draws: pre-activation noise, or one weight draw per example
SAMPLING_MODES = ("local", "weights")


class LocalReparameterization(nn.Module):
    """A layer linear in independent Gaussian weights, sampled through its pre-activations."""

    #: ``"local"``: local reparameterization (exact marginals per unit); ``"weights"``: one weight draw per
    #: example (the exact law of the Bayesian layer; see the module docstring)
    sampling = "local"
    #: whether local reparameterization already has the law of a per-example weight draw (dense layers)
    local_is_exact = False

    def transform(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The layer's linear map for the given weights (``F.linear``, ``F.conv2d``, ...)."""
        raise NotImplementedError

    def weight_moments(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Means and variances of the weights and bias; a ``None`` bias variance is a deterministic bias."""
        raise NotImplementedError

    def kl(self) -> Tensor:
        """KL(q ‖ prior) of this layer's own parameters."""
        raise NotImplementedError

    def deterministic_layer(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        """A deterministic layer of the same geometry holding the given weights."""
        raise NotImplementedError

    def deterministic(self) -> nn.Module:
        """The deterministic layer with the posterior-mean weights."""
        return self.deterministic_layer(*self.mean_weights())

    def transform_per_example(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The linear map with row i of ``x`` through ``weight[i]`` (and ``bias[i]``; a bias without the
        leading axis is shared)."""
        raise NotImplementedError(f"{type(self).__name__} cannot apply one weight draw per example")

    def forward(self, x: Tensor) -> Tensor:
        if self.sampling == "weights" and not self.local_is_exact:
            return self.transform_per_example(x, *self.sample_weights(x.shape[0]))
        w_mean, w_var, b_mean, b_var = self.weight_moments()
        mean = self.transform(x, w_mean, b_mean)
        var = self.transform(x.square(), w_var, b_var)
        return torch.addcmul(mean, (var + VAR_FLOOR).sqrt(), standard_normal_like(mean))  # one pass, not two

    def sample_weights(self, n: int | None = None) -> tuple[Tensor, Tensor | None]:
        """One draw (weight, bias) of the weights, w = μ + σ ε, differentiable in the variational parameters;
        with ``n``, n independent draws along a new leading axis (a deterministic bias is not repeated)."""
        w_mean, w_var, b_mean, b_var = self.weight_moments()
        lead = () if n is None else (n,)
        weight = w_mean + w_var.sqrt() * torch.randn(*lead, *w_mean.shape, dtype=w_mean.dtype, device=w_mean.device)
        if b_var is None or b_mean is None:
            return weight, b_mean
        return weight, b_mean + b_var.sqrt() * torch.randn(*lead, *b_mean.shape, dtype=b_mean.dtype,
                                                           device=b_mean.device)

    def mean_weights(self) -> tuple[Tensor, Tensor | None]:
        w_mean, _, b_mean, _ = self.weight_moments()
        return w_mean, b_mean


class DenseGeometry:
    """Mixin: the layer is ``F.linear``; its deterministic counterpart an ``nn.Linear``."""

    in_features: int
    out_features: int
    #: given one input vector, W a + b with independent Gaussian rows of W has independent Gaussian units
    #: N(μ a + μ_b, σ² a² + σ_b²): local reparameterization samples a per-example weight draw exactly (up to
    #: the std-1e-8 jitter of ``VAR_FLOOR``)
    local_is_exact = True

    def transform(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    def deterministic_layer(self, weight: Tensor, bias: Tensor | None) -> nn.Linear:
        layer = nn.Linear(self.in_features, self.out_features, bias=bias is not None)
        _copy_into(layer, weight, bias)
        return layer.to(weight.device)


class ConvGeometry:
    """Mixin: the layer is ``F.conv2d`` with a stride and padding; its deterministic version an ``nn.Conv2d``."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int

    def transform(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding)

    def transform_per_example(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Kernel ``weight[i]`` on example i: the batch folded into channels, one group per example."""
        n, channels = x.shape[:2]
        if n == 0:
            return self.transform(x, weight.new_zeros(weight.shape[1:]), None)
        out = F.conv2d(x.reshape(1, n * channels, *x.shape[2:]), weight.flatten(0, 1), None, self.stride,
                       self.padding, groups=n)
        out = out.view(n, weight.shape[1], *out.shape[2:])
        if bias is None:
            return out
        return out + (bias if bias.dim() == 2 else bias.expand(n, -1))[:, :, None, None]

    def deterministic_layer(self, weight: Tensor, bias: Tensor | None) -> nn.Conv2d:
        layer = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                          bias=bias is not None)
        _copy_into(layer, weight, bias)
        return layer.to(weight.device)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


def _copy_into(layer: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)


def conv_geometry(layer: nn.Conv2d) -> dict:
    """The square-kernel, int stride/padding geometry of ``layer`` (what the variational convs support)."""
    if (len(set(layer.kernel_size)) != 1 or len(set(layer.stride)) != 1 or not isinstance(layer.padding, tuple)
            or len(set(layer.padding)) != 1 or layer.groups != 1 or set(layer.dilation) != {1}):
        raise ValueError(f"unsupported convolution geometry: {layer}")
    return {"kernel_size": layer.kernel_size[0], "stride": layer.stride[0], "padding": layer.padding[0]}


class _GaussianPrior(LocalReparameterization):
    """Weights and biases N(μ, softplus(ρ)²), prior N(0, prior_std²) on each (Blundell et al. 2015)."""

    def __init__(self, template: nn.Module, prior_std: float, rho_init: float):
        super().__init__()
        if prior_std <= 0:
            raise ValueError(f"prior_std must be positive, got {prior_std}")
        self.prior_std = prior_std
        # the means start where PyTorch's deterministic layer does (Kaiming-uniform weights)
        self.weight_mu = nn.Parameter(template.weight.detach().clone())
        self.weight_rho = nn.Parameter(torch.full_like(self.weight_mu, rho_init))
        self.bias_mu = nn.Parameter(template.bias.detach().clone())
        self.bias_rho = nn.Parameter(torch.full_like(self.bias_mu, rho_init))

    @property
    def weight_sigma(self) -> Tensor:
        return F.softplus(self.weight_rho)

    @property
    def bias_sigma(self) -> Tensor:
        return F.softplus(self.bias_rho)

    def weight_moments(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.weight_mu, self.weight_sigma.square(), self.bias_mu, self.bias_sigma.square()

    def kl(self) -> Tensor:
        """Σ KL(N(μ, σ²) ‖ N(0, p²)) = Σ [log(p/σ) + (σ² + μ²)/(2p²) − ½] over weights and biases."""
        return (gaussian_kl(self.weight_mu, self.weight_sigma, self.prior_std)
                + gaussian_kl(self.bias_mu, self.bias_sigma, self.prior_std))

    def load_means(self, layer: nn.Module) -> None:
        """Copy a deterministic layer's weights and bias into the means."""
        with torch.no_grad():
            self.weight_mu.copy_(layer.weight)
            self.bias_mu.copy_(layer.bias)


def gaussian_kl(mu: Tensor, sigma: Tensor, prior_std: float) -> Tensor:
    """Σ KL(N(μ, σ²) ‖ N(0, prior_std²)), elementwise then summed."""
    ratio = (sigma / prior_std).square()
    return 0.5 * (ratio + (mu / prior_std).square() - 1.0 - ratio.log()).sum()


class MeanFieldLinear(DenseGeometry, _GaussianPrior):
    """Dense layer with mean-field Gaussian weights and biases, sampled by local reparameterization."""

    def __init__(self, in_features: int, out_features: int, prior_std: float = 1.0, rho_init: float = -5.0):
        super().__init__(nn.Linear(in_features, out_features), prior_std, rho_init)
        self.in_features, self.out_features = in_features, out_features

    @classmethod
    def from_layer(cls, layer: nn.Linear, copy_weights: bool = True, **kwargs) -> MeanFieldLinear:
        new = cls(layer.in_features, layer.out_features, **kwargs).to(layer.weight.device)
        if copy_weights:
            new.load_means(layer)
        return new

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, prior_std={self.prior_std}"


class MeanFieldConv2d(ConvGeometry, _GaussianPrior):
    """2-D convolution with mean-field Gaussian kernels and biases: mean conv(a, μ), variance conv(a², σ²)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 prior_std: float = 1.0, rho_init: float = -5.0):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), prior_std, rho_init)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, padding

    @classmethod
    def from_layer(cls, layer: nn.Conv2d, copy_weights: bool = True, **kwargs) -> MeanFieldConv2d:
        new = cls(layer.in_channels, layer.out_channels, **conv_geometry(layer), **kwargs).to(layer.weight.device)
        if copy_weights:
            new.load_means(layer)
        return new


def mean_field(layer: nn.Module, **kwargs) -> nn.Module | None:
    """The mean-field counterpart of an ``nn.Linear``/``nn.Conv2d`` (means = its weights), else None:
    a ``convert`` for :func:`swap_layers`."""
    if isinstance(layer, nn.Linear):
        return MeanFieldLinear.from_layer(layer, **kwargs)
    if isinstance(layer, nn.Conv2d):
        return MeanFieldConv2d.from_layer(layer, **kwargs)
    return None


def set_sampling(network: nn.Module, mode: str) -> nn.Module:
    """Make every variational layer of ``network`` draw as ``mode`` says (``SAMPLING_MODES``); returns it."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {mode!r}")
    for module in network.modules():
        if isinstance(module, LocalReparameterization):
            module.sampling = mode
    return network


def swap_layers(network: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Replace in place every submodule ``m`` for which ``convert(m)`` is not None (children of a replaced
    module are not visited); returns ``network``."""
    for name, child in network.named_children():
        new = convert(child)
        if new is not None:
            setattr(network, name, new)
        else:
            swap_layers(child, convert)
    return network


def posterior_mean(network: nn.Module) -> nn.Module:
    """A deterministic copy of ``network``: every variational layer replaced by its mean-weight layer."""
    deterministic = copy.deepcopy(network)
    return swap_layers(deterministic, lambda m: m.deterministic() if isinstance(m, LocalReparameterization) else None)


def kl_divergence(module: nn.Module) -> Tensor:
    """Σ of ``kl()`` over every submodule of ``module`` (itself included) that defines one."""
    terms = [m.kl() for m in module.modules() if callable(getattr(m, "kl", None))]
    if not terms:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        return torch.zeros((), device=device)
    return torch.stack(terms).sum()


def elbo_loss(network: nn.Module, logits: Tensor, y: Tensor, n_train: int, kl_weight: float = 1.0) -> Tensor:
    """Negative ELBO per example: expected NLL (one local-reparameterization draw) + weight · KL / N."""
    return F.cross_entropy(logits, y) + kl_weight * kl_divergence(network) / n_train


__all__ = [
    "ConvGeometry",
    "DenseGeometry",
    "LocalReparameterization",
    "MeanFieldConv2d",
    "MeanFieldLinear",
    "conv_geometry",
    "elbo_loss",
    "gaussian_kl",
    "kl_divergence",
    "mean_field",
    "posterior_mean",
    "set_sampling",
    "swap_layers",
]
