"""The binarization test (Zimmermann et al. 2022): a two-class readout of the model's outputs with an adversarial
example planted in the eps-ball; the run's attacks must find it. Attacks on a network without input gradients do
not; attacks on the same network with its gradients do."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import make_run
from scipy.stats import binom
from torch import nn

from benchmark import binarization, diagnostics
from benchmark.attacks.doubled import Doubled
from benchmark.attacks.plan import MAIN, MORE_STEPS, attack_plan
from benchmark.evaluation import Condition, Evaluator
from benchmark.names import BINARIZATION, METRIC_COLUMNS, condition_id
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.report import write_report
from benchmark.results import RunResults, summary_row
from benchmark.runner import _evaluate
from benchmark.store import RunStore

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.3
GRADIENT_ONLY = ("fgsm", MAIN, MORE_STEPS)


class Quantized(nn.Module):
    """The network on inputs rounded to 4 grey levels: its input gradient is zero almost everywhere."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 3) / 3)


class Dropout(nn.Module):
    """The network with dropout on its hidden layer at every call: a stochastic model."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        hidden = self.net[2](self.net[1](self.net[0](x)))
        return self.net[3](nn.functional.dropout(hidden, 0.2, training=True))


def _plan(names, square_queries=200):
    return tuple(p for p in attack_plan(pgd_steps=20, pgd_restarts=1, square_queries=square_queries,
                                        autoattack=False) if p.name in names)


def _evaluator(network, data, kind="deterministic", names=GRADIENT_ONLY, seed=0, n=60, surrogate=None):
    x, y = data[2][:n], data[3][:n]
    profile = get_profile("quick", attacks=_plan(names), noise_sigmas=(0.0,), batch_size=n)
    return Evaluator(Predictor(network, kind, num_classes=10), x, y, profile, EPS, torch.device("cpu"), seed,
                     surrogate=surrogate)


def _flags(rows):
    results = RunResults(pd.DataFrame(rows, columns=METRIC_COLUMNS))
    evidence = binarization.evidence_rows(results, EPS)
    return diagnostics.flags(RunResults(pd.DataFrame(rows + evidence, columns=METRIC_COLUMNS)), 10, "deterministic")


def _values(rows):
    return {r["metric"]: r["value"] for r in rows}


def test_gradient_attacks_fail_on_a_network_without_gradients_and_pass_with_them(trained_mlp, mnist_sample):
    plain = _evaluator(trained_mlp, mnist_sample)
    masked = _evaluator(Quantized(trained_mlp), mnist_sample)
    assert BINARIZATION in {c.name for c in plain.plan()}
    rows, arrays = plain.run(Condition(BINARIZATION, EPS))
    values = _values(rows)
    assert values["tested"] == binarization.SAMPLE and values["conclusive"] >= binarization.SAMPLE - 2
    assert values["pass_rate"] >= 0.9
    assert "binarization-failed" not in _flags(rows)
    assert list(arrays["attacks"]) == list(GRADIENT_ONLY)
    rows, arrays = masked.run(Condition(BINARIZATION, EPS))
    values = _values(rows)
    assert values["conclusive"] >= binarization.SAMPLE / 2
    assert values["pass_rate"] <= 0.3  # random starts alone seldom land on the adversarial side
    assert "binarization-failed" in _flags(rows)
    assert arrays["passed_by"].shape == (len(GRADIENT_ONLY), len(arrays["index"]))


def test_a_black_box_attack_in_the_set_passes_the_masked_networks_tests(trained_mlp, mnist_sample):
    """The test judges the attack set: Square, which needs no gradient, finds what the gradient attacks missed."""
    masked = _evaluator(Quantized(trained_mlp), mnist_sample, names=(*GRADIENT_ONLY, "square"))
    rows, arrays = masked.run(Condition(BINARIZATION, EPS))
    assert _values(rows)["pass_rate"] >= 0.9
    assert list(arrays["attacks"])[-1] == "square" and arrays["passed_by"][-1].sum() >= _values(rows)["passed"] - 2


@pytest.mark.parametrize("kind", ["deterministic", "stochastic"])
def test_the_construction_plants_an_adversarial_example_inside_the_ball(trained_mlp, mnist_sample, kind):
    network = trained_mlp if kind == "deterministic" else Dropout(trained_mlp)
    evaluator = _evaluator(network, mnist_sample, kind)
    samples, reevals = (8, 3) if kind == "stochastic" else (1, 1)
    x = evaluator.x[binarization.tested_points(evaluator)]
    built = binarization.construct(evaluator.predictor, x, EPS, samples, reevals, seed=5)
    assert built.conclusive.sum() >= len(x) / 2
    x, boundary = x[built.conclusive], built.boundary[built.conclusive]
    distance = (boundary - x).abs().flatten(1).amax(1)
    assert (distance <= EPS + 1e-6).all() and (distance >= EPS - 1e-6).all()  # on the ball's surface
    assert boundary.min() >= 0 and boundary.max() <= 1
    binary = built.binary
    assert torch.equal(binary.readouts.owner(boundary), torch.nonzero(built.conclusive).squeeze(1))
    torch.manual_seed(11)  # fresh draws, not the construction's
    with torch.no_grad():
        adversarial = torch.stack([binary.probs(boundary, samples).argmax(1) == 1 for _ in range(5)])
        clean = torch.stack([binary.probs(x, samples).argmax(1) == 0 for _ in range(5)])
    assert adversarial.float().mean() >= 0.9 and clean.float().mean() >= 0.9
    if kind == "deterministic":
        assert adversarial.all() and clean.all()


def test_the_condition_is_seeded_by_the_run_seed_alone(trained_mlp, mnist_sample):
    network = Dropout(trained_mlp)
    first = _evaluator(network, mnist_sample, "stochastic").run(Condition(BINARIZATION, EPS))
    torch.manual_seed(123)  # whatever the global generator holds before, the batches are seeded
    again = _evaluator(network, mnist_sample, "stochastic").run(Condition(BINARIZATION, EPS))
    assert first[0] == again[0]
    for name, array in first[1].items():
        assert np.array_equal(array, again[1][name]), name
    x = mnist_sample[2][:4]
    boundary = [binarization.construct(Predictor(trained_mlp, "deterministic"), x, EPS, 1, 1, seed).boundary
                for seed in (0, 0, 1)]
    assert torch.equal(boundary[0], boundary[1]) and not torch.equal(boundary[0], boundary[2])


def test_a_resumed_run_does_not_run_the_test_again(trained_mlp, mnist_sample, tmp_path, monkeypatch):
    evaluator = _evaluator(trained_mlp, mnist_sample, names=("fgsm", MAIN), n=30)
    store = RunStore(tmp_path / "run")
    _evaluate(evaluator, store, "mlp")
    stored = store.load_rows(condition_id(BINARIZATION, EPS))
    assert set(stored.metric) >= {"tested", "conclusive", "passed", "pass_rate"}

    def refuse(*_):
        raise AssertionError("the stored binarization condition was computed again")

    monkeypatch.setattr(binarization, "run_test", refuse)
    _evaluate(_evaluator(trained_mlp, mnist_sample, names=("fgsm", MAIN), n=30), store, "mlp")


def test_only_the_attacks_that_apply_to_two_classes_attack_the_readout(trained_mlp, mnist_sample):
    surrogate = ("the same network", Predictor(trained_mlp, "deterministic"))
    names = tuple(p.name for p in get_profile("quick").attacks)
    evaluator = _evaluator(trained_mlp, mnist_sample, names=names, surrogate=surrogate)
    applies, reasons = binarization.binary_attacks(evaluator)
    lines = {p.name: p for p in evaluator.profile.attacks}
    assert set(applies) | set(reasons) == set(evaluator.attacks)
    assert {"fgsm", MAIN, "square"} <= set(applies) and "transfer" in reasons
    for name in reasons:
        assert lines[name].needs in ("three-classes", "four-classes", "likelihood", "surrogate")
    checks = [name for name, run in applies.items() if isinstance(run.attack, Doubled)]
    for name in checks:  # the convergence check doubles the strongest attack that applies, and runs last
        assert applies[name].attack.doubles in applies and list(applies)[-1] == name
    white = [applies[name].attack.white_box for name in applies if name not in checks]
    assert white == sorted(white, reverse=True)  # white-box first


def test_the_flag_fires_on_a_shortfall_a_correct_attack_rarely_leaves():
    for passed, conclusive in [(13, 20), (5, 10), (20, 20), (0, 3)]:
        assert binarization.failure_p(passed, conclusive) == pytest.approx(
            binom.cdf(passed, conclusive, binarization.CORRECT_PASS_RATE))
    most = binarization.passes_that_fire(20, diagnostics.ALPHA)
    assert 0 < most < 20 * binarization.CORRECT_PASS_RATE

    def rows(passed, conclusive):
        return [{"condition": BINARIZATION, "param": EPS, "metric": m, "value": float(v)} for m, v in
                {"tested": 20, "conclusive": conclusive, "passed": passed}.items()]

    assert _flags(rows(most, 20)) == ["binarization-failed"]
    assert _flags(rows(most + 1, 20)) == []
    assert _flags(rows(0, 0)) == []  # nothing conclusive: no evidence, no flag


def test_the_report_and_the_leaderboard_row_give_the_pass_rate(tmp_path):
    run_dir = make_run(tmp_path / "run", "mc-dropout", "mnist", ("fgsm", "pgd"))
    metrics = pd.read_csv(run_dir / "metrics.csv")
    values = {"tested": 20, "conclusive": 18, "passed": 9, "pass_rate": 0.5}
    extra = pd.DataFrame([(BINARIZATION, 0.3, m, v) for m, v in values.items()], columns=METRIC_COLUMNS)
    pd.concat([metrics, extra]).to_csv(run_dir / "metrics.csv", index=False)
    report = write_report(run_dir, tmp_path / "out").read_text()
    assert "Binarization test" in report and "0.5000 (9 of 18 conclusive tests passed; 20 tested)" in report
    config = json.loads((run_dir / "config.json").read_text()) | {"num_classes": 10}
    assert summary_row(config, RunResults.read(run_dir), 8, 1.0)["binarization_pass_rate"] == 0.5


@pytest.mark.slow
def test_the_flag_fires_end_to_end_when_every_attack_is_blind(tmp_path, monkeypatch):
    """Attacks that return the clean input pass no test: the evidence travels through metrics.csv to the row."""
    from dataclasses import replace

    from benchmark.attacks.pgd import PGD
    from benchmark.profiles import PROFILES
    from benchmark.runner import RunRequest, run

    blind = PGD(steps=1, step_size=0.0, random_start=False)
    plan = tuple(replace(p, attack=blind) if p.needs == "always" or p.name == "pgd-dlr" else p
                 for p in PROFILES["quick"].attacks if p.needs != "surrogate")
    monkeypatch.setitem(PROFILES, "quick", replace(PROFILES["quick"], attacks=plan, noise_sigmas=(0.0,)))
    row = run(RunRequest(model="baseline", out=tmp_path, dataset="mnist-5k", n_train=1500, n_test=40, epochs=2,
                         device="cpu", profile="quick"))
    assert row["binarization_pass_rate"] == 0.0
    assert "binarization-failed" in row["flags"].split(";")
