"""Interactive sessions: one CT + one labelmap, click refinement per label, undo/redo.

A :class:`Session` is what the Slicer panel, Python scripts and ``spinelabel refine``
share. Arrays are (i, j, k) on the CT grid; the CT travels as an
:class:`SpineLabelLib.image.Image` (array + affine) inside the session.

Click bookkeeping follows every click-based tool: clicks for a label accumulate on top of
the last *accepted* state (the labelmap when the first of those clicks was given); each
``refine`` recomputes the label from that state and all its clicks. Refining another label,
changing the unlocked labels, or :meth:`Session.accept` accepts the current state.
Undo/redo step through refinements (the click list steps back with them); the history
stores only the changed box of each step.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import SpineLabelInputError
from ..image import Image, from_nibabel, load_image
from ..masks import nonzero_bbox
from .base import (
    Click, RefineRequest, RefineResult, apply_proposal, check_box, check_clicks, check_label, label_counts,
    locked_values_for, make_engine,
)


@dataclass(frozen=True)
class _Pending:
    label: int
    base: np.ndarray  # accepted state the clicks apply to (never modified)
    clicks: tuple[Click, ...]
    box: tuple | None
    unlocked_key: object
    touched: tuple[slice, slice, slice] | None = None  # where the clicks changed anything
    present: frozenset = frozenset()  # label values present in ``base``


@dataclass
class _Step:
    box: tuple[slice, slice, slice] | None
    before: np.ndarray | None
    after: np.ndarray | None
    pending_before: _Pending | None
    pending_after: _Pending | None
    label: int


def _as_image(ct) -> Image:
    if isinstance(ct, Image):
        return ct
    if isinstance(ct, (str, os.PathLike)):
        return load_image(ct)
    if hasattr(ct, "affine") and hasattr(ct, "dataobj"):
        return from_nibabel(ct, getattr(ct, "get_filename", lambda: None)())
    raise SpineLabelInputError(None, f"ct must be a path, a nibabel image or a SpineLabelLib Image, got {type(ct).__name__}")


def _as_labelmap(labelmap, ct: Image) -> np.ndarray:
    if isinstance(labelmap, Image):
        ct.require_same_grid(labelmap, "labelmap")
        arr = labelmap.array
    elif isinstance(labelmap, (str, os.PathLike)):
        from ..image import map_to_grid_exactly

        arr = map_to_grid_exactly(load_image(labelmap), ct, "labelmap").array
    else:
        arr = np.asarray(labelmap)
    if arr.shape != ct.shape:
        raise SpineLabelInputError(None, f"labelmap shape {arr.shape} differs from the CT grid {ct.shape}; it must be (i, j, k) on the CT's grid")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int16)
        else:
            raise SpineLabelInputError(None, f"labelmap must hold integer labels, got {arr.dtype}")
    return np.array(arr, copy=True)


def case_key_of(ct: Image) -> str:
    """A short key naming the CT for caches: its file plus a digest of grid and voxels."""
    h = hashlib.sha1()
    h.update(np.asarray(ct.shape).tobytes())
    h.update(np.round(ct.affine, 4).tobytes())
    a = ct.array
    h.update(np.ascontiguousarray(a[:: max(1, a.shape[0] // 16), :: max(1, a.shape[1] // 16), :: max(1, a.shape[2] // 16)]).tobytes())
    return f"{Path(ct.source).name if ct.source else 'ct'}:{h.hexdigest()[:12]}"


class Session:
    """Click-to-correct on one CT. See the module docstring; create with :func:`open_session`."""

    def __init__(self, ct: Image, labelmap: np.ndarray, engine, case: str | None = None, history: int = 100):
        self.ct = ct
        self._labels = labelmap
        self.engine = engine
        self.case = case or case_key_of(ct)
        self._pending: _Pending | None = None
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._history = int(history)
        self.last_result: RefineResult | None = None
        self._counts = label_counts(labelmap)  # voxels per value, updated per step

    # -- state -----------------------------------------------------------------------
    @property
    def labelmap(self) -> np.ndarray:
        """A copy of the current labelmap (i, j, k) on the CT grid."""
        return self._labels.copy()

    def labelmap_image(self) -> Image:
        """The current labelmap as an Image on the CT's grid (for saving)."""
        return self.ct.with_array(self._labels.copy(), source=None)

    def clicks(self, label: int | None = None) -> list[Click]:
        """The clicks given since the last accepted state (for ``label``, if named)."""
        if self._pending is None or (label is not None and int(label) != self._pending.label):
            return []
        return list(self._pending.clicks)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # -- refinement --------------------------------------------------------------------
    def refine(self, label, clicks: Sequence = (), box=None, overwrite: bool | Iterable[int] = False) -> np.ndarray:
        """Add ``clicks`` for ``label`` and recompute it; return the new labelmap (a copy).

        clicks: ``((i, j, k), True)`` for "this is the vertebra", ``False`` for "this is not".
        box: optional ``((i0, j0, k0), (i1, j1, k1))`` around the vertebra (hi exclusive).
        overwrite: other labels are locked (never changed, used as background) unless
            named here (or ``True`` for all): only then may the target take their voxels.
        Bad input raises SpineLabelInputError and leaves everything unchanged.
        """
        return self.refine_result(label, clicks, box, overwrite).labelmap

    def refine_result(self, label, clicks: Sequence = (), box=None, overwrite: bool | Iterable[int] = False) -> RefineResult:
        """As :meth:`refine`, returning a :class:`RefineResult` (labelmap, changed bbox, count)."""
        t0 = time.perf_counter()
        label = check_label(label)
        new_clicks = [Click.from_any(c) for c in clicks]
        box = check_box(box, self.ct.shape)
        unlocked_key = overwrite if overwrite is True else frozenset(int(v) for v in (overwrite or ()))
        pending = self._pending
        if pending is None or pending.label != label or pending.unlocked_key != unlocked_key:
            base = self._labels
            prior_clicks: tuple[Click, ...] = ()
            prior_box = None
        else:
            base = pending.base
            prior_clicks = pending.clicks
            prior_box = pending.box
        present = self._present if base is self._labels else pending.present
        locked, unlocked = locked_values_for(present, label, overwrite)
        check_clicks(self.ct, base, label, new_clicks, locked)
        all_clicks = list(prior_clicks) + new_clicks
        box = box if box is not None else prior_box
        if not all_clicks and box is None:
            raise SpineLabelInputError(None, "refine needs at least one click (or a box)")
        if base is self._labels:
            base = self._labels.copy()  # the accepted state, kept for the rest of this label's clicks
            pending = None
        request = RefineRequest(self.ct, base, label, all_clicks, box, locked, self.case)
        proposal = self.engine.propose(request)
        # Work inside U = the proposal's box and the boxes earlier clicks of this list touched:
        # outside U the current labelmap equals the accepted state and stays so.
        touched = _union_box(proposal.box, pending.touched if pending is not None and base is pending.base else None)
        region = apply_proposal(base[touched], label, _shift(proposal, touched), unlocked)
        # invariant: only the target and background changed, and locked labels did not
        region_old = base[touched]
        moved = region != region_old
        if moved.any():
            assert np.all(np.isin(region[moved], (0, label))), "engine output escaped the lock"
            if locked:
                assert not np.isin(region_old[moved], list(locked)).any(), "a locked label changed"
        # the step against the *current* labelmap (earlier clicks of this label already applied)
        box_c, before, after, changed = _diff_box(self._labels[touched], region, touched)
        step = _Step(box_c, before, after, self._pending,
                     _Pending(label, base, tuple(all_clicks), box, unlocked_key, touched, present), label)
        if box_c is not None:
            self._write(box_c, before, after)
        self._pending = step.pending_after
        self._push(step)
        info = dict(proposal.info)
        result = RefineResult(self._labels.copy(), box_c, changed, label, time.perf_counter() - t0, info)
        self.last_result = result
        return result

    def accept(self) -> None:
        """Accept the current state: the next click starts a new click list."""
        self._pending = None

    def undo(self) -> np.ndarray:
        """Step back one refinement (its clicks are forgotten too); returns the labelmap."""
        return self._replay(self._undo, self._redo, forward=False)

    def redo(self) -> np.ndarray:
        """Re-apply the last undone refinement; returns the labelmap."""
        return self._replay(self._redo, self._undo, forward=True)

    def _replay(self, source: list, target: list, forward: bool) -> np.ndarray:
        """Move one step from ``source`` to ``target``, writing its after (redo) or before (undo) voxels."""
        if not source:
            raise SpineLabelInputError(None, f"nothing to {'redo' if forward else 'undo'}")
        step = source.pop()
        if step.box is not None:
            old, new = (step.before, step.after) if forward else (step.after, step.before)
            self._write(step.box, old, new)
        self._pending = step.pending_after if forward else step.pending_before
        target.append(step)
        changed = 0 if step.box is None else int(np.count_nonzero(step.before != step.after))
        self.last_result = RefineResult(self._labels.copy(), step.box, changed, step.label)
        return self._labels.copy()

    def close(self) -> None:
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def _present(self) -> frozenset:
        return frozenset(int(v) for v in np.flatnonzero(self._counts))

    def _write(self, box, old, new) -> None:
        """Put ``new`` into ``box`` (where ``old`` was) and keep the label counts exact."""
        self._labels[box] = new
        n = max(len(self._counts), int(new.max()) + 1)
        counts = np.zeros(n, np.int64)
        counts[: len(self._counts)] = self._counts
        counts[: int(old.max()) + 1] -= np.bincount(old.ravel())
        counts[: int(new.max()) + 1] += np.bincount(new.ravel())
        self._counts = counts

    def _push(self, step: _Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        if len(self._undo) > self._history:
            del self._undo[0]


def _diff_box(old: np.ndarray, new: np.ndarray, where: tuple[slice, slice, slice]):
    """Box (on the full grid), old and new values and count of the differences between
    ``old`` and ``new``, two regions of the full grid located at ``where``."""
    diff = old != new
    n = int(np.count_nonzero(diff))
    if n == 0:
        return None, None, None, 0
    lo, hi = nonzero_bbox(diff)
    local = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    box = tuple(slice(w.start + l.start, w.start + l.stop) for w, l in zip(where, local))
    return box, old[local].copy(), new[local].copy(), n


def _union_box(a, b):
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _shift(proposal, outer):
    """The proposal with its box made relative to ``outer`` (which contains it)."""
    from .base import Proposal

    box = tuple(slice(p.start - o.start, p.stop - o.start) for p, o in zip(proposal.box, outer))
    return Proposal(box, proposal.target, proposal.info)


def open_session(ct, labelmap, engine: str = "classical", *, case: str | None = None, history: int = 100, **engine_options) -> Session:
    """Start click-to-correct on ``ct`` with ``labelmap`` (int array (i, j, k) on ct's grid).

    ct: a path (NIfTI, NRRD, MHA, DICOM folder), a nibabel image or an ``Image``.
    labelmap: an int array on ct's grid (or an ``Image`` / path on the same grid); it is
        copied, the caller's array is never modified.
    engine: ``"classical"`` (weight-free, default) or ``"sam"`` (``checkpoint=PATH``, or
        ``model=`` a segment_anything ``Sam``; ``device=``, ``cache_size=``).
    Other keyword arguments go to the engine.
    """
    image = _as_image(ct)
    lab = _as_labelmap(labelmap, image)
    eng = make_engine(engine, **engine_options)
    return Session(image, lab, eng, case=case, history=history)
