"""Dropout that is a source of randomness at test time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MCDropout(nn.Dropout):
    """Dropout that stays on in eval mode (Gal & Ghahramani 2016): each forward pass is one draw."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True)
