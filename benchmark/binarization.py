"""The binarization test: an attack self-test on every row.

Zimmermann, Brendel, Tramèr & Carlini, "Increasing Confidence in Adversarial Robustness Evaluations", NeurIPS
2022. An attack that fails to break a model may be weak rather than the model robust. The test hands the run's
attacks a problem whose answer is known: around a clean point x it builds a binary classifier on the model's
own outputs for which a point inside the eps-ball is, by construction, classified as the other class. A correct
attack must find such a point; one that does not has shown that it misses adversarial examples that exist.

Construction, per sampled point x (the paper retrains a linear readout on the network's features; plugins here
expose only their outputs, so the features are the deployed rule's output, the log predictive distribution: for a
stochastic model that of S fresh draws, so that the binary model is random exactly when the model is, and decides
on what the model deploys):

- ``INNER`` points drawn uniformly from the L-inf eps-ball around x (clipped to [0, 1]), and x itself, are the
  clean class (0); one boundary point, a corner of the eps-ball (every pixel moved by +-eps, then
  clipped to [0, 1]), is the other class (1);
- a logistic-regression readout s(f) = w . (f - mu) / sd + b (L2 penalty ``RIDGE`` on w, the two classes
  weighted equally, fitted by Newton's method) separates them; the binary model's logits are (0, s). A stochastic
  model's x and boundary corner enter the fit with ``EVALUATIONS`` outputs each, so that the readout sees their
  spread over draws;
- the test on x is conclusive when the deployed binary rule classifies x as clean and the boundary point as
  adversarial in each of R re-evaluations (fresh draws each): an adversarial example inside the ball exists.

Then the run's attacks at the dataset eps, white-box first, attack the binary rule with label 0, each on the
conclusive points no earlier attack passed (the cascade of the main evaluation). The test passes on x when some
attack returns a point the binary rule classifies as adversarial in each of R re-evaluations: the standard the
construction met. Attacks that need three or more classes, a likelihood of the plugin's or a surrogate's own
task do not apply to a two-class readout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.attacks.doubled import Doubled
from benchmark.data import to_float
from benchmark.errors import PluginOutputError
from benchmark.evaluation import AttackRun, Condition, Evaluator, stream_seed
from benchmark.names import BINARIZATION, CLEAN, DIAGNOSTICS, condition_id, metric_row
from benchmark.predictive import Predictor

if TYPE_CHECKING:
    from benchmark.results import RunResults

#: correctly classified test points tested per row, the first ones in test order whose eps-balls are disjoint
SAMPLE = 20
#: clean-class points per tested point, besides x itself
INNER = 127
#: the clean-class points fill the ball of this radius (a fraction of eps) around x: the whole ball, where a random
#: start lands, so that only an attack that moves towards the boundary corner meets the other class (at half the
#: radius a PGD without gradients passed 6 of 20 tests on random starts alone; at the whole ball none)
INNER_RADIUS = 1.0
#: the readout's L2 penalty on its weights (features standardised): keeps the separable fit finite
RIDGE = 1e-2
#: deployed outputs (of S fresh draws each) of a stochastic model at x and at the boundary corner in the fit
EVALUATIONS = 16
NEWTON_STEPS = 30
#: the share of tests a correct attack passes at least (``binarization-failed`` fires on a significant shortfall)
CORRECT_PASS_RATE = 0.9
#: what the readout offers a plan line's ``needs`` (``benchmark.attacks.plan``); any other need is not met
_OFFERS = {"always", "gradient-variants"}
_WHY_NOT = {"likelihood": "the readout has no likelihood of the plugin's",
            "surrogate": "it crafts on the surrogate's own task, not on the readout"}


@dataclass(frozen=True)
class Readouts:
    """One linear readout per tested point: s(f) = weight . (f - mean) / scale + bias, on ``[n, C]`` features.

    ``centres`` are the tested points: an input is scored by the readout of the centre nearest to it in L-inf,
    which, the balls being disjoint, is the point whose ball it lies in (an attack never leaves that ball).
    """

    centres: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def owner(self, x: torch.Tensor) -> torch.Tensor:
        """The index of the tested point whose ball each row of ``x`` lies in."""
        distance = (x.detach().unsqueeze(1) - self.centres.unsqueeze(0)).abs().flatten(2).amax(2)
        return distance.argmin(1)

    def score(self, features: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """The readout's s for features ``[..., B, C]`` of the rows owned by ``owner`` ``[B]``."""
        z = (features - self.mean[owner]) / self.scale[owner]
        return (z * self.weight[owner]).sum(-1) + self.bias[owner]


