"""End-to-end runs on a tiny slice of the built-in MNIST sample: schema, resume, caching, CLI errors."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import benchmark.evaluation as evaluation
from benchmark.cli import app
from benchmark.columns import EXTRA, SCHEMA
from benchmark.runner import RunRequest, finished_text, run

TINY = dict(dataset="mnist-5k", n_train=400, n_test=40, epochs=1, device="cpu", profile="quick")


def metrics_of(out):
    (run_dir,) = (out / "runs").iterdir()
    return pd.read_csv(run_dir / "metrics.csv").sort_values(["condition", "param", "metric"]).reset_index(drop=True)


@pytest.mark.slow
def test_mc_dropout_run_writes_every_output(tmp_path):
    row = run(RunRequest(model="mc-dropout", out=tmp_path, **TINY))
    board = pd.read_csv(tmp_path / "leaderboards" / "mnist-5k.csv", keep_default_na=False)
    assert list(board.columns) == SCHEMA + EXTRA == list(row)  # the row and the CSV follow benchmark.columns
    assert len(board) == 1
    for column in SCHEMA:
        if column != "flags":  # empty means no diagnostic fired
            assert board[column].iloc[0] != "", column
    assert (row["samples"], row["eot"], row["reevals"]) == (8, 4, 3)
    assert row["predictive"] == "stochastic"
    assert row["robust_acc_ci_low"] <= row["robust_acc"] <= row["robust_acc_ci_high"]
    assert row["robust_acc_worst"] <= row["robust_acc"] <= row["clean_acc"]
    assert row["protocol"] == "quick[epochs=1, n_test=40, n_train=400]"  # overrides are part of the row's identity
    metrics = metrics_of(tmp_path)
    assert {"clean", "noise", "fgsm", "pgd", "robust", "diagnostics"} <= set(metrics.condition)
    assert (sorted(metrics[(metrics.condition == "noise") & (metrics.metric == "accuracy")].param)
            == [0, 0.05, 0.1, 0.2, 0.3, 0.5])
    (report,) = (tmp_path / "leaderboards" / "reports" / "mnist-5k").glob("*/mc-dropout")
    for name in ("report.md", "report.html", "reliability.png", "noise.png", "eps.png"):
        assert (report / name).stat().st_size > 0
    assert "mc-dropout" in (tmp_path / "leaderboards" / "index.html").read_text()
    (run_dir,) = (tmp_path / "runs").iterdir()
    import numpy as np

    correct = np.load(run_dir / "conditions" / "pgd-0.3.npz")["correct"]
    assert correct.shape == (3, 40)  # R re-evaluations of every example


@pytest.mark.slow
def test_robust_accuracy_is_the_per_example_worst_case(tmp_path):
    """At eps 0.1 a briefly trained CNN keeps part of its examples under some attacks and not others: the robust
    set must be exactly those no stored attack broke, below every single attack (at MNIST's 0.3 every array is
    zero and any rule passes)."""
    run(RunRequest(model="baseline", out=tmp_path, **{**TINY, "n_train": 1500, "epochs": 2, "eps": 0.1}))
    import numpy as np

    (run_dir,) = (tmp_path / "runs").iterdir()
    # the attacks' conditions: not the self-test's, nor the adaptive attack's on the detector (it runs on broken
    # examples only, and its points enter the detection rows, not the robust accuracy)
    attacks = [p for p in (run_dir / "conditions").glob("*-0.1.npz")
               if not p.stem.startswith(("binarization", "adaptive"))]
    assert {"fgsm-0.1", "pgd-0.1", "pgd-long-0.1", "apgd-t-0.1", "square-0.1"} <= {p.stem for p in attacks}
    clean = np.load(run_dir / "conditions" / "clean.npz")["correct"][0]
    survived = {p.stem: np.load(p)["correct"][0] for p in attacks}
    smaller = [np.load(p)["correct"][0] for p in (run_dir / "conditions").glob("*-0.0333*.npz")
               if not p.stem.startswith(("binarization", "adaptive"))]
    metrics = metrics_of(tmp_path)
    robust = metrics[(metrics.condition == "robust") & np.isclose(metrics.param, 0.1)
                     & (metrics.metric == "accuracy")].value.item()
    assert 0 < robust < clean.mean()
    assert robust <= min(correct.mean() for correct in survived.values())
    assert max(correct.mean() for correct in survived.values()) > robust  # some attack alone left more standing
    standing = np.logical_and.reduce([clean, *survived.values(), *smaller])
    assert robust == pytest.approx(standing.mean())


@pytest.mark.slow
def test_interrupted_run_resumes_with_identical_results(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run(RunRequest(model="mc-dropout", out=reference, **TINY))

    interrupted = tmp_path / "interrupted"
    original = evaluation.Evaluator.run
    calls = {"n": 0}

    def dies_on_the_fifth_condition(self, condition, clean_entropy=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, condition, clean_entropy)

    monkeypatch.setattr(evaluation.Evaluator, "run", dies_on_the_fifth_condition)
    with pytest.raises(KeyboardInterrupt):
        run(RunRequest(model="mc-dropout", out=interrupted, **TINY))
    assert not (interrupted / "leaderboards" / "mnist-5k.csv").exists()

    monkeypatch.setattr(evaluation.Evaluator, "run", original)
    done_before = {p.name for p in (next((interrupted / "runs").iterdir()) / "conditions").glob("*.csv")}
    assert len(done_before) == 4
    recomputed = []
    monkeypatch.setattr(evaluation.Evaluator, "run",
                        lambda self, c, e=None: recomputed.append(c.id) or original(self, c, e))
    run(RunRequest(model="mc-dropout", out=interrupted, **TINY))
    assert not set(recomputed) & {name[:-4] for name in done_before}

    a, b = metrics_of(reference), metrics_of(interrupted)
    a, b = a[a.metric != "seconds"], b[b.metric != "seconds"]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.slow
def test_second_run_reuses_the_checkpoint(tmp_path, capsys):
    run(RunRequest(model="baseline", out=tmp_path, **TINY))
    # the log says how far the run got: one line per condition as it is stored, headline and time
    (run_dir,) = (tmp_path / "runs").iterdir()
    stored = sorted(p.stem for p in (run_dir / "conditions").glob("*.csv"))
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap a long line
    assert re.search(r"pgd-0\.3: accuracy \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\], \d+\.\d s \(\d+/\d+\)", err)
    assert sorted(re.findall(r"(\S+): (?:accuracy|certified acc|evaded|\d+\.\d s)", err)) == stored
    assert f"({len(stored)}/{len(stored)})" in err
    checkpoints = list((tmp_path / "checkpoints").glob("*.safetensors"))
    assert len(checkpoints) == 1
    before = checkpoints[0].stat().st_mtime_ns
    run(RunRequest(model="baseline", out=tmp_path, **{**TINY, "n_test": 20}))
    assert checkpoints[0].stat().st_mtime_ns == before
    assert "reusing checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_a_rerun_whose_data_note_changed_resumes_the_same_run(tmp_path, monkeypatch, capsys):
    """A failed download leaves an empty cache folder, which changes the fallback's note: the rerun must still
    find its finished conditions, since the note decides none of its numbers."""
    import dataclasses

    import benchmark.runner as runner

    run(RunRequest(model="baseline", out=tmp_path, **TINY))
    load = runner.load_dataset
    monkeypatch.setattr(runner, "load_dataset", lambda *a, **k: dataclasses.replace(load(*a, **k), note="moved"))
    capsys.readouterr()
    run(RunRequest(model="baseline", out=tmp_path, **TINY))
    assert len(list((tmp_path / "runs").iterdir())) == 1
    err = capsys.readouterr().err
    assert "clean: done earlier, reusing" in err and "accuracy" not in err


def test_a_bad_checkpoint_is_refused_before_the_data_is_looked_for(tmp_path):
    from benchmark.errors import BenchmarkError

    garbage = tmp_path / "weights.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchmarkError, match="not a valid safetensors checkpoint"):
        run(RunRequest(model="baseline", dataset="fashion-mnist", data_dir=tmp_path, download=False,
                       checkpoint=garbage, out=tmp_path))


@pytest.mark.slow
def test_a_pickled_cached_checkpoint_is_refused(tmp_path):
    import torch

    run(RunRequest(model="baseline", out=tmp_path, **TINY))
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.safetensors")
    torch.save({"x": torch.zeros(1)}, checkpoint)  # a pickle where a safetensors file should be
    from benchmark.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match="not a valid safetensors"):
        run(RunRequest(model="baseline", out=tmp_path, **TINY))


@pytest.mark.parametrize("args, message", [
    (["run", "--model", "mc-dropuot"], "did you mean mc-dropout"),
    (["run", "--model", "baseline", "--dataset", "mnsit"], "mnist"),
    (["run", "--model", "baseline", "--eps", "1.5"], "--eps must lie in [0, 1]"),
    (["run", "--model", "baseline", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
    (["run", "--model", "baseline", "--profile", "huge"], "unknown profile"),
    (["report", "--model", "baseline", "--dataset", "mnist"], "no finished run"),
])
@pytest.mark.slow
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-c", "from benchmark.cli import main; main()", *args,
                             "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # one message, possibly wrapped


@pytest.mark.slow
def test_cli_run_and_leaderboard_rebuild_leave_a_checkouts_published_board_alone(tmp_path, monkeypatch):
    """Run from inside a checkout without --out, a user's run writes to results/, not the published leaderboards/."""
    published = tmp_path / "leaderboards" / "index.html"
    published.parent.mkdir()
    published.write_text("the published board")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--model", "baseline", "--dataset", "mnist-5k", "--n-train", "300",
                                 "--n-test", "20", "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "at eps 0.3; worst of R=1" in " ".join(result.output.split())
    report = next(line for line in result.output.splitlines() if line.startswith("report: ")).split()[1]
    assert (tmp_path / report).is_file() and report.endswith("report.html")
    results = tmp_path / "results"
    assert (results / "leaderboards" / "index.html").exists() and list((results / "runs").iterdir())
    assert published.read_text() == "the published board" and not (tmp_path / "runs").exists()
    (results / "leaderboards" / "mnist-5k.csv").unlink()
    result = runner.invoke(app, ["leaderboard"])
    assert result.exit_code == 0, result.output
    assert (results / "leaderboards" / "mnist-5k.csv").exists()
    listing = runner.invoke(app, ["list"])
    assert "endp" in listing.output and "moments" in listing.output


