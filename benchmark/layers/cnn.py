"""The baseline CNN architectures that several plugins build on.

The small net is LeNet-like (two 5x5 convs with 16 and 32 channels, two max-pools, a 128-unit hidden
layer: about 99% on MNIST and cheap enough for full attack sweeps on a laptop CPU), the CIFAR net
VGG-style (three blocks of two 3x3 convs). Inputs arrive in [0, 1]; normalization is the first layer.

Both take any image whose sides are at least :data:`benchmark.plugin.MIN_SIDE` (8) and any number of classes
from 2: one-channel images get the small net, others the VGG-style one, and the first dense layer's width is
derived from the height and width the pools leave (the MNIST and CIFAR-10 nets are exactly as before).
"""

from __future__ import annotations

from torch import nn

from benchmark.layers.dropout import MCDropout
from benchmark.layers.normalize import Normalize
from benchmark.plugin import Task


def make_cnn(task: Task, dropout: float = 0.0, always_on: bool = False, batch_norm: bool = False) -> nn.Sequential:
    """The baseline architecture for the task's input shape, with optional dropout before each dense layer.

    ``batch_norm`` adds a BatchNorm2d after each conv of the small net (SWAG needs batch norm); the
    CIFAR net always has it. Without it the modules, and so the initialisation, are unchanged.
    """
    drop = (lambda: MCDropout(dropout) if always_on else nn.Dropout(dropout)) if dropout > 0 else nn.Identity
    norm = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
    channels, height, width = task.input_shape
    if task.is_small_grayscale:
        return nn.Sequential(
            Normalize((0.5,) * channels, (0.5,) * channels),
            nn.Conv2d(channels, 16, 5, padding=2), *norm(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), *norm(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), drop(),
            nn.Linear(32 * (height // 4) * (width // 4), 128), nn.ReLU(), drop(),
            nn.Linear(128, task.num_classes),
        )

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        # CIFAR-10's channel statistics for colour images; centred at 0.5 for any other channel count
        Normalize(*(((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)) if channels == 3
                    else ((0.5,) * channels, (0.5,) * channels))),
        *block(channels, 64), *block(64, 128), *block(128, 256),
        nn.Flatten(), drop(),
        nn.Linear(256 * (height // 8) * (width // 8), 256), nn.ReLU(), drop(),
        nn.Linear(256, task.num_classes),
    )
