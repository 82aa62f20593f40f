"""The CLI fuzzed over its options and values (hypothesis): whatever the input, the user sees a usage
message or one ``error:`` line, never a traceback and never an "unexpected" error."""

import contextlib
import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import benchmark.runner as runner
from benchmark.cli import main
from benchmark.errors import BenchmarkError

HERE = Path(__file__).parent
GOOD_PLUGIN = str(HERE / "plugins" / "good_plugin.py")
NASTY = st.sampled_from(["", " ", "-", "--", "..", "/", "\x00", "<script>", "=HYPERLINK(\"x\")", "ü" * 3, "x" * 300,
                         "nan", "inf", "-1", "0", "1e309", "/dev/null", "/proc/1/mem", "/etc", "a:b:c"])
TEXT = st.text(max_size=20)
INTS = st.one_of(st.integers(-5, 5), st.sampled_from([2**31, 2**63, -(2**63), 10**30]).map(int))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.1, 1.0, -0.1, 1.5]))

RUN_OPTIONS = {
    "--model": st.one_of(st.sampled_from(["baseline", "basline", f"{GOOD_PLUGIN}:good", f"{GOOD_PLUGIN}:nope",
                                          "missing.py:x", GOOD_PLUGIN, "/etc/passwd:x"]), NASTY, TEXT),
    "--dataset": st.one_of(st.sampled_from(["mnist-5k", "cifar10", "fashion-mnist", "MNIST"]), NASTY, TEXT),
    "--profile": st.one_of(st.sampled_from(["quick", "standard", "QUICK"]), NASTY, TEXT),
    "--device": st.one_of(st.sampled_from(["cpu", "cuda", "cuda:7", "meta", "mps", "auto", "cpu:3"]), NASTY, TEXT),
    "--data-dir": st.one_of(st.sampled_from([str(HERE), "/nonexistent/dir", GOOD_PLUGIN]), NASTY),
    "--seed": st.one_of(INTS, NASTY),
    "--eps": st.one_of(FLOATS.map(repr), NASTY),
    "--n-test": st.one_of(INTS.map(str), NASTY),
    "--n-train": st.one_of(INTS.map(str), NASTY),
    "--epochs": st.one_of(INTS.map(str), NASTY),
    "--batch-size": st.one_of(INTS.map(str), NASTY),
    "--checkpoint": st.one_of(st.sampled_from(["/nonexistent.safetensors", GOOD_PLUGIN, "/dev/null"]), NASTY),
}
FLAGS = ["--retrain", "--no-download", "--download", "--debug-not-an-option"]


def _invoke(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["benchmark", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, out.getvalue() + err.getvalue()


def _check(code: int, output: str) -> None:
    assert "Traceback" not in output, output
    assert "rerun with --debug for the traceback" not in output, output  # the catch-all for unexpected errors
    assert code in (0, 2), (code, output)


@pytest.fixture
def stop_before_training(monkeypatch):
    """Valid option sets would train a model: stop them where training starts, as a user error."""
    def reached(*args, **kwargs):
        raise BenchmarkError("fuzz: reached training")

    monkeypatch.setattr(runner, "train", reached)


VALID = {"--model": "baseline", "--dataset": "mnist-5k", "--n-train": "50", "--n-test": "8", "--epochs": "1",
         "--device": "cpu"}


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=st.dictionaries(st.sampled_from(sorted(RUN_OPTIONS)), st.just(None), min_size=1, max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: RUN_OPTIONS[k] for k in keys})),
    flags=st.lists(st.sampled_from(FLAGS), max_size=2))
def test_run_options(stop_before_training, tmp_path_factory, hostile, flags):
    """A valid command with one to three options replaced by hostile values."""
    argv = ["run", "--out", str(tmp_path_factory.mktemp("fuzz"))]
    for key, value in {**VALID, **hostile}.items():
        argv += [key, str(value)]
    _check(*_invoke(argv + flags))


@settings(max_examples=60, deadline=None)
@given(argv=st.lists(st.one_of(st.sampled_from(["list", "leaderboard", "report", "validate-plugin", "run", "--out",
                                                "--dataset", "--model", "--profile", "--data-dir", "--help",
                                                GOOD_PLUGIN, f"{GOOD_PLUGIN}:good", "baseline", "mnist"]),
                               NASTY, TEXT), max_size=6))
def test_any_argument_list(argv):
    if "run" in argv:  # keep `run` to the options test above, which stops before training
        argv = [a for a in argv if a != "run"]
    _check(*_invoke(argv))
