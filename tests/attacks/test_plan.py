"""Attacks are data: a profile's plan decides which conditions run, with which draws and settings."""

from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.attacks import Attack, project
from benchmark.attacks.plan import (
    BPDA_PREFIX,
    DOUBLED,
    MAIN,
    NOT_APPLICABLE,
    TARGETED,
    PlannedAttack,
    attack_plan,
)
from benchmark.errors import BenchmarkError
from benchmark.evaluation import Condition, Evaluator
from benchmark.predictive import Predictor
from benchmark.profiles import PROFILES, get_profile


@dataclass(frozen=True)
class Corner(Attack):
    """A test attack: every pixel to the far side of the ball, no gradient needed."""

    white_box = False
    seed: int = -1

    def for_run(self, seed, surrogate):
        return replace(self, seed=seed)

    def perturb(self, predictor, x, y, eps, draws):
        return project(x + eps, x, eps)


def _evaluator(kind="deterministic", profile=None, surrogate=None, likelihood=None, seed=7):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    if kind == "stochastic":
        net = nn.Sequential(nn.Dropout(0.5), net).train()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    predictor = Predictor(net, kind, likelihood=likelihood)
    return Evaluator(predictor, x, y, profile or get_profile("quick"), 0.3, torch.device("cpu"), seed,
                     surrogate=surrogate)


def test_the_plan_decides_the_attacks_and_their_draws():
    deterministic = _evaluator()
    assert list(deterministic.attacks) == ["fgsm", "pgd", "pgd-long", "pgd-dlr", "apgd-t", "strongest-2x", "square"]
    surrogate = ("a surrogate", Predictor(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "deterministic"))
    stochastic = _evaluator("stochastic", surrogate=surrogate, likelihood=lambda out, y: out.sum(1))
    assert list(stochastic.attacks) == ["fgsm", "pgd", "pgd-long", "pgd-eot2x", "pgd-dlr", "pgd-likelihood", "apgd-t",
                                        "strongest-2x", "square", "transfer"]
    eot = PROFILES["quick"].eot
    assert {name: run.draws for name, run in stochastic.attacks.items()} == {
        "fgsm": eot, "pgd": eot, "pgd-long": eot, "pgd-eot2x": 2 * eot, "pgd-dlr": eot, "pgd-likelihood": 1,
        "apgd-t": eot, "strongest-2x": eot, "square": eot, "transfer": 1}
    assert stochastic.attacks["square"].attack.seed == 7  # bound to the run's seed
    assert stochastic.attack_settings()["transfer"]["surrogate"] == "a surrogate"
    assert "autoattack" in _evaluator(profile=get_profile("standard")).attacks
    two_classes = Predictor(nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), "deterministic", num_classes=2)
    two = Evaluator(two_classes, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), get_profile("quick"), 0.3,
                    torch.device("cpu"), 0)
    assert "pgd-dlr" not in two.attacks and "pgd" in two.attacks  # DLR's margin needs a third class
    three_classes = Predictor(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), "deterministic", num_classes=3)
    three = Evaluator(three_classes, torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2]), get_profile("quick"), 0.3,
                      torch.device("cpu"), 0)
    assert "pgd-dlr" in three.attacks and "apgd-t" not in three.attacks  # the targeted margin needs a fourth
    assert three.not_applicable["apgd-t"] == NOT_APPLICABLE["four-classes"]


def test_every_profile_has_a_margin_loss_attack():
    """Cross-entropy saturates on large logits; each profile attacks a scale-free margin too."""
    for profile in PROFILES.values():
        assert any(getattr(p.attack, "objective", None) == "dlr" and p.needs == "three-classes"
                   for p in profile.attacks), profile.name


def test_every_profile_has_a_targeted_margin_attack():
    """The quick profile, a user's first run, had none: at an intermediate eps its numbers were several times too
    high against AutoAttack's (APGD-T is the stage that breaks what untargeted losses miss)."""
    for profile in PROFILES.values():
        targeted = [p.attack for p in profile.attacks if p.name == TARGETED]
        assert targeted and targeted[0].loss == "dlr-targeted" and targeted[0].targets >= 3, profile.name


