"""A published claim as data, kept beside the plugin it is about (``ModelPlugin.claims``), as timm keeps a model's
configuration beside the model: the paper, its words, the setting it was made in, its own figure and its own
comparison model. ``benchmark.claims`` checks every registered claim against the leaderboards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: what a claim records where the paper's text could not be read (only its abstract and code were at hand)
NOT_RETRIEVED = "not retrieved"

#: what a claim is tested on: robust accuracy against eps, accuracy against Gaussian sigma, certified accuracy, the
#: detection AUROC of the model's uncertainty on the points that fooled it, or the clean ECE
Evidence = Literal["attack", "noise", "certified", "uncertainty", "calibration"]


@dataclass(frozen=True)
class Claim:
    """One claim of a method's paper, or a common belief about a family of methods (``source`` then says whose).

    ``statement`` is our short form of ``words``, the paper's own. ``datasets`` are the paper's (built-in names;
    empty: any): a verdict elsewhere is kept apart as beyond the paper. ``eps`` and ``sigma`` are the points the
    paper states (None: the dataset's eps, the whole noise sweep). ``reported`` is the paper's figure for the claim
    and ``reported_where`` its table or figure; ``threat`` and ``paper_attack`` how the paper attacked;
    ``comparison`` the model the paper claims to beat, which ``reference`` (a registered plugin) stands for."""

    method: str
    models: tuple[str, ...]
    source: str
    statement: str
    evidence: Evidence
    reference: str = "baseline"
    eps: float | None = None
    sigma: float | None = None
    datasets: tuple[str, ...] = ()
    words: str = NOT_RETRIEVED
    reported: float | None = None
    reported_where: str = NOT_RETRIEVED
    threat: str = NOT_RETRIEVED
    paper_attack: str = NOT_RETRIEVED
    comparison: str = NOT_RETRIEVED

    def in_paper_setting(self, dataset: str) -> bool:
        """Whether ``dataset`` is one the claim was made on (cifar10-jpeg is not CIFAR-10: its verdicts lie beyond)."""
        return not self.datasets or dataset in self.datasets

    @property
    def paper_figure(self) -> str:
        return NOT_RETRIEVED if self.reported is None else f"{self.reported:.3f} ({self.reported_where})"


#: the belief the Bayesian and ensemble plugins are checked against, and whose
BAYESIAN_ROBUSTNESS = ("not a claim of the method's paper: the belief that Bayesian predictives resist gradient "
                       "attacks (Carbone et al. 2020, NeurIPS: \"in the limit BNN posteriors are robust to "
                       "gradient-based adversarial attacks\", on MNIST and Fashion-MNIST)")
BAYESIAN_DETECTION = ("not a claim of the method's paper: the belief that epistemic uncertainty detects adversarial "
                      "inputs (Smith & Gal 2018, UAI, on mutual information), which Feng et al. 2024 (\"Attacking "
                      "Bayes\") test against attacks that also target the uncertainty")


def bayesian_claims(method: str, model: str, what: str = "a point estimate") -> tuple[Claim, ...]:
    """The two beliefs about a Bayesian or ensemble method, as claims on its plugin."""
    return (Claim(method, (model,), BAYESIAN_ROBUSTNESS, f"more robust under attack than {what}", "attack",
                  datasets=("mnist", "fashion-mnist"), words="in the limit BNN posteriors are robust to "
                  "gradient-based adversarial attacks (Carbone et al. 2020)", threat="L-inf, eps 0.3 on MNIST",
                  paper_attack="FGSM and PGD-40 (Carbone et al. 2020)", comparison="a deterministic network"),
            Claim(method, (model,), BAYESIAN_DETECTION, "its epistemic uncertainty flags the adversarial inputs "
                  "that fool it", "uncertainty", words="mutual information seems to be effective at the task of "
                  "adversarial example detection (Smith & Gal 2018)", comparison="chance (AUROC 0.5)"))
