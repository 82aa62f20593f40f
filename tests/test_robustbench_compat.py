"""robustbench 1.1.1's two packaging quirks are handled in one module (benchmark/robustbench_compat.py)."""

import sys
from pathlib import Path

import pytest
import tomllib

from benchmark.errors import BenchmarkError
from benchmark.robustbench_compat import alias_autoattack, import_robustbench

ROOT = Path(__file__).resolve().parents[1]


def test_robustbench_imports_and_its_autoattack_is_the_installed_pyautoattack():
    pyautoattack = pytest.importorskip("pyautoattack")
    evaluation = import_robustbench("robustbench.eval")  # imports `from autoattack import AutoAttack`
    import autoattack
    import autoattack.state

    assert autoattack is pyautoattack and issubclass(evaluation.AutoAttack, pyautoattack.AutoAttack)
    assert autoattack.state is sys.modules["pyautoattack.state"]
    import importlib.util

    assert importlib.util.find_spec("pyautoattack").origin == pyautoattack.__file__  # its own spec, files found
    alias_autoattack()  # idempotent: one alias finder, however often it is asked for
    assert sum(type(f).__name__ == "_AutoattackAlias" for f in sys.meta_path) <= 1


def test_a_missing_package_is_one_line_that_says_what_to_install():
    with pytest.raises(BenchmarkError) as error:
        import_robustbench("robustbench_that_does_not_exist")
    assert 'pip install "robustbench==1.1.1" "setuptools<81"' in str(error.value) and "\n" not in str(error.value)


def test_the_pins_travel_together_in_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["robustbench"]) == {"robustbench==1.1.1", "setuptools<81"}
    assert any(d.endswith("[robustbench]") for d in extras["dev"])  # the tests' install brings them


def test_nothing_else_in_the_project_knows_the_quirks():
    knowing = sorted(str(p.relative_to(ROOT)) for folder in ("benchmark", "models", "benchmarks")
                     for p in (ROOT / folder).rglob("*.py")
                     if "pyautoattack" in p.read_text() and "robustbench" in p.read_text()
                     or "pkg_resources" in p.read_text())
    assert knowing == ["benchmark/robustbench_compat.py"]
