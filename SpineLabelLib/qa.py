"""QA checks on a vertebra label map: per-vertebra flags, each with a message.

:func:`check_labels` takes an instance mask (VerSe values, voxel (i, j, k) on its grid),
optionally the centroids of its vertebrae (``centroids_ijk``, voxel (i, j, k) on the same
grid; the centre of mass of each label otherwise) and the CT on the same grid (needed
only for the rib check). All geometry is measured in world millimetres (RAS), so
anisotropic and oblique grids behave like isotropic ones.

Checks (``Flag.kind``):

* ``duplicate`` -- one label on two vertebra-sized parts far apart (two vertebrae carry it);
* ``fragments`` -- a label has extra small pieces away from its vertebra;
* ``gap``       -- labels missing between two present ones (T13 and L6 are optional);
* ``order``     -- label order contradicts head-to-feet position;
* ``size``      -- volume or height implausible relative to the neighbouring vertebrae;
* ``spacing``   -- distance to the next vertebra's centroid is an outlier among its neighbours;
* ``ribs``      -- rib-bearing vertebra labelled lumbar, or T1-T11/T13 without ribs
                   (T12 without ribs is a normal variant and not flagged);
* ``edge``      -- the vertebra touches the edge of the field of view (it may be cut).

Thresholds are relative to the neighbours of the same scan, never absolute sizes, so they
hold for cervical, thoracic and lumbar vertebrae, children and adults. C1 (a ring without
body) and C2 (the dens) are not size-compared; the sacrum and coccyx are not compared at
all; a vertebra cut by the field of view serves as nobody's reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import labels
from .image import Image

KINDS = ("duplicate", "fragments", "gap", "order", "size", "spacing", "ribs", "edge")

#: A second part of a label at least this fraction of the largest one is a vertebra of its own.
DUPLICATE_PART_FRACTION = 0.3
#: Pieces smaller than this fraction of a label's volume are noise, not fragments.
FRAGMENT_MIN_FRACTION = 0.005
#: size: volume ratio and height ratio to the neighbours' median outside these bounds.
VOLUME_RATIO = (0.7, 1.6)
HEIGHT_RATIO = (0.7, 1.5)
#: spacing: centroid distance ratio to the neighbouring distances' median outside these.
SPACING_RATIO = (0.6, 1.55)
#: ribs: unlabelled bone (HU) beside the body, in mm^3, above which a vertebra carries ribs.
RIB_BONE_HU = (150.0, 2000.0)  # metal (screws, rods) lies above the upper bound
RIB_MIN_VOLUME_MM3 = 2000.0  # phantoms at 3 mm: rib-bearing >= ~3000 (osteoporotic), lumbar <= ~450
#: ...counting only voxels at least this far (mm) from every labelled voxel.
RIB_CLEARANCE_MM = 4.0

_NO_SIZE = {labels.value_of("C1"), labels.value_of("C2"), labels.SACRUM, labels.COCCYX}
_NOT_MOBILE = {labels.SACRUM, labels.COCCYX}
_LUMBAR = {20, 21, 22, 23, 24, labels.L6}
_RIB_EXPECTED = set(range(8, 19)) | {labels.T13}  # T1-T11 and T13; T12 may lack ribs


@dataclass
class Flag:
    label: int  # VerSe value of the flagged vertebra
    kind: str  # one of KINDS
    message: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message}


@dataclass
class _Stats:
    """Measurements of one label in world mm."""

    volume: float  # mm^3
    parts: list[tuple[int, np.ndarray, bool]]  # (voxels, world points, touches edge) per component, largest first
    points: np.ndarray  # (N, 3) world positions of its voxels (subsampled for big labels)
    touches_edge: bool
    centre: np.ndarray  # world position used for order and spacing
    height: float = float("nan")  # extent along the local spine axis


def check_labels(mask: Image, centroids_ijk: dict[int, np.ndarray] | None = None,
                 ct: Image | None = None) -> list[Flag]:
    """All QA flags of a label map, ordered head to feet. See the module docstring."""
    stats = _measure(mask, centroids_ijk)
    if not stats:
        return []
    order = labels.sort_anatomical(stats)
    axes = _local_axes(order, stats)
    for v in order:
        s = stats[v]
        proj = (s.points - s.centre) @ axes[v]
        s.height = float(np.percentile(proj, 99) - np.percentile(proj, 1)) if len(proj) else 0.0
    flags: list[Flag] = []
    flags += _check_parts(order, stats, float(max(mask.spacing)))
    flags += _check_gaps(order)
    flags += _check_order(order, stats)
    flags += _check_size(order, stats)
    flags += _check_spacing(order, stats)
    if ct is not None:
        mask.require_same_grid(ct, what="CT")
        flags += _check_ribs(order, stats, axes, mask, ct)
    flags += [Flag(v, "edge", f"{labels.name_of(v)} touches the edge of the field of view: it may be cut "
                              "(not fully in the field of view)") for v in order if stats[v].touches_edge]
    rank = {v: n for n, v in enumerate(order)}
    return sorted(flags, key=lambda f: (rank[f.label], KINDS.index(f.kind)))


def flags_by_label(flags: list[Flag]) -> dict[int, list[Flag]]:
    out: dict[int, list[Flag]] = {}
    for f in flags:
        out.setdefault(f.label, []).append(f)
    return out


# ----------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------
def _measure(mask: Image, centroids_ijk) -> dict[int, _Stats]:
    arr = np.asarray(mask.array)
    if not np.issubdtype(arr.dtype, np.integer):
        arr = np.rint(arr).astype(np.int64)
    verts = np.where((arr >= 1) & (arr <= 28), arr, 0).astype(np.uint8)
    voxel_mm3 = float(abs(np.linalg.det(mask.affine[:3, :3])))
    shape = np.array(arr.shape)
    out: dict[int, _Stats] = {}
    structure = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity: thin bridges still join
    for value, box in enumerate(ndimage.find_objects(verts), start=1):
        if box is None or not labels.is_vertebra(value):
            continue
        offset = np.array([s.start for s in box])
        inside = verts[box] == value
        comp, n = ndimage.label(inside, structure)
        sizes = np.bincount(comp.ravel())[1:]
        parts = []
        for idx in np.argsort(-sizes):
            ijk = np.argwhere(comp == idx + 1) + offset
            edge = bool(np.any(ijk == 0) or np.any(ijk == shape - 1))
            if len(ijk) > 4000:
                ijk = ijk[np.linspace(0, len(ijk) - 1, 4000).astype(np.int64)]
            parts.append((int(sizes[idx]), mask.index_to_world(ijk), edge))
        ijk = np.argwhere(inside) + offset
        if len(ijk) > 20000:  # enough for percentiles; keeps big fine-grid labels fast
            ijk = ijk[np.linspace(0, len(ijk) - 1, 20000).astype(np.int64)]
        points = mask.index_to_world(ijk)
        touches = bool(np.any(np.array([s.start for s in box]) == 0) or np.any(np.array([s.stop for s in box]) == shape))
        if centroids_ijk is not None and value in centroids_ijk:
            centre = mask.index_to_world(np.asarray(centroids_ijk[value], dtype=float))
        else:
            centre = mask.index_to_world((np.argwhere(inside) + offset).mean(axis=0))
        out[value] = _Stats(float(sizes.sum()) * voxel_mm3, parts, points, touches, centre)
    return out


def _local_axes(order: list[int], stats: dict[int, _Stats]) -> dict[int, np.ndarray]:
    """Unit spine axis (towards the head) at each vertebra, from its neighbours' centres."""
    centres = np.array([stats[v].centre for v in order])
    up = _head_direction(centres)
    axes = {}
    for n, v in enumerate(order):
        lo, hi = max(n - 1, 0), min(n + 1, len(order) - 1)
        d = centres[lo] - centres[hi] if hi > lo else up
        norm = np.linalg.norm(d)
        d = d / norm if norm > 1e-6 else up
        if np.dot(d, up) < 0.5:  # neighbours misplaced (a labelling error): fall back to the global axis
            d = up
        axes[v] = d
    return axes


