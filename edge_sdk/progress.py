"""Progress for steps that take more than a moment: a spinner while running, a tick with the time after.

Shown on stderr when it is a terminal, or when the CLI turns it on; `--json` turns it off.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

_enabled: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """True / False forces progress on / off; None restores the default (on for a terminal)."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool:
    return sys.stderr.isatty() if _enabled is None else _enabled


def console():
    from rich.console import Console

    # Off a terminal rich assumes 80 columns, which wraps the parity table; logs have room.
    probe = Console(stderr=True)
    return Console(stderr=True, highlight=False, width=None if probe.is_terminal else 120)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Run a block under a spinner labelled `message`, then print how long it took."""
    if not progress_enabled():
        yield
        return
    out = console()
    start = time.perf_counter()
    with out.status(message + " ..."):
        yield
    out.print(f"[green]✓[/green] {message} [dim]({time.perf_counter() - start:.1f} s)[/dim]")


def track(items: list, message: str) -> Iterator:
    """Iterate `items` under a progress bar (for long loops with a known length, e.g. decoding images)."""
    if not progress_enabled() or len(items) < 2:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(message, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
