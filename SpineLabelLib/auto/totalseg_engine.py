"""TotalSegmentator engine: runs the ``totalsegmentator`` package (when it and its weights
are installed) and maps its v2 labels to VerSe values (S1 joins the sacrum).

The mapping (:func:`result_from_totalseg`) needs no TotalSegmentator: it turns any
TotalSegmentator v2 ``total`` label map on the CT's grid into an :class:`EngineResult`,
so saved TotalSegmentator outputs can be imported and tested without the package.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

from ..image import Image, load_image, map_to_grid_exactly, save_nifti
from ..labels import SACRUM, TOTALSEG_V2_TO_VERSE, is_vertebra, mask_dtype, totalseg_to_verse
from .base import Engine, EngineResult, EngineUnavailableError
from .postprocess import border_penalty, drop_small, keep_largest_components, mask_centroids

INSTALL_HINT = (
    "the TotalSegmentator engine needs the 'totalsegmentator' package and its model weights: "
    "run `pip install TotalSegmentator` in this environment, then download the weights once with "
    "`totalseg_download_weights -t total` (or run `TotalSegmentator -i ct.nii.gz -o out` once while online); "
    "set TOTALSEG_HOME_DIR to use weights stored elsewhere. Without them use --engine classical (weight-free)."
)
#: TotalSegmentator is a trained model; its labels are usually right. Its own output has no
#: per-label probability, so the confidence starts here and is lowered by penalties.
BASE_CONFIDENCE = 0.85


def totalseg_weights_dir() -> Path:
    """Where TotalSegmentator keeps its weights (TOTALSEG_WEIGHTS_PATH, TOTALSEG_HOME_DIR/nnunet/results, ~/.totalsegmentator)."""
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator"))
    return home / "nnunet" / "results"


def check_totalsegmentator() -> None:
    """Raise :class:`EngineUnavailableError` (with the install steps) when package or weights are missing."""
    if importlib.util.find_spec("totalsegmentator") is None:
        raise EngineUnavailableError(f"package 'totalsegmentator' is not installed; {INSTALL_HINT}")
    weights = totalseg_weights_dir()
    if not weights.is_dir() or not any(weights.iterdir()):
        raise EngineUnavailableError(f"no TotalSegmentator weights found in {weights}; {INSTALL_HINT}")


def result_from_totalseg(ts_labels: Image, ct: Image | None = None, engine: str = "totalsegmentator") -> EngineResult:
    """Map a TotalSegmentator v2 ``total`` label map to an :class:`EngineResult`.

    ``ts_labels`` must be on ``ct``'s grid (the same voxel lattice in another orientation is
    re-oriented exactly). Organs and every non-vertebra structure become 0; S1 (26) and the
    sacrum (25) become the sacrum (26). Fragments smaller than 15% of a vertebra's largest
    piece are removed; centroids are vertebral-body centres (verse.body.body_centroids).
    """
    if ct is not None:
        ts_labels = map_to_grid_exactly(ts_labels, ct, what="TotalSegmentator labels")
    raw = np.asarray(ts_labels.array)
    if np.issubdtype(raw.dtype, np.floating):
        raw = np.rint(raw)
    raw = raw.astype(np.int64)
    verse = totalseg_to_verse(raw)
    mask = ts_labels.with_array(verse.astype(mask_dtype(np.unique(verse).tolist())))
    notes = []
    s1 = int(np.count_nonzero(raw == 26))
    if s1:
        notes.append(f"TotalSegmentator S1 ({s1} voxels) joined to the sacrum (26)")
    mask, fragments = keep_largest_components(mask)
    mask, dropped = drop_small(mask)
    if dropped:
        notes.append(f"dropped tiny labels {dropped} (< 0.5 ml)")
    centroids = mask_centroids(mask, ct)
    confidence = {v: BASE_CONFIDENCE for v in centroids}
    reasons = {v: ["labelled by TotalSegmentator (trained model; no per-label probability)"] for v in centroids}
    for v, why in fragments.items():
        if v in confidence:
            confidence[v] *= 0.8
            reasons[v].append(why)
    border_penalty(mask, confidence, reasons)
    if not centroids:
        notes.append("TotalSegmentator found no vertebra")
    return EngineResult(mask=mask, centroids_ijk=centroids, confidence=confidence, reasons=reasons,
                        notes=notes, engine=engine)


class TotalSegmentatorEngine(Engine):
    """Runs TotalSegmentator (task ``total``, vertebrae only) and maps its labels to VerSe.

    Options: ``fast`` (3 mm model, default False), ``device`` ("gpu", "cpu", "mps"; default
    "gpu" when CUDA is available), ``roi_subset`` restricted to the vertebrae by default.
    """

    name = "totalsegmentator"

    def __init__(self, fast: bool = False, device: str | None = None):
        self.fast = bool(fast)
        self.device = device

    def check_available(self) -> None:
        check_totalsegmentator()

    def segment(self, ct: Image, progress=None) -> EngineResult:
        check_totalsegmentator()
        from totalsegmentator.python_api import totalsegmentator  # heavy: imported only here

        device = self.device
        if device is None:
            import torch

            device = "gpu" if torch.cuda.is_available() else "cpu"
        names = _vertebra_class_names()
        with tempfile.TemporaryDirectory(prefix="spinelabel-ts-") as tmp:
            src = Path(tmp) / "ct.nii.gz"
            save_nifti(ct, src, dtype=np.float32 if np.issubdtype(ct.array.dtype, np.floating) else np.int16)
            out = Path(tmp) / "seg.nii.gz"
            if progress:
                progress(0.05, "running TotalSegmentator")
            totalsegmentator(str(src), str(out), ml=True, fast=self.fast, task="total", roi_subset=names,
                             device=device, quiet=True)
            ts_labels = load_image(out)
        result = result_from_totalseg(ts_labels, ct, engine=self.name)
        if progress:
            progress(1.0, "done")
        return result


def _vertebra_class_names() -> list[str]:
    """TotalSegmentator v2 class names of the structures this engine keeps."""
    names = {25: "sacrum", 26: "vertebrae_S1"}
    for ts in TOTALSEG_V2_TO_VERSE:
        if ts >= 27:
            from ..labels import name_of

            names[ts] = f"vertebrae_{name_of(TOTALSEG_V2_TO_VERSE[ts])}"
    return [names[k] for k in sorted(names)]


__all__ = ["TotalSegmentatorEngine", "result_from_totalseg", "check_totalsegmentator", "INSTALL_HINT", "SACRUM",
           "is_vertebra"]
