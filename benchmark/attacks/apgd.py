"""APGD: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (Algorithm 1 and Sec. 3), on the deployed rule's log predictive.

The attack, as in the paper (L-inf):

- The first step is a plain signed-gradient step of size eta(0) = 2 eps; every later one adds momentum,
  z(k+1) = P(x(k) + eta sign(grad f(x(k)))), x(k+1) = P(x(k) + alpha (z(k+1) - x(k)) + (1 - alpha)
  (x(k) - x(k-1))) with alpha = 0.75, P the projection onto the threat model (what :func:`~base.project`
  computes, as one clamp to the box max(x - eps, 0) to min(x + eps, 1) found once per run).
- The step size is per example and only ever halves, at the checkpoints w_j = ceil(p_j N) of an N-step
  run, p_0 = 0, p_1 = 0.22, p_(j+1) = p_j + max(p_j - p_(j-1) - 0.03, 0.06). At w_j it halves where
  Condition 1 (the loss rose on fewer than rho (w_j - w_(j-1)) of the steps since w_(j-1)) or Condition 2
  (the step size did not halve at w_(j-1) and the best loss has not risen since) holds, and the iterate of
  such an example goes back to its best point x_max. The gradient at x_max is kept from when it was
  found, so the step after a restore costs no extra pass (as the authors' code does).
- Losses: cross-entropy, DLR (eq. 4, :func:`~losses.dlr`) and targeted DLR (APGD-T,
  :func:`~losses.targeted_dlr`), all on ``predictor.log_predictive(x, draws)``; a run of N steps costs
  N + 1 forward and backward passes (the start and every step), as the authors' code.

Where this follows the paper rather than the authors' code (pyautoattack), or chooses where neither says:

- Condition 1 is the paper's strict "fewer than rho times the window" (the code halves at "no more
  than"), and Condition 2 can hold at the first checkpoint (the code never halves there on it); the
  checkpoints are the paper's formula, computed in integer hundredths so that 0.22 * 100 is 22 and not
  23 (the code rounds its window lengths 0.22 N, 0.03 N and 0.06 N down, which gives the same
  checkpoints where those are whole numbers, as for N = 100, and others elsewhere).
- Start: every restart, the first included, starts at x + eps t / max|t|, t uniform in [-1, 1]^d per
  example, clipped to [0, 1] (the authors' code): a point spread over the ball with at least one
  coordinate on its surface. The draws come from a ``torch.Generator`` of the attack's own, seeded with
  ``seed`` on the CPU (the same start on every device), drawn for the whole batch every restart so an
  example's start does not depend on which others are still attacked; the global generator, which a
  stochastic model's draws use, is neither reseeded nor drawn from.
- Non-random models (deterministic, moments, ensemble): a misclassified point is exact, so an example is
  done the first time the deployed rule misclassifies an evaluated point (the clean input included, which
  is then returned unchanged), and it leaves the batch: the steps are computed for the examples still
  active only, and later restarts skip it. The robust accuracy is that of attacking every example to the
  end, at a fraction of the cost once most are broken. Finding the leavers (``nonzero``) makes the host
  wait for the device, so the batch is compacted after every pass on the CPU (where that wait is free) and
  every ``COMPACT_EVERY`` passes on an accelerator; in between, broken examples' rows ride along, their
  first misclassified point already recorded on the device without a wait. (``Predictor.log_predictive``
  checks for NaN on the host at every call, so today an accelerator waits once a pass anyway; the attack
  adds no wait of its own per pass.) An example no restart breaks returns its highest-loss point.
- APGD-T runs all its target classes at once: the batch repeated T times, copy t aiming at the example's
  t-th target, in one forward and backward pass per step. The targets are the T classes other than y
  that the clean predictive ranks highest, T = ``targets`` capped at C - 1: the paper's classes ranked 2
  to T + 1 wherever the clean input is classified correctly, and never the true class elsewhere. For a
  non-random model every copy of an example leaves once any copy breaks it; an example no copy breaks
  returns the copy whose best point has the highest untargeted margin loss, max_(j != y) z_j - z_y, the
  one closest to the boundary (the copies' targeted losses, one per target, do not compare).
- Stochastic models: no single evaluation is exact, so there is no active set; every example runs every
  step of every restart and target and keeps the point of highest (K-draw) loss, as :class:`~pgd.PGD`.
  Across restarts and targets each candidate gets one fresh K-draw evaluation,
  ``predictor.probs(candidate, draws)``, and the example keeps the one of lowest true-class probability
  (a single candidate is returned without one); the harness re-evaluates the final points itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from benchmark.attacks.base import Attack, project, target_classes
from benchmark.attacks.losses import LOSSES, targeted_dlr
from benchmark.attacks.square import margin
from benchmark.predictive import Predictor

#: alpha of Algorithm 1: the weight of the new gradient step against the previous step (momentum)
MOMENTUM = 0.75
#: eta(0), in units of eps (Croce & Hein 2020)
INITIAL_STEP = 2.0
#: p_1, the shrink of the checkpoint windows and their floor, in hundredths of the step budget
FIRST_CHECKPOINT, WINDOW_SHRINK, MIN_WINDOW = 22, 3, 6
#: passes between two compactions of the active set on an accelerator (on the CPU: every pass)
COMPACT_EVERY = 5


def checkpoints(steps: int) -> list[int]:
    """The paper's checkpoints w_1 < w_2 < ... <= ``steps``, w_j = ceil(p_j * steps), where the step size may
    halve; in integer hundredths, as float rounding would put ceil(0.22 * 100) at 23."""
    marks: list[int] = []
    before, p = 0, FIRST_CHECKPOINT
    while p <= 100:
        mark = -(-p * steps // 100)
        if mark >= 1 and (not marks or mark > marks[-1]):
            marks.append(mark)
        before, p = p, p + max(p - before - WINDOW_SHRINK, MIN_WINDOW)
    return marks


def compaction_interval(device: torch.device) -> int:
    """Passes between two compactions of the active set: each makes the host wait for the device, free on
    the CPU (every pass) and a stall of the queue on an accelerator (every ``COMPACT_EVERY`` passes)."""
    return 1 if device.type == "cpu" else COMPACT_EVERY


class _Rows:
    """Algorithm 1's state for the rows still attacked, one tensor per quantity; ``take`` keeps a subset."""

    def __init__(self, **tensors: torch.Tensor):
        self.__dict__.update(tensors)

    def take(self, keep: torch.Tensor) -> None:
        for name, value in list(vars(self).items()):
            setattr(self, name, value[keep])


