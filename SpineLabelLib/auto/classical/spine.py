"""Bone, spinal canal and spine centre curves on the working grid.

Working grid: RAS-aligned, isotropic ``s`` mm voxels; axis 0 = +R (x), 1 = +A (y),
2 = +S (z). Curves are arrays indexed by working slice z (NaN where unknown).

Method (classical spinal-canal tracking, cf. Yao et al. 2006, Klinder et al. 2009):

1. *Bone* = lightly smoothed HU above ``BONE_HU``.
2. *Canal candidates* per axial slice: holes of the bone mask's maximum projection over a
   ±8 mm slab (the vertebral foramen is enclosed by body, pedicles and laminae, and the
   slab closes the ring even where the arch is shingled), with a canal-like area
   (40-900 mm²). Each hole is scored by how much (filled) bone lies directly anterior of
   it (the vertebral body) and how close it lies to the body's lateral midline.
3. *Tracking*: the best candidate per slice, then iteratively the candidate nearest a
   running median of the track (outliers > 12 mm dropped), gaps interpolated.
4. *Body curve*: the centre of the filled bone in a box anterior of the canal (the
   vertebral body), per slice; disc slices (no bone there) are interpolated, the curve
   smoothed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BONE_HU = 180.0
#: Soft-tissue threshold for the body outline.
BODY_HU = -400.0
CANAL_MIN_MM2, CANAL_MAX_MM2 = 40.0, 900.0
#: Median HU above which a candidate hole looks like marrow rather than the canal's CSF and fat.
CANAL_MAX_MEDIAN_HU = 60.0
#: The canal lies at most this deep in front of the skin of the back (obese patients ~100 mm).
MAX_CANAL_DEPTH_MM = 120.0
#: Largest hole filled inside bone per slice (mm²): vertebral bodies' marrow, not the thorax.
MAX_FILL_MM2 = 1800.0
#: Beyond the canal track's ends, bone above this HU may enclose the canal (see track_canal).
CONTINUE_BONE_HU = 140.0
#: A continued track moves at most this far (mm) per slice...
CONTINUE_STEP_MM = 3.0
#: ...and bridges gaps up to this length (mm).
CONTINUE_GAP_MM = 6.0
#: How far the canal track is extrapolated beyond where it was observed.
EXTEND_MM = 45.0
#: Radius of the in-plane closing that mends the cortex before marrow filling.
CLOSE_MM = 4.5
#: Marrow and cortex: the vertebral body is where HU exceeds this anterior of the canal.
BODY_BONE_HU = 110.0


@dataclass
class SpineCurves:
    """Per-slice positions (working voxel units; NaN where the spine is not present)."""

    canal: np.ndarray  # (nz, 2) x, y of the canal centre
    canal_front: np.ndarray  # (nz,) y of the canal's anterior wall
    body: np.ndarray  # (nz, 2) x, y of the vertebral body centre
    z_lo: int  # first slice with a track
    z_hi: int  # last slice with a track (inclusive)
    support: np.ndarray  # (nz,) bool: canal directly observed in this slice

    @property
    def found(self) -> bool:
        return self.z_hi - self.z_lo >= 2


def smooth_hu(hu: np.ndarray, s: float) -> np.ndarray:
    sigma = max(0.0, 0.8 / s)
    return ndimage.gaussian_filter(hu, sigma) if sigma > 0.3 else hu


def noise_sigma(hu: np.ndarray) -> float:
    """Robust noise level (HU, one standard deviation) of an image: from the median absolute
    deviation of the differences between neighbours along the first axis where both lie
    within 150 HU of water (soft tissue; every fourth slice, which is plenty)."""
    sub = hu[:, :, ::4]
    a, b = sub[1:], sub[:-1]
    m = (np.abs(a) < 150) & (np.abs(b) < 150)
    if not m.any():
        return 0.0
    d = (a - b)[m]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def body_outline_centre(hu: np.ndarray) -> np.ndarray:
    """(nz,) x centre of the patient's body outline per slice (NaN where no body)."""
    body = hu > BODY_HU
    area = body.sum(axis=(1, 2))  # unused except as a check
    xs = np.arange(hu.shape[0], dtype=float)[:, None]
    cnt = body.sum(axis=1)  # (nx, nz)
    tot = cnt.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (cnt * xs).sum(axis=0) / tot
    cx[tot < 50] = np.nan
    del area
    return cx


