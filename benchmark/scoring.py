"""Scoring a run: its stored conditions (benchmark.store) turned into ``metrics.csv`` and ``reliability.csv``.

Each condition's own rows are joined by what only the conditions together say: the sigma = 0 point of the noise
sweep (the clean rows again), the robust accuracy at each eps (the per-example worst case over every attack
there), the evidence the gradient-masking flags are decided on, and a ``failed`` row per failed condition.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch

from benchmark import diagnostics
from benchmark.evaluation import Evaluator, accuracy_rows
from benchmark.metrics import reliability_table
from benchmark.names import CLEAN, FAILED, METRIC_COLUMNS, NOISE, ROBUST, SECONDS, condition_id, metric_row
from benchmark.results import RunResults
from benchmark.store import RunStore


def write_metrics(evaluator: Evaluator, store: RunStore) -> None:
    """Write the run's ``metrics.csv`` and, unless the clean condition failed, its ``reliability.csv``."""
    plan = evaluator.plan()
    failed = store.failures()
    frames = [store.load_rows(c.id) for c in plan if c.id not in failed]
    frames.append(pd.DataFrame([metric_row(c.name, c.param, FAILED, 1.0) for c in plan if c.id in failed],
                               columns=METRIC_COLUMNS))
    clean_ok = condition_id(CLEAN) not in failed
    if clean_ok:
        clean = store.load_rows(condition_id(CLEAN))
        sweep_zero = clean[clean.metric != SECONDS].assign(condition=NOISE, param=0.0)
        frames.append(pd.concat([sweep_zero, pd.DataFrame([metric_row(NOISE, 0.0, "auroc", 0.5)])]))

    @functools.cache  # the robust sets and every eps of the black-box check read the same files
    def correct(condition: str) -> np.ndarray | None:
        return None if condition in failed else store.load_arrays(condition)["correct"]

    frames += _robust_rows(evaluator, correct) if clean_ok else []
    results = RunResults(pd.concat(frames, ignore_index=True))

    def accuracy(name: str, eps: float) -> float:
        return results.value(name, "accuracy", eps)

    at_eps = {c.name: evaluator.attacks[c.name].attack.white_box for c in plan
              if c.name in evaluator.attacks and c.param == evaluator.eps}
    sweep = [e for e in evaluator.eps_sweep if e != evaluator.large_eps]
    frames.append(pd.DataFrame(diagnostics.evidence_rows(evaluator.eps, evaluator.large_eps, at_eps, correct, accuracy,
                                                         sweep, evaluator.bpda_attacks),
                               columns=METRIC_COLUMNS))
    store.write_table("metrics.csv", pd.concat(frames, ignore_index=True)[METRIC_COLUMNS])
    if clean_ok:
        probs = store.load_arrays(condition_id(CLEAN))["probs"]
        store.write_table("reliability.csv", reliability_table(torch.as_tensor(probs), torch.as_tensor(evaluator.y)))


def _robust_rows(evaluator: Evaluator, correct) -> list[pd.DataFrame]:
    """The ``robust`` rows at each eps of the attacks, smallest first: the examples that survived clean and every
    attack at that eps and at every smaller one (the curve cannot rise). ``correct(condition_id)`` is a
    condition's [R, N] correctness, None for a failed one."""
    attacks = [c for c in evaluator.plan() if c.name in evaluator.attacks]
    robust, frames = correct(condition_id(CLEAN)), []
    for eps in sorted({c.param for c in attacks}):
        at_this_eps = [c for c in attacks if c.param == eps]
        # a failed attack leaves the worst case at this eps, and so at every larger one, unknown: no robust
        # accuracy rather than an inflated one
        if any(correct(c.id) is None for c in at_this_eps):
            break
        for c in at_this_eps:
            robust = robust & correct(c.id)
        frames.append(pd.DataFrame(accuracy_rows(ROBUST, eps, robust)))
    return frames
