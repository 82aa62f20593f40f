"""The shared training loop calls the plugin's schedule and post-training hooks."""

import torch
from torch import nn

from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.training import train


class HookedPlugin(ModelPlugin):
    name = "hooked"

    def __init__(self):
        self.progress: list[float] = []

    def build(self, task):
        net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        net.register_buffer("fitted", torch.zeros(()))
        return net

    def before_step(self, network, progress):
        self.progress.append(progress)

    def finalize(self, network, x, y, task, config, device, seed):
        network.fitted.fill_(float(len(y)))


def test_hooks_see_every_step_and_the_training_data():
    plugin, task = HookedPlugin(), Task("toy", (1, 2, 2), 2, 10)
    network = plugin.build(task)
    x, y = torch.rand(10, 1, 2, 2), torch.randint(0, 2, (10,))
    train(plugin, network, x, y, task, TrainConfig(epochs=2, batch_size=4), torch.device("cpu"), seed=0)
    assert plugin.progress == [i / 6 for i in range(6)]  # 3 steps per epoch, 2 epochs
    assert network.fitted.item() == 10.0
    assert not network.training
