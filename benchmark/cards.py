"""Leaderboard rows as RobustBench model-info cards (``benchmark export --format robustbench``).

A card is the JSON RobustBench keeps per model under ``model_info/<dataset>/<threat>/<model>.json``: link,
name, authors, additional_data, number_forward_passes, dataset, venue, architecture, eps (``"8/255"``),
clean_acc and autoattack_acc (percent, as strings), reported. What a plugin's module docstring says (its paper's
authors, title, venue, arXiv id) is filled in; what this suite cannot know is set to :data:`TO_FILL` and listed
under ``fill_in``, so the author sees what to complete before submitting.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pandas as pd

from benchmark.board import datasets_on_board, table
from benchmark.errors import BenchmarkError
from benchmark.names import split_attacks
from benchmark.registry import create_model
from benchmark.render import eps_text
from benchmark.store import atomic_write_text, slug
from benchmark.zoo import PREFIX, THREAT, is_zoo_model

TO_FILL = "TO FILL"
#: "Authors, "Title", Venue Year" as the bundled plugins' module docstrings open
_CITATION = re.compile(r'(?P<authors>[A-Z][^"()]*?),\s*"(?P<title>[^"]+?)[,.]?",?\s*'
                       r'(?P<venue>arXiv[: ]*\d{4}\.\d{4,5}|[^;"]*?\d{4})')
_ARXIV = re.compile(r"arXiv[: ]*(?P<id>\d{4}\.\d{4,5})")


def paper_of(model: str) -> dict[str, str]:
    """The paper a plugin's module docstring cites: authors, title, venue, link (arXiv), where they parse."""
    if is_zoo_model(model):
        return {}
    try:
        docstring = inspect.getmodule(type(create_model(model))).__doc__ or ""
    except BenchmarkError:  # a plugin no longer registered: its card keeps every paper field to fill in
        return {}
    text = " ".join(docstring.split())
    found = {}
    if citation := _CITATION.search(text):
        found = {k: v.strip() for k, v in citation.groupdict().items()}
        found["authors"] = found["authors"].split(": ", 1)[-1]  # "EnDP: Ensemble ... (Carannante, ..." forms
        found["authors"] = found["authors"].split("(")[-1]
    if found and (arxiv := _ARXIV.search(text)):  # an arXiv id without a citation may be another paper's
        found["link"] = f"https://arxiv.org/abs/{arxiv['id']}"
    return found


def card(row: pd.Series) -> dict:
    """The RobustBench card of one leaderboard row."""
    paper = paper_of(str(row.model))
    zoo = is_zoo_model(str(row.model))
    attacks = split_attacks(row.attacks)
    values = {
        "link": paper.get("link", TO_FILL),
        "name": paper.get("title", TO_FILL),
        "authors": paper.get("authors", TO_FILL),
        "additional_data": None if zoo else False,  # bundled plugins train on the dataset's training set alone
        "number_forward_passes": int(row.samples) if row.predictive == "stochastic" else 1,
        "dataset": str(row.dataset),
        "venue": paper.get("venue", TO_FILL),
        "architecture": TO_FILL,
        "eps": eps_text(float(row.eps)),
        "clean_acc": f"{100 * float(row.clean_acc):.2f}",
        "reported": TO_FILL,
        "autoattack_acc": f"{100 * float(row.robust_acc):.2f}",
        "footnote": (f"Measured by this suite under its {row.protocol} protocol on {int(row.n_examples)} test images: "
                     f"the per-example worst case over {', '.join(attacks)}"
                     + ("" if "autoattack" in attacks else " (AutoAttack not among them)")
                     + (f", S = {int(row.samples)} draws per decision" if row.predictive == "stochastic" else "")
                     + f"; 95% interval [{100 * row.robust_acc_ci_low:.2f}, {100 * row.robust_acc_ci_high:.2f}]."),
    }
    values["fill_in"] = [key for key, value in values.items() if value == TO_FILL or value is None]
    return values


def export_cards(out: Path, to: Path, dataset: str | None = None) -> list[Path]:
    """Write a card per model and dataset under ``to/model_info/<dataset>/Linf/``, from each model's row of the
    first protocol in the leaderboard's order (standard, published, the retired reference, quick, then the others)."""
    names = [dataset] if dataset else datasets_on_board(out)
    if not names:
        raise BenchmarkError(f"nothing to export: no finished runs under {Path(out) / 'runs'} and no published "
                             f"tables under {Path(out) / 'leaderboards'}; pass --out the folder a run wrote to")
    written = []
    for name in names:
        frame = table(out, name)
        if frame.empty:
            raise BenchmarkError(f"no finished runs for dataset {name!r} under {Path(out) / 'runs'}")
        for _, row in frame.drop_duplicates("model").iterrows():  # table() lists the protocols in that order
            stem = str(row.model).removeprefix(PREFIX) if is_zoo_model(str(row.model)) else slug(str(row.model))
            path = Path(to) / "model_info" / slug(name) / THREAT / f"{stem}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(card(row), indent=2) + "\n")
            written.append(path)
    return written
