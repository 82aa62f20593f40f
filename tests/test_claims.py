"""docs/claims.md is generated from the leaderboard CSVs: each seed method's claim gets a verdict that follows
from the measured intervals (holds, holds only against weak attacks, does not hold)."""

import pandas as pd
import pytest

from benchmark.claims import claims_markdown, verdicts, write_claims
from benchmark.errors import BenchmarkError
from benchmark.registry import get_plugin_class, list_models, registered_claims

EPS = (0.1, 0.2, 0.3)


#: the papers' comparison models, which a board built from a baseline also gets, as copies of it
COMPARISONS = ("endp-twin", "vdp-twin", "baseline-noise", "ibp-bnn-plain")


def _board(tmp_path, models: dict[str, dict], n: int = 500, dataset: str = "mnist", protocol: str = "quick",
           comparisons: bool = True):
    """Leaderboard CSVs of ``dataset`` for ``models``: name -> {attack: accuracies at EPS}, plus 'noise' (accuracy
    per sigma), 'certified', 'flags' and 'row' (further columns of the model's row). With ``comparisons``, every
    claim's comparison model not given is the baseline's copy."""
    board = tmp_path / "leaderboards"
    board.mkdir()
    if comparisons and "baseline" in models:
        models = {**{name: models["baseline"] for name in COMPARISONS}, **models}
    rows, eps_rows, noise_rows = [], [], []
    for model, spec in models.items():
        rows.append({"model": model, "dataset": dataset, "protocol": protocol, "n_examples": n, "eps": 0.3,
                     "flags": spec.get("flags", ""), "robust_acc": spec["robust"][-1], **spec.get("row", {})})
        for attack, accs in spec.items():
            if attack in ("noise", "flags", "row"):
                continue
            for eps, acc in zip(EPS, accs, strict=False):
                eps_rows.append({"model": model, "protocol": protocol, "attack": attack, "eps": eps, "accuracy": acc,
                                 "accuracy_ci_low": max(0.0, acc - 0.04), "accuracy_ci_high": min(1.0, acc + 0.04)})
        for sigma, acc in zip((0.0, 0.1, 0.3, 0.5), spec.get("noise", (0.99, 0.98, 0.9, 0.6)), strict=True):
            noise_rows.append({"model": model, "protocol": protocol, "sigma": sigma, "accuracy": acc, "ece": 0.02,
                               "auroc": 0.6})
    pd.DataFrame(rows).to_csv(board / f"{dataset}.csv", index=False)
    pd.DataFrame(eps_rows).to_csv(board / f"{dataset}-eps.csv", index=False)
    pd.DataFrame(noise_rows).to_csv(board / f"{dataset}-noise.csv", index=False)
    return board


BASELINE = {"fgsm": (0.8, 0.4, 0.1), "pgd": (0.7, 0.1, 0.0), "square": (0.7, 0.1, 0.0), "robust": (0.7, 0.05, 0.0)}
#: well above the baseline at the dataset's eps (0.3), the one point an attack claim without an eps is tested at
ROBUST = {"fgsm": (0.9, 0.6, 0.3), "pgd": (0.85, 0.3, 0.2), "robust": (0.85, 0.3, 0.2),
          "noise": (0.99, 0.99, 0.97, 0.9)}


def _verdict(found, model, evidence="attack"):
    (v,) = [v for v in found if v.model == model and v.claim.evidence == evidence]
    return v


