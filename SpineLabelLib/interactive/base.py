"""Click-to-correct: the engine interface, its registry, input checks and neighbour locking.

Axis order and space: every array here is indexed (i, j, k) on the CT's voxel grid (the
grid of :class:`SpineLabelLib.image.Image`); clicks are integer voxel indices (i, j, k) on
that grid. Engines never write into a labelmap: they *propose* the target's voxels inside
a box, and :func:`apply_proposal` turns a proposal into a new labelmap in which only the
target label and background can change (other labels are locked unless the caller
unlocked them by name).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .. import labels as L
from ..errors import SpineLabelInputError
from ..image import Image
from ..masks import nonzero_bbox

#: Hounsfield units below which a click counts as "on air" (lung is about -850 HU).
AIR_HU = -500.0
#: Bone window used by both engines before any computation (HU -> 0..1).
BONE_WINDOW_HU = (-250.0, 1250.0)

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Click:
    """One click: voxel index (i, j, k) on the CT grid, positive (add) or negative (remove)."""

    ijk: tuple[int, int, int]
    positive: bool

    @classmethod
    def from_any(cls, item) -> "Click":
        """``Click``, ``((i, j, k), True)``, or ``(i, j, k, True)`` -> Click."""
        if isinstance(item, Click):
            return item
        try:
            if len(item) == 2:
                ijk, positive = item
            elif len(item) == 4:
                ijk, positive = item[:3], item[3]
            else:
                raise TypeError
            ijk = tuple(int(round(float(v))) for v in ijk)
            if len(ijk) != 3:
                raise TypeError
        except (TypeError, ValueError):
            raise SpineLabelInputError(None, f"a click must be ((i, j, k), positive), got {item!r}") from None
        if not isinstance(positive, (bool, np.bool_)):
            raise SpineLabelInputError(None, f"a click's second element must be True (add) or False (remove), got {positive!r}")
        return cls(ijk, bool(positive))  # type: ignore[arg-type]


@dataclass
class RefineRequest:
    """What an engine gets for one refinement (everything on the CT grid, (i, j, k)).

    base: the labelmap the clicks apply to (the last accepted state); never modified.
    clicks: every click given for ``label`` since ``base`` was accepted, in order.
    box: optional (lo, hi) voxel corners (inclusive lo, exclusive hi) around the target.
    locked_values: labels that must not change (they also count as background evidence).
    case_key: identifies the CT for per-case caches.
    """

    ct: Image
    base: np.ndarray
    label: int
    clicks: list[Click]
    box: tuple[tuple[int, int, int], tuple[int, int, int]] | None
    locked_values: frozenset[int]
    case_key: str


@dataclass
class Proposal:
    """An engine's answer: the target's voxels inside ``box`` (outside it the base stands)."""

    box: Box
    target: np.ndarray  # bool, shape of the box
    info: dict = field(default_factory=dict)


@dataclass
class RefineResult:
    """The outcome of one refinement.

    labelmap: the new labelmap (i, j, k) on the CT grid.
    bbox: the changed region as slices on that grid (None when nothing changed), so a
        viewer only has to update that part.
    changed: number of voxels whose value changed.
    """

    labelmap: np.ndarray
    bbox: Box | None
    changed: int
    label: int
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


class Engine(ABC):
    """A click-to-correct engine. One instance serves one session (it may cache per case)."""

    name = "engine"

    @abstractmethod
    def propose(self, request: RefineRequest) -> Proposal:
        """The target's voxels inside a box, from the base labelmap and the clicks."""

    def close(self) -> None:  # background work, caches
        """Release background work and caches (called when the session closes)."""


#: name -> factory(**options) -> Engine
ENGINES: dict[str, Callable[..., Engine]] = {}


def register_engine(name: str, factory: Callable[..., Engine]) -> None:
    """Add an engine to the registry (one line per engine module)."""
    ENGINES[name] = factory


