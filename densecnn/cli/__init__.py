"""The ``densecnn`` command. Subcommands live in their own modules; heavy imports stay inside them."""

from __future__ import annotations


def main() -> None:
    from densecnn.cli.app import run

    run()
