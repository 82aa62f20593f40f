"""Models that mask gradients in known ways raise their flag; the baseline raises none."""

from pathlib import Path

import pandas as pd
import pytest

from benchmark import diagnostics
from benchmark.runner import RunRequest, run

MASKING = Path(__file__).parent / "plugins" / "masking_plugins.py"
SETTINGS = dict(dataset="mnist-5k", n_train=1500, n_test=40, epochs=2, device="cpu", profile="quick")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """One output directory for the module, so the baseline surrogate is trained once and reused."""
    return tmp_path_factory.mktemp("diagnostics")


def flags_of(row):
    return set(filter(None, row["flags"].split(";")))


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
def test_masked_models_raise_their_flag(out, plugin, flag):
    row = run(RunRequest(model=f"{MASKING}:{plugin}", out=out, **SETTINGS))
    assert flag in flags_of(row), row["flags"]
    if plugin == "masked-quantized-input":
        # zero gradients leave PGD stuck: the large-eps or the black-box check must see through it too
        assert flags_of(row) & {"eps-no-collapse", "blackbox-beats-whitebox"}, row["flags"]


def _metrics(**diag):
    return pd.DataFrame([{"condition": "diagnostics", "param": None, "metric": k, "value": v} for k, v in diag.items()])


@pytest.mark.parametrize("evidence, flag", [
    ({"large_eps_accuracy": 0.16}, "eps-no-collapse"),
    ({"more_steps_gain": 0.02}, "more-steps-helps-model"),
    ({"eot_change": 0.011}, "eot-not-converged"),
    ({"blackbox_gain": 0.006}, "blackbox-beats-whitebox"),
    ({"zero_grad_share": 0.02}, "zero-grad"),
    ({"nan_grad_share": 0.001}, "nan-grad"),
    ({"probability_output_share": 1.0}, "probability-output"),
    ({"row_correlation": 0.6}, "shared-randomness"),
])
def test_each_flag_fires_just_past_its_threshold(evidence, flag):
    assert diagnostics.flags(_metrics(**evidence), num_classes=10, predictive="deterministic") == [flag]
    below = {k: v / 2 if k != "nan_grad_share" else 0.0 for k, v in evidence.items()}
    assert diagnostics.flags(_metrics(**below), num_classes=10, predictive="deterministic") == []


def test_randomness_is_only_unreported_for_non_random_kinds():
    metrics = _metrics(output_variation=0.3)
    assert diagnostics.flags(metrics, 10, "deterministic") == ["randomness-unreported"]
    assert diagnostics.flags(metrics, 10, "stochastic") == []
