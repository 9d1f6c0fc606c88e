"""Anatomical anchors measured per vertebra segment: ribs, iliac wings (pelvis), the
sacrum, the skull base, and the segment's pitch (disc-to-disc distance).

* **Ribs** (rib counting, cf. Klinder et al. 2009): bone beside the spine at 55-85 mm
  lateral of the canal, near the canal's antero-posterior level, within the segment's
  height, on both sides. Transverse processes end before 55 mm (lumbar ~45-50 mm).
* **Iliac wing**: a large bone area (> 500 mm² per side) 60-130 mm lateral of the canal:
  the pelvis beside L5/sacrum.
* **Sacrum**: the caudal-most segment, with no disc below it, at least 25 mm long, beside
  the iliac wings.
* **Transverse processes**: how far a vertebra's own label reaches sideways from the
  canal, in a band beside and behind it (lumbar: L3's the longest, L1's the shortest).
* **Skull base**: a large bone area (> 2500 mm²) across the slices just above the top
  of the spine curve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...masks import nonzero_bbox
from .discs import STEP_MM, Profile
from .separate import Segment
from .spine import SpineCurves

RIB_LATERAL_MM = (55.0, 85.0)
ILIUM_LATERAL_MM = (60.0, 130.0)


@dataclass
class SegmentFeatures:
    rib: float  # 0..1, both sides
    rib_sides: tuple[float, float]
    ilium: float  # 0..1
    pitch_mm: float | None  # disc-to-disc distance for complete segments
    length_mm: float
    z_range: tuple[int, int]  # working slices covered
    at_fov_edge: bool
    #: probability that its facet joints with the segment above are sagittal (lumbar
    #: type); None where not measured (see :mod:`.facets`)
    facet_sagittal: float | None = None
    #: how far (mm) its transverse processes reach from the canal axis (mean of the sides
    #: measured); None where not measured (see :func:`transverse_reach`)
    tp_reach_mm: float | None = None
    #: strength of the disc above it relative to the discs above that (``discs.disc_strengths``);
    #: None where it has no disc above or fewer than two discs lie above that one
    disc_above_strength: float | None = None
    #: for a top piece cut by the view: its midline bone area over the next piece's
    #: (``top_segment_bone_mm2``; a fragment of the skull base is far bigger); None otherwise
    top_bone_ratio: float | None = None


def _side_fraction(bone: np.ndarray, curves: SpineCurves, zs: range, s: float, lateral, y_range, min_mm2: float):
    nx, ny, _ = bone.shape
    hits = np.zeros(2)
    seen = np.zeros(2)
    for z in zs:
        zc = min(max(z, curves.z_lo), curves.z_hi)
        cx, cy = curves.canal[zc]
        y0, y1 = int(max(0, cy + y_range[0] / s)), int(min(ny, cy + y_range[1] / s))
        for k, sign in enumerate((1, -1)):
            a, b = cx + sign * lateral[0] / s, cx + sign * lateral[1] / s
            x0, x1 = int(max(0, min(a, b))), int(min(nx, max(a, b)))
            if x1 - x0 < 0.6 * (lateral[1] - lateral[0]) / s or y1 <= y0:
                continue  # outside the field of view: no evidence
            seen[k] += 1
            if bone[x0:x1, y0:y1, z].sum() * s * s >= min_mm2:
                hits[k] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(seen > 0, hits / np.maximum(seen, 1), np.nan)
    return frac


def segment_features(bone: np.ndarray, curves: SpineCurves, profile: Profile, segments: list[Segment],
                     s: float) -> list[SegmentFeatures]:
    out = []
    nz = bone.shape[2]
    for seg in segments:
        zs_f = profile.points[seg.start:seg.end + 1, 2]
        za, zb = int(np.floor(zs_f.min())), int(np.ceil(zs_f.max()))
        shrink = int(0.15 * (zb - za))
        zs = range(max(0, za + shrink), min(nz, zb - shrink + 1))
        rib_sides = _side_fraction(bone, curves, zs, s, RIB_LATERAL_MM, (-45.0, 35.0), 12.0)
        ilium_sides = _side_fraction(bone, curves, zs, s, ILIUM_LATERAL_MM, (-50.0, 70.0), 500.0)
        rs = rib_sides[np.isfinite(rib_sides)]
        rib = float(rs.min()) if rs.size == 2 else float(rs[0]) * 0.8 if rs.size == 1 else 0.5
        il = ilium_sides[np.isfinite(ilium_sides)]
        ilium = float(il.mean()) if il.size else 0.0
        length = (seg.end - seg.start) * STEP_MM
        edge = (not seg.cranial_disc) or (not seg.caudal_disc)
        out.append(SegmentFeatures(rib, tuple(float(x) for x in rib_sides), ilium,
                                   length if seg.complete else None, length, (za, zb), edge))
    return out


def skull_above(bone: np.ndarray, curves: SpineCurves, profile: Profile, s: float) -> float:
    """Largest bone area (mm²) in the slices 0-40 mm above the top of the spine curve, near the midline."""
    if len(profile.points) == 0:
        return 0.0
    top = profile.points[0]
    nx, ny, nz = bone.shape
    z0 = int(np.ceil(top[2]))
    best = 0.0
    cx, cy = curves.canal[curves.z_hi]
    x0, x1 = int(max(0, cx - 70 / s)), int(min(nx, cx + 70 / s))
    y0, y1 = int(max(0, cy - 80 / s)), int(min(ny, cy + 80 / s))
    if (nz - z0) * s < 10.0:
        return 0.0  # the spine runs out of the field of view: nothing is known above it
    x0, x1 = int(max(0, cx - 50 / s)), int(min(nx, cx + 50 / s))
    areas = [float(bone[x0:x1, y0:y1, z].sum()) * s * s for z in range(z0, min(nz, z0 + int(40 / s)))]
    # a skull base is big in several consecutive slices
    run = 0
    for a in areas:
        run = run + 1 if a >= 2500.0 else 0
        if run * s >= 4.5:
            best = max(best, a)
    return best


def top_segment_bone_mm2(bone: np.ndarray, curves: SpineCurves, profile: Profile, seg: Segment, s: float) -> float:
    """Median bone area (mm²) near the midline over the central slices of ``seg``: a skull
    piece caught at the top of the curve is far larger than any vertebra (> 2500 mm²)."""
    nx, ny, nz = bone.shape
    zs_f = profile.points[seg.start:seg.end + 1, 2]
    za, zb = int(np.floor(zs_f.min())), int(np.ceil(zs_f.max()))
    shrink = int(0.2 * (zb - za))
    areas = []
    for z in range(max(0, za + shrink), min(nz, zb - shrink + 1)):
        zc = min(max(z, curves.z_lo), curves.z_hi)
        cx, cy = curves.canal[zc]
        x0, x1 = int(max(0, cx - 50 / s)), int(min(nx, cx + 50 / s))
        y0, y1 = int(max(0, cy - 80 / s)), int(min(ny, cy + 80 / s))
        areas.append(float(bone[x0:x1, y0:y1, z].sum()) * s * s)
    return float(np.median(areas)) if areas else 0.0


#: Antero-posterior band (mm from the canal centre, + anterior) holding the transverse
#: processes (they leave the pedicle-lamina junction, beside and a little behind the canal)
TP_BAND_MM = (-25.0, 10.0)
#: A side is measured only if the grid reaches this far (mm) beyond the canal axis on it.
TP_VIEW_MM = 60.0


def transverse_reach(lab: np.ndarray, curves: SpineCurves, s: float, n_seg: int) -> np.ndarray:
    """(n_seg,) how far (mm) each vertebra (label k + 1 of ``lab``; working grid, axes +R,
    +A, +S, ``s`` mm voxels) reaches sideways from the canal axis within ``TP_BAND_MM``:
    the tips of its transverse processes (a rib flooded into the label reaches further).
    The mean of the two sides where the grid extends ``TP_VIEW_MM`` beyond the canal on
    both, else the one side that does; NaN where neither does or the label is empty.

    Why: the lumbar transverse processes differ in length by level (L3's the longest in
    about two thirds of spines, L1's the shortest), which places a lumbar view that has no
    sacrum or ribs to count from (see :mod:`.labelling`)."""
    out = np.full(n_seg, np.nan)
    idx = np.argwhere(lab > 0)
    if n_seg == 0 or idx.size == 0:
        return out
    nx = lab.shape[0]
    zc = np.clip(idx[:, 2], curves.z_lo, curves.z_hi)
    cx, cy = curves.canal[zc, 0], curves.canal[zc, 1]
    dy = (idx[:, 1] - cy) * s
    keep = (dy >= TP_BAND_MM[0]) & (dy <= TP_BAND_MM[1]) & np.isfinite(cx)
    idx, cx = idx[keep], cx[keep]
    k = lab[tuple(idx.T)].astype(int) - 1
    ok = (k >= 0) & (k < n_seg)
    idx, cx, k = idx[ok], cx[ok], k[ok]
    dx = (idx[:, 0] - cx) * s  # mm from the canal axis, + right
    reach = np.zeros((n_seg, 2))
    np.maximum.at(reach[:, 0], k[dx > 0], dx[dx > 0])  # right (+x)
    np.maximum.at(reach[:, 1], k[dx < 0], -dx[dx < 0])  # left
    for j in range(n_seg):
        mine = k == j
        if not mine.any():
            continue
        c = float(np.median(cx[mine]))  # the canal's i beside this vertebra
        seen = np.array([(nx - 1 - c) * s >= TP_VIEW_MM, c * s >= TP_VIEW_MM])
        if seen.any():
            out[j] = float(reach[j][seen].mean())
    return out


#: A bone piece counts as a rib when it reaches this far (mm) from the canal axis...
RIB_REACH_MM = 40.0
#: ...and is smaller than this (ml): bigger pieces are pelvis, scapula or sternum-rib cages.
RIB_MAX_ML = 60.0
RIB_MIN_ML = 0.15
#: A vertebra's own label reaching this far (mm) from the canal axis on BOTH sides, with at
#: least LABEL_RIB_ML (ml) per side out there, holds its rib pair (transverse processes end
#: before ~50 mm; iliac bone leaking into the sacrum's label is one-sided).
LABEL_RIB_MM = 50.0
LABEL_RIB_ML = 0.5
#: A piece touching several vertebrae (this many voxel faces each) is split among them...
MIN_CONTACT = 8
SPLIT_FUSED_RIBS = True
#: ...after removing, from pieces too big for a rib, what is thicker than twice this (mm).
THICK_MM = 4.5
#: A rib piece touching no vertebra joins the nearest one within this distance (mm).
NEAR_RIB_MM = 8.0


def attached_ribs(bone: np.ndarray, lab: np.ndarray, curves: SpineCurves, s: float, n_seg: int) -> np.ndarray:
    """(n_seg, 2) bool: does a rib articulate with vertebra k (label k + 1 of ``lab``) on
    the right (column 0, +x) / left (column 1) side?

    Rib counting by attachment, not by what lies beside a vertebra's height: ribs slope
    caudally, so at the height of L1 one sees the 10th-12th ribs of thoracic vertebrae.
    Bone that the separation left unlabelled (``bone & lab == 0``; working grid, axes
    +R, +A, +S, ``s`` mm voxels) is split into connected pieces; a piece reaching
    ``RIB_REACH_MM`` from the canal axis and of rib size is a rib, assigned on its side
    to the vertebra it touches most (a rib head touches two bodies and one transverse
    process; the most contact is its own vertebra's transverse process and body). A rib
    pair the separation flooded into its vertebra's own label (the short first rib) shows
    as that label reaching beyond ``LABEL_RIB_MM`` on both sides.

    Real chest CT (measured on lidc0001, where T1 and T12 were missed and every level was a
    guess): contrast-filled heart and aorta are above the bone level and join the ribs of
    many levels into one piece far bigger than a rib, so from such pieces what an opening
    keeps (thicker than 2 x ``THICK_MM``) is removed first; ribs still joined to each other
    are split among the vertebrae they touch (``_fused_rib_parts``); and a rib piece
    touching none (a thin 12th rib, the joint space wider than a working voxel) joins the
    nearest vertebra within ``NEAR_RIB_MM``.
    """
    out = np.zeros((n_seg, 2), dtype=bool)
    if n_seg == 0 or not lab.any():
        return out
    from scipy import ndimage

    lo, hi = nonzero_bbox(lab)
    pad = int(round(RIB_REACH_MM / s)) + 2
    box = tuple(slice(max(0, b0 - (pad if a < 2 else 2)), min(lab.shape[a], b1 + (pad if a < 2 else 2)))
                for a, (b0, b1) in enumerate(zip(lo, hi)))
    L = lab[box]
    zs = np.arange(box[2].start, box[2].stop)
    zc = np.clip(zs, curves.z_lo, curves.z_hi)
    cx = curves.canal[zc, 0]
    xs = np.arange(box[0].start, box[0].stop)
    out[_ribs_inside_labels(L, xs, cx, s, n_seg)] = True
    other = bone[box] & (L == 0)
    comp, n = ndimage.label(other, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return out
    sizes = np.bincount(comp.ravel()) * (s ** 3) / 1000.0
    big = np.flatnonzero(sizes[1:] > RIB_MAX_ML) + 1
    if big.size and THICK_MM > 0:
        # contrast-filled heart and aorta, kidneys: thick structures above the bone level
        # that join the ribs of many levels into one piece; what stays after an opening
        # (and a voxel around it) is not rib
        r = max(1, int(round(THICK_MM / s)))
        thick = ndimage.binary_dilation(ndimage.binary_opening(np.isin(comp, big), iterations=r), iterations=1)
        other &= ~thick
        comp, n = ndimage.label(other, structure=np.ones((3, 3, 3), bool))
        if n == 0:
            return out
        sizes = np.bincount(comp.ravel()) * (s ** 3) / 1000.0
    # contact: vertebra voxels next to an unlabelled-bone voxel, per (component, vertebra)
    contact = np.zeros((n + 1, n_seg + 1), dtype=np.int64)
    for ax in range(3):
        for sh in (1, -1):
            a = np.roll(comp, sh, axis=ax)
            m = (a > 0) & (L > 0)
            # np.roll wraps around: ignore the wrapped layer
            sl = [slice(None)] * 3
            sl[ax] = 0 if sh == 1 else -1
            m[tuple(sl)] = False
            np.add.at(contact, (a[m], L[m].astype(np.int64)), 1)
    # reach: farthest lateral distance from the canal axis of each component
    reach = np.zeros(n + 1)
    side_sum = np.zeros(n + 1)
    idx = np.nonzero(comp)
    lbl = comp[idx]
    dx = (xs[idx[0]] - cx[idx[2]]) * s
    np.maximum.at(reach, lbl, np.abs(dx))
    np.add.at(side_sum, lbl, np.sign(dx))
    objects = ndimage.find_objects(comp)
    side_of = (side_sum <= 0).astype(int)  # 0: right (+x), 1: left, per component
    for c in range(1, n + 1):
        if sizes[c] < RIB_MIN_ML or reach[c] < RIB_REACH_MM:
            continue
        row = contact[c, 1:]
        if row.max() < 2:
            if sizes[c] <= RIB_MAX_ML and NEAR_RIB_MM > 0:
                # a thin rib (the 11th, 12th) with a joint gap to its vertebra at this grid
                k = _nearest_vertebra(comp, c, objects[c - 1], L, int(np.ceil(NEAR_RIB_MM / s)))
                if k is not None:
                    out[k, side_of[c]] = True
            continue
        if sizes[c] <= RIB_MAX_ML and np.count_nonzero(row >= MIN_CONTACT) <= 1:
            k = int(np.argmax(row))
            out[k, side_of[c]] = True
            continue
        if not SPLIT_FUSED_RIBS:
            if sizes[c] <= RIB_MAX_ML:
                out[int(np.argmax(row)), side_of[c]] = True
            continue
        # ribs fused with each other (or with the scapula) at this grid: one piece touching
        # several vertebrae. Split it by which vertebra each voxel is nearest to along the
        # bone itself, and test each part as a rib of its own
        sub = tuple(slice(max(0, b.start - 1), min(n_ax, b.stop + 1)) for b, n_ax in zip(objects[c - 1], L.shape))
        for k, side in _fused_rib_parts(comp[sub] == c, L[sub], xs[sub[0]], cx[sub[2]], s, n_seg):
            out[k, side] = True
    return out


def _nearest_vertebra(comp: np.ndarray, c: int, sub, L: np.ndarray, steps: int) -> int | None:
    """0-based index of the vertebra label of ``L`` nearest to piece ``c`` of ``comp``
    (bounding box ``sub``), reached within ``steps`` voxel dilations; None if none is."""
    from scipy import ndimage

    box = tuple(slice(max(0, b.start - steps), min(n, b.stop + steps)) for b, n in zip(sub, comp.shape))
    grown = comp[box] == c
    lab = L[box]
    for _ in range(steps):
        grown = ndimage.binary_dilation(grown)
        hit = lab[grown]
        hit = hit[hit > 0]
        if hit.size:
            return int(np.bincount(hit.astype(np.int64)).argmax()) - 1
    return None


def _fused_rib_parts(piece: np.ndarray, L: np.ndarray, xs: np.ndarray, cx: np.ndarray, s: float, n_seg: int):
    """(vertebra index, side) of each rib in a bone ``piece`` (bool, in a box of the
    working-grid label map ``L``, axes +R, +A, +S; the box's x indices are ``xs`` and its
    slices have the canal at x = ``cx``) that
    touches several vertebrae: each voxel goes to the vertebra nearest to it along the piece
    (multi-source Dijkstra from the voxels touching each vertebra); a part is a rib when it
    is of rib size, reaches ``RIB_REACH_MM`` from the canal axis and touches its vertebra."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    coords = np.argwhere(piece)
    m = len(coords)
    index = np.full(piece.shape, -1, dtype=np.int64)
    index[tuple(coords.T)] = np.arange(m)
    rows, cols, weights = [], [], []
    for off in [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) > (0, 0, 0)]:
        q = coords + off
        ok = np.all((q >= 0) & (q < piece.shape), axis=1)
        j = np.full(m, -1, dtype=np.int64)
        j[ok] = index[tuple(q[ok].T)]
        keep = j >= 0
        rows.append(np.flatnonzero(keep))
        cols.append(j[keep])
        weights.append(np.full(int(keep.sum()), s * float(np.linalg.norm(off))))
    # one extra node per vertebra, joined to the piece's voxels that touch it (6-neighbours)
    touching = np.zeros(m, dtype=np.int64)
    for ax in range(3):
        for sh in (1, -1):
            q = coords.copy()
            q[:, ax] += sh
            ok = (q[:, ax] >= 0) & (q[:, ax] < piece.shape[ax])
            v = np.zeros(m, dtype=np.int64)
            v[ok] = L[tuple(q[ok].T)]
            touching = np.where(touching == 0, v, touching)
    src = np.flatnonzero(touching > 0)
    if src.size == 0:
        return []
    rows.append(m + touching[src] - 1)
    cols.append(src)
    weights.append(np.full(src.size, 1e-9))
    g = csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(m + n_seg, m + n_seg))
    seeds = np.unique(m + touching[src] - 1)
    _d, _pred, nearest = dijkstra(g, directed=False, indices=seeds, min_only=True, return_predecessors=True)
    owner = nearest[:m] - m  # vertebra index (0-based) of every voxel; < 0 where unreachable
    dx = (xs[coords[:, 0]] - cx[coords[:, 2]]) * s
    out = []
    for k in np.unique(owner[owner >= 0]):
        for side, on_side in ((0, dx > 0), (1, dx < 0)):
            # each side of a part on its own: a part may hold both ribs of its vertebra
            # (joined in front through the sternum, or behind through vessels)
            part = (owner == k) & on_side
            ml = part.sum() * s ** 3 / 1000.0
            reach = float(np.abs(dx[part]).max()) if part.any() else 0.0
            touch = int(np.count_nonzero(part & (touching == k + 1)))
            if RIB_MIN_ML <= ml <= RIB_MAX_ML and reach >= RIB_REACH_MM and touch >= 2:
                out.append((int(k), side))
    return out


def _ribs_inside_labels(L: np.ndarray, xs: np.ndarray, cx: np.ndarray, s: float, n_seg: int) -> np.ndarray:
    """(n_seg,) bool: vertebra labels (1..n_seg in ``L``, a box whose x indices are ``xs``
    and whose slices have the canal at x = ``cx``) that hold a rib pair. A short rib (the
    first rib arcs within ~60 mm of the canal) may be flooded into its own vertebra's label
    by the separation; then the label reaches beyond any transverse process on both sides."""
    dx = (xs[:, None] - cx[None, :]) * s  # (x, z) lateral offset from the canal axis, mm

    def volume_ml(far: np.ndarray) -> np.ndarray:
        sel = (L > 0) & far[:, None, :]
        return np.bincount(L[sel].astype(np.int64), minlength=n_seg + 1)[1:n_seg + 1] * s ** 3 / 1000.0

    right, left = volume_ml(dx >= LABEL_RIB_MM), volume_ml(dx <= -LABEL_RIB_MM)
    return (np.minimum(right, left) >= LABEL_RIB_ML) & (np.maximum(right, left) <= RIB_MAX_ML)
