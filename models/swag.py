"""SWAG: Maddox, Garipov, Izmailov, Vetrov, Wilson, "A Simple Baseline for Bayesian Uncertainty in Deep
Learning", NeurIPS 2019.

After ordinary training (the shared loop), SGD goes on at a constant learning rate and the weights
θ_i are collected at a fixed interval: running means θ̄ = mean θ_i and θ²̄ = mean θ_i², and the last
K = 20 deviations D = [θ_i − θ̄_i] (θ̄_i the running mean after collecting θ_i). The approximate
posterior is N(θ̄, ½ Σ_diag + ½ D Dᵀ/(K − 1)) with Σ_diag = diag(θ²̄ − θ̄²), sampled as

    θ = θ̄ + √½ · σ_diag ⊙ z₁ + √½ · D z₂ / √(K − 1),   z₁ ~ N(0, I_P), z₂ ~ N(0, I_K).

Batch-norm statistics do not belong to the posterior: for every sample they are recomputed by
forward passes over training data in train mode (cumulative average, momentum None).

Deployed predictor, and why: S samples are drawn once, at the end of training (in ``finalize``),
each with its recomputed batch-norm statistics, and stored in buffers; ``network(x)`` returns the
S samples' logits ``[S, B, C]`` (predictive kind "ensemble", decision by the mean softmax, the
paper's Bayesian model average). A "stochastic" network drawing a fresh θ per call would need a
batch-norm pass over training data on every call, and one θ per call is shared by the whole batch,
while the harness needs independent randomness per example. Fixed samples make the predictor a
deterministic, exactly differentiable function of the input: attacks see the deployed rule.
S = 5 on the quick profile (the deep ensemble's M: every sample is one more forward pass in every
attack step, and at S = 8 a 40-image smoke evaluation took twice the ensemble's time), 30 on
standard (the paper's).

The network is the baseline CNN with batch norm (:func:`benchmark.layers.cnn.make_cnn`). Everything the
predictor needs (θ̄, θ²̄, D, the samples and their batch-norm statistics) lives in buffers, so the
checkpoint carries it; the base network's own weights end as θ̄ with its recomputed statistics (SWA),
the deterministic surrogate.

Differences from the paper, on purpose: on the quick profile the moments are collected 20 times
within one epoch at a fixed interval (the paper collects once per epoch over many epochs), and the
batch-norm statistics of each sample are recomputed from a 4,096-image subset, not a full pass;
pre-training uses SGD with a cosine decay to zero, then the constant SWA rate (the paper decays
linearly to the SWA rate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from benchmark.claim import bayesian_claims
from benchmark.data import to_float
from benchmark.layers.cnn import make_cnn
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


def swag_sample(mean: Tensor, sq_mean: Tensor, deviations: Tensor, generator: torch.Generator | None = None,
                shape: tuple[int, ...] = ()) -> Tensor:
    """Draws θ = θ̄ + √½ σ_diag z₁ + √½ Dᵀz₂/√(K − 1), ``[*shape, P]``, with ``deviations`` the K x P
    matrix of rows θ_i − θ̄_i (Maddox et al. 2019, eq. 1 and the sampling rule of their Algorithm 1)."""
    rank = deviations.shape[0]
    std = (sq_mean - mean.pow(2)).clamp_min(0).sqrt()
    z1 = torch.randn((*shape, mean.numel()), generator=generator, dtype=mean.dtype).to(mean.device)
    theta = mean + math.sqrt(0.5) * std * z1
    if rank >= 2:
        z2 = torch.randn((*shape, rank), generator=generator, dtype=mean.dtype).to(mean.device)
        theta = theta + math.sqrt(0.5) * (z2 @ deviations) / math.sqrt(rank - 1)
    return theta


def _batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class SWAGNetwork(nn.Module):
    """A base network plus the SWAG moments and the S deployed samples, all as buffers.

    Until :meth:`fit_samples` has run, ``forward`` is the base network alone (``[1, B, C]``), which is
    what the shared training loop trains.
    """

    def __init__(self, base: nn.Module, rank: int, samples: int):
        super().__init__()
        self.base = base
        self._param_names = [name for name, _ in base.named_parameters()]
        self._param_shapes = [p.shape for p in base.parameters()]
        self._stat_names = [f"{name}.{stat}" for name, m in base.named_modules()
                            if isinstance(m, nn.modules.batchnorm._BatchNorm)
                            for stat in ("running_mean", "running_var")]
        stats = dict(base.named_buffers())
        self._stat_shapes = [stats[name].shape for name in self._stat_names]
        n_params = sum(p.numel() for p in base.parameters())
        n_stats = sum(stats[name].numel() for name in self._stat_names)
        self.register_buffer("swa_mean", torch.zeros(n_params))
        self.register_buffer("swa_sq_mean", torch.zeros(n_params))
        self.register_buffer("swa_deviations", torch.zeros(rank, n_params))
        self.register_buffer("swa_count", torch.zeros(1, dtype=torch.long))
        self.register_buffer("sample_params", torch.zeros(samples, n_params))
        self.register_buffer("sample_stats", torch.zeros(samples, n_stats))
        self.register_buffer("fitted", torch.zeros(1, dtype=torch.bool))

    # -- the SWAG moments -------------------------------------------------------------------------
    def flat_params(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.base.parameters()])

    @torch.no_grad()
    def collect(self) -> None:
        """Add the base network's current weights to θ̄, θ²̄ and the last-K deviations."""
        theta = self.flat_params()
        n = int(self.swa_count)
        self.swa_mean.mul_(n / (n + 1)).add_(theta / (n + 1))
        self.swa_sq_mean.mul_(n / (n + 1)).add_(theta.pow(2) / (n + 1))
        self.swa_deviations[n % self.swa_deviations.shape[0]] = theta - self.swa_mean
        self.swa_count += 1

    def deviations(self) -> Tensor:
        """The collected deviation rows (fewer than K when fewer weights were collected)."""
        return self.swa_deviations[: min(int(self.swa_count), self.swa_deviations.shape[0])]

    # -- weights and statistics as flat vectors ---------------------------------------------------
    @torch.no_grad()
    def load_flat(self, theta: Tensor) -> None:
        """Copy θ into the base network's parameters (copies: a view would share memory with θ, which
        the safetensors checkpoint refuses)."""
        sizes = [math.prod(shape) for shape in self._param_shapes]
        for param, chunk in zip(self.base.parameters(), torch.split(theta, sizes), strict=True):
            param.copy_(chunk.view_as(param))

    def _stat_tensors(self) -> list[Tensor]:
        buffers = dict(self.base.named_buffers())
        return [buffers[name] for name in self._stat_names]

    @torch.no_grad()
    def recompute_batch_norm(self, x: Tensor, batch_size: int) -> None:
        """Batch-norm statistics of the base network's current weights: cumulative averages over x."""
        norms = _batch_norms(self.base)
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        was_training = self.base.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        self.base.train()
        device = self.swa_mean.device
        for i in range(0, x.shape[0], batch_size):
            if x[i:i + batch_size].shape[0] > 1:  # batch norm needs two values per channel
                self.base(to_float(x[i:i + batch_size].to(device)))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.base.train(was_training)

    @torch.no_grad()
    def fit_samples(self, x: Tensor, batch_size: int, generator: torch.Generator) -> None:
        """Draw the S deployed samples with their batch-norm statistics; leave θ̄ (SWA) in the base."""
        for s in range(self.sample_params.shape[0]):
            theta = swag_sample(self.swa_mean, self.swa_sq_mean, self.deviations(), generator)
            self.load_flat(theta)
            self.recompute_batch_norm(x, batch_size)
            self.sample_params[s] = theta
            if self._stat_names:
                self.sample_stats[s] = torch.cat([t.reshape(-1) for t in self._stat_tensors()])
        self.load_flat(self.swa_mean)
        self.recompute_batch_norm(x, batch_size)
        self.fitted.fill_(True)

    def _sample_state(self, s: int) -> dict[str, Tensor]:
        params = torch.split(self.sample_params[s], [math.prod(shape) for shape in self._param_shapes])
        stats = torch.split(self.sample_stats[s], [math.prod(shape) for shape in self._stat_shapes])
        state = {n: t.view(shape) for n, t, shape in zip(self._param_names, params, self._param_shapes, strict=True)}
        state.update({n: t.view(shape) for n, t, shape in zip(self._stat_names, stats, self._stat_shapes, strict=True)})
        return state

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.fitted):
            return self.base(x).unsqueeze(0)
        return torch.stack([functional_call(self.base, self._sample_state(s), (x,))
                            for s in range(self.sample_params.shape[0])])


