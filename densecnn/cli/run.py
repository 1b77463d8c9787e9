"""What every prediction command shares once its model is chosen: open the source, build the
predictor, make the run folder and sinks, run the pipeline with a progress bar, write summary.json,
print the summary table and turn the outcome into an exit code.

Commands (``detect``, ``classify``...) supply only what differs: how to build the predictor, which
sinks to write, and how the summary table names the counted classes. Torch and the sources are
imported inside :func:`run_prediction`, so importing this module stays cheap (``--help``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densecnn.cli.common import console, err_console
from densecnn.errors import UsageError

if TYPE_CHECKING:
    from densecnn.config import LiveConfig, OutputConfig, PredictConfig
    from densecnn.pipeline import RunSummary
    from densecnn.sinks.base import Sink
    from densecnn.sinks.display import DisplaySink
    from densecnn.sources.base import InputRef
    from densecnn.tasks.base import Predictor
    from densecnn.zoo.specs import ModelSpec

EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 130

BuildPredictor = Callable[[], "tuple[Predictor, ModelSpec]"]
MakeSinks = Callable[[Path, "Predictor"], "list[Sink]"]


def run_prediction(
    *,
    task: str,
    source: str,
    pcfg: PredictConfig,
    ocfg: OutputConfig,
    quiet: bool,
    build: BuildPredictor,
    make_sinks: MakeSinks,
    counts_label: str,
    lcfg: LiveConfig | None = None,
    record: dict[str, Any] | None = None,
    draw: Callable[[Any, Any], Any] | None = None,
    is_done: Callable[[Path, InputRef], bool] | None = None,
) -> int:
    """Run ``task`` over ``source`` and report; returns the exit code (0, 1 or 130).

    ``build()`` returns the predictor and its model spec; ``make_sinks(run_dir, predictor)`` the
    outputs. ``record`` adds fields to summary.json; ``draw(image, result)`` replaces the default
    drawing; ``is_done(run_dir, input)`` says which inputs an earlier run already finished (they are
    skipped and counted as ``skipped_done`` in summary.json). ``lcfg`` sets the stream mode, run limits,
    reconnects and ``--show``. The source is opened before the model is built, so a missing source
    fails fast; the run folder is made only once both are ready.
    """
    from densecnn.config import LiveConfig
    from densecnn.device import describe
    from densecnn.fsutil import atomic_write_json, claim_run_dir, ensure_writable_dir
    from densecnn.pipeline import run
    from densecnn.redact import redact_obj
    from densecnn.sources import open_source
    from densecnn.sources.stream import is_live, open_live

    lcfg = lcfg or LiveConfig()
    ensure_writable_dir(ocfg.project)
    live = is_live(source)
    if live and is_done is not None:
        raise UsageError("--resume continues file runs; a live source has nothing to resume.")
    show = _display_ok(lcfg, quiet)
    src: Any = (
        open_live(source, lcfg)
        if live
        else open_source(
            source, vid_stride=pcfg.vid_stride, exclude=[ocfg.project], on_corrupt=ocfg.on_corrupt
        )
    )
    mode = lcfg.mode_for(live)
    predictor, spec = build()
    run_dir = claim_run_dir(ocfg.project, ocfg.name, exist_ok=ocfg.exist_ok)
    skipped = 0
    if is_done is not None:
        todo = [ref for ref in src.inputs if not is_done(run_dir, ref)]
        skipped, src.inputs = len(src.inputs) - len(todo), todo
    sinks = make_sinks(run_dir, predictor)
    resumed = None
    if is_done is not None:  # the earlier run's finished inputs count in this summary too
        from densecnn.resume import ResumedPart

        resumed = ResumedPart.read(run_dir / "predictions.jsonl", inputs=skipped)
    stop = threading.Event()
    display = _add_display(sinks, stop) if show else None
    if live:  # pay lazy initialisation before the streams open, not on their first frames
        _warm_up(predictor)
    n_videos = sum(1 for i in src.inputs if i.kind == "video")
    total = src.estimated_frames()
    backbone = getattr(predictor, "backbone", None)
    model_label = f"{spec.name} ({backbone} backbone)" if backbone else spec.name
    progress = None
    if not quiet:
        from densecnn.cli.report import RichProgress

        if pcfg.half and predictor.device.type != "cuda":
            console.print("[yellow]--half is ignored on CPU (fp16 runs only on CUDA).[/]")
        what = (
            f"{len(src.inputs)} live stream(s), {mode} mode"
            if live
            else f"{len(src.inputs) - n_videos} images, {n_videos} videos (~{total} frames)"
        )
        console.print(
            f"[bold]densecnn {task}[/] {model_label} on {describe(predictor.device)}: {what} → {run_dir}"
        )
        if is_done is not None:
            console.print(f"Resuming {run_dir}: {skipped} inputs already done, skipped.")
        progress = RichProgress(console, task)
    extra = {"draw": draw} if draw is not None else {}
    with sigterm_as_interrupt(), _output_errors(run_dir):
        summary = run(
            events=src.events(stop),
            predictor=predictor,
            sinks=sinks,
            errors_path=run_dir / "errors.jsonl",
            batch=pcfg.batch,
            on_error=ocfg.on_error,
            progress=progress,
            total_frames=total,
            stop=stop,
            stream_mode=mode,
            max_frames=lcfg.max_frames,
            duration=lcfg.duration,
            ui=display.pump if display is not None else None,
            **extra,
        )
    _add_live_counts(summary, src if live else None, display)
    if live:
        _report_silent_streams(summary, src, run_dir / "errors.jsonl")
    if resumed is not None:
        resumed.add_to(summary)
    weights = pcfg.weights or (spec.weights.file_name if spec.weights else None)
    atomic_write_json(
        run_dir / "summary.json",
        redact_obj(
            {
                "command": task,
                "source": source,
                "model": spec.name,
                "backbone": backbone,
                "weights": str(weights) if weights else None,
                "device": str(predictor.device),
                **(record or {}),
                **({"skipped_done": skipped} if is_done is not None else {}),
                "classes": predictor.names,
                **summary.to_dict(),
                "display": {"requested": lcfg.show, "shown_frames": display.shown if display else 0},
            }
        ),  # no URL password in any file
    )
    if quiet:
        console.print(str(run_dir))
    else:
        from densecnn.cli.report import summary_table

        console.print(summary_table(summary, run_dir=run_dir, title="Summary", counts_label=counts_label))
    if summary.interrupted:
        err_console.print("[yellow]Interrupted.[/] Outputs written so far are complete and kept.")
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary.errors else 0


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


def _add_display(sinks: list[Sink], stop: threading.Event) -> DisplaySink:
    from densecnn.sinks.display import DisplaySink

    display = DisplaySink(on_quit=stop.set)  # q / Esc ends the run like --max-frames: cleanly
    sinks.append(display)
    return display


def _warm_up(predictor: Predictor) -> None:
    import numpy as np

    from densecnn.results import Frame

    predictor.warmup(Frame(np.full((480, 640, 3), 114, np.uint8), source="warmup", path="warmup"))


def _report_silent_streams(summary: RunSummary, src: Any, errors_path: Path) -> None:
    """A live stream that delivered no frame and has no error yet (the run ended while it was still
    connecting) becomes a failed input in errors.jsonl and the summary (exit 1)."""
    import json

    from densecnn.redact import redact_obj

    reported = {str(e.get("source")) for e in summary.errors}
    for spec, opened in src.silent():
        if spec.name in reported:
            continue
        if not opened:  # its InputStart never reached the pipeline: count the input here
            summary.inputs += 1
        record = redact_obj(
            {
                "source": spec.name,
                "path": spec.name,
                "error": f"no frame from {spec.shown} before the run ended (still connecting?)",
            }
        )
        summary.errors.append(record)
        summary.inputs_failed += 1
        with errors_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def _add_live_counts(summary: RunSummary, src: Any, display: DisplaySink | None) -> None:
    """Reconnects and capture-side drops of live sources; a quit from the window."""
    if src is not None:
        summary.reconnects += src.reconnects
        summary.dropped += src.dropped
    if display is not None and display.quit and summary.stopped_by is None:
        summary.stopped_by = "user"


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
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not verbose:
        logging.getLogger("ultralytics").setLevel(logging.ERROR)
    from densecnn.redact import RedactingFilter

    for handler in logging.getLogger().handlers:  # no URL password in any log line
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
