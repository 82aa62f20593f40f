"""benchmarks/autoattack_crosscheck.py: its acceptance rule, and a run at plumbing sizes on the CPU.

The figures are the script's output (benchmarks/README.md); these check that the rule is computed as stated, that
a run prints and stores both robust accuracies with the harness's interval and the verdict, and that a second
invocation reuses the stored cases and the cached checkpoints instead of redoing them.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def _script():
    return importlib.import_module("autoattack_crosscheck")


@pytest.mark.parametrize(("harness", "low", "high", "reference", "verdict"), [
    (0.70, 0.67, 0.73, 0.70, True),  # equal
    (0.73, 0.70, 0.76, 0.70, True),  # above by exactly the half-width (0.03)
    (0.74, 0.71, 0.77, 0.70, False),  # above by more than the half-width
    (0.50, 0.47, 0.53, 0.90, True),  # far below: a stronger harness is no defect
    (0.00, 0.00, 0.0038, 0.00, True),  # Wilson keeps a width at 0
    (0.01, 0.00, 0.0038, 0.00, False),
    (0.60, 0.50, 0.80, 0.45, True),  # an asymmetric interval: its half-width is (high - low) / 2 = 0.15
    (0.61, 0.50, 0.80, 0.45, False),
])
def test_acceptance_rule(harness, low, high, reference, verdict):
    assert _script().passes(harness, low, high, reference) is verdict


@pytest.mark.slow
def test_crosscheck_runs_at_tiny_sizes_and_resumes(tmp_path, capsys):
    """Baseline (standard version) and mc-dropout (rand version) on 8 mnist-5k test images, shortened budgets."""
    script = _script()
    out = tmp_path / "results.json"
    argv = ["--device", "cpu", "--dataset", "mnist-5k", "--epochs", "1", "--n", "8", "--eps", "0.1", "--steps", "2",
            "--queries", "10", "--eot", "2", "--samples", "2", "--reevals", "2", "--plugins", "baseline", "mc-dropout",
            "--cache", str(tmp_path / "cache"), "--out", str(out)]
    cases = script.main(argv)
    printed = capsys.readouterr().out
    assert "┏" in printed and "SHORTENED budgets" in printed  # a rich table, labelled as no figure
    assert [(c["settings"]["plugin"], c["settings"]["version"]) for c in cases] == [("baseline", "standard"),
                                                                                     ("mc-dropout", "rand")]
    stored = json.loads(out.read_text())["cases"]
    assert len(stored) == 2
    for case in cases:
        h, r = case["harness"], case["pyautoattack"]
        assert 0 <= h["ci_low"] <= h["robust_acc"] <= h["ci_high"] <= 1 and 0 <= r["robust_acc"] <= 1
        assert h["max_linf"] <= 0.1 + 1e-5 and r["max_linf"] <= 0.1 + 1e-5
        assert case["verdict"] == ("PASS" if script.passes(h["robust_acc"], h["ci_low"], h["ci_high"],
                                                           r["robust_acc"]) else "FAIL")
        assert case["verdict"] in printed
        assert f"{h['robust_acc']:.4f}" in printed and f"{r['robust_acc']:.4f}" in printed
        assert stored[script.Settings(**case["settings"]).key]["verdict"] == case["verdict"]
    random = cases[1]
    assert len(random["harness"]["per_evaluation"]) == 2 and "reported_acc" in random["pyautoattack"]
    assert len(cases[0]["harness"]["per_evaluation"]) == 1  # a deterministic plugin is scored once

    again = script.main(argv)  # everything stored and cached: nothing retrained, nothing attacked again
    captured = capsys.readouterr()
    assert captured.out.count("done earlier, reusing") == 4
    assert "reusing checkpoint" in captured.out + captured.err
    assert [c["harness"]["robust_acc"] for c in again] == [c["harness"]["robust_acc"] for c in cases]
