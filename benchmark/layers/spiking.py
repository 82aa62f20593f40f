"""Leaky integrate-and-fire (LIF) spiking networks, shared by the ``snn`` and ``snn-noise`` plugins.

Neuron (discrete time, one step per input frame), for a layer with synaptic current I_t = W x_t + b:

    u_t = beta * u_{t-1} + I_t - theta * s_{t-1}        (leak, integrate, reset by subtraction)
    s_t = H(u_t - theta)                                (spike when the membrane crosses the threshold)

with u_0 = 0, s_0 = 0. The Heaviside step has no useful derivative, so its backward pass uses the
fast-sigmoid surrogate dH/du ~ 1 / (1 + k |u - theta|)^2 (SuperSpike: Zenke & Ganguli, Neural
Computation 2018; surrogate gradients: Neftci, Mostafa, Zenke, IEEE Signal Processing Magazine 2019).
The reset term is detached from the graph (Zenke & Vogels, Neural Computation 2021), a common choice
that keeps the surrogate gradient from flowing through the reset. Attacks reach the input through the
same surrogate derivative (BPDA), so plugins built here declare ``gradients = "surrogate"``.

The derivative the backward uses is an attribute of every :class:`SpikingLayer` (:class:`Surrogate`: a shape
and a slope), which :func:`surrogate_gradient` switches for the duration of an attack without touching the
forward: a network trained through one surrogate is also attacked through others (BPDA variants, Athalye,
Carlini & Wagner, ICML 2018), since nothing makes the training surrogate the best guide for an attacker.

Inputs are presented by direct encoding: the (normalised) image is the input of the first synaptic
layer at every one of the T steps, so the network is deterministic unless noise is injected. The
read-out layer does not spike: the logits are the time average of its synaptic current.

Optional membrane noise (Zhang et al., "A Novel Noise Injection-based Training Scheme for Better Model
Robustness", arXiv 2302.10802): every neuron's input becomes v_t = W x_t + b + sigma * eps_t with
eps_t ~ N(0, 1) fresh per example, unit and step, and one learnable sigma per output channel. In
*likelihood-ratio mode* (training of ``snn-noise``) nothing is back-propagated through the spikes:
each layer's input x_t is detached, the dynamics run on the sampled v_t, and the network records, per
example, a score term with the gradient of the log-density of the sampled v_t under N(W x_t + b, sigma^2),
summed over units, steps and layers (:attr:`SpikingNetwork.score`). Its gradient is

    d/dW log p = sum_t (eps_t / sigma) x_t^T,        d/dsigma log p = sum_t (eps_t^2 - 1) / sigma,

the score that the likelihood-ratio estimator multiplies by (L - b) (see :func:`likelihood_ratio_loss`).
Outside that mode (evaluation, attacks) the noise stays on and gradients flow through the surrogate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers.noise import standard_normal_like
from benchmark.plugin import EXACT_GRADIENT

#: slope k of the fast-sigmoid surrogate derivative the spiking plugins are trained with
SURROGATE_SLOPE = 5.0


def surrogate_derivative(u: torch.Tensor, slope: float = SURROGATE_SLOPE) -> torch.Tensor:
    """The fast-sigmoid pseudo-derivative 1 / (1 + k|u|)^2 of the Heaviside step at u (u = membrane - threshold):
    the derivative of u / (1 + k|u|) (SuperSpike, Zenke & Ganguli 2018); peak 1, integral 2 / k."""
    return 1.0 / (1.0 + slope * u.abs()).pow(2)


def sigmoid_derivative(u: torch.Tensor, slope: float) -> torch.Tensor:
    """The derivative k sigma(k u) (1 - sigma(k u)) of the logistic sigmoid sigma(k u) (Zenke & Vogels, Neural
    Computation 2021; Neftci, Mostafa & Zenke 2019): peak k / 4, integral 1, tails falling as exp(-k|u|)."""
    s = torch.sigmoid(slope * u)
    return slope * s * (1 - s)


def arctan_derivative(u: torch.Tensor, slope: float) -> torch.Tensor:
    """(k / 2) / (1 + (pi k u / 2)^2), the derivative of arctan(pi k u / 2) / pi + 1/2 (Fang et al., "Incorporating
    Learnable Membrane Time Constant to Enhance Learning of Spiking Neural Networks", ICCV 2021): peak k / 2,
    integral 1, tails falling as 1 / u^2."""
    return (slope / 2) / (1 + (torch.pi * slope * u / 2).pow(2))


def rectangular_derivative(u: torch.Tensor, slope: float) -> torch.Tensor:
    """The box k 1{|u| < 1 / (2k)}, of width 1 / k and integral 1 (Wu et al., "Spatio-Temporal Backpropagation for
    Training High-Performance Spiking Neural Networks", Frontiers in Neuroscience 2018; a windowed straight-through
    estimator, Bengio et al. 2013): zero away from the threshold, like the true derivative."""
    return slope * (u.abs() < 1 / (2 * slope)).to(u.dtype)


def exact_derivative(u: torch.Tensor, slope: float) -> torch.Tensor:
    """The Heaviside step's own derivative: zero wherever it exists (everywhere but u = 0 exactly), so every input
    gradient of a spiking network is zero. Not for attacks: it shows the gradients an attack without BPDA gets."""
    return torch.zeros_like(u)


#: shape name -> derivative(u, slope): the surrogate family attacks can switch the backward to
SURROGATES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "fast-sigmoid": surrogate_derivative, "sigmoid": sigmoid_derivative, "arctan": arctan_derivative,
    "rectangular": rectangular_derivative, "exact": exact_derivative,
}


@dataclass(frozen=True)
class Surrogate:
    """Which derivative the spike's backward uses: a shape of :data:`SURROGATES` and its slope k."""

    shape: str = "fast-sigmoid"
    slope: float = SURROGATE_SLOPE

    def __post_init__(self):
        if self.shape not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.shape!r}; choose one of {', '.join(SURROGATES)}")

    @property
    def name(self) -> str:
        return "exact" if self.shape == "exact" else f"{self.shape}-k{self.slope:g}"

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return SURROGATES[self.shape](u, self.slope)


