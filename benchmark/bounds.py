"""Interval bound propagation (IBP): sound elementwise bounds on a network's outputs over an input box.

A box is a pair ``(lower, upper)`` of tensors of the same shape with ``lower <= upper``. Every rule
below maps a box that contains the layer's input to a box that contains its output, for every input
in the box (Gowal et al. 2018, "On the Effectiveness of Interval Bound Propagation for Training
Verifiably Robust Models"; used per posterior sample by Wicker et al. 2021, arXiv 2102.05289):

- affine maps (dense, convolution) in centre-radius form: c = (u + l)/2, r = (u - l)/2,
  c' = W c + b, r' = |W| r, box [c' - r', c' + r'];
- elementwise non-decreasing maps (ReLU, ELU, sigmoid, tanh, leaky ReLU) and max-pooling, which is
  non-decreasing in every input: applied to both ends;
- flatten and identity: both ends.

Those are torch's layers, registered with :func:`interval_rule`. Any other layer, such as
``benchmark.layers.Normalize`` or a third-party plugin's, supplies its own rule as a method
``interval_bounds(lower, upper) -> (lower, upper)``, so bounds need no list of the project's classes.
Everything is differentiable, so a training loss can use the bounds. A module with no rule raises,
never passes through silently: an unknown layer would make the bounds unsound.

Soundness is exact in real arithmetic; in floating point the rounding of the affine maps is not
directed outward. Certification therefore runs in float64 (the weights are cast to the box's dtype)
and asks for a margin of :data:`CERTIFY_MARGIN`, far above float64 rounding at these sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import singledispatch

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Box = tuple[Tensor, Tensor]
#: ``weights(module)`` gives the (weight, bias) a layer uses for this propagation (one posterior draw of
#: a Bayesian layer), or ``None`` for a module that is not a learned affine layer
WeightSource = Callable[[nn.Module], "tuple[Tensor, Tensor | None] | None"]

#: a point is certified when l_y - max_{j != y} u_j exceeds this (covers float64 rounding)
CERTIFY_MARGIN = 1e-6



def input_box(x: Tensor, eps: float) -> Box:
    """The L-inf eps-ball around ``x`` intersected with the valid image range [0, 1]."""
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def affine_box(lower: Tensor, upper: Tensor, weight: Tensor, bias: Tensor | None,
               module: nn.Module | None = None) -> Box:
    """Bounds of ``W x + b`` (dense for a 2-d weight, 2-d convolution for a 4-d weight, with the
    stride, padding, dilation and groups of ``module``) in centre-radius form."""
    weight = weight.to(lower.dtype)
    bias = None if bias is None else bias.to(lower.dtype)
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    if weight.dim() == 2:
        c, r = F.linear(centre, weight, bias), F.linear(radius, weight.abs())
    elif weight.dim() == 4:
        conv = dict(stride=getattr(module, "stride", 1), padding=getattr(module, "padding", 0),
                    dilation=getattr(module, "dilation", 1), groups=getattr(module, "groups", 1))
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise TypeError(f"IBP supports zero padding only, not {module.padding_mode!r}")
        c, r = F.conv2d(centre, weight, bias, **conv), F.conv2d(radius, weight.abs(), None, **conv)
    else:
        raise TypeError(f"IBP: affine weight of shape {tuple(weight.shape)} is neither dense nor conv2d")
    return c - r, c + r


def module_box(module: nn.Module, lower: Tensor, upper: Tensor, weights: WeightSource | None = None) -> Box:
    """Bounds of one module's output; ``weights`` supplies the parameters of custom affine layers."""
    given = weights(module) if weights is not None else None
    if given is not None:
        return affine_box(lower, upper, *given, module=module)
    if isinstance(module, nn.Sequential):
        return propagate(module, lower, upper, weights)
    return interval_rule(module, lower, upper)


@singledispatch
def interval_rule(module: nn.Module, lower: Tensor, upper: Tensor) -> Box:
    """The sound rule of one layer: its own ``interval_bounds`` method, or a rule registered for its class."""
    own = getattr(module, "interval_bounds", None)
    if own is None:
        raise TypeError(f"IBP has no sound rule for {type(module).__name__}: give the layer an "
                        "interval_bounds(lower, upper) method")
    return own(lower, upper)


@interval_rule.register(nn.Linear)
@interval_rule.register(nn.Conv2d)
def _affine_rule(module: nn.Module, lower: Tensor, upper: Tensor) -> Box:
    return affine_box(lower, upper, module.weight, module.bias, module=module)


@interval_rule.register(nn.ReLU)
@interval_rule.register(nn.ELU)
@interval_rule.register(nn.Sigmoid)
@interval_rule.register(nn.Tanh)
@interval_rule.register(nn.Softplus)
@interval_rule.register(nn.MaxPool2d)
@interval_rule.register(nn.Flatten)
@interval_rule.register(nn.Identity)
def _monotone_rule(module: nn.Module, lower: Tensor, upper: Tensor) -> Box:
    """Non-decreasing in every input (GELU and SiLU are not, and have no rule): both ends."""
    return module(lower), module(upper)


@interval_rule.register(nn.LeakyReLU)
def _leaky_relu_rule(module: nn.LeakyReLU, lower: Tensor, upper: Tensor) -> Box:
    if module.negative_slope < 0:
        raise TypeError("IBP: LeakyReLU with a negative slope is not monotone")
    return module(lower), module(upper)


def propagate(layers: Iterable[nn.Module], lower: Tensor, upper: Tensor, weights: WeightSource | None = None) -> Box:
    """Push the box [lower, upper] through ``layers`` in order (an ``nn.Sequential`` or a list)."""
    for module in layers:
        lower, upper = module_box(module, lower, upper, weights)
    return lower, upper


def worst_case_logits(lower: Tensor, upper: Tensor, y: Tensor) -> Tensor:
    """The logits least favourable to the label: l_y for the true class, u_j for every other class."""
    true = F.one_hot(y, lower.shape[-1]).to(torch.bool)
    return torch.where(true, lower, upper)


def certified_margin(lower: Tensor, upper: Tensor, y: Tensor) -> Tensor:
    """l_y - max_{j != y} u_j per example: positive means no input in the box changes the argmax away
    from y (and, since the clean input is in the box, that it is classified as y)."""
    true = F.one_hot(y, lower.shape[-1]).to(torch.bool)
    others = upper.masked_fill(true, float("-inf")).amax(dim=-1)
    return lower.gather(-1, y.unsqueeze(-1)).squeeze(-1) - others


def certified(lower: Tensor, upper: Tensor, y: Tensor) -> Tensor:
    """Boolean per example: the sound check l_y > max_{j != y} u_j (with :data:`CERTIFY_MARGIN`)."""
    return certified_margin(lower, upper, y) > CERTIFY_MARGIN