@pytest.mark.parametrize("command", sorted(c.name or c.callback.__name__.replace("_", "-")
                                            for c in app.registered_commands))
def test_every_default_named_in_an_option_help_is_shown(command):
    """Rich reads ``[default: ...]`` as a style tag and drops it unless escaped: each must reach the user."""
    import typer.main

    declared = [re.search(r"\[default: [^\]]*\]", param.help).group(0)
                for param in typer.main.get_command(app).commands[command].params
                if getattr(param, "help", None) and "[default:" in param.help]
    shown = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}).output.split())
    assert all(default in shown for default in declared), (declared, shown)


@pytest.mark.parametrize("terminal", [False, True])
def test_the_after_run_table_is_whole_at_80_columns_and_in_a_log_file(monkeypatch, terminal):
    """A terminal of 80 columns, or a run under nohup writing to a file: nothing may be cut to "…"."""
    from benchmark.cli import after_run_table, out_console
    from benchmark.columns import AFTER_RUN

    if terminal:
        monkeypatch.setenv("COLUMNS", "80")
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
        monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    row = {"model": "vdp-unscented", "dataset": "cifar10-jpeg", "profile": "reference",
           **{c.name: 0.123456 for c in AFTER_RUN}, "flags": "short-attack-not-converged;shattered-gradients",
           "eps": 8 / 255, "robust_acc_ci_low": 0.1, "robust_acc_ci_high": 0.15, "robust_acc_worst": 0.09,
           "reevals": 3, "samples": 8, "eot": 4}
    console = out_console()
    with console.capture() as captured:
        console.print(after_run_table(row))
    text = captured.get()
    assert "…" not in text and all(c.name in text for c in AFTER_RUN), text
    assert max(len(line) for line in text.splitlines()) <= (80 if terminal else 200)
    joined = " ".join(text.replace("│", " ").split())
    assert "0.1235 [0.1000, 0.1500] at eps 8/255; worst of R=3: 0.0900; S=8, K=4" in joined
    assert "flags short-attack-not-converged;shattered-gradients" in joined


