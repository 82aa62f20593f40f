"""Models that mask gradients in known ways raise their flag; the baseline raises none."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import diagnostics
from benchmark.names import DIAGNOSTICS, METRIC_COLUMNS, condition_id, metric_row
from benchmark.results import RunResults
from benchmark.runner import RunRequest, run

MASKING = Path(__file__).parent / "plugins" / "masking_plugins.py"
SETTINGS = dict(dataset="mnist-5k", n_train=1500, n_test=40, epochs=2, device="cpu", profile="quick")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """One output directory for the module, so the baseline surrogate is trained once and reused."""
    return tmp_path_factory.mktemp("diagnostics")


def flags_of(row):
    return set(filter(None, row["flags"].split(";")))


@pytest.mark.slow
def test_baseline_raises_no_flag(out):
    row = run(RunRequest(model="baseline", out=out, **SETTINGS))
    assert row["clean_acc"] > 0.8
    assert flags_of(row) == set()


@pytest.mark.parametrize("plugin, flag", [
    ("masked-softmax-output", "probability-output"),
    ("masked-quantized-input", "zero-grad"),
    ("masked-random-undeclared", "randomness-unreported"),
    ("masked-shared-randomness", "shared-randomness"),
])
@pytest.mark.slow
def test_masked_models_raise_their_flag(out, plugin, flag):
    row = run(RunRequest(model=f"{MASKING}:{plugin}", out=out, **SETTINGS))
    assert flag in flags_of(row), row["flags"]
    if plugin == "masked-quantized-input":
        # zero gradients leave PGD stuck: the large-eps or the black-box check must see through it too
        assert flags_of(row) & {"eps-no-collapse", "blackbox-beats-whitebox"}, row["flags"]


def _metrics(**diag) -> RunResults:
    return RunResults(pd.DataFrame([metric_row(DIAGNOSTICS, None, k, v) for k, v in diag.items()],
                                   columns=METRIC_COLUMNS))


@pytest.mark.parametrize("evidence, flag", [
    ({"large_eps_accuracy": 0.16}, "eps-no-collapse"),
    ({"zero_grad_share": 0.02}, "zero-grad"),
    ({"exact_zero_grad_share": 0.02}, "shattered-gradients"),
    ({"nan_grad_share": 0.001}, "nan-grad"),
    ({"probability_output_share": 1.0}, "probability-output"),
    ({"row_correlation": 0.6}, "shared-randomness"),
])
def test_each_flag_fires_just_past_its_threshold(evidence, flag):
    assert diagnostics.flags(_metrics(**evidence), num_classes=10, predictive="deterministic") == [flag]
    below = {k: v / 2 if k != "nan_grad_share" else 0.0 for k, v in evidence.items()}
    assert diagnostics.flags(_metrics(**below), num_classes=10, predictive="deterministic") == []


@pytest.mark.parametrize("evidence, flag", [
    ("more_steps_p", "more-steps-helps-model"),
    ("fewer_steps_p", "short-attack-not-converged"),
    ("eot_p", "eot-not-converged"),
    ("blackbox_p", "blackbox-beats-whitebox"),
])
def test_each_paired_test_flag_fires_below_its_significance_level(evidence, flag):
    assert diagnostics.flags(_metrics(**{evidence: 0.009}), 10, "deterministic") == [flag]
    assert diagnostics.flags(_metrics(**{evidence: 0.02}), 10, "deterministic") == []
    assert diagnostics.flags(_metrics(), 10, "deterministic") == []  # not measured: not fired


def test_the_sign_test_by_hand():
    wins = np.array([[1, 1, 1, 1, 1, 0]]), np.array([[0, 0, 0, 0, 0, 0]])
    assert diagnostics.sign_test(*wins) == pytest.approx(1 / 32)  # 5 of 5 discordant examples
    three_one = np.array([[1, 1, 1, 0, 1]]), np.array([[0, 0, 0, 1, 1]])
    assert diagnostics.sign_test(*three_one) == pytest.approx(5 / 16)  # P(X >= 3), X ~ Bin(4, 1/2)
    assert diagnostics.sign_test(np.ones((3, 4)), np.ones((3, 4))) == 1.0


def _evidence(main: np.ndarray, longer: np.ndarray) -> RunResults:
    arrays = {"pgd-0.3": main, "pgd-long-0.3": longer, "clean": np.ones_like(main)}
    def accuracy(name: str, eps: float) -> float:
        return float(arrays.get(condition_id(name, eps), np.full(1, np.nan)).mean())

    return RunResults(pd.DataFrame(diagnostics.evidence_rows(0.3, 0.5, {"pgd": True, "pgd-long": True}, arrays.get,
                                                             accuracy)))


def test_re_evaluation_noise_alone_fires_no_flag():
    """n = 500, R = 3: two attacks equally strong, re-evaluated with fresh randomness, differ by more than the
    old fixed 1% threshold; the paired test sees noise."""
    rng = np.random.default_rng(3)
    survive = rng.uniform(0.2, 0.8, 500)  # examples near the decision boundary of a stochastic model
    main, longer = (rng.random((3, 500)) < survive for _ in range(2))
    assert abs(longer.mean() - main.mean()) > 0.01
    assert diagnostics.flags(_evidence(main, longer), 10, "stochastic") == []


def test_more_steps_flags_fire_in_both_directions():
    rng = np.random.default_rng(0)
    main = rng.random((1, 500)) < 0.5
    longer = main.copy()
    longer[0, np.flatnonzero(main[0])[:20]] = False  # 5x the steps breaks 20 more: PGD had not converged
    assert diagnostics.flags(_evidence(main, longer), 10, "deterministic") == ["short-attack-not-converged"]
    assert diagnostics.flags(_evidence(longer, main), 10, "deterministic") == ["more-steps-helps-model"]


def test_randomness_is_only_unreported_for_non_random_kinds():
    metrics = _metrics(output_variation=0.3)
    assert diagnostics.flags(metrics, 10, "deterministic") == ["randomness-unreported"]
    assert diagnostics.flags(metrics, 10, "stochastic") == []


def test_the_strongest_backward_pass_and_the_surrogate_gain_by_hand():
    assert diagnostics.strongest_backward({"pgd": 0.4, "pgd-bpda-a": 0.3, "pgd-bpda-b": 0.35}) == "pgd-bpda-a"
    assert diagnostics.strongest_backward({"pgd": 0.3, "pgd-bpda-a": 0.3}) == "pgd"  # a tie: the plugin's own
    assert diagnostics.strongest_backward({"pgd": np.nan, "pgd-bpda-a": 0.5}) == "pgd-bpda-a"  # pgd failed
    assert diagnostics.strongest_backward({"pgd": np.nan}) is None
    accuracies = {("pgd", 0.1): 0.6, ("pgd-bpda-a", 0.1): 0.5, ("pgd-bpda-b", 0.1): 0.45,
                  ("pgd", 0.3): 0.1, ("pgd-bpda-a", 0.3): 0.1, ("pgd-bpda-b", 0.3): np.nan}
    rows = diagnostics.evidence_rows(0.3, 0.5, {}, lambda _: None, lambda n, e: accuracies.get((n, e), np.nan),
                                     sweep=(0.1, 0.3), bpda=("pgd-bpda-a", "pgd-bpda-b"))
    # the largest gain over the sweep (0.6 - 0.45 at 0.1); eps 0.3, where b failed, is left out
    assert {r["metric"]: r["value"] for r in rows}["surrogate_gain"] == pytest.approx(0.15)
    rows = diagnostics.evidence_rows(0.3, 0.5, {}, lambda _: None, lambda n, e: accuracies.get((n, e), np.nan))
    assert "surrogate_gain" not in {r["metric"] for r in rows}  # no other backward pass
