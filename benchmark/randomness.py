"""Whether a stochastic network draws independent randomness for each row of a batch.

The deployed rule and EOT repeat an input along the batch axis to get S or K draws in one call
(``benchmark.predictive``). A network that samples its weights once per call gives every row the same
draw: its K "draws" are one, its robust accuracy is judged on one sample and its uncertainty on none.
Copies of one input in one batch must therefore give different outputs, uncorrelated across rows.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.outputs import logits_of

#: calls made to estimate the correlation; its sampling std for independent rows is about 1/sqrt(CALLS)
CALLS = 64
#: a correlation above this (8 standard deviations of an independent pair's estimate) is shared randomness
SHARED_CORRELATION = 0.5


@torch.no_grad()
def row_correlation(network: nn.Module, x: torch.Tensor, calls: int = CALLS) -> float:
    """Correlation, across ``calls`` forward passes of a stochastic network (``[B, C]`` logits), between
    the outputs of two copies of ``x[:1]`` in one batch, pooled over classes: about 0 for independent draws,
    1 for one draw shared by the batch; NaN when the outputs do not vary at all."""
    pair = x[:1].expand(2, *x.shape[1:]).contiguous()
    outputs = torch.stack([logits_of(network(pair)).reshape(2, -1) for _ in range(calls)]).double()
    centred = outputs - outputs.mean(0)
    first, second = centred[:, 0], centred[:, 1]
    scale = (first.pow(2).sum() * second.pow(2).sum()).sqrt()
    return float((first * second).sum() / scale) if scale > 0 else float("nan")
