"""Models that mask gradients in known ways raise their flag; the baseline raises none."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import diagnostics
from benchmark.attacks.plan import DOUBLED, MAIN, MARGIN, TARGETED
from benchmark.diagnostics import demoting
from benchmark.names import CLEAN, DIAGNOSTICS, METRIC_COLUMNS, condition_id, metric_row
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
def test_baseline_raises_no_demoting_flag(out):
    """On 300 test images the paired tests can reach p < 0.01 (on 40, seven discordant examples are hard to
    find), and at eps 0.1 and 0.2 of the sweep a briefly trained CNN keeps examples for the attacks to disagree on:
    a flag that fires on a plain CNN would fire here."""
    row = run(RunRequest(model="baseline", out=out, **{**SETTINGS, "n_train": 4000, "epochs": 4, "n_test": 300}))
    assert row["clean_acc"] > 0.8
    assert demoting(flags_of(row)) == [], row["flags"]
    evidence = pd.read_csv(out / "runs" / row["run_id"] / "metrics.csv").query("condition == 'diagnostics'")
    assert {"losses_p", "blackbox_p", "doubled_p"} <= set(evidence.metric)  # each test was run, with that power


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
    ("losses_p", "losses-disagree"),
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


def _loss_flags(first: np.ndarray, second: np.ndarray, pair=(MAIN, MARGIN)) -> list[str]:
    """The flags of two white-box attacks' [R, N] correctness at the dataset eps, and nothing else measured."""
    arrays = {condition_id(CLEAN): np.ones_like(first), condition_id(pair[0], 0.3): first,
              condition_id(pair[1], 0.3): second}
    rows = diagnostics.evidence_rows(0.3, 0.5, dict.fromkeys(pair, True), arrays.get, lambda name, eps: np.nan)
    return diagnostics.flags(RunResults(pd.DataFrame(rows, columns=METRIC_COLUMNS)), 10, "deterministic")


@pytest.mark.parametrize("pair", [(MAIN, MARGIN), (MAIN, TARGETED), (MARGIN, TARGETED)])
def test_losses_disagree_fires_when_one_loss_breaks_what_the_other_misses_either_way(pair):
    """On VDP at MNIST eps 0.2 the best single attack left 0.189 and their union 0.153, and nothing fired."""
    ce = np.random.default_rng(0).random((1, 500)) < 0.5
    margin = ce.copy()
    margin[0, np.flatnonzero(ce[0])[:20]] = False  # the other loss breaks 20 examples more
    assert _loss_flags(ce, margin, pair) == ["losses-disagree"]
    assert _loss_flags(margin, ce, pair) == ["losses-disagree"]


def test_losses_that_break_the_same_examples_or_trade_evenly_fire_nothing():
    ce = np.random.default_rng(0).random((1, 500)) < 0.5
    assert _loss_flags(ce, ce) == []  # a plain deterministic baseline: both losses break the same examples
    traded = ce.copy()
    standing, broken = np.flatnonzero(ce[0]), np.flatnonzero(~ce[0])
    traded[0, standing[:10]], traded[0, broken[:10]] = False, True  # as two random restarts of one attack would
    assert _loss_flags(ce, traded) == []
    assert {r["metric"] for r in diagnostics.evidence_rows(0.3, 0.5, {MAIN: True}, {}.get, lambda n, e: np.nan)} \
        .isdisjoint({"losses_p", "losses_gap"})  # the plan lacks the other loss: nothing measured


def _convergence_flags(before: np.ndarray, doubled: np.ndarray, noisy: bool = False) -> list[str]:
    """The flags from the convergence evidence alone: one attack's [R, N] outcome at the dataset eps, then the
    doubled strongest attack's on the same examples (selection scores drawn apart from the judged outcomes)."""
    rng = np.random.default_rng(1)

    def scores(judged):  # a noisy model's selection evaluations are independent of its judged ones
        return (rng.random(judged.shape) < 0.8) - 0.5 if noisy else judged - 0.5

    clean = rng.random(before.shape) < 0.8 if noisy else np.ones_like(before)
    arrays = {condition_id(CLEAN): clean, condition_id(MAIN, 0.3): before, condition_id(DOUBLED, 0.3): doubled}
    chosen = {name: scores(judged) for name, judged in arrays.items()}
    rows = diagnostics.convergence_rows(0.3, [MAIN], arrays.get, chosen.get)
    return diagnostics.flags(RunResults(pd.DataFrame(rows, columns=METRIC_COLUMNS)), 10, "stochastic")


def test_strongest_attack_not_converged_fires_when_doubling_its_budget_still_breaks_more():
    before = np.random.default_rng(0).random((1, 500)) < 0.5
    doubled = before.copy()
    doubled[0, np.flatnonzero(before[0])[:12]] = False  # twice the steps break 12 examples every attack missed
    assert _convergence_flags(before, doubled) == ["strongest-attack-not-converged"]
    doubled[0, np.flatnonzero(before[0])[2:12]] = True  # two: within what a converged attack's rerun finds
    assert _convergence_flags(before, doubled) == []


def test_a_noisy_model_whose_doubled_attack_finds_nothing_new_raises_no_convergence_flag():
    """Judged on fresh draws, the same points come out differently each time: that is no evidence."""
    rng = np.random.default_rng(2)
    # the attacks changed nothing: every point, clean or attacked, is the clean one judged on other draws
    before, doubled = rng.random((3, 500)) < 0.8, rng.random((3, 500)) < 0.8
    assert _convergence_flags(before, doubled, noisy=True) == []
