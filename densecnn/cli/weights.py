"""``densecnn weights``: list, pull, verify and locate the weight files of registered models; convert
an Ultralytics ``.pt`` (a pickle) into a ``.safetensors`` checkpoint once."""

from __future__ import annotations

import json as _json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from densecnn.cli import options
from densecnn.cli.common import App, err_console, user_errors
from densecnn.cli.models import Col, print_table
from densecnn.errors import UsageError
from densecnn.zoo import MODELS, ModelSpec, WeightsFile
from densecnn.zoo.store import WeightStore

app = App(
    help="Manage the weight cache: list, pull, verify and locate weight files.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

Names = Annotated[
    list[str] | None,
    typer.Argument(help="Model names (see `densecnn models`).", metavar="NAME", show_default=False),
]


def _weights_of(spec: ModelSpec) -> WeightsFile:
    if spec.weights is None:
        raise UsageError(f"Model {spec.name!r} has no downloadable weight file.")
    return spec.weights


def _named(names: list[str]) -> list[ModelSpec]:
    """Resolve every name first, so a typo fails (exit 2) before anything is downloaded."""
    specs: list[ModelSpec] = []
    for name in names:
        spec = MODELS.get(name)
        if spec not in specs:
            specs.append(spec)
    return specs


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


@app.command("list")
def list_(
    json: options.Json = False,
    verbose: options.Verbose = False,
) -> None:
    """List the weight file of every registered model, and whether it is cached."""
    with user_errors(verbose=verbose):
        store = WeightStore()
        rows = [(name, spec.weights) for name, spec in MODELS.items() if spec.weights is not None]
        if json:
            records = [
                {
                    "model": name,
                    "file": w.file_name,
                    "url": w.url,
                    "sha256": w.sha256,
                    "size": w.size,
                    "license": w.license,
                    "pickled": w.pickled,
                    "cached": store.is_cached(w),
                    "path": str(store.path(w).absolute()),
                }
                for name, w in rows
            ]
            typer.echo(_json.dumps(records, indent=2))
            return
        cols = [
            Col("model"),
            Col("file", 1),
            Col("size", 3, "right"),
            Col("licence", 4, wrap=True),
            Col("cached", 2),
        ]
        table_rows = [
            [
                f"[bold]{name}[/]",
                escape(w.file_name),
                _human(w.size),
                escape(w.license or "?"),
                "[green]yes[/]" if store.is_cached(w) else "[dim]no[/]",
            ]
            for name, w in rows
        ]
        print_table(
            title=f"Weight files (cache: {escape(str(store.root.absolute()))})", cols=cols, rows=table_rows
        )


@app.command("pull")
def pull(
    names: Names = None,
    all_: options.All = False,
    verbose: options.Verbose = False,
) -> None:
    """Download weight files into the cache (checksum-verified); print where each one is."""
    with user_errors(verbose=verbose):
        if not names and not all_:
            raise UsageError("Name at least one model to pull, or pass --all.", hint="See `densecnn models`.")
        specs = _named(names or [])
        if all_:
            specs += [spec for _, spec in MODELS.items() if spec.weights is not None and spec not in specs]
        weights = [(spec, _weights_of(spec)) for spec in specs]
    store = WeightStore()
    failed: list[int] = []
    for spec, w in weights:
        try:
            with user_errors(verbose=verbose):
                path = store.fetch(w, model=spec.name, verify=True)
        except typer.Exit as exc:  # already reported by user_errors; go on with the others
            failed.append(exc.exit_code)
            continue
        typer.echo(f"{spec.name}: {path.absolute()}")
    if failed:
        raise typer.Exit(failed[0])


@app.command("verify")
def verify(names: Names = None, verbose: options.Verbose = False) -> None:
    """Digest-check cached weight files (all cached ones when no model is named).

    Exits 1 if a file does not match its registered sha256, or a named model's file is missing.
    """
    with user_errors(verbose=verbose):
        store = WeightStore()
        explicit = bool(names)
        if explicit:
            specs = [(spec, _weights_of(spec)) for spec in _named(names or [])]
        else:
            specs = [
                (spec, spec.weights)
                for _, spec in MODELS.items()
                if spec.weights is not None and store.is_cached(spec.weights)
            ]
        if not specs:
            err_console.print(f"No cached weight files in {store.root.absolute()}.", highlight=False)
            return
        results = [(spec, w, store.verify(w)) for spec, w in specs]
        styles = {"ok": "[green]ok[/]", "missing": "[yellow]missing[/]", "mismatch": "[bold red]mismatch[/]"}
        cols = [Col("model"), Col("file", 2), Col("status"), Col("sha256", 3), Col("path", 4, wrap=True)]
        table_rows = [
            [
                f"[bold]{spec.name}[/]",
                escape(w.file_name),
                styles[r.status],
                r.digest[:16] if r.digest else "-",
                escape(str(r.path.absolute())),
            ]
            for spec, w, r in results
        ]
        print_table(
            title=f"Weight files (cache: {escape(str(store.root.absolute()))})", cols=cols, rows=table_rows
        )
        bad = [(spec, w, r) for spec, w, r in results if r.status == "mismatch"]
        missing = [spec.name for spec, _, r in results if r.status == "missing"] if explicit else []
        for line in _mismatch_advice(bad):
            err_console.print(line, markup=False, highlight=False)
        if missing:
            err_console.print(
                f"Not cached: {', '.join(missing)}. Run `densecnn weights pull {' '.join(missing)}`.",
                markup=False,
                highlight=False,
            )
        if bad or missing:
            raise typer.Exit(1)


def _mismatch_advice(bad: list[tuple[ModelSpec, WeightsFile, Any]]) -> list[str]:
    """What fixes each mismatched file: embedded files ship in the checkout (git restores them;
    `weights pull` never downloads them), downloaded ones are deleted and pulled again."""
    lines = []
    embedded = [(spec, r) for spec, w, r in bad if w.embedded]
    downloaded = [(spec, r) for spec, w, r in bad if not w.embedded]
    if embedded:
        lines.append(
            f"Digest mismatch (embedded): {', '.join(s.name for s, _ in embedded)}. These ship in the "
            "densecnn checkout and are never downloaded: restore them with `git checkout -- "
            f"{' '.join('weights/' + r.path.name for _, r in embedded)}` in the checkout (or rebuild "
            "them with `make models` and register the new digests)."
        )
    if downloaded:
        lines.append(
            f"Digest mismatch: {', '.join(s.name for s, _ in downloaded)}. Delete "
            f"{' '.join(str(r.path.absolute()) for _, r in downloaded)} and run "
            f"`densecnn weights pull {' '.join(s.name for s, _ in downloaded)}`."
        )
    return lines


@app.command("path")
def path(
    name: Annotated[str, typer.Argument(help="Model name.", metavar="NAME", show_default=False)],
    verbose: options.Verbose = False,
) -> None:
    """Print the absolute path of a model's weight file; exit 1 if it is not cached yet."""
    with user_errors(verbose=verbose):
        spec = MODELS.get(name)
        w = _weights_of(spec)
        store = WeightStore()
        typer.echo(str(store.path(w).absolute()))
        if not store.is_cached(w):
            err_console.print(
                f"Not cached yet: run `densecnn weights pull {spec.name}`.", markup=False, highlight=False
            )
            raise typer.Exit(1)


@app.command("convert")
def convert(
    file: Annotated[
        Path, typer.Argument(help="An Ultralytics .pt file.", metavar="FILE.pt", show_default=False)
    ],
    output: options.ConvertOutput = None,
    trust_weights: options.TrustWeights = False,
    verbose: options.Verbose = False,
) -> None:
    """Write an Ultralytics .pt as a densecnn .safetensors checkpoint (tensors + model yaml, no pickle):
    it predicts as the .pt does and loads without running code, so --trust-weights is needed once
    (if at all), for the conversion."""
    from densecnn.cli.run import configure_logging

    configure_logging(verbose)
    with user_errors(verbose=verbose):
        if not file.is_file():
            raise UsageError(f"{file}: no such file.")
        target = output if output is not None else file.with_suffix(".safetensors")
        from densecnn.tasks.detect.yolo_state import convert_ultralytics

        meta = convert_ultralytics(file, target, trust=trust_weights)
        typer.echo(f"{file} → {target} ({meta.task}, {meta.arch}, {meta.num_classes} classes)")
