"""Spatial-temporal-fusion BNN: Lei, Tu, Rutkowski, Zhou, Shen, He, Tao, "Spatial-Temporal-Fusion BNN:
Variational Bayesian Feature Layer", arXiv 2112.06281 (2021).

Two phases. (1) The network is trained normally, deterministically, from scratch, by the shared
training loop (cross-entropy, the baseline recipe). (2) Only its *first* layer is made Bayesian: its
weights and biases become mean-field Gaussians N(μ, σ²), σ = softplus(ρ), with μ starting at the
trained weights, and q is fitted by stochastic variational inference (negative ELBO: expected
cross-entropy under q + KL(q ‖ N(0, 1))/N_train, local reparameterization) while every other layer,
batch-norm statistics included, stays fixed. Phase 2 runs in the plugin's ``finalize`` hook, on the
same training data, and is counted in the training time.

The first layer is a :class:`FirstLayerPosterior`, present from ``build`` on so that a checkpoint
loads into a freshly built network: it computes with the means μ during phase 1 (``before_step``
switches its noise off, so μ is an ordinary trained weight and ρ gets no gradient) and draws from q
after phase 2 (a persistent buffer, carried by the checkpoint). A network that was never trained, as
``benchmark validate-plugin`` builds it, is stochastic already.

Deployed: every call draws the first layer's pre-activations afresh (per example), and the harness
averages the softmax of S draws; the ``surrogate`` is the network with μ in the first layer, i.e. the
phase-1 network moved by the SVI fit of μ.

Unverified choices (the paper's hyperparameters were not available to us): the prior N(0, 1), ρ
initialised at -5 (σ ≈ 0.007), phase 2 with Adam at lr 1e-2 (only the first layer's few hundred
parameters move) for 2 epochs (quick) or 10 (standard); phase 1 follows ``benchmark.models.baseline.cnn_recipe``
on the benchmark's CNNs (LeNet-like on 28x28, VGG-style on 32x32), where the paper used its own
networks. On full MNIST the first layer's mean σ grows to about 0.06 after one SVI epoch at this lr and
0.10 after three (|μ| ≈ 0.2) with the accuracy unchanged, so the quick profile's q is not converged;
at lr 1e-3 σ barely left its initial value in one epoch.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from benchmark.claim import Claim
from benchmark.data import to_float
from benchmark.errors import BenchmarkError
from benchmark.layers.cnn import make_cnn
from benchmark.layers.variational import (
    LocalReparameterization,
    elbo_loss,
    mean_field,
    posterior_mean,
    swap_layers,
)
from benchmark.models.baseline import cnn_recipe
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.progress import progress_bar
from benchmark.registry import register_model

PRIOR_STD = 1.0
RHO_INIT = -5.0


class FirstLayerPosterior(nn.Module):
    """A mean-field layer that computes with its means until ``stochastic`` is set (a saved buffer)."""

    def __init__(self, layer: LocalReparameterization):
        super().__init__()
        self.layer = layer
        self.register_buffer("stochastic", torch.tensor(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(self.stochastic):
            return self.layer(x)
        return self.layer.transform(x, *self.layer.mean_weights())


def first_layer(network: nn.Module) -> FirstLayerPosterior:
    """The network's (only) :class:`FirstLayerPosterior`, whose noise the two training phases switch."""
    return next(m for m in network.modules() if isinstance(m, FirstLayerPosterior))


@register_model("stf-bnn")
class STFBNN(ModelPlugin):
    """STF-BNN (Lei et al. 2021): a trained deterministic CNN whose first layer is then fitted by SVI."""

    predictive = "stochastic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "STF-BNN: deterministic net, then SVI on a mean-field first layer with the rest frozen"
    # the arXiv id the method is known by (2112.06281) could not be matched to a paper: nothing of it was retrieved
    claims = (Claim("First-layer BNN", ("stf-bnn",), "Lei et al., arXiv 2112.06281 (unverified)",
                    "more robust under attack than a deterministic net", "attack",
                    comparison="a deterministic net"),)

    def build(self, task: Task) -> nn.Module:
        network = make_cnn(task)
        first = next(m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        return swap_layers(network,
                           lambda m: FirstLayerPosterior(mean_field(m, prior_std=PRIOR_STD, rho_init=RHO_INIT))
                           if m is first else None)

    def train_config(self, task: Task) -> TrainConfig:
        recipe = cnn_recipe(task)
        svi = {"svi_epochs": 2 if task.profile == "quick" else 10, "svi_lr": 1e-2}
        return dataclasses.replace(recipe, extra={**recipe.extra, **svi})

    def before_step(self, network: nn.Module, progress: float) -> None:
        first_layer(network).stochastic.fill_(False)  # phase 1: a deterministic network

    def finalize(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task, config: TrainConfig,
                 device: torch.device, seed: int) -> None:
        """Phase 2: SVI on the first layer's q, every other parameter and batch-norm statistic fixed."""
        first = first_layer(network)
        first.stochastic.fill_(True)
        variational = list(first.parameters())
        frozen = [p for p in network.parameters() if all(p is not q for q in variational)]
        for p in frozen:
            p.requires_grad_(False)
        network.eval()  # batch norm uses (and keeps) its running statistics; the first layer stays random
        optimizer = torch.optim.Adam(variational, lr=config.extra["svi_lr"])
        generator = torch.Generator().manual_seed(seed + 1)
        n, batch = x.shape[0], config.batch_size
        steps = math.ceil(n / batch)
        epochs = config.extra["svi_epochs"]
        try:
            with progress_bar() as bar:
                job = bar.add_task(f"SVI {self.name}", total=epochs * steps)
                for epoch in range(epochs):
                    order = torch.randperm(n, generator=generator)
                    for i in range(steps):
                        idx = order[i * batch:(i + 1) * batch]
                        xb, yb = to_float(x[idx].to(device)), y[idx].to(device)
                        loss = elbo_loss(network, network(xb), yb, task.n_train)
                        if not torch.isfinite(loss):
                            raise BenchmarkError(f"SVI phase of {self.name} diverged at epoch {epoch + 1}, "
                                                 f"step {i + 1}")
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        bar.update(job, advance=1,
                                   description=f"SVI {self.name} epoch {epoch + 1}/{epochs} loss {loss.item():.4f}")
        finally:
            for p in frozen:
                p.requires_grad_(True)
            network.train()

    def surrogate(self, network: nn.Module) -> nn.Module:
        """The network with the first layer at its posterior mean."""
        mean = posterior_mean(network)
        return swap_layers(mean, lambda m: m.layer if isinstance(m, FirstLayerPosterior) else None)
