"""What every prediction command shares once its options are read: start the run (``densecnn.engine``),
show a progress bar, drain the predictions, write summary.json, print the summary table and turn the
outcome into an exit code.

Commands (``detect``, ``segment``, ``classify``) supply only their configs; what each task writes is
``densecnn.outputs``'. Torch and the sources are imported inside :func:`run_prediction`, so importing
this module stays cheap (``--help``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densecnn.cli.common import console, err_console
from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.config import EngineConfig, LiveConfig, OutputConfig, PredictConfig, TrackConfig
    from densecnn.engine import PredictionRun

EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 130


def run_prediction(
    *,
    task: str,
    source: str,
    pcfg: PredictConfig,
    ocfg: OutputConfig,
    lcfg: LiveConfig,
    quiet: bool,
    class_names: tuple[str, ...] | None = None,
    track: TrackConfig | None = None,
    tasks: dict[str, PredictConfig] | None = None,
    ecfg: EngineConfig | None = None,
    verbose: bool = False,
) -> int:
    """Run ``task`` over ``source`` and report; returns the exit code (0, 1 or 130).

    The source is opened before the model is built, so a missing source fails fast; the run folder
    is made only once both are ready. ``class_names`` name a plain state dict's outputs (segment);
    ``track``: the tracker and counting of task ``track`` (or ``run``); ``tasks``: task ``run``'s
    models (see ``PredictionRun.open``). ``ecfg`` picks the engine (default: local).
    """
    from densecnn.engine import PredictionRun

    if ecfg is not None and ecfg.engine == "ray":
        if task not in ("detect", "segment", "classify"):
            raise UsageError(
                f"--engine ray runs detect, segment and classify; {task} runs with the local engine.",
                hint="Drop --engine ray (tracking follows each video's frames in order, on one machine).",
            )
        return _run_on_ray(
            task=task,
            source=source,
            pcfg=pcfg,
            ocfg=ocfg,
            lcfg=lcfg,
            ecfg=ecfg,
            quiet=quiet,
            class_names=class_names,
            verbose=verbose,
        )

    show = _display_ok(lcfg, quiet)
    run = PredictionRun.open(
        task=task,
        source=source,
        pcfg=pcfg,
        ocfg=ocfg,
        lcfg=lcfg,
        show=show,
        class_names=class_names,
        track=track,
        tasks=tasks,
    )
    progress = None
    if not quiet:
        from densecnn.cli.report import RichProgress
        from densecnn.device import describe

        predictor = run.predictor
        if pcfg.half and predictor.device.type != "cuda" and predictor.precision != "bf16":
            console.print(
                "[yellow]--half is ignored here: on a CPU, 16-bit inference is bf16 under OpenVINO on a "
                "CPU that computes it natively (AMX or AVX512-BF16).[/]"
            )
        console.print(
            f"[bold]densecnn {task}[/] {run.model_label} on {describe(predictor.device)}, "
            f"{predictor.backend} {predictor.precision}"
            + (f", {run.batch.describe()}" if run.batch is not None else "")
            + (f", input sizes {_sizes(run.input_sizes)}" if run.input_sizes else "")
            + ": "
            f"{_describe_inputs(run)} → {run.run_dir}"
        )
        if run.resuming:
            console.print(f"Resuming {run.run_dir}: {run.skipped} inputs already done, skipped.")
        progress = RichProgress(console, task)
    assert run.run_dir is not None
    try:
        with sigterm_as_interrupt(), _output_errors(run.run_dir):
            drain(run.predictions(progress))
    except BaseException:
        run.release()  # no summary.json for a run that broke off; its outputs so far stay
        raise
    run.finish()
    return _report(run, task=task, quiet=quiet)


def _report(run: PredictionRun, *, task: str, quiet: bool) -> int:
    """The summary table (or, ``quiet``, the run folder) and the exit code of a finished run."""
    summary = run.summary
    assert summary is not None and run.run_dir is not None
    if quiet:
        console.print(str(run.run_dir))
    else:
        from densecnn.cli.report import summary_table
        from densecnn.outputs import counts_label

        label = counts_label(task, run.predictor)
        console.print(summary_table(summary, run_dir=run.run_dir, title="Summary", counts_label=label))
    if summary.interrupted:
        err_console.print("[yellow]Interrupted.[/] Outputs written so far are complete and kept.")
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary.errors else 0


def _run_on_ray(
    *,
    task: str,
    source: str,
    pcfg: PredictConfig,
    ocfg: OutputConfig,
    lcfg: LiveConfig,
    ecfg: EngineConfig,
    quiet: bool,
    class_names: tuple[str, ...] | None,
    verbose: bool,
) -> int:
    """``--engine ray``: the same run folder, summary and exit codes, computed on a Ray cluster."""
    from densecnn.ray_engine.driver import RayRun

    ray_run = RayRun.open(
        task=task,
        source=source,
        pcfg=pcfg,
        ocfg=ocfg,
        lcfg=lcfg,
        ecfg=ecfg,
        class_names=class_names,
        verbose=verbose,
    )
    run = ray_run.run
    progress = None
    if not quiet:
        from densecnn.cli.report import RichProgress

        workers = f"{ecfg.workers} workers" if ecfg.workers else "workers: automatic"
        console.print(
            f"[bold]densecnn {task}[/] {run.model_label} on Ray ({ray_run.address}, {workers}): "
            f"{_describe_inputs(run)} → {run.run_dir}"
        )
        if run.resuming:
            console.print(f"Resuming {run.run_dir}: {run.skipped} inputs already done, skipped.")
        progress = RichProgress(console, task)
    assert run.run_dir is not None
    try:
        with sigterm_as_interrupt(), _output_errors(run.run_dir):
            ray_run.execute(progress)
    except BaseException:
        run.release()
        raise
    run.finish()
    return _report(run, task=task, quiet=quiet)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe_inputs(run: PredictionRun) -> str:
    if run.live:
        return f"{plural(len(run.src.inputs), 'live stream')}, {run.mode} mode"
    n_videos = sum(1 for i in run.src.inputs if i.kind == "video")
    n_images = len(run.src.inputs) - n_videos
    parts = [plural(n_images, "image")] if n_images or not n_videos else []
    parts += [plural(n_videos, "video")] if n_videos else []
    frames = run.src.estimated_frames()
    limit = run.lcfg.max_frames
    if limit and limit < frames:
        return f"{', '.join(parts)} (first {plural(limit, 'frame')} of ~{frames}: --max-frames)"
    return f"{', '.join(parts)} (~{plural(frames, 'frame')})" if n_videos else ", ".join(parts)


def drain(predictions: Iterator[Any]) -> None:
    """Consume a prediction stream to its end. Ctrl-C between two predictions is handed to the
    stream, which then finishes its outputs as for a Ctrl-C inside it."""
    try:
        for _ in predictions:
            pass
    except KeyboardInterrupt:
        if getattr(predictions, "gi_frame", None) is None:
            raise
        with contextlib.suppress(StopIteration):
            predictions.throw(KeyboardInterrupt)  # type: ignore[attr-defined]


def _display_ok(lcfg: LiveConfig, quiet: bool) -> bool:
    """Whether ``--show`` gets a window: a headless machine gets one notice (or, with
    ``--require-display``, a usage error) and the run goes on without."""
    if not lcfg.show:
        return False
    from densecnn.sinks.display import display_problem

    problem = display_problem()
    if problem is None:
        return True
    if lcfg.require_display:
        raise UsageError(
            f"--show: {problem}.", hint="Run where a display is available, or drop --require-display."
        )
    err_console.print(
        f"[yellow]--show:[/] {problem}; going on without a window (outputs are written as usual)."
    )
    return False


_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES})


@contextlib.contextmanager
def _output_errors(run_dir: Path) -> Iterator[None]:
    """A failed write of an output (disk full, read-only, I/O error) ends the run as
    ``OutputWriteError`` (exit 4): one line, no traceback; files written before it are complete."""
    from densecnn.errors import OutputWriteError

    try:
        yield
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputWriteError(
            f"Cannot write outputs in {run_dir}{where}: {exc.strerror or exc}. The run stopped; "
            "every file written before is complete."
        ) from exc


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run the way Ctrl-C does: outputs finalized, summary printed, exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def configure_logging(verbose: bool) -> None:
    """INFO logs with ``--verbose``; otherwise warnings only, and Ultralytics' chatter silenced."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    logging.getLogger().setLevel(level)  # also when an earlier call configured logging
    if not verbose:
        logging.getLogger("ultralytics").setLevel(logging.ERROR)
    from densecnn.redact import RedactingFilter

    for handler in logging.getLogger().handlers:  # no URL password in any log line
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def _sizes(sizes: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{h}x{w}" for h, w in sizes)
