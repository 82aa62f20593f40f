"""A minimal external plugin used by the registry tests: a linear softmax classifier."""

from torch import nn

from benchmark.plugin import ModelPlugin, Task
from benchmark.registry import register_model


@register_model("tiny-linear")
class TinyLinear(ModelPlugin):
    predictive = "deterministic"
    summary = "linear classifier for tests"

    def build(self, task: Task) -> nn.Module:
        return nn.Sequential(nn.Flatten(),
                             nn.Linear(int(task.input_shape[0] * task.input_shape[1] * task.input_shape[2]),
                                       task.num_classes))
