"""Publishing a leaderboard: ``leaderboards/<dataset>.csv`` (with its curves and notes), ``.md``, the figures,
the reports and ``index.html``, rebuilt from the run store and the published board (benchmark.board).

A leaderboard is never edited in place: it is recomputed from every run's ``summary.json``, and from the rows
already published under ``leaderboards/`` whose runs are not in the store, and written atomically under a lock,
so concurrent runs and interrupted writes can never leave a half-written table.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from benchmark.board import (
    Board,
    datasets_on_board,
    figure_path,
    load_board,
    protocols,
    report_dir,
    robust_curves,
    write_board,
)
from benchmark.board_pages import FIGURES, index_page, markdown_page
from benchmark.errors import BenchmarkError
from benchmark.report import write_report
from benchmark.store import atomic_write_text, slug


@contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(out: Path, dataset: str, model: str | None = None) -> None:
    """Rewrite the dataset's tables and the index; render the report of ``model`` (all models if None)."""
    out = Path(out)
    board_dir = out / "leaderboards"
    try:
        with _locked(board_dir):
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
            atomic_write_text(board_dir / "index.html",
                              index_page([load_board(out, name) for name in datasets_on_board(out)]))
    except OSError as exc:
        raise BenchmarkError(f"cannot write leaderboards under {board_dir}: {exc.strerror or exc}; the run "
                             f"directory is kept, rerun `benchmark leaderboard --out {out}` once it is "
                             "writable") from exc


def _write_figures(board_dir: Path, board: Board) -> None:
    from benchmark import figures  # plotting libraries load only when a leaderboard is drawn

    robust = robust_curves(board.eps_curves)
    for protocol, part in protocols(board.rows):
        paths = {name: board_dir / figure_path(board.dataset, protocol, name) for name, _, _ in FIGURES}
        paths["eps"].parent.mkdir(parents=True, exist_ok=True)
        figures.plot_board_eps(part, robust[robust.protocol == protocol], float(part.eps.max()), paths["eps"])
        figures.plot_board_noise(part, board.noise_curves[board.noise_curves.protocol == protocol], paths["noise"])
        figures.plot_board_tradeoff(part, paths["tradeoff"])
