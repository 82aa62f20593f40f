"""A leaderboard's data: its rows, merged from the run store and the published board, ranked, and their curves
and notes, with the published files that hold them (``leaderboards/<dataset>.csv``, ``-eps.csv``, ``-noise.csv``,
``-notes.json``) read and written here; benchmark.board_pages renders it, benchmark.leaderboard publishes it.

Published rows are kept because the run store is local (a clone of the repository holds the boards, not the
runs behind them): a new run joins the published board instead of replacing it, and replaces a published row
only for the same model and protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark import diagnostics
from benchmark.columns import NAMES
from benchmark.data.builtin import BUILTIN_DATASETS
from benchmark.names import ROBUST, eps_up_to, published_eps, split_flags
from benchmark.results import RunResults
from benchmark.store import atomic_write_text, list_runs, read_json, slug, write_json

# the named profiles' own protocols first, then any with overrides; ``reference`` is retired (quick's attacks on
# 2,000 test images, without AutoAttack), and its rows stay on the boards until they are rerun as ``published``
PROFILE_ORDER = {"standard": 0, "published": 1, "reference": 2, "quick": 3}
#: what a reader must know before trusting rows of a retired profile: said at the top of every page showing them
RETIRED_PROFILES = {
    "reference": "Rows of the reference protocol come from a profile without AutoAttack: FGSM, PGD-20, PGD-100, PGD "
                 "on the DLR margin, PGD with 2K draws, Square with 500 queries and transfer, with K = 4 EOT draws. "
                 "AutoAttack, run by this harness on the first 200 MNIST test images with the same short training "
                 "recipe, left VDP at 0.025 robust accuracy at eps 0.2, where the MNIST board shows 0.153. "
                 "Read these rows as upper bounds, and a claim that holds on them as unsettled, until the boards are "
                 "rerun under the published profile (AutoAttack at every eps).",
}


def retired_notes(protocol_names) -> list[str]:
    """The warnings of the retired profiles among ``protocol_names`` (a protocol is its profile's name, then any
    overrides in brackets), once each, in :data:`RETIRED_PROFILES`' order."""
    profiles = {str(name).split("[")[0] for name in protocol_names}
    return [note for profile, note in RETIRED_PROFILES.items() if profile in profiles]
#: The rank within a protocol: robustness over the whole eps range first (the curve's normalised area), then
#: the accuracy at the dataset's eps, then clean accuracy. Flagged rows are ranked after, and apart from, the rest.
SORT_KEY = ("robust_auc", "robust_acc", "clean_acc")
EPS_METRICS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high")
NOISE_METRICS = ("accuracy", "ece", "auroc")
EPS_COLUMNS = ["model", "protocol", "attack", "eps", *EPS_METRICS]
NOISE_COLUMNS = ["model", "protocol", "sigma", *NOISE_METRICS]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Board:
    """One dataset's leaderboard: its ranked rows, their eps and noise curves, and what the dataset is."""

    dataset: str
    rows: pd.DataFrame
    eps_curves: pd.DataFrame
    noise_curves: pd.DataFrame
    notes: list[str]


def load_board(out: Path, dataset: str) -> Board:
    """The leaderboard of ``dataset`` as the runs under ``out`` and the board published there make it."""
    rows = table(out, dataset)
    eps_curves, noise_curves = curves(out, rows)
    return Board(dataset, rows, eps_curves, noise_curves, dataset_notes(out, rows))


def published_board(board_dir: Path, dataset: str) -> Board:
    """The leaderboard of ``dataset`` as :func:`write_board` published it under ``board_dir``: its CSVs and notes
    alone, no run read."""
    rows, eps_curves, noise_curves = published(board_dir, dataset)
    path = notes_path(board_dir, dataset)
    return Board(dataset, rows, eps_curves, noise_curves, read_json(path) if path.exists() else [])


def write_board(board_dir: Path, board: Board) -> None:
    """Publish the board's tables and notes under ``board_dir``, each file replaced atomically."""
    for suffix, frame in (("", board.rows), ("-eps", board.eps_curves), ("-noise", board.noise_curves)):
        atomic_write_text(Path(board_dir) / f"{slug(board.dataset)}{suffix}.csv",
                          spreadsheet_safe(frame).to_csv(index=False))
    write_json(notes_path(board_dir, board.dataset), board.notes)


# ---------------------------------------------------------------- where the published files are


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


def notes_path(board_dir: Path, dataset: str) -> Path:
    """Where a dataset's notes are published beside its table, so that a rebuild without the runs keeps them."""
    return Path(board_dir) / f"{slug(dataset)}-notes.json"


def figure_path(dataset: str, protocol: str, name: str) -> str:
    """A leaderboard figure's path relative to leaderboards/."""
    return f"figures/{slug(dataset)}/{slug(protocol)}/{name}.png"


