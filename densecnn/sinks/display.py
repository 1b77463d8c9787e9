"""``--show``: an OpenCV window per source with the drawn results, FPS and latency; q or Esc quits.

Headless machines are detected before the run (``display_problem``): no ``DISPLAY`` /
``WAYLAND_DISPLAY``, an X server that does not answer (checked with libX11's ``XOpenDisplay``, so
Qt never aborts the process on a dead display), or an OpenCV build without a GUI backend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from densecnn.results import Prediction
from densecnn.sinks.base import Sink
from densecnn.sources.base import InputEnd

_QUIT_KEYS = {ord("q"), ord("Q"), 27}  # 27: Esc


def display_problem() -> str | None:
    """Why no window can be shown here, or None when one can."""
    import cv2

    gui = [ln for ln in cv2.getBuildInformation().splitlines() if ln.strip().startswith("GUI:")]
    if gui and gui[0].split(":", 1)[1].strip().upper() in ("", "NONE"):
        return "this OpenCV build has no GUI backend (opencv-python-headless?)"
    if sys.platform in ("darwin", "win32"):
        return None
    if os.environ.get("WAYLAND_DISPLAY"):
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "no display (DISPLAY is not set: a headless machine or an SSH session without -X)"
    if not _x_display_answers():
        return f"the X display {display!r} does not answer"
    return None


def _x_display_answers() -> bool:
    """Open and close a connection to ``$DISPLAY``; True when libX11 is missing (cannot tell)."""
    name = ctypes.util.find_library("X11")
    if name is None:
        return True
    xlib = ctypes.CDLL(name)
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = xlib.XOpenDisplay(None)
    if not handle:
        return False
    xlib.XCloseDisplay(handle)
    return True


class DisplaySink(Sink):
    """A window per source with the drawn results, FPS and capture-to-screen latency on top.

    Qt (OpenCV's GUI here) only runs on the main thread, while sinks run on the pipeline's writer
    thread: ``write`` only leaves the newest drawn frame of each source, and ``pump()``, called by
    the pipeline on the main thread, shows it and reads the keyboard. ``on_quit()`` is called once
    when the user presses q or Esc, or closes a window. ``shown`` counts frames put on screen.
    """

    needs_annotated = True

    def __init__(self, *, on_quit: Callable[[], None]) -> None:
        self.on_quit = on_quit
        self.shown = 0
        self.quit = False
        self._lock = threading.Lock()
        self._pending: dict[str, np.ndarray] = {}  # window -> newest frame not shown yet
        self._ended: set[str] = set()
        self._windows: set[str] = set()
        self._last: dict[str, float] = {}
        self._fps: dict[str, float] = {}

    def write(self, prediction: Prediction, annotated: np.ndarray | None) -> None:
        frame = prediction.frame
        image = (annotated if annotated is not None else frame.image).copy()
        _overlay(image, self._tick(frame.source), frame.captured_mono)
        with self._lock:
            self._pending[_window(frame.source)] = image

    def end_input(self, event: InputEnd) -> None:
        with self._lock:
            self._ended.add(_window(event.ref.source))

    def pump(self) -> None:
        """Main thread: show what is new, close ended inputs' windows, handle q / Esc."""
        import cv2

        with self._lock:
            pending, self._pending = self._pending, {}
            ended, self._ended = self._ended, set()
        for window, image in pending.items():
            if window not in self._windows:
                cv2.namedWindow(window, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
                cv2.resizeWindow(window, image.shape[1], image.shape[0])
                self._windows.add(window)
            cv2.imshow(window, image)
            self.shown += 1
        for window in ended & self._windows:
            self._windows.discard(window)
            cv2.destroyWindow(window)
        if not self._windows:
            return
        key = cv2.waitKey(1) & 0xFF
        closed = any(cv2.getWindowProperty(w, cv2.WND_PROP_VISIBLE) < 1 for w in self._windows)
        if not self.quit and (key in _QUIT_KEYS or closed):
            self.quit = True
            self.on_quit()

    def _tick(self, source: str) -> float:
        """Frames per second drawn for ``source``, smoothed over about ten frames."""
        now = time.perf_counter()
        last = self._last.get(source)
        self._last[source] = now
        if last is not None and now > last:
            self._fps[source] = 0.9 * self._fps.get(source, 1 / (now - last)) + 0.1 / (now - last)
        return self._fps.get(source, 0.0)

    def close(self) -> None:
        """Main thread (the pipeline closes sinks there): destroy every window."""
        import cv2

        if self._windows:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
            self._windows.clear()


def _window(source: str) -> str:
    return f"densecnn: {source}"


def _overlay(image: np.ndarray, fps: float, captured_mono: float | None) -> None:
    """Draw ``FPS`` and, for live frames, capture-to-screen latency in the top-left corner."""
    import cv2

    text = f"{fps:.1f} FPS"
    if captured_mono:
        text += f"  {1000 * (time.perf_counter() - captured_mono):.0f} ms"
    scale = max(0.5, image.shape[1] / 1280)
    org = (8, int(8 + 24 * scale))
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):  # outlined: readable on any frame
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
