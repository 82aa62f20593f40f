"""The figures of a report: reliability diagram, noise sweep, accuracy against epsilon (PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from benchmark.render import eps_text, missing

matplotlib.use("Agg")  # reports are rendered headless, on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

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
    names = [n for n in attacks if n != "robust"]
    palette = dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "tab20", len(names)), strict=True))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="tight")
    for name, frame in attacks.items():
        if name == "robust":
            continue
        ax.plot(frame.index, frame["accuracy"], marker="o", linestyle="-" if len(frame) > 1 else "none",
                color=palette[name], label=name)
    if "robust" in attacks:
        robust = attacks["robust"]
        ax.plot(robust.index, robust["accuracy"], color="black", linewidth=2, marker="s",
                label="robust (worst over attacks)")
        if {"accuracy_ci_low", "accuracy_ci_high"} <= set(robust.columns):
            ax.fill_between(robust.index, robust["accuracy_ci_low"], robust["accuracy_ci_high"],
                            color="black", alpha=0.15, label="robust 95% interval")
    ax.axvline(eps, color="0.5", linestyle=":", label=f"dataset ε = {eps_text(eps)}")
    ax.set(xlabel="ε (L∞)", ylabel="accuracy", ylim=(0, 1.02), title="Accuracy under attack")
    ax.legend(fontsize="small")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
