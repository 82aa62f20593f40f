"""Leaderboards rebuilt from the run store: ``leaderboards/<dataset>.csv``, ``.md`` and ``index.html``.

A leaderboard is never edited in place: it is recomputed from every run's ``summary.json``, and from the rows
already published under ``leaderboards/`` whose runs are not in the store, and written atomically under a lock,
so concurrent runs and interrupted writes can never leave a half-written table. Published rows are kept because
the run store is local (a clone of the repository holds the boards, not the runs behind them): a new run joins
the published board instead of replacing it, and replaces a published row only for the same model and protocol.
"""

from __future__ import annotations

import fcntl
import html
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.columns import BY_NAME, DISPLAY, EXTRA, NAMES, SCHEMA  # noqa: F401 (SCHEMA, EXTRA: the CSV's two parts)
from benchmark.data.builtin import BUILTIN_DATASETS
from benchmark.errors import BenchmarkError
from benchmark.render import eps_text, html_table, interval_text, markdown_table, markdown_text
from benchmark.report import write_report
from benchmark.store import atomic_write_text, list_runs, read_json, slug, write_json

# the named profiles' own protocols first, then any with overrides
PROFILE_ORDER = {"standard": 0, "reference": 1, "quick": 2}


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


def board_tables(board_dir: Path) -> dict[str, Path]:
    """The published tables under ``board_dir`` (a leaderboards/ folder), by the dataset their rows name."""
    found = {}
    for path in sorted(Path(board_dir).glob("*.csv")):
        if path.stem.endswith(("-eps", "-noise")):
            continue
        try:
            rows = pd.read_csv(path, usecols=["dataset"], nrows=1)
        except (ValueError, pd.errors.EmptyDataError):  # not a leaderboard (no dataset column, or empty)
            continue
        if not rows.empty:
            found[str(rows.dataset.iloc[0])] = path
    return found


