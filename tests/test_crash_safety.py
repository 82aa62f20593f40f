"""A run killed with SIGKILL at random moments, again and again, finishes with exactly the results of an
uninterrupted run, and never redoes a finished condition."""

import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # end to end: runs with --slow (CI), not in the quick loop

ARGS = ["run", "--model", "mc-dropout", "--dataset", "mnist-5k", "--n-train", "300", "--n-test", "32",
        "--batch-size", "16", "--epochs", "1", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(out):
    return subprocess.Popen([sys.executable, "-m", "benchmark", *ARGS, "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finished(out) -> set[str]:
    return {p.stem for p in out.glob("runs/*/conditions/*.csv")}


def _results(out) -> pd.DataFrame:
    (metrics,) = out.glob("runs/*/metrics.csv")
    frame = pd.read_csv(metrics)
    return frame[frame.metric != "seconds"].sort_values(["condition", "param", "metric"]).reset_index(drop=True)


def test_sigkill_at_random_moments_then_resume_gives_identical_results(tmp_path):
    start = time.perf_counter()
    reference = _start(tmp_path / "reference")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    duration = time.perf_counter() - start

    out, rng, kills, seen = tmp_path / "killed", random.Random(7), 0, set()
    for _ in range(8):
        process = _start(out)
        try:
            process.wait(timeout=rng.uniform(0.15, 0.4) * duration)
            break  # it finished before its kill time
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
        now = _finished(out)
        assert seen <= now  # a kill never loses a finished condition
        seen = now
    seen = _finished(out)  # the last attempt may have finished on its own
    final = _start(out)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    assert kills >= 3
    assert " ".join(err.split()).count("done earlier, reusing") == len(seen)  # nothing finished was redone
    pd.testing.assert_frame_equal(_results(out), _results(tmp_path / "reference"))
    assert len(pd.read_csv(out / "leaderboards" / "mnist-5k.csv")) == 1
