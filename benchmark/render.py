"""Rendering: the blocks a page is made of, as Markdown and as HTML, and the one table renderer of each
format (the reports and the leaderboards use the same). Every string is escaped on the way out: names a
user chose (plugins, datasets, notes) show as text.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd


@dataclass(frozen=True)
class Heading:
    """A heading; level 1 is the page's title."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Running text; a note stands out (a caveat the reader must not miss)."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Table:
    """A table of text cells, its header the frame's columns."""

    frame: pd.DataFrame


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Image:
    """A PNG next to the page (inlined in HTML), with its alternative text."""

    file: str
    alt: str


Block = Heading | Paragraph | Table | Bullets | Image


# ---------------------------------------------------------------- numbers


def missing(value: object) -> bool:
    """None or NaN: a number that is not there."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def num(value: object) -> str:
    """A metric with four decimals, or n/a."""
    return "n/a" if missing(value) else f"{float(value):.4f}"


def interval_text(value: object, low: object, high: object, digits: int = 3) -> str:
    """A measured accuracy and its 95% interval, ``value [low, high]``; the value alone where the interval is
    missing, and nothing where the value is."""
    if missing(value):
        return ""
    text = f"{float(value):.{digits}f}"
    return text if missing(low) or missing(high) else f"{text} [{float(low):.{digits}f}, {float(high):.{digits}f}]"


def eps_text(eps: float, dataset_eps: float | None = None) -> str:
    """An eps in its dataset's units: in 255ths where the dataset's own eps (``dataset_eps``, default ``eps``
    itself) is a whole number of 255ths below 0.1 (CIFAR-10's 8/255: a sweep reads 2.67/255, 5.33/255, 8/255
    and the collapse check 64/255), else a plain number to three significant digits (MNIST's 0.1, 0.2, 0.3;
    Fashion-MNIST's 0.0333, 0.0667, 0.1, whose 0.0667 happens to be 17/255 but is not read in 255ths)."""
    scale = eps if dataset_eps is None else dataset_eps
    in_255ths = 0 < scale < 0.1 and abs(scale * 255 - round(scale * 255)) < 1e-4
    return f"{eps * 255:.3g}/255" if in_255ths else f"{eps:.3g}"


# ---------------------------------------------------------------- Markdown


def markdown_text(value: object) -> str:
    """Text made inert in Markdown: tags become entities (a plugin named ``<script>`` shows as text),
    table pipes and link brackets are escaped, newlines cannot end a table row."""
    text = html.escape(str(value), quote=False).replace("\n", " ")
    return text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def markdown_table(frame: pd.DataFrame, links: Sequence[str] | None = None) -> str:
    """A GitHub table without tabulate; with ``links``, each row's first cell links to its entry."""
    lines = ["| " + " | ".join(markdown_text(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = [markdown_text(v) for v in row]
        if links is not None:
            cells[0] = f"[{cells[0]}]({quote(links[i])})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(blocks: list[Block]) -> str:
    """The blocks as one Markdown document (images stay files next to it)."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {markdown_text(text)}")
            case Paragraph(text, note):
                parts.append(f"> **Note:** {markdown_text(text)}" if note else markdown_text(text))
            case Table(frame):
                parts.append(markdown_table(frame))
            case Bullets(items):
                parts.append("\n".join(f"- {markdown_text(item)}" for item in items))
            case Image(file, alt):
                parts.append(f"![{alt}]({file})")
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- HTML


def html_table(frame: pd.DataFrame, links: Sequence[str] | None = None, sortable: bool = False) -> str:
    """An HTML table; with ``links``, each row's first cell links to its entry; ``sortable`` headers call the
    page's ``sortTable`` when clicked."""
    e = html.escape
    th = "<th onclick='sortTable(this)'>" if sortable else "<th>"
    head = "".join(f"{th}{e(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = [e(str(v)) for v in row]
        if links is not None:
            cells[0] = f"<a href=\"{e(quote(links[i]), quote=True)}\">{cells[0]}</a>"
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5rem 1rem; }
img { max-width: 100%; }
"""


def html_page(title: str, blocks: list[Block], image_dir: Path) -> str:
    """One page with the PNGs (read from ``image_dir``) inlined, so it can be mailed or archived alone."""
    e = html.escape
    body = []
    for block in blocks:
        match block:
            case Heading(text, level):
                body.append(f"<h{level}>{e(text)}</h{level}>")
            case Paragraph(text, note):
                body.append(f'<p class="note"><strong>Note:</strong> {e(text)}</p>' if note else f"<p>{e(text)}</p>")
            case Table(frame):
                body.append(html_table(frame))
            case Bullets(items):
                body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
            case Image(file, alt):
                data = base64.b64encode((Path(image_dir) / file).read_bytes()).decode("ascii")
                body.append(f'<p><img src="data:image/png;base64,{data}" alt="{e(alt)}"></p>')
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