def _head_direction(centres: np.ndarray) -> np.ndarray:
    """Principal axis of the centres, pointing superior (+S): the head-to-feet line."""
    if len(centres) >= 3:
        _, _, vt = np.linalg.svd(centres - centres.mean(axis=0))
        d = vt[0]
        if abs(d[2]) < 0.5:  # short, curved run: trust the patient axis instead
            d = np.array([0.0, 0.0, 1.0])
    else:
        d = np.array([0.0, 0.0, 1.0])
    return d if d[2] >= 0 else -d


def _neighbour_median(order: list[int], n: int, values: dict[int, float], usable: set[int], reach: int = 2):
    picks = [values[order[m]] for m in range(max(0, n - reach), min(len(order), n + reach + 1))
             if m != n and order[m] in usable]
    return float(np.median(picks)) if picks else None


# ----------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------
def _check_parts(order, stats, max_spacing: float) -> list[Flag]:
    """Parts of one label further than a coarse-grid break from its main part: as big as
    a vertebra -> duplicate; smaller -> fragment. Parts cut off by the field of view's edge
    are not fragments (the vertebra is cut, and the edge check says so)."""
    from scipy.spatial import cKDTree

    # A thin process sampled on a coarse grid breaks with a one-voxel gap; real extra
    # pieces lie a disc or a vertebra away.
    gap_mm = max(6.0, 2.5 * max_spacing)
    volumes = {v: stats[v].parts[0][0] for v in order}  # main part size, in voxels
    usable = {v for v in order if not stats[v].touches_edge and v not in _NOT_MOBILE}
    flags = []
    for n, v in enumerate(order):
        parts = stats[v].parts
        if len(parts) < 2:
            continue
        name = labels.name_of(v)
        main = cKDTree(parts[0][1])
        ref = _neighbour_median(order, n, volumes, usable) or parts[0][0]
        dup, frag = [], []
        for size, points, edge in parts[1:]:
            gap = float(main.query(points, k=1)[0].min())
            if gap < gap_mm:
                continue
            if size >= DUPLICATE_PART_FRACTION * ref and v not in _NOT_MOBILE:
                dup.append(gap)
            elif size >= max(2, FRAGMENT_MIN_FRACTION * parts[0][0]) and not edge:
                frag.append(size)
        if dup:
            flags.append(Flag(v, "duplicate", f"{name} labels {len(dup) + 1} separate vertebra-sized parts "
                                              f"({max(dup):.0f} mm apart): two vertebrae carry this label"))
        if frag:
            flags.append(Flag(v, "fragments", f"{name} has {len(frag)} detached fragment(s) ({sum(frag)} voxels) "
                                              f"more than {gap_mm:.0f} mm from its vertebra"))
    return flags


