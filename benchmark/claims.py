"""The seed methods' published claims, checked against the leaderboard.

``benchmark claims`` writes a Markdown page from the leaderboard CSVs (``<dataset>.csv``, ``-eps.csv``,
``-noise.csv``), never from typed numbers: for each claim, the measured result of each of the method's plugins
against its reference at the points the claim is tested at, with 95% intervals, and a verdict by the rule of
``benchmark.verdict``: an effect significant after Holm's correction and of at least two points *holds*; one
that holds only under FGSM or PGD-20 *holds only against weak attacks*, and the page names the attack that broke
it; otherwise it *does not hold*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark import diagnostics
from benchmark.board import board_tables, protocols, read_board, retired_notes
from benchmark.claim import Claim
from benchmark.errors import BenchmarkError
from benchmark.metrics import mean_interval
from benchmark.names import CERTIFIED, ROBUST, same_eps, split_flags
from benchmark.plugin import DECISION_RULES
from benchmark.registry import registered_claims
from benchmark.render import eps_text, markdown_table, markdown_text
from benchmark.store import atomic_write_text
from benchmark.verdict import MINIMUM_GAIN, Effect, Interval, cost, effect, supporting

FLAGGED_HOLDS = "holds only on a flagged row"
WEAK_HOLDS = "holds only against weak attacks"
WEAK_ATTACKS = ("fgsm", "pgd")  # one gradient step, and PGD-20: where most robustness claims stop


@dataclass(frozen=True)
class Verdict:
    """One plugin's result on one claim, on one dataset and protocol."""

    claim: Claim
    model: str
    dataset: str
    protocol: str
    verdict: str
    why: str
    points: pd.DataFrame  # the measured points, as text cells
    basis: str = ""  # the decision rule, protocol and training the verdict is about


def check(claim: Claim, model: str, rows: pd.DataFrame, eps_curves: pd.DataFrame, noise_curves: pd.DataFrame,
          dataset: str, protocol: str) -> Verdict:
    """The verdict on ``claim`` for ``model`` against the claim's reference, from one protocol's rows."""
    row = rows[rows.model == model].iloc[0]
    # the flags that say this claim's number may be too high: attack flags bear on attacked accuracies only
    flags = diagnostics.demoting(split_flags(row["flags"]),
                                 "attacks" if claim.evidence in ("attack", "uncertainty") else "every number")
    if claim.evidence == "uncertainty":
        verdict, why, points = _uncertainty(row)
    elif claim.evidence == "calibration":
        verdict, why, points = _calibration(row, rows[rows.model == claim.reference].iloc[0])
    elif claim.evidence == "noise":
        verdict, why, points = _noise(claim, model, noise_curves, int(row.n_examples))
    elif claim.evidence == "certified":
        verdict, why, points = _certified(claim, model, eps_curves, float(row.eps))
    else:
        verdict, why, points = _attack(claim, model, eps_curves, float(row.eps))
    if verdict == "holds" and claim.evidence in ("attack", "noise"):
        reference = rows[rows.model == claim.reference].iloc[0]
        n = int(row.n_examples)
        lost = cost(Interval(*mean_interval([float(row.clean_acc)], n)),
                    Interval(*mean_interval([float(reference.clean_acc)], n)))
        if lost is not None:
            verdict = f"holds, at a cost of {100 * lost:.1f} points clean"
            why = f"{why}; clean accuracy {float(row.clean_acc):.3f} against {float(reference.clean_acc):.3f}"
    if verdict == "holds" and flags:  # a number that may be too high cannot settle a claim
        named = " and ".join(flags)
        number = {"attack": "robust accuracy", "uncertainty": "adversarial points"}.get(claim.evidence, "numbers")
        verdict, why = FLAGGED_HOLDS, f"{why}, but the row is flagged {named}: its {number} may be too high"
    basis = (f"decision rule: {DECISION_RULES.get(str(row.predictive), 'as the plugin declares')}; protocol "
             f"{protocol}; training: {row.training if isinstance(row.training, str) else 'not recorded'}")
    return Verdict(claim, model, dataset, protocol, verdict, why, points, basis)