def test_the_verdicts_follow_the_effects(tmp_path):
    board = _board(tmp_path, {
        "baseline": BASELINE,
        "endp": ROBUST,
        "mc-dropout": {"fgsm": (0.9, 0.6, 0.3), "pgd": (0.85, 0.3, 0.2), "square": (0.72, 0.06, 0.0),
                       "robust": (0.72, 0.06, 0.0)},  # strong under PGD, broken by Square
        "vdp": {"pgd": (0.7, 0.1, 0.0), "robust": (0.68, 0.05, 0.0)},
        "snn": {"pgd": (0.2, 0.0, 0.0), "robust": (0.2, 0.0, 0.0)},
        "snn-noise": {"pgd": (0.4, 0.1, 0.1), "robust": (0.35, 0.1, 0.1)},
        "ibp-bnn": {"robust": (0.9, 0.2, 0.0), "certified": (0.8, 0.1, 0.0)},  # at eps 0.1: 0.80 against 0.70
        "bbb": {"pgd": (0.9, 0.5, 0.3), "robust": (0.9, 0.5, 0.3), "flags": "eot-not-converged;zero-grad"},
    })
    found = verdicts(board)
    endp = _verdict(found, "endp")
    assert endp.verdict == "holds" and "+0.200" in endp.why and "eps 0.3" in endp.why
    assert _verdict(found, "endp", "noise").verdict == "holds"
    weak = _verdict(found, "mc-dropout")
    assert weak.verdict == "holds only against weak attacks"
    assert "square at eps 0.3" in weak.why  # the attack that broke it, named
    assert _verdict(found, "vdp").verdict == "does not hold"
    assert _verdict(found, "vdp", "noise").verdict == "does not hold"  # same noise accuracies as the baseline
    assert _verdict(found, "snn-noise").verdict == "holds"  # against the conventionally trained snn
    assert "above snn" in _verdict(found, "snn-noise").why
    assert _verdict(found, "ibp-bnn", "certified").verdict == "holds"
    flagged = _verdict(found, "bbb")  # would hold, but its number may be too high: unsettled
    assert flagged.verdict == "holds only on a flagged row"
    assert "flagged eot-not-converged and zero-grad:" in flagged.why
    assert not [v for v in found if v.model in ("kap", "ensemble")]  # not on this board: nothing claimed for them


def test_a_claim_is_tested_at_the_datasets_eps_not_where_the_sweep_favours_it(tmp_path):
    """Before, any eps of the sweep where two intervals did not overlap made a claim hold: a model above the baseline
    at eps/3 alone held "robust to adversarial attacks" at the dataset's eps, where both are at 0."""
    board = _board(tmp_path, {"baseline": BASELINE, "endp": {"robust": (0.95, 0.05, 0.0)}})
    assert _verdict(verdicts(board), "endp").verdict == "does not hold"


def test_a_gain_below_two_points_does_not_hold_however_significant(tmp_path):
    """KAP on cifar10-jpeg held on 0.008 against 0.000: significant on many images, and no robustness to speak of."""
    board = _board(tmp_path, {"baseline": BASELINE, "kap": {"robust": (0.7, 0.05, 0.015)}})
    assert _verdict(verdicts(board), "kap").verdict == "does not hold"


def test_noise_points_are_corrected_together(tmp_path):
    """VDP on cifar10-jpeg held "robust to noise" on one sigma where it was above the baseline while it was below it
    at the others; and one marginal sigma among several does not survive Holm's correction."""
    n = 2000
    board = _board(tmp_path, {"baseline": {**BASELINE, "noise": (0.77, 0.709, 0.6, 0.3)},
                              "vdp": {**BASELINE, "noise": (0.47, 0.469, 0.6, 0.328)}}, n=n)
    # at sigma 0.5: 0.328 against 0.3, p about 0.03 alone, above the 0.05 / 3 Holm asks of the smallest of three
    assert _verdict(verdicts(board), "vdp", "noise").verdict == "does not hold"


def test_a_gain_bought_with_clean_accuracy_says_so(tmp_path):
    board = _board(tmp_path, {"baseline": {**BASELINE, "row": {"clean_acc": 0.99}},
                              "endp": {**ROBUST, "row": {"clean_acc": 0.90}}})
    found = verdicts(board)
    assert _verdict(found, "endp").verdict == "holds, at a cost of 9.0 points clean"
    assert _verdict(found, "endp", "noise").verdict == "holds, at a cost of 9.0 points clean"
    (tmp_path / "close").mkdir()
    board = _board(tmp_path / "close", {"baseline": {**BASELINE, "row": {"clean_acc": 0.99}},
                                        "endp": {**ROBUST, "row": {"clean_acc": 0.985}}})
    assert _verdict(verdicts(board), "endp").verdict == "holds"


def test_every_verdict_names_its_decision_rule_protocol_and_training(tmp_path):
    board = _board(tmp_path, {"baseline": BASELINE,
                              "endp": {**ROBUST, "row": {"predictive": "moments", "training": "short recipe"}}})
    basis = _verdict(verdicts(board), "endp").basis
    assert "E[softmax(z)]" in basis and "protocol quick" in basis and "training: short recipe" in basis


