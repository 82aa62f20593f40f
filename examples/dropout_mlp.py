"""A complete plugin, ready to copy: an MLP with MC dropout (Gal & Ghahramani, "Dropout as a Bayesian
Approximation", ICML 2016), stochastic at test time. Run it with

    benchmark run --model examples/dropout_mlp.py:dropout-mlp --dataset mnist-5k
"""

from torch import nn

from benchmark.layers import MCDropout
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


@register_model("dropout-mlp")
class DropoutMLP(ModelPlugin):
    """Two hidden layers of 256 units, MC dropout after each: every forward pass is one posterior draw."""

    predictive = "stochastic"
    summary = "an MLP with MC dropout (the example plugin of CONTRIBUTING.md)"

    def build(self, task: Task) -> nn.Module:
        channels, height, width = task.input_shape
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * height * width, 256), nn.ReLU(), MCDropout(0.2),
            nn.Linear(256, 256), nn.ReLU(), MCDropout(0.2),
            nn.Linear(256, task.num_classes),
        )

    def train_config(self, task: Task) -> TrainConfig:
        # min_steps: a small training set (mnist-5k's 4,000 images are 32 steps an epoch) gets more epochs
        return TrainConfig(epochs=2 if task.profile == "quick" else 20, min_steps=900, lr=1e-3)
