"""Atomic, non-destructive file writing.

Every output SpineLabel writes goes through :func:`atomic_output`: the content is written
to a temporary file in the destination folder and renamed over the target only once it is
complete, so a crash or a full disk never leaves a half-written mask, JSON or PNG behind,
and an existing file is never replaced unless the caller asked for it.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError


def full_suffix(path: str | os.PathLike) -> str:
    """``.nii.gz`` for ``a.nii.gz``, ``.json`` for ``a.json`` (only the known double suffix)."""
    name = Path(path).name
    for double in (".nii.gz", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return Path(name).suffix


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it to ``path``.

    The temporary file keeps the target's suffix (writers such as nibabel choose the
    format from it). If the body raises, the temporary file is removed and ``path`` is
    untouched. ``OutputExistsError`` is raised before anything is written when ``path``
    exists and ``overwrite`` is false.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp" + full_suffix(target), dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and target.exists():  # appeared while we were writing
            raise OutputExistsError(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data, overwrite: bool = False) -> Path:
    """Write ``data`` as JSON (NaN allowed, as in VerSe files) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=1) + "\n", overwrite)
