"""Deterministic twins of the density-propagation nets: EnDP's and VDP's architectures with point weights,
trained with cross-entropy, the deterministic CNN the papers compare with (Carannante, Dera, Rasool, Bouaynaya,
Mihaylova, "Robust Learning via Ensemble Density Propagation in Deep Neural Networks", MLSP 2020, arXiv
2111.05953; Dera, Rasool, Bouaynaya et al., "PremiUm-CNN: Propagating Uncertainty Towards Robust Convolutional
Neural Networks", IEEE Trans. Signal Processing 2021).

A twin is derived from the moment plugin's own network, layer by layer (:func:`deterministic_twin`), so it
cannot drift from it: every Gaussian convolution / dense layer becomes an ``nn.Conv2d`` / ``nn.Linear`` of the
same shape (kernel, stride, padding, bias), every moment max-pool an ``nn.MaxPool2d`` of the same window, the
moment flatten an ``nn.Flatten``, EnDP's ensemble ELU an ``nn.ELU`` and VDP's Taylor (or unscented) ReLU an
``nn.ReLU``; the input normalisation is kept. On 1x28x28 inputs ``endp-twin`` is EnDP's small net (conv 32@5x5,
pool, ELU, conv 64@5x5, pool, ELU, dense) and ``vdp-twin`` VDP's (conv 32@5x5, ReLU, pool, dense); on 3x32x32
both are the shared CIFAR net (six 3x3 convs 32-32-64-64-128-128, a 2x2 pool after every second, dense), with
ELU or ReLU. The twin's parameters are exactly the moment net's weight means and biases; the moment net's mean
path with every variance at zero computes the twin's function (``tests/models/test_moment_twins.py``).

Departures, on purpose:

* Initialisation: PyTorch's default for ``nn.Conv2d``/``nn.Linear`` (Kaiming-uniform), not the moment nets'
  means (std 0.01 on MNIST, 1/sqrt(fan_in) on CIFAR): the twin is an ordinary CNN trained as one.
* Recipe: the moment plugin's budget (epochs, batch size, min_steps), so the twin sees the same number of steps,
  with the baseline's learning rate (Adam 1e-3, cosine): the moment nets' higher MNIST rate (5e-3) compensates
  for Gaussian means that start at std 0.01 and is not needed from the default initialisation. Quick: endp-twin
  3 epochs / at least 1,400 steps on one-channel images, 2 epochs on colour; vdp-twin 2 epochs / at least 900
  steps, 2 on colour. Standard: endp-twin 10 / 30 epochs, vdp-twin 10 / 30 (one-channel / colour).
* Cross-entropy on the logits instead of the moment nets' Gaussian likelihood of the softmax moments: the
  papers' deterministic comparison is trained with the usual loss. No KL term (no weight distribution).
* Inherited from the moment nets: EnDP's small net pools before the ELU (the paper after; the ELU is monotone,
  so for point values the order changes nothing), and the CIFAR net is EnDP's, not checked against
  PremiUm-CNN's.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import ClassVar

from torch import nn

from benchmark.layers.moments import GaussianConv2d, GaussianLinear, MomentFlatten, MomentMaxPool2d
from benchmark.layers.normalize import Normalize
from benchmark.models.baseline import cnn_recipe
from benchmark.models.endp import EnDP, EnsembleELU
from benchmark.models.vdp import VDP, TaylorReLU, UnscentedReLU
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


def _twin_layer(module: nn.Module) -> nn.Module:
    """The deterministic layer standing for one moment layer (same shapes, same nonlinearity)."""
    if isinstance(module, GaussianConv2d):
        out_channels, in_channels, kernel, _ = module.weight.shape
        return nn.Conv2d(in_channels, out_channels, kernel, stride=module.stride, padding=module.padding)
    if isinstance(module, GaussianLinear):
        out_features, in_features = module.weight.shape
        return nn.Linear(in_features, out_features)
    if isinstance(module, MomentMaxPool2d):
        return nn.MaxPool2d(module.kernel_size, module.stride)
    if isinstance(module, MomentFlatten):
        return nn.Flatten()
    if isinstance(module, EnsembleELU):
        return nn.ELU()
    if isinstance(module, TaylorReLU | UnscentedReLU):
        return nn.ReLU()
    if isinstance(module, Normalize):
        return copy.deepcopy(module)  # buffers only: the same input scaling
    raise TypeError(f"no deterministic twin for {type(module).__name__}")


def deterministic_twin(moment_net: nn.Sequential) -> nn.Sequential:
    """A new ``nn.Sequential`` with one deterministic layer per layer of ``moment_net`` (freshly initialised)."""
    return nn.Sequential(*(_twin_layer(m) for m in moment_net))


class MomentTwin(ModelPlugin):
    """The deterministic twin of the moment plugin ``moment_plugin``: its architecture, point weights, cross-entropy."""

    predictive = "deterministic"
    moment_plugin: ClassVar[type[ModelPlugin]]

    def build(self, task: Task) -> nn.Module:
        return deterministic_twin(self.moment_plugin().build(task))

    def train_config(self, task: Task) -> TrainConfig:
        """The moment plugin's budget (epochs, batch, min_steps) at the baseline's learning rate (module docstring)."""
        return replace(self.moment_plugin().train_config(task), lr=cnn_recipe(task).lr)


@register_model("endp-twin")
class EnDPTwin(MomentTwin):
    """EnDP's nets (Carannante et al. 2020) with deterministic weights and ELUs, trained with cross-entropy."""

    moment_plugin = EnDP
    input_shapes = EnDP.input_shapes
    shapes_reason = "EnDP's MNIST net and its CIFAR-10 net, whose layers are sized for these inputs"
    summary = "EnDP's architecture with deterministic weights (ELU), cross-entropy: the paper's deterministic CNN"


@register_model("vdp-twin")
class VDPTwin(MomentTwin):
    """VDP's nets (Dera et al. 2021) with deterministic weights and ReLUs, trained with cross-entropy."""

    moment_plugin = VDP
    input_shapes = VDP.input_shapes
    shapes_reason = "VDP's MNIST net and EnDP's CIFAR-10 net, whose layers are sized for these inputs"
    summary = "VDP's architecture with deterministic weights (ReLU), cross-entropy: the paper's deterministic CNN"
