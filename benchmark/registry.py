"""Plugin registry: one decorator to register, one lookup to create (after timm's model registry).

Plugins come from three places: the modules of the bundled ``benchmark.models`` package (the
repository's ``models/`` folder), installed packages that declare an entry point in the group
:data:`ENTRY_POINT_GROUP`, and a plugin file named on the command line as ``path/to/file.py:name``. A
plugin file is code: it runs with the user's rights, so name only files you trust.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.plugin import PREDICTIVE_KINDS, ModelPlugin

#: named after the distribution, so no other project's "models" group is read by mistake
ENTRY_POINT_GROUP = "uncertainty_robustness_benchmark.models"
BUNDLED_PACKAGE = "benchmark.models"
_REGISTRY: dict[str, type[ModelPlugin]] = {}
_discovered = False


def register_model(name: str):
    """Class decorator: register a :class:`ModelPlugin` subclass under ``name``."""

    def decorate(cls: type[ModelPlugin]) -> type[ModelPlugin]:
        if not (isinstance(cls, type) and issubclass(cls, ModelPlugin)):
            raise BenchmarkError(f"@register_model({name!r}) must decorate a ModelPlugin subclass")
        if cls.predictive not in PREDICTIVE_KINDS:
            raise BenchmarkError(
                f"plugin {name!r} declares predictive={cls.predictive!r}; expected one of {', '.join(PREDICTIVE_KINDS)}"
            )
        existing = _REGISTRY.get(name)
        if existing is not None and _identity(existing) != _identity(cls):
            raise BenchmarkError(f"two plugins are registered as {name!r}: {existing.__module__} and {cls.__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _identity(cls: type) -> tuple[str, str]:
    """A class is the same plugin again (a module imported twice) only with the same module and name."""
    return cls.__module__, cls.__qualname__


def _discover() -> None:
    """Import the bundled plugins and the installed entry points, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(BUNDLED_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{BUNDLED_PACKAGE}.{module.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the others
            warnings.warn(f"could not load plugin entry point {ep.name!r} ({ep.value}): {exc}", stacklevel=2)


def list_models() -> list[str]:
    """The names of every registered plugin (bundled and entry points), sorted."""
    _discover()
    return sorted(_REGISTRY)


def registered_claims() -> list:
    """Every registered plugin's published claims (``ModelPlugin.claims``), each once (a plugin that inherits its
    parent's claims names both in the claim's ``models``), in the order of the plugins' names."""
    found = []
    for name in list_models():
        found += [claim for claim in _REGISTRY[name].claims if claim not in found]
    return found


def get_plugin_class(name: str) -> type[ModelPlugin]:
    """The plugin class registered as ``name``; an unknown name is refused with the closest matches."""
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; registered: {', '.join(sorted(_REGISTRY))}"
    raise BenchmarkError(f"unknown model {name!r}{hint}")


def load_plugin_file(path: str | Path) -> list[str]:
    """Execute a plugin file (trusted code) and return the names it registered."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"plugin file not found: {path}")
    _discover()
    before = {n: c for n, c in _REGISTRY.items()}
    module_name = "benchmark_plugin_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BenchmarkError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BenchmarkError:
        raise
    except Exception as exc:
        raise BenchmarkError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    return sorted(n for n, c in _REGISTRY.items() if before.get(n) is not c)


def create_model(spec: str, model_dir: Path | None = None) -> ModelPlugin:
    """Instantiate a plugin from a registered name, from ``path/to/file.py:name``, or from
    ``robustbench:<ModelName>`` (a RobustBench zoo model, its weights under ``model_dir``)."""
    from benchmark.zoo import is_zoo_model, zoo_plugin

    if is_zoo_model(spec):
        return zoo_plugin(spec, model_dir)
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        path, name = spec.split(":", 1)
        added = load_plugin_file(path)
        if name not in added and name not in _REGISTRY:
            raise BenchmarkError(f"{path} registers {', '.join(added) or 'no plugin'}, not {name!r}")
        return _REGISTRY[name]()
    return get_plugin_class(spec)()


def plugin_source_hash(plugin: ModelPlugin) -> str:
    """Hash of the code a trained checkpoint depends on: the plugin's module, every bundled plugin module,
    the building blocks of ``benchmark.layers`` and the training loop; edited code retrains."""
    names = {type(plugin).__module__, "benchmark.training"}
    names |= {n for n in sys.modules if n.startswith((f"{BUNDLED_PACKAGE}.", "benchmark.layers."))}
    digest = hashlib.sha256()
    for name in sorted(names):
        try:
            digest.update(inspect.getsource(sys.modules[name]).encode())
        except (OSError, TypeError, KeyError):
            digest.update(name.encode())
    return digest.hexdigest()[:16]
