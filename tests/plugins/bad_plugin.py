"""A plugin that breaks the contract in two ways: wrong output shape, and it declares itself
deterministic while its output is random."""

import torch
from torch import nn

from benchmark.plugin import ModelPlugin, Task
from benchmark.registry import register_model


class WrongShape(nn.Module):
    def __init__(self, task: Task):
        super().__init__()
        self.linear = nn.Linear(task.input_shape[0] * task.input_shape[1] * task.input_shape[2], task.num_classes + 1)

    def forward(self, x):
        return self.linear(x.flatten(1))


class SecretlyRandom(nn.Module):
    def __init__(self, task: Task):
        super().__init__()
        self.linear = nn.Linear(task.input_shape[0] * task.input_shape[1] * task.input_shape[2], task.num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1) + 0.1 * torch.randn_like(x.flatten(1)))


@register_model("bad-shape")
class BadShape(ModelPlugin):
    def build(self, task: Task) -> nn.Module:
        return WrongShape(task)


@register_model("secretly-random")
class SecretlyRandomPlugin(ModelPlugin):
    def build(self, task: Task) -> nn.Module:
        return SecretlyRandom(task)
