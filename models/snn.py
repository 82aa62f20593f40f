"""SNN: a leaky integrate-and-fire spiking network trained with surrogate gradients through time.

The reference the noise-injection scheme of Zhang et al. ("A Novel Noise Injection-based Training
Scheme for Better Model Robustness", arXiv 2302.10802) is compared with: the same spiking network
(:mod:`benchmark.layers.spiking`), trained by back-propagation through time with the fast-sigmoid surrogate
derivative of the spike (Neftci, Mostafa, Zenke, IEEE Signal Processing Magazine 2019; Zenke & Ganguli,
Neural Computation 2018). Direct encoding makes it deterministic; attacks use the same surrogate
derivative (BPDA), which the plugin declares with ``gradients = "surrogate"``, and the other surrogates of
:data:`benchmark.layers.spiking.BPDA_SURROGATES` (``gradient_variants``): the training surrogate need not be the
attacker's best guide through the spikes.

Architectures (ours; the text of 2302.10802 available to us does not give its networks):

* 1x28x28 (MNIST, Fashion-MNIST): flatten, 784 -> 256 LIF neurons, non-spiking read-out to the classes.
* 3x32x32 (CIFAR-10): three 3x3 conv + LIF layers (64, 128, 256 channels) each followed by 2x2 average
  pooling of the spikes, a 256-unit LIF layer, the read-out.

LIF: beta = 0.9, threshold 1, reset by subtraction. T = 4 steps on the quick profile (evaluation cost
scales with T), 8 on standard. Recipe: Adam, lr 1e-3, cosine decay; quick: 2 epochs (at least 900
steps), standard: 20 (small nets) or 60 (CIFAR) epochs.
"""

from __future__ import annotations

from torch import nn

from benchmark.layers.normalize import Normalize
from benchmark.layers.spiking import MembraneNoise, Readout, SpikingLayer, SpikingNetwork, gradient_variants
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model

HIDDEN_SMALL = 256


def time_steps(task: Task) -> int:
    """Simulation steps T of the spiking network: 4 on the quick profile, 8 on standard."""
    return 4 if task.profile == "quick" else 8


def build_spiking_net(task: Task, steps: int, noise_sigma: float | None = None,
                      likelihood_ratio: bool = False) -> SpikingNetwork:
    """The spiking network for the task's input shape; ``noise_sigma``: initial membrane-noise level of every layer."""
    channels, height, _ = task.input_shape

    def noise(n: int) -> MembraneNoise | None:
        return MembraneNoise(n, sigma_init=noise_sigma) if noise_sigma else None

    if task.is_small_grayscale:
        encoder = Normalize((0.5,) * channels, (0.5,) * channels)
        body = [nn.Flatten(),
                SpikingLayer(nn.Linear(channels * height * height, HIDDEN_SMALL), noise=noise(HIDDEN_SMALL))]
        readout = Readout(nn.Linear(HIDDEN_SMALL, task.num_classes), noise(task.num_classes))
    else:
        encoder = Normalize((0.4914, 0.4822, 0.4465)[:channels], (0.2470, 0.2435, 0.2616)[:channels])
        body, c_in = [], channels
        for c_out in (64, 128, 256):
            body += [SpikingLayer(nn.Conv2d(c_in, c_out, 3, padding=1), noise=noise(c_out)), nn.AvgPool2d(2)]
            c_in = c_out
        body += [nn.Flatten(), SpikingLayer(nn.Linear(256 * (height // 8) ** 2, 256), noise=noise(256))]
        readout = Readout(nn.Linear(256, task.num_classes), noise(task.num_classes))
    return SpikingNetwork(encoder, body, readout, steps, likelihood_ratio)


@register_model("snn")
class SNN(ModelPlugin):
    """LIF spiking network, surrogate-gradient BPTT training (the baseline of Zhang et al., arXiv 2302.10802)."""

    predictive = "deterministic"
    shapes_reason = "spiking nets sized for MNIST (784 inputs) and CIFAR-10"
    gradients = "surrogate"
    summary = "LIF spiking net (direct encoding), surrogate-gradient training; attacked via surrogate gradients"

    def build(self, task: Task) -> nn.Module:
        return build_spiking_net(task, time_steps(task))

    def train_config(self, task: Task) -> TrainConfig:
        if task.profile == "quick":
            return TrainConfig(epochs=2, lr=1e-3, min_steps=900)
        return TrainConfig(epochs=20 if task.is_small_grayscale else 60, lr=1e-3)

    def gradient_variants(self, network: nn.Module) -> dict:
        """Attacked through other surrogate derivatives too (BPDA variants); "exact": the spikes' true derivative."""
        return gradient_variants(network)
