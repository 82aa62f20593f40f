"""Models that mask gradients in known ways, each of which the harness must flag (docs/protocol.md)."""

import torch
from torch import nn

from benchmark.layers.cnn import make_cnn
from benchmark.models.baseline import cnn_recipe
from benchmark.plugin import ModelPlugin, Task
from benchmark.registry import register_model


class SoftmaxOutput(nn.Module):
    """Returns probabilities instead of logits: the cross-entropy then sees log(softmax(softmax(z)))."""

    def __init__(self, task: Task):
        super().__init__()
        self.net = make_cnn(task)

    def forward(self, x):
        return self.net(x).softmax(-1)


class Quantized(nn.Module):
    """Rounds the input to 4 grey levels first: the input gradient is zero almost everywhere."""

    def __init__(self, task: Task):
        super().__init__()
        self.net = make_cnn(task)

    def forward(self, x):
        return self.net(torch.round(x * 3) / 3)


class RandomShift(nn.Module):
    """Adds fresh input noise on every call, but its plugin declares it deterministic."""

    def __init__(self, task: Task):
        super().__init__()
        self.net = make_cnn(task)

    def forward(self, x):
        return self.net(x + 0.1 * torch.randn_like(x))


class SharedDraw(nn.Module):
    """Draws its randomness once per call and shares it across the batch: K batched EOT draws are one."""

    def __init__(self, task: Task):
        super().__init__()
        self.net = make_cnn(task)

    def forward(self, x):
        logits = self.net(x)
        return logits + torch.randn(logits.shape[-1], device=x.device)  # one draw for every row


class _Masked(ModelPlugin):
    network_class: type = nn.Module

    def build(self, task: Task) -> nn.Module:
        return self.network_class(task)

    def train_config(self, task: Task):
        return cnn_recipe(task)


@register_model("masked-softmax-output")
class SoftmaxOutputPlugin(_Masked):
    network_class = SoftmaxOutput

    def loss(self, network, output, y, task):
        return nn.functional.nll_loss(output.clamp_min(1e-12).log(), y)


@register_model("masked-quantized-input")
class QuantizedPlugin(_Masked):
    network_class = Quantized


@register_model("masked-random-undeclared")
class RandomShiftPlugin(_Masked):
    network_class = RandomShift


@register_model("masked-shared-randomness")
class SharedDrawPlugin(_Masked):
    predictive = "stochastic"
    network_class = SharedDraw