def test_a_plugin_file_breaking_the_contract_is_refused_before_training(tmp_path):
    from pathlib import Path

    from benchmark.errors import BenchmarkError

    bad = Path(__file__).parent / "plugins" / "bad_plugin.py"
    with pytest.raises(BenchmarkError, match="breaks the contract: forward\\(1x28x28\\) output"):
        run(RunRequest(model=f"{bad}:bad-shape", out=tmp_path, **TINY))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_standard_profile_adds_autoattack_to_the_worst_case(tmp_path):
    row = run(RunRequest(model="baseline", out=tmp_path, **{**TINY, "profile": "standard", "n_test": 8}))
    assert set(row["attacks"].split("+")) == {"fgsm", "pgd", "pgd-long", "pgd-dlr", "apgd-t", "autoattack",
                                              "strongest-2x", "square"}
    assert row["profile"] == "standard"
    metrics = metrics_of(tmp_path)
    autoattack = metrics[(metrics.condition == "autoattack") & (metrics.metric == "accuracy")]
    assert len(autoattack) == 4  # AutoAttack at every eps of the standard sweep (eps/4 ... eps), not at the large eps
    assert row["robust_acc"] <= autoattack[np.isclose(autoattack.param.astype(float), 0.3)].value.item()


@pytest.mark.slow
def test_black_box_rows_are_cumulative_over_the_white_box_attacks(tmp_path):
    """Square and transfer attack only the white-box survivors; their rows must not count the rest as robust."""
    import numpy as np

    run(RunRequest(model="mc-dropout", out=tmp_path, **TINY))
    (run_dir,) = (tmp_path / "runs").iterdir()

    def load(c, array="correct"):
        return np.load(run_dir / "conditions" / f"{c}.npz")[array]

    standing = np.ones(40, dtype=bool)  # what the cascade decides on: the selection evaluations
    for white in ("clean", "fgsm-0.3", "pgd-0.3", "pgd-long-0.3", "pgd-eot2x-0.3", "pgd-dlr-0.3", "apgd-t-0.3"):
        standing &= (load(white, "selection") >= 0).any(0)
    for name in ("square", "transfer"):
        black = load(f"{name}-0.3")
        assert black.shape == load("pgd-0.3").shape
        assert not (black & ~standing).any()  # nothing counted robust that every white-box selection broke
        assert np.isnan(load(f"{name}-0.3", "selection")[:, ~standing]).all()  # and no point of its own there
        assert black.mean() <= standing.mean()


