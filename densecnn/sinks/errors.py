"""``errors.jsonl``: one line per failed input (or frame), created on the first failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from densecnn.sinks.base import Sink
from densecnn.sources.base import InputFailure


def failure_record(failure: InputFailure) -> dict[str, Any]:
    """``{"source", "path", "error"}`` (+ ``"frame"`` when one frame of a video failed); names as
    printable text, URL passwords masked."""
    from densecnn.redact import redact_obj
    from densecnn.sources.base import text_name

    record: dict[str, Any] = {
        "source": failure.ref.source,
        "path": text_name(str(failure.ref.path)),
        "error": text_name(failure.error),
    }
    if failure.frame is not None:
        record["frame"] = failure.frame
    return redact_obj(record)  # type: ignore[no-any-return]


class ErrorsSink(Sink):
    """Appends :func:`failure_record` lines to ``path``, each complete and flushed; no file when
    nothing failed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def fail_input(self, event: InputFailure) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        self._fh.write(json.dumps(failure_record(event)) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def outputs(self) -> list[Path]:
        return [self.path] if self._fh is not None else []
