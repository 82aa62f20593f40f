"""The leaderboard's columns, declared once.

:data:`COLUMNS` is in the order of ``leaderboards/<dataset>.csv`` (and of every run's ``summary.json`` row):
the schema's columns first, then the extra ones added since. The CSV header, the summary row's keys, the
columns of the leaderboard pages (Markdown and ``index.html``) and the table ``benchmark run`` prints are all
derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One leaderboard column.

    ``extra``: appended after the schema's columns (every schema column is filled on a finished run, except
    ``flags``, which is empty when nothing fired). ``board``: its position in the tables of the leaderboard
    pages, None if it is in the CSV only. ``after_run``: printed by ``benchmark run``. ``decimals``: how many
    decimals a number of this column is shown with (four for a score, one for seconds); None shows it as is.
    """

    name: str
    meaning: str
    extra: bool = False
    board: int | None = None
    after_run: bool = False
    decimals: int | None = None

    def text(self, value: object) -> str:
        """``value`` as the tables show it; empty where it is missing."""
        if value is None or (isinstance(value, float) and value != value):
            return ""
        if self.decimals is not None and isinstance(value, float):
            return f"{value:.{self.decimals}f}"
        return str(value)


#: Decimals of a measured score (accuracy, calibration error, loss).
SCORE = 4