def published(board_dir: Path, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rows, eps curves and noise curves of ``dataset`` as its published CSVs hold them (empty if none)."""
    path = board_tables(board_dir).get(dataset)
    if path is None:
        return (pd.DataFrame(columns=NAMES), pd.DataFrame(columns=EPS_COLUMNS),
                pd.DataFrame(columns=NOISE_COLUMNS))
    return read_board(path)


def read_board(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A published table (``<dataset>.csv``) with its eps and noise curves, as :func:`publish` wrote them."""
    frames = [pd.read_csv(p).map(_unescaped) for p in (path, path.with_name(f"{path.stem}-eps.csv"),
                                                         path.with_name(f"{path.stem}-noise.csv"))]
    return frames[0].reindex(columns=NAMES), frames[1], frames[2]


def table(out: Path, dataset: str) -> pd.DataFrame:
    """The leaderboard of one dataset: the latest row per (model, protocol), from the stored runs and the
    published rows whose runs are not stored, grouped by protocol (the named profiles first), best robust
    accuracy first within a protocol."""
    rows = [read_json(r.root / "summary.json") for r in list_runs(out)]
    stored = pd.DataFrame([r for r in rows if r.get("dataset") == dataset], columns=NAMES)
    kept = published(Path(out) / "leaderboards", dataset)[0]
    kept = kept[~kept.run_id.isin(stored.run_id)]
    parts = [part for part in (kept, stored) if not part.empty]  # concat warns about empty frames
    frame = pd.concat(parts) if parts else stored
    if frame.empty:
        return frame
    frame["protocol"] = frame.protocol.fillna(frame.profile)  # runs made before rows named their protocol
    frame = frame.sort_values("date").drop_duplicates(["model", "protocol"], keep="last")
    order = frame.protocol.map(PROFILE_ORDER).fillna(len(PROFILE_ORDER))
    return (frame.assign(_order=order, _flagged=flagged(frame))
            .sort_values(["_order", "protocol", "_flagged", *SORT_KEY],
                         ascending=[True, True, True] + [False] * len(SORT_KEY), na_position="last")
            .drop(columns=["_order", "_flagged"]).reset_index(drop=True))


#: The rank within a protocol: robustness over the whole eps range first (the curve's normalised area), then
#: the accuracy at the dataset's eps, then clean accuracy. Flagged rows are ranked after, and apart from, the rest.
SORT_KEY = ("robust_auc", "robust_acc", "clean_acc")


def flagged(frame: pd.DataFrame) -> pd.Series:
    """Rows whose run raised a gradient-masking flag (or a failed condition): their robust accuracy may be too
    high, so they are ranked apart from the rest."""
    return frame["flags"].astype(object).fillna("").astype(str).str.len() > 0  # all-empty: read back as NaN floats


def curves(out: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every row's accuracy (with its interval) under each attack, as the worst case (``robust``) and, for
    plugins with interval bounds, the certified accuracy (``certified``) at each eps of its sweep up to the row's
    eps, and its accuracy, ECE and entropy AUROC at each noise sigma, read from the
    row's run (long tables)."""
    eps_rows, noise_rows = [], []
    _, eps_published, noise_published = (published(Path(out) / "leaderboards", str(frame.dataset.iloc[0]))
                                         if not frame.empty else (None, None, None))
    for row in frame.itertuples():
        path = Path(out) / "runs" / str(row.run_id) / "metrics.csv"
        if not path.exists():  # a published row: its curves as published
            for rows, found in ((eps_rows, eps_published), (noise_rows, noise_published)):
                rows += found[(found.model == row.model) & (found.protocol == row.protocol)].to_dict("records")
            continue
        metrics = pd.read_csv(path)
        certify = metrics.condition == "certify"  # the certified lower bound, read as one more curve
        metrics.loc[certify, "metric"] = metrics.loc[certify, "metric"].str.replace("certified_acc", "accuracy")
        metrics.loc[certify, "condition"] = CERTIFIED
        scored = metrics[metrics.metric == "accuracy_ci_low"].condition.unique()  # the attacks, robust, certified
        attacked = metrics[metrics.condition.isin(scored)].pivot_table(index=["condition", "param"], columns="metric",
                                                                        values="value")
        for (attack, eps), values in attacked.iterrows():
            if float(eps) <= float(row.eps) * (1 + 1e-9):  # the collapse check at a larger eps is not the curve
                eps_rows.append({"model": row.model, "protocol": row.protocol, "attack": attack,
                                 "eps": float(f"{float(eps):.12g}"),  # 0.1, not the sweep's 0.09999999999999999
                                 **{m: values.get(m) for m in EPS_METRICS}})
        noise = metrics[metrics.condition == "noise"].pivot_table(index="param", columns="metric", values="value")
        for sigma, values in noise.iterrows():
            noise_rows.append({"model": row.model, "protocol": row.protocol, "sigma": float(sigma),
                               **{m: values.get(m) for m in NOISE_METRICS}})
    eps_frame = pd.DataFrame(eps_rows, columns=EPS_COLUMNS)
    noise_frame = pd.DataFrame(noise_rows, columns=NOISE_COLUMNS)
    # a metric a failed condition left out is NaN, not None: every consumer reads these columns as numbers
    return (eps_frame.astype({m: float for m in EPS_METRICS}), noise_frame.astype({m: float for m in NOISE_METRICS}))


CERTIFIED = "certified"


def robust_curves(eps_curves: pd.DataFrame) -> pd.DataFrame:
    """The worst case over every attack (the leaderboard's robust accuracy) from the long eps table."""
    return eps_curves[eps_curves.attack == "robust"]


EPS_METRICS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high")
NOISE_METRICS = ("accuracy", "ece", "auroc")
EPS_COLUMNS = ["model", "protocol", "attack", "eps", *EPS_METRICS]
NOISE_COLUMNS = ["model", "protocol", "sigma", *NOISE_METRICS]
FIGURES = (("eps", "Robust accuracy against eps, every model"),
           ("noise", "Accuracy and ECE against Gaussian noise sigma, every model"),
           ("tradeoff", "Clean accuracy against robustness, every model"))


def protocols(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The tables of a leaderboard: one per protocol, in the leaderboard's order."""
    return [(name, frame[frame.protocol == name]) for name in dict.fromkeys(frame.protocol)]


def datasets_on_board(out: Path) -> list[str]:
    """The datasets with at least one finished run or published table under ``out``: the built-in ones first,
    in their own order (MNIST, the main board, at the top of the index page), then the others by name."""
    found = {read_json(r.root / "summary.json")["dataset"] for r in list_runs(out)}
    found |= set(board_tables(Path(out) / "leaderboards"))
    return sorted(found, key=lambda name: (BUILTIN_DATASETS.index(name) if name in BUILTIN_DATASETS
                                           else len(BUILTIN_DATASETS), name))


def publish(out: Path, dataset: str, model: str | None = None) -> None:
    """Rewrite the dataset's tables and the index; render the report of ``model`` (all models if None)."""
    out = Path(out)
    board_dir = out / "leaderboards"
    try:
        with _locked(board_dir):
            frame = table(out, dataset)
            if frame.empty:
                raise BenchmarkError(f"no finished runs or published rows for dataset {dataset!r} under {out}")
            for _, row in frame[frame.model == model].iterrows() if model else frame.iterrows():
                if (out / "runs" / row.run_id).is_dir():  # a published row keeps its published report
                    write_report(out / "runs" / row.run_id, report_dir(out, dataset, row.protocol, row.model))
            eps_curves, noise_curves = curves(out, frame)
            _write_figures(board_dir, dataset, frame, eps_curves, noise_curves)
            for name, part in (("", frame), ("-eps", eps_curves), ("-noise", noise_curves)):
                atomic_write_text(board_dir / f"{slug(dataset)}{name}.csv", spreadsheet_safe(part).to_csv(index=False))
            notes = dataset_notes(out, frame)
            write_json(notes_path(board_dir, dataset), notes)
            atomic_write_text(board_dir / f"{slug(dataset)}.md", _markdown(frame, eps_curves, dataset, notes))
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


def _unescaped(value):
    """A cell as it was before :func:`spreadsheet_safe` escaped it."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def dataset_notes(out: Path, frame: pd.DataFrame) -> list[str]:
    """What the dataset is, as its manifest describes it, recorded by the runs in ``frame`` (each text once); a
    published row without its run reads the notes published with its table (``<dataset>-notes.json``)."""
    notes: list[str] = []
    for run_id, dataset in zip(frame.run_id, frame.dataset, strict=True):
        config = Path(out) / "runs" / str(run_id) / "config.json"
        if config.exists():
            texts = [read_json(config).get("dataset_description")]
        else:
            path = notes_path(Path(out) / "leaderboards", str(dataset))
            texts = read_json(path) if path.exists() else []
        notes += [str(text) for text in dict.fromkeys(texts) if text and str(text) not in notes]
    return notes


def notes_path(board_dir: Path, dataset: str) -> Path:
    """Where a dataset's notes are published beside its table, so that a rebuild without the runs keeps them."""
    return Path(board_dir) / f"{slug(dataset)}-notes.json"


def _cells(part: pd.DataFrame, eps_curves: pd.DataFrame) -> pd.DataFrame:
    """The displayed columns of ``part`` as text, with the robust accuracy (and its interval) at every eps of
    the sweep below the row's own as columns of their own, just before ``robust_acc``."""
    curve = robust_curves(eps_curves)
    curve = curve[curve.protocol.isin(part.protocol)]
    smaller = sorted({e for e in curve.eps if not (part.eps <= e * (1 + 1e-9)).all()})
    dataset_eps = float(part.eps.max())  # one protocol: one eps
    columns = [*DISPLAY[:DISPLAY.index("robust_acc")], *(f"robust_acc@{eps_text(e, dataset_eps)}" for e in smaller),
               *DISPLAY[DISPLAY.index("robust_acc"):]]
    rows = []
    for _, row in part.iterrows():
        cells = {c: BY_NAME[c].text(row[c]) for c in DISPLAY}
        cells["eps"] = eps_text(row.eps, dataset_eps)
        cells["robust_acc"] = interval_text(row.robust_acc, row.robust_acc_ci_low, row.robust_acc_ci_high)
        mine = curve[curve.model == row.model]
        for e in smaller:
            at = mine[np.isclose(mine.eps, e)]
            cells[f"robust_acc@{eps_text(e, dataset_eps)}"] = ("" if at.empty else
                                                  interval_text(*at.iloc[0][list(EPS_METRICS)]))
        rows.append([cells[c] for c in columns])
    return pd.DataFrame(rows, columns=columns)


def figure_path(dataset: str, protocol: str, name: str) -> str:
    """A leaderboard figure's path relative to leaderboards/."""
    return f"figures/{slug(dataset)}/{slug(protocol)}/{name}.png"


def _write_figures(board_dir: Path, dataset: str, frame: pd.DataFrame, eps_curves: pd.DataFrame,
                   noise_curves: pd.DataFrame) -> None:
    from benchmark import figures  # plotting libraries load only when a leaderboard is drawn

    for protocol, part in protocols(frame):
        paths = {name: board_dir / figure_path(dataset, protocol, name) for name, _ in FIGURES}
        paths["eps"].parent.mkdir(parents=True, exist_ok=True)
        robust = robust_curves(eps_curves)
        figures.plot_board_eps(part, robust[robust.protocol == protocol], float(part.eps.max()),
                               paths["eps"])
        figures.plot_board_noise(part, noise_curves[noise_curves.protocol == protocol], paths["noise"])
        figures.plot_board_tradeoff(part, paths["tradeoff"])


def _links(part: pd.DataFrame, dataset: str, suffix: str) -> list[str]:
    return [f"reports/{_report_link(dataset, protocol, model)}/report.{suffix}"
            for protocol, model in zip(part.protocol, part.model, strict=True)]


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


RANKING = ("Robust accuracy is the per-example worst case over every attack run at the row's eps (L-inf), with "
           "its 95% interval in brackets; robust_acc@e is the same at a smaller eps of the sweep. Rows are ranked "
           "by robust_auc, the normalised area under the robust-accuracy curve from eps 0 to the row's eps, then "
           "by robust_acc and clean_acc. A table ranks only rows of one protocol (profile and overrides); only "
           "standard-profile rows are comparable with published results.")
FLAGGED = ("Flagged rows, ranked apart: a gradient-masking diagnostic fired (the flags column names it; "
           "docs/protocol.md defines each), so their robust accuracy may be too high.")


def _parts(part: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """A protocol's table, split into the ranked rows and the flagged ones (each with its heading)."""
    marked = flagged(part)
    return [(None, part[~marked]), ("Flagged", part[marked])]


def _markdown(frame: pd.DataFrame, eps_curves: pd.DataFrame, dataset: str, notes: list[str]) -> str:
    lines = [f"# Leaderboard: {markdown_text(dataset)}", ""]
    for note in notes:
        lines += [f"> {markdown_text(note)}", ""]
    lines += [markdown_text(RANKING), ""]
    for protocol, part in protocols(frame):
        lines += [f"## Protocol: {markdown_text(protocol)}", "", markdown_text(_protocol_note(protocol, part)), ""]
        for heading, rows in _parts(part):
            if rows.empty:
                continue
            if heading:
                lines += [f"### {heading}", "", markdown_text(FLAGGED), ""]
            lines += [markdown_table(_cells(rows, eps_curves), links=_links(rows, dataset, "md")), ""]
        lines += [f"![{alt}]({figure_path(dataset, protocol, name)})" for name, alt in FIGURES] + [""]
    return "\n".join(lines)


def _report_link(dataset: str, protocol: str, model: str) -> str:
    return f"{slug(dataset)}/{slug(protocol)}/{slug(model)}"


def _index_html(out: Path) -> str:
    sections = []
    for dataset in datasets_on_board(out):
        frame = table(out, dataset)
        eps_curves = curves(out, frame)[0]
        notes = "".join(f"<p class='note'>{html.escape(note)}</p>" for note in dataset_notes(out, frame))
        for protocol, part in protocols(frame):
            heading = f"<h2>{html.escape(dataset)} <small>({html.escape(protocol)} protocol)</small></h2>"
            tables = []
            for title, rows in _parts(part):
                if not rows.empty:
                    tables.append((f"<h3>{title}</h3><p class='note'>{html.escape(FLAGGED)}</p>" if title else "")
                                  + html_table(_cells(rows, eps_curves), links=_links(rows, dataset, "html"),
                                               sortable=True))
            images = "".join(f"<figure><img src=\"{html.escape(figure_path(dataset, protocol, name), quote=True)}\" "
                             f"alt=\"{html.escape(alt, quote=True)}\"></figure>" for name, alt in FIGURES)
            sections.append(heading + notes + f"<p>{html.escape(_protocol_note(protocol, part))}</p>" + "".join(tables)
                            + f"<div class='figures'>{images}</div>")
    return (_PAGE.replace("{ranking}", html.escape(RANKING))
            .replace("{sections}", "\n".join(sections) or "<p>No runs yet.</p>"))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Robustness leaderboards</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin-bottom:2rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}
.note{background:#fff4d6;padding:.5rem;border-left:4px solid #e0a800}
.figures{display:flex;flex-wrap:wrap;gap:1rem}.figures img{max-width:46rem;width:100%}
</style></head><body>
<h1>Robustness leaderboards</h1>
<p>{ranking} Stochastic models are judged by the mean softmax over <em>samples</em> draws and attacked with
<em>eot</em> draws per step. Click a column to sort.</p>
{sections}
<script>
function sortTable(th){const table=th.closest('table'),body=table.tBodies[0],i=[...th.parentNode.children].indexOf(th);
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
const key=r=>{const t=r.children[i].innerText;const n=parseFloat(t);return isNaN(n)?t:n};
[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);\
return (x>y?1:x<y?-1:0)*(asc?1:-1)}).forEach(r=>body.appendChild(r));}
</script></body></html>
"""
