"""Every reported eps gets the whole attack set, and the robust-accuracy curve cannot rise with eps: a point
broken at eps' lies inside every larger ball (docs/protocol.md, "Conditions")."""

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark import diagnostics
from benchmark.attacks import PGD, Attack
from benchmark.attacks.plan import BPDA_PREFIX, DOUBLED, MAIN, PlannedAttack, attack_plan
from benchmark.evaluation import Evaluator
from benchmark.plugin import EXACT_GRADIENT
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.report import _backward_passes
from benchmark.results import RunResults
from benchmark.runner import _evaluate
from benchmark.scoring import write_metrics
from benchmark.store import RunStore


class Threshold(nn.Module):
    """Class 0 while the first pixel stays below 0.55, class 1 above: a 0.05 push breaks it."""

    def forward(self, x):
        pixel = x.flatten(1)[:, :1]
        return 10 * torch.cat([0.55 - pixel, pixel - 0.55], dim=1)


@dataclass(frozen=True)
class Stalls(Attack):
    """Finds the push at small budgets and gives up at large ones, as an attack whose loss saturates does."""

    def perturb(self, predictor, x, y, eps, draws):
        if eps >= 0.25:
            return x.clone()
        pushed = x.clone()
        pushed.view(len(x), -1)[:, 0] += eps
        return pushed


def _robust_curve(tmp_path, plan) -> pd.Series:
    x, y = torch.full((6, 1, 28, 28), 0.5), torch.zeros(6, dtype=torch.long)
    evaluator = Evaluator(Predictor(Threshold(), "deterministic"), x, y,
                          get_profile("quick", attacks=plan, noise_sigmas=(0.0,)), 0.3, torch.device("cpu"), 0)
    store = RunStore(tmp_path / "run")
    _evaluate(evaluator, store, "threshold")
    write_metrics(evaluator, store)
    return RunResults.read(store.root).robust_curve()


def test_an_attack_that_stalls_at_large_eps_cannot_make_the_curve_rise(tmp_path):
    """Before, robust accuracy read 0 at eps/3 and 2eps/3 and 1 at eps: a curve rising with eps."""
    curve = _robust_curve(tmp_path, (PlannedAttack(MAIN, Stalls(), "stalls at large eps"),))
    assert list(curve.index) == pytest.approx([0.1, 0.2, 0.3, 0.5])
    assert (curve == 0).all()
    assert (np.diff(curve.to_numpy()) <= 0).all()


def test_every_reported_eps_gets_the_whole_attack_set():
    plan = attack_plan(pgd_steps=2, pgd_restarts=1, square_queries=5, autoattack=False)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    evaluator = Evaluator(Predictor(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "deterministic"), x, y,
                          get_profile("quick", attacks=plan), 0.3, torch.device("cpu"), 0)
    attacks = [c for c in evaluator.plan() if c.name in evaluator.attacks]
    by_eps = {}
    for condition in attacks:
        by_eps.setdefault(round(condition.param, 6), []).append(condition.name)
    sweep = [name for name in evaluator.attacks if name != DOUBLED]
    # the convergence check, last and at the dataset's eps alone, doubles the strongest of the rest
    assert by_eps == {0.1: sweep, 0.2: sweep, 0.3: [*sweep, DOUBLED], 0.5: [MAIN]}
    assert sweep[-1] == "square"  # black-box after the white-box attacks it checks


class _Backward(torch.autograd.Function):
    """Identity forward; the backward scales the gradient by ``direction`` (-1: misleading, 0: none)."""

    @staticmethod
    def forward(ctx, x, direction):
        ctx.direction = direction
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.direction, None


class Misleading(nn.Module):
    """:class:`Threshold` behind a backward pointing the wrong way, as a poor surrogate derivative may: PGD through
    it never crosses the threshold; through its "true" variant it does at every eps of the sweep."""

    def __init__(self):
        super().__init__()
        self.direction = -1.0

    def forward(self, x):
        return Threshold()(_Backward.apply(x, self.direction))


def test_an_attack_through_another_backward_pass_enters_the_worst_case_and_is_named_the_strongest(tmp_path):
    model = Misleading()

    @contextmanager
    def backward(direction):
        model.direction = direction
        yield
        model.direction = -1.0

    pgd = PGD(steps=5, random_start=False)
    plan = (PlannedAttack(MAIN, pgd, "own backward"),
            PlannedAttack(BPDA_PREFIX, pgd, "other backward", needs="gradient-variants"))
    x, y = torch.full((6, 1, 28, 28), 0.5), torch.zeros(6, dtype=torch.long)
    evaluator = Evaluator(Predictor(model, "deterministic"), x, y,
                          get_profile("quick", attacks=plan, noise_sigmas=(0.0,)), 0.3, torch.device("cpu"), 0,
                          gradient_variants={"true": lambda: backward(1.0), EXACT_GRADIENT: lambda: backward(0.0)})
    store = RunStore(tmp_path / "run")
    _evaluate(evaluator, store, "misleading")
    write_metrics(evaluator, store)
    results = RunResults.read(store.root)
    assert results.value(MAIN, "accuracy", 0.1) == 1 and results.value(f"{BPDA_PREFIX}-true", "accuracy", 0.1) == 0
    assert [results.value("robust", "accuracy", e) for e in (0.1, 0.2, 0.3)] == [0, 0, 0]  # the variant's success
    assert results.evidence["surrogate_gain"] == 1 and results.evidence["exact_zero_grad_share"] == 1
    assert "shattered-gradients" in diagnostics.flags(results, 2, "deterministic")
    (paragraph,) = _backward_passes({"eps": 0.3, "attack_settings": evaluator.attack_settings()}, results)
    assert f"ε = 0.1: {BPDA_PREFIX}-true (0.0000; own 1.0000)" in paragraph.text
