"""Errors that name the file and the problem.

Every error raised for bad *input* derives from :class:`SpineLabelInputError` so that the
CLI and the Slicer panel can show it to the user as one clear line instead of a traceback.
"""
from __future__ import annotations

import os


class SpineLabelError(Exception):
    """Base class of all SpineLabel errors."""


class SpineLabelInputError(SpineLabelError, ValueError):
    """An input file or value is unusable. ``str(err)`` reads ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class OutputExistsError(SpineLabelError, FileExistsError):
    """Refused to overwrite an existing output that the caller did not ask to replace."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        super().__init__(
            f"{self.path}: already exists; not overwritten (pass overwrite=True / --overwrite to replace it)"
        )
