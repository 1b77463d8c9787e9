"""Live-run helpers of the pipeline: the newest-frame-wins queue and latency statistics."""

from __future__ import annotations

import collections
import queue
import threading
from typing import Any, Literal

import numpy as np

from densecnn.results import Frame

StreamMode = Literal["latest", "all"]


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


def latency_stats(latencies_ms: list[float]) -> dict[str, float] | None:
    """p50 / p95 / max of capture-to-written latency in ms; None when no frame carried a capture time."""
    if not latencies_ms:
        return None
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "max": round(float(values.max()), 2)}
