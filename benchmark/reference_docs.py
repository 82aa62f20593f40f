"""Reference tables generated from the code, so that the docs cannot drift from it: the leaderboard columns
(:data:`benchmark.columns.COLUMNS`), the flags (:data:`benchmark.diagnostics.FLAGS`), the commands of the CLI, and
the provenance of the published rows (read from the leaderboards' CSVs).

Each table stands in a Markdown file between two markers, ``<!-- generated: NAME ... -->`` and
``<!-- end generated: NAME -->``. ``python -m benchmark.reference_docs [ROOT [NAME ...]]`` rewrites the blocks in
place (every one, or those named);
``tests/test_reference_docs.py`` fails when a block differs from what the code generates now.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def columns_table(root: Path = ROOT) -> str:
    """Every leaderboard column in CSV order, with its meaning and where it is shown."""
    from benchmark.columns import COLUMNS

    lines = ["| # | column | meaning | part | leaderboard pages |", "|---|---|---|---|---|"]
    for number, column in enumerate(COLUMNS, start=1):
        lines.append(f"| {number} | `{column.name}` | {_cell(column.meaning)} | "
                     f"{'added' if column.extra else 'schema'} | {'yes' if column.board is not None else 'CSV only'} |")
    return "\n".join(lines)


def flags_table(root: Path = ROOT) -> str:
    """Every flag, the evidence in ``metrics.csv`` it is decided on, and when it fires."""
    from benchmark.diagnostics import FLAGS

    lines = ["| flag | evidence (`diagnostics` metric in `metrics.csv`) | fires when | demotes |", "|---|---|---|---|"]
    for flag in FLAGS:
        evidence = f"`{flag.evidence}`" if flag.evidence else "the `failed` rows"
        demotes = ("no: information" if not flag.demotes else
                   "every verdict" if flag.scope == "every number" else "attacked accuracies")
        lines.append(f"| `{flag.name}` | {evidence} | {_cell(flag.meaning)} | {demotes} |")
    return "\n".join(lines)


def commands_table(root: Path = ROOT) -> str:
    """Every command of ``benchmark`` with the first sentence of its help; ``benchmark COMMAND --help`` has the rest."""
    import typer.main

    from benchmark.cli import app

    group = typer.main.get_command(app)
    lines = ["| command | what it does |", "|---|---|"]
    for name, command in group.commands.items():
        arguments = " ".join(p.name.upper() for p in command.params if p.param_type_name == "argument")
        summary = " ".join((command.help or "").split("\n\n")[0].split()).replace("``", "`")
        lines.append(f"| `benchmark {name}{' ' + arguments if arguments else ''}` | {_cell(summary)} |")
    return "\n".join(lines)


def provenance_tables(root: Path = ROOT) -> str:
    """Where and when each published row was measured, and what it cost, one table per board and protocol."""
    from benchmark.board import board_tables, read_board

    parts = []
    for path in board_tables(root / "leaderboards").values():
        rows = read_board(path)[0]
        for protocol, part in rows.groupby("protocol", sort=False):
            parts.append(f"**{rows.dataset.iloc[0]}, {protocol} protocol** ({len(part)} rows)\n")
            lines = ["| model | device | date (UTC) | training | train s | eval s | run |",
                     "|---|---|---|---|---|---|---|"]
            for row in part.sort_values("model").itertuples():
                lines.append(f"| {_cell(row.model)} | {_cell(row.device)} | {str(row.date)[:10]} | "
                             f"{_cell(row.training)} | {_seconds(row.train_seconds)} | {_seconds(row.eval_seconds)} | "
                             f"`{row.run_id}` |")
            parts.append("\n".join(lines) + "\n")
    return "\n".join(parts).rstrip()


def _seconds(value: object) -> str:
    return "" if pd.isna(value) else f"{float(value):,.0f}"


#: every generated block: (file, block name) -> the function that writes its text
BLOCKS: dict[tuple[str, str], Callable[[Path], str]] = {
    ("docs/architecture.md", "columns"): columns_table,
    ("docs/protocol.md", "flags"): flags_table,
    ("README.md", "commands"): commands_table,
    ("leaderboards/README.md", "provenance"): provenance_tables,
}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end generated: {name} -->)", re.S)


def stale_blocks(root: Path = ROOT) -> list[str]:
    """The blocks whose text differs from what the code generates now (``file: name``)."""
    stale = []
    for (file, name), generate in BLOCKS.items():
        match = _pattern(name).search((root / file).read_text(encoding="utf-8"))
        if match is None or match.group(2) != generate(root) + "\n":
            stale.append(f"{file}: {name}")
    return stale


def write_blocks(root: Path = ROOT, names: tuple[str, ...] = ()) -> None:
    """Rewrite the generated blocks called ``names`` (all, if none) in place; a file missing its markers is an
    error naming them."""
    for (file, name), generate in BLOCKS.items():
        if names and name not in names:
            continue
        path = root / file
        text = path.read_text(encoding="utf-8")
        if not _pattern(name).search(text):
            raise SystemExit(f"{file} has no block '<!-- generated: {name} ... -->' ... "
                             f"'<!-- end generated: {name} -->'")
        block = generate(root) + "\n"
        path.write_text(_pattern(name).sub(lambda m, block=block: m.group(1) + block + m.group(3), text),
                        encoding="utf-8")


if __name__ == "__main__":  # python -m benchmark.reference_docs [ROOT [BLOCK ...]]
    write_blocks(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT, tuple(sys.argv[2:]))
