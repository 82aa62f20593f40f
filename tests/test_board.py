"""benchmarks/board/board.sh: the unfinished runs of a board outlive the machine that ran them (kept in pending/
and restored on the next one), and publishing adds finished runs to the published board."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from fakes import make_finished_run

from benchmark.leaderboard import publish

BOARD = Path(__file__).resolve().parents[1] / "benchmarks" / "board" / "board.sh"


def _board(*args, pending: Path, repo: Path | None = None, check: bool = True,
           **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BOARD_PENDING": str(pending), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           **env_vars}
    if repo is not None:
        env["BOARD_REPO"] = str(repo)
    return subprocess.run(["bash", str(BOARD), *map(str, args)], env=env, capture_output=True, text=True, check=check)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _unfinished_run(work: Path, run_id: str, key: str) -> None:
    run = work / "runs" / run_id
    (run / "conditions").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_key": key}))
    (run / "conditions" / "clean.csv").write_text("condition,param,metric,value\nclean,0,accuracy,0.9\n")
    (run / "conditions" / ".pgd.csv.abc.tmp").write_text("half writ")  # a kill during a write


def test_unfinished_runs_and_their_checkpoints_are_kept_and_restored(tmp_path):
    work, pending = tmp_path / "work", tmp_path / "pending"
    _unfinished_run(work, "mnist-bbb-reference-1", "k1")
    make_finished_run(work, "swag")  # finished: it belongs on the board, not in pending/
    (work / "checkpoints").mkdir()
    for name in ("mnist-bbb-k1", "mnist-baseline-k0", "mnist-vd-k9"):
        (work / "checkpoints" / f"{name}.safetensors").write_bytes(name.encode())
    (pending / "runs" / "stale-run").mkdir(parents=True)  # what an earlier save kept is replaced
    _board("save", work, pending=pending)
    assert sorted(_files(pending)) == ["checkpoints/mnist-baseline-k0.safetensors",
                                       "checkpoints/mnist-bbb-k1.safetensors",
                                       "runs/mnist-bbb-reference-1/conditions/clean.csv",
                                       "runs/mnist-bbb-reference-1/config.json"]
    fresh = tmp_path / "next-machine"
    _board("restore", fresh, pending=pending)
    assert _files(fresh) == _files(pending)
    ahead = fresh / "runs" / "mnist-bbb-reference-1" / "conditions" / "clean.csv"
    ahead.write_text("newer")  # progress made on this machine is never overwritten by the kept copy
    _board("restore", fresh, pending=pending)
    assert ahead.read_text() == "newer"


def test_a_save_that_would_add_too_much_to_git_is_refused_and_keeps_pending(tmp_path):
    work, pending = tmp_path / "work", tmp_path / "pending"
    _unfinished_run(work, "mnist-bbb-reference-1", "k1")
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "mnist-bbb-k1.safetensors").write_bytes(bytes(1_500_000))
    _board("save", work, pending=pending, BOARD_MAX_MB="2")
    kept = _files(pending)
    _unfinished_run(work, "mnist-vd-reference-2", "k2")  # what is kept already does not count again
    (work / "checkpoints" / "mnist-vd-k2.safetensors").write_bytes(bytes(2_500_000))
    refused = _board("save", work, pending=pending, check=False, BOARD_MAX_MB="2")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()] and "3 MB to pending/" in refused.stderr
    assert _files(pending) == kept
    _board("save", work, pending=pending, BOARD_MAX_MB="3")
    assert "runs/mnist-vd-reference-2/config.json" in _files(pending)


def test_publishing_adds_finished_runs_to_the_published_board(tmp_path):
    repo, work = tmp_path / "repo", tmp_path / "work"
    make_finished_run(repo, "baseline", robust=0.2)
    publish(repo, "mnist")
    shutil.rmtree(repo / "runs")  # the repository holds the board, not its runs
    (repo / "docs").mkdir()
    (repo / "leaderboards" / "README.md").write_text(
        "# provenance\n<!-- generated: provenance (x) -->\n<!-- end generated: provenance -->\n")
    make_finished_run(work, "bbb", robust=0.4)
    _unfinished_run(work, "mnist-vd-reference-2", "k2")
    _board("publish", work, pending=tmp_path / "pending", repo=repo)
    rows = pd.read_csv(repo / "leaderboards" / "mnist.csv")
    assert dict(zip(rows.model, rows.robust_acc, strict=True)) == {"baseline": 0.2, "bbb": 0.4}
    assert (repo / "leaderboards" / "reports" / "mnist" / "quick" / "bbb" / "report.md").is_file()
    assert (repo / "docs" / "claims.md").is_file()
    assert "| bbb |" in (repo / "leaderboards" / "README.md").read_text()  # the provenance tables, regenerated
    assert not (repo / "runs").exists() and not (repo / "leaderboards" / ".lock").exists()
