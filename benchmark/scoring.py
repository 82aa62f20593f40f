"""Scoring a run: its stored conditions (benchmark.store) turned into ``metrics.csv`` and ``reliability.csv``.

Each condition's own rows are joined by what only the conditions together say: the sigma = 0 point of the noise
sweep (the clean rows again), the robust accuracy at each eps (the per-example worst case over every attack
there, one adversarial point per example), the evidence the gradient-masking flags are decided on, and a
``failed`` row per failed condition.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch

from benchmark import binarization, diagnostics
from benchmark.attacks.plan import DOUBLED
from benchmark.evaluation import Evaluator, accuracy_rows, selection_of
from benchmark.metrics import reliability_table, strongest_point
from benchmark.names import ALL_ATTACKS, CLEAN, FAILED, METRIC_COLUMNS, NOISE, ROBUST, SECONDS, condition_id, metric_row
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
    def arrays(condition: str) -> dict[str, np.ndarray] | None:
        return None if condition in failed else store.load_arrays(condition)

    def correct(condition: str) -> np.ndarray | None:
        return None if arrays(condition) is None else arrays(condition)["correct"]

    def selection(condition: str) -> np.ndarray | None:
        found = arrays(condition)
        return None if found is None else selection_of(found, evaluator.predictor.is_random, condition)

    frames += _robust_rows(evaluator, correct, selection) if clean_ok else []
    results = RunResults(pd.concat(frames, ignore_index=True))

    def accuracy(name: str, eps: float) -> float:
        return results.value(name, "accuracy", eps)

    # the attacks of the whole sweep at the dataset's eps; the convergence check, run there alone, is judged apart
    at_eps = {c.name: evaluator.attacks[c.name].attack.white_box for c in plan
              if c.name in evaluator.attacks and c.name != DOUBLED and c.param == evaluator.eps}
    sweep = [e for e in evaluator.eps_sweep if e != evaluator.large_eps]
    frames.append(pd.DataFrame(diagnostics.evidence_rows(evaluator.eps, evaluator.large_eps, at_eps, correct, accuracy,
                                                         sweep, evaluator.bpda_attacks, selection),
                               columns=METRIC_COLUMNS))
    frames.append(pd.DataFrame(binarization.evidence_rows(results, evaluator.eps), columns=METRIC_COLUMNS))
    if DOUBLED in evaluator.attacks and clean_ok:
        frames.append(pd.DataFrame(diagnostics.convergence_rows(evaluator.eps, list(at_eps), correct, selection),
                                   columns=METRIC_COLUMNS))
    store.write_table("metrics.csv", pd.concat(frames, ignore_index=True)[METRIC_COLUMNS])
    if clean_ok:
        probs = store.load_arrays(condition_id(CLEAN))["probs"]
        store.write_table("reliability.csv", reliability_table(torch.as_tensor(probs), torch.as_tensor(evaluator.y)))


def _robust_rows(evaluator: Evaluator, correct, selection) -> list[pd.DataFrame]:
    """The ``robust`` rows at each eps of the attacks, smallest first. The accuracy is the one-point worst case
    (:func:`benchmark.metrics.strongest_point`) over the candidates clean, every attack at that eps and at every
    smaller one (their balls lie inside this one, so the curve cannot rise), an example the cascade stopped
    counted broken; ``accuracy_all_attacks``, the conservative figure, counts an example only where it survived
    every candidate in the same re-evaluation, which scores a random model's own noise as a vulnerability.
    ``correct(condition_id)`` and ``selection(condition_id)`` are a condition's [R, N] correctness and its selection
    scores, None for a failed one."""
    attacks = [c for c in evaluator.plan() if c.name in evaluator.attacks]
    clean = condition_id(CLEAN)
    every, candidates, frames = correct(clean), [(correct(clean), selection(clean))], []
    for eps in sorted({c.param for c in attacks}):
        at_this_eps = [c for c in attacks if c.param == eps]
        # a failed attack leaves the worst case at this eps, and so at every larger one, unknown: no robust
        # accuracy rather than an inflated one
        if any(correct(c.id) is None for c in at_this_eps):
            break
        for c in at_this_eps:
            every = every & correct(c.id)
            # an example the cascade stopped was broken in every selection evaluation of some point: it stays broken
            # (-inf: chosen, and its judged outcome here is broken), not judged again at the point that broke it,
            # which the attacks at this eps never improved on
            scores = selection(c.id)
            candidates.append((correct(c.id), np.where(np.isnan(scores), -np.inf, scores)))
        rows = accuracy_rows(ROBUST, eps, strongest_point(candidates))
        frames.append(pd.DataFrame([*rows, metric_row(ROBUST, eps, ALL_ATTACKS, every.mean())]))
    return frames
