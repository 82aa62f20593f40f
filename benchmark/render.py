"""Rendering: the blocks a page is made of, as Markdown and as HTML, with one table renderer and one style
sheet per format, so that the reports and the leaderboards read alike. Every string is escaped on the way out:
names a user chose (plugins, datasets, notes) show as text.
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

from benchmark.names import join_flags


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
class Quote:
    """Text in someone else's words: a dataset's description, as its manifest gives it."""

    text: str


@dataclass(frozen=True)
class Interval:
    """A table cell: a measured accuracy with its 95% interval, which HTML sets in small type under the value so
    that a narrow column holds it."""

    value: object
    low: object
    high: object


@dataclass(frozen=True)
class Badges:
    """A table cell: names (``(name, definition)`` pairs), each shown whole in HTML with its definition on hover;
    Markdown joins the names with ``;``, as the leaderboard CSV holds them."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    """A table, its header the frame's columns; a cell is text, an :class:`Interval` or :class:`Badges`.

    ``links``: each row's first cell links to its entry. ``sortable``: in HTML, clicking a header sorts the rows
    by that column. ``on_demand``: columns HTML shows only when the reader ticks "show all columns", so that a
    wide table keeps to the window; Markdown shows every column.
    """

    frame: pd.DataFrame
    links: tuple[str, ...] | None = None
    sortable: bool = False
    on_demand: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Image:
    """A PNG next to the page, with its alternative text; ``wide``: drawn to take a row of figures to itself."""

    file: str
    alt: str
    wide: bool = False


@dataclass(frozen=True)
class Figures:
    """Images side by side, as many in a row as the page's width holds."""

    images: tuple[Image, ...]


Block = Heading | Paragraph | Quote | Table | Bullets | Image | Figures


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


def _cell_text(cell: object) -> str:
    """A cell as plain text: an interval as ``value [low, high]``, badges as their names joined by ``;``."""
    match cell:
        case Interval(value, low, high):
            return interval_text(value, low, high)
        case Badges(items):
            return join_flags(name for name, _ in items)
    return str(cell)


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
        cells = [markdown_text(_cell_text(v)) for v in row]
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
            case Quote(text):
                parts.append(f"> {markdown_text(text)}")
            case Table(frame, links):
                parts.append(markdown_table(frame, links))
            case Bullets(items):
                parts.append("\n".join(f"- {markdown_text(item)}" for item in items))
            case Image():
                parts.append(_markdown_image(block))
            case Figures(images):
                parts.append("\n".join(_markdown_image(image) for image in images))
    return "\n\n".join(parts) + "\n"


def _markdown_image(image: Image) -> str:
    return f"![{image.alt}]({image.file})"


# ---------------------------------------------------------------- HTML


def _html_cell(cell: object) -> tuple[str, bool]:
    """A cell's HTML and whether it is a number (set flush right, to compare digit by digit)."""
    e = html.escape
    match cell:
        case Interval(value, low, high) if not missing(value):
            text = interval_text(value, low, high)
            head, _, interval = text.partition(" ")
            return (f"{e(head)}<small class='interval'>{e(interval)}</small>" if interval else e(head)), True
        case Badges(items):
            return "".join(f"<span class='badge' title=\"{e(meaning, quote=True)}\">{e(name)}</span>"
                           for name, meaning in items), False
    text = _cell_text(cell)
    try:
        float(text)
    except ValueError:
        return e(text), False
    return e(text), True


