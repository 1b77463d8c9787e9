"""What every command shares: the Typer app class, consoles, and turning DenseCNNError into a message
and an exit code."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

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


class _FlagsTakeNoValue:
    """Typer's rich help prints a flag's type (``--half <bool>``) as if the flag took a value: an
    empty metavar leaves that column blank for every flag, ``--help`` and ``--version`` included."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsTakeNoValue, TyperCommand):
    pass


class Group(_FlagsTakeNoValue, TyperGroup):
    pass


class App(typer.Typer):
    """``typer.Typer`` for every densecnn (sub-)app: its groups and commands show flags as flags."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
