"""The next vertebra's body, cut by the field of view to a sliver beyond the end
vertebra's disc, labelled as that vertebra instead of being left with the end vertebra.

Why: where the view's top (or bottom) edge passes just beyond a disc, the working grid
finds no disc there (one or two slices of bone beyond it, no centre to chain) and the
end vertebra floods over its disc into that sliver. lidc0001's top slice holds the
anteroinferior lip of C5 (99 reference voxels) above C6's tilted upper disc: our C6 took
it, the disc and the slice beside them, C5 scored 0 and C6 carried 1 800 voxels the
reference leaves out.

Method, on the input grid in world millimetres, after :mod:`.disc_planes` has placed the
discs between the bodies in view: the disc beyond the end vertebra is the next plane of
the chain, extrapolated from the last two placed discs (one pitch further; its normal
turned as much again as the last two differ, the spine's curvature continued). The end
vertebra's voxels beyond that plane and within its body's footprint (the body,
``verse.body.body_voxels`` cut with its neighbour, which steers the body's axis,
projected along the plane's normal and widened by its rim) are the next vertebra's where
bone-bright (at least ``disc_planes.DISC_MAX_HU``) and disc otherwise; those darker
voxels within half the thinnest disc on the near side are disc too, as between two bodies
in view. The posterior elements are not touched (the next vertebra's arch lies further
out).

Measured (BENCHMARKS.md): lidc0001 C5 0 -> 0.525, C6 0.702 -> 0.782; five phantoms gain
their sliver's label (one of them the sacrum's, below L5). Fragile where the pitch changes
at the end of the view: the extrapolated plane can lie several millimetres off, and then
nothing is labelled.

Guards: the sliver must reach the image's face (a plane that falls inside a whole end
vertebra cuts nothing off there) and hold at least ``SLIVER_MIN_MM3`` of bone; the next
label must have a body (not C1; the sacrum's S1 below L5 counts) and not be in the mask
already.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...image import Image, apply_affine
from ...labels import neighbours
from .disc_planes import C1, DISC_MAX_HU, DISC_MIN_MM, PITCH_MM, WIDEN_MM, PlacedDisc, _analysis_grid, _frame, _union_box

#: A sliver with less bone than this (mm³: a few voxels of a 2.5 mm slice) is not labelled.
SLIVER_MIN_MM3 = 50.0


def label_edge_slivers(labels: np.ndarray, ct: Image, placed: list[PlacedDisc]) -> list[tuple[int, int, int]]:
    """Label the next vertebra's sliver beyond each end of the chain of ``placed`` discs
    (head to feet, as :func:`disc_planes.place_disc_borders` returns them), in place.
    ``labels``: VerSe label map on ``ct``'s grid (axes (i, j, k) of the input). Returns
    (end vertebra, sliver's label, voxels relabelled) for each sliver labelled."""
    boxes = ndimage.find_objects(labels)
    present = {v for v in range(1, len(boxes) + 1) if boxes[v - 1] is not None}
    done = []
    if len(placed) < 2:
        return done
    for near, far, head in ((placed[0], placed[1], True), (placed[-1], placed[-2], False)):
        chained = near.caudal == far.cranial if head else far.caudal == near.cranial
        if not chained:
            continue
        end = near.cranial if head else near.caudal
        beyond = neighbours(end)[0 if head else 1]
        if beyond is None or beyond == C1 or beyond in present:
            continue
        # one pitch further, turned as much again: the last two discs' step continued
        point = near.point + (near.point - far.point)
        normal = _rotation(far.normal, near.normal) @ near.normal
        box = _union_box([boxes[near.cranial - 1], boxes[near.caudal - 1]])
        n = _relabel_beyond(labels, ct, box, end, (near.cranial, near.caudal), beyond, point,
                            normal if not head else -normal)
        if n:
            done.append((end, beyond, n))
    return done


def _rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 3x3 rotation that turns unit vector ``a`` onto unit vector ``b`` about their
    common perpendicular (identity when they are parallel)."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-9 or c <= -1.0 + 1e-9:
        return np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def _footprint(q1: np.ndarray, q2: np.ndarray):
    """A membership test for the points (mm, in a plane's frame) within WIDEN_MM of the
    points (q1, q2), rasterised on a PITCH_MM lattice."""
    lo1, lo2 = q1.min() - 2 * WIDEN_MM, q2.min() - 2 * WIDEN_MM
    shape = (int((q1.max() - lo1) / PITCH_MM) + int(4 * WIDEN_MM / PITCH_MM) + 2,
             int((q2.max() - lo2) / PITCH_MM) + int(4 * WIDEN_MM / PITCH_MM) + 2)
    grid = np.zeros(shape, dtype=bool)
    grid[((q1 - lo1) / PITCH_MM).astype(np.int64), ((q2 - lo2) / PITCH_MM).astype(np.int64)] = True
    grid = ndimage.binary_dilation(grid, iterations=max(1, int(round(WIDEN_MM / PITCH_MM))))

    def inside(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
        i = np.floor((p1 - lo1) / PITCH_MM).astype(np.int64)
        j = np.floor((p2 - lo2) / PITCH_MM).astype(np.int64)
        ok = (i >= 0) & (i < shape[0]) & (j >= 0) & (j < shape[1])
        res = np.zeros(len(p1), dtype=bool)
        res[ok] = grid[i[ok], j[ok]]
        return res

    return inside


def _relabel_beyond(labels, ct: Image, box, end: int, pair: tuple[int, int], beyond: int,
                    point: np.ndarray, outward: np.ndarray) -> int:
    """Relabel ``end``'s body voxels in ``box`` beyond the plane (``point``, ``outward``
    normal pointing away from ``end``'s body) as ``beyond`` (bright) or 0 (disc); the
    number of voxels relabelled (0 when a guard fails: nothing changes then)."""
    from ...verse.body import body_voxels

    strided, an_affine, _ = _analysis_grid(ct, box)
    an_sub = labels[strided]
    crop = np.where(np.isin(an_sub, pair), an_sub, 0).astype(np.uint8)
    bodies = body_voxels(Image(crop, an_affine, "end vertebra and its neighbour"), [end])
    if end not in bodies or not len(bodies[end]):
        return 0
    # the body's footprint across the plane's normal (a 1 mm lattice, widened by the rim):
    # the sliver beyond the disc lies in it, whether or not the disc between them is labelled
    e1, e2 = _frame(outward)
    body_rel = apply_affine(an_affine, bodies[end]) - point
    lattice = _footprint(body_rel @ e1, body_rel @ e2)
    sub = labels[box]
    vox = np.argwhere(sub == end)
    start = np.array([b.start for b in box])
    rel = apply_affine(ct.crop_affine(box), vox) - point
    keep = lattice(rel @ e1, rel @ e2)
    vox, rel = vox[keep], rel[keep]
    out = rel @ outward  # mm beyond the plane
    hu = np.asarray(ct.array[box])[vox[:, 0], vox[:, 1], vox[:, 2]]
    bright = hu >= DISC_MAX_HU
    sliver = vox[(out > 0) & bright]
    if not len(sliver) or len(sliver) * float(np.prod(ct.spacing)) < SLIVER_MIN_MM3:
        return 0
    ijk = sliver + start
    at_face = (ijk == 0) | (ijk == np.asarray(labels.shape) - 1)
    if not at_face.any():
        return 0  # inside the view: not cut by it
    disc = vox[(out > -0.5 * DISC_MIN_MM) & ~bright]
    sub[sliver[:, 0], sliver[:, 1], sliver[:, 2]] = beyond
    sub[disc[:, 0], disc[:, 1], disc[:, 2]] = 0
    return int(len(sliver) + len(disc))


__all__ = ["label_edge_slivers"]