def _track_picks(hu: np.ndarray, bone: np.ndarray, s: float):
    """Canal candidates per slice (holes of the bone's slab projection, scored), tracked:
    (pick (nz, 3) rows (x, y, front_y), NaN where unsupported; the longest supported run's
    first and last slice), or None when fewer than 3 slices support a track."""
    nx, ny, nz = hu.shape
    r = max(1, int(round(8.0 / s)))
    mip = ndimage.maximum_filter1d(bone.view(np.uint8), size=2 * r + 1, axis=2).astype(bool)
    px = s * s
    body_cx = body_outline_centre(hu)
    outline = hu > BODY_HU
    # posterior-most body voxel per (x, z): the skin of the back (y increases anteriorly)
    has = outline.any(axis=1)
    back = np.where(has, np.argmax(outline, axis=1), -1)  # (nx, nz)
    del outline
    cands: list[list[tuple[float, float, float, float]]] = []  # per z: (x, y, front_y, score)
    front_depth = max(2, int(round(30.0 / s)))
    half_w = max(1, int(round(10.0 / s)))
    for z in range(nz):
        sl = mip[:, :, z]
        out = []
        if sl.sum() * px >= 100:
            filled = ndimage.binary_fill_holes(sl)
            holes = filled & ~sl
            lab, n = ndimage.label(holes)
            if n:
                areas = np.bincount(lab.ravel())[1:] * px
                ok = np.flatnonzero((areas >= CANAL_MIN_MM2) & (areas <= CANAL_MAX_MM2)) + 1
                if ok.size:
                    coms = ndimage.center_of_mass(holes, lab, ok)
                    boxes = ndimage.find_objects(lab)
                    for lbl, (cx, cy) in zip(ok, coms):
                        bx, by = boxes[lbl - 1]
                        fy = by.stop  # first row anterior of the hole
                        x0, x1 = max(0, int(cx) - half_w), min(nx, int(cx) + half_w + 1)
                        ant = filled[x0:x1, fy:min(ny, fy + front_depth)]
                        ant_frac = float(ant.mean()) if ant.size else 0.0
                        post = sl[x0:x1, max(0, by.start - front_depth):by.start]
                        post_frac = float(post.mean()) if post.size else 0.0
                        # elongated holes (the thorax between ribs) are not the canal
                        w, d = (bx.stop - bx.start) * s, (by.stop - by.start) * s
                        elong = max(w, d) / max(1.0, min(w, d))
                        score = ant_frac + 0.5 * min(post_frac, 0.5) - 0.15 * max(0.0, elong - 2.0)
                        bk = back[int(round(cx)), z]
                        if bk >= 0:  # the canal lies 20-110 mm in front of the skin of the back
                            d_back = (cy - bk) * s
                            score -= 0.03 * max(0.0, d_back - MAX_CANAL_DEPTH_MM) + 0.05 * max(0.0, 15.0 - d_back)
                        if np.isfinite(body_cx[z]):
                            score -= 0.01 * max(0.0, abs(cx - body_cx[z]) * s - 30.0)
                        # the canal holds CSF, cord and fat (median ~ -20..45 HU); a hole of
                        # fatty marrow inside a body's cortex ring (~ 80-130 HU) is not it
                        inner = hu[:, :, z][lab == lbl]
                        score -= 0.02 * max(0.0, float(np.median(inner)) - CANAL_MAX_MEDIAN_HU)
                        if score > 0.35:
                            out.append((cx, cy, fy - 0.5, score))
        cands.append(out)
    # initial pick: best score
    pick = np.full((nz, 3), np.nan)
    for z, out in enumerate(cands):
        if out:
            best = max(out, key=lambda c: c[3])
            pick[z] = best[:3]
    if np.isfinite(pick[:, 0]).sum() < 3:
        return None
    # refine: candidates nearest a running median of the track
    win = max(3, int(round(30.0 / s)) | 1)
    for _ in range(3):
        med = _running_nanmedian(pick[:, :2], win)
        new = np.full((nz, 3), np.nan)
        for z, out in enumerate(cands):
            if not out or not np.all(np.isfinite(med[z])):
                continue
            dist = [np.hypot(c[0] - med[z, 0], c[1] - med[z, 1]) * s - 6.0 * c[3] for c in out]
            i = int(np.argmin(dist))
            if np.hypot(out[i][0] - med[z, 0], out[i][1] - med[z, 1]) * s <= 12.0:
                new[z] = out[i][:3]
        pick = new
    support = np.isfinite(pick[:, 0])
    # keep the longest run of support allowing gaps of up to 25 mm
    zs = np.flatnonzero(support)
    if zs.size < 3:
        return None
    gaps = np.diff(zs) * s > 25.0
    run_id = np.concatenate([[0], np.cumsum(gaps)])
    best_run = np.argmax(np.bincount(run_id))
    keep = zs[run_id == best_run]
    pick[np.setdiff1d(np.arange(nz), keep)] = np.nan
    return pick, int(keep[0]), int(keep[-1])


