"""One adversarial point per example (docs/protocol.md, "Scoring"): per example the strongest candidate, chosen on
selection draws, is judged on fresh ones, so a random model's own noise is not scored as a vulnerability and the
black-box check has a null it can keep; a non-random model's robust accuracy is the conjunction over the attacks."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from benchmark import diagnostics
from benchmark.attacks import Attack
from benchmark.attacks.plan import MAIN, MORE_STEPS, PlannedAttack, attack_plan
from benchmark.errors import BenchmarkError
from benchmark.evaluation import Evaluator, selection_of
from benchmark.names import ALL_ATTACKS, CLEAN, ROBUST
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.results import RunResults
from benchmark.runner import _evaluate
from benchmark.scoring import write_metrics
from benchmark.store import RunStore

pytestmark = pytest.mark.usefixtures("seeded")


class Noisy(nn.Module):
    """Class 0 while the first pixel stays below 0.55, with fresh logit noise in every row of every call: near the
    split the deployed rule (the mean softmax of S draws) is right only with some probability."""

    def forward(self, x):
        pixel = x.flatten(1)[:, :1]
        return 10 * torch.cat([0.55 - pixel, pixel - 0.55], dim=1) + 2.0 * torch.randn(len(x), 2)


@dataclass(frozen=True)
class Shift(Attack):
    """Moves the first pixel up by ``share`` of eps, towards the split: the same point whatever it draws; share 0
    is an attack that finds nothing."""

    share: float = 0.0

    def perturb(self, predictor, x, y, eps, draws):
        moved = x.clone()
        moved.view(len(x), -1)[:, 0] += self.share * eps
        return moved.clamp(0, 1)


@dataclass(frozen=True)
class BlackShift(Shift):
    """:class:`Shift` as a black-box attack, checked against the white-box ones."""

    white_box: ClassVar[bool] = False


def _noisy_run(tmp_path, plan, n=400) -> RunResults:
    x = torch.zeros(n, 1, 4, 4)
    x.view(n, -1)[:, 0] = torch.linspace(0.35, 0.55, n)  # each right with a probability between 1/2 and 1
    profile = get_profile("quick", attacks=plan, noise_sigmas=(0.0,), batch_size=n)
    evaluator = Evaluator(Predictor(Noisy(), "stochastic"), x, torch.zeros(n, dtype=torch.long), profile, 0.3,
                          torch.device("cpu"), 0)
    store = RunStore(tmp_path / "run")
    _evaluate(evaluator, store, "noisy")
    write_metrics(evaluator, store)
    return RunResults.read(store.root)


def test_attacks_that_change_nothing_leave_a_noisy_model_its_clean_accuracy(tmp_path):
    """Before, an example counted only where it survived every attack in the same re-evaluation: with ten
    candidates an example right with probability 0.8 scored about 0.8^10."""
    nothing = (PlannedAttack("fgsm", Shift(), "null"), PlannedAttack(MAIN, Shift(), "null"),
               PlannedAttack(MORE_STEPS, Shift(), "null"), PlannedAttack("square", BlackShift(), "null"))
    results = _noisy_run(tmp_path, nothing)
    clean = results.value(CLEAN, "accuracy")
    assert 0.6 < clean < 0.95  # noisy enough that the old rule falls far
    for eps in (0.1, 0.2, 0.3):
        robust = results.at(ROBUST, eps)
        assert robust["accuracy_ci_low"] <= clean <= robust["accuracy_ci_high"], (eps, robust)
        assert robust[ALL_ATTACKS] < robust["accuracy_ci_low"], (eps, robust)  # the conservative figure


def test_a_black_box_attack_that_returns_the_white_box_point_does_not_beat_it(tmp_path):
    """Square returning PGD's point, judged on new draws: before, the conjunction could only fall, so re-evaluation
    noise alone made blackbox-beats-whitebox fire on every random model."""
    same = (PlannedAttack(MAIN, Shift(0.5), "moves halfway"), PlannedAttack("square", BlackShift(0.5), "the same"))
    results = _noisy_run(tmp_path, same)
    assert results.evidence["blackbox_p"] > diagnostics.ALPHA
    assert "blackbox-beats-whitebox" not in diagnostics.flags(results, 2, "stochastic")


def test_a_black_box_attack_that_breaks_what_the_white_box_one_missed_fires(tmp_path):
    """Masked gradients: the white-box attack finds nothing, the black-box one crosses the split."""
    masked = (PlannedAttack(MAIN, Shift(0.0), "finds nothing"), PlannedAttack("square", BlackShift(1.0), "crosses"))
    results = _noisy_run(tmp_path, masked)
    assert "blackbox-beats-whitebox" in diagnostics.flags(results, 2, "stochastic")


def test_a_non_random_models_robust_accuracy_is_the_conjunction_over_the_attacks(tmp_path):
    """R = 1 and one decision per point: the strongest candidate is a misclassified one wherever there is one."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = torch.rand(40, 1, 28, 28)
    with torch.no_grad():
        y = net(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # some examples wrong already on the clean point
    plan = attack_plan(pgd_steps=3, pgd_restarts=1, square_queries=20, autoattack=False)
    profile = get_profile("quick", attacks=plan, noise_sigmas=(0.0,))
    evaluator = Evaluator(Predictor(net, "deterministic"), x, y, profile, 0.02, torch.device("cpu"), 0)
    store = RunStore(tmp_path / "run")
    _evaluate(evaluator, store, "linear")
    write_metrics(evaluator, store)
    results = RunResults.read(store.root)
    conjunction = store.load_arrays("clean")["correct"]
    attacks = [c for c in evaluator.plan() if c.name in evaluator.attacks]
    for eps in sorted({c.param for c in attacks}):
        for condition in (c for c in attacks if c.param == eps):
            conjunction = conjunction & store.load_arrays(condition.id)["correct"]
        assert results.value(ROBUST, "accuracy", eps) == conjunction.mean()
        assert results.value(ROBUST, ALL_ATTACKS, eps) == conjunction.mean()
    assert 0 < results.value(ROBUST, "accuracy", 0.02) < results.value(CLEAN, "accuracy")  # something to choose


def test_a_condition_stored_before_the_selection_evaluations():
    """A non-random model's judged evaluation chooses as its selection one would; a random model's run must be
    recomputed, and says so."""
    correct = np.array([[True, False, True]])
    assert selection_of({"correct": correct}, False, "pgd-0.3").tolist() == [[0.0, -1.0, 0.0]]
    with pytest.raises(BenchmarkError, match="pgd-0.3 was stored before"):
        selection_of({"correct": correct}, True, "pgd-0.3")
