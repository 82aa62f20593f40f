"""The calibration and robustness report of one run: its content, as blocks that benchmark.render turns into
report.md (with the PNGs of benchmark.figures) and one self-contained report.html, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark import diagnostics, figures
from benchmark.attacks.plan import MAIN
from benchmark.errors import BenchmarkError
from benchmark.names import (
    BINARIZATION,
    CLEAN,
    ROBUST,
    same_eps,
)
from benchmark.plugin import DECISION_RULES
from benchmark.render import (
    Block,
    Bullets,
    Heading,
    Image,
    Paragraph,
    Table,
    eps_text,
    html_page,
    interval_text,
    markdown,
    missing,
    num,
)
from benchmark.report_uncertainty import UNCERTAINTY_FIGURES, uncertainty_section
from benchmark.results import RunResults
from benchmark.store import RunStore

NOISE_COLUMNS = {"accuracy": "accuracy", "ece": "ECE", "nll": "NLL", "brier": "Brier", "entropy": "entropy",
                 "auroc": "AUROC"}


def write_report(run_dir: Path, out_dir: Path) -> Path:
    """Render report.md, report.html and the PNGs of the run in run_dir into out_dir; return report.md."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    absent = [name for name in ("metrics.csv", "config.json") if not (run_dir / name).exists()]
    if absent:
        raise BenchmarkError(f"{run_dir} is not a finished run: missing {', '.join(absent)}")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    results = RunResults.read(run_dir)
    # absent when the clean condition failed
    reliability = pd.read_csv(run_dir / "reliability.csv") if (run_dir / "reliability.csv").exists() else None
    failures = RunStore(run_dir).failures()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("reliability.png", "noise.png", "eps.png", *UNCERTAINTY_FIGURES):  # not an older run's plot
        (out_dir / stale).unlink(missing_ok=True)

    clean = results.table(CLEAN)
    clean_row = clean.iloc[0] if not clean.empty else pd.Series(dtype=float)
    noise = results.noise_curve()
    attack_names = list(config.get("attack_settings") or {})
    attacks = {name: results.table(name) for name in (*attack_names, ROBUST)}
    attacks = {name: frame for name, frame in attacks.items() if not frame.empty}

    if reliability is not None:
        figures.plot_reliability(reliability, clean_row.get("ece"), out_dir / "reliability.png")
    if not noise.empty:
        figures.plot_noise(noise, out_dir / "noise.png")
    if attacks:
        figures.plot_eps(attacks, float(config["eps"]), out_dir / "eps.png")

    blocks = _blocks(config, clean_row, noise, attacks, results, failures,
                     uncertainty_section(run_dir, config, results, out_dir))
    (out_dir / "report.md").write_text(markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(html_page(_title(config), blocks, out_dir), encoding="utf-8")
    return out_dir / "report.md"


def _title(config: dict) -> str:
    return f"{config['model']} on {config['dataset']} ({config['profile']} profile)"


# ---------------------------------------------------------------- content


def _blocks(config: dict, clean: pd.Series, noise: pd.DataFrame, attacks: dict[str, pd.DataFrame],
            results: RunResults, failures: dict[str, str], uncertainty: list[Block]) -> list[Block]:
    """The report's content, in reading order; ``uncertainty`` the section of :func:`_uncertainty`."""
    eps = float(config["eps"])
    blocks: list[Block] = [Heading(_title(config), level=1)]
    if config.get("dataset_description"):  # what the dataset is, from its manifest (a lossy copy says so there)
        blocks.append(Paragraph(f"Dataset {config['dataset']}: {config['dataset_description']}", note=True))
    blocks += [Heading("Settings"), Table(_settings_table(config))]
    blocks += [Heading("Results"), Table(_results_table(clean, results, eps, config))]
    if failures:
        blocks += [Heading("Failed conditions"),
                   Paragraph("The plugin made these conditions fail (it raised, or returned NaN/inf or a wrong shape); "
                             "their metrics are missing and every figure that depends on them is left out.", note=True),
                   Table(pd.DataFrame(sorted(failures.items()), columns=["condition", "error"]))]

    blocks.append(Heading("Calibration on clean data"))
    if CLEAN in failures:
        blocks.append(Paragraph("Not available: the clean condition failed."))
    else:
        blocks.append(Image("reliability.png", "Reliability diagram on clean data"))

    blocks.append(Heading("Gaussian noise sweep"))
    if noise.empty:
        blocks.append(Paragraph("Noise sweep: not run."))
    else:
        blocks += [Table(_noise_table(noise)), Image("noise.png", "Accuracy, ECE and entropy against noise sigma")]

    blocks.append(Heading(f"Attacks (L∞, dataset ε = {eps_text(eps)})"))
    if attacks:
        blocks.append(Table(_eps_table(attacks, results, eps)))
        settings = config.get("attack_settings") or {}
        failed = {name for name, _ in results.failed}
        not_run = [name for name in settings if name not in attacks and name not in failed]
        if not_run:
            blocks.append(Paragraph(f"Not run: {', '.join(not_run)}."))
        inapplicable = config.get("attacks_not_applicable") or {}
        if inapplicable:
            blocks.append(Paragraph("Not applicable to this model: " + "; ".join(
                f"{name} ({reason})" for name, reason in inapplicable.items()) + "."))
        elsewhere = other_profiles_attacks(config.get("profile"), set(settings))
        if elsewhere:
            blocks.append(Paragraph(f"Not in the {config.get('profile')} profile's plan: {', '.join(elsewhere)}."))
        blocks.append(Image("eps.png", "Accuracy against epsilon"))
    else:
        blocks.append(Paragraph("Attacks: not run."))

    blocks += _how_attacked(config, results, failures)
    blocks += _certification(results.certified_curve(), eps)
    blocks += uncertainty

    blocks.append(Heading("Notes"))
    notes = [str(note) for note in config.get("notes") or []]
    blocks.append(Bullets(notes) if notes else Paragraph("None."))
    return blocks


def other_profiles_attacks(profile: str | None, ran: set[str]) -> list[str]:
    """Attacks that every model gets under another profile's plan but did not run here (AutoAttack in quick)."""
    from benchmark.profiles import PROFILES

    names = [p.name for other in PROFILES.values() for p in other.attacks if p.needs == "always" and p.name not in ran]
    return list(dict.fromkeys(names)) if profile in PROFILES else []


def _certification(certify: pd.DataFrame, eps: float) -> list[Block]:
    """The certify condition (plugins with interval bounds only): certified accuracy per eps."""
    if certify.empty:
        return []
    table = pd.DataFrame({
        "ε": [eps_text(e, eps) + (" (dataset ε)" if same_eps(e, eps) else "") for e in certify.index],
        "certified accuracy (95% interval)": [_with_interval(row) for _, row in certify.iterrows()],
        "certified (point, draw) pairs": [
            num(v) for v in certify.get("certified_pair_fraction", pd.Series(index=certify.index, dtype=float))],
        "posterior draws S": [f"{v:g}" for v in certify.get("samples", pd.Series(1.0, index=certify.index))],
    })
    return [Heading("Certified robustness (interval bound propagation)"), Table(table),
            Paragraph("For each of S posterior draws the plugin bounds the logits over the whole ε-ball (clipped to "
                      "[0, 1]) by interval bound propagation; an example is certified for a draw when the lower "
                      "bound of its true logit exceeds the upper bound of every other logit, which also means the "
                      "draw classifies it correctly. Certified accuracy counts the examples certified for all S draws "
                      "(then the mean-softmax decision of those draws is correct everywhere in the ball): a sound "
                      "lower bound on robustness, unlike the attack rows, which are upper bounds. The pairs column "
                      "is the share of (example, draw) pairs certified.")]


def _how_attacked(config: dict, results: RunResults, failures: dict[str, str]) -> list[Block]:
    """What a reviewer needs to check the evaluation: the rule attacked, every attack and its budget, how the
    worst case is formed, and each gradient-masking check with its evidence."""
    settings = config.get("attack_settings") or {}
    kind = config.get("predictive", "")
    gradients = ("surrogate gradients through the non-differentiable forward (BPDA), as the plugin declares"
                 if config.get("gradients") == "surrogate" else "exact autograd")
    blocks: list[Block] = [Heading("How this model was attacked"), Paragraph(
        f"Decision rule attacked ({kind}): {DECISION_RULES.get(kind, 'as declared by the plugin')}. "
        f"S = {config.get('samples')}, K = {config.get('eot')}, R = {config.get('reevals')}. "
        f"Input gradients: {gradients}. "
        "No attack changes the model's train/eval mode or switches its randomness off.")]
    items = []
    for name, s in settings.items():
        purpose = s.get("purpose", "")
        budget = ", ".join(f"{k}={v}" for k, v in s.items() if k != "purpose")
        items.append(f"{name}: {purpose} ({budget})" if purpose else f"{name}: {budget}")
    blocks.append(Bullets(items) if items else Paragraph("No attacks recorded."))
    blocks += _backward_passes(config, results)
    blocks.append(Paragraph(
        "Every final adversarial point is re-evaluated R times with fresh randomness by the deployed rule. "
        "Robust accuracy at an ε is the per-example worst case over clean correctness and every attack run at "
        "that ε (in the same re-evaluation); the reported value is its mean over the R re-evaluations with a 95% "
        "interval (binomial error of n examples plus the spread over R), and the worst case counts an example only "
        "if it survived all R. Black-box attacks run on the examples every white-box attack missed."))
    fired = set(diagnostics.flags(results, int(config["num_classes"]), kind)) if "num_classes" in config else set()
    diag = results.evidence
    rows = []
    for flag in diagnostics.FLAGS:
        if flag.evidence is None:  # decided on the failed conditions, listed by the run store
            rows.append((flag.name, "FIRED" if failures else "ok", f"failed: {', '.join(sorted(failures)) or 'none'}",
                         flag.meaning))
        else:
            result = "FIRED" if flag.name in fired else ("not applicable" if flag.evidence not in diag else "ok")
            rows.append((flag.name, result, f"{flag.evidence} = {num(diag.get(flag.evidence))}", flag.meaning))
    blocks += [Heading("Gradient-masking checks", level=3),
               Table(pd.DataFrame(rows, columns=["flag", "result", "evidence", "fires when"]))]
    return blocks


def _backward_passes(config: dict, results: RunResults) -> list[Block]:
    """For a network attacked through several backward passes (BPDA variants): which one guided PGD best at each eps
    of the sweep (the cascade leaves a large eps only the survivors of the smaller ones, where all may tie)."""
    settings = config.get("attack_settings") or {}
    label = {MAIN: "the plugin's own surrogate"}
    label |= {name: s["backward"] for name, s in settings.items() if "backward" in s}
    if len(label) == 1:
        return []
    sweep = sorted({float(e) for name in label if name != MAIN for e in results.table(name).index})
    verdicts, dataset_eps = [], float(config["eps"])
    for eps in sweep:
        accuracy = {name: (row.get("accuracy") if (row := results.at(name, eps)) is not None else None)
                    for name in label}
        accuracy = {name: float("nan") if missing(value) else float(value) for name, value in accuracy.items()}
        winner = diagnostics.strongest_backward(accuracy)
        found = "none finished" if winner is None else f"{winner} ({num(accuracy[winner])}; own {num(accuracy[MAIN])})"
        verdicts.append(f"ε = {eps_text(eps, dataset_eps)}: {found}")
    listed = ", ".join(f"{name} ({backward})" for name, backward in label.items())
    return [Paragraph(f"Backward passes. The forward is not differentiable, so PGD with one budget followed each of "
                      f"these derivatives: {listed}. Strongest (lowest accuracy; the plugin's own on a tie): "
                      f"{'; '.join(verdicts)}. Every one enters the worst case.")]


def _settings_table(config: dict) -> pd.DataFrame:
    rows = [
        ("Predictive kind", config.get("predictive")),
        ("Samples S", config.get("samples")),
        ("EOT samples K", config.get("eot")),
        ("Re-evaluations R", config.get("reevals")),
        ("Examples n", config.get("n_examples")),
        ("Threat", config.get("threat", "Linf")),
        ("ε", eps_text(float(config["eps"]))),
        ("Seed", config.get("seed")),
        ("Device", config.get("device")),
        ("Version", config.get("version")),
        ("Date", config.get("date")),
        ("Run id", config.get("run_id")),
    ]
    return pd.DataFrame([(k, "n/a" if v is None else str(v)) for k, v in rows], columns=["setting", "value"])


def _results_table(clean: pd.Series, results: RunResults, eps: float, config: dict) -> pd.DataFrame:
    rows = [
        ("Clean accuracy", num(clean.get("accuracy"))),
        ("Clean ECE", num(clean.get("ece"))),
        ("Clean NLL", num(clean.get("nll"))),
        ("Clean Brier", num(clean.get("brier"))),
    ]
    at_eps = results.at(ROBUST, eps)
    label = f"Robust accuracy at ε = {eps_text(eps)}"
    if at_eps is None:
        rows += [(label, "not run")]
    else:
        rows += [
            (f"{label} (95% interval)", _with_interval(at_eps)),
            (f"{label}, worst of R = {config.get('reevals', 1)} re-evaluations", num(at_eps.get("accuracy_worst"))),
        ]
    noisy = results.noise_mean("accuracy")
    rows.append(("Noise accuracy, mean over σ > 0", "not run" if missing(noisy) else num(noisy)))
    rows += _binarization_row(results, eps)
    return pd.DataFrame(rows, columns=["metric", "value"])


def _binarization_row(results: RunResults, eps: float) -> list[tuple[str, str]]:
    """The attacks' self-test (benchmark.binarization): the share of its conclusive tests they passed; nothing for
    a run without it (made before it existed, or failed: the failed conditions list it)."""
    label = f"Binarization test at ε = {eps_text(eps)}: attacks' pass rate"
    row = results.at(BINARIZATION, eps)
    if row is None:
        return []
    tested, conclusive, passed = (int(row.get(m, 0)) for m in ("tested", "conclusive", "passed"))
    if not conclusive:
        return [(label, f"no conclusive test of {tested}")]
    return [(label, f"{num(row.get('pass_rate'))} ({passed} of {conclusive} conclusive tests passed; {tested} tested)")]


def _noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({"σ": [f"{s:g}" for s in noise.index]})
    for column, label in NOISE_COLUMNS.items():
        if column in noise:
            table[label] = [num(v) for v in noise[column]]
    return table


def _eps_table(attacks: dict[str, pd.DataFrame], results: RunResults, dataset_eps: float) -> pd.DataFrame:
    """One row per epsilon, one column per attack (mean [95% interval]), plus the robust worst case."""
    epsilons = sorted({e for frame in attacks.values() for e in frame.index})
    table = pd.DataFrame({"ε": [eps_text(e, dataset_eps) for e in epsilons]})
    for name in attacks:
        table[name] = [_with_interval(results.at(name, e)) for e in epsilons]
    if ROBUST in attacks:
        worst = [results.at(ROBUST, e) for e in epsilons]
        table["robust, worst of R"] = [num(None if row is None else row.get("accuracy_worst")) for row in worst]
    return table


def _with_interval(row: pd.Series | None) -> str:
    if row is None:
        return "—"
    if missing(row.get("accuracy")):
        return num(None)
    return interval_text(row.get("accuracy"), row.get("accuracy_ci_low"), row.get("accuracy_ci_high"), digits=4)


# ---------------------------------------------------------------- does the uncertainty see the attack?
