"""A dependency-free progress line for long runs on stderr (``faceage batch``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import IO


class ProgressBar:
    """``done/total``, percent, images/s and ETA on one stderr line.

    On a terminal the line is redrawn in place (``\\r``, at most 10 times a second); in a
    CI log or a file it prints a plain line at most every ``log_interval`` seconds and at
    the end, so logs stay short and readable.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        log_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.interactive else log_interval
        self.clock = clock
        self.started: float | None = None
        self.last_shown = -math.inf
        self.width = 0

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        if done < total and now - self.last_shown < self.interval:
            return
        if total == 0 and not self.interactive:
            return
        self.last_shown = now
        text = self.format(done, total, now - self.started)
        if self.interactive:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(f"faceage: {text}\n")
        self.stream.flush()

    @staticmethod
    def format(done: int, total: int, elapsed: float) -> str:
        percent = 100.0 * done / total if total else 100.0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = _clock_text((total - done) / rate) if rate > 0 else "?"
        return f"{done}/{total} images {percent:5.1f}% {rate:6.1f} img/s ETA {eta}"

    def close(self) -> None:
        """End the redrawn line (once; later calls do nothing)."""
        if self.interactive and self.width:
            self.stream.write("\n")
            self.stream.flush()
        self.width = 0


def _clock_text(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