def test_the_published_profile_runs_autoattack_at_every_eps_after_the_cheap_attacks():
    published = _evaluator(profile=get_profile("published"))
    attacks = [c.name for c in published.plan() if c.name in published.attacks]
    for eps in published.eps_sweep[:-1]:  # the largest is the collapse check, the main attack alone
        at_eps = [c.name for c in published.plan() if c.param == eps and c.name in published.attacks]
        assert at_eps.index("autoattack") > at_eps.index(MAIN) and at_eps.index("autoattack") > at_eps.index(TARGETED)
    assert attacks.count("autoattack") == len(published.eps_sweep) - 1
    assert PROFILES["published"].n_test >= 1000 and PROFILES["published"].recipe == "quick"
    assert "reference" not in PROFILES  # retired: quick's attacks on 2,000 images, without AutoAttack


def test_the_convergence_check_doubles_the_strongest_attack_after_every_other_at_the_dataset_eps():
    quick, published = _evaluator(), _evaluator(profile=get_profile("published"))
    for evaluator, strongest in ((quick, TARGETED), (published, "autoattack")):
        doubled = evaluator.attacks[DOUBLED].attack
        original = evaluator.attacks[strongest].attack
        assert doubled.doubles == strongest and doubled.attack.steps == 2 * original.steps
        assert getattr(doubled.attack, "queries", 0) == 2 * getattr(original, "queries", 0)
        at = [c for c in evaluator.plan() if c.name == DOUBLED]
        assert [c.param for c in at] == [0.3]  # the dataset's eps alone
        same_eps = [c.name for c in evaluator.plan() if c.param == 0.3 and c.name in evaluator.attacks]
        assert same_eps[-1] == DOUBLED  # after the black-box attacks too
    three_classes = Predictor(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), "deterministic", num_classes=3)
    three = Evaluator(three_classes, torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2]), get_profile("quick"), 0.3,
                      torch.device("cpu"), 0)
    assert three.attacks[DOUBLED].attack.doubles == "pgd-long"  # no APGD-T below four classes
    # it attacks only what every attack at its eps left standing, the black-box ones included
    evaluator = _evaluator()
    finished = {"clean": {"correct": np.ones((1, 4), dtype=bool)}}
    for name in evaluator.attacks:
        if name != DOUBLED:
            finished[f"{name}-0.3"] = {"correct": np.ones((1, 4), dtype=bool)}
    finished["square-0.3"] = {"correct": np.array([[True, False, True, True]])}
    evaluator.load = finished.get
    assert evaluator.survivors(Condition(DOUBLED, 0.3)).tolist() == [True, False, True, True]


def test_an_attack_added_to_a_plan_runs_as_a_condition_of_its_own():
    plan = (*attack_plan(pgd_steps=2, pgd_restarts=1, square_queries=5, autoattack=False)[:2],
            PlannedAttack("corner", Corner(), "a test attack"))
    evaluator = _evaluator(profile=get_profile("quick", attacks=plan))
    assert ([c.id for c in evaluator.plan() if c.name not in ("clean", "diagnostics", "noise", MAIN, "binarization")]
            == ["fgsm-0.1", "corner-0.1", "adaptive-entropy-0.1", "fgsm-0.2", "corner-0.2", "adaptive-entropy-0.2",
                "fgsm-0.3", "corner-0.3", "adaptive-entropy-0.3"])
    assert evaluator.attack_settings()["corner"] == {"seed": 7, "eot_draws": 1, "purpose": "a test attack"}
    finished = {}
    evaluator.load = finished.get
    for condition in (Condition("clean"), Condition("fgsm", 0.3), Condition(MAIN, 0.3)):
        finished[condition.id] = evaluator.run(condition)[1]
    rows, arrays = evaluator.run(Condition("corner", 0.3))
    assert arrays["correct"].shape == (1, 4)
    assert {r["metric"] for r in rows} >= {"accuracy", "attacked"}


def test_the_profile_records_its_plan():
    recorded = PROFILES["standard"].as_dict()["attacks"]
    assert list(recorded) == [p.name for p in PROFILES["standard"].attacks]
    assert recorded["pgd"] == {"attack": "PGD", "steps": 100, "restarts": 2, "step_size": 2.5, "random_start": True,
                               "objective": "ce", "stop_when_broken": True, "draws": "eot",
                               "needs": "always"}


def test_the_collapse_check_lies_above_the_eps_under_test():
    """With --eps 0.6 the large eps was still 0.5: the collapse check tested a smaller ball than the run."""
    for eps, expected in ((0.3, 0.5), (0.1, 0.5), (0.4, 0.5), (0.5, 1.0), (0.6, 1.0), (1.0, 1.0)):
        evaluator = Evaluator(Predictor(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "deterministic"),
                              torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), get_profile("quick"), eps,
                              torch.device("cpu"), 0)
        assert evaluator.large_eps == expected and max(evaluator.eps_sweep) == expected


