"""Facet-joint orientation at each intervertebral level: the thoracolumbar transition.

Thoracic facet joints lie in the coronal plane (the superior articular process in front
of the inferior one of the vertebra above), lumbar ones in the sagittal plane (the
superior process beside it). The transitional vertebra (T12, or T13 when present) has
thoracic superior and lumbar inferior processes, so the last coronal joint is the one
above it, whether or not it carries ribs.

Why the engine looks at them: without a cranial anchor, rib counting cannot tell a
rib-less T12 (a missing 12th rib pair) from L1 one level lower, nor L6 from a missing
12th rib. The joint above that rib-less vertebra can: coronal makes it T12, sagittal L1.

Measurement, per segment with a disc above it, in the plane of that disc (perpendicular
to the body curve; axes: lateral, anterior, along the curve, in mm from the canal
centre): a joint space is a thin dark gap (1-3 mm) between two bright bony plates. The
INPUT CT is sampled there at 0.5 mm (the working grid is too coarse for the gap), and the
gaps are counted across the lateral axis (a sagittal joint) and across the antero-
posterior axis (a coronal joint), in windows 5-24 mm either side of the canal, from 16
mm behind to 6 mm in front of its centre, over +-30 % of the pitch along the curve. An
input too coarse across that plane (a voxel over 1.6 mm along either in-plane axis, e.g.
3 mm slices, or 2 mm and more in-plane) gives no measurement.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ...image import Image, apply_affine
from .discs import STEP_MM, Profile
from .separate import Segment, frame_across_curve
from .spine import SpineCurves

#: Sampling step (mm) in the disc plane, and the gap half-widths tried (in steps).
STEP = 0.5
GAP_STEPS = (1, 2, 3)
#: Both plates brighter than this (HU), the gap darker than both by at least GAP_HU.
PLATE_HU = 250.0
GAP_HU = 100.0
#: Lateral window (mm from the canal centre, either side) and antero-posterior window (mm,
#: + anterior) where the articular processes lie.
LATERAL_MM = (5.0, 24.0)
AP_MM = (-16.0, 6.0)
#: Half-height of the sampled slab, as a share of the pitch (a cut segment: PARTIAL_PITCH_MM).
SLAB_SHARE = 0.3
PARTIAL_PITCH_MM = 30.0
#: The input must resolve this (mm) along both in-plane axes of the disc plane.
MAX_EXTENT_MM = 1.6
#: Fewer gap samples than this: no joint seen (osteoporotic, fused, out of view).
MIN_GAP_SAMPLES = 40
#: Orientation score (-1 coronal .. +1 sagittal) -> probability of a sagittal joint.
SCORE_SCALE = 0.15


def joints_sagittal(ct: Image, work_affine: np.ndarray, curves: SpineCurves, profile: Profile,
                    segments: list[Segment], s: float) -> list[float | None]:
    """Per segment (head to feet): the probability that its facet joints with the segment
    above are sagittal (lumbar type), or None where not measured (no disc above, no canal
    found in the disc plane, the input too coarse, no joint space seen).

    ``work_affine`` maps the working grid's (i, j, k) voxels (RAS-aligned, isotropic ``s``
    mm) to world RAS mm; ``profile`` and ``curves`` are in those voxels."""
    out: list[float | None] = []
    for seg in segments:
        if not seg.cranial_disc:
            out.append(None)
            continue
        pitch = seg.length * STEP_MM if seg.complete else PARTIAL_PITCH_MM
        counts = _gap_counts(ct, work_affine, curves, profile, seg.start, pitch, s)
        if counts is None or sum(counts) < MIN_GAP_SAMPLES:
            out.append(None)
            continue
        n_sag, n_cor = counts
        score = (n_sag - n_cor) / (n_sag + n_cor)
        out.append(1.0 / (1.0 + math.exp(-score / SCORE_SCALE)))
    return out


def _extent_along(ct: Image, d: np.ndarray) -> float:
    """Width (mm) of one input voxel along the world unit direction ``d``."""
    m = ct.affine[:3, :3]
    return float(np.abs(d @ m).sum())


def _gap_counts(ct: Image, work_affine, curves, profile, at: int, pitch_mm: float, s: float):
    """(sagittal, coronal) joint-space sample counts around profile index ``at`` (a disc);
    the samples ``v`` are indexed (along the curve, lateral, anterior) in the disc's frame."""
    frame = frame_across_curve(curves, profile, at, s)
    if frame is None:
        return None
    c, t, ant, lat = frame
    if max(_extent_along(ct, lat), _extent_along(ct, ant)) > MAX_EXTENT_MM:
        return None
    h = SLAB_SHARE * pitch_mm
    along = np.arange(-h, h + 1e-6, 1.0)
    lateral = np.arange(-LATERAL_MM[1] - 2, LATERAL_MM[1] + 2 + 1e-6, STEP)
    anterior = np.arange(AP_MM[0] - 2, AP_MM[1] + 2 + 1e-6, STEP)
    g = np.stack(np.meshgrid(along, lateral, anterior, indexing="ij"))  # (3, n_along, n_lat, n_ant) mm
    centre_ras = apply_affine(work_affine, c[None])[0]  # the canal centre, world RAS mm
    points_ras = centre_ras[:, None] + np.column_stack([t, lat, ant]) @ g.reshape(3, -1)  # (3, n) mm
    ijk_input = apply_affine(np.linalg.inv(ct.affine), points_ras.T).T  # (3, n) input voxel indices
    v = ndimage.map_coordinates(ct.array, ijk_input, order=1, cval=-1000.0, output=np.float32).reshape(g.shape[1:])
    in_lat = (np.abs(lateral) >= LATERAL_MM[0]) & (np.abs(lateral) <= LATERAL_MM[1])
    in_ant = (anterior >= AP_MM[0]) & (anterior <= AP_MM[1])
    window = in_lat[None, :, None] & in_ant[None, None, :]
    n_sag = n_cor = 0
    for d in GAP_STEPS:
        n_sag += int((_gaps(v, 1, d) & window[:, d:-d, :]).sum())  # dark across the lateral axis
        n_cor += int((_gaps(v, 2, d) & window[:, :, d:-d]).sum())  # dark across the AP axis
    return n_sag, n_cor


def _gaps(v: np.ndarray, axis: int, d: int) -> np.ndarray:
    """Samples (trimmed by ``d`` on ``axis``) darker by GAP_HU than both samples ``d``
    steps away along ``axis``, those two being bone."""
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    mid = [slice(None)] * 3
    lo[axis], hi[axis], mid[axis] = slice(0, -2 * d), slice(2 * d, None), slice(d, -d)
    plates = np.minimum(v[tuple(lo)], v[tuple(hi)])
    return (plates > PLATE_HU) & (plates - v[tuple(mid)] > GAP_HU)
