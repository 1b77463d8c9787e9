"""Running ``densecnn`` from the tests: in this process (the default: no 4-6 s of torch and
Ultralytics imports per run) or as a real ``python -m densecnn`` subprocess.

Both return a :class:`subprocess.CompletedProcess` with ``returncode``, ``stdout`` and ``stderr``.
An in-process run sees what a fresh process would: the environment overrides (set, then restored),
the working directory, ``OMP_WAIT_POLICY`` as :func:`densecnn.cli.main` sets it, console width and
colour worked out again from that environment, logging as unconfigured, Python's default warning
filters with warnings written to stderr, and an unhandled exception as a traceback on stderr with
exit code 1. The process-wide state a run may change (signal handlers, logging, torch's
deterministic flags, thread count and RNGs) is put back afterwards.

What an in-process run cannot show: output written by C libraries straight to file descriptors 1
and 2 (libjpeg, FFmpeg), real signals, the exit of the real entry point, crashes that take the
process down, and anything read once at import time (``YOLO_CONFIG_DIR``, a ``sitecustomize``
on ``PYTHONPATH``). Tests that need those use :func:`run_process`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

PROG_NAME = "python -m densecnn"


def cli_env(weights_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The overrides every test run gets: offline, an empty weight cache, 120 columns."""
    return {
        "DENSECNN_WEIGHTS_DIR": str(weights_dir),
        "DENSECNN_OFFLINE": "1",
        "COLUMNS": "120",
        **(env or {}),
    }


