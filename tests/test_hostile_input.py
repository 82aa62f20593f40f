"""Hostile names reach the pages and CSVs as inert text; broken plugin outputs fail one condition, not the run;
leaderboard and run-store write errors are one clear line and lose nothing."""

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import make_finished_run

import benchmark.store as store
from benchmark.board import spreadsheet_safe
from benchmark.errors import BenchmarkError, PluginOutputError
from benchmark.leaderboard import publish
from benchmark.predictive import Predictor
from benchmark.runner import RunRequest, run

PLUGINS = Path(__file__).parent / "plugins" / "broken_outputs.py"
HOSTILE = ['=HYPERLINK("http://evil.example","click")', "<script>alert(1)</script>", "@SUM(A1:A9)", "a|b](x)"]
TINY = dict(dataset="mnist-5k", n_train=200, n_test=48, batch_size=16, epochs=1, device="cpu", profile="quick")


@pytest.mark.slow
def test_hostile_model_names_are_inert_in_csv_markdown_and_html(tmp_path):
    for name in HOSTILE:
        make_finished_run(tmp_path, name)
    publish(tmp_path, "mnist")
    board = pd.read_csv(tmp_path / "leaderboards" / "mnist.csv")
    assert sorted(board.model) == sorted("'" + n if n[0] in "=@" else n for n in HOSTILE)
    assert not any(str(cell).startswith(("=", "@", "+")) for cell in board.astype(str).to_numpy().ravel())
    page = (tmp_path / "leaderboards" / "index.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    markdown = (tmp_path / "leaderboards" / "mnist.md").read_text()
    assert "<script" not in markdown and "a\\|b\\](x)" in markdown
    for report in (tmp_path / "leaderboards" / "reports" / "mnist").glob("*/*/report.*"):
        assert "<script>alert" not in report.read_text()


def test_spreadsheet_escape_leaves_numbers_and_plain_text_alone():
    frame = pd.DataFrame({"model": ["=1+1", "-cmd", "ok"], "eps": [-0.5, 0.1, 0.3]})
    safe = spreadsheet_safe(frame)
    assert list(safe.model) == ["'=1+1", "'-cmd", "ok"]
    assert list(safe.eps) == [-0.5, 0.1, 0.3]


class Shapes(torch.nn.Module):
    def __init__(self, outputs):
        super().__init__()
        self.outputs = iter(outputs)

    def forward(self, x):
        return next(self.outputs)


@pytest.mark.parametrize("kind, outputs, message", [
    ("deterministic", [torch.zeros(4, 11)], "11 classes"),
    ("deterministic", [torch.zeros(3, 10)], r"shape \(3, 10\) for a batch of 4"),
    ("ensemble", [torch.zeros(5, 4, 10), torch.zeros(4, 4, 10)], "4 members, earlier calls 5"),
    ("moments", [(torch.zeros(4, 10), torch.zeros(4, 9))], "differ in shape"),
    ("deterministic", [torch.full((4, 10), float("nan"))], "4 of 4 inputs are NaN"),
    ("stochastic", [torch.zeros(8, 10), torch.zeros(8, 12)], "12 classes"),
])
def test_predictor_refuses_outputs_that_break_the_contract(kind, outputs, message):
    predictor = Predictor(Shapes(outputs), kind, num_classes=10, max_batch=8)
    with pytest.raises(PluginOutputError, match=message):
        for _ in outputs:
            predictor.probs(torch.zeros(4, 1, 2, 2), draws=2)


@pytest.mark.parametrize("model, failed, kept", [
    # NaN for every input off the uint8 grid: noise and attacks fail (the smallest eps of the sweep attacks
    # every clean-correct example; larger ones only what survived), clean and diagnostics stand
    ("nan-off-grid", {"noise-0.05", "pgd-0.1", "fgsm-0.1", "pgd-long-0.1"}, {"clean", "diagnostics"}),
    # one more class after the first three evaluation calls: clean stands, everything after fails
    ("shape-shift", {"diagnostics", "noise-0.05", "pgd-0.1"}, {"clean"}),
])
@pytest.mark.slow
def test_a_broken_plugin_fails_conditions_by_name_and_the_run_goes_on(tmp_path, capsys, model, failed, kept):
    row = run(RunRequest(model=f"{PLUGINS}:{model}", out=tmp_path, **TINY))
    (run_dir,) = (tmp_path / "runs").iterdir()
    failures = store.RunStore(run_dir).failures()
    assert failed <= set(failures) and not kept & set(failures)
    assert "condition-failed" in row["flags"] and np.isnan(row["robust_acc"])
    assert 0.0 <= row["clean_acc"] <= 1.0  # the clean condition stood
    err = capsys.readouterr().err
    assert f"plugin '{model}' failed in condition pgd-0.1" in " ".join(err.split())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert (set(metrics[metrics.metric == "failed"].condition)
            == {c.rsplit("-", 1)[0] if c[-1].isdigit() else c for c in failures})
    (report,) = (tmp_path / "leaderboards" / "reports" / "mnist-5k").glob(f"*/{model}/report.md")
    report = report.read_text()
    assert "## Failed conditions" in report and "pgd-0.1" in report
    # resuming reuses the recorded failures instead of running the conditions again
    assert run(RunRequest(model=f"{PLUGINS}:{model}", out=tmp_path, **TINY))["flags"] == row["flags"]
    assert "done earlier" in capsys.readouterr().err


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.slow
def test_full_disk_under_leaderboards_keeps_the_run_and_a_rebuild_recovers(tmp_path, monkeypatch):
    run_dir = make_finished_run(tmp_path, "model-a")
    monkeypatch.setattr(store, "atomic_write_bytes", _no_space)  # every table and page goes through it
    with pytest.raises(BenchmarkError, match="No space left on device.*run directory is kept"):
        publish(tmp_path, "mnist")
    assert (run_dir / "summary.json").exists()
    monkeypatch.undo()
    publish(tmp_path, "mnist")
    assert list(pd.read_csv(tmp_path / "leaderboards" / "mnist.csv").model) == ["model-a"]


def test_read_only_run_store_is_one_clear_error_and_keeps_finished_conditions(tmp_path, monkeypatch):
    runs = store.RunStore(tmp_path / "run")
    runs.save_condition("clean", [{"condition": "clean", "param": None, "metric": "accuracy", "value": 0.9}],
                        {"correct": np.ones((1, 3), dtype=bool)})
    monkeypatch.setattr(store, "atomic_write_bytes",
                        lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    with pytest.raises(BenchmarkError, match="Read-only file system.*finished conditions.*are intact"):
        runs.save_condition("pgd-0.3", [], {"correct": np.ones((1, 3), dtype=bool)})
    assert runs.is_done("clean") and not runs.is_done("pgd-0.3")


@pytest.mark.slow
def test_concurrent_publishers_never_lose_or_corrupt_a_row(tmp_path):
    """Six processes rebuild the same leaderboard over and over while a reader keeps parsing it."""
    models = [f"model-{i}" for i in range(6)]
    script = ("import sys; from fakes import make_finished_run; from benchmark.leaderboard import publish\n"
              "from pathlib import Path\nout, model = Path(sys.argv[1]), sys.argv[2]\n"
              "make_finished_run(out, model)\nfor _ in range(4): publish(out, 'mnist', model)\n")
    reader = ("import sys, time, pandas as pd; from pathlib import Path\n"
              "path = Path(sys.argv[1]) / 'leaderboards' / 'mnist.csv'\n"
              "end = time.time() + 60\n"
              "while time.time() < end and not (path.exists() and len(pd.read_csv(path)) == 6):\n"
              "    if path.exists(): assert set(pd.read_csv(path).columns) >= {'model', 'robust_acc'}\n")
    env_path = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), m], cwd=env_path) for m in models]
    procs.append(subprocess.Popen([sys.executable, "-c", reader, str(tmp_path)], cwd=env_path))
    assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)
    board = pd.read_csv(tmp_path / "leaderboards" / "mnist.csv")
    assert sorted(board.model) == models
    assert not list((tmp_path / "leaderboards").glob(".*.tmp"))
