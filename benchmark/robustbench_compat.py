"""RobustBench 1.1.1, imported despite its two packaging quirks; the one place in the project that knows them.

1. It imports ``autoattack`` (``from autoattack import AutoAttack`` in ``robustbench.eval``), but its dependency
   installs as ``pyautoattack``: the installed package is registered under the name RobustBench expects, with
   its submodules, unless a real ``autoattack`` is importable.
2. It imports ``pkg_resources``, which setuptools 81 dropped (pyproject pins ``setuptools<81`` beside it); the
   deprecation warning that import raises is silenced.
3. Its ``benchmark`` calls the original AutoAttack's API: ``log_path=`` in the constructor (pyautoattack logs
   through :mod:`logging` instead) and ``x_adv = run_standard_evaluation(x, y, bs=...)`` (pyautoattack takes
   ``batch_size=`` and returns ``(x_adv, y_adv)``): ``robustbench.eval`` gets a subclass that speaks the original.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

from benchmark.errors import BenchmarkError

INSTALL = 'pip install "robustbench==1.1.1" "setuptools<81"'


class _AutoattackAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``autoattack`` and ``autoattack.<sub>`` as the already importable ``pyautoattack`` modules, one at a
    time when first imported (some of its submodules need TensorFlow and must never be imported eagerly)."""

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] != "autoattack":
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self):
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def create_module(self, spec):
        module = importlib.import_module("py" + spec.name)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module) -> None:
        """Nothing to run (the pyautoattack module ran already); give back the spec the import system replaced
        with the alias's, so ``pyautoattack`` still finds its own files."""
        module.__spec__ = self._specs.pop(module.__spec__.name)


def alias_autoattack() -> None:
    """Make ``import autoattack`` give the installed ``pyautoattack``, unless a real ``autoattack`` exists."""
    if any(isinstance(finder, _AutoattackAlias) for finder in sys.meta_path):
        return
    if "autoattack" not in sys.modules and importlib.util.find_spec("autoattack") is None:
        sys.meta_path.insert(0, _AutoattackAlias())  # before the path finder, which would load second copies


def import_robustbench(module: str = "robustbench") -> ModuleType:
    """``robustbench`` (or one of its submodules), importable whatever its quirks; a missing install or a
    setuptools without ``pkg_resources`` is one error line that says what to install."""
    try:
        alias_autoattack()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
            imported = importlib.import_module(module)
            _original_api(sys.modules.get("robustbench.eval"))
            return imported
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        raise BenchmarkError(f"RobustBench models need the robustbench package, which cannot import {missing!r}; "
                             f"install it with: {INSTALL}") from exc


def _original_api(evaluation: ModuleType | None) -> None:
    """Give ``robustbench.eval`` an AutoAttack that takes the keywords it passes (quirk 3)."""
    if evaluation is None or getattr(evaluation.AutoAttack, "original_api", False):
        return

    class AutoAttack(evaluation.AutoAttack):
        """pyautoattack's AutoAttack called as robustbench calls the original: ``log_path`` dropped, ``bs``
        passed on as ``batch_size``, the adversarial images alone returned."""

        original_api = True

        def __init__(self, model, *, log_path=None, **settings):
            super().__init__(model, **settings)

        def run_standard_evaluation(self, x, y, *, bs=250, state_path=None):
            return super().run_standard_evaluation(x, y, batch_size=bs, state_path=state_path)[0]

    evaluation.AutoAttack = AutoAttack