def test_attack_flags_leave_noise_verdicts_and_information_flags_leave_every_verdict(tmp_path):
    """A gradient-masking flag says an attacked accuracy may be too high: it cannot unsettle a noise verdict, which
    rests on no attack; a flag given as information unsettles nothing; a failed condition unsettles every verdict."""
    board = _board(tmp_path, {"baseline": BASELINE,
                              "endp": {**ROBUST, "flags": "blackbox-beats-whitebox"},
                              "kap": {**ROBUST, "flags": "short-attack-not-converged"},
                              "vdp": {**ROBUST, "flags": "condition-failed"}})
    found = verdicts(board)
    assert _verdict(found, "endp").verdict == "holds only on a flagged row"
    assert _verdict(found, "endp", "noise").verdict == "holds"
    assert _verdict(found, "kap").verdict == "holds" and _verdict(found, "kap", "noise").verdict == "holds"
    assert _verdict(found, "vdp").verdict == _verdict(found, "vdp", "noise").verdict == "holds only on a flagged row"


def test_claims_on_rows_without_autoattack_say_so_at_the_top(tmp_path):
    board = _board(tmp_path, {"baseline": BASELINE, "endp": BASELINE}, protocol="reference")
    page = claims_markdown(verdicts(board))
    assert "without AutoAttack" in page.split("| method")[0]
    (tmp_path / "quick").mkdir()
    quick = _board(tmp_path / "quick", {"baseline": BASELINE, "endp": BASELINE})
    assert "without AutoAttack" not in claims_markdown(verdicts(quick))


def test_a_certified_claim_needs_the_certified_lower_bound_above_the_references_attacked_accuracy(tmp_path):
    board = _board(tmp_path, {"baseline": {"robust": (0.5, 0.05, 0.0)},
                              "ibp-bnn": {"robust": (0.8, 0.2, 0.0), "certified": (0.53, 0.1, 0.0)}})
    assert _verdict(verdicts(board), "ibp-bnn", "certified").verdict == "does not hold"  # intervals overlap


def test_a_claim_beyond_its_papers_datasets_is_kept_apart(tmp_path):
    models = {"baseline": {"robust": (0.5, 0.05, 0.0)},
              "ibp-bnn": {"robust": (0.8, 0.2, 0.0), "certified": (0.7, 0.1, 0.0)}}
    fashion, mnist = tmp_path / "fashion", tmp_path / "mnist"
    fashion.mkdir(), mnist.mkdir()
    # Wicker et al. certify MNIST at eps 0.1: on Fashion-MNIST the same numbers are a verdict beyond the paper
    beyond = _verdict(verdicts(_board(fashion, models, dataset="fashion-mnist")), "ibp-bnn", "certified")
    assert not beyond.claim.in_paper_setting("fashion-mnist")
    on_paper = _verdict(verdicts(_board(mnist, models)), "ibp-bnn", "certified")
    assert on_paper.verdict == "holds" and on_paper.claim.in_paper_setting("mnist")
    page = claims_markdown(verdicts(_board(tmp_path, models, dataset="fashion-mnist")))
    opening = page.split("## Each verdict")[0]
    beyond_section = opening.split("## Beyond the papers' settings")[1]
    assert "| IBP-trained BNN | ibp-bnn | fashion-mnist | certified robustness on MNIST" in beyond_section
    # the calibration claim was made on Fashion-MNIST too: it stays with the papers' settings
    assert "| IBP-trained BNN | ibp-bnn | fashion-mnist | better calibrated" in opening.split("## Beyond")[0]


def test_the_page_is_written_from_the_csvs_and_refuses_an_empty_board(tmp_path):
    _board(tmp_path, {"baseline": BASELINE, "endp": ROBUST})
    path = write_claims(tmp_path, tmp_path / "docs" / "claims.md")
    text = path.read_text()
    # under FGSM and PGD-20, the weaker of the two for the model (PGD-20's 0.2), and under the whole protocol
    assert "| EnDP | endp | mnist | robust to adversarial attacks | not retrieved | pgd: 0.200 \\[0.160, 0.240\\] | " \
        "0.200 \\[0.160, 0.240\\] | holds |" in text
    assert "0.200 \\[0.160, 0.240\\]" in text  # the measured point, with its interval
    with pytest.raises(BenchmarkError, match="no claim could be checked"):
        claims_markdown([])


def test_every_claim_lives_beside_a_registered_plugin_and_names_registered_plugins():
    claims = registered_claims()
    assert {c.method for c in claims} >= {"EnDP", "VDP", "KAP", "IBP-trained BNN", "MC dropout", "Deep ensemble"}
    for claim in claims:
        assert set(claim.models) | {claim.reference} <= set(list_models()), claim
        assert claim.evidence in ("attack", "noise", "certified", "uncertainty", "calibration")
        # the claim is declared by (or inherited from) the plugin of each model it names
        assert all(claim in get_plugin_class(model).claims for model in claim.models), claim
    assert len(claims) == len(set(claims))  # an inherited claim (vdp-unscented's) is checked once


