"""User-facing errors: each one says what failed, on which input, and what to do.

The CLI prints these without a traceback (``--verbose`` shows it) and exits with ``exit_code``.
"""

from __future__ import annotations


class DenseCNNError(Exception):
    """Base class for errors a user can act on."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class UsageError(DenseCNNError):
    """Bad option value, unknown name, missing source: nothing was run (exit code 2)."""

    exit_code = 2


class WeightsUnavailableError(DenseCNNError):
    """A weight file is neither cached nor downloadable (exit code 3)."""

    exit_code = 3


class UntrustedWeightsError(DenseCNNError):
    """A weight file needs a full (code-running) unpickle and the user has not allowed it (exit code 3)."""

    exit_code = 3


class ChecksumError(DenseCNNError):
    """A downloaded or cached weight file does not match its registered sha256."""

    exit_code = 3


class OutputWriteError(DenseCNNError):
    """The run's outputs could not be written (disk full, read-only, I/O error): the run stopped;
    every file written before is complete (exit code 4)."""

    exit_code = 4


class InputError(DenseCNNError):
    """One input (image, video) could not be read; the pipeline records it and goes on."""

    exit_code = 1
