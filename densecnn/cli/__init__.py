"""The ``densecnn`` command. Subcommands live in their own modules; heavy imports stay inside them."""

from __future__ import annotations

import os


def main() -> None:
    # PyTorch's OpenMP threads spin while they wait by default; next to the pipeline's reader and
    # writer threads, or on a CPU other jobs keep busy, that stalls inference and training 3-5x on a
    # 2-core machine (coco128, yolov8n-seg: 163 s -> 35 s). OpenMP reads this when torch loads, so
    # it is set before any import of torch; an OMP_WAIT_POLICY the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from densecnn.cli.app import run

    run()
