"""Long work as generators: every core step yields
:class:`~napari_aet.core.progress.Progress` records and returns its result."""

from __future__ import annotations

from collections.abc import Callable, Generator

from napari_aet.core.progress import Progress


def run_to_completion(generator: Generator, progress: Callable[[Progress], None] | None = None):
    """Drive a progress generator to its end and return its return value.

    ``progress(info)`` is called with every yielded record (a terminal bar, a log).
    """
    while True:
        try:
            info = next(generator)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(info)