#: the surrogate the spiking plugins are trained with
TRAINING_SURROGATE = Surrogate()
#: the other backward passes attacks go through: two shapes other than the training one, each wide (k = 1: every
#: neuron passes gradient, whatever its distance from the threshold) and narrow (k = 10: only those near it)
BPDA_SURROGATES = tuple(Surrogate(shape, k) for shape in ("sigmoid", "arctan") for k in (1.0, 10.0))


class SpikeFunction(torch.autograd.Function):
    """Heaviside step forward, the given :class:`Surrogate` derivative backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate(u), None


def spike(u: torch.Tensor, surrogate: Surrogate = TRAINING_SURROGATE) -> torch.Tensor:
    """Spikes H(u) (u = membrane - threshold), differentiable through the surrogate derivative."""
    return SpikeFunction.apply(u, surrogate)


def lif_step(current: torch.Tensor, membrane: torch.Tensor | None, spikes: torch.Tensor | None,
             beta: float, threshold: float,
             surrogate: Surrogate = TRAINING_SURROGATE) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: returns (membrane u_t, spikes s_t) from the current I_t and the previous state (None at t = 1)."""
    membrane = current if membrane is None else beta * membrane + current - threshold * spikes.detach()
    return membrane, spike(membrane - threshold, surrogate)


@contextmanager
def surrogate_gradient(network: nn.Module, surrogate: Surrogate) -> Iterator[None]:
    """Within the block every :class:`SpikingLayer` of ``network`` back-propagates through ``surrogate``; the forward
    is unchanged, and each layer's own derivative is restored on leaving."""
    layers = [m for m in network.modules() if isinstance(m, SpikingLayer)]
    before = [layer.surrogate for layer in layers]
    for layer in layers:
        layer.surrogate = surrogate
    try:
        yield
    finally:
        for layer, own in zip(layers, before, strict=True):
            layer.surrogate = own


def gradient_variants(network: nn.Module) -> dict[str, Callable[[], AbstractContextManager]]:
    """The BPDA variants of a spiking network for ``ModelPlugin.gradient_variants``: every surrogate of
    :data:`BPDA_SURROGATES` by name, and under ``EXACT_GRADIENT`` the true derivative the diagnostics measure."""
    variants = {s.name: (lambda s=s: surrogate_gradient(network, s)) for s in BPDA_SURROGATES}
    return variants | {EXACT_GRADIENT: lambda: surrogate_gradient(network, Surrogate("exact"))}


