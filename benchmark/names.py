"""The names a run's results are stored and read under, each defined once: the conditions, the metric row of
``metrics.csv``, how an eps (or sigma) keys a condition and when two are the same, and how the leaderboard's
``attacks`` and ``flags`` columns join their names.

A condition id names files in a run directory (``conditions/<id>.csv``) and seeds its batches: published runs
and resumption depend on it, so :func:`eps_key` must never change.
"""

from __future__ import annotations

import math

import numpy as np

CLEAN = "clean"
NOISE = "noise"  # the Gaussian noise sweep, one condition per sigma; sigma 0 is the clean point again
DIAGNOSTICS = "diagnostics"  # the gradient-masking evidence
ROBUST = "robust"  # the per-example worst case over every attack at an eps
#: the robust rows' conservative figure: an example counts only where it survived every attack in the same
#: re-evaluation (a random model's own noise is scored as a vulnerability; ``accuracy`` is one point per example)
ALL_ATTACKS = "accuracy_all_attacks"
CERTIFY = "certify"  # interval bound propagation at an eps (plugins with interval bounds)
BINARIZATION = "binarization"  # the attack self-test at the dataset eps (benchmark.binarization)
#: the uncertainty scores at each eps: the detection of the attacks' points and of the adaptive attack's
#: (benchmark.detection); the rows of one score read ``<score>_<metric>``
DETECTION = "detection"
#: the adaptive attack on the detector of one score (benchmark.attacks.detector): conditions ``adaptive-<score>``
ADAPTIVE = "adaptive"
#: the adaptive attack's headline: the share of all examples it fooled without raising the detector's score
EVADED = "evaded"
OOD = "ood"  # another dataset's test images, scored for out-of-distribution detection (benchmark.data.ood)
#: the certify condition's certified accuracy as a curve of the published eps table, beside the attacks
CERTIFIED = "certified"

FAILED = "failed"  # the metric a failed condition leaves (value 1)
SECONDS = "seconds"  # the metric of a condition's wall time

#: The columns of ``metrics.csv`` and of every condition's rows, in order.
METRIC_COLUMNS = ["condition", "param", "metric", "value"]

#: Relative tolerance at which two eps (or sigmas) are one: the same number after a CSV round trip, or after
#: the published curves rounded it (:func:`published_eps`).
EPS_TOLERANCE = 1e-9

ATTACKS_SEPARATOR = "+"
FLAGS_SEPARATOR = ";"


def metric_row(condition: str, param: float | None, metric: str, value: float) -> dict:
    """One row of ``metrics.csv``; ``param`` is the sigma or eps, None for a condition without one."""
    return {"condition": condition, "param": param, "metric": metric, "value": float(value)}


def adaptive_condition(score: str) -> str:
    """The name of the adaptive attack's condition against the detector of ``score``."""
    return f"{ADAPTIVE}-{score}"


def score_metric(score: str, metric: str) -> str:
    """The name of an uncertainty score's metric in the detection and ood rows (``entropy_auroc``)."""
    return f"{score}_{metric}"


def eps_key(eps: float) -> str:
    """An eps or sigma as a condition id (and a protocol's name) holds it: six significant digits (0.1 for the
    sweep's 0.09999999999999999, 0.0313725 for 8/255)."""
    return f"{eps:.6g}"


def condition_id(name: str, param: float | None = None) -> str:
    """The id of a condition: its name, followed by its parameter where it has one (``clean``, ``pgd-0.3``)."""
    return name if param is None else f"{name}-{eps_key(param)}"


def same_eps(a, b):
    """Whether two eps (or sigmas, or arrays of them) are one, within :data:`EPS_TOLERANCE`."""
    return np.isclose(a, b, rtol=EPS_TOLERANCE, atol=0.0)


def eps_up_to(eps, bound: float):
    """Whether ``eps`` (a number or an array) lies at or below ``bound``, within :data:`EPS_TOLERANCE`."""
    return (np.asarray(eps) <= bound) | same_eps(eps, bound)


def published_eps(eps: float) -> float:
    """An eps as the published curves hold it: the float noise of the sweep's products rounded away (0.1, not
    0.09999999999999999), with twelve significant digits, so that the fractions of 8/255 keep theirs."""
    return float(f"{float(eps):.12g}")


def join_attacks(names) -> str:
    """The ``attacks`` column: the attacks' names joined by ``+``."""
    return ATTACKS_SEPARATOR.join(names)


def split_attacks(text) -> list[str]:
    """The names of an ``attacks`` cell; none for an empty or missing one."""
    return _split(text, ATTACKS_SEPARATOR)


def join_flags(names) -> str:
    """The ``flags`` column: the fired flags' names joined by ``;``, empty when none fired."""
    return FLAGS_SEPARATOR.join(names)


def split_flags(text) -> list[str]:
    """The names of a ``flags`` cell; none for an empty or missing one (read back from a CSV as NaN)."""
    return _split(text, FLAGS_SEPARATOR)


def _split(text, separator: str) -> list[str]:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    return [name for name in str(text).split(separator) if name]
