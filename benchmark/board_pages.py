"""The leaderboard pages: a dataset's board (benchmark.board) as blocks, which benchmark.render writes as
``leaderboards/<dataset>.md`` and, every dataset together, as ``leaderboards/index.html``; the two pages share
their content, and the reports' renderer and style sheet.
"""

from __future__ import annotations

import pandas as pd

from benchmark import diagnostics
from benchmark.board import (
    EPS_METRICS,
    PROFILE_ORDER,
    Board,
    figure_path,
    protocols,
    ranked_and_flagged,
    report_link,
    retired_notes,
    robust_curves,
)
from benchmark.columns import BY_NAME, DISPLAY
from benchmark.names import eps_up_to, same_eps, split_flags
from benchmark.render import (
    Badges,
    Block,
    Figures,
    Heading,
    Image,
    Interval,
    Paragraph,
    Quote,
    Table,
    eps_text,
    html_page,
    markdown,
)

TITLE = "Robustness leaderboards"
RANKING = ("Robust accuracy is the per-example worst case over every attack run at the row's eps (L-inf), with "
           "its 95% interval in brackets; robust_acc@e is the same at a smaller eps of the sweep. Rows are ranked "
           "by robust_auc, the normalised area under the robust-accuracy curve from eps 0 to the row's eps, then "
           "by robust_acc and clean_acc. A table ranks only rows of one protocol (profile and overrides); only "
           "standard-profile rows are comparable with published results.")
HOW_TO_READ = ("Stochastic models are judged by the mean softmax over S (samples) draws and attacked with K (eot) "
               "draws per step. Click a column to sort; hover a flag for its definition; tick \"show all columns\" "
               "above a table for the rest of its scores and the run's settings.")
FLAGGED = ("Flagged rows, ranked apart: a gradient-masking diagnostic fired (the flags column names it; "
           "docs/protocol.md defines each), so their robust accuracy may be too high.")
#: Each protocol's figures (benchmark.figures draws them): name, alternative text, drawn to fill a row alone.
FIGURES = (("eps", "Robust accuracy against eps, every model", False),
           ("noise", "Accuracy and ECE against Gaussian noise sigma, every model", True),
           ("tradeoff", "Clean accuracy against robustness, every model", False))
#: The figure of the models whose rows measured detection (benchmark.detection), drawn only where one did: name,
#: alternative text, drawn to fill a row alone.
DETECTION_FIGURE = ("detection", "Detection AUROC of each model's uncertainty score, under the attacks and under the "
                    "adaptive attack, against robust accuracy", False)
#: The columns index.html shows until the reader asks for all, with the robust accuracy at every eps of the
#: sweep: what ranks a row, what it is, and why it may be set apart.
SHOWN = ("model", "predictive", "clean_acc", "robust_auc", "robust_acc", "certified_acc", "noise_acc_mean", "ece",
         "flags")
FLAG_MEANINGS = {flag.name: flag.meaning for flag in diagnostics.FLAGS}
ROBUST_AT = "robust_acc@"


def markdown_page(board: Board) -> str:
    """``leaderboards/<dataset>.md``: the dataset's tables, one per protocol, each followed by its figures."""
    return markdown([Heading(f"Leaderboard: {board.dataset}", level=1),
                     *(Paragraph(note, note=True) for note in retired_notes(board.rows.protocol)),
                     *(Quote(note) for note in board.notes), Paragraph(RANKING),
                     *_protocol_blocks(board, "md", level=2)])


def index_page(boards: list[Board]) -> str:
    """``leaderboards/index.html``: every dataset's tables and figures on one page, each table sortable."""
    blocks: list[Block] = [Heading(TITLE, level=1),
                           *(Paragraph(note, note=True) for note in
                             retired_notes(name for board in boards for name in board.rows.protocol)),
                           Paragraph(f"{RANKING} {HOW_TO_READ}")]
    for board in boards:
        blocks += [Heading(board.dataset), *(Quote(note) for note in board.notes),
                   *_protocol_blocks(board, "html", level=3)]
    return html_page(TITLE, blocks if boards else [*blocks, Paragraph("No runs yet.")], wide=True)