def test_the_page_opens_with_one_line_per_claim_and_the_papers_words_below(tmp_path):
    _board(tmp_path, {"baseline": BASELINE, "endp": ROBUST})
    page = (write_claims(tmp_path, tmp_path / "claims.md")).read_text()
    opening, detail = page.split("## Each verdict")
    assert "| EnDP | endp | mnist | robust to adversarial attacks | not retrieved |" in opening
    assert "not CIFAR-10" in opening.split("##")[0]  # stated once, at the top
    assert "Our experiments using MNIST and CIFAR-10 datasets" in detail  # the paper's words, with the detail
    assert "its comparison: a deterministic CNN of the same architecture, here `endp-twin`" in detail


def _detects(auroc, adaptive):
    """Board columns of a detector: (value, low, high) of its AUROC under the protocol's and the adaptive attack."""
    return {"row": {"detection_score": "logit_variance", "robust_or_detected_acc": 0.1,
                    **dict(zip(("detection_auroc", "detection_auroc_ci_low", "detection_auroc_ci_high"), auroc,
                               strict=True)),
                    **dict(zip(("detection_auroc_adaptive", "detection_auroc_adaptive_ci_low",
                                "detection_auroc_adaptive_ci_high"), adaptive, strict=True))}}


def test_an_uncertainty_claim_holds_only_where_detection_survives_the_adaptive_attack(tmp_path):
    """The density-propagation papers' variance rises under attack; Feng et al. 2024 show such detection falling to
    an attack that also holds the variance down. The verdict separates the two."""
    board = _board(tmp_path, {
        "baseline": BASELINE,
        "endp": {**BASELINE, **_detects((0.9, 0.85, 0.95), (0.52, 0.45, 0.6))},  # broken by the adaptive attack
        "vdp": {**BASELINE, **_detects((0.9, 0.85, 0.95), (0.8, 0.72, 0.88))},  # survives it
        "vdp-unscented": {**BASELINE, **_detects((0.55, 0.48, 0.62), (0.5, 0.45, 0.55))},  # never above chance
        "mc-dropout": {**BASELINE, **_detects((0.9, 0.85, 0.95), (0.8, 0.72, 0.88)), "flags": "zero-grad"},
        "ensemble": BASELINE,  # a row from before the columns existed
    })
    found = verdicts(board)
    assert _verdict(found, "endp", "uncertainty").verdict == "holds only against non-adaptive attacks"
    assert _verdict(found, "vdp", "uncertainty").verdict == "holds"
    assert _verdict(found, "vdp-unscented", "uncertainty").verdict == "does not hold"
    # an attack flag says the adversarial points may be too weak: detection of them settles nothing
    assert _verdict(found, "mc-dropout", "uncertainty").verdict == "holds only on a flagged row"
    assert _verdict(found, "ensemble", "uncertainty").verdict == "untested"


def test_a_calibration_claim_needs_the_ece_interval_below_the_references(tmp_path):
    def ece(value, low, high):
        return {"row": {"ece": value, "ece_ci_low": low, "ece_ci_high": high, "ece_attacked": 0.5}}

    board = _board(tmp_path, {"baseline": {**BASELINE, **ece(0.05, 0.04, 0.06)},
                              "ibp-bnn": {"robust": (0.8, 0.2, 0.0), **ece(0.02, 0.015, 0.03)}})
    assert _verdict(verdicts(board), "ibp-bnn", "calibration").verdict == "holds"
    (tmp_path / "overlap").mkdir()
    board = _board(tmp_path / "overlap", {"baseline": {**BASELINE, **ece(0.05, 0.04, 0.06)},
                                          "ibp-bnn": {"robust": (0.8, 0.2, 0.0), **ece(0.035, 0.025, 0.045)}})
    assert _verdict(verdicts(board), "ibp-bnn", "calibration").verdict == "does not hold"


def test_a_plugin_without_its_papers_comparison_is_untested_and_says_which(tmp_path):
    """KAP was compared with a baseline trained without its noise; the paper's ablation is the same net trained
    with it. Without that row there is no verdict, only the reason."""
    board = _board(tmp_path, {"baseline": BASELINE, "kap": ROBUST}, comparisons=False)
    found = _verdict(verdicts(board), "kap")
    assert found.verdict == "untested" and "baseline-noise" in found.why