def make_engine(name: str, **options) -> Engine:
    if name not in ENGINES:
        raise SpineLabelInputError(None, f"unknown interactive engine {name!r}; available: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](**options)


# ----------------------------------------------------------------------------------
# windows and boxes
# ----------------------------------------------------------------------------------
def bone_window(hu: np.ndarray, low: float = BONE_WINDOW_HU[0], high: float = BONE_WINDOW_HU[1]) -> np.ndarray:
    """CT values in HU -> float32 in 0..1 on a bone window (clipped outside [low, high])."""
    from ..image import window_hu

    return window_hu(hu, low, high)


def clip_box(lo, hi, shape) -> Box:
    lo = np.maximum(np.asarray(lo, dtype=np.int64), 0)
    hi = np.minimum(np.asarray(hi, dtype=np.int64), np.asarray(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def label_bbox(labelmap: np.ndarray, value: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) index corners (hi exclusive) of ``value`` in ``labelmap``, None if absent.

    Uses per-axis projections (no argwhere over the whole volume)."""
    return nonzero_bbox(labelmap == value)


# ----------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------
def check_label(label) -> int:
    try:
        value = int(label) if not isinstance(label, str) else L.label(label).value
    except (KeyError, ValueError, TypeError):
        raise SpineLabelInputError(None, f"unknown vertebra label {label!r}; VerSe labels are 1-28 (C1..L6, T13, sacrum, coccyx)") from None
    if not L.is_vertebra(value):
        raise SpineLabelInputError(None, f"unknown vertebra label {value}; VerSe labels are 1-28 (C1..L6, T13, sacrum, coccyx)")
    return value


def describe_value(value: int) -> str:
    value = int(value)
    if L.is_vertebra(value):
        return f"{L.name_of(value)} (label {value})"
    return f"label {value}"


def check_clicks(ct: Image, labelmap: np.ndarray, label: int, clicks: Sequence[Click], locked_values: Iterable[int]) -> None:
    """Refuse clicks outside the image, on air, or on a locked vertebra (one clear message)."""
    locked = set(int(v) for v in locked_values)
    shape = ct.shape
    for n, click in enumerate(clicks, 1):
        sign = "positive" if click.positive else "negative"
        where = f"{sign} click {n} at (i, j, k) = {click.ijk}"
        if any(c < 0 or c >= s for c, s in zip(click.ijk, shape)):
            raise SpineLabelInputError(ct.source, f"{where} lies outside the image (shape {shape[0]}x{shape[1]}x{shape[2]})")
        hu = float(ct.array[click.ijk])
        if hu < AIR_HU:
            raise SpineLabelInputError(ct.source, f"{where} is on air ({hu:.0f} HU), not on bone; click inside the vertebra")
        value = int(labelmap[click.ijk])
        if value in locked:
            raise SpineLabelInputError(
                ct.source,
                f"{where} is on another vertebra, {describe_value(value)}, which is locked while refining "
                f"{describe_value(label)}; refine that label instead, or unlock it explicitly (overwrite=[{value}])",
            )


def check_box(box, shape) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    if box is None:
        return None
    try:
        lo, hi = box
        lo = tuple(int(v) for v in lo)
        hi = tuple(int(v) for v in hi)
        if len(lo) != 3 or len(hi) != 3:
            raise TypeError
    except (TypeError, ValueError):
        raise SpineLabelInputError(None, f"a box must be ((i0, j0, k0), (i1, j1, k1)), got {box!r}") from None
    if any(a >= b for a, b in zip(lo, hi)):
        raise SpineLabelInputError(None, f"box {box!r} is empty (each lower corner must be below the upper one)")
    if any(b <= 0 or a >= s for a, b, s in zip(lo, hi, shape)):
        raise SpineLabelInputError(None, f"box {box!r} lies outside the image (shape {tuple(shape)})")
    return lo, hi  # type: ignore[return-value]


# ----------------------------------------------------------------------------------
# locking
# ----------------------------------------------------------------------------------
def apply_proposal(base: np.ndarray, label: int, proposal: Proposal, unlocked: Iterable[int] = ()) -> np.ndarray:
    """A new labelmap: ``base`` with the target set to ``proposal`` inside its box.

    Only voxels whose base value is 0, ``label`` or one of ``unlocked`` may change, and
    they can only become 0 or ``label``; every other label is untouched, voxel for voxel.
    """
    out = base.copy()
    box = proposal.box
    b = base[box]
    writable = (b == 0) | (b == label)
    for v in unlocked:
        writable |= b == v
    target = proposal.target.astype(bool, copy=False)
    region = out[box]
    region[writable & target] = label
    region[writable & ~target & (b == label)] = 0
    # an unlocked label that the proposal does not claim keeps its value
    return out


def label_counts(labelmap: np.ndarray) -> np.ndarray:
    """Voxel count per label value (index = value); for keeping the set of present labels
    up to date without scanning the whole volume on every click."""
    flat = labelmap.ravel()
    if flat.size and int(flat.min()) < 0:
        raise SpineLabelInputError(None, f"labelmap holds negative values (min {int(flat.min())}); labels must be >= 0")
    return np.bincount(flat.astype(np.int64, copy=False) if flat.dtype.kind != "u" else flat)


def locked_values_for(present, label: int, overwrite) -> tuple[frozenset[int], frozenset[int]]:
    """(locked, unlocked) label values: every non-zero value of ``present`` (the values in
    the labelmap) except ``label`` is locked unless ``overwrite`` names it (True unlocks all)."""
    present = set(int(v) for v in present) - {0, int(label)}
    if overwrite is True:
        return frozenset(), frozenset(present)
    if not overwrite:
        return frozenset(present), frozenset()
    unlocked = set()
    for v in overwrite:
        unlocked.add(int(v))
    return frozenset(present - unlocked), frozenset(unlocked & present)
