"""Publishing a leaderboard: ``leaderboards/<dataset>.csv`` (with its curves and notes), ``.md``, the figures,
the reports and ``index.html``, rebuilt from the run store and the published board (benchmark.board).

A leaderboard is never edited in place: it is recomputed from every run's ``summary.json``, and from the rows
already published under ``leaderboards/`` whose runs are not in the store, and written atomically under a lock,
so concurrent runs and interrupted writes can never leave a half-written table.

A run publishes what it changed (:func:`publish`): its dataset's board and its own report, and ``index.html``
with the other datasets as they are published, read from their CSVs, never from their runs. Rebuilding every
board, report and the index from the runs is :func:`publish_all`, the ``benchmark leaderboard`` command.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.board import (
    Board,
    board_order,
    board_tables,
    datasets_on_board,
    figure_path,
    load_board,
    protocols,
    published_board,
    report_dir,
    robust_curves,
    write_board,
)
from benchmark.board_pages import FIGURES, index_page, markdown_page
from benchmark.errors import BenchmarkError
from benchmark.report import write_report
from benchmark.store import atomic_write_text, slug


@contextmanager
def _publishing(out: Path) -> Iterator[Path]:
    """``out/leaderboards``, locked while a publisher writes it; a write that fails is one user error."""
    board_dir = Path(out) / "leaderboards"
    try:
        board_dir.mkdir(parents=True, exist_ok=True)
        with open(board_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield board_dir
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError as exc:
        raise BenchmarkError(f"cannot write leaderboards under {board_dir}: {exc.strerror or exc}; the run "
                             f"directory is kept, rerun `benchmark leaderboard --out {out}` once it is "
                             "writable") from exc


def publish(out: Path, dataset: str, model: str | None = None) -> None:
    """Rewrite the dataset's board and render the report of ``model`` (all models if None); rewrite the index
    with every other dataset as its published tables hold it."""
    with _publishing(out) as board_dir:
        board = _publish_board(Path(out), dataset, model)
        others = [published_board(board_dir, name) for name in board_tables(board_dir) if name != dataset]
        _write_index(board_dir, [board, *others])


def publish_all(out: Path) -> list[str]:
    """Rebuild every dataset's board and every report from the runs under ``out`` and the published rows, and
    the index from those boards; return the datasets, in the index's order."""
    names = datasets_on_board(out)
    if not names:
        raise BenchmarkError(f"no finished runs under {Path(out) / 'runs'}; "
                             "start one with `benchmark run --model NAME`")
    with _publishing(out) as board_dir:
        _write_index(board_dir, [_publish_board(Path(out), name) for name in names])
    return names


def _publish_board(out: Path, dataset: str, model: str | None = None) -> Board:
    """Write the board of ``dataset`` (tables, page, figures) and the reports of ``model`` (all if None); return
    the board."""
    board_dir = out / "leaderboards"
    board = load_board(out, dataset)
    if board.rows.empty:
        raise BenchmarkError(f"no finished runs or published rows for dataset {dataset!r} under {out}")
    frame = board.rows
    for _, row in frame[frame.model == model].iterrows() if model else frame.iterrows():
        if (out / "runs" / row.run_id).is_dir():  # a published row keeps its published report
            write_report(out / "runs" / row.run_id, report_dir(out, dataset, row.protocol, row.model))
    _write_figures(board_dir, board)
    write_board(board_dir, board)
    atomic_write_text(board_dir / f"{slug(dataset)}.md", markdown_page(board))
    return board


def _write_index(board_dir: Path, boards: list[Board]) -> None:
    """``index.html``: the boards, in :func:`board_order`."""
    by_name = {board.dataset: board for board in boards}
    atomic_write_text(board_dir / "index.html", index_page([by_name[name] for name in board_order(by_name)]))


def _write_figures(board_dir: Path, board: Board) -> None:
    from benchmark import figures  # plotting libraries load only when a leaderboard is drawn

    robust = robust_curves(board.eps_curves)
    for protocol, part in protocols(board.rows):
        paths = {name: board_dir / figure_path(board.dataset, protocol, name) for name, _, _ in FIGURES}
        paths["eps"].parent.mkdir(parents=True, exist_ok=True)
        figures.plot_board_eps(part, robust[robust.protocol == protocol], float(part.eps.max()), paths["eps"])
        figures.plot_board_noise(part, board.noise_curves[board.noise_curves.protocol == protocol], paths["noise"])
        figures.plot_board_tradeoff(part, paths["tradeoff"])
        figures.plot_board_detection(part, board_dir / figure_path(board.dataset, protocol, "detection"))
