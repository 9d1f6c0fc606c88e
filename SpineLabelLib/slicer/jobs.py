"""Background work for the Slicer panel, without Qt.

A :class:`Job` runs one library call in a worker thread and carries its progress and a
cancel flag. The panel polls it from a ``QTimer`` on the main thread (progress bar, Cancel
button) and applies the result there, so MRML nodes are only ever touched on the main
thread. The call receives the job and passes :meth:`Job.progress` (``(fraction, message)``,
the automatic engines' callback) or :meth:`Job.step` (``(done, total, name)``, the queue's
callback) on; once :meth:`Job.cancel` was called, the next callback raises
:class:`Cancelled`, which unwinds the library call at a point where it is safe to stop
(between engine stages; between cases of ``queue init`` / ``queue auto``, whose finished
cases stay recorded, so a later run resumes).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from ..errors import SpineLabelError


class Cancelled(SpineLabelError):
    """The user cancelled the job (raised from its progress callback)."""


class Job:
    """``function(job)`` in a daemon thread; ``result`` or ``error`` once :attr:`finished`."""

    def __init__(self, name: str, function: Callable[["Job"], Any], cancellable: bool = True):
        self.name = name
        self.cancellable = cancellable
        self._function = function
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._fraction: float | None = None
        self._message = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"SpineLabel {name}", daemon=True)

    def _work(self) -> None:
        try:
            self.result = self._function(self)
        except BaseException as exc:  # handed to the main thread, which shows it
            self.error = exc

    def start(self) -> "Job":
        self._thread.start()
        return self

    # -- called from the worker ------------------------------------------------------------
    def progress(self, fraction: float | None, message: str = "") -> None:
        """Record progress (``fraction`` in [0, 1], or None when unknown); raises
        :class:`Cancelled` once the job was cancelled."""
        with self._lock:
            self._fraction = None if fraction is None else min(1.0, max(0.0, float(fraction)))
            self._message = str(message)
        if self.cancellable and self._cancel.is_set():
            raise Cancelled(f"{self.name}: cancelled")

    def step(self, done: int, total: int, name: str = "") -> None:
        """The queue's ``progress(done, total, case_id)`` callback."""
        self.progress(done / total if total else 1.0, f"{done}/{total} {name}".rstrip())

    # -- called from the main thread --------------------------------------------------------
    def cancel(self) -> bool:
        """Ask the job to stop at its next progress callback; False when it cannot be cancelled."""
        if not self.cancellable:
            return False
        self._cancel.set()
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, Cancelled)

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def state(self) -> tuple[float | None, str]:
        """(fraction or None, message) as last reported."""
        with self._lock:
            return self._fraction, self._message

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (scripts and tests; the panel polls instead)."""
        self._thread.join(timeout)
        return self.finished