def _cells(part: pd.DataFrame, eps_curves: pd.DataFrame) -> pd.DataFrame:
    """The displayed columns of ``part`` (one protocol's rows), with the robust accuracy (and its interval) at
    every eps of the sweep below the row's own as columns of their own, just before ``robust_acc``."""
    curve = robust_curves(eps_curves)
    curve = curve[curve.protocol.isin(part.protocol)]
    smaller = sorted({e for e in curve.eps if not eps_up_to(part.eps.to_numpy(dtype=float), e).all()})
    dataset_eps = float(part.eps.max())  # one protocol: one eps
    columns = [*DISPLAY[:DISPLAY.index("robust_acc")], *(f"{ROBUST_AT}{eps_text(e, dataset_eps)}" for e in smaller),
               *DISPLAY[DISPLAY.index("robust_acc"):]]
    rows = []
    for _, row in part.iterrows():
        shown = {c: BY_NAME[c].text(row[c]) for c in DISPLAY}
        shown["eps"] = eps_text(row.eps, dataset_eps)
        shown["robust_acc"] = Interval(row.robust_acc, row.robust_acc_ci_low, row.robust_acc_ci_high)
        shown["flags"] = Badges(tuple((name, FLAG_MEANINGS.get(name, "")) for name in split_flags(row["flags"])))
        mine = curve[curve.model == row.model]
        for e in smaller:
            at = mine[same_eps(mine.eps, e)]
            shown[f"{ROBUST_AT}{eps_text(e, dataset_eps)}"] = ("" if at.empty else
                                                               Interval(*at.iloc[0][list(EPS_METRICS)]))
        rows.append([shown[c] for c in columns])
    return pd.DataFrame(rows, columns=columns)


def _protocol_blocks(board: Board, suffix: str, level: int) -> list[Block]:
    """Each protocol's heading and note, its ranked rows, its flagged rows apart, and its figures; the rows link
    to their reports as ``report.<suffix>``."""
    blocks: list[Block] = []
    for protocol, part in protocols(board.rows):
        blocks += [Heading(f"Protocol: {protocol}", level), Paragraph(_protocol_note(protocol, part))]
        ranked, flagged = ranked_and_flagged(part)
        if not ranked.empty:
            blocks.append(_table(board, ranked, suffix))
        if not flagged.empty:
            blocks += [Heading("Flagged", level + 1), Paragraph(FLAGGED), _table(board, flagged, suffix)]
        blocks.append(Figures(tuple(Image(figure_path(board.dataset, protocol, name), alt, wide)
                                    for name, alt, wide in protocol_figures(part))))
    return blocks


def detection_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the detection figure draws: those with a detection AUROC and a robust accuracy (a row published
    before the harness measured detection has neither column filled)."""
    if "detection_auroc" not in rows or "robust_acc" not in rows:
        return rows.iloc[:0]
    auroc = pd.to_numeric(rows.detection_auroc, errors="coerce")
    return rows[auroc.notna() & pd.to_numeric(rows.robust_acc, errors="coerce").notna()]


def protocol_figures(part: pd.DataFrame) -> tuple[tuple[str, str, bool], ...]:
    """The figures of one protocol's rows: :data:`FIGURES`, and :data:`DETECTION_FIGURE` where a row measured
    detection (``benchmark.figures.plot_board_detection`` draws it on the same rows)."""
    return FIGURES + ((DETECTION_FIGURE,) if not detection_rows(part).empty else ())


def _table(board: Board, rows: pd.DataFrame, suffix: str) -> Table:
    frame = _cells(rows, board.eps_curves)
    links = tuple(f"reports/{report_link(board.dataset, protocol, model)}/report.{suffix}"
                  for protocol, model in zip(rows.protocol, rows.model, strict=True))
    return Table(frame, links=links, sortable=True,
                 on_demand=frozenset(c for c in frame.columns if c not in SHOWN and not c.startswith(ROBUST_AT)))


def _protocol_note(protocol: str, part: pd.DataFrame) -> str:
    """What the table measured; for a named profile also which registered plugins have no row in it yet, so a
    reader sees what is missing instead of taking a short table for the whole field."""
    from benchmark.registry import list_models

    if protocol not in PROFILE_ORDER:
        return (f"Every row of this table was measured under the {protocol} protocol (a named profile with the "
                "overrides in brackets); rows of other protocols are ranked in their own tables.")
    present = set(part.model)
    missing = [name for name in list_models() if name not in present]
    return (f"Every row of this table was measured under the {protocol} protocol. " +
            (f"Registered plugins without a row here yet: {', '.join(missing)}." if missing else
             "Every registered plugin has a row."))
