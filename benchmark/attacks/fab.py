"""Targeted L-inf FAB: Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML 2020, run as AutoAttack's standard version runs it (FAB-T: Croce & Hein, "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks", ICML 2020).

FAB looks for the smallest L-inf perturbation that changes the decision. For a target class t (FAB-T: the classes
ranked 2 to T+1 by the clean logits, one run each), each iteration linearises the boundary between the true
class y and t at the current point x_i: g = z_t - z_y, w = grad g, so the boundary is near
{z : g(x_i) + w.(z - x_i) = 0}. Both x_i and the original x_orig are projected onto that hyperplane within the
box [0, 1]^d (minimal L-inf steps d_i and d_orig, :func:`linf_boundary_step`), and the next point is the biased
step of the paper's Eq. (9),

    x' = proj_box((1 - a)(x_i + eta d_i) + a (x_orig + eta d_orig)),  a = min(|d_i| / (|d_i| + |d_orig|), alpha_max)

(norms L-inf): eta > 1 overshoots the linearised boundary, and the pull towards x_orig, larger the farther x_i
has wandered, keeps the search near the original. When x' is misclassified, FAB steps back towards the original,
x_{i+1} = (1 - beta) x_orig + beta x', to shrink the perturbation; otherwise x_{i+1} = x'. Restarts after the first
start from a random point at L-inf distance min(eps, best distance found) / 2 from x_orig (the paper's Sec. 3.3;
pyautoattack puts it on that sphere, as here).

How this implementation runs it, and why:

- Every (example, target) pair is one row of a single batch, target-major (the batch repeated T times), so one
  forward and one backward pass serve all targets: the gradient of the row's own z_t - z_y, one backward of the
  sum over rows, never the full Jacobian. Each row follows the trajectory of a separate run for its target (to
  rounding), as pyautoattack runs them one after another.
- An active set. AutoAttack counts a FAB point only if it is misclassified and within eps of the original, so an
  example leaves the computation as soon as any of its rows finds such a point, which is returned; examples the
  model already misclassifies are returned unchanged and never attacked. FAB itself would go on shrinking the
  perturbation: leaving early changes only the distance of the returned point, never whether it counts, so the
  robust accuracy is the same as the full run's at a fraction of the cost. Adversarial points farther than eps are
  not kept either: they would never be returned (the original is), and the best distance found does not steer
  the iterations; an active example's best distance is above eps, so the restarts' radius is eps / 2.
- Logits: ``predictor.log_predictive(x, 1)``. FAB uses only differences z_t - z_y and their gradients, the same
  for log-probabilities as for the logits (a per-example shift). FAB is for deterministic predictors: with a
  random one, a point's class and the boundary's linearisation change between draws, and a point within eps
  that one draw calls broken is not a finding. It is refused.
- Per iteration: one forward and backward pass at x_i and one forward pass at x' (is it misclassified?),
  like pyautoattack; and two host synchronisations: whether any projection needs the sorted solution, and how
  many examples finished (to compact the batch).
- The restarts' randomness comes from a ``torch.Generator`` of its own seeded with ``seed`` (on the CPU, so a
  seed gives the same attack on every device); the global generator is never reseeded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from benchmark.attacks.base import Attack, project, target_classes
from benchmark.predictive import Predictor

#: floor on the L-inf norm of the two projection steps in the bias a (pyautoattack's): a = 0/0 would be NaN
_STEP_FLOOR = 1e-8
#: Newton steps of the projection before its remaining rows are solved by sorting (see linf_boundary_step). On
#: the MNIST MLP of the tests, 3 steps solve 99.9% of the rows and 4 all of them, but a 4th step over every row
#: costs more than sorting the few left (FAB-T, 300 images, one thread: 6 s with 3, 7 s with 4, 8 s sorting all)
NEWTON_STEPS = 3


def linf_boundary_step(points: torch.Tensor, w: torch.Tensor, value: torch.Tensor,
                       newton_steps: int = NEWTON_STEPS) -> torch.Tensor:
    """The smallest L-inf step d with ``value + w.d = 0`` and ``points + d`` in [0, 1]^D, per row ``[R, D]``.

    ``value`` ``[R]`` is the linear function w.z + b at the points. This is the L-inf projection onto the
    hyperplane intersected with the box (Croce & Hein 2020, Sec. 3.1), solved exactly: to change w.z by
    c = -value, each coordinate moves in the direction sign(w_i) sign(c), by at most its room in the box, cap_i. A
    step of L-inf norm delta can change w.z by at most f(delta) = sum_i |w_i| min(delta, cap_i), which is piecewise
    linear, nondecreasing and concave, with kinks at the caps; the answer is the delta where f reaches |c|, each
    coordinate then moving by min(delta, cap_i). Where the box makes the hyperplane unreachable (f(inf) < |c|) the
    step goes as far towards it as the box allows (every coordinate to its cap), the point of the box closest to
    the hyperplane along w, as in FAB. Coordinates with w_i = 0 do not move.

    The root is found by Newton's method from delta = 0: on a concave nondecreasing function each Newton step
    stays below the root, and a step that crosses no kink lands on it exactly (f is linear there). In FAB's
    problems most caps are far from the root (image pixels at 0 or 1), so a few steps solve almost every row, at
    a few elementwise passes each; the rows still unsolved after ``newton_steps`` get the direct exact solution
    (:func:`_sorted_root`: sort the caps, evaluate f at each by cumulative sums, solve on the segment that
    reaches |c|), whose sort would otherwise be most of FAB's time.
    """
    need = -value
    direction = torch.sign(w) * torch.where(need >= 0, 1.0, -1.0).to(w.dtype)[:, None]
    # room in the box: 1 - x_i moving up, x_i moving down (0.5 where w_i = 0: never used). Arithmetic, not
    # torch.where, which is several times slower on the CPU; the projection is most of FAB's time
    cap = (0.5 - points).mul_(direction).add_(0.5).clamp_(0.0, 1.0)
    weight = w.abs()
    target = need.abs()[:, None]
    delta = torch.zeros_like(target)
    solved = (weight * cap).sum(1, keepdim=True) < target  # out of reach: every coordinate goes to its cap
    delta = torch.where(solved, torch.full_like(delta, float("inf")), delta)
    for _ in range(newton_steps):
        above = cap > delta  # the coordinates that still move as delta grows
        slope = (weight * above).sum(1, keepdim=True)
        progress = (weight * torch.minimum(cap, delta)).sum(1, keepdim=True)
        newton = delta + (target - progress).clamp_min(0.0) / slope.clamp_min(1e-30)
        kink = (cap + (cap <= delta) * 2.0).amin(1, keepdim=True)  # the next kink above delta (caps are <= 1)
        delta = torch.where(solved, delta, newton)
        solved = solved | (newton <= kink)  # no kink crossed: f was linear up to the new delta, which is the root
    if not bool(solved.all()):
        rows = torch.nonzero(~solved.squeeze(1)).squeeze(1)
        delta[rows] = _sorted_root(cap[rows], weight[rows], target[rows])
    return direction * torch.minimum(delta, cap)


def _sorted_root(cap: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The delta ``[R, 1]`` where f(delta) = sum_i weight_i min(delta, cap_i) reaches ``target``, exactly: the caps
    sorted, f at each cap by cumulative sums, and the linear equation solved on the segment where f reaches the
    target (``inf`` where it never does)."""
    cap_sorted, order = cap.sort(dim=1)
    weight_sorted = weight.gather(1, order)
    saturated = (weight_sorted * cap_sorted).cumsum(1)  # change from the coordinates whose cap is <= cap_(k)
    total = weight.sum(1, keepdim=True)
    weight_after = (total - weight_sorted.cumsum(1)).clamp_min(0.0)  # |w| of the coordinates whose cap is larger
    reach = saturated + cap_sorted * weight_after  # f(cap_(k))
    below = (reach < target).sum(1, keepdim=True)  # caps saturated before f reaches the target; D: out of reach
    gain = F.pad(saturated, (1, 0)).gather(1, below)
    slope = torch.cat([total, weight_after], 1).gather(1, below)
    delta = (target - gain) / slope.clamp_min(1e-30)
    return torch.where(below < cap.shape[1], delta, torch.full_like(delta, float("inf")))


