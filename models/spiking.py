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

Inputs are presented by direct encoding: the (normalised) image is the input of the first synaptic
layer at every one of the T steps, so the network is deterministic unless noise is injected. The
read-out layer does not spike: the logits are the time average of its synaptic current.

Optional membrane noise (Zhang et al., "A Novel Noise Injection-based Training Scheme for Better Model
Robustness", arXiv 2302.10802): every neuron's input becomes v_t = W x_t + b + sigma * eps_t with
eps_t ~ N(0, 1) fresh per example, unit and step, and one learnable sigma per output channel. In
*likelihood-ratio mode* (training of ``snn-noise``) nothing is back-propagated through the spikes:
each layer's input x_t is detached, the dynamics run on the sampled v_t, and the network records, per
example, the log-density of the sampled v_t under N(W x_t + b, sigma^2) summed over units, steps and
layers (:attr:`SpikingNetwork.log_density`). Its gradient is

    d/dW log p = sum_t (eps_t / sigma) x_t^T,        d/dsigma log p = sum_t (eps_t^2 - 1) / sigma,

the score that the likelihood-ratio estimator multiplies by (L - b) (see :func:`likelihood_ratio_loss`).
Outside that mode (evaluation, attacks) the noise stays on and gradients flow through the surrogate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: slope k of the fast-sigmoid surrogate derivative
SURROGATE_SLOPE = 5.0


def surrogate_derivative(u: torch.Tensor, slope: float = SURROGATE_SLOPE) -> torch.Tensor:
    """The fast-sigmoid pseudo-derivative 1 / (1 + k|u|)^2 of the Heaviside step at u (u = membrane - threshold)."""
    return 1.0 / (1.0 + slope * u.abs()).pow(2)


class SpikeFunction(torch.autograd.Function):
    """Heaviside step forward, :func:`surrogate_derivative` backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad * surrogate_derivative(u, ctx.slope), None


def spike(u: torch.Tensor, slope: float = SURROGATE_SLOPE) -> torch.Tensor:
    return SpikeFunction.apply(u, slope)


def lif_step(current: torch.Tensor, membrane: torch.Tensor | None, spikes: torch.Tensor | None,
             beta: float, threshold: float, slope: float = SURROGATE_SLOPE) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: returns (membrane u_t, spikes s_t) from the current I_t and the previous state (None at t = 1)."""
    membrane = current if membrane is None else beta * membrane + current - threshold * spikes.detach()
    return membrane, spike(membrane - threshold, slope)


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
        self.rho = nn.Parameter(torch.full((channels,), float(torch.log(torch.expm1(torch.tensor(sigma_init - sigma_min))))))

    def sigma(self, like: torch.Tensor) -> torch.Tensor:
        """sigma shaped to broadcast over ``like`` ([B, C] or [B, C, H, W])."""
        sigma = self.sigma_min + F.softplus(self.rho)
        return sigma.view(1, -1, *([1] * (like.dim() - 2)))

    def forward(self, mean: torch.Tensor, log_density: list[torch.Tensor] | None) -> torch.Tensor:
        """A draw v = mean + sigma * eps. With ``log_density`` (likelihood-ratio mode) the draw is detached and
        its per-example log-density under N(mean, sigma^2), up to a constant, is appended to the list."""
        sigma = self.sigma(mean)
        eps = torch.randn_like(mean)
        if log_density is None:
            return mean + sigma * eps
        value = (mean + sigma * eps).detach()
        log_p = -0.5 * ((value - mean) / sigma).pow(2) - sigma.log()
        log_density.append(log_p.flatten(1).sum(1))
        return value


class SpikingLayer(nn.Module):
    """A synaptic layer (``nn.Linear`` or ``nn.Conv2d``) feeding LIF neurons, with optional membrane noise."""

    def __init__(self, synapse: nn.Module, beta: float = 0.9, threshold: float = 1.0, noise: MembraneNoise | None = None):
        super().__init__()
        self.synapse = synapse
        self.beta = beta
        self.threshold = threshold
        self.noise = noise

    def step(self, current: torch.Tensor, state: tuple | None, log_density: list | None):
        """Noise (if any), then one LIF step; returns (spikes, new state)."""
        if self.noise is not None:
            current = self.noise(current, log_density)
        membrane, spikes = lif_step(current, *(state or (None, None)), self.beta, self.threshold)
        return spikes, (membrane, spikes)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Readout(nn.Module):
    """Non-spiking output layer: the logits are the time average of its (optionally noisy) synaptic current."""

    def __init__(self, synapse: nn.Linear, noise: MembraneNoise | None = None):
        super().__init__()
        self.synapse = synapse
        self.noise = noise

    def step(self, current: torch.Tensor, log_density: list | None) -> torch.Tensor:
        return current if self.noise is None else self.noise(current, log_density)


class SpikingNetwork(nn.Module):
    """``encoder`` (normalisation), then ``body``: SpikingLayers and stateless modules (pooling, flatten),
    then a :class:`Readout`, simulated for ``time_steps`` steps with direct input encoding.

    ``likelihood_ratio``: in training mode, run in likelihood-ratio mode (see the module docstring) and
    leave the per-example score in :attr:`log_density`; in eval mode, or when False, the usual forward
    whose gradients flow through the surrogate spike derivative.
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
        self.log_density: torch.Tensor | None = None
        self.draw_logits: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "SpikingNetwork":
        """Switching modes drops the last training step's records (they hold its graph, and a module holding
        non-leaf tensors cannot be deep-copied)."""
        self.log_density = self.draw_logits = None
        return super().train(mode)

    def _synapse(self, layer: nn.Module, x: torch.Tensor, detach: bool) -> torch.Tensor:
        return layer.synapse(x.detach() if detach else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lr_mode = self.training and self.likelihood_ratio
        log_density: list[torch.Tensor] | None = [] if lr_mode else None
        batch = x.shape[0]
        if lr_mode and self.train_draws > 1:
            x = x.repeat(self.train_draws, *([1] * (x.dim() - 1)))
        x = self.encoder(x)
        # direct encoding: the first synaptic layer sees the same input at every step, so its current is computed once
        first = next(i for i, m in enumerate(self.body) if isinstance(m, SpikingLayer))
        for module in self.body[:first]:
            x = module(x)
        first_current = self._synapse(self.body[first], x, lr_mode)
        states: dict[int, tuple] = {}
        total = 0.0
        for _ in range(self.time_steps):
            h = None
            for i in range(first, len(self.body)):
                module = self.body[i]
                if isinstance(module, SpikingLayer):
                    current = first_current if i == first else self._synapse(module, h, lr_mode)
                    h, states[i] = module.step(current, states.get(i), log_density)
                else:
                    h = module(h)
            total = total + self.readout.step(self._synapse(self.readout, h, lr_mode), log_density)
        logits = total / self.time_steps
        if not lr_mode:
            self.log_density = self.draw_logits = None
            return logits
        # likelihood-ratio mode: [draws, B] scores and [draws, B, classes] logits for the loss; the mean logits out
        self.log_density = torch.stack(log_density).sum(0).view(-1, batch)
        self.draw_logits = logits.view(-1, batch, logits.shape[-1])
        return self.draw_logits.mean(0)


def leave_one_out_baseline(losses: torch.Tensor, dim: int) -> torch.Tensor:
    """b = mean of the other entries' losses along ``dim``: independent of the entry's own noise (the estimator stays
    unbiased) while removing most of the loss's common level."""
    n = losses.shape[dim]
    if n < 2:
        return torch.zeros_like(losses)
    return (losses.sum(dim, keepdim=True) - losses) / (n - 1)


def likelihood_ratio_loss(losses: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
    """A scalar whose value is mean(losses) and whose gradient is the likelihood-ratio estimate

        grad E[L] ~ mean (L - b) * grad log p(v),

    i.e. E[(L - b)(eps / sigma) x^T] for the weights and E[(L - b)(eps^2 - 1) / sigma] for the noise levels,
    summed over units and time steps (Zhang et al., arXiv 2302.10802). ``losses`` and ``log_density`` are
    [draws, B] (several noise draws per example) or [B]; the losses are treated as constants, ``log_density``
    carries the graph to the weights and noise levels. Baseline b: with several draws, the mean loss of the
    example's other draws (its own expected loss, up to noise); with one, the mean loss of the other examples.
    """
    losses = losses.detach()
    if losses.dim() == 1:
        losses, log_density = losses.unsqueeze(0), log_density.unsqueeze(0)
    dim = 0 if losses.shape[0] > 1 else 1
    score = ((losses - leave_one_out_baseline(losses, dim)) * log_density).mean()
    return losses.mean() + score - score.detach()
