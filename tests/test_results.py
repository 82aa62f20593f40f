"""The one reader of a run's metrics.csv (benchmark.results.RunResults): values at an eps as written by the
sweep, NaN where a condition failed, its conditions as tables and its curves."""

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.names import METRIC_COLUMNS, metric_row
from benchmark.results import RunResults
from benchmark.store import RunStore

SWEEP = [0.3 / 3, 0.3 * 2 / 3, 0.3]  # 0.09999999999999999, 0.19999999999999998, 0.3


def _interval(condition: str, eps: float, accuracy: float) -> list[dict]:
    return [metric_row(condition, eps, "accuracy", accuracy),
            metric_row(condition, eps, "accuracy_ci_low", accuracy - 0.1),
            metric_row(condition, eps, "accuracy_ci_high", accuracy + 0.1)]


@pytest.fixture
def results(tmp_path) -> RunResults:
    """A run whose pgd failed at the largest eps (so robust stops before it) and whose noise failed at sigma 0.2,
    stored and read back through metrics.csv."""
    rows = [metric_row("clean", None, "accuracy", 0.9), metric_row("clean", None, "ece", 0.05),
            metric_row("clean", None, "seconds", 2.0),
            metric_row("diagnostics", None, "zero_grad_share", 0.0), metric_row("diagnostics", None, "seconds", 1.0),
            metric_row("noise", 0.1, "accuracy", 0.8), metric_row("noise", 0.1, "auroc", 0.7),
            metric_row("noise", 0.5, "accuracy", 0.4), metric_row("noise", 0.5, "auroc", 0.9),
            metric_row("noise", 0.2, "failed", 1), metric_row("pgd", SWEEP[2], "failed", 1),
            metric_row("fgsm", 0.3, "failed", 1)]
    for eps, accuracy in zip(SWEEP[:2], (0.6, 0.3), strict=True):
        rows += _interval("pgd", eps, accuracy) + _interval("robust", eps, accuracy - 0.05)
    rows += [metric_row("certify", SWEEP[0], "certified_acc", 0.2), metric_row("certify", SWEEP[0], "samples", 8),
             metric_row("certify", SWEEP[0], "certified_acc_ci_low", 0.1),
             metric_row("certify", SWEEP[0], "certified_acc_ci_high", 0.3),
             metric_row("noise", 0.0, "accuracy", 0.9), metric_row("noise", 0.0, "auroc", 0.5),
             metric_row("diagnostics", None, "large_eps_accuracy", 0.02)]
    RunStore(tmp_path).write_table("metrics.csv", pd.DataFrame(rows, columns=METRIC_COLUMNS))
    return RunResults.read(tmp_path)


def test_a_value_at_an_eps_as_the_dataset_writes_it(results):
    assert results.value("pgd", "accuracy", 0.1) == 0.6  # stored at the sweep's 0.09999999999999999
    assert results.value("robust", "accuracy_ci_high", 0.2) == pytest.approx(0.35)
    assert results.value("clean", "accuracy") == 0.9
    assert results.at("robust", 0.1)["accuracy"] == pytest.approx(0.55)
    assert results.at("robust", 0.3) is None and results.at("pgd", 0.15) is None


def test_a_failed_or_absent_condition_reads_as_nan(results):
    assert math.isnan(results.value("pgd", "accuracy", 0.3))  # failed there
    assert math.isnan(results.value("fgsm", "accuracy", 0.3))  # failed everywhere
    assert math.isnan(results.value("certify", "certified_acc", 0.3))  # not run at that eps
    assert math.isnan(results.value("autoattack", "accuracy", 0.1))  # not in the plan
    assert results.failed == [("noise", 0.2), ("pgd", 0.3), ("fgsm", 0.3)]
    assert "fgsm" not in results.conditions
    assert results.conditions == ["clean", "diagnostics", "noise", "pgd", "robust", "certify"]


def test_a_condition_as_a_table_by_its_parameter(results):
    pgd = results.table("pgd")
    assert list(pgd.index) == pytest.approx(SWEEP[:2]) and "failed" not in pgd
    assert list(pgd["accuracy"]) == [0.6, 0.3]
    with_failed = results.table("pgd", failed=True)
    assert list(with_failed.index) == pytest.approx(SWEEP) and with_failed.loc[0.3].isna().all()
    assert results.table("autoattack").empty


def test_the_curves(results):
    assert dict(results.robust_curve()) == pytest.approx({SWEEP[0]: 0.55, SWEEP[1]: 0.25})
    noise = results.noise_curve()
    assert list(noise.index) == [0.0, 0.1, 0.5] and list(noise["auroc"]) == [0.5, 0.7, 0.9]
    assert list(results.noise_curve(failed=True).index) == [0.0, 0.1, 0.2, 0.5]
    assert results.noise_mean("accuracy") == pytest.approx(0.6)  # over sigma > 0, the clean point left out
    certified = results.certified_curve()
    assert certified.loc[SWEEP[0], ["accuracy", "accuracy_ci_low", "accuracy_ci_high", "samples"]].tolist() == \
        pytest.approx([0.2, 0.1, 0.3, 8])
    curves = results.eps_curves()
    assert list(curves) == ["certified", "pgd", "robust"]  # every curve with an interval, by name
    assert np.isnan(curves["pgd"].loc[0.3, "accuracy"])  # the failed eps, a point of NaN


def test_the_evidence_and_the_time(results):
    assert results.evidence["large_eps_accuracy"] == 0.02 and results.evidence["zero_grad_share"] == 0.0
    assert results.seconds == 3.0


def test_a_run_without_noise_or_attacks_reads_as_not_run():
    results = RunResults(pd.DataFrame([metric_row("clean", None, "failed", 1)], columns=METRIC_COLUMNS))
    assert math.isnan(results.value("clean", "accuracy")) and math.isnan(results.noise_mean("accuracy"))
    assert results.robust_curve().empty and results.eps_curves() == {} and results.conditions == []
    assert results.failed == [("clean", None)]
