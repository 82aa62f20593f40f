"""The calibration and robustness report of one run, as markdown with PNGs and as one self-contained HTML page.

Both formats are rendered from the same list of blocks, so they cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.store import RunStore

matplotlib.use("Agg")  # reports are rendered headless, on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

RULES = {
    "deterministic": "argmax of the logits (one forward pass)",
    "stochastic": "argmax of the mean softmax over S draws; attack losses are the cross-entropy of the log of the "
                  "mean softmax over K draws (log-mean-exp of log-softmax), every draw batched into one pass",
    "moments": "argmax of the predictive mean of the logits; attacks follow the cross-entropy of the mean and, "
               "where the plugin has one, separately its own likelihood",
    "ensemble": "argmax of the members' mean softmax; attacks follow the cross-entropy of that mean",
}
NOISE_COLUMNS = {"accuracy": "accuracy", "ece": "ECE", "nll": "NLL", "brier": "Brier", "entropy": "entropy", "auroc": "AUROC"}
JPEG_CAVEAT = (
    "cifar10-jpeg is CIFAR-10 decoded from a public JPEG copy: the images are lossy, so these are not "
    "CIFAR-10 numbers and must not be compared with published CIFAR-10 results."
)
DPI = 120


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Image:
    file: str
    alt: str


Block = Heading | Paragraph | Table | Bullets | Image


def write_report(run_dir: Path, out_dir: Path) -> Path:
    """Render report.md, report.html and the PNGs of the run in run_dir into out_dir; return report.md."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    missing = [name for name in ("metrics.csv", "config.json") if not (run_dir / name).exists()]
    if missing:
        raise BenchmarkError(f"{run_dir} is not a finished run: missing {', '.join(missing)}")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    metrics = pd.read_csv(run_dir / "metrics.csv")
    # absent when the clean condition failed
    reliability = pd.read_csv(run_dir / "reliability.csv") if (run_dir / "reliability.csv").exists() else None
    failures = RunStore(run_dir).failures()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("reliability.png", "noise.png", "eps.png"):  # a re-render must not show an older run's plot
        (out_dir / stale).unlink(missing_ok=True)

    clean = _condition(metrics, "clean")
    clean_row = clean.iloc[0] if not clean.empty else pd.Series(dtype=float)
    noise = _condition(metrics, "noise")
    attack_names = list(config.get("attack_settings") or {})
    attacks = {name: _condition(metrics, name) for name in (*attack_names, "robust")}
    attacks = {name: frame for name, frame in attacks.items() if not frame.empty}

    if reliability is not None:
        _plot_reliability(reliability, clean_row.get("ece"), out_dir / "reliability.png")
    if not noise.empty:
        _plot_noise(noise, out_dir / "noise.png")
    if attacks:
        _plot_eps(attacks, float(config["eps"]), out_dir / "eps.png")

    blocks = _blocks(config, clean_row, noise, attacks, metrics, failures)
    (out_dir / "report.md").write_text(_markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(_html(blocks, config, out_dir), encoding="utf-8")
    return out_dir / "report.md"


def _condition(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """One condition as a table indexed by its parameter (sigma or eps) with one column per metric."""
    rows = metrics[(metrics["condition"] == name) & (metrics["metric"] != "failed")]
    return rows.pivot_table(index="param", columns="metric", values="value", dropna=False).sort_index()


# ---------------------------------------------------------------- content


def _blocks(config: dict, clean: pd.Series, noise: pd.DataFrame, attacks: dict[str, pd.DataFrame],
            metrics: pd.DataFrame, failures: dict[str, str]) -> list[Block]:
    """The report's content, in reading order."""
    eps = float(config["eps"])
    blocks: list[Block] = [
        Heading(f"{config['model']} on {config['dataset']} ({config['profile']} profile)", level=1)
    ]
    if config["dataset"] == "cifar10-jpeg":
        blocks.append(Paragraph(JPEG_CAVEAT, note=True))
    blocks += [Heading("Settings"), Table(_settings_table(config))]
    blocks += [Heading("Results"), Table(_results_table(clean, noise, attacks.get("robust"), eps, config))]
    if failures:
        blocks += [Heading("Failed conditions"),
                   Paragraph("The plugin made these conditions fail (it raised, or returned NaN/inf or a wrong shape); "
                             "their metrics are missing and every figure that depends on them is left out.", note=True),
                   Table(pd.DataFrame(sorted(failures.items()), columns=["condition", "error"]))]

    blocks.append(Heading("Calibration on clean data"))
    if "clean" in failures:
        blocks.append(Paragraph("Not available: the clean condition failed."))
    else:
        blocks.append(Image("reliability.png", "Reliability diagram on clean data"))

    blocks.append(Heading("Gaussian noise sweep"))
    if noise.empty:
        blocks.append(Paragraph("Noise sweep: not run."))
    else:
        blocks += [Table(_noise_table(noise)), Image("noise.png", "Accuracy, ECE and entropy against noise sigma")]

    blocks.append(Heading(f"Attacks (L∞, dataset ε = {_eps(eps)})"))
    if attacks:
        blocks.append(Table(_eps_table(attacks)))
        settings = config.get("attack_settings") or {}
        failed = set(metrics[metrics["metric"] == "failed"]["condition"])
        not_run = [name for name in settings if name not in attacks and name not in failed] + ["autoattack"] * ("autoattack" not in settings)
        if not_run:
            blocks.append(Paragraph(f"Not run: {', '.join(not_run)}."))
        blocks.append(Image("eps.png", "Accuracy against epsilon"))
    else:
        blocks.append(Paragraph("Attacks: not run."))

    blocks += _how_attacked(config, metrics, failures)
    blocks += _certification(_condition(metrics, "certify"), eps)

    blocks.append(Heading("Notes"))
    notes = [str(note) for note in config.get("notes") or []]
    blocks.append(Bullets(notes) if notes else Paragraph("None."))
    return blocks


def _certification(certify: pd.DataFrame, eps: float) -> list[Block]:
    """The certify condition (plugins with interval bounds only): certified accuracy per eps."""
    if certify.empty:
        return []
    table = pd.DataFrame({
        "ε": [_eps(e) + (" (dataset ε)" if np.isclose(e, eps) else "") for e in certify.index],
        "certified accuracy (95% interval)": [
            _with_interval(row.rename({"certified_acc": "accuracy", "certified_acc_ci_low": "accuracy_ci_low",
                                       "certified_acc_ci_high": "accuracy_ci_high"})) for _, row in certify.iterrows()],
        "certified (point, draw) pairs": [_num(v) for v in certify.get("certified_pair_fraction", pd.Series(index=certify.index, dtype=float))],
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


def _how_attacked(config: dict, metrics: pd.DataFrame, failures: dict[str, str]) -> list[Block]:
    """What a reviewer needs to check the evaluation: the rule attacked, every attack and its budget, how the
    worst case is formed, and each gradient-masking check with its evidence."""
    from benchmark import diagnostics

    settings = config.get("attack_settings") or {}
    kind = config.get("predictive", "")
    blocks: list[Block] = [Heading("How this model was attacked"), Paragraph(
        f"Decision rule attacked ({kind}): {RULES.get(kind, 'as declared by the plugin')}. "
        f"S = {config.get('samples')}, K = {config.get('eot')}, R = {config.get('reevals')}. "
        f"Input gradients: {'surrogate gradients through the non-differentiable forward (BPDA), as the plugin declares' if config.get('gradients') == 'surrogate' else 'exact autograd'}. "
        "No attack changes the model's train/eval mode or switches its randomness off.")]
    items = []
    for name, s in settings.items():
        purpose = s.get("purpose", "")
        budget = ", ".join(f"{k}={v}" for k, v in s.items() if k != "purpose")
        items.append(f"{name}: {purpose} ({budget})" if purpose else f"{name}: {budget}")
    blocks.append(Bullets(items) if items else Paragraph("No attacks recorded."))
    blocks.append(Paragraph(
        "Every final adversarial point is re-evaluated R times with fresh randomness by the deployed rule. "
        "Robust accuracy at an ε is the per-example worst case over clean correctness and every attack run at "
        "that ε (in the same re-evaluation); the reported value is its mean over the R re-evaluations with a 95% "
        "interval (binomial error of n examples plus the spread over R), and the worst case counts an example only "
        "if it survived all R. Black-box attacks run on the examples every white-box attack missed."))
    fired = set(diagnostics.flags(metrics, int(config.get("num_classes", 10)), kind)) if "num_classes" in config else set()
    diag = metrics[metrics["condition"] == "diagnostics"].set_index("metric")["value"]
    evidence = {"eps-no-collapse": "large_eps_accuracy", "more-steps-helps-model": "more_steps_gain",
                "eot-not-converged": "eot_change", "blackbox-beats-whitebox": "blackbox_gain",
                "zero-grad": "zero_grad_share", "nan-grad": "nan_grad_share",
                "probability-output": "probability_output_share", "randomness-unreported": "output_variation"}
    rows = [(flag, "FIRED" if flag in fired else ("not applicable" if evidence[flag] not in diag else "ok"),
             f"{evidence[flag]} = {_num(diag.get(evidence[flag]))}", meaning)
            for flag, meaning in diagnostics.FLAGS.items() if flag in evidence]
    rows.append(("condition-failed", "FIRED" if failures else "ok",
                 f"failed: {', '.join(sorted(failures)) or 'none'}", diagnostics.FLAGS["condition-failed"]))
    blocks += [Heading("Gradient-masking checks", level=3),
               Table(pd.DataFrame(rows, columns=["flag", "result", "evidence", "fires when"]))]
    return blocks


def _settings_table(config: dict) -> pd.DataFrame:
    rows = [
        ("Predictive kind", config.get("predictive")),
        ("Samples S", config.get("samples")),
        ("EOT samples K", config.get("eot")),
        ("Re-evaluations R", config.get("reevals")),
        ("Examples n", config.get("n_examples")),
        ("Threat", config.get("threat", "Linf")),
        ("ε", _eps(float(config["eps"]))),
        ("Seed", config.get("seed")),
        ("Device", config.get("device")),
        ("Version", config.get("version")),
        ("Date", config.get("date")),
        ("Run id", config.get("run_id")),
    ]
    return pd.DataFrame([(k, "n/a" if v is None else str(v)) for k, v in rows], columns=["setting", "value"])


def _results_table(
    clean: pd.Series, noise: pd.DataFrame, robust: pd.DataFrame | None, eps: float, config: dict
) -> pd.DataFrame:
    rows = [
        ("Clean accuracy", _num(clean.get("accuracy"))),
        ("Clean ECE", _num(clean.get("ece"))),
        ("Clean NLL", _num(clean.get("nll"))),
        ("Clean Brier", _num(clean.get("brier"))),
    ]
    at_eps = _at(robust, eps)
    label = f"Robust accuracy at ε = {_eps(eps)}"
    if at_eps is None:
        rows += [(label, "not run")]
    else:
        rows += [
            (f"{label} (95% interval)", _with_interval(at_eps)),
            (f"{label}, worst of R = {config.get('reevals', 1)} re-evaluations", _num(at_eps.get("accuracy_worst"))),
        ]
    noisy = noise.loc[noise.index > 0, "accuracy"] if "accuracy" in noise else pd.Series(dtype=float)
    rows.append(("Noise accuracy, mean over σ > 0", _num(noisy.mean()) if not noisy.empty else "not run"))
    return pd.DataFrame(rows, columns=["metric", "value"])


def _noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({"σ": [f"{s:g}" for s in noise.index]})
    for column, label in NOISE_COLUMNS.items():
        if column in noise:
            table[label] = [_num(v) for v in noise[column]]
    return table


def _eps_table(attacks: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per epsilon, one column per attack (mean [95% interval]), plus the robust worst case."""
    epsilons = sorted({e for frame in attacks.values() for e in frame.index})
    table = pd.DataFrame({"ε": [_eps(e) for e in epsilons]})
    for name, frame in attacks.items():
        table[name] = [_with_interval(_at(frame, e)) for e in epsilons]
    if "robust" in attacks:
        worst = [_at(attacks["robust"], e) for e in epsilons]
        table["robust, worst of R"] = [_num(None if row is None else row.get("accuracy_worst")) for row in worst]
    return table


def _at(frame: pd.DataFrame | None, param: float) -> pd.Series | None:
    """The row of frame at param, matched with a tolerance because params went through CSV."""
    if frame is None or frame.empty:
        return None
    hits = frame[np.isclose(frame.index.to_numpy(dtype=float), param)]
    return None if hits.empty else hits.iloc[0]


def _with_interval(row: pd.Series | None) -> str:
    if row is None:
        return "—"
    low, high = row.get("accuracy_ci_low"), row.get("accuracy_ci_high")
    if _missing(low) or _missing(high):
        return _num(row.get("accuracy"))
    return f"{_num(row.get('accuracy'))} [{_num(low)}, {_num(high)}]"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value: object) -> str:
    return "n/a" if _missing(value) else f"{float(value):.4f}"


def _eps(eps: float) -> str:
    """CIFAR-style budgets read as k/255; everything else as a plain number."""
    k = eps * 255
    return f"{round(k)}/255" if 0 < eps < 0.1 and abs(k - round(k)) < 1e-4 else f"{eps:g}"


# ---------------------------------------------------------------- figures


def _plot_reliability(table: pd.DataFrame, ece: float | None, path: Path) -> None:
    """Accuracy per confidence bin against the diagonal, with the gap to the mean confidence and the counts."""
    width = table["bin_upper"] - table["bin_lower"]
    filled = table["count"] > 0
    with sns.axes_style("whitegrid"):
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, layout="tight"
        )
    top.bar(table["bin_lower"], table["accuracy"].fillna(0), width=width, align="edge",
            color=sns.color_palette()[0], edgecolor="white", label="accuracy")
    gap_bottom = np.minimum(table["accuracy"], table["confidence"])[filled]
    gap = (table["accuracy"] - table["confidence"]).abs()[filled]
    top.bar(table["bin_lower"][filled], gap, bottom=gap_bottom, width=width[filled], align="edge",
            color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red", label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.set_title("Reliability on clean data" + ("" if _missing(ece) else f" (ECE = {ece:.4f})"))
    top.legend(loc="upper left")

    bottom.bar(table["bin_lower"], table["count"], width=width, align="edge", color="0.5", edgecolor="white")
    for lower, w, count in zip(table["bin_lower"], width, table["count"]):
        if count > 0:
            bottom.annotate(str(int(count)), (lower + w / 2, count), ha="center", va="bottom", fontsize=7)
    bottom.set_yscale("log")
    bottom.set_ylim(0.8, max(table["count"].max(), 1) * 8)
    bottom.set(xlabel="confidence (max probability)", ylabel="count")
    _save(fig, path)


def _plot_noise(noise: pd.DataFrame, path: Path) -> None:
    """Accuracy, ECE and mean entropy against sigma, side by side so a degrading model reads at a glance."""
    panels = [("accuracy", "accuracy"), ("ece", "ECE"), ("entropy", "mean predictive entropy (nats)")]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="tight")
    for ax, (column, label) in zip(axes, panels):
        if column in noise:
            ax.plot(noise.index, noise[column], marker="o")
        ax.set(xlabel="noise σ", ylabel=label, title=label)
    axes[0].set_ylim(0, 1.02)
    _save(fig, path)


def _plot_eps(attacks: dict[str, pd.DataFrame], eps: float, path: Path) -> None:
    """Accuracy against epsilon per attack, and the per-example worst case with its 95% interval."""
    palette = dict(zip([n for n in attacks if n != "robust"], sns.color_palette("tab10")))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="tight")
    for name, frame in attacks.items():
        if name == "robust":
            continue
        ax.plot(frame.index, frame["accuracy"], marker="o", linestyle="-" if len(frame) > 1 else "none",
                color=palette[name], label=name)
    if "robust" in attacks:
        robust = attacks["robust"]
        ax.plot(robust.index, robust["accuracy"], color="black", linewidth=2, marker="s", label="robust (worst over attacks)")
        if {"accuracy_ci_low", "accuracy_ci_high"} <= set(robust.columns):
            ax.fill_between(robust.index, robust["accuracy_ci_low"], robust["accuracy_ci_high"],
                            color="black", alpha=0.15, label="robust 95% interval")
    ax.axvline(eps, color="0.5", linestyle=":", label=f"dataset ε = {_eps(eps)}")
    ax.set(xlabel="ε (L∞)", ylabel="accuracy", ylim=(0, 1.02), title="Accuracy under attack")
    ax.legend(fontsize="small")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------- rendering


def markdown_text(value: object) -> str:
    """Text made inert in Markdown: tags become entities (a plugin named ``<script>`` shows as text),
    table pipes and link brackets are escaped, newlines cannot end a table row."""
    text = html.escape(str(value), quote=False).replace("\n", " ")
    return text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def _markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {markdown_text(text)}")
            case Paragraph(text, note):
                parts.append(f"> **Note:** {markdown_text(text)}" if note else markdown_text(text))
            case Table(frame):
                parts.append(_markdown_table(frame))
            case Bullets(items):
                parts.append("\n".join(f"- {markdown_text(item)}" for item in items))
            case Image(file, alt):
                parts.append(f"![{alt}]({file})")
    return "\n\n".join(parts) + "\n"


def _markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub table without tabulate."""
    lines = ["| " + " | ".join(markdown_text(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(markdown_text(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5rem 1rem; }
img { max-width: 100%; }
"""


def _html(blocks: list[Block], config: dict, out_dir: Path) -> str:
    """One page with the PNGs inlined, so it can be mailed or archived alone; every string is escaped."""
    e = html.escape
    body = []
    for block in blocks:
        match block:
            case Heading(text, level):
                body.append(f"<h{level}>{e(text)}</h{level}>")
            case Paragraph(text, note):
                body.append(f'<p class="note"><strong>Note:</strong> {e(text)}</p>' if note else f"<p>{e(text)}</p>")
            case Table(frame):
                head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>"
                    for row in frame.itertuples(index=False)
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            case Bullets(items):
                body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
            case Image(file, alt):
                data = base64.b64encode((out_dir / file).read_bytes()).decode("ascii")
                body.append(f'<p><img src="data:image/png;base64,{data}" alt="{e(alt)}"></p>')
    title = e(f"{config['model']} on {config['dataset']} ({config['profile']} profile)")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
