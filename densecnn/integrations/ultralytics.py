"""The one door to Ultralytics: it is imported here, offline, with auto-install and telemetry off.

Every densecnn module that needs Ultralytics goes through :func:`import_ultralytics`; nothing else
imports ``ultralytics`` directly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
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


@contextlib.contextmanager
def offline_training() -> Iterator[None]:
    """Ultralytics' trainer with the network calls it makes even when offline replaced.

    - ``check_font`` HEAD-requests Arial.ttf from GitHub whenever the font is not cached (every
      ``check_det_dataset`` call, and label drawing): matplotlib's bundled DejaVu Sans serves instead.
    - ``check_amp`` downloads yolo26n.pt to compare fp32 and AMP outputs on CUDA: skipped, AMP stays
      as asked (``--amp``/``--no-amp``; it is never used on CPU).
    """
    import_ultralytics()
    from ultralytics.data import utils as data_utils
    from ultralytics.engine import trainer
    from ultralytics.utils import checks, plotting

    saved = [
        (data_utils, "check_font", data_utils.check_font),
        (plotting, "check_font", plotting.check_font),
        (checks, "check_font", checks.check_font),
        (trainer, "check_amp", trainer.check_amp),
    ]
    for module, name, _ in saved:
        setattr(module, name, _local_font if name == "check_font" else _amp_as_asked)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _local_font(font: str = "Arial.ttf") -> str:
    from matplotlib import font_manager

    return str(font_manager.findfont("DejaVu Sans"))


def _amp_as_asked(model: object) -> bool:
    return True


def is_ultralytics_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a pickle that names Ultralytics classes (an Ultralytics ``.pt``).

    Read as bytes, never unpickled: a ``torch.save`` zip's ``data.pkl`` (or a legacy pickle's first
    MiB) holds the module paths of the pickled classes as plain text.
    """
    import zipfile

    if not path.is_file():
        return False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return any(b"ultralytics." in archive.read(n) for n in pickles)
    with path.open("rb") as fh:
        return b"ultralytics." in fh.read(1 << 20)


_TASK_CLASSES = (
    (b"SegmentationModel", "segment"),
    (b"ClassificationModel", "classify"),
    (b"DetectionModel", "detect"),
)


def ultralytics_task(path: Path) -> str:
    """The task of an Ultralytics ``.pt`` (detect, segment or classify), read from the class names in
    its pickle as bytes, never unpickled; detect when none is found."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    else:
        with path.open("rb") as fh:
            data = fh.read(1 << 20)
    return next((task for name, task in _TASK_CLASSES if name in data), "detect")
