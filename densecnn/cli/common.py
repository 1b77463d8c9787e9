"""What every command shares: the Typer app class, consoles, and turning DenseCNNError into a message
and an exit code."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from densecnn.errors import DenseCNNError

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
            err_console.print(traceback.format_exc(), markup=False, highlight=False)
        err_console.print(f"[bold red]Error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err_console.print(exc.hint, markup=False, highlight=False)
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