def test_a_cpu_row_names_the_processor_and_the_threads():
    """Every leaderboard row names its hardware: on the CPU, the model the OS reports, not just "cpu"."""
    import platform
    from pathlib import Path

    import torch

    from benchmark.runner import cpu_model, describe_device

    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    assert cpu_model() == (" ".join(names[0].split()) if names else (platform.processor() or platform.machine()))
    assert describe_device(torch.device("cpu")) == f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def test_a_finished_condition_reads_as_its_headline_and_time():
    rows = [{"metric": "accuracy", "value": 0.5465}, {"metric": "accuracy_ci_low", "value": 0.52461},
            {"metric": "accuracy_ci_high", "value": 0.56821}, {"metric": "attacked", "value": 1972}]
    assert finished_text(rows, 51.21) == "accuracy 0.546 [0.525, 0.568], 51.2 s"
    assert finished_text([{"metric": "certified_acc", "value": 0.5}], 3.04) == "certified acc 0.500, 3.0 s"
    assert finished_text([{"metric": "zero_grad_share", "value": 0.0}], 5.62) == "5.6 s"


@pytest.mark.parametrize("command", [None, *sorted(c.name or c.callback.__name__.replace("_", "-")
                                                   for c in app.registered_commands)])
def test_help_shows_every_sentence_whole_and_no_raw_markup(command):
    """Docstrings wrap in the source, not on screen; ``code`` and <placeholders> reach the user as text; a flag
    shows no <bool> placeholder."""
    import typer.main

    click_command = typer.main.get_command(app)
    if command is not None:
        click_command = click_command.commands[command]
    output = CliRunner().invoke(app, [*([command] if command else []), "--help"], env={"COLUMNS": "400"}).output
    shown = " ".join(output.split())
    summary = " ".join((click_command.help or "").split("\n\n")[0].split()).replace("``", "").replace("`", "")
    assert summary in shown
    for param in click_command.params:
        if getattr(param, "help", None):
            assert " ".join(param.help.split()).replace("\\[", "[").replace("`", "") in shown, param.help
    assert "``" not in output and "<bool>" not in output
    if command is None:  # each command's summary on one line of the listing
        for name, sub in click_command.commands.items():
            line = next(line for line in output.splitlines() if line.split()[:2] == ["│", name])
            assert " ".join(line.split()).rstrip(" │").endswith(
                " ".join((sub.help or "").split("\n\n")[0].split()).replace("``", "").replace("`", "")), line


@pytest.mark.slow
def test_given_weights_of_a_plugin_without_its_own_surrogate_train_the_baseline_surrogate(tmp_path):
    """--checkpoint with a plugin whose transfer attack crafts on the baseline crashed: the baseline surrogate was
    'loaded' from the given tensors that belong to the plugin (there were none on its call)."""
    run(RunRequest(model="kap", out=tmp_path / "trained", **TINY))
    (weights,) = (tmp_path / "trained" / "checkpoints").glob("*-kap-*.safetensors")
    row = run(RunRequest(model="kap", out=tmp_path / "given", checkpoint=weights, **TINY))
    assert row["training"] == "given weights" and row["train_seconds"] == 0
    assert "transfer" in row["attacks"]  # crafted on the baseline, trained here