@dataclass(frozen=True)
class FAB(Attack):
    """Targeted L-inf FAB (FAB-T), all targets batched, examples leaving once broken within eps."""

    steps: int = 100
    restarts: int = 1
    targets: int = 9  # capped at C - 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    seed: int = 0

    def for_run(self, seed: int, surrogate: tuple[str, Predictor] | None) -> FAB:
        return replace(self, seed=seed)

    def perturb(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int) -> torch.Tensor:
        if predictor.is_random:
            raise ValueError("FAB runs only on deterministic predictors: a stochastic model's class and boundary "
                             "change between draws; attack it with EOT-PGD or Square instead")
        generator = torch.Generator().manual_seed(self.seed)
        x = x.detach().to(torch.float32)
        result = x.clone()
        with torch.no_grad():
            logits = predictor.log_predictive(x, 1)
        targets = min(self.targets, logits.shape[1] - 1)
        if targets < 1 or self.steps < 1:
            return result
        ranked = target_classes(logits, y, targets)  # FAB-T's targets: ranks 2 to T+1 where x is correct
        active = torch.nonzero(logits.argmax(1) == y).squeeze(1)
        for restart in range(self.restarts):
            if active.numel() == 0:
                break
            active = self._run(predictor, x, y, ranked, active, eps, result, generator, random_start=restart > 0)
        return project(result, x, eps)

    def _run(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, ranked: torch.Tensor,
             active: torch.Tensor, eps: float, result: torch.Tensor, generator: torch.Generator,
             random_start: bool) -> torch.Tensor:
        """One run of every target on the examples ``active``; writes each broken example's point within eps
        into ``result`` and returns the examples still unbroken."""
        shape = x.shape[1:]
        targets = ranked.shape[1]
        n = active.numel()
        # rows target-major: row k * n + j is example active[j] with its target of rank k + 2
        origin = x[active].flatten(1).repeat(targets, 1)
        label = y[active].repeat(targets)
        target = ranked[active].T.reshape(-1)
        current = origin
        if random_start:
            noise = (2.0 * torch.rand(origin.shape, generator=generator) - 1.0).to(x.device)
            noise = noise / noise.abs().amax(1, keepdim=True).clamp_min(1e-12)
            current = (origin + 0.5 * eps * noise).clamp(0.0, 1.0)
        for _ in range(self.steps):
            rows = torch.arange(label.numel(), device=x.device)
            point = current.detach().requires_grad_(True)
            with torch.enable_grad():
                log_pred = predictor.log_predictive(point.view(-1, *shape), 1)
                gap = log_pred[rows, target] - log_pred[rows, label]  # g = z_t - z_y: the boundary is g = 0
                (w,) = torch.autograd.grad(gap.sum(), point)
            gap = gap.detach()
            at_origin = gap + (w * (origin - current)).sum(1)  # the linearisation at x_i, evaluated at x_orig
            step = linf_boundary_step(torch.cat([current, origin]), torch.cat([w, w]), torch.cat([gap, at_origin]))
            step_current, step_origin = step.split(label.numel())
            norm_current = step_current.abs().amax(1, keepdim=True).clamp_min(_STEP_FLOOR)
            norm_origin = step_origin.abs().amax(1, keepdim=True).clamp_min(_STEP_FLOOR)
            bias = (norm_current / (norm_current + norm_origin)).clamp(max=self.alpha_max)
            candidate = ((1.0 - bias) * (current + self.eta * step_current)
                         + bias * (origin + self.eta * step_origin)).clamp(0.0, 1.0)
            with torch.no_grad():
                wrong = predictor.log_predictive(candidate.view(-1, *shape), 1).argmax(1) != label
            hit = wrong & ((candidate - origin).abs().amax(1) <= eps)
            current = candidate - ((1.0 - self.beta) * wrong[:, None]) * (candidate - origin)  # back if adversarial
            hit = hit.view(targets, n)
            broken = hit.any(0)
            if int(broken.sum()) == 0:  # a host synchronisation: compact the batch only when examples leave
                continue
            first = hit.int().argmax(0)  # each broken example's first target (in rank order) within eps
            done = torch.nonzero(broken).squeeze(1)
            result[active[done]] = candidate.view(targets, n, -1)[first[done], done].view(-1, *shape)
            keep = torch.nonzero(~broken).squeeze(1)
            active, n = active[keep], keep.numel()
            if n == 0:
                break
            origin, current, label, target = (t.view(targets, -1, *t.shape[1:])[:, keep].flatten(0, 1)
                                              for t in (origin, current, label, target))
        return active