class MembraneNoise(nn.Module):
    """Additive Gaussian noise on a layer's synaptic current, one learnable sigma per output channel.

    sigma = sigma_min + softplus(rho) keeps it positive and away from 0, where the likelihood-ratio
    score eps / sigma would blow up.
    """

    def __init__(self, channels: int, sigma_init: float = 0.3, sigma_min: float = 0.05):
        super().__init__()
        if sigma_init <= sigma_min:
            raise ValueError(f"sigma_init {sigma_init} must exceed sigma_min {sigma_min}")
        self.sigma_min = sigma_min
        self.rho = nn.Parameter(torch.full((channels,),
                                           float(torch.log(torch.expm1(torch.tensor(sigma_init - sigma_min))))))

    def sigma(self, like: torch.Tensor) -> torch.Tensor:
        """Sigma shaped to broadcast over ``like`` ([B, C] or [B, C, H, W])."""
        sigma = self.sigma_min + F.softplus(self.rho)
        return sigma.view(1, -1, *([1] * (like.dim() - 2)))

    def forward(self, mean: torch.Tensor, score: list[torch.Tensor] | None) -> torch.Tensor:
        """A draw v = mean + sigma * eps. With ``score`` (likelihood-ratio mode) the draw is detached and a
        per-example term with the gradient of log N(v; mean, sigma^2) is appended to the list: it is linear in
        ``mean`` with slope eps / sigma and in log sigma with slope eps^2 - 1 (summed over the channel's units),
        so its gradient is (eps / sigma) dmean and (eps^2 - 1) / sigma dsigma, as the log-density's is at this
        draw, at a fraction of the cost of evaluating the log-density itself."""
        sigma = self.sigma(mean)
        eps = standard_normal_like(mean)
        if score is None:
            return mean + sigma * eps
        value = (mean + sigma * eps).detach()
        weight_term = (mean * (eps / sigma.detach())).flatten(1).sum(1)
        per_channel = (eps.pow(2) - 1).flatten(2).sum(2) if eps.dim() > 2 else eps.pow(2) - 1  # [B, C]
        score.append(weight_term + per_channel @ sigma.flatten().log())
        return value


class SpikingLayer(nn.Module):
    """A synaptic layer (``nn.Linear`` or ``nn.Conv2d``) feeding LIF neurons, with optional membrane noise."""

    def __init__(self, synapse: nn.Module, beta: float = 0.9, threshold: float = 1.0,
                 noise: MembraneNoise | None = None, surrogate: Surrogate = TRAINING_SURROGATE):
        super().__init__()
        self.synapse = synapse
        self.beta = beta
        self.threshold = threshold
        self.noise = noise
        self.surrogate = surrogate  # the backward's derivative; not state: :func:`surrogate_gradient` switches it

    def step(self, current: torch.Tensor, state: tuple | None, score: list | None):
        """Noise (if any), then one LIF step; returns (spikes, new state)."""
        if self.noise is not None:
            current = self.noise(current, score)
        membrane, spikes = lif_step(current, *(state or (None, None)), self.beta, self.threshold, self.surrogate)
        return spikes, (membrane, spikes)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}, surrogate={self.surrogate.name}"


class Readout(nn.Module):
    """Non-spiking output layer: the logits are the time average of its (optionally noisy) synaptic current."""

    def __init__(self, synapse: nn.Linear, noise: MembraneNoise | None = None):
        super().__init__()
        self.synapse = synapse
        self.noise = noise

    def step(self, current: torch.Tensor, score: list | None) -> torch.Tensor:
        return current if self.noise is None else self.noise(current, score)


