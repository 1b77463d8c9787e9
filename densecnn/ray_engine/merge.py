"""The driver's side of the shards: merge the workers' lines into the run folder's files.

Every input ends in exactly one place. An input some worker reported back to the driver takes its
rows (and its error) from that worker's shard only: a worker killed mid-batch may have written rows
for inputs that Ray then retried on another worker, and those are ignored. An input nobody reported
(the driver was interrupted or killed) counts only if it is finished by the local engine's resume
rule (segment: its mask and overlay exist; detect and classify: a ledger line, written after every
other output) and has its rows somewhere. The rest are left for ``--resume`` to redo.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densecnn.ray_engine.worker import SHARDS
from densecnn.sinks.done import LEDGER

Rows = dict[str, list[dict[str, Any]]]


@dataclass
class Shard:
    """One worker's lines, by input source."""

    rows: Rows = field(default_factory=dict)
    errors: Rows = field(default_factory=dict)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Merged:
    """What the run folder's files hold after a merge, in input order."""

    rows: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    done: list[dict[str, Any]]
    sources: set[str]  # the inputs with their rows in ``rows``


def _by_source(records: Iterable[dict[str, Any]]) -> Rows:
    grouped: Rows = {}
    for record in records:
        grouped.setdefault(str(record.get("source")), []).append(record)
    return grouped


def _read(path: Path) -> list[dict[str, Any]]:
    from densecnn.sinks.jsonl import read_jsonl

    return read_jsonl(path) if path.is_file() else []


def read_shards(run_dir: Path) -> dict[str, Shard]:
    """Every shard under ``run_dir/.ray-shards`` (a killed worker's torn last line is dropped)."""
    shards: dict[str, Shard] = {}
    root = run_dir / SHARDS
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        shards[folder.name] = Shard(
            rows=_by_source(_read(folder / "predictions.jsonl")),
            errors=_by_source(_read(folder / "errors.jsonl")),
            ledger={str(x["source"]): x for x in _read(folder / LEDGER)},
        )
    return shards


def merge(
    run_dir: Path,
    *,
    task: str,
    order: Sequence[str],
    reported: Mapping[str, str],
    overlay: bool,
) -> Merged:
    """Each input of ``order``: from the shard in ``reported`` (source → shard), else the earlier
    merged files or any shard when it is finished (see the module docstring)."""
    from densecnn.sinks.masks import is_complete

    shards = read_shards(run_dir)
    earlier_rows = _by_source(_read(run_dir / "predictions.jsonl"))
    ledger = {str(x["source"]): x for x in _read(run_dir / LEDGER)}
    for shard in shards.values():
        for source, line in shard.ledger.items():
            ledger.setdefault(source, line)
    merged = Merged(rows=[], errors=[], done=[], sources=set())
    for source in order:
        name = reported.get(source)
        if name is not None:
            shard = shards.get(name, Shard())
            rows, errors = shard.rows.get(source, []), shard.errors.get(source, [])
            done = shard.ledger.get(source)
        else:
            finished = (
                is_complete(run_dir, source, video=False, overlay=overlay)
                if task == "segment"
                else source in ledger
            )
            rows = _any_rows(source, earlier_rows, shards) if finished else []
            errors, done = [], ledger.get(source) if rows else None
        merged.rows += rows
        merged.errors += errors
        if done is not None:
            merged.done.append(done)
        if rows:
            merged.sources.add(source)
    return merged


def _any_rows(source: str, earlier: Rows, shards: Mapping[str, Shard]) -> list[dict[str, Any]]:
    """The rows of a finished input: the merged file's, else the first shard's that has them (a
    retried input's rows are the same in each shard that finished it)."""
    if source in earlier:
        return earlier[source]
    return next((s.rows[source] for s in shards.values() if source in s.rows), [])


def write(run_dir: Path, merged: Merged, *, task: str, tables: Sequence[Any]) -> None:
    """Write the merged files atomically (errors.jsonl only when something failed; the ledger for
    detect and classify), fill ``tables`` (COCO, CSV) from the rows, then drop the shards."""
    from densecnn.fsutil import atomic_open

    def dump(path: Path, records: Sequence[dict[str, Any]]) -> None:
        with atomic_open(path, "w") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    dump(run_dir / "predictions.jsonl", merged.rows)
    errors = run_dir / "errors.jsonl"
    if merged.errors:
        with atomic_open(errors, "w") as fh:  # the local ErrorsSink's line format
            fh.writelines(json.dumps(e) + "\n" for e in merged.errors)
    else:
        errors.unlink(missing_ok=True)
    if task != "segment":
        dump(run_dir / LEDGER, merged.done)
    for table in tables:
        for row in merged.rows:
            table.add_record(row)
        table.close()
    shutil.rmtree(run_dir / SHARDS, ignore_errors=True)


def clear(run_dir: Path) -> None:
    """A fresh (not resumed) run in an existing folder: no earlier lines may be merged into it."""
    shutil.rmtree(run_dir / SHARDS, ignore_errors=True)
    for name in ("predictions.jsonl", "errors.jsonl", LEDGER):
        (run_dir / name).unlink(missing_ok=True)
