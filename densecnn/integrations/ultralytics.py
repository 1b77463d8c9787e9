"""The one door to Ultralytics: it is imported here, offline, with auto-install and telemetry off.

Every densecnn module that needs Ultralytics goes through :func:`import_ultralytics`; nothing else
imports ``ultralytics`` directly.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType


def import_ultralytics() -> ModuleType:
    """Import ``ultralytics`` with its network features switched off.

    ``YOLO_OFFLINE`` makes its online check false (no downloads, no events), ``YOLO_AUTOINSTALL=false``
    stops it pip-installing anything, ``ULTRALYTICS_SAFE_LOAD`` makes checkpoint loading
    ``weights_only`` against its allow-list of model classes. These are read at import time.

    Importing ultralytics sets ``OMP_NUM_THREADS=1`` when it is unset (for its training); that is
    undone here, so the thread plan (``densecnn.pipeline.plan_threads``) still tells a user's setting
    from none.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    user_threads = os.environ.get("OMP_NUM_THREADS")
    import ultralytics

    if user_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    return ultralytics


TRUST_ENV = "DENSECNN_TRUST_WEIGHTS"
"""Set to 1 to give the consent of ``--trust-weights`` in scripts."""


def weights_trusted(flag: bool) -> bool:
    """The user's consent to a full unpickle: ``--trust-weights`` or ``DENSECNN_TRUST_WEIGHTS=1``."""
    return flag or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def needs_full_unpickling(exc: BaseException) -> bool:
    """Whether Ultralytics' restricted load failed because the file names globals outside its
    allow-list (as opposed to a damaged file)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError | ModuleNotFoundError):
        return True
    text = str(exc)
    return "outside the supported" in text or "blocked during restricted" in text


def unsafe_globals(path: Path) -> list[str]:
    """The globals (``module.Name``) ``path`` would import that no restricted load allows: what
    unpickling it in full would run. Read from the pickle without executing it; empty if unknown."""
    import torch

    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        return []
    allowed = set()
    for entry in torch.serialization.get_safe_globals():
        if isinstance(entry, tuple):
            allowed.add(entry[1])
        else:
            allowed.add(f"{getattr(entry, '__module__', '')}.{getattr(entry, '__qualname__', '')}")
    return [name for name in needed if name not in allowed]


def untrusted_error(path: Path) -> Exception:
    """The refusal (exit 3) for a file that loads only by running the code it carries."""
    from densecnn.errors import UntrustedWeightsError

    names = unsafe_globals(path)
    shown = f" ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""
    return UntrustedWeightsError(
        f"{path} can only be loaded by a full unpickle, which runs code stored in the file: it names "
        f"Python objects outside Ultralytics' allow-list of model classes{shown}. Not loaded.",
        hint=f"If you trust where the file comes from, pass --trust-weights (or set {TRUST_ENV}=1), or "
        f"convert it once with `densecnn weights convert {path} --trust-weights` and use the "
        ".safetensors file it writes, which loads without unpickling.",
    )


@contextlib.contextmanager
def restricted_unpickling() -> Iterator[None]:
    """Ultralytics' ``weights_only`` allow-list load, whatever the environment said when Ultralytics
    was first imported (a program may import it before densecnn). On a torch without restricted
    loading (before 2.6) Ultralytics would fall back to a full unpickle: refused instead."""
    import_ultralytics()
    from ultralytics.nn import tasks

    if not tasks._SafeLoad.SUPPORTED:
        from densecnn.errors import UntrustedWeightsError

        raise UntrustedWeightsError(
            "This torch cannot load Ultralytics checkpoints without running their code (torch < 2.6).",
            hint=f"Upgrade torch, or pass --trust-weights / {TRUST_ENV}=1 for files you trust.",
        )
    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = True
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous


@contextlib.contextmanager
def full_unpickling() -> Iterator[None]:
    """Allow a full (code-running) unpickle: only for a checkpoint the user named with ``--weights``
    and allowed with ``--trust-weights`` (see :func:`weights_trusted`)."""
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

    Its Ray Tune callback (registered whenever ray is installed, as with ``densecnn[ray]``) asks Ray
    for a trial id after every epoch, and Ray warns that no Tune trial exists: that warning is hidden.
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
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`get_trial_id` is meant", category=UserWarning)
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
