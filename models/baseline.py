"""The deterministic CNN baseline (architecture in ``benchmark.layers.cnn``), and its training recipe,
which the plugins built on the same architecture reuse."""

from __future__ import annotations

from torch import nn

from benchmark.layers.cnn import make_cnn
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


def cnn_recipe(task: Task) -> TrainConfig:
    """Adam with cosine decay: 2 epochs on the quick profile, 20 (small nets) or 60 (CIFAR) on standard."""
    if task.profile == "quick":
        return TrainConfig(epochs=2, lr=1e-3, min_steps=900)
    return TrainConfig(epochs=20 if task.is_small_grayscale else 60, lr=1e-3,
                       weight_decay=5e-4 * (not task.is_small_grayscale))


@register_model("baseline")
class Baseline(ModelPlugin):
    """Deterministic CNN trained with cross-entropy: the reference every uncertainty method is compared to."""

    predictive = "deterministic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "deterministic CNN (LeNet-like on one-channel images, VGG-style on colour ones)"

    def build(self, task: Task) -> nn.Module:
        return make_cnn(task)

    def train_config(self, task: Task) -> TrainConfig:
        return cnn_recipe(task)
