"""The ``reference`` engine: labels that already exist elsewhere, not a segmentation method.

It returns, for a CT, the mask of the case with the same file stem in a reference VerSe
folder (any VerSe naming). Uses: importing labels made by another tool into the review
queue, and tests/benchmarks of the queue that need a deterministic "proposal". Confidence
is the given constant for every label: there is no model behind it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SpineLabelInputError
from ..image import Image
from .base import Engine, EngineResult


class ReferenceEngine(Engine):
    name = "reference"
    model_version = "reference-labels"

    def __init__(self, folder: str | os.PathLike, confidence: float | str = 1.0):
        from ..verse.layout import discover_cases

        self.folder = Path(folder)
        self.confidence = float(confidence)
        if not 0.0 <= self.confidence <= 1.0:
            raise SpineLabelInputError(None, f"reference engine: confidence must be in [0, 1], got {self.confidence}")
        self._by_stem = {c.stem: c for c in discover_cases(self.folder) if c.mask is not None}

    def segment(self, ct: Image, progress=None) -> EngineResult:
        from ..verse.body import body_centroids
        from ..verse.layout import classify_name, load_case

        if ct.source is None:
            raise SpineLabelInputError(None, "reference engine: the CT has no source file name to match a reference case by")
        info = classify_name(Path(ct.source).name)
        stem = info[2] if info else Path(ct.source).name
        case = self._by_stem.get(stem)
        if case is None:
            raise SpineLabelInputError(ct.source, f"reference engine: no reference mask for {stem} in {self.folder}")
        data = load_case(case)
        ct.require_same_grid(data.mask, what="reference mask")
        values = [int(v) for v in np.unique(data.mask.array) if 1 <= v <= 28]
        centroids = data.centroids_ijk if data.centroids_ijk else body_centroids(data.mask, labels=values)
        reasons = {v: [f"label read from the reference folder {self.folder}"] for v in values}
        return EngineResult(data.mask, centroids, {v: self.confidence for v in values}, reasons,
                            engine=self.name, model_version=self.model_version)