def _expected_between(a: int, b: int) -> list[int]:
    """Standard labels strictly between a and b (T13 and L6 are optional, never 'missing')."""
    lo, hi = labels.order_of(a), labels.order_of(b)
    return [lab.value for lab in labels.LABELS
            if lo < lab.order < hi and lab.value not in (labels.T13, labels.L6, labels.COCCYX)]


def _check_gaps(order) -> list[Flag]:
    flags = []
    for a, b in zip(order[:-1], order[1:]):
        missing = _expected_between(a, b)
        if missing:
            text = ", ".join(labels.name_of(m) for m in missing)
            for v, other in ((a, b), (b, a)):
                flags.append(Flag(v, "gap", f"gap in the sequence between {labels.name_of(a)} and "
                                            f"{labels.name_of(b)}: {text} missing"))
    return flags


def _check_order(order, stats) -> list[Flag]:
    """Labels outside the longest run whose position decreases head to feet are flagged."""
    if len(order) < 2:
        return []
    centres = np.array([stats[v].centre for v in order])
    s = centres @ _head_direction(centres)
    keep = _longest_decreasing(s)
    flags = []
    for n, v in enumerate(order):
        if n not in keep:
            flags.append(Flag(v, "order", f"{labels.name_of(v)} lies at a head-to-feet position that contradicts "
                                          "its label (labels swapped or misassigned?)"))
    return flags


def _longest_decreasing(s: np.ndarray) -> set[int]:
    n = len(s)
    best = [1] * n
    prev = [-1] * n
    for i in range(n):
        for j in range(i):
            if s[j] > s[i] and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    i = int(np.argmax(best))
    keep = set()
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return keep


def _check_size(order, stats) -> list[Flag]:
    usable = {v for v in order if v not in _NO_SIZE and not stats[v].touches_edge}
    volume = {v: stats[v].volume for v in order}
    height = {v: stats[v].height for v in order}
    flags = []
    for n, v in enumerate(order):
        if v not in usable:
            continue
        name = labels.name_of(v)
        ref_v = _neighbour_median(order, n, volume, usable)
        ref_h = _neighbour_median(order, n, height, usable)
        problems = []
        if ref_v and not VOLUME_RATIO[0] <= volume[v] / ref_v <= VOLUME_RATIO[1]:
            problems.append(f"volume {volume[v] / 1000:.1f} cm3 is {volume[v] / ref_v:.2f}x its neighbours'")
        if ref_h and not HEIGHT_RATIO[0] <= height[v] / ref_h <= HEIGHT_RATIO[1]:
            problems.append(f"height {height[v]:.0f} mm is {height[v] / ref_h:.2f}x its neighbours'")
        if problems:
            flags.append(Flag(v, "size", f"{name}: " + "; ".join(problems) + " (merged, split or partly labelled?)"))
    return flags


def _check_spacing(order, stats) -> list[Flag]:
    usable_v = [v for v in order if v not in _NOT_MOBILE and v != labels.value_of("C1")]
    if len(usable_v) < 3:
        return []
    pairs = list(zip(usable_v[:-1], usable_v[1:]))
    dist = {n: float(np.linalg.norm(stats[a].centre - stats[b].centre)) for n, (a, b) in enumerate(pairs)}
    trusted = {n for n, (a, b) in enumerate(pairs) if not stats[a].touches_edge and not stats[b].touches_edge}
    flags = []
    for n, (a, b) in enumerate(pairs):
        if n not in trusted:
            continue
        ref = _neighbour_median(list(range(len(pairs))), n, dist, trusted)
        if ref and not SPACING_RATIO[0] <= dist[n] / ref <= SPACING_RATIO[1]:
            text = (f"centroids of {labels.name_of(a)} and {labels.name_of(b)} are {dist[n]:.0f} mm apart, "
                    f"{dist[n] / ref:.2f}x the neighbouring spacing ("
                    + ("a vertebra missed between them?)" if dist[n] > ref else "one vertebra split in two?)"))
            flags += [Flag(a, "spacing", text), Flag(b, "spacing", text)]
    return flags


