"""Long work as generators: every core step yields progress dicts and returns its result."""

from __future__ import annotations

from collections.abc import Callable, Generator


def run_to_completion(generator: Generator, progress: Callable[[dict], None] | None = None):
    """Drive a progress generator to its end and return its return value.

    ``progress(info)`` is called with every yielded value (a terminal bar, a log).
    """
    while True:
        try:
            info = next(generator)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(info)