def test_the_transfer_attack_takes_the_profiles_restarts():
    for profile in PROFILES.values():
        transfer, pgd = ({p.name: p.attack for p in profile.attacks}[name] for name in ("transfer", "pgd"))
        assert (transfer.steps, transfer.restarts) == (pgd.steps, pgd.restarts)


def test_a_plugin_with_other_backward_passes_is_attacked_through_each_at_every_eps():
    """BPDA variants (ModelPlugin.gradient_variants): one white-box condition per variant at every eps of the sweep,
    before the black-box attacks that check them; the true derivative ("exact") is measured, not attacked through."""
    entered = []

    def switch(name):
        @contextmanager
        def backward():
            entered.append(name)
            yield
            entered.append(f"/{name}")
        return backward

    plain = _evaluator()
    evaluator = _evaluator()
    evaluator = Evaluator(evaluator.predictor, evaluator.x, evaluator.y, get_profile("quick"), 0.3,
                          torch.device("cpu"), 7, gradient_variants={n: switch(n) for n in ("wide", "narrow", "exact")})
    assert list(evaluator.attacks) == ["fgsm", "pgd", "pgd-long", "pgd-dlr", f"{BPDA_PREFIX}-wide",
                                       f"{BPDA_PREFIX}-narrow", "apgd-t", "strongest-2x", "square"]
    assert evaluator.bpda_attacks == [f"{BPDA_PREFIX}-wide", f"{BPDA_PREFIX}-narrow"] and plain.bpda_attacks == []
    assert list(plain.attacks) == [n for n in evaluator.attacks if n not in evaluator.bpda_attacks]
    by_eps = {}
    for condition in evaluator.plan():
        if condition.name in evaluator.attacks:
            by_eps.setdefault(round(condition.param, 6), []).append(condition.name)
    sweep = [name for name in evaluator.attacks if name != DOUBLED]
    for eps in (0.1, 0.2, 0.3):  # every eps of the sweep, white-box before square; the convergence check last
        assert by_eps[eps] == sweep + ([DOUBLED] if eps == 0.3 else [])
    assert by_eps[0.5] == [MAIN]
    settings = evaluator.attack_settings()[f"{BPDA_PREFIX}-narrow"]
    assert settings["backward"] == "narrow" and settings["steps"] == PROFILES["quick"].attacks[1].attack.steps

    rows, _ = evaluator.run(Condition(f"{BPDA_PREFIX}-narrow", 0.1))  # no earlier results: every example attacked
    assert {r["metric"]: r["value"] for r in rows}["attacked"] == 4
    assert entered == ["narrow", "/narrow"]  # the attack ran inside the variant's backward, and left it
    entered.clear()
    diagnostics_rows, _ = evaluator.run(Condition("diagnostics"))
    assert entered == ["exact", "/exact"]
    assert "exact_zero_grad_share" in {r["metric"] for r in diagnostics_rows}
    assert "exact_zero_grad_share" not in {r["metric"] for r in plain.run(Condition("diagnostics"))[0]}


def test_a_gradient_variant_name_must_be_fit_for_a_file_name():
    base = _evaluator()
    with pytest.raises(BenchmarkError, match="gradient variant name"):
        Evaluator(base.predictor, base.x, base.y, get_profile("quick"), 0.3, torch.device("cpu"), 0,
                  gradient_variants={"../up": contextmanager(lambda: (yield))})


def test_plan_lines_a_model_does_not_get_are_recorded_with_the_reason():
    """A two-class deterministic model gets no DLR attack (its margin needs a third class), no EOT doubling,
    no likelihood, transfer or BPDA line: each is named with why, not dropped silently or blamed on the plugin."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    evaluator = Evaluator(Predictor(net, "deterministic", num_classes=2), torch.rand(3, 1, 2, 2),
                          torch.tensor([0, 1, 0]), get_profile("quick"), 0.1, torch.device("cpu"), 0)
    assert "pgd-dlr" not in evaluator.attacks and "three classes" in evaluator.not_applicable["pgd-dlr"]
    assert set(evaluator.not_applicable) == {"pgd-dlr", "pgd-eot2x", "pgd-likelihood", BPDA_PREFIX, "transfer",
                                                "apgd-t"}
    assert set(evaluator.not_applicable).isdisjoint(evaluator.attacks)
    three = Evaluator(Predictor(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), "deterministic", num_classes=3),
                      torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2]), get_profile("quick"), 0.1,
                      torch.device("cpu"), 0)
    assert "pgd-dlr" in three.attacks and "pgd-dlr" not in three.not_applicable
