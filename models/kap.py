"""KAP: Kernel Average Pooling (Bashivan, Ibrahim, Dehghani, Ren, "Learning Robust Kernel Ensembles with
Kernel Average Pooling", arXiv 2210.00062, 2023).

KAP is a mean filter along the kernel (channel) axis of an activation tensor: with kernel size K,

    y[:, c] = mean{ a[:, j] : |j - c| <= floor(K/2), 0 <= j < C },   stride 1, C channels kept,

so that neighbouring kernels are pushed to compute similar features and act as an ensemble whose
mean is passed on. The 2D ("topographic") variant lays the C channels out on a grid and averages over
a K x K neighbourhood on that grid. The networks are trained on inputs perturbed with additive
Gaussian noise (the shared loop's ``TrainConfig.noise_sigma``), never on adversarial examples.

What this implementation decides, and why:

* Borders: the mean runs over the neighbours that exist (an average pool that does not count padding),
  so border channels are not shrunk towards zero. The text available to us does not settle zero versus
  replicate padding (the paper does not say; unverified); this choice is stated here and tested.
* Insertion points: one KAP layer after every convolution of the baseline architectures
  (:func:`benchmark.layers.cnn.make_cnn`), before its batch norm / ReLU; the dense layers are left alone, as
  in the paper, which applies KAP to convolutional layers.
* Kernel size K = 3 (1D) and 3 x 3 (2D). Noise sigma = 0.1 on CIFAR-10 (the [0, 1] scale); MNIST and
  Fashion-MNIST are not in the paper, so we use sigma = 0.3 there (our choice, between the benchmark's
  noise levels and well below what costs clean accuracy). Both unverified against the full text.
* Predictive kind: deterministic. The paper (v2) trains on noise-perturbed *inputs* and evaluates the
  network without noise; the ICLR 2023 submission (v1) spoke of "activation noise" instead. We follow
  v2: noise is a training augmentation only.
* The 2D variant needs a channel grid: C is split into rows x cols with rows the largest divisor of C not
  above sqrt(C) (16 -> 4x4, 32 -> 4x8, 64 -> 8x8, 128 -> 8x16); it is registered as ``kap-2d``.

Deviations: the baseline architectures (LeNet-like, VGG-style) instead of the paper's ResNets and
WideResNets; the benchmark's epoch budget (2 epochs on the quick profile).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.claim import Claim
from benchmark.layers.cnn import make_cnn
from benchmark.models.baseline import cnn_recipe
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


def channel_grid(channels: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols = channels and rows the largest divisor not above sqrt(channels)."""
    rows = max(d for d in range(1, math.isqrt(channels) + 1) if channels % d == 0)
    return rows, channels // rows


class KernelAveragePool(nn.Module):
    """Mean over neighbouring channels (1D), or over a K x K neighbourhood of a channel grid (2D)."""

    def __init__(self, kernel_size: int = 3, topographic: bool = False):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.topographic = topographic

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = a.shape
        rows, cols = channel_grid(channels) if self.topographic else (1, channels)
        grid = a.reshape(batch, rows, cols, height * width)
        total = self._window_sum(grid)
        # how many real (not padded) channels each window holds: the mean ignores the padding
        count = self._window_sum(torch.ones(1, rows, cols, 1, dtype=a.dtype, device=a.device))
        return (total / count).reshape(batch, channels, height, width)

    def _window_sum(self, grid: torch.Tensor) -> torch.Tensor:
        """Zero-padded K-wide (1D: along cols) or K x K (2D: rows and cols) window sums of [B, rows, cols, N]."""
        k, pad = self.kernel_size, self.kernel_size // 2
        row_pad = pad if self.topographic else 0
        padded = F.pad(grid, (0, 0, pad, pad, row_pad, row_pad))
        summed = padded.unfold(2, k, 1).sum(-1)
        return summed.unfold(1, k, 1).sum(-1) if self.topographic else summed

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, topographic={self.topographic}"


def insert_after_convs(network: nn.Sequential, make_layer) -> nn.Sequential:
    """A new Sequential with ``make_layer()`` after every ``nn.Conv2d`` of ``network`` (same module objects)."""
    layers: list[nn.Module] = []
    for module in network:
        layers.append(module)
        if isinstance(module, nn.Conv2d):
            layers.append(make_layer())
    return nn.Sequential(*layers)


#: the abstract's words (v2; v1 also claimed parity with adversarial training, which v2 dropped)
KAP_WORDS = ("when trained on inputs perturbed with additive Gaussian noise, KAP models are remarkably robust against "
             "various forms of adversarial attacks")


@register_model("kap")
class KAP(ModelPlugin):
    """Kernel Average Pooling after every convolution of the baseline CNN, trained on Gaussian-noise-augmented
    inputs (Bashivan et al., arXiv 2210.00062, 2023). See the module docstring for the settings."""

    predictive = "deterministic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "Kernel Average Pooling (channel mean filter) after each conv, Gaussian-noise training"
    claims = tuple(
        Claim("KAP", ("kap", "kap-2d"), "Bashivan et al., arXiv 2210.00062 (v2, 2023)", statement, evidence,
              reference="baseline-noise", datasets=("cifar10",), words=KAP_WORDS, paper_attack="AutoAttack",
              comparison="the same network trained on Gaussian-noise inputs without KAP (its ablation)")
        for statement, evidence in (("robust to random noise", "noise"), ("robust to adversarial attacks", "attack")))
    kernel_size: ClassVar[int] = 3
    topographic: ClassVar[bool] = False

    def noise_sigma(self, task: Task) -> float:
        return 0.3 if task.is_small_grayscale else 0.1

    def build(self, task: Task) -> nn.Module:
        return insert_after_convs(make_cnn(task), lambda: KernelAveragePool(self.kernel_size, self.topographic))

    def train_config(self, task: Task) -> TrainConfig:
        return replace(cnn_recipe(task), noise_sigma=self.noise_sigma(task))


@register_model("kap-2d")
class KAP2D(KAP):
    """The topographic variant of KAP (Bashivan et al., arXiv 2210.00062): channels on a 2D grid, 3 x 3 mean."""

    summary = "Kernel Average Pooling on a 2D (topographic) channel grid, Gaussian-noise training"
    topographic = True