COLUMNS: tuple[Column, ...] = (
    Column("model", "the plugin's registered name", board=0),
    Column("dataset", "the dataset's name"),
    Column("profile", "quick or standard; only standard rows are comparable across models"),
    Column("threat", "the threat model (Linf)"),
    Column("eps", "the L-inf budget the robust accuracy is measured at", board=21),
    Column("n_examples", "test images evaluated (n)", board=20),
    Column("predictive", "the plugin's predictive kind, which fixes the decision rule attacked", board=1),
    Column("samples", "posterior draws S per prediction", board=18),
    Column("eot", "draws K per attack step (expectation over transformation)", board=19),
    Column("clean_acc", "accuracy on clean test images", board=2, after_run=True, decimals=SCORE),
    Column("robust_acc", "per-example worst case over the clean point and every attack run at eps and below: one "
           "adversarial point per example, the strongest on independent selection draws, judged by its R "
           "re-evaluations, mean over them", board=4, after_run=True, decimals=SCORE),
    Column("attacks", "the attacks that ran at eps, joined by +", board=17),
    Column("noise_acc_mean", "mean accuracy over the Gaussian noise sigmas > 0", board=6, after_run=True,
           decimals=SCORE),
    Column("ece", "expected calibration error on clean data (15 bins)", board=13, after_run=True, decimals=SCORE),
    Column("nll", "negative log-likelihood on clean data", board=14, after_run=True, decimals=SCORE),
    Column("brier", "Brier score on clean data", board=15, after_run=True, decimals=SCORE),
    Column("flags", "the gradient-masking diagnostics that fired, joined by ; (benchmark.diagnostics.FLAGS)",
           board=16, after_run=True),
    Column("params", "number of parameters of the network", board=22),
    Column("train_seconds", "training time in seconds (0 for given weights)", board=23, after_run=True,
           decimals=1),
    Column("eval_seconds", "evaluation time in seconds, summed over the conditions", board=24, after_run=True,
           decimals=1),
    Column("device", "where the run ran", board=25),
    Column("version", "the benchmark's version"),
    Column("date", "when the run started (UTC)", board=26),
    Column("robust_acc_ci_low", "lower end of robust_acc's 95% interval", extra=True, decimals=SCORE),
    Column("robust_acc_ci_high", "upper end of robust_acc's 95% interval", extra=True, decimals=SCORE),
    Column("robust_acc_worst", "robust accuracy counting an example only if it survived all R re-evaluations",
           extra=True, decimals=SCORE),
    Column("robust_acc_all_attacks", "the conservative robust accuracy: an example counts in a re-evaluation only if "
           "it survived every attack in it (robust_acc keeps one adversarial point per example); for a random model "
           "it scores the model's own noise as a vulnerability, for a non-random one it equals robust_acc",
           extra=True, decimals=SCORE),
    Column("reevals", "re-evaluations R of every final adversarial point", extra=True),
    Column("run_id", "the run's directory under runs/", extra=True),
    Column("certified_acc", "IBP-certified accuracy at eps for plugins with interval bounds, else empty",
           extra=True, board=5, decimals=SCORE),
    Column("protocol", "the row's identity: the profile's name and every setting that differs from it (an eps "
           "other than the dataset's, --n-test, --epochs, given weights, ...); a table ranks only rows of one "
           "protocol", extra=True),
    Column("robust_auc", "normalised area under the robust-accuracy-against-eps curve on [0, eps] (trapezoid rule "
           "through the clean accuracy at 0 and every eps of the sweep, divided by eps); the leaderboard's sort key",
           extra=True, board=3, after_run=True, decimals=SCORE),
    Column("noise_auroc", "mean over the noise sigmas > 0 of the AUROC of predictive entropy for telling noisy "
           "from clean inputs (0.5: no better than chance)", extra=True, board=7, decimals=SCORE),
    Column("training", "how the weights came to be: the plugin's short recipe (quick, published), its full recipe "
           "(standard), published weights (a RobustBench zoo model) or given weights (--checkpoint)", extra=True,
           board=27),
    Column("detection_score", "the uncertainty score behind the detection columns: the kind's epistemic score where "
           "it has one (mutual information of the draws or members, the moment model's logit variance), else the "
           "predictive entropy (benchmark.uncertainty)", extra=True),
    Column("detection_auroc", "AUROC of detection_score for telling the worst-case adversarial points at eps that "
           "fooled the model from clean correctly classified inputs (0.5: blind)", extra=True, board=8,
           after_run=True, decimals=SCORE),
    Column("detection_auroc_ci_low", "lower end of detection_auroc's 95% bootstrap interval", extra=True,
           decimals=SCORE),
    Column("detection_auroc_ci_high", "upper end of detection_auroc's 95% bootstrap interval", extra=True,
           decimals=SCORE),
    Column("detection_auroc_adaptive", "the same AUROC under the adaptive attack, which also holds the score under "
           "the detector's threshold (5% false alarms on clean inputs); the gap to detection_auroc is the detection "
           "that an attacker who knows about it takes away", extra=True, board=9, after_run=True, decimals=SCORE),
    Column("detection_auroc_adaptive_ci_low", "lower end of detection_auroc_adaptive's 95% bootstrap interval",
           extra=True, decimals=SCORE),
    Column("detection_auroc_adaptive_ci_high", "upper end of detection_auroc_adaptive's 95% bootstrap interval",
           extra=True, decimals=SCORE),
    Column("robust_or_detected_acc", "share of examples classified correctly or flagged by detection_score at eps, "
           "under the attacks and the adaptive attack together; robust_acc is its floor", extra=True, board=10,
           after_run=True, decimals=SCORE),
    Column("selective_acc_80", "accuracy on the worst-case adversarial points at eps when the model abstains on its "
           "20% most uncertain (by predictive entropy)", extra=True, board=11, decimals=SCORE),
    Column("ece_ci_low", "lower end of the clean ECE's 95% bootstrap interval", extra=True, decimals=SCORE),
    Column("ece_ci_high", "upper end of the clean ECE's 95% bootstrap interval", extra=True, decimals=SCORE),
    Column("ece_attacked", "expected calibration error of the worst-case adversarial points at eps", extra=True,
           decimals=SCORE),
    Column("aurc_attacked", "area under the risk-coverage curve of the worst-case points at eps (lower is better; "
           "abstaining by predictive entropy)", extra=True, decimals=SCORE),
    Column("ood_auroc", "AUROC of detection_score for telling another dataset's test images (ood_set) from the "
           "clean ones", extra=True, board=12, decimals=SCORE),
    Column("ood_set", "the out-of-distribution images of ood_auroc (benchmark.data.ood), or why there were none",
           extra=True),
    Column("binarization_pass_rate", "share of the conclusive binarization tests (Zimmermann et al. 2022) the run's "
           "attacks passed at eps: on up to 20 correctly classified test points a two-class readout of the model's "
           "outputs has an adversarial example inside the eps-ball by construction, and the attacks must find it; "
           "empty where no test was conclusive", extra=True, after_run=True, decimals=SCORE),
)

#: Each column by its name.
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
#: The CSV header, in order.
NAMES: list[str] = [c.name for c in COLUMNS]
SCHEMA: list[str] = [c.name for c in COLUMNS if not c.extra]
EXTRA: list[str] = [c.name for c in COLUMNS if c.extra]
#: The columns of the leaderboard pages, in their order there.
DISPLAY: list[str] = [c.name for c in sorted((c for c in COLUMNS if c.board is not None), key=lambda c: c.board)]
#: The columns ``benchmark run`` prints, in CSV order.
AFTER_RUN: tuple[Column, ...] = tuple(c for c in COLUMNS if c.after_run)


def ordered_row(values: dict) -> dict:
    """``values`` as a leaderboard row: exactly the declared columns, in the declared order."""
    missing, unknown = [n for n in NAMES if n not in values], [n for n in values if n not in NAMES]
    if missing or unknown:
        raise ValueError(f"a leaderboard row must have exactly the declared columns; missing {missing}, "
                         f"undeclared {unknown}")
    return {name: values[name] for name in NAMES}
