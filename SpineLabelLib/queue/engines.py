"""The automatic-engine interface used by ``queue auto``, and its registry.

An engine takes a CT and proposes labels::

    engine.segment(ct: Image) -> EngineResult(mask, centroids_ijk, confidence, ...)

``mask`` is on the CT's grid (VerSe values), ``centroids_ijk`` maps each label to a voxel
(i, j, k) on that grid, ``confidence`` each label to a value in [0, 1]. The automatic
segmentation engines of SpineLabelLib.auto register here (one ``register_engine`` line
each) when they exist; this module ships only :class:`ReferenceEngine`, which is *not* an
automatic segmentation: it hands back labels that already exist in another folder (for
tests and benchmarks of the queue, and for importing labels made elsewhere).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..errors import SpineLabelInputError
from ..image import Image
from .model import QueueError


@dataclass
class EngineResult:
    mask: Image  # VerSe values on the CT grid
    centroids_ijk: dict[int, np.ndarray]  # voxel (i, j, k) on the CT grid
    confidence: dict[int, float] = field(default_factory=dict)  # label -> [0, 1]
    engine: str = ""
    model_version: str = ""


class Engine(Protocol):
    name: str
    model_version: str

    def segment(self, ct: Image) -> EngineResult: ...


_ENGINES: dict[str, Callable[..., Engine]] = {}


def register_engine(name: str, factory: Callable[..., Engine]) -> None:
    """``factory(**options) -> Engine``; options come from ``queue auto --engine-option K=V``."""
    _ENGINES[name] = factory


def make_engine(name: str, **options) -> Engine:
    if name not in _ENGINES:
        raise QueueError(f"unknown engine {name!r} (known: {', '.join(sorted(_ENGINES)) or 'none'})")
    return _ENGINES[name](**options)


def engines() -> list[str]:
    return sorted(_ENGINES)


class ReferenceEngine:
    """Returns the existing mask of the same case from a reference VerSe folder.

    Not a segmentation method: it reads ``<stem>_seg-vert_msk.nii.gz`` (any VerSe naming)
    of the case whose CT file has the same stem as ``ct.source``. Confidence is 1.0 for
    every label unless ``confidence`` is given (a number) -- there is no model behind it.
    """

    name = "reference"
    model_version = "reference-labels"

    def __init__(self, folder: str | os.PathLike, confidence: float | str = 1.0):
        from ..verse.layout import discover_cases

        self.folder = Path(folder)
        self.confidence = float(confidence)
        self._by_stem = {c.stem: c for c in discover_cases(self.folder) if c.mask is not None}

    def segment(self, ct: Image) -> EngineResult:
        from ..verse.body import body_centroids
        from ..verse.layout import classify_name, load_case

        if ct.source is None:
            raise QueueError("reference engine: the CT has no source file name to match a reference case by")
        info = classify_name(Path(ct.source).name)
        stem = info[2] if info else Path(ct.source).name
        case = self._by_stem.get(stem)
        if case is None:
            raise SpineLabelInputError(ct.source, f"reference engine: no reference mask for {stem} in {self.folder}")
        data = load_case(case)
        ct.require_same_grid(data.mask, what="reference mask")
        values = [int(v) for v in np.unique(data.mask.array) if 1 <= v <= 28]
        centroids = data.centroids_ijk if data.centroids_ijk else body_centroids(data.mask, labels=values)
        return EngineResult(data.mask, centroids, {v: self.confidence for v in values}, self.name, self.model_version)


register_engine("reference", ReferenceEngine)
