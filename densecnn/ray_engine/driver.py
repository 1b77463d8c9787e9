"""The driver of ``--engine ray``: list the inputs, prepare the run folder as the local engine does,
run the Ray Data pipeline (read bytes → actor pool), count what the workers report, merge the shards
and write summary.json (with each worker's throughput).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from densecnn.errors import UsageError
from densecnn.ray_engine import merge, require_ray
from densecnn.ray_engine.listing import LOCAL_ONLY, list_inputs
from densecnn.ray_engine.worker import IMAGES_PER_CALL, STAGES, ShardWorker, read_stage

if TYPE_CHECKING:
    from densecnn.config import EngineConfig, LiveConfig, OutputConfig, PredictConfig
    from densecnn.engine import PredictionRun
    from densecnn.pipeline import Progress, RunSummary


class _StopOnError(Exception):
    """``--on-error fail``: a worker reported a failed input."""


@dataclass
class WorkerStats:
    """What one worker (one shard) did, for summary.json."""

    node: str = ""
    device: str = ""
    batch: str = ""  # the forward batch size and where it came from (densecnn.batching)
    inputs: int = 0
    frames: int = 0
    busy_s: float = 0.0
    load_s: float = 0.0

    def record(self, shard: str) -> dict[str, Any]:
        rate = self.inputs / self.busy_s if self.busy_s > 0 else 0.0
        return {
            "worker": shard,
            "node": self.node,
            "device": self.device,
            "batch": self.batch,
            "inputs": self.inputs,
            "frames": self.frames,
            "busy_s": round(self.busy_s, 3),
            "images_per_s": round(rate, 3),
            "model_load_s": round(self.load_s, 3),
        }


@dataclass
class RayRun:
    """A Ray run ready to go: :meth:`execute`, then ``run.finish()`` (the local engine's
    :class:`~densecnn.engine.PredictionRun` holds the run folder, the predictor's metadata and the
    summary, so summary.json and the CLI's table are the local engine's)."""

    run: PredictionRun
    ecfg: EngineConfig
    class_names: tuple[str, ...] | None
    filesystem: Any
    verbose: bool = False
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    resumed_order: list[str] = field(default_factory=list)  # the inputs an earlier run finished
    n_workers: int = 0
    connect_s: float = 0.0  # joining (or starting) Ray
    first_result_s: float | None = None  # from the dataset's start to the first batch back
    _started_ray: bool = False

    @classmethod
    def open(
        cls,
        *,
        task: str,
        source: str,
        pcfg: PredictConfig,
        ocfg: OutputConfig,
        lcfg: LiveConfig,
        ecfg: EngineConfig,
        class_names: tuple[str, ...] | None = None,
        verbose: bool = False,
    ) -> RayRun:
        """Check Ray is installed, list the inputs, build the predictor once on the driver (its
        metadata; a wrong model fails here, before any worker starts), claim the run folder and, with
        ``--resume``, merge what an earlier (killed) run left and skip its finished inputs."""
        from densecnn.engine import PredictionRun
        from densecnn.fsutil import claim_run_dir, ensure_writable_dir
        from densecnn.tasks.loading import check_model_name, load_predictor

        require_ray()
        _refuse_live_options(lcfg)
        check_model_name(pcfg.model, task)
        ensure_writable_dir(ocfg.project)
        src, filesystem = list_inputs(source, exclude=[ocfg.project], on_corrupt=ocfg.on_corrupt)
        # on the driver only for names, classes and checks: the workers build their own
        on_cpu = replace(pcfg, device="cpu", half=False)
        predictor = load_predictor(on_cpu, task=task, class_names=class_names)
        run_dir = claim_run_dir(ocfg.project, ocfg.name, exist_ok=ocfg.exist_ok or ocfg.resume)
        run = PredictionRun(
            task=task,
            source=source,
            live=False,
            mode="all",
            src=src,
            predictor=predictor,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=lcfg,
            run_dir=run_dir,
            sinks=[],
            resuming=ocfg.resume,
        )
        try:
            resumed_order = _prepare(run)
        except BaseException:
            run.release()
            raise
        return cls(
            run=run,
            ecfg=ecfg,
            class_names=class_names,
            filesystem=filesystem,
            verbose=verbose,
            resumed_order=resumed_order,
        )

    @property
    def address(self) -> str:
        return self.ecfg.address or "local"

    def execute(self, progress: Progress | None = None) -> RunSummary:
        """Run the pipeline to its end (Ctrl-C: stop, merge what finished), merge, fill the summary."""
        from densecnn import outputs
        from densecnn.pipeline import Progress, RunSummary

        run, progress = self.run, progress or Progress()
        assert run.run_dir is not None
        summary = run.summary = RunSummary()
        started = time.perf_counter()
        stage_s: Counter[str] = Counter()
        reported: dict[str, str] = {}
        progress.start(len(run.src.inputs))
        try:
            if run.src.inputs:
                dataset = self._dataset()
                submitted = time.perf_counter()
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    if self.first_result_s is None:  # actors started, models loaded, one batch done
                        self.first_result_s = time.perf_counter() - submitted
                    self._count(batch, summary, reported, stage_s, progress)
        except KeyboardInterrupt:
            summary.interrupted = True
        except _StopOnError:
            summary.stopped_on_error = True
        finally:
            progress.stop()
            self._shutdown()
        order = self.resumed_order + [ref.source for ref in run.src.inputs]
        merged = merge.merge(
            run.run_dir, task=run.task, order=order, reported=reported, overlay=run.ocfg.save
        )
        tables = outputs.table_sinks(run.task, run.run_dir, run.pcfg, run.predictor)
        merge.write(run.run_dir, merged, task=run.task, tables=tables)
        summary.errors = merged.errors
        summary.wall_s = time.perf_counter() - started
        summary.stopped_by = "interrupted" if summary.interrupted else None
        frames = max(summary.frames, 1)
        summary.stage_ms = {s: 1000 * stage_s[s] / frames for s in STAGES}
        if run.resumed is not None:
            run.resumed.add_to(summary)
        run.engine = self._engine_record()
        return summary

    def _count(
        self,
        batch: dict[str, Any],
        summary: RunSummary,
        reported: dict[str, str],
        stage_s: Counter[str],
        progress: Progress,
    ) -> None:
        for i, source in enumerate(batch["source"]):
            shard = str(batch["shard"][i])
            reported[str(source)] = shard
            stats = self.workers.setdefault(shard, WorkerStats())
            stats.node, stats.device = str(batch["node"][i]), str(batch["device"][i])
            stats.batch = str(batch["batch"][i])
            stats.load_s = float(batch["load_s"][i])
            stats.inputs += 1
            stats.frames += int(batch["frames"][i])
            stats.busy_s += float(batch["busy_s"][i])
            summary.inputs += 1
            summary.frames += int(batch["frames"][i])
            summary.class_counts.update(json.loads(str(batch["labels"][i])))
            for stage in STAGES:
                stage_s[stage] += float(batch[f"s_{stage}"][i])
            progress.advance(1, str(source))
            if batch["error"][i]:
                summary.inputs_failed += 1
                if self.run.ocfg.on_error == "fail":
                    raise _StopOnError
        return None

    def _dataset(self) -> Any:
        """from_items (the listed paths) → read raw bytes (tasks) → ShardWorker actor pool."""
        ray = require_ray()
        started = time.perf_counter()
        self._connect(ray)
        self.connect_s = time.perf_counter() - started
        run, ecfg = self.run, self.ecfg
        assert run.run_dir is not None
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI shows its own
        ctx.print_on_execution_start = self.verbose
        self.n_workers = ecfg.workers or _auto_workers(ray, ecfg)
        # images per worker call: --batch (also the forward batch), else IMAGES_PER_CALL, which each
        # worker splits into forward passes of the batch size it measures (densecnn.batching)
        batch = run.pcfg.batch or IMAGES_PER_CALL
        # workers run in their own folders (and on other machines): local paths go as absolute paths
        local = self.filesystem is None
        items = [
            {"source": ref.source, "path": str(ref.path.absolute() if local else ref.path)}
            for ref in run.src.inputs
        ]
        # blocks small enough to spread over the workers, at most 256 paths (and their bytes) each
        per_block = max(batch, min(256, math.ceil(len(items) / (4 * self.n_workers))))
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / per_block))
        # reading waits on I/O, not a CPU: it must never wait for the CPUs the workers hold
        ds = ds.map_batches(
            read_stage,
            fn_kwargs={"filesystem": self.filesystem},
            batch_size=batch,
            num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=max(2, self.n_workers)),
        )
        return ds.map_batches(
            ShardWorker,
            fn_constructor_kwargs={
                "task": run.task,
                "pcfg": _absolute_weights(run.pcfg),
                "ocfg": run.ocfg,
                "run_dir": str(run.run_dir.absolute()),
                "class_names": self.class_names,
                "run_images": math.ceil(len(items) / self.n_workers),
            },
            batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=self.n_workers),
            num_cpus=ecfg.cpus_per_worker,
            num_gpus=ecfg.gpus_per_worker,
        )

    def _connect(self, ray: Any) -> None:
        """Join the cluster ``--address`` names; without one, the Ray instance this process already
        joined (a script, the tests), else RAY_ADDRESS, else a new local instance (shut down after)."""
        import os

        level = logging.INFO if self.verbose else logging.ERROR  # Ray's notices are not the user's
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(level)
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"logging_level": level, "log_to_driver": self.verbose}
        if self.ecfg.address is None and not os.environ.get("RAY_ADDRESS"):
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=self.ecfg.address, **kwargs)
        except Exception as exc:  # ray.init raises plain Exception too (a node that timed out starting)
            what = "start a local Ray instance" if self.ecfg.address is None else "join the Ray cluster at"
            where = "" if self.ecfg.address is None else f" {self.address}"
            raise UsageError(
                f"--engine ray: cannot {what}{where}: {str(exc).strip().splitlines()[-1]}",
                hint="Start one with `ray start --head` and pass --address auto, or give the head's "
                "HOST:PORT (port 6379 by default). On a busy machine Ray's start-up can time out: retry.",
            ) from None
        self._started_ray = True

    def _shutdown(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()

    def _engine_record(self) -> dict[str, Any]:
        return {
            "name": "ray",
            "address": self.address,
            "device": self.device,
            "workers": self.n_workers,
            "cpus_per_worker": self.ecfg.cpus_per_worker,
            "gpus_per_worker": self.ecfg.gpus_per_worker,
            "batch": self.run.pcfg.batch,
            "connect_s": round(self.connect_s, 3),
            "first_result_s": None if self.first_result_s is None else round(self.first_result_s, 3),
            "per_worker": [stats.record(shard) for shard, stats in sorted(self.workers.items())],
        }

    @property
    def device(self) -> str:
        """The workers' devices (``cpu``, ``cuda:0``...), as they reported them."""
        devices = sorted({s.device for s in self.workers.values()})
        return ", ".join(devices) or str(self.run.predictor.device)


