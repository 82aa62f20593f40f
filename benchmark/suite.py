"""The whole board in one command: every plugin (or a chosen list) run one after another on one dataset.

Each plugin's run is an ordinary ``benchmark run``, so the suite resumes as each run does: a plugin whose run
finished earlier is reused condition by condition in seconds, and an interrupted one continues. A plugin that
fails (an error of its own, a broken contract, an input shape it does not take) is reported and the others
still run; the tables are rebuilt after every finished plugin.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from benchmark.errors import BenchmarkError
from benchmark.progress import console, suite_progress
from benchmark.registry import get_plugin_class, list_models
from benchmark.runner import RunRequest, run
from benchmark.zoo import is_zoo_model

ALL = "all"


@dataclass(frozen=True)
class SuiteEntry:
    """One plugin's outcome: its leaderboard row, or the one-line reason it has none; and its wall time."""

    model: str
    wall_seconds: float
    row: dict | None = None
    error: str | None = None


def suite_models(spec: str) -> list[str]:
    """The plugins ``--model`` names: ``all`` (every registered plugin), or a comma-separated list, each name
    checked before anything runs."""
    if spec == ALL:
        return list_models()
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise BenchmarkError(f"--model {spec!r} names no plugin")
    for name in names:
        if ".py" not in name and not is_zoo_model(name):  # files and zoo entries are checked when their run loads
            get_plugin_class(name)  # an unknown name is refused with the closest registered names
    return list(dict.fromkeys(names))


def is_suite(spec: str) -> bool:
    """Whether ``--model`` asks for several plugins rather than one."""
    return spec == ALL or "," in spec


def run_suite(request: RunRequest, models: list[str]) -> list[SuiteEntry]:
    """Run ``request`` for each of ``models`` in turn, under one progress display; never stop at a failure."""
    entries: list[SuiteEntry] = []
    with suite_progress() as bar:
        task = bar.add_task("board", total=len(models))
        for index, model in enumerate(models, 1):
            bar.update(task, description=f"plugin {index}/{len(models)}: {model}")
            console.rule(f"[bold]{model}[/] ({index}/{len(models)})")
            start = time.perf_counter()
            try:
                row = run(dataclasses.replace(request, model=model))
                entries.append(SuiteEntry(model, time.perf_counter() - start, row=row))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one plugin's failure, whatever it is, must not cost the others
                reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchmarkError) else str(exc)
                console.print(f"[bold red]{model} failed:[/] {reason} (the suite goes on)")
                entries.append(SuiteEntry(model, time.perf_counter() - start, error=reason))
            bar.advance(task)
    return entries
