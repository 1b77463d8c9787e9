def models() -> None:
    """List registered models."""
