"""The weight store: a cache folder of verified weight files, filled from the official URL or a mirror.

Downloads go to ``<cache>/<file_name>.part`` and are renamed into place only after the transfer is
complete and the sha256 matches, so a broken or tampered download never leaves a file in the cache.

Environment (read when a :class:`WeightStore` is created):

- ``DENSECNN_WEIGHTS_DIR``: the cache folder (default: :func:`default_weights_dir`).
- ``DENSECNN_WEIGHTS_MIRROR``: base URL (``http(s)://`` or ``file://``) serving ``<base>/<file_name>``.
- ``DENSECNN_OFFLINE``: ``1``/``true``: never touch the network.
- ``DENSECNN_DOWNLOAD_TIMEOUT``: socket timeout in seconds (default 30).

This module must stay free of torch: ``densecnn weights list`` imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import densecnn
from densecnn.errors import ChecksumError, UsageError, WeightsUnavailableError
from densecnn.zoo.specs import WeightsFile

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["VerifyResult", "WeightStore", "default_weights_dir", "embedded_weights_dir", "sha256_file"]

ENV_DIR = "DENSECNN_WEIGHTS_DIR"
ENV_MIRROR = "DENSECNN_WEIGHTS_MIRROR"
ENV_OFFLINE = "DENSECNN_OFFLINE"
ENV_TIMEOUT = "DENSECNN_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 30.0

_CHUNK = 1 << 20
_TRUE = {"1", "true", "yes", "on"}


def default_weights_dir() -> Path:
    """``$DENSECNN_WEIGHTS_DIR``, else a checkout's ``weights/``, else ``~/.cache/densecnn/weights``."""
    env = os.environ.get(ENV_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    checkout = Path(densecnn.__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "weights"
    return Path.home() / ".cache" / "densecnn" / "weights"


def embedded_weights_dir() -> Path:
    """The checkout's ``weights/`` folder, where the embedded models ship (whatever the cache is)."""
    return Path(densecnn.__file__).resolve().parents[1] / "weights"


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking one cached file: ``ok``, ``missing`` or ``mismatch`` (digest or size)."""

    status: Literal["ok", "missing", "mismatch"]
    path: Path
    digest: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Unavailable(Exception):
    """Internal: a download failed for a reason worth one line (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CacheWriteError(Exception):
    """Internal: writing into the cache folder failed (disk full, read-only, permissions)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class WeightStore:
    """A cache folder of weight files; ``fetch`` fills it from the official URL or a mirror.

    Arguments left as ``None`` come from the environment (see the module docstring).
    """

    def __init__(
        self,
        *,
        root: Path | str | None = None,
        mirror: str | None = None,
        offline: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_weights_dir()
        if mirror is None:
            mirror = os.environ.get(ENV_MIRROR, "").strip() or None
        self.mirror = mirror
        if offline is None:
            offline = os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUE
        self.offline = offline
        self.timeout = _env_timeout() if timeout is None else float(timeout)

    def __repr__(self) -> str:
        return f"WeightStore(root={str(self.root)!r}, mirror={self.mirror!r}, offline={self.offline})"

    # -- where things are -------------------------------------------------------------------------

    def path(self, weights: WeightsFile) -> Path:
        """Where ``weights`` is, or would be, in the cache."""
        name = weights.file_name
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"weight file name must be a bare file name, got {name!r}")
        return (embedded_weights_dir() if weights.embedded else self.root) / name

    def is_cached(self, weights: WeightsFile) -> bool:
        return self.path(weights).is_file()

    def url_for(self, weights: WeightsFile) -> str:
        """The URL :meth:`fetch` downloads from: ``<mirror>/<file_name>`` if a mirror is set."""
        if self.mirror:
            return f"{self.mirror.rstrip('/')}/{weights.file_name}"
        return weights.url

    # -- checking ---------------------------------------------------------------------------------

    def verify(self, weights: WeightsFile) -> VerifyResult:
        """Digest-check the cached file (and its size, when the spec knows it)."""
        path = self.path(weights)
        if not path.is_file():
            return VerifyResult("missing", path)
        digest = sha256_file(path)
        size_ok = weights.size is None or path.stat().st_size == weights.size
        status: Literal["ok", "mismatch"] = "ok" if weights.matches(digest) and size_ok else "mismatch"
        return VerifyResult(status, path, digest)

    # -- fetching ---------------------------------------------------------------------------------

    def fetch(
        self,
        weights: WeightsFile,
        *,
        model: str | None = None,
        progress: bool = True,
        verify: bool | None = None,
    ) -> Path:
        """Return the cached path of ``weights``, downloading it first if it is not cached.

        ``verify`` digest-checks a file that is already cached (default: only ``pickled`` files,
        which run code when loaded). ``model`` only improves the error hints.

        Raises:
            WeightsUnavailableError: not cached and cannot be downloaded (offline, network/HTTP
                error, timeout, interrupted transfer).
            ChecksumError: the download, or a cached file being verified, has the wrong digest.
        """
        path = self.path(weights)
        if weights.embedded:
            return self._embedded(weights)
        if path.is_file():
            if verify if verify is not None else weights.pickled:
                self._check_cached(weights, model=model)
            return path
        url = self.url_for(weights)
        if self.offline:
            raise self._unavailable(
                weights,
                url=None,
                reason=f"offline mode is on ({ENV_OFFLINE}), no download tried",
                model=model,
            )
        part = path.with_name(path.name + ".part")
        try:
            digest, size = self._download(url, part, weights, progress=progress)
            self._check_download(weights, url=url, digest=digest, size=size, model=model)
            os.replace(part, path)
        except _Unavailable as exc:
            raise self._unavailable(weights, url=url, reason=exc.reason, model=model) from None
        except _CacheWriteError as exc:
            raise WeightsUnavailableError(
                f"Cannot write {weights.file_name} into the weight cache {self.root}: {exc.error}.",
                hint=f"Free some disk space, or set {ENV_DIR} to a writable folder.",
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        return path

    def _embedded(self, weights: WeightsFile) -> Path:
        """An embedded file: never downloaded, always digest-checked (a few MB: milliseconds)."""
        path = self.path(weights)
        if not path.is_file():
            raise WeightsUnavailableError(
                f"The embedded weight file {path} is missing: it ships in a densecnn checkout.",
                hint="Restore it with `git checkout -- weights/`, or rebuild it with `make models`.",
            )
        result = self.verify(weights)
        if not result.ok:
            raise ChecksumError(
                f"The embedded weight file {path} does not match its registered digest "
                f"(sha256 {result.digest}, expected {_expected(weights)}).",
                hint="Restore it with `git checkout -- weights/`; after `make models`, register the new "
                "digest printed by it in densecnn/zoo/embedded.py.",
            )
        return path

    def _download(self, url: str, part: Path, weights: WeightsFile, *, progress: bool) -> tuple[str, int]:
        """Stream ``url`` into ``part``; return (sha256, bytes). Failures become ``_Unavailable``."""
        out = _open_part(part)
        request = urllib.request.Request(url, headers={"User-Agent": f"densecnn/{densecnn.__version__}"})
        try:
            with out, urllib.request.urlopen(request, timeout=self.timeout) as response:
                expected = _content_length(response.headers.get("Content-Length"))
                total = expected or weights.size
                digest, received = _copy(
                    response, out, name=weights.file_name, total=total, progress=progress
                )
                _sync(out)
        except urllib.error.HTTPError as exc:
            raise _Unavailable(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Unavailable(self._timed_out()) from None
            raise _Unavailable(str(exc.reason)) from None
        except TimeoutError:
            raise _Unavailable(self._timed_out()) from None
        except http.client.IncompleteRead as exc:
            raise _Unavailable(f"transfer interrupted after {len(exc.partial)} bytes") from None
        except (http.client.HTTPException, OSError) as exc:
            raise _Unavailable(f"transfer interrupted ({type(exc).__name__}: {exc})") from None
        except ValueError as exc:  # e.g. "unknown url type" from a malformed mirror
            raise _Unavailable(str(exc)) from None
        if expected is not None and received != expected:
            raise _Unavailable(f"transfer interrupted: got {received} of {expected} bytes")
        return digest, received

    def _timed_out(self) -> str:
        return f"timed out: no data for {self.timeout:g} s ({ENV_TIMEOUT} sets the limit)"

    def _check_download(
        self, weights: WeightsFile, *, url: str, digest: str, size: int, model: str | None
    ) -> None:
        size_ok = weights.size is None or size == weights.size
        if weights.matches(digest) and size_ok:
            return
        what = (
            f"sha256 {digest}, expected {_expected(weights)}"
            if not weights.matches(digest)
            else f"{size} bytes, expected {weights.size}"
        )
        raise ChecksumError(
            f"Checksum mismatch for {weights.file_name} downloaded from {url}: got {what}. "
            "The download was discarded; nothing was written to the cache.",
            hint=_mismatch_hint(weights, mirror=bool(self.mirror), model=model),
        )

    def _check_cached(self, weights: WeightsFile, *, model: str | None) -> None:
        result = self.verify(weights)
        if result.status == "mismatch":
            raise ChecksumError(
                f"Cached weight file {result.path} does not match its registered digest "
                f"(sha256 {result.digest}, expected {_expected(weights)}).",
                hint=f"Delete it and run `densecnn weights pull {model or '<model>'}`, "
                f"or copy the official file from {weights.url} into {self.root}.",
            )

    def _unavailable(
        self, weights: WeightsFile, *, url: str | None, reason: str, model: str | None
    ) -> WeightsUnavailableError:
        name = weights.file_name
        tried = f"downloading {url} failed: {reason}" if url else reason
        lines = [
            "Ways out:",
            f"  - run `densecnn weights pull {model or '<model>'}` once on a machine with network access",
            f"  - copy {name} into {self.root} (get it from {weights.url})",
            f"  - set {ENV_MIRROR} to a base URL or file:// folder holding {name}",
            "  - or pass `--weights FILE` to use a local weight file",
        ]
        return WeightsUnavailableError(
            f"Weight file {name} is not available: it is not in the cache ({self.path(weights)}) "
            f"and {tried}.",
            hint="\n".join(lines),
        )


def _env_timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{ENV_TIMEOUT} must be a positive number of seconds, got {raw!r}.")
    return value


def _content_length(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _expected(weights: WeightsFile) -> str:
    return weights.sha256 if weights.full_digest else f"{weights.sha256}… (prefix)"


def _mismatch_hint(weights: WeightsFile, *, mirror: bool, model: str | None) -> str:
    if mirror:
        return (
            f"The mirror ({ENV_MIRROR}) serves a different {weights.file_name}: replace it with the "
            f"official file from {weights.url}, or unset {ENV_MIRROR}."
        )
    return (
        f"Try `densecnn weights pull {model or '<model>'}` again later; if it keeps failing, "
        "something between you and the server alters the file."
    )


def _open_part(part: Path) -> IO[bytes]:
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        return open(part, "wb")
    except OSError as exc:
        raise _CacheWriteError(exc) from None


def _sync(out: IO[bytes]) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise _CacheWriteError(exc) from None


def _copy(src: IO[bytes], dst: IO[bytes], *, name: str, total: int | None, progress: bool) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` in chunks, hashing as it goes; a rich bar on stderr if ``progress``."""
    digest = hashlib.sha256()
    received = 0
    bar = _progress_bar() if progress else None
    with bar or contextlib.nullcontext():
        task = bar.add_task(name, total=total) if bar is not None else None
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            try:
                dst.write(chunk)
            except OSError as exc:
                raise _CacheWriteError(exc) from None
            received += len(chunk)
            if bar is not None and task is not None:
                bar.update(task, advance=len(chunk))
    return digest.hexdigest(), received


def _progress_bar() -> Progress:
    """A transient download bar on stderr (rich is imported only when a download starts)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
