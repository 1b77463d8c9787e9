"""What every command shares: consoles, and turning DenseCNNError into a message and an exit code."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from densecnn.errors import DenseCNNError
from densecnn.redact import redact_text


def make_console(*, stderr: bool = False) -> Console:
    """A console whose messages are never wrapped when it is not a terminal (piped, logged, captured
    by a test): what machines and logs read must not depend on the terminal width (or on
    ``COLUMNS``). On a terminal, rich wraps at its width as usual; stderr messages never wrap, so
    long paths and URLs stay on one line, copyable."""
    out = Console(stderr=stderr)
    if stderr or not out.is_terminal:
        out.soft_wrap = True
    return out


console = make_console()
err_console = make_console(stderr=True)


@contextlib.contextmanager
def user_errors(*, verbose: bool = False) -> Iterator[None]:
    """Print a DenseCNNError as ``Error: ...`` (traceback only with ``--verbose``) and exit with its code."""
    try:
        yield
    except DenseCNNError as exc:
        if verbose:
            err_console.print(redact_text(traceback.format_exc()), markup=False, highlight=False)
        err_console.print(f"[bold red]Error:[/] {escape(redact_text(exc.message))}", highlight=False)
        if exc.hint:
            err_console.print(redact_text(exc.hint), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
