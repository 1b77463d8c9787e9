"""``densecnn doctor``: what this machine offers densecnn (see ``densecnn.doctor``)."""

from __future__ import annotations

import json as _json

import typer
from rich.markup import escape

from densecnn.cli import options as opt
from densecnn.cli.models import Col, print_table

_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "missing": "[red]missing[/]"}


def doctor(json: opt.Json = False) -> None:
    """Check this machine for densecnn: Python, torch, CUDA and fp16, threads, libraries, video codecs,
    display, inference backends, network mode and the weight cache; a verdict and a fix per item.

    Exit code 0 when nothing is missing (warnings allowed), 1 otherwise. --json is for bug reports.
    """
    from densecnn.doctor import run_checks

    checks = run_checks()
    if json:
        typer.echo(_json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        rows = [[c.item, _STYLE[c.status], escape(c.detail), escape(c.fix)] for c in checks]
        cols = [Col("item"), Col("status"), Col("found", 1, wrap=True), Col("fix", 2, wrap=True)]
        print_table(title="densecnn doctor", cols=cols, rows=rows)
    raise typer.Exit(1 if any(c.status == "missing" for c in checks) else 0)