def _continue_track(pick: np.ndarray, z_lo: int, z_hi: int, more: np.ndarray, s: float):
    """Extend a track (rows as :func:`_track_picks`) beyond each end with the rows of a second
    track ``more`` (found at a lower bone level), slice by slice while each row lies within
    CONTINUE_STEP_MM of the last accepted one (gaps up to CONTINUE_GAP_MM). In place;
    returns the new (z_lo, z_hi)."""
    nz = len(pick)
    max_gap = max(1, int(round(CONTINUE_GAP_MM / s)))
    for step in (1, -1):
        last = z_hi if step == 1 else z_lo
        z = last + step
        while 0 <= z < nz and abs(z - last) <= max_gap:
            row = more[z]
            moved_mm = np.hypot(*(row[:2] - pick[last, :2])) * s
            if np.all(np.isfinite(row)) and moved_mm <= CONTINUE_STEP_MM * abs(z - last):
                pick[z] = row
                last = z
            z += step
        if step == 1:
            z_hi = last
        else:
            z_lo = last
    return z_lo, z_hi


def track_canal(hu: np.ndarray, bone: np.ndarray, s: float) -> SpineCurves:
    """The spinal canal's centre and front wall per slice (working grid, (i, j, k) = (+R, +A,
    +S) voxels), tracked where the bone encloses it; beyond the track's ends, continued
    where bone above CONTINUE_BONE_HU encloses it (a thin arch on thick slices falls below
    ``bone`` near the field of view's ends), then extrapolated."""
    nz = hu.shape[2]
    found = _track_picks(hu, bone, s)
    if found is None:
        return SpineCurves(np.full((nz, 2), np.nan), np.full(nz, np.nan), np.full((nz, 2), np.nan), 0, -1,
                           np.zeros(nz, bool))
    pick, z_lo, z_hi = found
    if z_lo > 0 or z_hi < nz - 1:
        low = _track_picks(hu, hu > CONTINUE_BONE_HU, s)
        if low is not None:
            z_lo, z_hi = _continue_track(pick, z_lo, z_hi, low[0], s)
    support = np.isfinite(pick[:, 0])
    canal = _interp_rows(pick[:, :2], z_lo, z_hi)
    front = _interp_rows(pick[:, 2:3], z_lo, z_hi)[:, 0]
    canal = _smooth_rows(canal, 3.0 / s, z_lo, z_hi)
    front = _smooth_rows(front[:, None], 3.0 / s, z_lo, z_hi)[:, 0]
    # extend beyond the tracked range (the canal is often lost in the sacrum and at the
    # field of view's ends): linear extrapolation of the last 20 mm, up to EXTEND_MM;
    # body_curve trims the extension to where a vertebral body is actually seen.
    ext = int(round(EXTEND_MM / s))
    fit = max(2, int(round(20.0 / s)))
    rows = np.column_stack([canal, front])
    for lo_end in (True, False):
        ref = np.arange(z_lo, min(z_hi, z_lo + fit) + 1) if lo_end else np.arange(max(z_lo, z_hi - fit), z_hi + 1)
        if ref.size < 2:
            continue
        slope = np.polyfit(ref, rows[ref], 1)[0]
        slope = np.clip(slope, -1.0, 1.0)
        z_end = z_lo if lo_end else z_hi
        new_z = np.arange(max(0, z_lo - ext), z_lo) if lo_end else np.arange(z_hi + 1, min(nz, z_hi + ext + 1))
        for z in new_z:
            rows[z] = rows[z_end] + slope * (z - z_end)
    canal, front = rows[:, :2], rows[:, 2]
    return SpineCurves(canal, front, np.full((nz, 2), np.nan), max(0, z_lo - ext), min(nz - 1, z_hi + ext), support)