def html_table(table: Table) -> str:
    """An HTML table: each row's first cell linked to its entry (``links``), headers that sort when clicked
    (``sortable``, by the page's ``sortTable``), the ``on_demand`` columns collapsed until the box in the
    table's caption is ticked."""
    e = html.escape
    frame = table.frame
    th = "<th onclick='sortTable(this)'>" if table.sortable else "<th>"
    head = "".join(f"{th}{e(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = [_html_cell(v) for v in row]
        if table.links is not None:
            cells[0] = (f"<a href=\"{e(quote(table.links[i]), quote=True)}\">{cells[0][0]}</a>", cells[0][1])
        rows.append("<tr>" + "".join(f"<td class='num'>{c}</td>" if number else f"<td>{c}</td>"
                                     for c, number in cells) + "</tr>")
    columns = ""
    if table.on_demand:
        columns = (f"<caption><label><input type='checkbox'> show all {len(frame.columns)} columns</label></caption>"
                   "<colgroup>" + "".join("<col class='on-demand'>" if c in table.on_demand else "<col>"
                                          for c in frame.columns) + "</colgroup>")
    return f"<table>{columns}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_image(image: Image, image_dir: Path | None) -> str:
    source = image.file
    if image_dir is not None:
        source = "data:image/png;base64," + base64.b64encode((Path(image_dir) / image.file).read_bytes()).decode()
    return f'<img src="{html.escape(source, quote=True)}" alt="{html.escape(image.alt, quote=True)}">'


CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
body.wide { max-width: none; margin: 1.5rem 0; font-size: 0.95rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
.note, blockquote { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5rem 1rem; margin: 1rem 0; }
img { max-width: 100%; }
body.wide table { font-size: 0.8rem; }
body.wide th, body.wide td { padding: 0.2rem 0.4rem; }
th[onclick] { cursor: pointer; user-select: none; }
.interval { display: block; font-size: 0.85em; color: #555; }
.badge { display: block; width: fit-content; white-space: nowrap; margin: 0.1rem 0; padding: 0 0.4rem;
         border: 1px solid #d9a0a0; border-radius: 0.6rem; background: #fbe7e7; cursor: help; }
caption { caption-side: top; text-align: left; padding-bottom: 0.2rem; }
col.on-demand { visibility: collapse; }
/* a collapsed column's cells would wrap at every space and stretch their rows: no cell of such a table wraps */
table:has(> colgroup) :is(th, td) { white-space: nowrap; }
table:has(> caption input:checked) col.on-demand { visibility: visible; }
table:has(> caption input:checked) { display: block; overflow-x: auto; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(30rem, 1fr)); grid-auto-flow: dense;
           gap: 1rem; margin: 1rem 0 2.5rem; }
.figures figure { margin: 0; }
.figures figure.wide { grid-column: 1 / -1; }
.figures img { width: 100%; }
"""

#: What a sortable table's headers call: the rows in the order of the clicked column, numbers as numbers,
#: ascending on the first click, descending on the next.
SORT_SCRIPT = """
function sortTable(th){const table=th.closest('table'),body=table.tBodies[0],i=[...th.parentNode.children].indexOf(th);
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
const key=r=>{const t=r.children[i].textContent;const n=parseFloat(t);return isNaN(n)?t:n};
[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(asc?1:-1)})
.forEach(r=>body.appendChild(r));}
"""


WIDE = ' class="wide"'  # a page, or a figure, that takes the whole width


def html_page(title: str, blocks: list[Block], image_dir: Path | None = None, wide: bool = False) -> str:
    """One page. With ``image_dir`` the PNGs (read from there) are inlined, so the page can be mailed or archived
    alone; without, they are linked relative to the page. A ``wide`` page (the leaderboards) uses the window's
    whole width instead of a column of text."""
    e = html.escape
    body = []
    for block in blocks:
        match block:
            case Heading(text, level):
                body.append(f"<h{level}>{e(text)}</h{level}>")
            case Paragraph(text, note):
                body.append(f'<p class="note"><strong>Note:</strong> {e(text)}</p>' if note else f"<p>{e(text)}</p>")
            case Quote(text):
                body.append(f"<blockquote>{e(text)}</blockquote>")
            case Table():
                body.append(html_table(block))
            case Bullets(items):
                body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
            case Image():
                body.append(f"<p>{_html_image(block, image_dir)}</p>")
            case Figures(images):
                body.append("<div class='figures'>" + "".join(
                    f"<figure{WIDE if image.wide else ''}>{_html_image(image, image_dir)}</figure>" for image in images)
                    + "</div>")
    script = (f"<script>{SORT_SCRIPT}</script>\n"
              if any(isinstance(block, Table) and block.sortable for block in blocks) else "")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body{WIDE if wide else ''}>\n" + "\n".join(body)
        + f"\n{script}</body>\n</html>\n"
    )
