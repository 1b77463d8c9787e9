"""``.done.jsonl``: the ledger of finished inputs that ``detect --resume`` and ``classify --resume``
read.

The ledger sink comes last in the sink list, so a line is written only after every other sink has
handled all of that input's frames (``end_input``), and only for an input that did not fail. A run
killed at any point leaves a ledger whose complete lines name exactly the inputs whose outputs are
all written; a resumed run skips those, redoes the rest, and keeps only their predictions rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from densecnn.sinks.base import Sink
from densecnn.sinks.jsonl import _drop_torn_tail, read_jsonl, write_line
from densecnn.sources.base import InputEnd, InputFailure, InputRef

LEDGER = ".done.jsonl"


class DoneSink(Sink):
    """Appends ``{"source", "kind", "frames"}`` to ``root/.done.jsonl`` when an input ends without
    failure (after every other sink: list it last). ``append`` keeps an earlier run's lines."""

    def __init__(self, root: Path, *, append: bool = False) -> None:
        self.path = Path(root) / LEDGER
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.is_file():
            _drop_torn_tail(self.path)
        self._fh = self.path.open("ab" if append else "wb", buffering=0)
        self._failed: set[str] = set()

    def fail_input(self, event: InputFailure) -> None:
        self._failed.add(event.ref.source)

    def end_input(self, event: InputEnd) -> None:
        ref = event.ref
        if event.frames > 0 and ref.source not in self._failed:
            line = {"source": ref.source, "kind": ref.kind, "frames": event.frames}
            write_line(self._fh, (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class Ledger:
    """The finished inputs an earlier run recorded in ``run_dir/.done.jsonl`` (read once)."""

    def __init__(self, run_dir: Path) -> None:
        path = Path(run_dir) / LEDGER
        lines = read_jsonl(path) if path.is_file() else []
        self.kinds: dict[str, str] = {str(x["source"]): str(x.get("kind", "image")) for x in lines}

    def done(self, run_dir: Path, ref: InputRef) -> bool:
        """``is_done`` for ``run_prediction``: the input is in the ledger."""
        return ref.source in self.kinds

    def keep_row(self, row: dict[str, Any]) -> bool:
        """A predictions row of a finished input (kept on resume; the others are redone)."""
        return str(row.get("source")) in self.kinds

    def image_rows(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of finished image inputs (what predictions.coco.json holds)."""
        return [r for r in rows if self.kinds.get(str(r.get("source"))) == "image"]


class Resume:
    """One resumed run's ledger, read when the run folder is known (``is_done`` comes first)."""

    def __init__(self) -> None:
        self._ledger: Ledger | None = None

    def ledger(self, run_dir: Path) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(run_dir)
        return self._ledger

    def is_done(self, run_dir: Path, ref: InputRef) -> bool:
        return self.ledger(run_dir).done(run_dir, ref)
