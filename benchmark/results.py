"""One reader of a run's results (``metrics.csv``): its values, its conditions as tables, its curves, the flags'
evidence and the failed conditions, and the leaderboard row made from them. The summary row, the report, the
board's curves and the flags all read a run through it, so that none parses the long format on its own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark import diagnostics
from benchmark.columns import ordered_row
from benchmark.metrics import coverage_metric, robust_auc
from benchmark.names import (
    ADAPTIVE,
    ALL_ATTACKS,
    BINARIZATION,
    CERTIFIED,
    CERTIFY,
    CLEAN,
    DETECTION,
    DIAGNOSTICS,
    FAILED,
    NOISE,
    OOD,
    ROBUST,
    SECONDS,
    join_attacks,
    join_flags,
    same_eps,
    score_metric,
)
from benchmark.store import RunStore
from benchmark.uncertainty import PRIMARY_SCORE


class RunResults:
    """The metric rows of one run (``condition, param, metric, value``), read by name.

    A failed condition has one row, metric ``failed``, and no values: every value of it reads as NaN, and a
    table leaves it out unless asked for its failed points.
    """

    def __init__(self, metrics: pd.DataFrame):
        self.metrics = metrics
        self._tables: dict[tuple[str, bool], pd.DataFrame] = {}

    @classmethod
    def read(cls, run_dir: Path) -> RunResults:
        """The results a finished run stored in ``run_dir/metrics.csv``."""
        return cls(RunStore(run_dir).metrics())

    @property
    def conditions(self) -> list[str]:
        """The names of the conditions with measured values, in the order of metrics.csv."""
        return list(dict.fromkeys(self.metrics.condition[self.metrics.metric != FAILED]))

    @property
    def failed(self) -> list[tuple[str, float | None]]:
        """(name, param) of every failed condition."""
        rows = self.metrics[self.metrics.metric == FAILED]
        return [(str(name), None if pd.isna(param) else float(param))
                for name, param in zip(rows.condition, rows.param, strict=True)]

    @property
    def evidence(self) -> pd.Series:
        """The rows of condition ``diagnostics``, the flags' evidence, by metric."""
        return self.metrics[self.metrics.condition == DIAGNOSTICS].set_index("metric").value

    @property
    def seconds(self) -> float:
        """The wall time of every condition, summed."""
        return float(self.metrics[self.metrics.metric == SECONDS].value.sum())

    def _rows(self, condition: str, metric: str) -> pd.DataFrame:
        return self.metrics[(self.metrics.condition == condition) & (self.metrics.metric == metric)]

    def value(self, condition: str, metric: str, param: float | None = None) -> float:
        """One value: of ``metric`` in ``condition`` at ``param`` (its eps or sigma; None for a condition without
        one); NaN when it is absent, as for a failed condition."""
        rows = self._rows(condition, metric)
        if param is not None:
            rows = rows[same_eps(rows.param.astype(float), param)]
        return float(rows.value.iloc[0]) if not rows.empty else float("nan")

    def table(self, condition: str, *, failed: bool = False) -> pd.DataFrame:
        """One condition as a table indexed by its parameter (sigma or eps), one column per metric, smallest first;
        with ``failed``, its failed parameters too, as rows of NaN."""
        key = (condition, failed)
        if key not in self._tables:
            rows = self.metrics[self.metrics.condition == condition]
            frame = (rows[rows.metric != FAILED]
                     .pivot_table(index="param", columns="metric", values="value", dropna=False).sort_index())
            if failed:
                frame = frame.reindex(frame.index.union(rows[rows.metric == FAILED].param))
            self._tables[key] = frame
        return self._tables[key]

    def at(self, condition: str, param: float) -> pd.Series | None:
        """The metrics of ``condition`` at the eps (or sigma) ``param``; None where it was not measured."""
        frame = self.table(condition)
        hits = frame[same_eps(frame.index.to_numpy(dtype=float), param)]
        return None if hits.empty else hits.iloc[0]

    def robust_curve(self) -> pd.Series:
        """The robust accuracy (the worst case over every attack) at each eps of the sweep."""
        frame = self.table(ROBUST)
        return frame["accuracy"] if "accuracy" in frame else pd.Series(dtype=float)

    def noise_curve(self, *, failed: bool = False) -> pd.DataFrame:
        """The noise sweep as a table by sigma, sigma 0 the clean point; with ``failed``, its failed sigmas too."""
        return self.table(NOISE, failed=failed)

    def noise_mean(self, metric: str) -> float:
        """The mean of ``metric`` over the noise sigmas above 0; NaN when the sweep did not run."""
        rows = self._rows(NOISE, metric)
        return float(rows[rows.param.astype(float) > 0].value.mean())

    def certified_curve(self, *, failed: bool = False) -> pd.DataFrame:
        """The certify condition by eps, its certified accuracy and interval under the names of an accuracy
        (``accuracy``, ``accuracy_ci_low``, ``accuracy_ci_high``), so that it reads as one more curve."""
        return self.table(CERTIFY, failed=failed).rename(columns=lambda m: m.replace("certified_acc", "accuracy"))

    def eps_curves(self) -> dict[str, pd.DataFrame]:
        """Every curve with an accuracy interval at each eps, by name in alphabetical order: each attack, the
        worst case (``robust``) and the certified accuracy (``certified``); a failed eps as a row of NaN."""
        curves = {name: self.table(name, failed=True) for name in self.conditions if name != CERTIFY}
        curves[CERTIFIED] = self.certified_curve(failed=True)
        return {name: curves[name] for name in sorted(curves) if "accuracy_ci_low" in curves[name]}