@register_model("swag")
class SWAG(ModelPlugin):
    """SWAG (Maddox et al. 2019): diagonal plus rank-20 Gaussian over the SGD iterates; S fixed samples."""

    predictive = "ensemble"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "SWA-Gaussian: diagonal + low-rank (K=20) posterior from SGD iterates, S samples with BN recomputed"
    claims = bayesian_claims("SWAG", "swag", "a point estimate")
    rank = 20

    def build(self, task: Task) -> nn.Module:
        samples = 5 if task.profile == "quick" else 30
        return SWAGNetwork(make_cnn(task, batch_norm=True), self.rank, samples)

    def train_config(self, task: Task) -> TrainConfig:
        """Pre-training: SGD (momentum 0.9, Nesterov, weight decay 5e-4) with cosine decay; then the SWA
        phase at a constant rate (``extra``). Quick: 2 epochs (at least 900 steps), then one epoch of
        SWA collecting 20 times; standard: 20 (small nets) or 60 (CIFAR) epochs, then 20 epochs of SWA
        collecting once per epoch (the paper's rule). BN statistics from 4,096 images (quick) or the
        whole training set (standard)."""
        quick = task.profile == "quick"
        extra = {"swa_lr": 0.01, "swa_epochs": 1 if quick else 20, "collections_per_epoch": 20 if quick else 1,
                 "bn_images": 4096 if quick else None}
        epochs = 2 if quick else (20 if task.is_small_grayscale else 60)
        return TrainConfig(epochs=epochs, lr=0.05, optimizer="sgd", weight_decay=5e-4, min_steps=900 if quick else 0,
                           extra=extra)

    def finalize(self, network: nn.Module, x: Tensor, y: Tensor, task: Task, config: TrainConfig,
                 device: torch.device, seed: int) -> None:
        """The SWA phase: constant-rate SGD from the trained weights, collecting the moments at a fixed
        interval; then the S samples with their recomputed batch-norm statistics."""
        extra = config.extra
        generator = torch.Generator().manual_seed(seed + 1)
        optimizer = torch.optim.SGD(network.base.parameters(), lr=extra["swa_lr"], momentum=config.momentum,
                                    weight_decay=config.weight_decay, nesterov=True)
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / config.batch_size)
        collections = extra["swa_epochs"] * extra["collections_per_epoch"]
        total_steps = max(extra["swa_epochs"] * steps_per_epoch, collections)
        interval = max(1, total_steps // collections)
        network.base.train()
        step = 0
        while step < total_steps:
            order = torch.randperm(n, generator=generator)
            for i in range(steps_per_epoch):
                if step >= total_steps:
                    break
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                xb, yb = to_float(x[idx].to(device)), y[idx].to(device)
                loss = F.cross_entropy(network.base(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if step % interval == 0 and int(network.swa_count) < collections:
                    network.collect()
        bn_images = extra["bn_images"] or n
        subset = torch.randperm(n, generator=generator)[:bn_images]
        network.fit_samples(x[subset], config.batch_size, generator)

    def surrogate(self, network: nn.Module) -> nn.Module:
        """SWA: the base network at θ̄ with its recomputed batch-norm statistics, returning logits."""
        return network.base
