"""A dependency-free progress line for long runs on stderr (``faceage batch``, ``video``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import IO


class ProgressBar:
    """``done/total``, percent, images/s and ETA on one stderr line.

    ``unit`` and ``rate_unit`` name what is counted (``"frames"``, ``"frames/s"`` for
    ``faceage video``); a ``total`` of None (a camera) shows the count and rate only.

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
        unit: str = "images",
        rate_unit: str = "img/s",
    ) -> None:
        self.stream = stream
        self.unit = unit
        self.rate_unit = rate_unit
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.interactive else log_interval
        self.clock = clock
        self.started: float | None = None
        self.last_shown = -math.inf
        self.last_count: tuple[int, int | None] | None = None
        self.width = 0

    def __call__(self, done: int, total: int | None, *, final: bool = False) -> None:
        """Show ``done`` of ``total``; ``final`` forces the line out (an unknown total's end)."""
        now = self.clock()
        if self.started is None:
            self.started = now
        finished = final or (total is not None and done >= total)
        if not finished and now - self.last_shown < self.interval:
            return
        if final and self.last_count == (done, total):
            return  # already shown
        if total == 0 and not self.interactive:
            return
        self.last_shown = now
        self.last_count = (done, total)
        text = self.format(
            done, total, now - self.started, unit=self.unit, rate_unit=self.rate_unit
        )
        if self.interactive:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(f"faceage: {text}\n")
        self.stream.flush()

    @staticmethod
    def format(
        done: int,
        total: int | None,
        elapsed: float,
        *,
        unit: str = "images",
        rate_unit: str = "img/s",
    ) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if total is None:
            return f"{done} {unit} {rate:6.1f} {rate_unit} {_clock_text(elapsed)}"
        percent = 100.0 * done / total if total else 100.0
        eta = _clock_text((total - done) / rate) if rate > 0 else "?"
        return f"{done}/{total} {unit} {percent:5.1f}% {rate:6.1f} {rate_unit} ETA {eta}"

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