def summary_row(config: dict, results: RunResults, params: int, train_seconds: float) -> dict:
    """The leaderboard row of a run (its ``config.json`` and its results): exactly the columns of
    benchmark.columns, in their order."""
    eps = config["eps"]
    score = PRIMARY_SCORE[config["predictive"]]
    adaptive = f"{score}_{ADAPTIVE}"  # the detector under the adaptive attack (benchmark.detection)
    clean_acc = results.value(CLEAN, "accuracy")
    curve = results.robust_curve()
    return ordered_row({
        "model": config["model"], "dataset": config["dataset"], "profile": config["profile"],
        "threat": config["threat"], "eps": eps, "n_examples": config["n_examples"],
        "predictive": config["predictive"], "samples": config["samples"], "eot": config["eot"],
        "clean_acc": clean_acc,
        "robust_acc": results.value(ROBUST, "accuracy", eps),
        "attacks": join_attacks(a for a in config["attack_settings"] if a in results.conditions),
        "noise_acc_mean": results.noise_mean("accuracy"),
        "ece": results.value(CLEAN, "ece"), "nll": results.value(CLEAN, "nll"),
        "brier": results.value(CLEAN, "brier"),
        "flags": join_flags(diagnostics.flags(results, config["num_classes"], config["predictive"])),
        "params": params,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(results.seconds, 1),
        "device": config["device"], "version": config["version"], "date": config["date"],
        "robust_acc_ci_low": results.value(ROBUST, "accuracy_ci_low", eps),
        "robust_acc_ci_high": results.value(ROBUST, "accuracy_ci_high", eps),
        "robust_acc_worst": results.value(ROBUST, "accuracy_worst", eps),
        "robust_acc_all_attacks": results.value(ROBUST, ALL_ATTACKS, eps),
        "reevals": config["reevals"], "run_id": config["run_id"],
        "certified_acc": results.value(CERTIFY, "certified_acc", eps),  # NaN (empty): no certify condition
        "robust_auc": robust_auc(clean_acc, curve.index.astype(float), curve.to_numpy(dtype=float), eps),
        "noise_auroc": results.noise_mean("auroc"),
        "training": config.get("training", ""),
        "protocol": config["protocol"],
        "binarization_pass_rate": results.value(BINARIZATION, "pass_rate", eps),  # NaN (empty): none conclusive
        "detection_score": score,
        "detection_auroc": results.value(DETECTION, score_metric(score, "auroc"), eps),
        "detection_auroc_ci_low": results.value(DETECTION, score_metric(score, "auroc_ci_low"), eps),
        "detection_auroc_ci_high": results.value(DETECTION, score_metric(score, "auroc_ci_high"), eps),
        "detection_auroc_adaptive": results.value(DETECTION, score_metric(adaptive, "auroc"), eps),
        "detection_auroc_adaptive_ci_low": results.value(DETECTION, score_metric(adaptive, "auroc_ci_low"), eps),
        "detection_auroc_adaptive_ci_high": results.value(DETECTION, score_metric(adaptive, "auroc_ci_high"), eps),
        "ece_ci_low": results.value(CLEAN, "ece_ci_low"), "ece_ci_high": results.value(CLEAN, "ece_ci_high"),
        "ece_attacked": results.value(ROBUST, "ece", eps),
        "robust_or_detected_acc": results.value(DETECTION, score_metric(adaptive, "robust_or_detected"), eps),
        "selective_acc_80": results.value(ROBUST, coverage_metric(0.8), eps),
        "aurc_attacked": results.value(ROBUST, "aurc", eps),
        "ood_auroc": results.value(OOD, score_metric(score, "auroc")),
        "ood_set": config.get("ood", ""),
    })