def fill_bone(bone: np.ndarray, curves: SpineCurves, s: float) -> np.ndarray:
    """Per axial slice: fill the enclosed marrow of the bone mask (holes up to MAX_FILL_MM2),
    never the spinal canal."""
    # close cortical gaps (thin cortex at coarse resolution, elderly marrow below the bone
    # threshold) in the axial plane before filling, near the spine only
    r = max(1, int(round(CLOSE_MM / s)))
    disk = (np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2) <= r * r)[:, :, None]
    z0c = max(0, curves.z_lo - int(20 / s))
    z1c = min(bone.shape[2], curves.z_hi + int(20 / s) + 1)
    closed = bone.copy()
    closed[:, :, z0c:z1c] = ndimage.binary_closing(np.pad(bone[:, :, z0c:z1c], ((r, r), (r, r), (0, 0))),
                                                   structure=disk)[r:-r, r:-r, :]
    filled = closed.copy()
    bone = closed
    px = s * s
    z0 = max(0, curves.z_lo - int(20 / s))
    z1 = min(bone.shape[2], curves.z_hi + int(20 / s) + 1)
    for z in range(z0, z1):
        sl = bone[:, :, z]
        if not sl.any():
            continue
        holes = ndimage.binary_fill_holes(sl) & ~sl
        lab, n = ndimage.label(holes)
        if not n:
            continue
        areas = np.bincount(lab.ravel()) * px
        keep = areas <= MAX_FILL_MM2
        keep[0] = False
        zc = min(max(z, curves.z_lo), curves.z_hi) if curves.found else z
        if curves.found and np.all(np.isfinite(curves.canal[zc])):
            cx, cy = np.round(curves.canal[zc]).astype(int)
            rr = max(1, int(round(3.0 / s)))
            patch = lab[max(0, cx - rr):cx + rr + 1, max(0, cy - rr):cy + rr + 1]
            for v in np.unique(patch):
                keep[v] = False
        filled[:, :, z] |= keep[lab]
    return filled


