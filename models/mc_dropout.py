"""MC dropout: Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.

Dropout stays on at test time and the predictive distribution is the mean softmax over passes.
The dropout rates follow Ovadia et al. 2019 ("Can you trust your model's uncertainty?"): 0.30 for the
LeNet-like net on 28x28 inputs, 0.055 for the CIFAR net. The dropout layers ignore eval mode, so no
attack library can switch the randomness off by calling ``model.eval()``.
"""

from __future__ import annotations

import copy

from torch import nn

from benchmark.claim import bayesian_claims
from benchmark.layers.cnn import make_cnn
from benchmark.layers.dropout import MCDropout
from benchmark.models.baseline import cnn_recipe
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.registry import register_model


@register_model("mc-dropout")
class MCDropoutPlugin(ModelPlugin):
    """MC dropout: the baseline CNN with always-on dropout (Ovadia et al.'s rates), mean softmax over passes."""

    predictive = "stochastic"
    input_shapes = None  # any image from 8x8 up: benchmark.layers.cnn.make_cnn derives its head from the shape
    summary = "MC dropout (always-on dropout, mean softmax over S passes)"
    claims = bayesian_claims("MC dropout", "mc-dropout", "a point estimate")

    def dropout_rate(self, task: Task) -> float:
        return 0.30 if task.is_small_grayscale else 0.055

    def build(self, task: Task) -> nn.Module:
        return make_cnn(task, dropout=self.dropout_rate(task), always_on=True)

    def train_config(self, task: Task) -> TrainConfig:
        return cnn_recipe(task)

    def deterministic_trunk(self, network: nn.Module) -> tuple[nn.Module, nn.Module]:
        """Everything before the first dropout layer (the normalisation and the convolutions) draws nothing."""
        first = next(i for i, module in enumerate(network) if isinstance(module, MCDropout))
        return network[:first], network[first:]

    def surrogate(self, network: nn.Module) -> nn.Module:
        """The same weights with dropout off: the deterministic mean-field approximation of the predictive."""
        deterministic = copy.deepcopy(network)
        for name, module in list(deterministic.named_modules()):
            if isinstance(module, MCDropout):
                parent = deterministic.get_submodule(name.rpartition(".")[0]) if "." in name else deterministic
                setattr(parent, name.rpartition(".")[2], nn.Identity())
        return deterministic
