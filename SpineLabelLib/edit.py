"""Label-sequence edits of a vertebra instance mask, each one undoable step.

An edit is a pure function ``(LabelState, **params) -> LabelState`` on a mask (VerSe
values, voxel (i, j, k) on its grid) and its centroids (``centroids_ijk``, voxel
(i, j, k) on the same grid). :class:`EditSession` applies edits one at a time, keeps
undo/redo stacks, and reports every applied edit, undo and redo to a listener (the queue
logs them as events).

Sequence rules: shifting moves labels along the standard sequence (C1..C7, T1..T12, L1..L5)
with T13 and L6 included only where the edit is about them; the sacrum and coccyx are
anchors and never shift. An edit that would put two vertebrae on one label is refused
with a message saying what to do instead (merge, or insert T13/L6).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import labels
from .errors import SpineLabelError
from .image import Image

_ANCHORS = (labels.SACRUM, labels.COCCYX)


class EditError(SpineLabelError):
    """An edit was refused; the message says why and what to do instead."""


@dataclass
class LabelState:
    mask: Image  # VerSe values on the CT grid
    centroids_ijk: dict[int, np.ndarray] = field(default_factory=dict)  # voxel (i, j, k) on mask's grid

    def present(self) -> list[int]:
        """Vertebra labels in the mask, head to feet."""
        return labels.sort_anatomical(v for v in np.unique(self.mask.array).tolist() if labels.is_vertebra(v))


def _name(v: int) -> str:
    return labels.name_of(v)


def _require(state: LabelState, *values: int) -> None:
    present = set(state.present())
    for v in values:
        if v not in present:
            raise EditError(f"{_name(v)} is not in the mask (present: {', '.join(map(_name, state.present())) or 'none'})")


def _remap(state: LabelState, mapping: dict[int, int], recompute: tuple[int, ...] = ()) -> LabelState:
    """Apply ``old -> new`` to the mask in one pass (so swaps and shifts never collide)."""
    arr = state.mask.array
    lut = np.arange(max(256, int(arr.max()) + 1), dtype=np.int64)
    for old, new in mapping.items():
        lut[old] = new
    out = lut[arr.astype(np.int64, copy=False)].astype(arr.dtype, copy=False)
    centroids = {}
    for v, ijk in state.centroids_ijk.items():
        target = mapping.get(v, v)
        if target:
            centroids[target] = np.asarray(ijk, dtype=float).copy()
    new = LabelState(state.mask.with_array(out), centroids)
    return _recompute(new, recompute)


def _recompute(state: LabelState, values) -> LabelState:
    """Body centroids of labels whose voxels changed (merged, split)."""
    values = [v for v in values if v in set(state.present())]
    for v in list(state.centroids_ijk):
        if v not in set(state.present()):
            del state.centroids_ijk[v]
    if values:
        from .verse.body import body_centroids

        state.centroids_ijk.update(body_centroids(state.mask, labels=values))
    return state


def relabel(state: LabelState, old: int, new: int) -> LabelState:
    """Give vertebra ``old`` the label ``new`` (which must be free: use merge otherwise)."""
    _require(state, old)
    if not labels.is_vertebra(new):
        raise EditError(f"{new} is not a VerSe vertebra label")
    if new in state.present():
        raise EditError(f"{_name(new)} is already used; merge {_name(old)} into it, or relabel {_name(new)} first")
    return _remap(state, {old: new})


def _sequence(present: list[int], extra: tuple[int, ...] = ()) -> list[int]:
    """Standard mobile sequence, plus T13/L6 where present or asked for."""
    keep = set(present) | set(extra)
    return [lab.value for lab in labels.LABELS
            if lab.value not in _ANCHORS and (lab.value not in (labels.T13, labels.L6) or lab.value in keep)]


def _shift_block(state: LabelState, block: list[int], step: int, seq: list[int]) -> LabelState:
    mapping = {}
    for v in block:
        pos = seq.index(v) + step
        if not 0 <= pos < len(seq):
            end = "the sacrum" if step > 0 else "C1"
            raise EditError(f"{_name(v)} cannot move one level {'down' if step > 0 else 'up'}: it would pass {end}"
                            + ("; insert L6 (or T13) instead" if step > 0 else ""))
        mapping[v] = seq[pos]
    clash = set(mapping.values()) & (set(state.present()) - set(block))
    if clash:
        raise EditError(f"shifting would put two vertebrae on {', '.join(map(_name, sorted(clash)))}")
    return _remap(state, mapping)


def shift(state: LabelState, start: int, direction: str = "down") -> LabelState:
    """Move ``start`` and every vertebra below it (``"down"``: towards the feet) or above
    it (``"up"``) one level along the sequence: the T12 -> L1 cascade when a vertebra was missed."""
    _require(state, start)
    if start in _ANCHORS:
        raise EditError(f"the {_name(start)} is an anchor and is never shifted")
    present = [v for v in state.present() if v not in _ANCHORS]
    idx = present.index(start)
    if direction == "down":
        block, step = present[idx:], 1
    elif direction == "up":
        block, step = present[: idx + 1], -1
    else:
        raise EditError(f"direction must be 'down' or 'up', not {direction!r}")
    return _shift_block(state, block, step, _sequence(state.present()))


def insert(state: LabelState, extra: int, side: str = "below") -> LabelState:
    """Insert T13 or L6 into the sequence.

    T13, side "below": the vertebra labelled L1 becomes T13 and the lumbar labels below move
    up one level (L2 -> L1, ...): counted from the head, the 13th rib-bearing vertebra was
    called L1. T13, side "above": T12 becomes T13 and the thoracic labels above move down
    one level (T11 -> T12, ...): counted from the sacrum. L6 ("above" only): L5 becomes L6
    and every mobile label above moves down one level (L4 -> L5, ..., T12 -> L1, ...).
    """
    if extra not in (labels.T13, labels.L6):
        raise EditError("only T13 and L6 can be inserted")
    if extra in state.present():
        raise EditError(f"{_name(extra)} is already present")
    seq = _sequence(state.present(), (extra,))
    i = seq.index(extra)
    present = [v for v in state.present() if v not in _ANCHORS]
    if side == "below":
        if extra == labels.L6:
            raise EditError("L6 cannot be inserted from below: the sacrum does not shift (split or relabel it instead)")
        anchor = seq[i + 1]
        _require(state, anchor)
        block = [v for v in present if labels.order_of(v) >= labels.order_of(anchor)]
        return _shift_block(state, block, -1, seq)
    if side == "above":
        anchor = seq[i - 1]
        _require(state, anchor)
        block = [v for v in present if labels.order_of(v) <= labels.order_of(anchor)]
        return _shift_block(state, block, 1, seq)
    raise EditError(f"side must be 'below' or 'above', not {side!r}")


def remove(state: LabelState, extra: int, side: str = "below") -> LabelState:
    """Undo the anatomy of :func:`insert`: T13/L6 takes the next label on ``side`` and the
    labels on that side move one level on (T13 "below": T13 -> L1, L1 -> L2, ...)."""
    if extra not in (labels.T13, labels.L6):
        raise EditError("only T13 and L6 can be removed from the sequence (delete other vertebrae)")
    _require(state, extra)
    seq = _sequence([v for v in state.present() if v != extra])
    full = _sequence(state.present())
    present = [v for v in state.present() if v not in _ANCHORS]
    if side == "below":
        block = [v for v in present if labels.order_of(v) >= labels.order_of(extra)]
        step, nxt = 1, full[full.index(extra) + 1] if full.index(extra) + 1 < len(full) else None
    elif side == "above":
        block = [v for v in present if labels.order_of(v) <= labels.order_of(extra)]
        step, nxt = -1, full[full.index(extra) - 1]
    else:
        raise EditError(f"side must be 'below' or 'above', not {side!r}")
    if nxt is None:
        raise EditError(f"{_name(extra)} has no next level {side} it; merge it into the sacrum instead")
    mapping = {extra: nxt}
    for v in block:
        if v == extra:
            continue
        pos = seq.index(v) + step
        if not 0 <= pos < len(seq):
            raise EditError(f"{_name(v)} cannot move one level {'down' if step > 0 else 'up'}")
        mapping[v] = seq[pos]
    clash = set(mapping.values()) & (set(state.present()) - set(block))
    if clash:
        raise EditError(f"removing {_name(extra)} would put two vertebrae on {', '.join(map(_name, sorted(clash)))}")
    return _remap(state, mapping)


def merge(state: LabelState, keep: int, other: int) -> LabelState:
    """Voxels of ``other`` join ``keep`` (one vertebra labelled as two)."""
    _require(state, keep, other)
    if keep == other:
        raise EditError("merge needs two different labels")
    return _remap(state, {other: keep}, recompute=(keep,))


def split(state: LabelState, value: int, new: int, point_ras, normal_ras=(0.0, 0.0, 1.0)) -> LabelState:
    """Split vertebra ``value`` at a plane (a point and a normal in RAS mm): voxels on the
    side the normal points to become ``new`` (which must be free), the rest keep ``value``."""
    _require(state, value)
    if new in state.present() or not labels.is_vertebra(new):
        raise EditError(f"{new} must be a free VerSe vertebra label")
    arr = state.mask.array
    ijk = np.argwhere(arr == value)
    normal = np.asarray(normal_ras, dtype=float)
    if np.linalg.norm(normal) == 0:
        raise EditError("the plane normal must not be zero")
    side = (state.mask.index_to_world(ijk) - np.asarray(point_ras, dtype=float)) @ normal > 0
    if side.all() or not side.any():
        raise EditError(f"the plane does not cut {_name(value)}")
    out = arr.copy()
    out[tuple(ijk[side].T)] = new
    return _recompute(LabelState(state.mask.with_array(out), dict(state.centroids_ijk)), (value, new))


def delete(state: LabelState, value: int) -> LabelState:
    """Remove vertebra ``value`` (its voxels become background)."""
    _require(state, value)
    return _remap(state, {value: 0})


#: Edit name -> function; the names are the ``op`` of events and of ``queue edit``.
EDITS: dict[str, Callable[..., LabelState]] = {
    "relabel": relabel, "shift": shift, "insert": insert, "remove": remove,
    "merge": merge, "split": split, "delete": delete,
}


@dataclass
class EditRecord:
    op: str  # an EDITS name, or "undo"/"redo" of one
    params: dict


class EditSession:
    """Edits of one mask with undo and redo; ``listener(EditRecord)`` hears every step."""

    def __init__(self, state: LabelState, listener: Callable[[EditRecord], None] | None = None):
        self.state = state
        self._undo: list[tuple[LabelState, EditRecord]] = []
        self._redo: list[tuple[LabelState, EditRecord]] = []
        self.listener = listener
        self.history: list[EditRecord] = []

    def _tell(self, record: EditRecord) -> None:
        self.history.append(record)
        if self.listener is not None:
            self.listener(record)

    def apply(self, op: str, **params) -> LabelState:
        if op not in EDITS:
            raise EditError(f"unknown edit {op!r} (known: {', '.join(EDITS)})")
        new = EDITS[op](self.state, **params)
        record = EditRecord(op, _jsonable(params))
        self._undo.append((self.state, record))
        self._redo.clear()
        self.state = new
        self._tell(record)
        return new

    def undo(self) -> LabelState:
        if not self._undo:
            raise EditError("nothing to undo")
        previous, record = self._undo.pop()
        self._redo.append((self.state, record))
        self.state = previous
        self._tell(EditRecord("undo", {"op": record.op, **record.params}))
        return previous

    def redo(self) -> LabelState:
        if not self._redo:
            raise EditError("nothing to redo")
        following, record = self._redo.pop()
        self._undo.append((self.state, record))
        self.state = following
        self._tell(EditRecord("redo", {"op": record.op, **record.params}))
        return following

    @property
    def changed(self) -> bool:
        return bool(self._undo)


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
