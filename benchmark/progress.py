"""Rich progress bars on stderr, quiet when the output is not a terminal (CI logs, tests) and on every
torchrun rank but rank 0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True, quiet=os.environ.get("RANK", "0") != "0")


class PassesColumn(ProgressColumn):
    """The network passes a condition has made so far, where it counts them (:func:`counting_passes`)."""

    def render(self, task) -> Text:
        passes = task.fields.get("passes")
        return Text("" if passes is None else f"{passes:,} passes", style="progress.data.speed")


def progress_bar() -> Progress:
    """A transient bar for the training loop and each evaluation condition; disabled where ``console`` is
    quiet or not a terminal."""
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        PassesColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        disable=console.quiet or not console.is_terminal,
    )


#: the bar, task and count of the condition under way (:func:`counting_passes`), innermost last
_counting: list[list] = []


@contextmanager
def counting_passes(bar: Progress, job: TaskID) -> Iterator[None]:
    """Count every network pass made inside the block beside ``job``'s bar: an attack spends seconds on one batch
    (hundreds of passes), and the count shows it working while the bar waits for the batch to end."""
    _counting.append([bar, job, 0])
    bar.update(job, passes=0)
    try:
        yield
    finally:
        _counting.pop()


def network_pass() -> None:
    """One pass of the network through the deployed rule (:class:`benchmark.predictive.Predictor`)."""
    if _counting:
        counter = _counting[-1]
        counter[2] += 1
        counter[0].update(counter[1], passes=counter[2])


def suite_progress() -> Progress:
    """The bar of a whole board (``benchmark run --model all``): one step per plugin, kept on screen while
    each plugin's own bars come and go beneath it."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=console.quiet or not console.is_terminal,
    )
