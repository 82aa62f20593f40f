"""Leaderboards rebuilt from the run store: ``leaderboards/<dataset>.csv``, ``.md`` and ``index.html``.

A leaderboard is never edited in place: it is recomputed from every run's ``summary.json`` and written
atomically under a lock, so concurrent runs and interrupted writes can never leave a half-written table.
"""

from __future__ import annotations

import fcntl
import html
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from benchmark.columns import DISPLAY, EXTRA, NAMES, SCHEMA  # noqa: F401 (SCHEMA, EXTRA: the CSV's two parts)
from benchmark.errors import BenchmarkError
from benchmark.render import html_table, markdown_table, markdown_text
from benchmark.report import write_report
from benchmark.store import atomic_write_text, list_runs, read_json, slug

PROFILE_ORDER = {"standard": 0, "quick": 1}  # the named profiles' own protocols first, then any with overrides


@contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def report_dir(out: Path, dataset: str, protocol: str, model: str) -> Path:
    """Where the report of ``model`` on ``dataset`` under ``protocol`` is rendered."""
    return Path(out) / "leaderboards" / "reports" / _report_link(dataset, protocol, model)


def table(out: Path, dataset: str) -> pd.DataFrame:
    """The leaderboard of one dataset: the latest run per (model, protocol), grouped by protocol (the named
    profiles first), best robust accuracy first within a protocol."""
    rows = [read_json(r.root / "summary.json") for r in list_runs(out)]
    frame = pd.DataFrame([r for r in rows if r.get("dataset") == dataset], columns=NAMES)
    if frame.empty:
        return frame
    frame["protocol"] = frame.protocol.fillna(frame.profile)  # runs made before rows named their protocol
    frame = frame.sort_values("date").drop_duplicates(["model", "protocol"], keep="last")
    order = frame.protocol.map(PROFILE_ORDER).fillna(len(PROFILE_ORDER))
    return (frame.assign(_order=order).sort_values(["_order", "protocol", "robust_acc"], ascending=[True, True, False])
            .drop(columns="_order").reset_index(drop=True))