def _curve(eps_curves: pd.DataFrame, model: str, attack: str) -> dict[float, Interval]:
    part = eps_curves[(eps_curves.model == model) & (eps_curves.attack == attack)]
    return {float(r.eps): Interval(r.accuracy, r.accuracy_ci_low, r.accuracy_ci_high) for r in part.itertuples()}


def _weakest(eps_curves: pd.DataFrame, model: str, eps: float) -> tuple[str, Interval] | None:
    """The lowest accuracy under the weak attacks alone at ``eps``, and which attack reached it."""
    found = [(a, c[eps]) for a in WEAK_ATTACKS if eps in (c := _curve(eps_curves, model, a))]
    return min(found, key=lambda item: item[1].value) if found else None


def _strongest(eps_curves: pd.DataFrame, model: str, eps: float) -> str:
    """The attack with the lowest accuracy on ``model`` at ``eps``: the one that broke it."""
    part = eps_curves[(eps_curves.model == model) & same_eps(eps_curves.eps, eps)
                      & ~eps_curves.attack.isin([ROBUST, CERTIFIED])]
    return str(part.sort_values("accuracy").attack.iloc[0]) if not part.empty else "unknown"


def _attack(claim: Claim, model: str, eps_curves: pd.DataFrame,
            dataset_eps: float) -> tuple[str, str, pd.DataFrame]:
    """Robust accuracy against the reference's at the claim's eps, else the dataset's (the worst case over every
    attack); where that does not hold, the same under FGSM and PGD-20 alone."""
    reference = claim.reference
    mine, theirs = _curve(eps_curves, model, ROBUST), _curve(eps_curves, reference, ROBUST)
    points = [e for e in mine if same_eps(e, claim.eps if claim.eps is not None else dataset_eps) and e in theirs]
    if not points:
        return "untested", f"{model} and {reference} were not both measured at the claim's eps", pd.DataFrame()
    effects, weak_effects, cells = [], [], []
    for eps in points:
        at = f"eps {eps_text(eps, dataset_eps)}"
        effects.append(effect(mine[eps], theirs[eps], at))
        weak_mine, weak_theirs = _weakest(eps_curves, model, eps), _weakest(eps_curves, reference, eps)
        if weak_mine and weak_theirs:
            weak_effects.append(effect(weak_mine[1], weak_theirs[1], at))
        cells.append([at, mine[eps].text(), theirs[eps].text(), effects[-1].text(),
                      f"{weak_mine[0]}: {weak_mine[1].text()}" if weak_mine else "",
                      f"{weak_theirs[0]}: {weak_theirs[1].text()}" if weak_theirs else ""])
    table = pd.DataFrame(cells, columns=["at", f"{model}, worst case", f"{reference}, worst case", "effect",
                                         f"{model}, weak attacks", f"{reference}, weak attacks"])
    if held := supporting(effects):
        return "holds", f"above {reference} by {_effects_text(held)}", table
    if held := supporting(weak_effects):
        broke = "; ".join(f"{_strongest(eps_curves, model, e)} at eps {eps_text(e, dataset_eps)}" for e in points)
        return (WEAK_HOLDS, f"above {reference} under FGSM and PGD-20 alone ({_effects_text(held)}), not under the "
                f"worst case; broken by {broke}", table)
    return "does not hold", f"not above {reference} by a significant {MINIMUM_GAIN:.0%}: {_effects_text(effects)}", \
        table


def _effects_text(effects: list[Effect]) -> str:
    return "; ".join(f"{e.text()} at {e.at}" for e in effects)


