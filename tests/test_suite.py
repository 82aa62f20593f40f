"""The whole board in one command: ``benchmark run --model all`` or a comma-separated list of plugins."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.errors import BenchmarkError
from benchmark.registry import list_models
from benchmark.suite import is_suite, suite_models

PLUGINS = Path(__file__).parent / "plugins"
TINY = ["--dataset", "mnist-5k", "--n-train", "200", "--n-test", "12", "--epochs", "1", "--device", "cpu"]


def test_all_names_every_registered_plugin_and_a_list_keeps_its_order():
    assert suite_models("all") == list_models()
    assert suite_models(" endp,baseline,endp ") == ["endp", "baseline"]
    assert is_suite("all") and is_suite("endp,baseline") and not is_suite("endp")


def test_an_unknown_name_in_the_list_is_refused_before_anything_runs():
    with pytest.raises(BenchmarkError, match="unknown model 'enpd'; did you mean endp"):
        suite_models("baseline,enpd")
    with pytest.raises(BenchmarkError, match="names no plugin"):
        suite_models(" , ")


def test_several_models_cannot_share_one_checkpoint(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    result = CliRunner().invoke(app, ["run", "--model", "baseline,endp", "--checkpoint", str(weights),
                                      "--out", str(tmp_path)])
    assert isinstance(result.exception, BenchmarkError)
    assert "cannot be given with several models" in str(result.exception)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_failing_plugin_is_reported_and_the_others_finish_and_resume(tmp_path):
    good, bad = f"{PLUGINS / 'good_plugin.py'}:tiny-linear", f"{PLUGINS / 'bad_plugin.py'}:bad-shape"
    command = ["run", "--model", f"{bad},{good}", *TINY, "--out", str(tmp_path)]
    result = CliRunner().invoke(app, command)
    assert isinstance(result.exception, BenchmarkError)  # the command fails, naming the plugin that failed
    assert "1 plugin(s) failed: " + bad in str(result.exception)
    assert "breaks the contract" in result.output  # the reason, as the suite's table reports it
    assert "1 of 2 plugins finished" in result.output
    board = pd.read_csv(tmp_path / "leaderboards" / "mnist-5k.csv")
    assert list(board.model) == ["tiny-linear"]  # the plugin after the failing one still ran and was published

    again = CliRunner().invoke(app, ["run", "--model", f"{good},", *TINY, "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert "done earlier, reusing" in again.output  # a second invocation resumes the finished run
    assert "1 of 1 plugins finished" in again.output
    assert pd.read_csv(tmp_path / "leaderboards" / "mnist-5k.csv").equals(board)


@pytest.mark.slow
def test_the_published_profile_trains_with_the_short_recipes_and_reuses_quick_checkpoints(tmp_path):
    """The boards' profile (published: 1,000 test images, AutoAttack) must not retrain what the quick run trained."""
    from benchmark.profiles import get_profile
    from benchmark.runner import RunRequest, run

    assert (get_profile("published").recipe, get_profile("standard").recipe) == ("quick", "standard")
    good = f"{PLUGINS / 'good_plugin.py'}:tiny-linear"
    tiny = dict(dataset="mnist-5k", n_train=200, n_test=12, epochs=1, device="cpu", out=tmp_path)
    quick = run(RunRequest(model=good, profile="quick", **tiny))
    published = run(RunRequest(model=good, profile="published", **tiny))
    assert len(list((tmp_path / "checkpoints").glob("*tiny-linear*"))) == 1  # one training, shared
    assert quick["training"] == published["training"] == "short recipe"
    assert published["protocol"].startswith("published") and published["run_id"] != quick["run_id"]