def report_link(dataset: str, protocol: str, model: str) -> str:
    """A row's report folder relative to leaderboards/reports/."""
    return f"{slug(dataset)}/{slug(protocol)}/{slug(model)}"


def report_dir(out: Path, dataset: str, protocol: str, model: str) -> Path:
    """Where the report of ``model`` on ``dataset`` under ``protocol`` is rendered."""
    return Path(out) / "leaderboards" / "reports" / report_link(dataset, protocol, model)


# ---------------------------------------------------------------- rows


def published(board_dir: Path, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rows, eps curves and noise curves of ``dataset`` as its published CSVs hold them (empty if none)."""
    path = board_tables(board_dir).get(dataset)
    if path is None:
        return (pd.DataFrame(columns=NAMES), pd.DataFrame(columns=EPS_COLUMNS),
                pd.DataFrame(columns=NOISE_COLUMNS))
    return read_board(path)


def read_board(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A published table (``<dataset>.csv``) with its eps and noise curves, as :func:`write_board` wrote them."""
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


def flagged(frame: pd.DataFrame) -> pd.Series:
    """Rows whose run raised a demoting flag (``diagnostics.demoting``): their robust accuracy may be too high, so
    they are ranked apart from the rest. A flag given as information alone leaves the row ranked."""
    names = frame["flags"].astype(object).fillna("").astype(str)  # all-empty: read back as NaN floats
    return names.map(lambda joined: bool(diagnostics.demoting(split_flags(joined)))).astype(bool)


def ranked_and_flagged(part: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A protocol's rows split into the ranked ones and the flagged ones, each in the board's order."""
    marked = flagged(part)
    return part[~marked], part[marked]


def protocols(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The tables of a leaderboard: one per protocol, in the leaderboard's order."""
    return [(name, frame[frame.protocol == name]) for name in dict.fromkeys(frame.protocol)]


def datasets_on_board(out: Path) -> list[str]:
    """The datasets with at least one finished run or published table under ``out``, in :func:`board_order`."""
    found = {read_json(r.root / "summary.json")["dataset"] for r in list_runs(out)}
    return board_order(found | set(board_tables(Path(out) / "leaderboards")))


def board_order(datasets) -> list[str]:
    """``datasets`` in the order of the index page: the built-in ones first, in their own order (MNIST, the main
    board, at the top), then the others by name."""
    return sorted(datasets, key=lambda name: (BUILTIN_DATASETS.index(name) if name in BUILTIN_DATASETS
                                              else len(BUILTIN_DATASETS), name))


# ---------------------------------------------------------------- curves


def curves(out: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every row's accuracy (with its interval) under each attack, as the worst case (``robust``) and, for
    plugins with interval bounds, the certified accuracy (``certified``) at each eps of its sweep up to the row's
    eps, and its accuracy, ECE and entropy AUROC at each noise sigma, read from the
    row's run (long tables); a point where its condition failed, as NaN."""
    eps_rows, noise_rows = [], []
    _, eps_published, noise_published = (published(Path(out) / "leaderboards", str(frame.dataset.iloc[0]))
                                         if not frame.empty else (None, None, None))
    for row in frame.itertuples():
        run_dir = Path(out) / "runs" / str(row.run_id)
        if not (run_dir / "metrics.csv").exists():  # a published row: its curves as published
            for rows, found in ((eps_rows, eps_published), (noise_rows, noise_published)):
                rows += found[(found.model == row.model) & (found.protocol == row.protocol)].to_dict("records")
            continue
        results = RunResults.read(run_dir)
        for attack, curve in results.eps_curves().items():
            for eps, values in curve.iterrows():
                if eps_up_to(float(eps), float(row.eps)):  # the collapse check at a larger eps is not the curve
                    eps_rows.append({"model": row.model, "protocol": row.protocol, "attack": attack,
                                     "eps": published_eps(eps), **{m: values.get(m) for m in EPS_METRICS}})
        for sigma, values in results.noise_curve(failed=True).iterrows():
            noise_rows.append({"model": row.model, "protocol": row.protocol, "sigma": float(sigma),
                               **{m: values.get(m) for m in NOISE_METRICS}})
    eps_frame = pd.DataFrame(eps_rows, columns=EPS_COLUMNS)
    noise_frame = pd.DataFrame(noise_rows, columns=NOISE_COLUMNS)
    # a metric a failed condition left out is NaN, not None: every consumer reads these columns as numbers
    return (eps_frame.astype({m: float for m in EPS_METRICS}), noise_frame.astype({m: float for m in NOISE_METRICS}))


def robust_curves(eps_curves: pd.DataFrame) -> pd.DataFrame:
    """The worst case over every attack (the leaderboard's robust accuracy) from the long eps table."""
    return eps_curves[eps_curves.attack == ROBUST]


# ---------------------------------------------------------------- notes and escaping


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
