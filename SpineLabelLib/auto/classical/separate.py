"""Separation of the spine's bone into whole vertebrae (body + posterior elements).

Markers: the core of each vertebral body (the body-curve points between two detected
discs, away from the endplates, widened to a ball of filled bone) and, optionally, its
pedicles and laminae in the plane of the body's mid-level. A competing marker
holds bone that cannot belong to a vertebra (far lateral: ribs and iliac wings; far
anterior: sternum; far posterior). A marker-controlled watershed on the inverted CT
then floods the bone mask from these markers: posterior elements join their own body
through the pedicles, and the low-density joint spaces (facet, costovertebral,
sacroiliac) become the borders.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...masks import small_pieces
from .discs import Profile
from .spine import SpineCurves

CORE_RADIUS_MM = 7.0
#: Low-density (marrow-level) voxels count as vertebra only this close to the body curve.
BODY_ZONE_MM = 20.0
#: Beyond these distances from the canal / body centre, bone is not vertebra.
LATERAL_MAX_MM = 58.0
ANTERIOR_MAX_MM = 30.0
POSTERIOR_MAX_MM = 85.0
#: A voxel this much darker (HU) than its neighbours on both sides along an axis is a joint gap.
VALLEY_HU = 100.0
#: Cancellous bone of osteoporotic or elderly patients: part of the vertebra above this HU.
TISSUE_HU = 120.0
#: A vertebra's pieces smaller than this fraction of its largest piece are dropped after the flood.
DEBRIS_FRACTION = 0.15


@dataclass
class Segment:
    start: int  # profile index of the cranial border (disc centre, or curve start)
    end: int  # profile index of the caudal border
    cranial_disc: bool  # bounded cranially by a detected disc
    caudal_disc: bool

    @property
    def complete(self) -> bool:
        return self.cranial_disc and self.caudal_disc

    @property
    def length(self) -> int:
        return self.end - self.start


def segments_from_discs(n: int, discs: list[int], min_partial: int = 4) -> list[Segment]:
    bounds = [0] + list(discs) + [n - 1]
    segs = []
    for i in range(len(bounds) - 1):
        seg = Segment(bounds[i], bounds[i + 1], i > 0, i < len(bounds) - 2)
        if seg.length >= (min_partial if not seg.complete else 4):
            segs.append(seg)
    return segs


def separate(hu: np.ndarray, filled: np.ndarray, curves: SpineCurves, profile: Profile, segments: list[Segment],
             s: float, discs: list[int] | None = None, bone_hu: float = 180.0,
             ring_seeds: bool = False, above_seed: bool = False, faint_arch_hu: float | None = None) -> np.ndarray:
    """Working-grid label map: 1..len(segments) (head to feet), 0 elsewhere.

    ``ring_seeds``: also seed each vertebra's pedicles and laminae in its own frame
    (:func:`_posterior_ring_markers`), so the posterior elements go to their own vertebra.
    The rib anchors are measured on the map without them (the rib contacts with the
    transverse processes the labelling was tuned on); the output mask uses them.

    ``above_seed``: when the view's top lies at the top vertebra's upper endplate, the
    posterior elements of the vertebra above (whose body is out of view) get the label
    :func:`above_label` (:func:`_above_marker`); pieces under ABOVE_MIN_MM3 are dropped.

    ``faint_arch_hu``: thin posterior elements fainter than ``bone_hu`` count as bone down
    to this HU (:func:`faint_arch_bone`; for thick slices, whose partial volume dims them)."""
    from skimage.segmentation import watershed

    nx, ny, nz = hu.shape
    markers = np.zeros(hu.shape, dtype=np.int32)
    r = max(1, int(round(CORE_RADIUS_MM / s)))
    ball = _ball(r)
    for idx, seg in enumerate(segments, start=1):
        g = max(3, int(0.25 * seg.length))
        lo, hi = seg.start + g, seg.end - g
        if hi < lo:
            lo = hi = (seg.start + seg.end) // 2
        for p in profile.points[lo:hi + 1]:
            c = np.round(p).astype(int)
            sl = tuple(slice(max(0, c[a] - r), min(hu.shape[a], c[a] + r + 1)) for a in range(3))
            bsl = tuple(slice(sl[a].start - (c[a] - r), sl[a].stop - (c[a] - r)) for a in range(3))
            region = markers[sl]
            region[ball[bsl] & (region == 0)] = idx
    above = above_label(len(segments))
    if ring_seeds or above_seed:
        bone = hu > bone_hu
        if ring_seeds:
            _posterior_ring_markers(markers, bone, curves, profile, segments, s)
        if above_seed:
            _above_marker(markers, bone, curves, profile, segments, s, above)
        del bone
    # cancellous bone: above a level between the marrow seen along the body curve and
    # muscle (elderly marrow can be ~100 HU, below any fixed bone threshold)
    marrow = float(np.median(profile.hu)) if len(profile.hu) else 200.0
    tissue_hu = float(np.clip(0.5 * (marrow + 30.0), 70.0, TISSUE_HU))
    tissue = filled | (hu > bone_hu) | ((hu > tissue_hu) & _body_zone(hu.shape, profile, s))
    if faint_arch_hu is not None:
        tissue |= faint_arch_bone(hu, curves, s, bone_hu, faint_arch_hu)
    _remove_discs(tissue, hu, profile, discs, s, bone_hu)
    markers[~tissue] = 0
    other = len(segments) + 1
    # ROI relative to the curves, per slice
    z0, z1 = curves.z_lo, curves.z_hi
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    roi = np.zeros(hu.shape, dtype=bool)
    far = np.zeros(hu.shape, dtype=bool)
    margin = int(round(15.0 / s))
    for z in range(max(0, z0 - margin), min(nz, z1 + margin + 1)):
        zc = min(max(z, z0), z1)
        cx, cy = curves.canal[zc]
        bx, by = curves.body[zc]
        dx = np.abs(xs - cx) * s
        inside = (dx <= LATERAL_MAX_MM + 25) & ((ys - by) * s <= ANTERIOR_MAX_MM + 20) & ((cy - ys) * s <= POSTERIOR_MAX_MM + 20)
        core = (dx <= LATERAL_MAX_MM) & ((ys - by) * s <= ANTERIOR_MAX_MM) & ((cy - ys) * s <= POSTERIOR_MAX_MM)
        roi[:, :, z] = inside
        far[:, :, z] = inside & ~core
    region = tissue & roi
    markers[far & region & (markers == 0)] = other
    if not region.any():
        return np.zeros(hu.shape, dtype=np.uint8)
    box = ndimage.find_objects(region.astype(np.uint8))[0]
    # Elevation: every voxel denser than marrow is one plateau (flooded breadth-first,
    # i.e. by geodesic distance from the markers); darker voxels (joint spaces, partial
    # volume at fat planes) are higher and flood last, so they become the borders.
    elevation = -np.minimum(hu[box], tissue_hu + 60.0)
    # thin dark gaps between two bright plates (facet and costovertebral joints, a vessel
    # wall against the cortex) are blurred into the plateau on the working grid; lift them
    # so they flood last and become borders
    elevation[_valley_depth(hu[box]) > VALLEY_HU] = -tissue_hu
    lab = watershed(elevation, markers[box], mask=region[box])
    out = np.zeros(hu.shape, dtype=np.uint8)
    lab[lab == other] = 0
    out[box] = lab.astype(np.uint8)
    _drop_thick_appendages(out, markers, curves, len(segments), s)
    above_piece = out == above
    if above_piece.sum() * s ** 3 < ABOVE_MIN_MM3:
        out[above_piece] = 0
    del above_piece
    # each vertebra: its component(s) that touch its marker
    for idx in list(range(1, len(segments) + 1)) + [above]:
        objs = ndimage.find_objects((out == idx).astype(np.uint8))
        if not objs or objs[0] is None:
            continue
        b = objs[0]
        pieces, small = small_pieces(out[b] == idx, DEBRIS_FRACTION)
        if small.any():
            out[b][small[pieces]] = 0
    return out


#: Half-extent (mm) of the posterior-ring seed around the canal centre: lateral (pedicles,
#: laminae; the rib joints on the transverse processes lie beyond it) and posterior (laminae
#: only: the spinous process of the vertebra above slants down past this level further back).
RING_LATERAL_MM = 14.0
RING_POSTERIOR_MM = 20.0
#: How far (mm) in front of the canal centre the seed reaches (the pedicles' roots).
RING_ANTERIOR_MM = 8.0


def _posterior_ring_markers(markers: np.ndarray, bone: np.ndarray, curves: SpineCurves, profile: Profile,
                            segments: list[Segment], s: float) -> None:
    """Seed each vertebra's pedicles and laminae, in place: the bone around the spinal canal
    in the plane through the body's mid-level perpendicular to the body curve's tangent.

    Why: flooded from the body core alone, the posterior elements (which slant caudally and
    lie level with the disc below or the next body) are reached as soon from the neighbour
    as from their own body. At a body's mid-level, in the vertebra's own frame (not an axial
    slice, which tilts through two vertebrae in kyphosis or lordosis), the ring around the
    canal is that vertebra's pedicles and laminae. Working grid (i, j, k) = (+R, +A, +S)
    voxels; the grid is isotropic, so the tangent (a world direction) is also a voxel one."""
    half = 0.75  # voxels each side of the plane: a one-voxel-thick slab
    for idx, seg in enumerate(segments, start=1):
        if seg.length < 8:  # a piece cut by the field of view: no reliable mid-level
            continue
        frame = frame_across_curve(curves, profile, (seg.start + seg.end) // 2, s)
        if frame is None:
            continue
        c, t, ant, lat = frame
        R = int(np.ceil(max(RING_LATERAL_MM, RING_POSTERIOR_MM) / s)) + 2
        lo = np.maximum(np.floor(c - R).astype(int), 0)
        hi = np.minimum(np.ceil(c + R).astype(int) + 1, np.asarray(bone.shape))
        if np.any(hi <= lo):
            continue
        g = np.mgrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
        rel = g - c[:, None, None, None].astype(np.float32)
        along = np.tensordot(t.astype(np.float32), rel, axes=1)
        a = np.tensordot(ant.astype(np.float32), rel, axes=1) * s
        l = np.tensordot(lat.astype(np.float32), rel, axes=1) * s
        seed = (np.abs(along) <= half) & (np.abs(l) <= RING_LATERAL_MM) & (a <= RING_ANTERIOR_MM) & (a >= -RING_POSTERIOR_MM)
        sub = markers[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        sub[seed & bone[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] & (sub == 0)] = idx


def above_label(n_segments: int) -> int:
    """Working label of the vertebra above the view's top one (posterior elements only):
    after the segments 1..n and the competing marker n + 1."""
    return n_segments + 2


#: The top segment, cut by the view, must reach this fraction of its neighbour's pitch for the
#: view's top to lie at its upper endplate (where the posterior arch is the vertebra above's).
ABOVE_MIN_EXTENT = 0.8
#: The marker spans the top ABOVE_ZONE of that pitch, this far (mm) to either side of the
#: midline, and from ABOVE_POSTERIOR_MM[0] to [1] behind the canal centre (laminae, spinous process).
ABOVE_ZONE = 0.3
ABOVE_LATERAL_MM = 5.0
ABOVE_POSTERIOR_MM = (7.0, 40.0)
#: Smaller pieces (mm³) of the vertebra above are dropped (a few voxels of noise, not a vertebra).
ABOVE_MIN_MM3 = 300.0


def _above_marker(markers: np.ndarray, bone: np.ndarray, curves: SpineCurves, profile: Profile,
                  segments: list[Segment], s: float, value: int) -> bool:
    """Seed the posterior elements of the vertebra above the view's top vertebra with
    ``value``, in place, when the view's top lies at that vertebra's upper endplate; returns
    whether any seed was placed.

    Why: the laminae and the spinous process slant caudally, so at the level of a body's
    upper endplate and pedicles, the bone behind the canal in the midline belongs to the
    vertebra above (its laminae and spinous process; the body's own spinous process lies
    lower). When the field of view cuts just above a body, that vertebra's body is out of
    view but its posterior elements are not, and flooded from below they would join the body
    they touch. Working grid (i, j, k) = (+R, +A, +S) voxels; profile index 0 is the top."""
    if len(segments) < 2 or segments[0].cranial_disc or not segments[1].complete:
        return False
    from .discs import STEP_MM

    nz = bone.shape[2]
    pitch_mm = segments[1].length * STEP_MM
    top_mm = segments[0].length * STEP_MM + (nz - 1 - curves.z_hi) * s  # visible height above its caudal disc
    if top_mm < ABOVE_MIN_EXTENT * pitch_mm:
        return False
    z_disc = float(profile.points[segments[0].end][2])
    z_from = int(np.ceil(z_disc + (1.0 - ABOVE_ZONE) * pitch_mm / s))
    placed = False
    xs = np.arange(bone.shape[0])[:, None]
    ys = np.arange(bone.shape[1])[None, :]
    for z in range(max(0, z_from), nz):
        cx, cy = curves.canal[min(z, curves.z_hi)]
        if not (np.isfinite(cx) and np.isfinite(cy)):
            continue
        behind = (cy - ys) * s
        seed = (np.abs(xs - cx) * s <= ABOVE_LATERAL_MM) & (behind >= ABOVE_POSTERIOR_MM[0]) & (behind <= ABOVE_POSTERIOR_MM[1])
        seed &= bone[:, :, z] & (markers[:, :, z] == 0)
        markers[:, :, z][seed] = value
        placed |= bool(seed.any())
    return placed


def frame_across_curve(curves: SpineCurves, profile: Profile, at: int, s: float):
    """The vertebra's own frame in the plane through the body-curve point ``at`` (a profile
    index) perpendicular to the curve: (canal centre, tangent (to the feet), anterior,
    lateral), the centre in working (i, j, k) voxels, the three unit vectors in voxel
    (= world RAS, the grid being RAS-aligned and isotropic) directions; None when no canal
    point lies in that plane."""
    p, t = profile.points[at], profile.tangent[at]
    c = _canal_in_plane(curves, p, t, s)
    if c is None:
        return None
    ant = (p - c) - np.dot(p - c, t) * t  # from the canal to the body, within the plane
    if np.linalg.norm(ant) < 1e-6:
        return None
    ant /= np.linalg.norm(ant)
    return c, t, ant, np.cross(t, ant)


def _canal_in_plane(curves: SpineCurves, p: np.ndarray, t: np.ndarray, s: float,
                    tol_vox: float = 1.5) -> np.ndarray | None:
    """The canal-centre point (i, j, k working voxels) nearest to the plane through the body
    point ``p`` perpendicular to the unit tangent ``t``, searched over the slices within 25 mm
    of ``p``; None when no tracked canal point lies within ``tol_vox`` of the plane."""
    best, best_d = None, tol_vox
    for z in range(max(curves.z_lo, int(p[2] - 25 / s)), min(curves.z_hi, int(p[2] + 25 / s)) + 1):
        c = np.array([curves.canal[z, 0], curves.canal[z, 1], z], float)
        if not np.all(np.isfinite(c)):
            continue
        d = abs(float(np.dot(t, c - p)))
        if d <= best_d:
            best, best_d = c, d
    return best


#: Erosion radius (mm): only a vertebral body (or a vessel tube beside it) is thicker than twice this.
APPENDAGE_ERODE_MM = 4.5
#: Smallest thick appendage (mm³) dropped from a vertebra.
APPENDAGE_MIN_MM3 = 1500.0


def _drop_thick_appendages(out: np.ndarray, markers: np.ndarray, curves: SpineCurves, n_seg: int, s: float) -> None:
    """Remove thick bright objects flooded into a vertebra through a narrow contact, in place.

    Why: a contrast-filled aorta (or another dense vessel) lying against a vertebral body is
    as bright as bone and touches it, so the body's marker floods it. Eroded by a ball of
    APPENDAGE_ERODE_MM, a vertebra keeps its body core; a vessel tube stays thick and falls
    apart from it at the narrow contact. Eroded pieces anterior of the spinal canal's front
    wall (bodies only live there; posterior elements are thin or behind the canal) that do
    not hold the vertebra's own marker are dropped with what grows back from them.
    Working grid (i, j, k) = (+R, +A, +S)."""
    r = max(1, int(round(APPENDAGE_ERODE_MM / s)))
    ball = _ball(r)
    min_vox = APPENDAGE_MIN_MM3 / s ** 3
    objs = ndimage.find_objects(out)
    for idx in range(1, min(n_seg, len(objs)) + 1):
        if objs[idx - 1] is None:
            continue
        box = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, n in zip(objs[idx - 1], out.shape))
        m = out[box] == idx
        er = ndimage.binary_erosion(m, structure=ball)
        cl, n = ndimage.label(er)
        if n < 2:
            continue
        own = np.zeros(n + 1, bool)
        own[np.unique(cl[er & (markers[box] == idx)])] = True
        own[0] = False
        sizes = np.bincount(cl.ravel(), minlength=n + 1)
        drop = []
        for c in range(1, n + 1):
            if own[c] or sizes[c] < min_vox:
                continue
            _, cj, ck = np.argwhere(cl == c).mean(axis=0) + [b.start for b in box]  # centre (i, j, k)
            zc = int(np.clip(round(ck), curves.z_lo, curves.z_hi))
            if np.isfinite(curves.canal_front[zc]) and cj > curves.canal_front[zc]:  # anterior (+A) of the wall
                drop.append(c)
        if not drop:
            continue
        keep_zone = ndimage.binary_dilation(own[cl], structure=ball)
        gone = ndimage.binary_dilation(np.isin(cl, drop), structure=ball) & m & ~keep_zone
        out[box][gone] = 0


def _remove_discs(tissue: np.ndarray, hu: np.ndarray, profile: Profile, discs: list[int] | None, s: float,
                  bone_hu: float = 180.0) -> None:
    """Clear non-bone voxels in a slab around each disc plane (the disc is not vertebra)."""
    if not discs:
        return
    d = profile.hu
    for i in discs:
        # half thickness: where the profile climbs half-way from the dip to the rims
        rim = max(d[max(0, i - 9):i + 1].max(), d[i:i + 10].max())
        level = 0.5 * (rim + d[i])
        a = i
        while a > 0 and d[a - 1] < level and i - a < 8:
            a -= 1
        b = i
        while b + 1 < len(d) and d[b + 1] < level and b - i < 8:
            b += 1
        half = float(np.clip((b - a + 1) / 2.0, 1.5, 5.0))  # mm (1 mm profile steps)
        centre = profile.points[i]
        normal = profile.tangent[i]
        R = 28.0 / s
        lo = np.maximum(np.floor(centre - R).astype(int), 0)
        hi = np.minimum(np.ceil(centre + R).astype(int) + 1, np.asarray(tissue.shape))
        g = np.mgrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
        rel = g - centre[:, None, None, None].astype(np.float32)
        along = np.tensordot(normal.astype(np.float32), rel, axes=1) * s
        radial = np.sqrt(np.maximum((rel ** 2).sum(axis=0) * s * s - along ** 2, 0))
        slab = (np.abs(along) <= half) & (radial <= 28.0)
        sub = tissue[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        sub[slab & (hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] < bone_hu)] = False


#: Where the posterior elements lie: this far (mm) from the canal centre, in its axial slice.
ARCH_ZONE_MM = (8.0, 45.0)


def faint_arch_bone(hu: np.ndarray, curves: SpineCurves, s: float, bone_hu: float, faint_hu: float) -> np.ndarray:
    """Voxels of thin posterior elements (laminae, pedicles, articular and transverse
    processes) fainter than ``bone_hu``: above ``faint_hu``, ARCH_ZONE_MM from the canal
    centre in its axial slice, at most 2 mm in front of it (the pedicles' roots lie level
    with it; the body has its own zone), and sharing no face with bone above ``bone_hu``
    (that is the partial-volume surface of a thick bone, outside it).

    Why: on thick slices a lamina 2-3 mm thick averages with the soft tissue around it to
    120-180 HU, below the bone threshold, so the flood does not reach the arch beyond it
    (totalseg_example, 3 mm voxels: a third of its arch). Working grid, (i, j, k) = (+R, +A,
    +S) voxels."""
    nx, ny, nz = hu.shape
    out = np.zeros(hu.shape, dtype=bool)
    z0, z1 = max(0, curves.z_lo), min(nz, curves.z_hi + 1)
    if z1 <= z0:
        return out
    xs = np.arange(nx)[:, None]
    ys = np.arange(ny)[None, :]
    for z in range(z0, z1):
        cx, cy = curves.canal[z]
        if not np.isfinite(cx):
            continue
        d = np.hypot(xs - cx, ys - cy) * s
        out[:, :, z] = (d >= ARCH_ZONE_MM[0]) & (d <= ARCH_ZONE_MM[1]) & (ys <= cy + 2.0 / s)
    sl = (slice(None), slice(None), slice(z0, z1))
    h = hu[sl]
    out[sl] &= (h > faint_hu) & ~ndimage.binary_dilation(h > bone_hu)  # face neighbours
    return out


def _body_zone(shape, profile: Profile, s: float) -> np.ndarray:
    """Voxels within BODY_ZONE_MM of the body centre curve."""
    seeds = np.ones(shape, dtype=bool)
    pts = np.round(profile.points).astype(int)
    ok = np.all((pts >= 0) & (pts < np.asarray(shape)), axis=1)
    pts = pts[ok]
    seeds[pts[:, 0], pts[:, 1], pts[:, 2]] = False
    lo = np.maximum(pts.min(axis=0) - int(BODY_ZONE_MM / s) - 2, 0) if len(pts) else np.zeros(3, int)
    hi = np.minimum(pts.max(axis=0) + int(BODY_ZONE_MM / s) + 3, np.asarray(shape)) if len(pts) else np.zeros(3, int)
    zone = np.zeros(shape, dtype=bool)
    if len(pts):
        sub = seeds[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        dist = ndimage.distance_transform_edt(sub, sampling=s)
        zone[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = dist <= BODY_ZONE_MM
    return zone


#: Closing radius (mm) that bridges a vertebra's cortex over its marrow.
MARROW_CLOSE_MM = 4.5
#: Voxels denser than this (HU, smoothed) inside the closed outline are marrow, not fat or CSF.
MARROW_MIN_HU = 20.0
#: Fatty marrow below MARROW_MIN_HU (see ``fatty_min_hu``) counts only in pieces that an
#: opening by a ball of this radius (mm) keeps: a coherent marrow space, not noise speckles
#: in the soft tissue that the closing reaches.
FATTY_OPEN_MM = 1.5


def fill_marrow(lab: np.ndarray, hu: np.ndarray, labels, s: float, radius_mm: float = MARROW_CLOSE_MM,
                min_hu: float = MARROW_MIN_HU, fatty_min_hu: float | None = None) -> None:
    """Add each label's enclosed marrow: unlabelled voxels inside the label's morphological
    closing (ball of ``radius_mm``), cavities of the closed label filled, that are denser
    than fat, in place. With ``fatty_min_hu``, darker voxels down to it count too where they
    form pieces of at least the FATTY_OPEN_MM opening (fatty marrow spaces).

    Why: fatty or osteoporotic marrow (and the lower sacrum's) is below the bone threshold,
    and where the cortex ring is open in the axial plane (basivertebral foramen, bones cut
    obliquely like the sacrum) the per-slice hole filling misses it; the references hold
    whole bones. Working grid, (i, j, k) = (+R, +A, +S) voxels."""
    r = max(1, int(round(radius_mm / s)))
    ball = _ball(r)
    objs = ndimage.find_objects(lab)
    for v in labels:
        if v - 1 >= len(objs) or objs[v - 1] is None:
            continue
        box = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, n in zip(objs[v - 1], lab.shape))
        sub = lab[box]
        closed = ndimage.binary_closing(np.pad(sub == v, r), structure=ball)
        # a bone cut by the field of view is open towards the cut: cap the image's faces
        # so that its marrow counts as enclosed (else the last slices keep only the cortex)
        for ax, (b, n) in enumerate(zip(box, lab.shape)):
            for at_edge, face in ((b.start == 0, slice(0, r)), (b.stop == n, slice(-r, None))):
                if at_edge:
                    idx = [slice(None)] * 3
                    idx[ax] = face
                    closed[tuple(idx)] = True
        closed = ndimage.binary_fill_holes(closed)[r:-r, r:-r, r:-r] & (sub == 0)
        h = hu[box]
        if fatty_min_hu is not None:
            fatty = closed & (h > fatty_min_hu) & (h <= min_hu)
            fatty = ndimage.binary_opening(fatty, structure=_ball(max(1, int(round(FATTY_OPEN_MM / s)))))
            sub[fatty] = v
        sub[closed & (h > min_hu)] = v


#: A hole in a body's axial slice is marrow (not a disc's nucleus, fat or CSF) when its
#: median HU is above this and its area (mm²) at least BODY_HOLE_MIN_MM2 (smaller ones are
#: concavities of the outline that the working grid closes).
BODY_HOLE_MIN_HU = 50.0
BODY_HOLE_MIN_MM2 = 30.0


def fill_body_holes(lab: np.ndarray, hu: np.ndarray, curves: SpineCurves, labels, s: float) -> None:
    """Add, per axial slice, the unlabelled holes that one label encloses in that slice, in
    place: those in front of the spinal canal's anterior wall (never the canal) that look
    like marrow (BODY_HOLE_MIN_HU, BODY_HOLE_MIN_MM2).

    Why: where a disc plane is placed a few mm into a body, the disc slab clears that
    body's marrow (below bone HU) under an intact cortex ring; the cavity then opens into
    the disc gap in 3D, so :func:`fill_marrow`'s closing leaves it (lidc0001: whole axial
    cross-sections of T8-T10 marrow missing). Working grid, (i, j, k) = (+R, +A, +S)."""
    objs = ndimage.find_objects(lab)
    for v in labels:
        if v - 1 >= len(objs) or objs[v - 1] is None:
            continue
        box = objs[v - 1]
        sub, h = lab[box], hu[box]
        in_front = np.arange(box[1].start, box[1].stop)[None, :]
        for kz in range(sub.shape[2]):
            z = min(max(kz + box[2].start, curves.z_lo), curves.z_hi)
            if not np.isfinite(curves.canal_front[z]):
                continue
            sl = sub[:, :, kz]
            holes = ndimage.binary_fill_holes(sl == v) & (sl == 0) & (in_front > curves.canal_front[z])
            if not holes.any():
                continue
            cl, n = ndimage.label(holes)
            median_hu = np.asarray(ndimage.median(h[:, :, kz], cl, range(1, n + 1)))
            area = np.bincount(cl.ravel(), minlength=n + 1)[1:] * s * s
            marrow = np.concatenate([[False], (median_hu > BODY_HOLE_MIN_HU) & (area >= BODY_HOLE_MIN_MM2)])
            sl[marrow[cl]] = v


def _ball(r: int) -> np.ndarray:
    """Boolean 3D ball of radius ``r`` voxels (isotropic working grid), shape (2r+1,)*3."""
    d = np.arange(-r, r + 1) ** 2
    return np.add.outer(np.add.outer(d, d), d) <= r * r


def _valley_depth(a: np.ndarray) -> np.ndarray:
    """Per voxel: how much darker it is than both of its neighbours 1 or 2 voxels away along
    some axis (a thin dark gap between two bright plates, e.g. a joint space)."""
    out = np.zeros(a.shape, dtype=np.float32)
    for ax in range(3):
        for d in (1, 2):
            if a.shape[ax] <= 2 * d:
                continue
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            mid = [slice(None)] * 3
            lo[ax] = slice(0, -2 * d)
            hi[ax] = slice(2 * d, None)
            mid[ax] = slice(d, -d)
            v = np.minimum(a[tuple(lo)], a[tuple(hi)]) - a[tuple(mid)]
            o = out[tuple(mid)]
            np.maximum(o, v, out=o)
    return out