def _noise(claim: Claim, model: str, noise_curves: pd.DataFrame, n: int) -> tuple[str, str, pd.DataFrame]:
    """Accuracy under Gaussian noise against the reference's at the claim's sigma, else at every sigma of the sweep
    (Holm-corrected together)."""
    def curve(name: str) -> dict[float, Interval]:
        part = noise_curves[(noise_curves.model == name) & (noise_curves.sigma > 0)]
        return {float(r.sigma): Interval(*mean_interval([r.accuracy], n)) for r in part.itertuples()}

    mine, theirs = curve(model), curve(claim.reference)
    sigmas = [s for s in sorted(set(mine) & set(theirs)) if claim.sigma is None or same_eps(s, claim.sigma)]
    effects = [effect(mine[s], theirs[s], f"sigma {s:g}") for s in sigmas]
    points = pd.DataFrame([[e.at, mine[s].text(), theirs[s].text(), e.text()] for s, e in zip(sigmas, effects,
                                                                                              strict=True)],
                          columns=["at", f"{model}, accuracy", f"{claim.reference}, accuracy", "effect"])
    if not sigmas:
        return "untested", f"no noise sigma at which both {model} and {claim.reference} were measured", points
    if held := supporting(effects):
        return "holds", f"above {claim.reference} by {_effects_text(held)} (Holm over {len(effects)} sigmas)", points
    return "does not hold", f"not above {claim.reference} by a significant {MINIMUM_GAIN:.0%} at any sigma " \
        f"(Holm over {len(effects)})", points


#: what a detector does by chance: an AUROC whose interval does not lie above it shows no detection
CHANCE = 0.5
NON_ADAPTIVE_ONLY = "holds only against non-adaptive attacks"


def _column_interval(row: pd.Series, column: str) -> Interval:
    """A column and its interval columns on a board row (NaN where the row predates them)."""
    return Interval(*(float(row.get(c, float("nan"))) for c in (column, f"{column}_ci_low", f"{column}_ci_high")))


def _uncertainty(row: pd.Series) -> tuple[str, str, pd.DataFrame]:
    """Whether the model's uncertainty (its board's ``detection_score``) tells the adversarial points that fooled it
    from clean correct inputs, better than chance, under the protocol's attacks and under the adaptive attack."""
    plain, adaptive = _column_interval(row, "detection_auroc"), _column_interval(row, "detection_auroc_adaptive")
    score = row["detection_score"]
    points = pd.DataFrame([[f"eps {float(row.eps):g}", str(score), plain.text(), adaptive.text(),
                            f"{float(row.get('robust_or_detected_acc', float('nan'))):.4f}",
                            f"{float(row.robust_acc):.4f}"]],
                          columns=["at", "score", "detection AUROC", "under the adaptive attack",
                                   "robust or detected (adaptive)", "robust accuracy"])
    if pd.isna(plain.value):
        return "untested", "no detection AUROC on the row (no point fooled the model, or a run before it was kept)", \
            points
    if not plain.above(Interval(CHANCE, CHANCE, CHANCE)):
        return "does not hold", f"{score} does not tell the points that fooled the model from clean ones", points
    if pd.isna(adaptive.value) or not adaptive.above(Interval(CHANCE, CHANCE, CHANCE)):
        return (NON_ADAPTIVE_ONLY, f"{score} detects the protocol's adversarial points (AUROC {plain.text()}), not "
                f"those of the attack that also holds it down (AUROC {adaptive.text()})", points)
    return "holds", f"{score} detects the adversarial points, also under the adaptive attack (AUROC " \
        f"{adaptive.text()})", points


def _calibration(row: pd.Series, reference: pd.Series) -> tuple[str, str, pd.DataFrame]:
    """Whether the model's clean ECE lies wholly below its reference's (a lower ECE is better calibrated)."""
    mine, theirs = _column_interval(row, "ece"), _column_interval(reference, "ece")
    points = pd.DataFrame([[mine.text(), theirs.text(), f"{float(row.get('ece_attacked', float('nan'))):.4f}",
                            f"{float(reference.get('ece_attacked', float('nan'))):.4f}"]],
                          columns=[f"{row.model}, clean ECE", f"{reference.model}, clean ECE",
                                   f"{row.model}, ECE under attack", f"{reference.model}, ECE under attack"])
    if pd.isna(mine.low) or pd.isna(theirs.low):
        return "untested", "no ECE interval on the rows (runs before it was kept)", points
    if theirs.above(mine):
        return "holds", f"clean ECE below {reference.model}'s", points
    return "does not hold", f"clean ECE not below {reference.model}'s", points


