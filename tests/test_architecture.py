"""The structure the project promises: one namespace, no cycle from the harness into the plugins, short
modules, and an install that ships every package."""

import ast
import subprocess
import sys
from pathlib import Path

import tomllib

import benchmark

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "benchmark"
MAX_LINES = 400


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_harness_module_imports_the_plugins():
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imported_modules(path)
                                            if n.split(".")[0] == "models" or n.startswith("benchmark.models"))
        for path in HARNESS.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_harness_module_is_longer_than_the_limit():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in HARNESS.rglob("*.py")}
    assert {k: n for k, n in lengths.items() if n > MAX_LINES} == {}


def test_the_install_ships_every_package_under_one_namespace():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in HARNESS.rglob("__init__.py")}
    assert set(config["packages"]) == folders | {"benchmark.models"}
    assert config["package-dir"]["benchmark.models"] == "models"
    assert {name.split(".")[0] for name in config["packages"]} == {"benchmark"}


def test_plugins_import_as_benchmark_models_from_the_models_folder():
    import benchmark.models.baseline

    assert Path(benchmark.models.baseline.__file__).resolve() == ROOT / "models" / "baseline.py"
    assert "models" not in sys.modules  # nothing imports a top-level "models"


def test_a_models_folder_in_the_working_directory_does_not_shadow_the_plugins(tmp_path):
    """Users' projects have their own models/ package; under `python -m benchmark` (and torchrun, which
    runs the same way) the working directory comes first on sys.path."""
    shadow = tmp_path / "models"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise RuntimeError('the user models package was imported')\n")
    (shadow / "baseline.py").write_text("raise RuntimeError('the user baseline was imported')\n")
    result = subprocess.run([sys.executable, "-m", "benchmark", "list"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "user models package" not in result.stdout + result.stderr
    for name in ("baseline", "endp", "mc-dropout", "snn-noise"):
        assert name in result.stdout


def test_a_checkout_that_is_not_installed_still_finds_its_plugins(tmp_path):
    """The checkout maps models/ to benchmark.models itself when setuptools' package-dir is not in play."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__name__.lower() "
            "and 'editable' not in getattr(f, '__name__', '').lower()]; "
            "import benchmark.models.baseline as b; print(b.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == ROOT / "models" / "baseline.py"
    assert benchmark.__file__.startswith(str(ROOT))
