"""The one door to Ultralytics: it is imported here, offline, with auto-install and telemetry off."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType


def import_ultralytics() -> ModuleType:
    """Import ``ultralytics`` with its network features switched off.

    ``YOLO_OFFLINE`` makes its online check false (no downloads, no events), ``YOLO_AUTOINSTALL=false``
    stops it pip-installing anything, ``ULTRALYTICS_SAFE_LOAD`` makes checkpoint loading
    ``weights_only`` against its allow-list of model classes. These are read at import time.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    import ultralytics

    return ultralytics


@contextlib.contextmanager
def full_unpickling() -> Iterator[None]:
    """Allow a full (code-running) unpickle: only for a checkpoint the user named with ``--weights``."""
    import_ultralytics()
    from ultralytics.nn import tasks

    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = False
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous
