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

from benchmark import binarization, detection, diagnostics
from benchmark.attacks.plan import DOUBLED
from benchmark.evaluation import Evaluator, accuracy_rows, attack_conditions, selection_of
from benchmark.metrics import reliability_table
from benchmark.names import (
    ALL_ATTACKS,
    CLEAN,
    FAILED,
    METRIC_COLUMNS,
    NOISE,
    OOD,
    ROBUST,
    SECONDS,
    condition_id,
    metric_row,
)
from benchmark.results import RunResults
from benchmark.store import RunStore
from benchmark.worst_case import WorstCase, worst_cases


def write_metrics(evaluator: Evaluator, store: RunStore) -> None:
    """Write the run's ``metrics.csv`` and, unless the clean condition failed, its ``reliability.csv``."""
    plan = evaluator.plan()
    failed = store.failures()
    planned = {c.id for c in plan}
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
        return None if condition in failed or condition not in planned else store.load_arrays(condition)

    def correct(condition: str) -> np.ndarray | None:
        return None if arrays(condition) is None else arrays(condition)["correct"]

    def selection(condition: str) -> np.ndarray | None:
        found = arrays(condition)
        return None if found is None else selection_of(found, evaluator.predictor.is_random, condition)

    cases = worst_cases(attack_conditions(evaluator), arrays, selection) if clean_ok else []
    frames += [_robust_rows(cases)]
    frames += [pd.DataFrame(_uncertainty_rows(evaluator, plan, cases, arrays), columns=METRIC_COLUMNS)]
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


def _robust_rows(cases: list[WorstCase]) -> pd.DataFrame:
    """The ``robust`` rows at each eps of the attacks, smallest first (``benchmark.worst_case``): the accuracy is
    the one-point worst case, an example the cascade stopped counted broken; ``accuracy_all_attacks``, the
    conservative figure, counts an example only where it survived every candidate in the same re-evaluation, which
    scores a random model's own noise as a vulnerability."""
    return pd.DataFrame([row for case in cases for row in (*accuracy_rows(ROBUST, case.eps, case.correct),
                                                           metric_row(ROBUST, case.eps, ALL_ATTACKS,
                                                                      case.every.mean()))],
                        columns=METRIC_COLUMNS)


def _uncertainty_rows(evaluator: Evaluator, plan: list, cases: list[WorstCase], arrays) -> list[dict]:
    """What the uncertainty scores say (``benchmark.detection``), from every condition that stored them; none for a
    run stored before the harness kept them."""
    clean = arrays(condition_id(CLEAN))
    if clean is None or any(score not in clean for score in evaluator.scores):
        return []
    y = evaluator.y.cpu().numpy()
    rows = detection.detection_rows(evaluator.scores, cases, arrays) + detection.attacked_rows(cases, arrays, y)
    rows += detection.clean_interval_rows(clean, y)
    for c in plan:
        if c.name in (CLEAN, NOISE) and arrays(c.id) is not None:
            rows += detection.selective_rows(c.name, c.param, arrays(c.id))
        if c.name == OOD and arrays(c.id) is not None:
            rows += detection.ood_rows(evaluator.scores, clean, arrays(c.id))
    return rows