def body_curve(filled: np.ndarray, curves: SpineCurves, s: float) -> np.ndarray:
    """(nz, 2) x, y of the vertebral body centre per slice (interpolated across discs)."""
    nz = filled.shape[2]
    out = np.full((nz, 2), np.nan)
    half_w = int(round(22.0 / s))
    depth = int(round(45.0 / s))
    min_px = 40.0 / (s * s)
    for z in range(curves.z_lo, curves.z_hi + 1):
        cx, cy = curves.canal[z]
        fy = curves.canal_front[z]
        if not np.isfinite(cx):
            continue
        x0, x1 = max(0, int(cx) - half_w), min(filled.shape[0], int(cx) + half_w + 1)
        y0, y1 = max(0, int(np.ceil(fy)) + 1), min(filled.shape[1], int(fy) + depth)
        box = filled[x0:x1, y0:y1, z]
        if box.sum() < min_px:
            continue
        lab, n = ndimage.label(box)
        if n > 1:  # the component nearest the canal's front wall
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            cand = [v for v in range(1, n + 1) if sizes[v] >= min_px]
            if not cand:
                continue
            ymins = {v: np.flatnonzero(np.any(lab == v, axis=0)).min() for v in cand}
            v = min(cand, key=lambda c: ymins[c] - sizes[c] / (max(sizes) + 1))
            box = lab == v
        xs, ys = np.nonzero(box)
        out[z] = (xs.mean() + x0, ys.mean() + y0)
    if np.isfinite(out[:, 0]).sum() < 2:
        # no body seen: assume it lies 15 mm anterior of the canal front
        out = np.column_stack([curves.canal[:, 0], curves.canal_front + 15.0 / s])
        return out
    seen = np.flatnonzero(np.isfinite(out[:, 0]))
    # the extrapolated ends count only as far as a body is seen (gaps < 15 mm)
    tracked = np.flatnonzero(curves.support)
    lo_obs, hi_obs = seen.min(), seen.max()
    if tracked.size:
        run = seen[seen <= tracked.min()]
        for a, b in zip(run[::-1][1:], run[::-1][:-1]):
            if (b - a) * s > 15.0:
                lo_obs = b
                break
        run = seen[seen >= tracked.max()]
        for a, b in zip(run[:-1], run[1:]):
            if (b - a) * s > 15.0:
                hi_obs = a
                break
    curves.z_lo, curves.z_hi = int(lo_obs), int(hi_obs)
    out[: curves.z_lo] = np.nan
    out[curves.z_hi + 1:] = np.nan
    # robust: drop points far from a running median, interpolate, smooth
    med = _running_nanmedian(out, max(3, int(round(25.0 / s)) | 1))
    bad = np.hypot(*(out - med).T) * s > 10.0
    out[bad] = np.nan
    out = _interp_rows(out, curves.z_lo, curves.z_hi)
    return _smooth_rows(out, 4.0 / s, curves.z_lo, curves.z_hi)


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------
def _running_nanmedian(a: np.ndarray, win: int) -> np.ndarray:
    n = a.shape[0]
    out = np.full_like(a, np.nan, dtype=float)
    h = win // 2
    for z in range(n):
        seg = a[max(0, z - h):z + h + 1]
        ok = np.all(np.isfinite(seg), axis=1)
        if ok.sum() >= 2:
            out[z] = np.median(seg[ok], axis=0)
    # extend to slices without enough support
    good = np.flatnonzero(np.all(np.isfinite(out), axis=1))
    if good.size:
        for c in range(a.shape[1]):
            out[:, c] = np.interp(np.arange(n), good, out[good, c])
    return out


def _interp_rows(a: np.ndarray, z_lo: int, z_hi: int) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    zs = np.arange(z_lo, z_hi + 1)
    good = zs[np.all(np.isfinite(a[zs]), axis=1)]
    if good.size == 0:
        return out
    for c in range(a.shape[1]):
        out[zs, c] = np.interp(zs, good, a[good, c])
    return out


def _smooth_rows(a: np.ndarray, sigma: float, z_lo: int, z_hi: int) -> np.ndarray:
    out = a.copy()
    if z_hi > z_lo and sigma > 0.3:
        out[z_lo:z_hi + 1] = ndimage.gaussian_filter1d(a[z_lo:z_hi + 1], sigma, axis=0, mode="nearest")
    return out