def _certified(claim: Claim, model: str, eps_curves: pd.DataFrame,
               dataset_eps: float) -> tuple[str, str, pd.DataFrame]:
    """The certified accuracy at the claim's eps against the paper's figure and against the reference's: its
    certified accuracy where it has one (the same model trained without certification), else its attacked accuracy
    (an upper bound, so a certified accuracy above it is provably more robust)."""
    certified = _curve(eps_curves, model, CERTIFIED)
    reference = _curve(eps_curves, claim.reference, CERTIFIED) or _curve(eps_curves, claim.reference, ROBUST)
    kind = "certified" if _curve(eps_curves, claim.reference, CERTIFIED) else "robust (upper bound)"
    at = next((e for e in certified if same_eps(e, claim.eps)), None)
    if at is None or at not in reference:
        return ("untested", f"no certified accuracy of {model} at eps {claim.eps:g} beside {claim.reference}'s (run "
                "at that eps, e.g. a sweep that contains it)", pd.DataFrame())
    found = effect(certified[at], reference[at], f"eps {eps_text(at, dataset_eps)}")
    paper = "not retrieved" if claim.reported is None else f"{claim.reported:.3f}"
    points = pd.DataFrame([[found.at, certified[at].text(), paper, reference[at].text(), found.text()]],
                          columns=["at", f"{model}, certified (lower bound)", "the paper's figure",
                                   f"{claim.reference}, {kind}", "effect"])
    if supporting([found]):
        return "holds", f"certified above {claim.reference}'s {kind} accuracy by {found.text()}", points
    return "does not hold", f"certified accuracy not above {claim.reference}'s {kind} accuracy by a significant " \
        f"{MINIMUM_GAIN:.0%}: {found.text()}", points


def verdicts(board_dir: Path) -> list[Verdict]:
    """Every claim checked on every dataset of ``board_dir`` (a leaderboards/ folder), in the first protocol
    whose table holds both the plugin and its reference."""
    found = []
    for dataset, path in board_tables(board_dir).items():
        frame, eps_curves, noise_curves = read_board(path)
        for claim in registered_claims():
            for model in claim.models:
                for protocol, rows in protocols(frame):
                    if {model, claim.reference} <= set(rows.model):
                        found.append(check(claim, model, rows, eps_curves[eps_curves.protocol == protocol],
                                           noise_curves[noise_curves.protocol == protocol], dataset, protocol))
                        break
                else:  # the plugin is on the board without its paper's comparison: say so, judge nothing
                    found += [Verdict(claim, model, dataset, protocol, "untested",
                                      f"no row of {claim.reference}, the paper's comparison, beside it", pd.DataFrame())
                              for protocol, rows in protocols(frame) if model in set(rows.model)][:1]
    return found


def headline(v: Verdict) -> tuple[str, str]:
    """A verdict's figures for the page's opening table: ours under the paper's kind of attack (FGSM or PGD-20; for
    an uncertainty claim, the protocol's attacks) and ours under the full protocol (the worst case; the adaptive
    attack)."""
    if v.points.empty or v.verdict == "untested":
        return "", ""
    first = v.points.iloc[0]
    if v.claim.evidence == "attack":
        return str(first.iloc[4]), str(first.iloc[1])
    if v.claim.evidence == "uncertainty":
        return f"AUROC {first.iloc[2]}", f"AUROC {first.iloc[3]} (adaptive)"
    if v.claim.evidence == "noise":
        return "", "; ".join(f"{row.iloc[0]}: {row.iloc[1]}" for _, row in v.points.iterrows())
    return "", str(first.iloc[1] if v.claim.evidence == "certified" else first.iloc[0])


def _opening(found: list[Verdict]) -> pd.DataFrame:
    rows = []
    for v in found:
        paper_attack, protocol = headline(v)
        rows.append([v.claim.method, v.model, v.dataset, v.claim.statement, v.claim.paper_figure, paper_attack,
                     protocol, v.verdict])
    return pd.DataFrame(rows, columns=["method", "plugin", "dataset", "claim", "the paper's figure",
                                       "ours, the paper's kind of attack", "ours, full protocol", "verdict"])


