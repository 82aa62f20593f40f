"""The figures of a report: reliability diagram, noise sweep, accuracy against epsilon, the uncertainty scores'
distributions and the risk-coverage curves (PNG files); and the leaderboard's figures, every model at once."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from benchmark.metrics import risk_coverage
from benchmark.names import ROBUST
from benchmark.render import eps_text, missing

matplotlib.use("Agg")  # reports are rendered headless, on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

DPI = 120


def plot_reliability(table: pd.DataFrame, ece: float | None, path: Path) -> None:
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
    top.set_title("Reliability on clean data" + ("" if missing(ece) else f" (ECE = {ece:.4f})"))
    top.legend(loc="upper left")

    bottom.bar(table["bin_lower"], table["count"], width=width, align="edge", color="0.5", edgecolor="white")
    for lower, w, count in zip(table["bin_lower"], width, table["count"], strict=True):
        if count > 0:
            bottom.annotate(str(int(count)), (lower + w / 2, count), ha="center", va="bottom", fontsize=7)
    bottom.set_yscale("log")
    bottom.set_ylim(0.8, max(table["count"].max(), 1) * 8)
    bottom.set(xlabel="confidence (max probability)", ylabel="count")
    _save(fig, path)


def plot_noise(noise: pd.DataFrame, path: Path) -> None:
    """Accuracy, ECE and mean entropy against sigma, side by side so a degrading model reads at a glance."""
    panels = [("accuracy", "accuracy"), ("ece", "ECE"), ("entropy", "mean predictive entropy (nats)")]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="tight")
    for ax, (column, label) in zip(axes, panels, strict=True):
        if column in noise:
            ax.plot(noise.index, noise[column], marker="o")
        ax.set(xlabel="noise σ", ylabel=label, title=label)
    axes[0].set_ylim(0, 1.02)
    _save(fig, path)


def plot_eps(attacks: dict[str, pd.DataFrame], eps: float, path: Path) -> None:
    """Accuracy against epsilon per attack, and the per-example worst case with its 95% interval."""
    names = [n for n in attacks if n != ROBUST]
    palette = dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "tab20", len(names)), strict=True))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="tight")
    for name, frame in attacks.items():
        if name == ROBUST:
            continue
        ax.plot(frame.index, frame["accuracy"], marker="o", linestyle="-" if len(frame) > 1 else "none",
                color=palette[name], label=name)
    if ROBUST in attacks:
        robust = attacks[ROBUST]
        ax.plot(robust.index, robust["accuracy"], color="black", linewidth=2, marker="s",
                label="robust (worst over attacks)")
        if {"accuracy_ci_low", "accuracy_ci_high"} <= set(robust.columns):
            ax.fill_between(robust.index, robust["accuracy_ci_low"], robust["accuracy_ci_high"],
                            color="black", alpha=0.15, label="robust 95% interval")
    ax.axvline(eps, color="0.5", linestyle=":", label=f"dataset ε = {eps_text(eps)}")
    ax.set(xlabel="ε (L∞)", ylabel="accuracy", ylim=(0, 1.02), title="Accuracy under attack")
    ax.legend(fontsize="small")
    _save(fig, path)


#: each uncertainty score as an axis names it (benchmark.uncertainty defines them)
SCORE_LABELS = {"entropy": "predictive entropy (nats)", "mutual_information": "mutual information (nats)",
                "logit_variance": "logit variance (sum over classes)",
                "top_class_variance": "variance of the predicted class's logit"}
#: a score whose positive values span more than this ratio is drawn on a log axis (a logit variance often does)
LOG_SPAN = 100.0
SCORE_BINS = 30


def plot_score_distributions(panels: dict[str, dict[str, np.ndarray]], thresholds: dict[str, float],
                             path: Path) -> None:
    """One panel per score (``panels``: score -> group label -> values): each group's share of points per bin, so
    that groups of different sizes compare, and the detector's threshold as a dashed line. A group keeps its
    colour in every panel (by its label's first place over the panels). Where a score's positive values span more
    than :data:`LOG_SPAN` the axis is logarithmic, a zero (a clamped mutual information) then counted in the
    lowest bin."""
    labels = list(dict.fromkeys(label for groups in panels.values() for label in groups))
    colours = dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), layout="constrained",
                                 squeeze=False)
    for ax, (score, groups) in zip(axes[0], panels.items(), strict=True):
        values = {label: np.asarray(v, dtype=float)[np.isfinite(v)] for label, v in groups.items()}
        every = np.concatenate([*values.values(), [thresholds.get(score, np.nan)]])
        every = every[np.isfinite(every)]
        positive = every[every > 0]
        log = positive.size > 0 and positive.max() / positive.min() > LOG_SPAN
        if log:
            floor = positive.min()
            values = {label: np.maximum(v, floor) for label, v in values.items()}
            bins = np.geomspace(floor, positive.max() * 1.0001, SCORE_BINS + 1)
            ax.set_xscale("log")
        else:
            low, high = (every.min(), every.max()) if every.size else (0.0, 1.0)
            bins = np.linspace(low, high if high > low else low + 1.0, SCORE_BINS + 1)
        for label, v in values.items():
            if v.size:
                ax.hist(v, bins=bins, weights=np.full(v.size, 1 / v.size), histtype="stepfilled", alpha=0.18,
                        color=colours[label])
            ax.hist(v, bins=bins, weights=np.full(v.size, 1 / max(v.size, 1)), histtype="step", linewidth=1.6,
                    color=colours[label], label=f"{label} (n = {v.size})")
        threshold = thresholds.get(score)
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                       label=f"threshold {threshold:.4g} (5% false alarms)")
        ax.set(xlabel=SCORE_LABELS.get(score, score) + (" (log)" if log else ""), ylabel="share of the group",
               title=score.replace("_", " "))
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    _save(fig, path)


def plot_risk_coverage(unattacked: dict[str, tuple[np.ndarray, np.ndarray]],
                       attacked: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """The risk-coverage curve (:func:`benchmark.metrics.risk_coverage`) of each group of inputs, each given as
    label -> (uncertainty, correct): the error rate on the inputs the model keeps when it abstains on the most
    uncertain. ``unattacked`` (clean, then noisy) in black and dashed green, ``attacked`` (by growing eps) in
    darkening reds. A curve that falls to the left is an uncertainty that puts its errors last; a flat one does
    not know when it is wrong."""
    styles = [{"color": "black", "linewidth": 2}, {"color": sns.color_palette("colorblind")[2], "linestyle": "--"}]
    shades = sns.color_palette("flare", max(len(attacked), 1))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="tight")
    for (label, (uncertainty, correct)), style in [*zip(unattacked.items(), styles, strict=False),
                                                   *((item, {"color": shade})
                                                     for item, shade in zip(attacked.items(), shades, strict=False))]:
        coverage, risk = risk_coverage(uncertainty, correct)
        ax.plot(coverage, risk, label=label, **style)
    ax.set(xlabel="coverage (share of inputs kept)", ylabel="risk (error rate on the kept inputs)", xlim=(0, 1),
           ylim=(0, 1.02), title="Risk against coverage, abstaining on the highest predictive entropy")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------- the leaderboard's figures (all models at once)

BASELINE = "baseline"


#: seaborn's colour-blind palette without its grey: the baseline is black and the reference lines are grey
COLOURS = [colour for i, colour in enumerate(sns.color_palette("colorblind")) if i != 7]
#: ten markers, coprime with the nine colours: two models of one colour never share a marker (below 90 models)
MARKERS = "osD^vP*Xph"
#: the baseline's dashes left out; a colour's next round of models takes the next line style
LINE_STYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))


def model_styles(models: list[str]) -> dict[str, dict]:
    """One look per model that survives colour blindness and greyscale: a board has more models than a reader
    tells colours apart, so two models of one colour differ in marker and in line style too (up to 36 models);
    the baseline black and dashed, drawn last so every method is read against it."""
    others = [m for m in models if m != BASELINE]
    styles = {m: dict(color=COLOURS[i % len(COLOURS)], marker=MARKERS[i % len(MARKERS)],
                      linestyle=LINE_STYLES[(i // len(COLOURS)) % len(LINE_STYLES)], linewidth=1.4, zorder=2)
              for i, m in enumerate(others)}
    if BASELINE in models:
        styles[BASELINE] = dict(color="black", marker="s", linestyle="--", linewidth=2.4, zorder=3)
    return styles


def plot_board_eps(rows: pd.DataFrame, curves: pd.DataFrame, eps: float, path: Path) -> None:
    """Robust accuracy against eps for every model (``curves``: the worst-case rows of the long eps table), with
    its 95% interval as a band, starting from the clean accuracy at eps = 0."""
    styles = model_styles(list(rows.model))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    for row in rows.itertuples():
        curve = curves[curves.model == row.model].sort_values("eps")
        # from the clean accuracy at eps 0; NaN where a condition failed and left a metric missing
        low, mid, high = (np.concatenate([[row.clean_acc], pd.to_numeric(curve[c], errors="coerce")]).astype(float)
                          for c in ("accuracy_ci_low", "accuracy", "accuracy_ci_high"))
        xs = np.concatenate([[0.0], curve.eps]).astype(float)
        style = styles[row.model]
        ax.plot(xs, mid, label=row.model, **style)
        ax.fill_between(xs, low, high, color=style["color"], alpha=0.12,
                        linewidth=0, zorder=1)
    ax.axvline(eps, color="0.5", linestyle=":", linewidth=1)
    ax.set(xlabel="ε (L∞)", ylabel="robust accuracy", ylim=(0, 1.02), xlim=(0, None),
           title="Robust accuracy against ε (worst case over every attack; bands: 95% intervals)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def plot_board_noise(rows: pd.DataFrame, curves: pd.DataFrame, path: Path) -> None:
    """Accuracy and ECE against the Gaussian noise sigma for every model, side by side."""
    styles = model_styles(list(rows.model))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    for row in rows.itertuples():
        curve = curves[curves.model == row.model].sort_values("sigma")
        for ax, column in zip(axes, ("accuracy", "ece"), strict=True):
            ax.plot(curve.sigma, curve[column], label=row.model, **styles[row.model])
    axes[0].set(xlabel="noise σ", ylabel="accuracy", ylim=(0, 1.02), title="Accuracy under Gaussian noise")
    axes[1].set(xlabel="noise σ", ylabel="ECE", ylim=(0, None), title="Calibration error under Gaussian noise")
    axes[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def plot_board_tradeoff(rows: pd.DataFrame, path: Path) -> None:
    """Draw :func:`tradeoff_figure` into ``path``."""
    _save(tradeoff_figure(rows), path)


def plot_board_detection(rows: pd.DataFrame, path: Path) -> bool:
    """Does a model's uncertainty see the attacks that beat it? Its detection AUROC (``detection_auroc``, filled)
    and the same under the adaptive attack (``detection_auroc_adaptive``, hollow, joined by a line: the drop is
    the detection an attacker who knows about it takes away) against its robust accuracy, one model per colour
    and marker, the score each used in the legend. Only the rows with a detection AUROC are drawn; where none has
    one nothing is drawn, an older figure at ``path`` is removed, and False is returned."""
    from benchmark.board_pages import detection_rows  # the page lists the figure on the same rows

    shown = detection_rows(rows)
    if shown.empty:
        Path(path).unlink(missing_ok=True)
        return False
    styles = model_styles(list(rows.model))  # the models' looks of every other figure of this table
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    for row in shown.itertuples():
        style = styles[row.model]
        x = float(row.robust_acc)
        y, adaptive = float(row.detection_auroc), pd.to_numeric(row.detection_auroc_adaptive, errors="coerce")
        score = row.detection_score if isinstance(row.detection_score, str) and row.detection_score else "?"
        ax.scatter(x, y, marker=style["marker"], s=MARKER_AREA, color=style["color"], zorder=style["zorder"] + 1,
                   label=f"{row.model} ({score})")
        if not missing(adaptive):
            ax.plot([x, x], [y, adaptive], color=style["color"], linestyle=style["linestyle"], linewidth=1.2,
                    zorder=style["zorder"])
            ax.scatter(x, adaptive, marker=style["marker"], s=MARKER_AREA, facecolors="white",
                       edgecolors=style["color"], linewidths=1.5, zorder=style["zorder"] + 1)
    ax.axhline(0.5, color="0.5", linestyle=":", linewidth=1, label="0.5: the score is blind to the attack")
    ax.scatter([], [], marker="o", s=MARKER_AREA, color="0.3", label="filled: the attacks")
    ax.scatter([], [], marker="o", s=MARKER_AREA, facecolors="white", edgecolors="0.3", linewidths=1.5,
               label="hollow: the adaptive attack")
    ax.set(xlabel="robust accuracy at eps", ylabel="detection AUROC of the attacks' points", xlim=(-0.02, 1.02),
           ylim=(0, 1.02),
           title="Detection of the attacks against robust accuracy (up: seen)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)
    return True


#: the tradeoff scatter's markers (points squared) and names (points)
MARKER_AREA, LABEL_SIZE = 60, 8
LABEL_PAD = 1  # points of white around a name
#: where a name may sit around its point, nearest first: beside, above or below it, then at a corner; each
#: direction at the first ring's distance (points from the point to the name's near edge), then at the next
#: ring's, joined to the point by a thin line
LABEL_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
LABEL_RINGS = (5, 14, 24, 36, 50)


def tradeoff_figure(rows: pd.DataFrame) -> plt.Figure:
    """Clean accuracy against robustness (the normalised area under the robust-accuracy curve), one point per
    model, named; dashed lines through the baseline split the plane into better and worse on each axis; a hollow
    marker is a flagged row (its robustness may be overstated)."""
    styles = model_styles(list(rows.model))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7, 5), dpi=DPI, layout="constrained")
    for row in rows.itertuples():
        style = styles[row.model]
        flagged = isinstance(row.flags, str) and bool(row.flags)
        ax.scatter(row.robust_auc, row.clean_acc, marker=style["marker"], s=MARKER_AREA, zorder=style["zorder"],
                   facecolors="none" if flagged else style["color"], edgecolors=style["color"], linewidths=1.5)
        if row.model == BASELINE:
            ax.axvline(row.robust_auc, color="black", linestyle="--", linewidth=1)
            ax.axhline(row.clean_acc, color="black", linestyle="--", linewidth=1)
    ax.margins(0.12)  # room for the names of the points at the edges
    ax.set(xlabel="robustness: normalised area under robust accuracy against ε", ylabel="clean accuracy",
           title="Clean accuracy against robustness (up and right is better; hollow: flagged)")
    fig.canvas.draw()  # the layout settles the axes first: the names are placed in its pixels, which then stay
    fig.set_layout_engine("none")
    _name_points(ax, list(zip(rows.robust_auc, rows.clean_acc, strict=True)), list(rows.model))
    return fig


def _name_points(ax: plt.Axes, points: list[tuple[float, float]], names: list[str]) -> None:
    """Name each point at the nearest place around it (measured with the renderer's text extents) where the name
    covers no other name and no point, stays inside the axes, and is nearer its own point than any other (so it
    cannot be read as another's); where no place is free, at the least covered one."""
    renderer = ax.figure.canvas.get_renderer()
    pixels = ax.figure.dpi / 72  # per point
    radius = np.sqrt(MARKER_AREA) / 2 * pixels
    anchors = ax.transData.transform(points)
    taken = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in anchors]
    inside = ax.get_window_extent(renderer)
    for i, ((x, y), point, name) in enumerate(zip(anchors, points, names, strict=True)):
        probe = ax.text(0, 0, name, fontsize=LABEL_SIZE)
        width, height = probe.get_window_extent(renderer).size + 2 * LABEL_PAD * pixels
        probe.remove()
        places = []
        for ring in LABEL_RINGS:
            for across, up in LABEL_DIRECTIONS:
                left = x + across * ring * pixels - width * (across < 0) - width / 2 * (across == 0)
                bottom = y + up * ring * pixels - height * (up < 0) - height / 2 * (up == 0)
                box = Bbox.from_bounds(left, bottom, width, height)
                covered = sum(_overlap(box, other) for other in taken) + width * height - _overlap(box, inside)
                mistaken = any(_distance(box, other) < ring * pixels for j, other in enumerate(anchors) if j != i)
                # rounded: an area computed as a difference is not exactly 0 when nothing is covered
                places.append((round(covered + mistaken * width * height, 3), ring, across, up, box))
        _, ring, across, up, box = min(places, key=lambda place: place[0])  # the nearest of the least covered
        ax.annotate(name, point, xytext=(across * ring, up * ring), textcoords="offset points", fontsize=LABEL_SIZE,
                    ha={1: "left", -1: "right", 0: "center"}[across], va={1: "bottom", -1: "top", 0: "center"}[up],
                    bbox=dict(boxstyle=f"square,pad={LABEL_PAD / LABEL_SIZE}", facecolor="white", edgecolor="none",
                              alpha=0.8),  # the baseline's dashed lines pass behind a name, not through it
                    arrowprops=None if ring == LABEL_RINGS[0] else dict(arrowstyle="-", color="0.4", linewidth=0.7,
                                                                        shrinkA=0, shrinkB=radius / pixels))
        taken.append(box)



def _overlap(a: Bbox, b: Bbox) -> float:
    """The area two boxes share."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _distance(box: Bbox, point: np.ndarray) -> float:
    """How far ``point`` is from ``box`` (0 inside it)."""
    return float(np.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1)))
