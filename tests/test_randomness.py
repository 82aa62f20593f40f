"""Stochastic networks must draw independent randomness per row of a batch (benchmark.randomness)."""

import math
from pathlib import Path

import torch
from torch import nn

from benchmark.layers.dropout import MCDropout
from benchmark.randomness import SHARED_CORRELATION, row_correlation
from benchmark.registry import create_model
from benchmark.validate import validate_plugin

MASKING = Path(__file__).parent / "plugins" / "masking_plugins.py"


class SharedWeightDraw(nn.Module):
    """Samples one weight matrix per call, as a naive Bayesian layer does."""

    def __init__(self):
        super().__init__()
        self.mean = nn.Parameter(torch.randn(10, 784) * 0.05)

    def forward(self, x):
        return x.flatten(1) @ (self.mean + 0.05 * torch.randn_like(self.mean)).T


def test_one_draw_per_call_is_fully_correlated_and_dropout_per_row_is_not():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    assert row_correlation(SharedWeightDraw(), x) > 0.99
    dropout = nn.Sequential(nn.Flatten(), MCDropout(0.5), nn.Linear(784, 10))
    assert abs(row_correlation(dropout, x)) < SHARED_CORRELATION / 2
    assert math.isnan(row_correlation(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), x))  # no randomness at all


def test_validate_plugin_warns_about_shared_randomness():
    checks = {c.name: c for c in validate_plugin(create_model(f"{MASKING}:masked-shared-randomness"))}
    check = checks["independent randomness per row(1x28x28)"]
    assert not check.ok and not check.blocking and "shares one random draw" in check.detail
    assert checks["randomness in eval mode(1x28x28)"].ok  # it is random, just not per row
