"""Per-channel standardization as the network's first layer."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel standardization inside the model, so attacks and noise act on [0, 1] inputs."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def interval_bounds(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval bound propagation (``benchmark.bounds``): non-decreasing for a positive std, so both ends."""
        if (self.std <= 0).any():
            raise TypeError("IBP: Normalize with a non-positive std is not monotone")
        return self(lower), self(upper)