def protocols(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The tables of a leaderboard: one per protocol, in the leaderboard's order."""
    return [(name, frame[frame.protocol == name]) for name in dict.fromkeys(frame.protocol)]


def datasets_with_runs(out: Path) -> list[str]:
    """The datasets with at least one finished run under ``out``."""
    return sorted({read_json(r.root / "summary.json")["dataset"] for r in list_runs(out)})


def publish(out: Path, dataset: str, model: str | None = None) -> None:
    """Rewrite the dataset's tables and the index; render the report of ``model`` (all models if None)."""
    out = Path(out)
    board_dir = out / "leaderboards"
    try:
        with _locked(board_dir):
            frame = table(out, dataset)
            if frame.empty:
                raise BenchmarkError(f"no finished runs for dataset {dataset!r} under {out / 'runs'}")
            for _, row in frame[frame.model == model].iterrows() if model else frame.iterrows():
                write_report(out / "runs" / row.run_id, report_dir(out, dataset, row.protocol, row.model))
            atomic_write_text(board_dir / f"{slug(dataset)}.csv", spreadsheet_safe(frame).to_csv(index=False))
            atomic_write_text(board_dir / f"{slug(dataset)}.md", _markdown(frame, dataset, dataset_notes(out, frame)))
            atomic_write_text(board_dir / "index.html", _index_html(out))
    except OSError as exc:
        raise BenchmarkError(f"cannot write leaderboards under {board_dir}: {exc.strerror or exc}; the run "
                             f"directory is kept, rerun `benchmark leaderboard --out {out}` once it is "
                             "writable") from exc


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``@SUM``, ``-cmd``) get a
    leading apostrophe, the OWASP-recommended escape; numbers stay numbers."""
    def escape(value):
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value

    def text(column: pd.Series) -> bool:
        return pd.api.types.is_string_dtype(column) or column.dtype == object

    return frame.apply(lambda column: column.map(escape) if text(column) else column)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def dataset_notes(out: Path, frame: pd.DataFrame) -> list[str]:
    """What the dataset is, as its manifest describes it, recorded by the runs in ``frame`` (each text once)."""
    notes: list[str] = []
    for run_id in frame.run_id:
        config = Path(out) / "runs" / str(run_id) / "config.json"
        text = read_json(config).get("dataset_description") if config.exists() else None
        if text and text not in notes:
            notes.append(str(text))
    return notes


def _cells(part: pd.DataFrame) -> pd.DataFrame:
    """The displayed columns of ``part`` as text."""
    return pd.DataFrame([[_fmt(row[c]) for c in DISPLAY] for _, row in part.iterrows()], columns=DISPLAY)


def _links(part: pd.DataFrame, dataset: str, suffix: str) -> list[str]:
    return [f"reports/{_report_link(dataset, protocol, model)}/report.{suffix}"
            for protocol, model in zip(part.protocol, part.model, strict=True)]


def _protocol_note(protocol: str) -> str:
    named = protocol in PROFILE_ORDER
    return (f"Every row of this table was measured under the {protocol} protocol" +
            ("." if named else " (a named profile with the overrides in brackets); rows of other protocols are "
                               "ranked in their own tables."))


def _markdown(frame: pd.DataFrame, dataset: str, notes: list[str]) -> str:
    lines = [f"# Leaderboard: {markdown_text(dataset)}", ""]
    for note in notes:
        lines += [f"> {markdown_text(note)}", ""]
    lines += ["Robust accuracy is the per-example worst case over every attack run at the row's eps "
              "(L-inf), with a 95% interval. A table ranks only rows of one protocol (profile and overrides); "
              "only standard-profile rows are comparable with published results.", ""]
    for protocol, part in protocols(frame):
        lines += [f"## Protocol: {markdown_text(protocol)}", "", markdown_text(_protocol_note(protocol)), "",
                  markdown_table(_cells(part), links=_links(part, dataset, "md")), ""]
    return "\n".join(lines)


def _report_link(dataset: str, protocol: str, model: str) -> str:
    return f"{slug(dataset)}/{slug(protocol)}/{slug(model)}"


def _index_html(out: Path) -> str:
    sections = []
    for dataset in datasets_with_runs(out):
        frame = table(out, dataset)
        notes = "".join(f"<p class='note'>{html.escape(note)}</p>" for note in dataset_notes(out, frame))
        for protocol, part in protocols(frame):
            heading = f"<h2>{html.escape(dataset)} <small>({html.escape(protocol)} protocol)</small></h2>"
            links = _links(part, dataset, "html")
            sections.append(heading + notes + f"<p>{html.escape(_protocol_note(protocol))}</p>"
                            + html_table(_cells(part), links=links, sortable=True))
    return _PAGE.replace("{sections}", "\n".join(sections) or "<p>No runs yet.</p>")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Robustness leaderboards</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin-bottom:2rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}
.note{background:#fff4d6;padding:.5rem;border-left:4px solid #e0a800}
</style></head><body>
<h1>Robustness leaderboards</h1>
<p>Robust accuracy: per-example worst case over every attack run at the dataset's L-inf eps, 95% interval in the
ci columns. Stochastic models are judged by the mean softmax over <em>samples</em> draws and attacked with
<em>eot</em> draws per step. Each table ranks the rows of one protocol. Click a column to sort.</p>
{sections}
<script>
function sortTable(th){const table=th.closest('table'),body=table.tBodies[0],i=[...th.parentNode.children].indexOf(th);
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
const key=r=>{const t=r.children[i].innerText;const n=parseFloat(t);return isNaN(n)?t:n};
[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);\
return (x>y?1:x<y?-1:0)*(asc?1:-1)}).forEach(r=>body.appendChild(r));}
</script></body></html>
"""