def claims_markdown(found: list[Verdict]) -> str:
    """The claims page: what the rows are, one line per verdict in the papers' settings, the same beyond them, then
    each verdict in detail with the paper's words and setting and the points it rests on."""
    if not found:
        raise BenchmarkError("no claim could be checked: the leaderboards hold no protocol with a claim's plugin "
                             "beside its reference (run `benchmark run --model all`)")
    protocols_used = sorted({v.protocol for v in found})
    trainings = sorted({v.basis.rsplit("training: ", 1)[-1] for v in found if "training: " in v.basis})
    lines = ["# Published claims, checked", "",
             markdown_text(f"Generated by `benchmark claims` from the leaderboard CSVs; do not edit by hand. The rows "
                           f"come from the protocol(s) {', '.join(protocols_used)} and the training recipe(s) "
                           f"{', '.join(trainings)} (the short recipes, not the papers'). `cifar10-jpeg` is CIFAR-10 "
                           "decoded from a lossy JPEG copy, not CIFAR-10: its verdicts are kept beyond the papers' "
                           "settings."), "",
             markdown_text("A claim is tested only where its paper makes it (its eps or sigma), else at the dataset's "
                           "eps, or over the noise sweep with Holm's correction. At each point the effect is the "
                           "plugin's accuracy less its reference's (the paper's comparison model), with a 95% "
                           "interval. "
                           "A claim holds where the effect is significant after the correction and at least "
                           f"{MINIMUM_GAIN:.0%}; a gain bought with a significant clean loss of as much says so "
                           "('holds, at a cost of N points clean'). It holds only against weak attacks where that is "
                           "true under "
                           "FGSM or PGD-20 alone but not under the worst case over every attack; otherwise it does not "
                           "hold. On a row with a gradient-masking flag it holds only on a flagged row. A certified "
                           "claim compares the certified accuracy with the reference's certified accuracy, or its "
                           "attacked accuracy (an upper bound). An uncertainty claim needs the detection AUROC's "
                           "interval above chance, under the protocol's attacks and under the adaptive attack on the "
                           "detector. Every verdict below names the decision rule, protocol and training it is about."),
             ""]
    lines[2:2] = [f"> **{markdown_text(note)}**\n" for note in retired_notes(v.protocol for v in found)]
    paper = [v for v in found if v.claim.in_paper_setting(v.dataset)]
    beyond = [v for v in found if not v.claim.in_paper_setting(v.dataset)]
    for title, part in (("In the papers' settings", paper), ("Beyond the papers' settings", beyond)):
        if part:
            lines += [f"## {title}", "", markdown_table(_opening(part)), ""]
    lines += ["## Each verdict", ""]
    for v in paper + beyond:
        c = v.claim
        lines += [f"### {markdown_text(c.method)} ({markdown_text(v.model)}) on {markdown_text(v.dataset)}: "
                  f"{markdown_text(c.statement)}", "",
                  markdown_text(f"Source: {c.source}. In its words: \"{c.words}\". Its datasets: "
                                f"{', '.join(c.datasets) or 'any'}; threat: {c.threat}; its attack: {c.paper_attack}; "
                                f"its figure: {c.paper_figure}; its comparison: {c.comparison}, here `{c.reference}`."),
                  "", markdown_text(f"Verdict: {v.verdict}; {v.why}. About the {v.basis}."), ""]
        if not v.points.empty:
            lines += [markdown_table(v.points), ""]
    return "\n".join(lines)


def write_claims(out: Path, path: Path | None = None) -> Path:
    """Write the claims page of ``out``'s leaderboards to ``path`` (default ``leaderboards/claims.md``)."""
    board_dir = Path(out) / "leaderboards"
    path = Path(path) if path is not None else board_dir / "claims.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, claims_markdown(verdicts(board_dir)))
    return path

