"""Live-run helpers of the pipeline: the newest-frame-wins queue, run limits, latency statistics."""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any

import numpy as np

from densecnn.results import Frame


class LatestQueue:
    """A queue whose ``put`` never blocks on frames: a frame replaces the waiting, not yet taken
    frame of the same source (``dropped`` counts those), so ``get`` always returns the newest one.

    Other items (source events, end markers) are never dropped and keep their order. Offers the
    ``put(item, timeout)`` / ``get(timeout)`` / ``empty()`` subset of ``queue.Queue`` the pipeline uses.
    """

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, item: Any, timeout: float | None = None) -> None:
        with self._ready:
            if isinstance(item, Frame):
                for i, waiting in enumerate(self._items):
                    if isinstance(waiting, Frame) and waiting.source == item.source:
                        del self._items[i]
                        self.dropped += 1
                        break
            self._items.append(item)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self._ready:
            if not self._ready.wait_for(lambda: self._items, timeout=timeout):
                raise queue.Empty
            return self._items.popleft()

    def empty(self) -> bool:
        with self._ready:
            return not self._items


class RunLimits:
    """``--max-frames`` and ``--duration``, counted on frames handed to the model. ``stopped_by``
    says which one ended the run (None: neither)."""

    def __init__(self, max_frames: int, duration: float, t_start: float) -> None:
        self.max_frames, self.duration, self.t_start = max_frames, duration, t_start
        self.frames = 0
        self.stopped_by: str | None = None

    def time_up(self, stop: threading.Event) -> None:
        """Timer callback: the duration passed, whether or not frames arrive."""
        self.stopped_by = self.stopped_by or "duration"
        stop.set()

    def reached(self, stop: threading.Event) -> bool:
        """Count one more frame; True (and ``stop`` set) when it is past a limit."""
        if self.stopped_by is None:
            if self.max_frames and self.frames >= self.max_frames:
                self.stopped_by = "max-frames"
            elif self.duration and time.perf_counter() - self.t_start >= self.duration:
                self.stopped_by = "duration"
        if self.stopped_by is not None:
            stop.set()
            return True
        self.frames += 1
        return False


def latency_stats(latencies_ms: list[float]) -> dict[str, float] | None:
    """p50 / p95 / max of capture-to-written latency in ms; None when no frame carried a capture time."""
    if not latencies_ms:
        return None
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "max": round(float(values.max()), 2)}