def _refuse_live_options(lcfg: LiveConfig) -> None:
    given = [
        flag
        for flag, on in (
            ("--show", lcfg.show),
            ("--max-frames", lcfg.max_frames),
            ("--duration", lcfg.duration),
            ("--stream-mode", lcfg.stream_mode),
        )
        if on
    ]
    if given:
        raise UsageError(f"{', '.join(given)}: not with --engine ray (image files only).", hint=LOCAL_ONLY)


def _prepare(run: PredictionRun) -> list[str]:
    """The run folder as the local engine leaves it before the first input: a fresh run starts from
    nothing; a resumed one first merges what the earlier run left (shards of a killed driver
    included) and skips the inputs finished with their rows (returned, in order). classes.json
    (segment)."""
    from densecnn import outputs
    from densecnn.resume import ResumedPart

    assert run.run_dir is not None
    resumed_order: list[str] = []
    if not run.resuming:
        merge.clear(run.run_dir)
    else:
        order = [ref.source for ref in run.src.inputs]
        earlier = merge.merge(run.run_dir, task=run.task, order=order, reported={}, overlay=run.ocfg.save)
        merge.write(run.run_dir, earlier, task=run.task, tables=[])
        todo = [ref for ref in run.src.inputs if ref.source not in earlier.sources]
        run.skipped = len(run.src.inputs) - len(todo)
        resumed_order = [s for s in order if s in earlier.sources]
        run.src.inputs = todo
        run.resumed = ResumedPart.read(run.run_dir / "predictions.jsonl", inputs=run.skipped)
    outputs.write_run_files(run.task, run.run_dir, run.predictor)
    return resumed_order


def _absolute_weights(pcfg: PredictConfig) -> PredictConfig:
    """``pcfg`` with ``--weights`` as an absolute path: the workers do not share the driver's folder."""
    return replace(pcfg, weights=pcfg.weights.absolute()) if pcfg.weights is not None else pcfg


def _auto_workers(ray: Any, ecfg: EngineConfig) -> int:
    """As many workers as the cluster's GPUs (with --gpus-per-worker) or CPUs allow, at least one."""
    resources = ray.cluster_resources()
    if ecfg.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // ecfg.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // ecfg.cpus_per_worker))
