"""The ``certify`` condition: interval bound propagation over the eps-ball at each eps of the sweep, for plugins that
give sound interval bounds (docs/protocol.md, "Certification"; the bounds themselves are ``benchmark.bounds``).
"""

from __future__ import annotations

import torch

from benchmark.bounds import certified, input_box
from benchmark.errors import PluginOutputError
from benchmark.evaluation import Condition, Evaluator
from benchmark.metrics import mean_interval
from benchmark.names import CERTIFY, metric_row


def run_certify(evaluator: Evaluator, condition: Condition):
    """IBP certification at eps with S posterior draws (docs/protocol.md): ``certified[s, i]`` when the
    plugin's logit bounds of draw s over the eps-ball around x_i (clipped to [0, 1], in float64) give
    l_y > max_{j != y} u_j. Certified implies correct for that draw (x_i is in the ball); certified for
    all S draws implies the mean-softmax decision of those S draws is y everywhere in the ball."""
    eps = float(condition.param)

    def batch_certified(_, xb, yb):
        lower, upper = input_box(xb.double(), eps)
        with torch.no_grad():
            return torch.stack([certified(*_checked_bounds(evaluator, lower, upper), yb)
                                for _ in range(evaluator.samples)]).cpu()

    cert = torch.cat(evaluator._map(condition, batch_certified), dim=1).numpy()
    acc, low, high = mean_interval([cert.all(axis=0).mean()], cert.shape[1])
    rows = [metric_row(CERTIFY, eps, "certified_acc", acc), metric_row(CERTIFY, eps, "certified_acc_ci_low", low),
            metric_row(CERTIFY, eps, "certified_acc_ci_high", high),
            metric_row(CERTIFY, eps, "certified_pair_fraction", cert.mean()),
            metric_row(CERTIFY, eps, "samples", cert.shape[0])]
    return rows, {"certified": cert}


def _checked_bounds(evaluator: Evaluator, lower: torch.Tensor,
                    upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = evaluator.bounds(lower, upper)
    if low.shape != high.shape or low.dim() != 2 or low.shape[0] != lower.shape[0]:
        raise PluginOutputError(f"interval_logits returned shapes {tuple(low.shape)}, {tuple(high.shape)}; "
                                f"expected [{lower.shape[0]}, classes] each")
    if (low > high).any():
        raise PluginOutputError("interval_logits returned a lower bound above its upper bound")
    return low, high