class BinaryPredictor(Predictor):
    """The binary model of the test: logits (0, s) of the readout on the model's deployed output.

    Class 0 is x's class, class 1 the adversarial one. ``draws`` are the model's: the readout reads the log of the
    model's mean softmax over them (its deployed rule with S draws, its attack loss with K), so the binary model
    is random exactly when the model is and is attacked with the model's EOT; it decides by the argmax.
    """

    def __init__(self, model: Predictor, readouts: Readouts):
        super().__init__(model.network, "stochastic" if model.is_random else "deterministic", model.max_batch,
                         num_classes=2)
        self.model, self.readouts = model, readouts

    def draw_log_probs(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        s = self.readouts.score(self.model.log_predictive(x, draws), self.readouts.owner(x))
        return F.log_softmax(torch.stack([torch.zeros_like(s), s], dim=-1), dim=-1)[None]


def sample_points(x: torch.Tensor, eps: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``INNER`` clean-class points per input ``[n, INNER, ...]`` and one boundary corner per input, all in [0, 1]."""
    shape = (x.shape[0], INNER, *x.shape[1:])
    inner = x.unsqueeze(1) + INNER_RADIUS * eps * (2 * torch.rand(shape, generator=generator) - 1)
    signs = 2 * torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) - 1
    return inner.clamp(0, 1), (x + eps * signs).clamp(0, 1)


def fit_readouts(clean: torch.Tensor, adversarial: torch.Tensor, centres: torch.Tensor) -> Readouts:
    """L2-penalised logistic regression per tested point, the two classes weighted equally: ``clean`` ``[n, M, C]``
    and ``adversarial`` ``[n, K, C]`` features. Newton's method with backtracking, in float64."""
    features = torch.cat([clean, adversarial], dim=1).double()
    n, rows, classes = features.shape
    target = torch.cat([torch.zeros(n, clean.shape[1]), torch.ones(n, adversarial.shape[1])], 1).double()
    weight = torch.where(target > 0, 1.0 / adversarial.shape[1], 1.0 / clean.shape[1]).double()
    mean, scale = features.mean(1), features.std(1).clamp_min(1e-6)
    z = torch.cat([(features - mean[:, None]) / scale[:, None], torch.ones(n, rows, 1, dtype=torch.float64)], -1)
    penalty = torch.full((classes + 1,), RIDGE, dtype=torch.float64)
    penalty[-1] = 1e-8  # the bias is not shrunk; the speck keeps the Hessian invertible

    def loss(s, theta):  # s = z . theta, [..., n, rows]
        return (weight * (F.softplus(s) - target * s)).sum(-1) + 0.5 * (penalty * theta ** 2).sum(-1)

    theta = torch.zeros(n, classes + 1, dtype=torch.float64)
    steps = 0.5 ** torch.arange(20, dtype=torch.float64)[:, None]
    for _ in range(NEWTON_STEPS):
        s = (z * theta[:, None]).sum(-1)
        p = torch.sigmoid(s)
        grad = (weight * (p - target))[..., None].mul(z).sum(1) + penalty * theta
        if grad.abs().max() < 1e-10:
            break
        hessian = torch.einsum("nm,nmi,nmj->nij", weight * p * (1 - p), z, z) + torch.diag(penalty)
        direction = torch.linalg.solve(hessian, grad)
        # backtracking: the largest halving of the Newton step that decreases the loss enough (Armijo), else none
        tried = loss(s - steps[..., None] * (z * direction[:, None]).sum(-1), theta - steps[..., None] * direction)
        good = tried <= loss(s, theta) - 1e-4 * steps * (direction * grad).sum(1)
        step = torch.where(good.any(0), steps[good.float().argmax(0), 0], 0.0)
        theta = theta - step[:, None] * direction
    dtype = clean.dtype
    return Readouts(centres, mean.to(dtype), scale.to(dtype), theta[:, :-1].to(dtype), theta[:, -1].to(dtype))


@dataclass(frozen=True)
class Construction:
    """The binary models of a batch of tested points, their boundary corners, and which tests are conclusive."""

    binary: BinaryPredictor
    boundary: torch.Tensor
    conclusive: torch.Tensor


def construct(model: Predictor, x: torch.Tensor, eps: float, samples: int, reevals: int, seed: int,
              chunk: int = 256) -> Construction:
    """Build and check the binary models of the points ``x`` (disjoint eps-balls) from a batch's ``seed``: the
    sampled points from a stream of their own, the model's draws from the global generator, reseeded for the checks."""
    generator = torch.Generator().manual_seed(stream_seed(seed, "points"))
    inner, boundary = sample_points(x.cpu(), eps, generator)
    inner, boundary = inner.to(x.device).flatten(0, 1), boundary.to(x.device)
    evaluations = EVALUATIONS if model.is_random else 1
    with torch.no_grad():
        # one deployed output per clean-class point (each is a point of its own), several at x and at the corner
        around = torch.cat([model.log_predictive(inner[i:i + chunk], samples)
                            for i in range(0, len(inner), chunk)]).view(x.shape[0], INNER, -1)
        at_x, at_boundary = (torch.stack([model.log_predictive(p, samples) for _ in range(evaluations)], 1)
                             for p in (x, boundary))
    readouts = fit_readouts(torch.cat([at_x, around], 1), at_boundary, x)
    binary = BinaryPredictor(model, readouts)
    torch.manual_seed(stream_seed(seed, "construction-check"))
    with torch.no_grad():
        conclusive = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(reevals):
            conclusive &= (binary.probs(x, samples).argmax(1) == 0) & (binary.probs(boundary, samples).argmax(1) == 1)
    return Construction(binary, boundary, conclusive)


def attack_binary(construction: Construction, x: torch.Tensor, eps: float, attacks: dict[str, AttackRun],
                  samples: int, reevals: int, seed: int) -> torch.Tensor:
    """``[A, n]``: which attack (in order) first passed each conclusive test. Every attack runs on the conclusive
    points no earlier one passed; its point passes when the binary rule calls it adversarial in all R
    re-evaluations, each with fresh draws from a stream of its own."""
    binary = construction.binary
    label = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    passed_by = torch.zeros(len(attacks), x.shape[0], dtype=torch.bool)
    standing = construction.conclusive.cpu().clone()
    for a, (name, run) in enumerate(attacks.items()):
        index = torch.nonzero(standing).squeeze(1)
        if len(index) == 0:
            break
        moved = run.attack(binary, x[index.to(x.device)], label[: len(index)], eps, run.draws)
        torch.manual_seed(stream_seed(seed, f"re-evaluation/{name}"))
        with torch.no_grad():
            adversarial = torch.stack([binary.probs(moved, samples).argmax(1) == 1 for _ in range(reevals)]).all(0)
        passed_by[a, index[adversarial.cpu()]] = True
        standing[index[adversarial.cpu()]] = False
    return passed_by


def binary_attacks(evaluator: Evaluator) -> tuple[dict[str, AttackRun], dict[str, str]]:
    """The run's attacks that apply to the two-class readout, in the run's order at an eps (white-box, black-box,
    the convergence check, which doubles the strongest of them that applies), and those that do not, with why."""
    applies, reasons = {}, {}
    for line in evaluator.profile.attacks:
        if line.needs == "gradient-variants":
            names = [n for n in evaluator.bpda_attacks if n.startswith(f"{line.name}-")]
        else:
            names = [line.name] if line.name in evaluator.attacks else []
        ok = line.needs in _OFFERS or (line.needs == "randomness" and evaluator.predictor.is_random)
        for name in names:
            run = evaluator.attacks[name]
            if ok and isinstance(run.attack, Doubled):  # the convergence check doubles the strongest that applies
                doubled = run.attack.bound_to({n: r.attack for n, r in applies.items()})
                if doubled is None:
                    reasons[name] = "none of the attacks it doubles applies"
                else:
                    applies[name] = replace(run, attack=doubled, draws=applies[doubled.doubles].draws)
            elif ok:
                applies[name] = run
            else:
                reasons[name] = _WHY_NOT.get(line.needs, "the readout has two classes")
    # as the run orders them at an eps: white-box, black-box, then the convergence check
    order = sorted(applies, key=lambda n: (isinstance(applies[n].attack, Doubled), not applies[n].attack.white_box))
    return {name: applies[name] for name in order}, reasons


def tested_points(evaluator: Evaluator) -> np.ndarray:
    """The test indices of the points tested: the first ``SAMPLE`` the clean condition classified correctly (in
    every re-evaluation) whose eps-balls are disjoint from those of the points chosen before them."""
    if evaluator.load is None:  # run on its own: the clean condition as a run computes it, seeded alike
        clean = evaluator.run(Condition(CLEAN))[1]
    else:
        clean = evaluator.load(condition_id(CLEAN))
    if clean is None:
        raise PluginOutputError("the clean condition failed, so no correctly classified point is known to test")
    chosen: list[int] = []
    for i in np.flatnonzero(np.asarray(clean["correct"]).all(0)):
        point = to_float(evaluator.x[i:i + 1])
        if all((point - to_float(evaluator.x[j:j + 1])).abs().max() > 2 * evaluator.eps for j in chosen):
            chosen.append(int(i))
        if len(chosen) == SAMPLE:
            break
    return np.array(chosen, dtype=np.int64)


def run_test(evaluator: Evaluator, condition: Condition) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The ``binarization`` condition: the test on the tested points, batch by batch, each batch seeded as every
    condition's is; rows and per-point arrays as the run stores them."""
    eps = float(condition.param)
    attacks = binary_attacks(evaluator)[0]
    index = tested_points(evaluator)
    samples, reevals = evaluator.samples, evaluator.reevals

    def batch(seed, xb, _):
        built = construct(evaluator.predictor, xb, eps, samples, reevals, seed)
        passed_by = attack_binary(built, xb, eps, attacks, samples, reevals, seed)
        return built.conclusive.cpu(), passed_by

    parts = evaluator._map(condition, batch, index) if len(index) else []
    conclusive = torch.cat([c for c, _ in parts]).numpy() if parts else np.zeros(0, dtype=bool)
    passed_by = (torch.cat([p for _, p in parts], dim=1).numpy() if parts
                 else np.zeros((len(attacks), 0), dtype=bool))
    return result_rows(eps, len(index), conclusive, passed_by), {
        "index": index, "conclusive": conclusive, "passed_by": passed_by, "attacks": np.array(list(attacks))}


def result_rows(eps: float, tested: int, conclusive: np.ndarray, passed_by: np.ndarray) -> list[dict]:
    """The condition's rows: points tested, conclusive tests, tests passed and the pass rate (NaN with none
    conclusive); which attack passed which test is in the arrays."""
    passed, count = int(passed_by.any(0).sum()), int(conclusive.sum())
    return [metric_row(BINARIZATION, eps, "tested", tested), metric_row(BINARIZATION, eps, "conclusive", count),
            metric_row(BINARIZATION, eps, "passed", passed),
            metric_row(BINARIZATION, eps, "pass_rate", passed / count if count else float("nan"))]


def failure_p(passed: int, conclusive: int) -> float:
    """The probability that an attack passing each test with probability ``CORRECT_PASS_RATE`` passes at most
    ``passed`` of ``conclusive`` tests (the one-sided binomial test the flag fires on)."""
    q = CORRECT_PASS_RATE
    return sum(math.comb(conclusive, k) * q ** k * (1 - q) ** (conclusive - k) for k in range(passed + 1))


def passes_that_fire(conclusive: int, alpha: float) -> int:
    """The most passed tests of ``conclusive`` at which the flag fires at level ``alpha`` (-1: none)."""
    return max((k for k in range(conclusive + 1) if failure_p(k, conclusive) < alpha), default=-1)


def evidence_rows(results: RunResults, eps: float) -> list[dict]:
    """The flag's evidence (condition ``diagnostics``): ``binarization_p``; none where no test was conclusive."""
    conclusive, passed = (results.value(BINARIZATION, m, eps) for m in ("conclusive", "passed"))
    if not conclusive > 0:  # NaN: the condition did not run or failed
        return []
    return [metric_row(DIAGNOSTICS, None, "binarization_p", failure_p(int(passed), int(conclusive)))]
