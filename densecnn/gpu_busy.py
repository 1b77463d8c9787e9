"""The share of time an NVIDIA GPU is busy while something runs (``densecnn bench`` on CUDA).

NVML's ``utilization.gpu`` is the percentage of the last sample period during which one or more
kernels ran on the GPU. ``nvidia-smi`` (installed with the driver, nothing to add to Python) streams
it every ``interval_ms``; the mean of the samples taken while the run went on is its busy share. A
GPU that is busy 40 % of an end-to-end run waits on decoding, encoding or the host the rest.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from types import TracebackType


class GpuBusy:
    """``with GpuBusy(index) as busy: ...`` then ``busy.percent`` (None: no ``nvidia-smi`` or no
    sample came, e.g. a run shorter than one interval)."""

    def __init__(self, index: int = 0, *, interval_ms: int = 100, exe: str = "nvidia-smi") -> None:
        self.index = index
        self.interval_ms = interval_ms
        self.exe = exe
        self.samples: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._taking = False

    def __enter__(self) -> GpuBusy:
        exe = shutil.which(self.exe)
        if exe is None:
            return self
        query = ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        try:
            self._proc = subprocess.Popen(
                [exe, *query, "-i", str(self.index), "-lms", str(self.interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            return self
        self._taking = True
        self._reader = threading.Thread(target=self._read, name="densecnn-gpu-busy", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if not self._taking:
                break
            try:
                self.samples.append(float(line.strip().rstrip("%").strip()))
            except ValueError:
                continue  # "[N/A]" or a message: not a sample

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._taking = False
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    @property
    def percent(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None
