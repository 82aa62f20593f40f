"""Per-example attack losses on the deployed rule's log predictive distribution ``[B, C]``.

Cross-entropy saturates where the predictive is overconfident (large or temperature-scaled logits):
its gradient vanishes and a gradient attack stalls. The difference-of-logits-ratio (DLR) loss of
Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (eq. 4), is invariant to shifting and to scaling the logits, so it
does not. On a log predictive (log-softmax, or the log of the mean softmax of several draws) the
shift invariance makes DLR of the log-probabilities equal DLR of the logits of a deterministic network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: keeps the DLR denominator positive where the three largest scores tie (Croce & Hein 2020)
DLR_EPSILON = 1e-12


def cross_entropy(log_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log p(y | x) of the deployed predictive distribution."""
    return F.nll_loss(log_pred, y, reduction="none")


def dlr(log_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-(z_y - max_{i != y} z_i) / (z_(1) - z_(3)), with z_(k) the k-th largest score: positive once the
    point is misclassified, scale-free. Needs at least three classes."""
    if log_pred.shape[-1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, got {log_pred.shape[-1]}")
    ordered = log_pred.sort(dim=-1, descending=True).values
    true = log_pred.gather(-1, y[:, None]).squeeze(-1)
    top_is_true = ordered[:, 0] == true
    best_other = torch.where(top_is_true, ordered[:, 1], ordered[:, 0])
    return -(true - best_other) / (ordered[:, 0] - ordered[:, 2] + DLR_EPSILON)


def targeted_dlr(log_pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2), the loss of APGD-T (Croce & Hein 2020, the targeted form
    of eq. 4), with z_(k) the k-th largest score: ascending it pushes the ``target`` class's score above the
    true class's, and it is positive once the target outscores y. Shift- and scale-free like :func:`dlr`, so
    it does not saturate on an overconfident predictive; the denominator leaves out z_(2), the place the
    target takes as the attack gets close. Needs at least four classes. Not in :data:`LOSSES`, whose losses
    take only (log_pred, y)."""
    if log_pred.shape[-1] < 4:
        raise ValueError(f"the targeted DLR loss needs at least 4 classes, got {log_pred.shape[-1]}")
    ordered = log_pred.sort(dim=-1, descending=True).values
    true = log_pred.gather(-1, y[:, None]).squeeze(-1)
    aimed = log_pred.gather(-1, target[:, None]).squeeze(-1)
    return -(true - aimed) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + DLR_EPSILON)


#: the attack objectives computed on the log predictive, by the name attacks are configured with
#: (``"likelihood"``, the plugin's own loss on its raw output, is ``Predictor.likelihood_objective``)
LOSSES = {"ce": cross_entropy, "dlr": dlr}
