"""Every registered plugin runs end to end on a tiny slice: train, every planned attack at every eps of the
sweep, robust rows, report. Parametrized over the registry, so a new plugin is covered without editing a test."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from benchmark.attacks.plan import DOUBLED, attack_plan
from benchmark.profiles import PROFILES
from benchmark.registry import list_models
from benchmark.runner import RunRequest, run

pytestmark = pytest.mark.slow  # end to end: runs with --slow (CI), not in the quick loop

TINY = dict(dataset="mnist-5k", n_train=256, n_test=16, epochs=1, device="cpu", profile="quick")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """One output directory, so the transfer attack's baseline surrogate is trained once."""
    return tmp_path_factory.mktemp("every-plugin")


@pytest.mark.parametrize("name", list_models())
def test_every_registered_plugin_runs_end_to_end(out, name, monkeypatch):
    """The whole pipeline, not attack strength: the quick plan with two-step attacks and a few Square queries."""
    plan = attack_plan(pgd_steps=2, pgd_restarts=1, square_queries=10, autoattack=False)
    monkeypatch.setitem(PROFILES, "quick", replace(PROFILES["quick"], attacks=plan))
    row = run(RunRequest(model=name, out=out, **TINY))
    (run_dir,) = (p for p in (out / "runs").iterdir() if json.loads((p / "config.json").read_text())["model"] == name)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert "failed" not in set(metrics.metric), metrics[metrics.metric == "failed"]
    assert row["flags"].count("condition-failed") == 0

    sweep = sorted(metrics[metrics.condition == "pgd"].param.unique())[:-1]  # the last pgd eps is the large eps
    assert len(sweep) == 3 and np.isclose(sweep[-1], 0.3)
    for attack in row["attacks"].split("+"):  # every attack the plan gave this plugin ran at every eps
        for eps in sweep[-1:] if attack == DOUBLED else sweep:  # the convergence check: the dataset's eps alone
            assert (run_dir / "conditions" / f"{attack}-{eps:g}.npz").exists(), (attack, eps)

    robust = metrics[(metrics.condition == "robust") & (metrics.metric == "accuracy")].sort_values("param")
    assert np.allclose(robust.param[:3], sweep)  # and the large eps
    assert (np.diff(robust.value) <= 1e-12).all()  # the curve cannot rise with eps
    assert 0 <= row["robust_acc"] <= row["clean_acc"] <= 1
    assert (out / "leaderboards" / "reports" / "mnist-5k").glob(f"*/{name}/report.md")
