"""Intervertebral disc detection from the intensity profile along the body centre curve
(disc-profile method, cf. Peng et al. 2005; Kelm et al. 2013 use the same cue).

The curve through the vertebral bodies is resampled by arc length (1 mm steps); at each
point the mean HU over a small disc perpendicular to the curve is taken. A disc is a
narrow dip between two bright endplates: the *dip depth* d(t) = min(max of the profile
2-9 mm above, max 2-9 mm below) - profile(t). Local maxima of d above a threshold are
disc candidates; candidates closer than half the local vertebra pitch are merged (the
deeper wins). Wide dips (osteoporotic marrow darker than disc) have no bright rim within
9 mm, so they do not count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

STEP_MM = 1.0
SAMPLE_RADIUS_MM = 5.0
MIN_DIP_HU = 30.0
#: Vertebra pitch (body height + disc) is about this multiple of the body's AP depth.
PITCH_PER_DEPTH = 1.05


@dataclass
class Profile:
    points: np.ndarray  # (n, 3) working voxel coordinates along the curve (head -> feet)
    tangent: np.ndarray  # (n, 3) unit tangents (world, pointing to the feet)
    hu: np.ndarray  # (n,) mean HU
    dip: np.ndarray  # (n,) dip depth
    expected_pitch: np.ndarray | None = None  # (n,) mm, from the body's antero-posterior depth


def body_profile(hu: np.ndarray, body_xy: np.ndarray, z_lo: int, z_hi: int, s: float,
                 body_depth: np.ndarray | None = None) -> Profile:
    """Sample the (smoothed) HU along the body curve from head (z_hi) to feet (z_lo)."""
    zs = np.arange(z_hi, z_lo - 1, -1, dtype=float)
    pts = np.column_stack([body_xy[z_hi:z_lo - 1 if z_lo > 0 else None:-1], zs])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1) * s
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] < 3 * STEP_MM:
        return Profile(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0))
    t = np.arange(0.0, arc[-1], STEP_MM)
    P = np.column_stack([np.interp(t, arc, pts[:, c]) for c in range(3)])
    T = np.gradient(P, axis=0)
    T = ndimage.gaussian_filter1d(T, 4.0, axis=0, mode="nearest")
    T /= np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-9)
    # plane basis perpendicular to the tangent
    ref = np.array([1.0, 0.0, 0.0])
    U = np.cross(T, ref)
    U /= np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-9)
    V = np.cross(T, U)
    rr = SAMPLE_RADIUS_MM / s
    offs = [(a, b) for a in np.linspace(-rr, rr, 5) for b in np.linspace(-rr, rr, 5) if a * a + b * b <= rr * rr + 1e-6]
    vals = np.zeros(len(P))
    for a, b in offs:
        q = P + a * U + b * V
        vals += ndimage.map_coordinates(hu, q.T, order=1, mode="nearest")
    vals /= len(offs)
    vals = ndimage.gaussian_filter1d(vals, 1.0)
    expected = None
    if body_depth is not None:
        zi = np.clip(np.round(P[:, 2]).astype(int), 0, len(body_depth) - 1)
        dep = body_depth[zi]
        dep = np.where(np.isfinite(dep), dep, np.nanmedian(dep) if np.isfinite(dep).any() else 25.0)
        expected = np.clip(PITCH_PER_DEPTH * dep, 14.0, 45.0)
        expected[dep >= 39.0] = np.nan  # saturated measurement (vessels or ribs merged): no cue
    return Profile(P, T, vals, dip_depth(vals), expected)


def dip_depth(p: np.ndarray, lo: int = 2, hi: int = 9) -> np.ndarray:
    n = len(p)
    left = np.full(n, -np.inf)
    right = np.full(n, -np.inf)
    for k in range(lo, hi + 1):
        left[k:] = np.maximum(left[k:], p[:-k] if k < n else -np.inf)
        right[:-k] = np.maximum(right[:-k], p[k:] if k < n else -np.inf)
    d = np.minimum(left, right) - p
    d[~np.isfinite(d)] = 0.0
    return np.maximum(d, 0.0)


def detect_discs(profile: Profile, min_dip: float = MIN_DIP_HU) -> list[int]:
    """Indices into the profile of the disc centres (head -> feet).

    Candidates are local maxima of the dip depth (>= 10 HU). The chosen discs are the
    chain of candidates maximising the sum of log(dip / ``min_dip``) (strong dips pay,
    weak ones cost) minus a regularity penalty on the ratio of consecutive pitches
    (vertebra heights change slowly along the spine), with pitches of 11-55 mm only
    (dynamic programming over pairs of consecutive discs).
    """
    d = profile.dip
    n = len(d)
    if n < 10:
        return []
    mx = ndimage.maximum_filter1d(d, size=7)
    cand = [i for i in range(n) if d[i] >= 10.0 and d[i] == mx[i]]
    cand = _thin(cand, d, 5)
    if len(cand) > 120:
        cand = sorted(sorted(cand, key=lambda i: -d[i])[:120])
    if not cand:
        return []
    w = np.clip(np.log(np.array([d[i] for i in cand]) / min_dip), -1.5, 1.5)
    m = len(cand)
    pos = np.array(cand, dtype=float) * STEP_MM
    gmin, gmax = 11.0, 55.0
    NEG = -1e9
    # penalty of a pitch against the one expected from the body's depth
    pen = np.zeros((m, m))
    if profile.expected_pitch is not None:
        for i in range(m):
            for j in range(i + 1, m):
                e = profile.expected_pitch[(cand[i] + cand[j]) // 2]
                if np.isfinite(e):
                    pen[i, j] = 2.5 * np.log((pos[j] - pos[i]) / e) ** 2
    # best[i, j]: best chain ending with discs i < j (consecutive)
    best = np.full((m, m), NEG)
    back = np.full((m, m), -1, dtype=int)
    for j in range(m):
        for i in range(j):
            g = pos[j] - pos[i]
            if not gmin <= g <= gmax:
                continue
            best[i, j] = w[i] + w[j] - pen[i, j]
            for k in range(i):
                if best[k, i] <= NEG / 2:
                    continue
                r = np.log(g / (pos[i] - pos[k]))
                val = best[k, i] + w[j] - 1.5 * r * r - pen[i, j]
                if val > best[i, j]:
                    best[i, j] = val
                    back[i, j] = k
    single = int(np.argmax(w))
    if best.max() <= w[single]:
        return [cand[single]] if w[single] > 0 else []
    i, j = np.unravel_index(int(np.argmax(best)), best.shape)
    chain = [j, i]
    while back[i, j] >= 0:
        k = back[i, j]
        chain.append(k)
        i, j = k, i
    return sorted(cand[c] for c in chain)


def _thin(cand: list[int], d: np.ndarray, min_sep: int) -> list[int]:
    order = sorted(cand, key=lambda i: -d[i])
    kept: list[int] = []
    for i in order:
        if all(abs(i - j) >= min_sep for j in kept):
            kept.append(i)
    return sorted(kept)