def run_process(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float | None = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m densecnn ARGS`` in a real child process (``env`` over this process's)."""
    return subprocess.run(
        [sys.executable, "-m", "densecnn", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class _Timeout(BaseException):
    """Raised in the main thread by SIGALRM when an in-process run passes its ``timeout``
    (a BaseException, so that no ``except Exception`` of the code under test swallows it)."""


def run_in_process(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str | None],
    timeout: float | None = 600,
    threads: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``densecnn ARGS`` through the Typer app in this process, as a fresh process would run it,
    with ``env`` over this process's environment (a ``None`` value unsets that variable).

    ``threads`` sets torch's intra-op threads for the run (what ``OMP_NUM_THREADS`` does for a
    child process, which this process read long ago). A run past ``timeout`` seconds is interrupted
    and :class:`subprocess.TimeoutExpired` raised, as :func:`subprocess.run` would.
    """
    from typer.main import get_command
    from typer.testing import CliRunner

    from densecnn.cli.app import app

    overrides = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), **env}
    before_out, before_err = sys.stdout, sys.stderr
    old_cwd = os.getcwd()
    command = get_command(app)
    with (
        _process_state_kept(threads),
        CliRunner().isolation(env=overrides) as (out_bytes, err_bytes, _),
    ):
        os.chdir(cwd)
        try:
            with (
                _consoles_as_in_a_new_process(),
                _logging_as_in_a_new_process((before_out, sys.stdout), (before_err, sys.stderr)),
                _warnings_as_in_a_new_process(),
                _alarm(timeout),
            ):
                code = _main(command, list(args))
        except _Timeout:
            raise subprocess.TimeoutExpired([PROG_NAME, *args], timeout or 0) from None
        finally:
            os.chdir(old_cwd)
            sys.stdout.flush()
            sys.stderr.flush()
        stdout = out_bytes.getvalue().decode("utf-8", "replace")
        stderr = err_bytes.getvalue().decode("utf-8", "replace")
    return subprocess.CompletedProcess([PROG_NAME, *args], code, stdout, stderr)


def _main(command: Any, args: list[str]) -> int:
    """Click's standalone main, its exit turned into a return code the way Python's would be."""
    try:
        command.main(args=args, prog_name=PROG_NAME)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except Exception:
        sys.stderr.write(traceback.format_exc())
        return 1
    return 0


@contextlib.contextmanager
def _alarm(timeout: float | None) -> Iterator[None]:
    if not timeout or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _process_state_kept(threads: int | None) -> Iterator[None]:
    """Signal handlers, the RNGs, torch's global switches and thread count, as they were (torch is
    not imported for this: a run that first imports it leaves it with its defaults)."""
    import numpy as np

    if threads is not None:
        import torch
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    rng = (random.getstate(), np.random.get_state())
    torch = sys.modules.get("torch")
    before = _torch_state(torch) if torch is not None else None
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch = sys.modules.get("torch")
        if torch is not None:
            _set_torch_state(torch, before)


def _torch_state(torch: Any) -> tuple[Any, ...]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.get_num_threads(),
        torch.get_rng_state(),
    )


def _set_torch_state(torch: Any, state: tuple[Any, ...] | None) -> None:
    """``state`` from :func:`_torch_state`, or torch's defaults (None: imported during the run).
    ``use_deterministic_algorithms`` is called only for a change: it imports torch._dynamo (~5 s)."""
    if state is None:
        if torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = torch.backends.cudnn.deterministic = False
        return
    deterministic, warn_only, benchmark, cudnn_deterministic, n_threads, rng = state
    now = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if now != (deterministic, warn_only):
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_deterministic
    if torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)
    torch.set_rng_state(rng)


@contextlib.contextmanager
def _consoles_as_in_a_new_process() -> Iterator[None]:
    """densecnn's module-level rich consoles write to whatever ``sys.stdout``/``sys.stderr`` is at
    print time, but took their width, colour system and interactivity from the environment and the
    stream of the day they were made (under pytest ``-s`` on a terminal: colour). Work those out
    again, as a child process writing into a pipe would, and put them back afterwards."""
    from rich.console import Console

    fields = ("_width", "_height", "_color_system", "is_interactive", "no_color")
    seen: dict[int, tuple[Console, tuple[Any, ...]]] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("densecnn") or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Console) and value._file is None and id(value) not in seen:
                seen[id(value)] = (value, tuple(getattr(value, f) for f in fields))
    for console, _ in seen.values():
        fresh = Console(file=io.StringIO(), stderr=console.stderr)
        for field in fields:
            setattr(console, field, getattr(fresh, field))
    try:
        yield
    finally:
        for console, saved in seen.values():
            for field, value in zip(fields, saved, strict=True):
                setattr(console, field, value)


@contextlib.contextmanager
def _logging_as_in_a_new_process(*streams: tuple[Any, Any]) -> Iterator[None]:
    """Root without handlers (so ``logging.basicConfig`` works, onto the captured stderr), logger
    levels put back afterwards, and stream handlers made earlier on the real or pytest's
    stdout/stderr (Ultralytics makes one when imported) pointed at the captured streams meanwhile;
    handlers made during the run on the captured streams are pointed back at this test's."""
    root = logging.getLogger()

    def loggers() -> list[logging.Logger]:
        found = logging.Logger.manager.loggerDict.values()
        return [root, *(lg for lg in found if isinstance(lg, logging.Logger))]

    def stream_handlers() -> Iterator[logging.StreamHandler[Any]]:
        for lg in loggers():
            for h in lg.handlers:
                if type(h) is logging.StreamHandler:
                    yield h

    real = {id(sys.__stdout__): streams[0][1], id(sys.__stderr__): streams[1][1]}
    real.update({id(before): captured for before, captured in streams})
    levels = {lg: lg.level for lg in loggers()}
    root_handlers = root.handlers[:]
    root.handlers = []
    root.setLevel(logging.WARNING)
    moved = [(h, h.stream) for h in stream_handlers() if id(h.stream) in real]
    for h, stream in moved:
        h.stream = real[id(stream)]
    try:
        yield
    finally:
        root.handlers = root_handlers
        for lg, level in levels.items():
            lg.setLevel(level)
        for h, stream in moved:
            h.stream = stream
        back = {id(captured): before for before, captured in streams}
        for h in stream_handlers():
            if id(h.stream) in back:
                h.stream = back[id(h.stream)]


@contextlib.contextmanager
def _warnings_as_in_a_new_process() -> Iterator[None]:
    """Python's default warning filters (not pytest's), each warning printed to stderr once."""

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None):
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category, append=True)
        warnings.showwarning = show
        yield
