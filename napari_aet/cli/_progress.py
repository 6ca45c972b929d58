"""Terminal progress bars for the command line (tqdm when installed, else a plain bar)."""

from __future__ import annotations

import sys


class ProgressBar:
    """tqdm when available, else a plain stderr bar."""

    def __init__(self, total, desc, quiet):
        self.total, self.desc, self.quiet, self.n = total, desc, quiet, 0
        self.bar = None
        if quiet:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="it", file=sys.stderr)
        except ImportError:
            pass

    def set_total(self, total):
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def update(self, n_done, text=""):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(n_done - self.bar.n)
            if text:
                self.bar.set_postfix_str(text)
            return
        width = 30
        filled = int(width * n_done / max(self.total, 1))
        print(f"\r{self.desc} [{'#' * filled}{'.' * (width - filled)}] {n_done}/{self.total} {text}",
              end="", file=sys.stderr, flush=True)

    def show(self, info):
        """Advance to a :class:`~napari_aet.core.progress.Progress` record: its ``total``
        (when known and changed), its ``done`` and its message."""
        if info.total and info.total != self.total:
            self.set_total(info.total)
        self.update(info.done, info.message)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            print(file=sys.stderr)
