"""``--engine ray``: the same predictions and the same run folder as the local engine, computed by an
actor pool on a Ray cluster (Ray Data), for image collections too large for one machine.

The shape (what survives bad data and failures):

- the driver lists the files (:mod:`.listing`: folders, globs, lists, and pyarrow filesystem URIs such
  as ``s3://`` and ``gs://``) and skips what a resumed run already finished (the local rule);
- a Ray Data stage reads each file's raw bytes (an unreadable file becomes an error, not a failed task);
- an actor pool of :class:`.worker.ShardWorker`\\ s, each building its predictor once with the local
  engine's loader, decodes (one bad file: one error row), predicts and writes: the per-input outputs
  (masks, overlays, labels, crops) under their local names, its rows into its own JSONL shard;
- the driver merges the shards (:mod:`.merge`) into predictions.jsonl, errors.jsonl, the tables and
  summary.json. A worker killed mid-run has its batch retried by Ray; the merge takes each input's
  rows from the worker that reported it, so no row is missing or doubled.

Ray is optional (``pip install 'densecnn[ray]'``); this package imports it only inside functions.
"""

from __future__ import annotations

from typing import Any

from densecnn.errors import UsageError

INSTALL = "pip install 'densecnn[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a ``UsageError`` naming the command that installs it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise UsageError(
            f"--engine ray needs Ray (Ray Data), which is not installed ({exc.name or 'ray'} is missing).",
            hint=f"Install it with: {INSTALL}",
        ) from None
    return ray
