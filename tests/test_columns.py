"""The leaderboard's columns are declared once (benchmark.columns): the summary row, the CSV header, the
leaderboard pages and the table printed after a run all follow the declaration."""

import json

import pandas as pd
import pytest
from fakes import make_finished_run, make_run

from benchmark import columns
from benchmark.leaderboard import publish
from benchmark.results import RunResults, summary_row


def test_the_declaration_is_consistent():
    names = [c.name for c in columns.COLUMNS]
    assert len(set(names)) == len(names)
    assert columns.NAMES == names == columns.SCHEMA + columns.EXTRA  # the extra columns come after the schema's
    positions = sorted(c.board for c in columns.COLUMNS if c.board is not None)
    assert positions == list(range(len(positions)))
    assert columns.DISPLAY[0] == "model"  # the pages link the first column to the model's report
    assert all(c.meaning for c in columns.COLUMNS)


def test_a_summary_row_has_exactly_the_declared_columns_in_order(tmp_path):
    run_dir = make_run(tmp_path / "run", "mc-dropout", "mnist", ("fgsm", "pgd"))
    config = json.loads((run_dir / "config.json").read_text()) | {"num_classes": 10}
    row = summary_row(config, RunResults.read(run_dir), 8, 12.34)
    assert list(row) == columns.NAMES
    assert (row["params"], row["train_seconds"], row["attacks"]) == (8, 12.3, "fgsm+pgd")
    assert row["robust_acc"] == pytest.approx(0.38)


def test_a_row_with_a_missing_or_undeclared_column_is_refused():
    values = {name: 0 for name in columns.NAMES}
    assert list(columns.ordered_row(dict(reversed(values.items())))) == columns.NAMES
    with pytest.raises(ValueError, match="missing \\['run_id'\\]"):
        columns.ordered_row({k: v for k, v in values.items() if k != "run_id"})
    with pytest.raises(ValueError, match="undeclared \\['surprise'\\]"):
        columns.ordered_row({**values, "surprise": 1})


def test_the_leaderboard_csv_header_and_pages_follow_the_declaration(tmp_path):
    make_finished_run(tmp_path, "model-a")
    make_finished_run(tmp_path, "model-b", robust=0.7)
    publish(tmp_path, "mnist")
    boards = tmp_path / "leaderboards"
    assert (boards / "mnist.csv").read_text().splitlines()[0] == ",".join(columns.NAMES)
    assert list(pd.read_csv(boards / "mnist.csv").model) == ["model-b", "model-a"]
    markdown = (boards / "mnist.md").read_text()
    at = columns.DISPLAY.index("robust_acc")  # the robust accuracy at each smaller eps of the sweep comes first
    shown = [*columns.DISPLAY[:at], "robust_acc@0.025", "robust_acc@0.05", *columns.DISPLAY[at:]]
    assert "| " + " | ".join(shown) + " |" in markdown
    assert ("| [model-b](reports/mnist/quick/model-b/report.md) | deterministic | 0.5000 | 0.5000 "
            "| 0.755 \\[0.735, 0.775\\] | 0.630 \\[0.610, 0.650\\] | 0.700 \\[0.500, 0.500\\] |") in markdown
    page = (boards / "index.html").read_text()
    assert "".join(f"<th onclick='sortTable(this)'>{name}</th>" for name in shown) in page
    assert '<td><a href="reports/mnist/quick/model-a/report.html">model-a</a></td>' in page


def test_each_column_shows_its_numbers_in_its_own_units(tmp_path):
    """Scores with four decimals, seconds with one, eps as its dataset writes it: before, a number's decimals
    followed its size, so a 4.6-second training read 4.6000 beside 83.9 and MNIST's eps 0.3 read 0.3000."""
    run = make_finished_run(tmp_path, "model-a")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(summary | {"train_seconds": 4.6, "eval_seconds": 123.456}))
    publish(tmp_path, "mnist")
    lines = (tmp_path / "leaderboards" / "mnist.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model |"))
    row = next(line for line in lines if line.startswith("| [model-a]"))
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert (cells["clean_acc"], cells["train_seconds"], cells["eval_seconds"], cells["eps"]) == \
        ("0.5000", "4.6", "123.5", "0.1")
    assert columns.BY_NAME["ece"].text(float("nan")) == "" and columns.BY_NAME["samples"].text(8) == "8"


def test_the_run_command_prints_the_declared_columns(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import benchmark.runner
    from benchmark.cli import app

    row = {name: 0.5 for name in columns.NAMES} | {"model": "m", "dataset": "d", "profile": "quick", "run_id": "r",
                                                   "protocol": "quick", "flags": "zero-grad", "train_seconds": 1.5,
                                                   "reevals": 3, "samples": 8, "eot": 4}
    monkeypatch.setattr(benchmark.runner, "run", lambda request: row)
    result = CliRunner().invoke(app, ["run", "--model", "m", "--out", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    names = [cells[0] for line in result.output.splitlines()
             if len(cells := [cell.strip() for cell in line.strip("│ ").split("│")]) == 2]
    assert names == [c.name for c in columns.AFTER_RUN]  # one line per declared column, in order
    assert "0.5000" in result.output and "zero-grad" in result.output and "1.5" in result.output


def test_the_documented_schema_is_the_declaration():
    """docs/architecture.md's column table is generated from COLUMNS; it must not drift from it."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    documented = [line.split("|")[2].strip(" `") for line in doc.splitlines() if line.startswith("| ") and "| `" in line
                  and line.split("|")[1].strip().isdigit()]
    assert documented == columns.NAMES