class SpikingNetwork(nn.Module):
    """``encoder`` (normalisation), then ``body``: SpikingLayers and stateless modules (pooling, flatten),
    then a :class:`Readout`, simulated for ``time_steps`` steps with direct input encoding.

    ``likelihood_ratio``: in training mode, run in likelihood-ratio mode (see the module docstring) and
    leave the per-example score in :attr:`score` ([draws, B]) and the logits of every draw in
    :attr:`draw_logits` ([draws, B, classes]), with ``train_draws`` independent noise draws per example
    (they give each example a baseline of its own: the mean loss of its other draws); the returned logits
    are the draws' mean. In eval mode, or when False, the usual forward whose gradients flow through the
    surrogate spike derivative (noise, if any, still on).
    """

    def __init__(self, encoder: nn.Module, body: list[nn.Module], readout: Readout, time_steps: int,
                 likelihood_ratio: bool = False, train_draws: int = 1):
        super().__init__()
        self.train_draws = train_draws
        self.encoder = encoder
        self.body = nn.ModuleList(body)
        self.readout = readout
        self.time_steps = time_steps
        self.likelihood_ratio = likelihood_ratio
        self.score: torch.Tensor | None = None
        self.draw_logits: torch.Tensor | None = None

    def train(self, mode: bool = True) -> SpikingNetwork:
        """Switching modes drops the last training step's records (they hold its graph, and a module holding
        non-leaf tensors cannot be deep-copied)."""
        self.score = self.draw_logits = None
        return super().train(mode)

    def _synapse(self, layer: nn.Module, x: torch.Tensor, detach: bool) -> torch.Tensor:
        return layer.synapse(x.detach() if detach else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lr_mode = self.training and self.likelihood_ratio
        score: list[torch.Tensor] | None = [] if lr_mode else None
        batch = x.shape[0]
        x = self.encoder(x)
        # direct encoding: the first synaptic layer sees the same input at every step (and in every noise draw),
        # so its current is computed once per example
        first = next(i for i, m in enumerate(self.body) if isinstance(m, SpikingLayer))
        for module in self.body[:first]:
            x = module(x)
        first_current = self._synapse(self.body[first], x, lr_mode)
        if lr_mode and self.train_draws > 1:  # draw-major copies: row r * B + i is draw r of example i
            first_current = first_current.repeat(self.train_draws, *([1] * (first_current.dim() - 1)))
        states: dict[int, tuple] = {}
        total = 0.0
        for _ in range(self.time_steps):
            h = None
            for i in range(first, len(self.body)):
                module = self.body[i]
                if isinstance(module, SpikingLayer):
                    current = first_current if i == first else self._synapse(module, h, lr_mode)
                    h, states[i] = module.step(current, states.get(i), score)
                else:
                    h = module(h)
            total = total + self.readout.step(self._synapse(self.readout, h, lr_mode), score)
        logits = total / self.time_steps
        if not lr_mode:
            self.score = self.draw_logits = None
            return logits
        # likelihood-ratio mode: [draws, B] scores and [draws, B, classes] logits for the loss; the mean logits out
        self.score = torch.stack(score).sum(0).view(-1, batch)
        self.draw_logits = logits.view(-1, batch, logits.shape[-1])
        return self.draw_logits.mean(0)


def leave_one_out_baseline(losses: torch.Tensor, dim: int) -> torch.Tensor:
    """B = mean of the other entries' losses along ``dim``: independent of the entry's own noise (the estimator stays
    unbiased) while removing most of the loss's common level."""
    n = losses.shape[dim]
    if n < 2:
        return torch.zeros_like(losses)
    return (losses.sum(dim, keepdim=True) - losses) / (n - 1)


def likelihood_ratio_loss(losses: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """A scalar whose value is mean(losses) and whose gradient is the likelihood-ratio estimate

        grad E[L] ~ mean (L - b) * grad log p(v),

    i.e. E[(L - b)(eps / sigma) x^T] for the weights and E[(L - b)(eps^2 - 1) / sigma] for the noise levels,
    summed over units and time steps (Zhang et al., arXiv 2302.10802). ``losses`` and ``score`` (a term with
    the gradient of log p(v), see :class:`MembraneNoise`) are [draws, B] (several noise draws per example) or
    [B]; the losses are treated as constants, ``score`` carries the graph to the weights and noise levels.
    Baseline b: with several draws, the mean loss of the example's other draws (its own expected loss, up to
    noise); with one, the mean loss of the other examples.
    """
    losses = losses.detach()
    if losses.dim() == 1:
        losses, score = losses.unsqueeze(0), score.unsqueeze(0)
    dim = 0 if losses.shape[0] > 1 else 1
    surrogate = ((losses - leave_one_out_baseline(losses, dim)) * score).mean()
    return losses.mean() + surrogate - surrogate.detach()
