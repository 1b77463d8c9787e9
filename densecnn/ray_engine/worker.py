"""What runs on the Ray workers: the stage that reads raw bytes, and the actor that decodes,
predicts and writes.

Each :class:`ShardWorker` is one actor of the pool: it builds its predictor once (the local engine's
loader, so the same model code and defaults), and feeds the local engine's sinks through a
:class:`~densecnn.pipeline.SinkFeed`: the per-input outputs (masks, overlays, labels, crops) go to
their usual names in the run folder, the run-wide lines (predictions, errors, the ledger of finished
inputs) to the actor's own shard folder ``.ray-shards/<shard>/``, merged by the driver at the end.
A restarted actor starts a new shard; the driver keeps only the rows of the shard that reported each
input.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

SHARDS = ".ray-shards"
"""The folder of the workers' shards inside the run folder (removed once merged)."""

STAGES = ("decode", "preprocess", "inference", "postprocess", "draw", "encode")

IMAGES_PER_CALL = 16
"""Images per worker call without ``--batch``; each worker splits them into forward passes of the
batch size chosen for its model and device (:func:`densecnn.batching.choose_batch`)."""


def read_stage(batch: dict[str, np.ndarray], *, filesystem: Any = None) -> dict[str, Any]:
    """Ray Data stage: add each file's raw bytes (``data``) or why they could not be read
    (``read_error``; decoding, and so failing, happens in the worker)."""
    from densecnn.errors import InputError
    from densecnn.ray_engine.listing import read_bytes

    data: list[bytes] = []
    errors: list[str] = []
    for path in batch["path"]:
        try:
            data.append(read_bytes(str(path), filesystem))
            errors.append("")
        except InputError as exc:
            data.append(b"")
            errors.append(exc.message)
    return {**batch, "data": np.array(data, dtype=object), "read_error": np.array(errors, dtype=object)}


class ShardWorker:
    """One actor of the pool (Ray Data calls it on batches of ``--batch`` images, or
    ``IMAGES_PER_CALL``). ``run_images``: about how many images this worker will see, so a short run
    does not pay for a batch-size measurement."""

    def __init__(
        self,
        *,
        task: str,
        pcfg: Any,
        ocfg: Any,
        run_dir: str,
        class_names: tuple[str, ...] | None = None,
        run_images: int = 0,
    ) -> None:
        from densecnn import outputs
        from densecnn.batching import choose_batch
        from densecnn.draw import draw_result
        from densecnn.pipeline import RunSummary, SinkFeed
        from densecnn.sinks import ErrorsSink, JsonlSink
        from densecnn.tasks.loading import load_predictor
        from densecnn.zoo.store import WeightStore

        started = time.perf_counter()
        self.task, self.ocfg = task, ocfg
        # densecnn.load builds predictors with this same call
        self.predictor = load_predictor(pcfg, task=task, class_names=class_names)
        self.batch = choose_batch(
            self.predictor, requested=pcfg.batch, live=False, frames=run_images, cache_dir=WeightStore().root
        )
        root = Path(run_dir)
        self.shard = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shard_dir = root / SHARDS / self.shard
        shard_dir.mkdir(parents=True)
        # a restarted actor is a new process and a new shard: nothing is appended to a torn file
        ledger_root = root if task == "segment" else shard_dir
        finish = outputs.finish_sink(task, ledger_root, ocfg, append=False)
        self.sinks = [
            ErrorsSink(shard_dir / "errors.jsonl"),
            JsonlSink(shard_dir / "predictions.jsonl"),
            *outputs.input_sinks(task, root, ocfg, pcfg),
            *([finish] if finish is not None else []),
        ]
        self.summary = RunSummary()
        self.feed = SinkFeed(self.sinks, self.summary, draw=outputs.drawer(task, ocfg) or draw_result)
        self.node = socket.gethostname()
        device = str(self.predictor.device)
        info = {
            "shard": self.shard,
            "pid": os.getpid(),
            "node": self.node,
            "device": device,
            "batch": self.batch.describe(),
        }
        (shard_dir / "worker.json").write_text(json.dumps(info) + "\n", encoding="utf-8")
        self.load_s = time.perf_counter() - started

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Decode, predict and write one batch; one row back per input (what the driver counts)."""
        from densecnn.errors import InputError
        from densecnn.pipeline import predict_events
        from densecnn.results import Prediction
        from densecnn.sources.base import InputFailure, InputRef
        from densecnn.sources.images import image_events

        t0 = time.perf_counter()
        before = self._stage_seconds()
        events: list[Any] = []
        for source, path, data, error in zip(
            batch["source"], batch["path"], batch["data"], batch["read_error"], strict=True
        ):
            ref = InputRef(Path(str(path)), str(source), "image")
            given: bytes | InputError = InputError(str(error)) if error else bytes(data)
            events += image_events(ref, on_corrupt=self.ocfg.on_corrupt, data=given)
        decoded = time.perf_counter()
        labels: dict[str, list[str]] = {str(s): [] for s in batch["source"]}
        frames = dict.fromkeys(labels, 0)
        failed = dict.fromkeys(labels, "")
        for item in predict_events(events, self.predictor, self.batch.size):
            self.feed.handle(item)
            if isinstance(item, Prediction):
                frames[item.frame.source] += 1
                labels[item.frame.source] += item.result.labels()
            elif isinstance(item, InputFailure):
                failed[item.ref.source] = item.error
        busy = time.perf_counter() - t0
        stages = {s: v - before.get(s, 0.0) for s, v in self._stage_seconds().items()}
        stages["decode"] = stages.get("decode", 0.0) + (decoded - t0)
        n = len(labels)
        return {
            "source": list(labels),
            "shard": [self.shard] * n,
            "node": [self.node] * n,
            "device": [str(self.predictor.device)] * n,
            "batch": [self.batch.describe()] * n,
            "frames": [frames[s] for s in labels],
            "error": [failed[s] for s in labels],
            "labels": [json.dumps(labels[s]) for s in labels],
            "busy_s": [busy / n] * n,
            "load_s": [self.load_s] * n,
            **{f"s_{stage}": [stages.get(stage, 0.0) / n] * n for stage in STAGES},
        }

    def _stage_seconds(self) -> dict[str, float]:
        return {**self.predictor.timers.seconds, **self.feed.timers.seconds}

    def __del__(self) -> None:
        for sink in getattr(self, "sinks", []):
            # an actor going away must not raise; its lines were flushed as written
            with contextlib.suppress(Exception):
                sink.close()
