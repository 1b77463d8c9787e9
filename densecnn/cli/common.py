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

# soft_wrap: long paths and URLs in messages stay on one line, copyable, when output is piped
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


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
