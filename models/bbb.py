"""Bayes by Backprop: Blundell, Cornebise, Kavukcuoglu, Wierstra, "Weight Uncertainty in Neural
Networks", ICML 2015, sampled with the local reparameterization trick of Kingma, Salimans, Welling,
"Variational Dropout and the Local Reparameterization Trick", NeurIPS 2015.

Every weight and bias of every conv and dense layer is an independent Gaussian N(μ, σ²), σ = softplus(ρ)
(``benchmark.layers.variational``). Training minimises the negative ELBO per example, the cross-entropy of one
draw plus KL(q ‖ p)/N_train, which weights the KL of every mini-batch by 1/M (Blundell et al.'s
uniform scheme; their geometric π_i is an alternative). Each call of the network is one draw of the
weights' pre-activations, fresh per example, in train and eval mode; the harness averages the softmax
of S draws.

Deviations from the paper, and why:

- **Prior.** Blundell et al.'s best MNIST prior is a scale mixture of two Gaussians, whose KL has no
  closed form and is estimated from the weight sample; with the local reparameterization trick no
  weight sample exists, so we use a single Gaussian prior N(0, 1) and the closed-form KL (their
  Gaussian-prior baseline). ``prior_std`` is a constructor argument.
- **Architecture.** They used MLPs (2 x 400 to 2 x 1200 units) on MNIST and no CNN; we make every layer
  of the benchmark's CNNs (``benchmark.layers.cnn.make_cnn``: LeNet-like on 28x28, VGG-style with batch norm
  on 32x32) mean-field, so the method is compared with the others on the same architecture; conv
  layers use the local reparameterization of Kingma et al. 2015 (mean conv(a, μ), variance conv(a², σ²)).
- **Optimisation.** They trained with SGD for hundreds of epochs; we use Adam (lr 1e-3, cosine decay),
  2 epochs (at least 900 steps) on the quick profile, 20 (28x28) or 60 (CIFAR) on standard, no weight
  decay (the KL is the regulariser). The means start at PyTorch's default initialisation, ρ at -3.5
  (σ ≈ 0.03; the paper gives no value). Adam moves ρ by about the learning rate per step, so in the
  quick profile's 900 steps σ can only move by a factor of about 2: from ρ = -5 the posterior stayed
  at σ ≈ 0.01 (a nearly deterministic net, 98.6% on MNIST), from -3.5 it grows to σ ≈ 0.03-0.05,
  as large as the dense layers' |μ| (98.4%). The standard profile's 10x more steps let it settle.
"""

from __future__ import annotations

from torch import nn

from benchmark.claim import bayesian_claims
from benchmark.layers.cnn import make_cnn
from benchmark.layers.variational import elbo_loss, mean_field, posterior_mean, swap_layers
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model

PRIOR_STD = 1.0
RHO_INIT = -3.5


def variational_recipe(task: Task) -> TrainConfig:
    """Adam with cosine decay and no weight decay: 2 epochs (900 steps at least) quick, 20/60 standard."""
    if task.profile == "quick":
        return TrainConfig(epochs=2, lr=1e-3, min_steps=900)
    return TrainConfig(epochs=20 if task.is_small_grayscale else 60, lr=1e-3, min_steps=900)


@register_model("bbb")
class BayesByBackprop(ModelPlugin):
    """Bayes by Backprop (Blundell et al. 2015): every conv and dense layer mean-field Gaussian, trained on the ELBO."""

    predictive = "stochastic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "Bayes by Backprop: mean-field Gaussian weights in every layer, local reparameterization, ELBO"
    claims = bayesian_claims("Mean-field VI", "bbb", "a point estimate")

    def build(self, task: Task) -> nn.Module:
        return swap_layers(make_cnn(task), lambda m: mean_field(m, prior_std=PRIOR_STD, rho_init=RHO_INIT))

    def train_config(self, task: Task) -> TrainConfig:
        return variational_recipe(task)

    def loss(self, network: nn.Module, output, y, task: Task):
        return elbo_loss(network, output, y, task.n_train)

    def surrogate(self, network: nn.Module) -> nn.Module:
        """The network with every weight at its posterior mean."""
        return posterior_mean(network)
