import typer

app = typer.Typer(help="Manage the weight cache.")


@app.command("list")
def list_() -> None:
    """List weight files."""
