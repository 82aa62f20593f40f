"""A spiking plugin end to end: attacked through its training surrogate and the other surrogate derivatives (BPDA
variants) at every eps of the sweep, the worst case over all of them, the winner named in the report, and the
diagnostics' look at its true (zero) derivative."""

import numpy as np
import pandas as pd
import pytest

from benchmark.attacks.plan import BPDA_PREFIX
from benchmark.layers.spiking import BPDA_SURROGATES
from benchmark.names import BINARIZATION
from benchmark.runner import RunRequest, run

pytestmark = pytest.mark.slow  # end to end: runs with --slow (CI), not in the quick loop

TINY = dict(dataset="mnist-5k", n_train=400, n_test=40, epochs=1, device="cpu", profile="quick")


def test_a_spiking_plugin_is_attacked_through_every_surrogate_and_the_report_names_the_strongest(tmp_path):
    row = run(RunRequest(model="snn", out=tmp_path, **TINY))
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    variants = [f"{BPDA_PREFIX}-{s.name}" for s in BPDA_SURROGATES]
    sweep = [0.1, 0.2, 0.3]
    for name in variants:
        ran = metrics[(metrics.condition == name) & (metrics.metric == "accuracy")].param.astype(float)
        assert np.allclose(sorted(ran), sweep), name
        assert name in row["attacks"].split("+")

    def load(condition):
        return np.load(run_dir / "conditions" / f"{condition}.npz")["correct"]

    worst = load("clean")  # the robust set at eps takes every variant too
    for condition in (run_dir / "conditions").glob("*-0.3.npz"):
        if not condition.stem.startswith(BINARIZATION):  # the attacks' self-test: no point of this model's own
            worst = worst & load(condition.stem)
    robust = metrics[(metrics.condition == "robust") & (metrics.metric == "accuracy")]
    assert robust[np.isclose(robust.param.astype(float), 0.3)].value.item() == pytest.approx(worst.mean())
    assert {f"{name}-0.3" for name in variants} <= {p.stem for p in (run_dir / "conditions").glob("*-0.3.npz")}

    evidence = metrics[metrics.condition == "diagnostics"].set_index("metric").value
    assert evidence["exact_zero_grad_share"] == 1.0  # spikes are piecewise constant: no true gradient anywhere
    assert evidence["zero_grad_share"] == 0.0  # ... while the surrogate's never vanishes
    assert "surrogate_gain" in evidence
    assert "shattered-gradients" in row["flags"].split(";")
    (report,) = (tmp_path / "leaderboards" / "reports" / "mnist-5k").glob("*/snn/report.md")
    text = report.read_text()
    assert "Backward passes." in text and "Strongest (lowest accuracy" in text
    assert all(f"ε = {eps:g}: " in text for eps in sweep)
