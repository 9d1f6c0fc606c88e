"""The automatic-engine interface, its result type and the engine registry.

An *engine* takes a CT :class:`~SpineLabelLib.image.Image` (any orientation, spacing or
oblique affine) and returns an :class:`EngineResult` **on the input's own grid**: an
instance mask with VerSe values, vertebral-body centroids as voxel indices (i, j, k) on
that grid, and for every vertebra a confidence in [0, 1] with the reasons behind it.

Adding an engine touches one new file and one registration line::

    from SpineLabelLib.auto.base import Engine, EngineResult, register_engine

    class MyEngine(Engine):
        name = "mine"
        def segment(self, ct, progress=None):
            ...
            return EngineResult(mask=..., centroids_ijk=..., confidence=..., reasons=...)

    register_engine("mine", MyEngine)          # then get_engine("mine", **options)

Engines are constructed with keyword options only (``get_engine(name, **options)``);
construction must be cheap and must not import heavy packages, so that listing or
choosing engines never loads torch. Heavy work and imports happen in ``segment``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SpineLabelError, SpineLabelInputError
from ..image import Image
from ..labels import is_vertebra, name_of, sort_anatomical


class EngineUnavailableError(SpineLabelError):
    """The engine cannot run here (missing package, weights or checkpoint); the message says how to fix it."""


@dataclass
class EngineResult:
    """What every automatic engine returns, on the input CT's grid.

    mask: instance mask (uint8 VerSe values, 0 background) with the CT's shape and affine.
    centroids_ijk: VerSe value -> (3,) vertebral-body centre, voxel (i, j, k) on that grid.
    confidence: VerSe value -> confidence in [0, 1] that this vertebra's label is right.
    reasons: VerSe value -> human-readable reasons behind its label and confidence.
    notes: case-level remarks (anchors found, field of view, why the mask is empty, ...).
    engine: name of the engine that produced the result.
    model_version: what exactly produced it (engine, library version, checkpoint), for the
        review queue's audit trail.
    timings: step name -> seconds.
    """

    mask: Image
    centroids_ijk: dict[int, np.ndarray] = field(default_factory=dict)
    confidence: dict[int, float] = field(default_factory=dict)
    reasons: dict[int, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    engine: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    model_version: str = ""

    def __post_init__(self):
        for v, c in list(self.confidence.items()):
            self.confidence[v] = float(min(1.0, max(0.0, c)))

    @property
    def labels(self) -> list[int]:
        """VerSe values present in the mask or the centroids, head to feet."""
        present = {int(v) for v in np.unique(self.mask.array) if is_vertebra(int(v))}
        return sort_anatomical(present | {int(v) for v in self.centroids_ijk})

    @property
    def empty(self) -> bool:
        return not self.labels

    def case_confidence(self) -> float | None:
        """The lowest vertebra confidence (a case is as trustworthy as its weakest label); None when empty."""
        vals = [self.confidence[v] for v in self.labels if v in self.confidence]
        return min(vals) if vals else None

    def summary(self) -> str:
        """One line per vertebra: name, confidence, reasons; then the notes."""
        lines = []
        for v in self.labels:
            conf = self.confidence.get(v)
            why = "; ".join(self.reasons.get(v, []))
            lines.append(f"{name_of(v):>6s}  {'   - ' if conf is None else f'{conf:5.2f}'}  {why}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready description (no voxels): labels, centroids, confidence, reasons, notes."""
        return {
            "engine": self.engine,
            "vertebrae": [
                {
                    "label": int(v),
                    "name": name_of(v),
                    "centroid_ijk": None if v not in self.centroids_ijk else [round(float(x), 2) for x in self.centroids_ijk[v]],
                    "confidence": self.confidence.get(v),
                    "reasons": list(self.reasons.get(v, [])),
                }
                for v in self.labels
            ],
            "case_confidence": self.case_confidence(),
            "notes": list(self.notes),
            "timings_s": {k: round(float(t), 3) for k, t in self.timings.items()},
        }


def empty_result(ct: Image, reason: str, engine: str = "") -> EngineResult:
    """An empty mask on ``ct``'s grid with ``reason`` as its note (graceful 'nothing found')."""
    return EngineResult(mask=ct.with_array(np.zeros(ct.shape, dtype=np.uint8)), notes=[reason], engine=engine)


class Engine:
    """Base class of automatic engines. Subclasses set ``name`` and implement :meth:`segment`.

    ``progress``, when given, is called as ``progress(fraction_done: float, message: str)``.
    """

    name: str = ""

    def __init__(self, **options):
        if options:
            raise SpineLabelInputError(None, f"engine {self.name!r} takes no option(s) {', '.join(sorted(options))}")

    @property
    def model_version(self) -> str:
        """What produces the labels, recorded in the queue's audit trail: the engine and the
        library version, plus the checkpoint file for engines that load one."""
        from .. import __version__

        checkpoint = getattr(self, "checkpoint", None)
        return f"{self.name} (SpineLabelLib {__version__}" + (f", {Path(checkpoint).name})" if checkpoint else ")")

    def check_available(self) -> None:
        """Raise :class:`EngineUnavailableError` with install instructions when the engine cannot run."""

    def segment(self, ct: Image, progress: Callable[[float, str], None] | None = None) -> EngineResult:
        raise NotImplementedError

    def __call__(self, ct: Image, progress=None) -> EngineResult:
        return self.segment(ct, progress)

    def run(self, ct: Image, progress=None) -> EngineResult:
        """:meth:`segment`, with ``engine`` and ``model_version`` of the result filled in."""
        result = self.segment(ct, progress)
        result.engine = result.engine or self.name
        result.model_version = result.model_version or self.model_version
        return result


# ----------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------
#: name -> engine class, or "module:attribute" string imported on first use (keeps imports light).
_REGISTRY: dict[str, type[Engine] | str] = {
    "classical": "SpineLabelLib.auto.classical:ClassicalEngine",
    "monai": "SpineLabelLib.auto.monai_engine:MonaiEngine",
    "totalsegmentator": "SpineLabelLib.auto.totalseg_engine:TotalSegmentatorEngine",
    "reference": "SpineLabelLib.auto.reference_engine:ReferenceEngine",
}
#: Alternative names.
_ALIASES = {"weight-free": "classical", "default": "classical", "totalseg": "totalsegmentator", "ts": "totalsegmentator"}
DEFAULT_ENGINE = "classical"


def register_engine(name: str, engine: type[Engine] | str, overwrite: bool = False) -> None:
    """Make ``engine`` (a class, or ``"module:Class"``) available as ``get_engine(name)``."""
    key = name.strip().lower()
    if not key:
        raise ValueError("an engine needs a name")
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"an engine named {key!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[key] = engine


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def engine_class(name: str) -> type[Engine]:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in _REGISTRY:
        raise SpineLabelInputError(None, f"unknown engine {name!r}; available: {', '.join(engine_names())}")
    entry = _REGISTRY[key]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
        _REGISTRY[key] = entry
    return entry


def get_engine(name: str = DEFAULT_ENGINE, **options) -> Engine:
    """An engine instance by registry name (``classical`` — the weight-free default —,
    ``monai``, ``totalsegmentator``, or any registered one) with its keyword options."""
    cls = engine_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise SpineLabelInputError(None, f"engine {name!r}: bad option(s) {sorted(options)}: {exc}") from None
