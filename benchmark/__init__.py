"""Robustness benchmark for uncertainty-aware neural networks.

The bundled plugins live in the repository's top-level ``models/`` folder and are installed as
``benchmark.models`` (``package-dir`` in pyproject.toml), so a user's own ``models`` package can never
shadow them. In a source checkout that is not installed (or imported from the checkout while another
copy is installed), :func:`_bundled_plugins_from_checkout` maps the same folder to the same name.
"""

import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"


def _bundled_plugins_from_checkout() -> None:
    """Register ``<checkout>/models`` as ``benchmark.models`` when this package has no ``models`` of its own."""
    here = Path(__file__).resolve().parent
    folder = here.parent / "models"
    if (here / "models").is_dir() or not (folder / "__init__.py").is_file() or "benchmark.models" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("benchmark.models", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark.models"] = module
    spec.loader.exec_module(module)
    globals()["models"] = module  # as the import system binds a submodule to its parent


_bundled_plugins_from_checkout()
