"""Rich progress bars on stderr, quiet when the output is not a terminal (CI logs, tests) and on every
torchrun rank but rank 0."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, quiet=os.environ.get("RANK", "0") != "0")


def progress_bar() -> Progress:
    """A transient bar for the training loop and each evaluation condition; disabled where ``console`` is
    quiet or not a terminal."""
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        disable=console.quiet or not console.is_terminal,
    )


def suite_progress() -> Progress:
    """The bar of a whole board (``benchmark run --model all``): one step per plugin, kept on screen while
    each plugin's own bars come and go beneath it."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=console.quiet or not console.is_terminal,
    )
