"""Plugins whose evaluation-time outputs break the contract only after validation has passed."""

import torch

from benchmark.models.baseline import Baseline
from benchmark.registry import register_model


class _Broken(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.armed = False  # set by the plugin's finalize, after training: validation never arms it

    def evaluating(self, x: torch.Tensor) -> bool:
        return self.armed and not self.training


class NanOffGrid(_Broken):
    """NaN logits for every input not on the uint8 grid (noisy or attacked images)."""

    def forward(self, x):
        out = self.inner(x)
        off = ((x * 255 - (x * 255).round()).abs() > 1e-3).flatten(1).any(1, keepdim=True)
        return torch.where(off & self.evaluating(x), torch.full_like(out, float("nan")), out)


class ShapeShift(_Broken):
    """One class too many after the first three evaluation calls."""

    def forward(self, x):
        out = self.inner(x)
        if self.evaluating(x):
            self.calls += 1
            if self.calls > 3:
                return torch.cat([out, out[:, :1]], dim=1)
        return out


class _Arming(Baseline):
    def finalize(self, network, *args) -> None:
        network.armed = True


@register_model("nan-off-grid")
class NanOffGridPlugin(_Arming):
    def build(self, task):
        return NanOffGrid(super().build(task))


@register_model("shape-shift")
class ShapeShiftPlugin(_Arming):
    def build(self, task):
        return ShapeShift(super().build(task))