@dataclass(frozen=True)
class APGD(Attack):
    """Auto-PGD (L-inf) on cross-entropy, DLR or targeted DLR, with an active set on non-random models."""

    loss: str = "ce"  # "ce", "dlr" or "dlr-targeted"
    steps: int = 100
    restarts: int = 1
    targets: int = 9  # "dlr-targeted": the classes ranked 2..targets+1 by the clean predictive, capped at C - 1
    rho: float = 0.75
    seed: int = 0

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> APGD:
        return replace(self, seed=seed)

    @torch.no_grad()
    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        if self.loss not in (*LOSSES, "dlr-targeted"):
            raise ValueError(f"APGD loss must be one of {[*LOSSES, 'dlr-targeted']}, got {self.loss!r}")
        if self.targets < 1:
            raise ValueError(f"APGD-T needs at least one target class, got {self.targets}")
        x, y = x.detach().float(), y.to(x.device)
        n, shape = x.shape[0], x.shape[1:]
        column = (-1, *[1] * len(shape))  # a per-example value against an input-shaped tensor
        if n == 0:
            return x.clone()
        exact = not predictor.is_random
        generator = torch.Generator().manual_seed(self.seed)
        clean_log_pred = predictor.log_predictive(x, draws)
        if self.loss == "dlr-targeted":
            copies = min(self.targets, clean_log_pred.shape[1] - 1)
            aims = target_classes(clean_log_pred, y, copies)  # [n, copies]
        else:
            copies, aims = 1, y[:, None]
        best = x.clone()
        best_score = torch.full((n,), -torch.inf, device=x.device)  # exact: loss or margin; random: -p(y)
        done = clean_log_pred.argmax(1) != y if exact else torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            noise = (2 * torch.rand((copies, *x.shape), generator=generator) - 1).to(x.device)
            todo = torch.nonzero(~done).squeeze(1)
            m = todo.numel()
            if m == 0:
                break
            # row c * m + i is copy c of example todo[i]
            clean = x[todo].repeat(copies, *[1] * len(shape))
            labels, targets = y[todo].repeat(copies), aims[todo].T.reshape(-1)
            t = noise[:, todo].reshape(copies * m, *shape)
            start = project(clean + eps * t / t.flatten(1).abs().amax(1).clamp_min(1e-12).view(column), clean, eps)
            x_max, f_max, found, broken = self._ascend(predictor, clean, labels, targets, start, eps, draws, m)
            rows = torch.arange(m, device=x.device)
            if exact:
                hit = broken.view(copies, m)
                broke = hit.any(0)
                breaker = found.view(copies, m, *shape)[hit.int().argmax(0), rows]  # a breaking copy, where any
                if copies == 1:
                    score = f_max.view(1, m)
                else:  # the targeted losses of different targets do not compare: the untargeted margin does
                    score = torch.full_like(f_max, -torch.inf)
                    left = torch.nonzero(~broke.repeat(copies)).squeeze(1)
                    if left.numel():
                        score[left] = -margin(predictor.log_predictive(x_max[left], draws), labels[left])
                    score = score.view(copies, m)
                top, pick = score.max(0)
                candidate = x_max.view(copies, m, *shape)[pick, rows]
                improved = ~broke & (top > best_score[todo])
                best[todo] = torch.where(broke.view(column), breaker,
                                         torch.where(improved.view(column), candidate, best[todo]))
                best_score[todo] = torch.where(improved, top, best_score[todo])
                done[todo] = broke
            elif copies * self.restarts == 1:
                best = x_max
            else:  # one fresh K-draw evaluation per candidate; the lowest true-class probability wins
                p_true = predictor.probs(x_max, draws).gather(1, labels[:, None]).view(copies, m)
                low, pick = p_true.min(0)
                candidate = x_max.view(copies, m, *shape)[pick, rows]
                improved = -low > best_score
                best = torch.where(improved.view(column), candidate, best)
                best_score = torch.where(improved, -low, best_score)
        return project(best, x, eps)

    def _gradient(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                  draws: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-row loss, whether the deployed rule misclassifies the point, and d loss / d input."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            log_pred = predictor.log_predictive(x, draws)
            if self.loss == "dlr-targeted":
                loss = targeted_dlr(log_pred, y, target)
            else:
                loss = LOSSES[self.loss](log_pred, y)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), log_pred.detach().argmax(-1) != y, grad

    def _ascend(self, predictor: Predictor, clean: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                start: torch.Tensor, eps: float, draws: int,
                groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run of Algorithm 1 from ``start`` for every row; row r belongs to example r % ``groups``, and on
        a non-random model all rows of an example leave once one of them is misclassified.

        Returns, per row: the highest-loss point and its loss (meaningful for rows whose example no row
        broke), the first misclassified point, and whether there was one (non-random models only).
        """
        rows, device = clean.shape[0], clean.device
        exact = not predictor.is_random
        compact_every = compaction_interval(device)
        found, broken = start.clone(), torch.zeros(rows, dtype=torch.bool, device=device)
        group_broken = torch.zeros(groups, dtype=torch.bool, device=device)
        x_max_out, f_max_out = start.clone(), torch.full((rows,), -torch.inf, device=device)
        column = (-1, *[1] * (clean.dim() - 1))

        loss, wrong, grad = self._gradient(predictor, start, y, target, draws)
        # the threat model's box, max(x - eps, 0) to min(x + eps, 1): clamping to it is exactly base.project
        s = _Rows(live=torch.arange(rows, device=device), low=(clean - eps).clamp_min(0.0),
                  high=(clean + eps).clamp_max(1.0), y=y, target=target,
                  group=torch.arange(rows, device=device) % groups, x=start, x_prev=start, grad=grad,
                  eta=torch.full((rows,), INITIAL_STEP * eps, device=device), x_max=start, f_max=loss,
                  grad_max=grad, f_last=loss, halved_last=torch.zeros(rows, dtype=torch.bool, device=device),
                  rises=torch.zeros(rows, dtype=torch.int64, device=device), loss=loss)
        marks, last_mark = set(checkpoints(self.steps)), 0
        for k in range(self.steps + 1):
            if k > 0:  # step k: from x(k-1) to x(k), then its loss and gradient
                alpha = 1.0 if k == 1 else MOMENTUM
                z = torch.clamp(s.x + s.eta.view(column) * s.grad.sign(), s.low, s.high)
                x_new = torch.clamp(torch.lerp(s.x, z, alpha).add_(s.x - s.x_prev, alpha=1 - alpha), s.low, s.high)
                s.x_prev, s.x = s.x, x_new
                loss, wrong, s.grad = self._gradient(predictor, s.x, s.y, s.target, draws)
                s.rises = s.rises + (loss > s.loss)
                s.loss = loss
                better = loss > s.f_max
                s.x_max = torch.where(better.view(column), s.x, s.x_max)
                s.grad_max = torch.where(better.view(column), s.grad, s.grad_max)
                s.f_max = torch.where(better, loss, s.f_max)
            if exact:  # each row's first misclassified point, recorded on the device without a host wait
                fresh = wrong & ~broken[s.live]
                found.index_copy_(0, s.live, torch.where(fresh.view(column), s.x, found[s.live]))
                broken.index_copy_(0, s.live, broken[s.live] | wrong)
                hits = torch.zeros(groups, dtype=torch.int64, device=device).index_add_(0, s.group, wrong.long())
                group_broken |= hits > 0
            if k in marks:
                window, last_mark = k - last_mark, k
                halve = (s.rises < self.rho * window) | (~s.halved_last & (s.f_max <= s.f_last))
                s.eta = torch.where(halve, s.eta / 2, s.eta)
                s.x = torch.where(halve.view(column), s.x_max, s.x)
                s.grad = torch.where(halve.view(column), s.grad_max, s.grad)
                s.loss = torch.where(halve, s.f_max, s.loss)  # the iterate is x_max now
                s.halved_last, s.f_last, s.rises = halve, s.f_max, torch.zeros_like(s.rises)
            if exact and (k % compact_every == 0 or k == self.steps):
                keep = torch.nonzero(~group_broken[s.group]).squeeze(1)
                if keep.numel() < s.live.numel():
                    s.take(keep)
                if s.live.numel() == 0:
                    break
        x_max_out.index_copy_(0, s.live, s.x_max)
        f_max_out.index_copy_(0, s.live, s.f_max)
        return x_max_out, f_max_out, found, broken