def rib_volumes(order, stats, axes, mask: Image, ct: Image) -> dict[int, float | None]:
    """Bone (mm^3) beside each vertebra where rib heads and necks lie: voxels of rib
    density that belong to no vertebra and lie at least :data:`RIB_CLEARANCE_MM` from every
    labelled voxel (so the partial-volume rim of the vertebra's own processes never counts).
    None where it cannot be judged (vertebra cut by the field of view, sacrum, coccyx)."""
    arr = np.asarray(mask.array)
    shape = np.array(arr.shape)
    out: dict[int, float | None] = {}
    inv = np.linalg.inv(mask.affine)
    voxel_mm3 = float(abs(np.linalg.det(mask.affine[:3, :3])))
    step = float(min(mask.spacing))
    right = np.array([1.0, 0.0, 0.0])
    for v in order:
        s = stats[v]
        if s.touches_edge or v in _NOT_MOBILE:
            out[v] = None
            continue
        up = axes[v]
        lat = right - up * np.dot(right, up)
        lat /= np.linalg.norm(lat)
        ant = np.cross(up, lat)  # S x R = A: anterior in a right-handed RAS frame
        rel = s.points - s.centre
        r, a, h = rel @ lat, rel @ ant, rel @ up
        near = (np.abs(h) < 0.25 * s.height) & (np.abs(a) < 5.0)
        half_w = float(np.percentile(np.abs(r[near]), 95)) if near.sum() > 3 else float(np.percentile(np.abs(r), 50))
        # the rib-head/neck region on a regular world lattice, looked up in the grid
        rs = np.arange(half_w + 1.0, half_w + 35.0, step)
        rs = np.concatenate([rs, -rs])
        as_ = np.arange(-30.0, 8.0, step)
        hs = np.arange(-0.45 * s.height, 0.45 * s.height + 1e-6, step)
        R, A, H = np.meshgrid(rs, as_, hs, indexing="ij")
        world = s.centre + R[..., None] * lat + A[..., None] * ant + H[..., None] * up
        ijk = np.rint(world.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
        ijk = np.unique(ijk[np.all((ijk >= 0) & (ijk < shape), axis=1)], axis=0)
        if not len(ijk):
            out[v] = 0.0
            continue
        lo = np.maximum(ijk.min(axis=0) - 4, 0)
        hi = np.minimum(ijk.max(axis=0) + 5, shape)
        box = tuple(slice(int(a0), int(b0)) for a0, b0 in zip(lo, hi))
        # distance (mm) of every voxel of the box to the nearest labelled voxel
        clearance = ndimage.distance_transform_edt(arr[box] == 0, sampling=mask.spacing)
        local = tuple((ijk - lo).T)
        # a 3-voxel median: low-dose noise (sd 80 HU) must not read as bone, a 5 mm rib still does
        hu = ndimage.median_filter(np.asarray(ct.array[box]), size=3)[local]
        bone = (hu >= RIB_BONE_HU[0]) & (hu <= RIB_BONE_HU[1]) & (clearance[local] >= RIB_CLEARANCE_MM)
        metal = np.asarray(ct.array[box]) > RIB_BONE_HU[1]
        if metal.any():  # screws and rods blur into bone-like values around them
            bone &= ndimage.distance_transform_edt(~metal, sampling=mask.spacing)[local] >= RIB_CLEARANCE_MM + 2.0
        out[v] = float(bone.sum()) * voxel_mm3
    return out


def _check_ribs(order, stats, axes, mask, ct) -> list[Flag]:
    volumes = rib_volumes(order, stats, axes, mask, ct)
    flags = []
    for v in order:
        vol = volumes[v]
        if vol is None:
            continue
        name = labels.name_of(v)
        has = vol >= RIB_MIN_VOLUME_MM3
        if has and v in _LUMBAR:
            flags.append(Flag(v, "ribs", f"{name} carries ribs ({vol:.0f} mm3 of rib bone beside it): a 13th thoracic "
                                         "vertebra (T13), or thoracic labels shifted by one level?"))
        elif not has and v in _RIB_EXPECTED:
            flags.append(Flag(v, "ribs", f"{name} carries no ribs: labels shifted by one level, or a lumbar or "
                                         "cervical vertebra labelled thoracic?"))
    return flags
