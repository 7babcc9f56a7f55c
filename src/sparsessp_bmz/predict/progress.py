"""Progress bars of long prediction work (rich), and a no-op when no one is watching."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[..., None]]:
    """Yield an `advance(steps=1)` callback of a transient rich progress bar (a no-op when
    disabled)."""
    if not enabled:
        yield lambda steps=1: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda steps=1: bar.advance(task, steps)
