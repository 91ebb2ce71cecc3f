"""Progress bars for the commands that take a while: on stderr, only on a terminal, never with --quiet.

``progress_bar(description)`` yields ``update(done, total, what)``. The bar appears once the work
has run ``SHOW_AFTER`` seconds (a one-shot timer; short commands stay silent), then redraws on each
update only (no refresh thread that would wake up during timed runs) and disappears when done. It
draws nothing when stderr is not a terminal (pipes, CI logs) or when the command got ``--quiet``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

__all__ = ["SHOW_AFTER", "QuietOpt", "progress_bar", "set_quiet"]

#: Seconds of work before a bar is drawn.
SHOW_AFTER = 2.0

_quiet = False


def set_quiet(value: bool) -> bool:
    """Typer callback of ``--quiet``: called on every run of a command that has the option."""
    global _quiet
    _quiet = bool(value)
    return value


QuietOpt = typer.Option(False, "--quiet", "-q", callback=set_quiet,
                        help="No progress bar on stderr (it is drawn only on a terminal, after about 2 s).")


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int, str], None]]:
    """A transient rich progress bar on stderr; yields ``update(done, total, what)``."""
    from rich.console import Console

    console = Console(stderr=True)
    if _quiet or not console.is_terminal:
        yield lambda done, total, what: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    lock = threading.Lock()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, transient=True, auto_refresh=False)
    state: dict[str, Any] = {"task": None, "finished": False,
                             "now": {"completed": 0, "total": None, "description": f"{description}: starting"}}

    def show() -> None:  # the timer's: draw from now on, unless the work is done
        with lock:
            if not state["finished"]:
                bar.start()
                state["task"] = bar.add_task(**state["now"])  # drawn as it is added

    def update(done: int, total: int, what: str) -> None:
        with lock:
            state["now"] = {"completed": done, "total": total, "description": f"{description}: {what}"}
            if state["task"] is not None:
                bar.update(state["task"], **state["now"])
                bar.refresh()

    timer = threading.Timer(SHOW_AFTER, show)
    timer.daemon = True
    timer.start()
    try:
        yield update
    finally:
        timer.cancel()
        with lock:
            state["finished"] = True
            if state["task"] is not None:
                bar.stop()
