"""Vertebral BODY centroids from whole-vertebra instance masks, as VerSe defines centroids.

A VerSe centroid is the centre of the vertebral body, not of the whole vertebra: the
whole-mask centre of mass lies about 9-14 mm posterior of it because the arch, the
transverse and the spinous processes all sit behind the body. This module cuts the
posterior elements off each vertebra and returns the centre of mass of what is left.

Method (all geometry in world millimetres, RAS, so that any grid orientation, spacing or
oblique affine gives the same world answer; results are voxel indices on the input grid):

1. **Local cranio-caudal axis** of vertebra v: the direction from the whole-mask centre of
   mass of its caudal neighbour to that of its cranial neighbour (one-sided, using v's own
   centre, when only one is usable). A neighbour is usable when it is within 80 mm, holds
   at least a third of v's volume and does not touch the grid's edge (a vertebra cut by
   the field of view has a biased centre). Sacrum and coccyx are never neighbours of a
   mobile vertebra (their centres lie far off the column axis). A vertebra that touches
   the edge itself borrows its usable neighbour's axis instead of using its own biased
   centre. A lone vertebra takes its principal axis of least extent (vertebrae are flatter
   than wide or deep) when that is within 45 degrees of world S, else world S; world S
   directly when it touches the edge.
2. **Projection along the axis.** The vertebra's voxels are projected onto the plane
   perpendicular to the axis and rasterised (pixel = max(1 mm, half the largest voxel
   spacing), closed to bridge gaps between projected voxel centres). The spinal canal is
   the largest hole of that projection (>= 40 mm^2): the vertebral foramen runs along
   the axis, so the closed ring of body + arch encloses it.
3. **Anterior direction** in that plane: from the canal centre towards the centre of a
   first body estimate (cut as in step 4 with world anterior); both lie in the
   mid-sagittal plane of a symmetric vertebra, so this follows axial rotation as in
   scoliosis, and the ~25 mm lever arm keeps it stable. It is used when that vector is at
   least 3 mm long and within 45 degrees of world anterior (+A) projected into the plane;
   otherwise the projected world anterior is used.
4. **Cut.** The canal's anterior wall is the most anterior canal pixel edge; the body is
   the part of the vertebra anterior of that wall plus a 2 mm margin (which drops the
   pedicle roots) and within 35 mm of the canal's midline (no body is wider; this drops a
   rib a mask took in with its vertebra), restricted to its largest 26-connected component. Without a canal
   (open arch, partial vertebra, odd masks) the wall is estimated from the thickest part
   of the projection: the body is the largest disc, so the wall lies one inscribed radius
   posterior of the point of maximal distance to the projection's border.
5. **Centroid** = centre of mass of the body part (mean voxel index, exact for any affine).

Enclosed cavities of a label (e.g. unsegmented cancellous bone) are filled before all of
this, so masks with holes give the same body. With the CT (optional), gaps that open to
the outside are mended too (see :func:`body_centroids`).

Special levels (documented choices):

* **C1** has no body. The same cut keeps the part of the ring anterior of the canal, i.e.
  the anterior arch (with the front of the lateral masses); its centre is returned.
* **C2**: the dens projects onto the body along the axis and is kept with it, so the C2
  centre is that of body + dens (slightly cranial of the body alone).
* **Sacrum (26)**: the S1 body. The sacrum's cranial 30 mm slab (below its 99th height
  percentile, along the axis from its centre of mass towards the lowest mobile vertebra;
  world S without one) is cut like a vertebra, and the part anterior of the canal is kept
  within +-25 mm of the canal's midline (half an S1 body width: this drops the alae, which
  the field of view often cuts unevenly). Without a usable slab, the mass centre.
* **Coccyx (27)**: the centre of mass (a small bone without a separate body).
* A vertebra cut by the field of view gives the centre of its visible body part. A sliver
  holding posterior elements only (no body in view) still returns the centre of its most
  anterior part: such centres are not meaningful and not stable against resampling.

Non-vertebra values in the mask (subregions 40-50, discs 100+, anything outside the VerSe
table) are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import SpineLabelInputError
from ..image import Image
from ..labels import COCCYX, SACRUM, VERSE_VALUES, mask_dtype, sort_anatomical

#: World unit vectors (RAS).
_RIGHT = np.array([1.0, 0.0, 0.0])
_ANTERIOR = np.array([0.0, 1.0, 0.0])
_SUPERIOR = np.array([0.0, 0.0, 1.0])

#: A neighbour must hold this fraction of a vertebra's volume to steer its axis.
_MIN_NEIGHBOUR_VOLUME_FRACTION = 1.0 / 3.0
#: Neighbour centres further than this are not adjacent vertebrae (a gap in the labels).
_MAX_NEIGHBOUR_DISTANCE_MM = 80.0
#: Smallest projected hole accepted as the spinal canal (transverse foramina are ~30 mm^2).
_MIN_CANAL_AREA_MM2 = 40.0
#: Margin anterior of the canal wall: removes the roots of the pedicles.
_WALL_MARGIN_MM = 2.0
#: Thickness of the sacrum's cranial slab searched for the S1 body.
_S1_SLAB_MM = 30.0
#: Half the width of an adult S1 body, about the canal midline.
_S1_HALF_WIDTH_MM = 25.0
#: No vertebral body reaches further than this from the canal's midline (the widest adult
#: lumbar bodies are ~60 mm wide): what a mask holds beyond it in front of the canal is
#: not body (a rib taken in with its vertebra, the first rib arching forward from T1).
_BODY_HALF_WIDTH_MM = 35.0
#: CT repair of labels: closing radius, and the density that counts as (cancellous) bone.
_REPAIR_RADIUS_MM = 3.0
_BONE_HU = 100.0
#: Anterior from the canal must agree with world anterior within this angle.
_MAX_ANTERIOR_DEVIATION_DEG = 45.0


@dataclass
class _LabelCrop:
    """One label's voxels in the bounding box ``offset + [0, shape)`` of the mask grid."""

    value: int
    offset: np.ndarray  # (3,) int voxel index (i, j, k) of the crop's first voxel
    at_border: bool  # touches the edge of the grid: probably cut by the field of view
    inside: np.ndarray  # bool crop, holes filled
    ijk: np.ndarray  # (N, 3) voxel indices (i, j, k) on the full mask grid of the True voxels
    world: np.ndarray  # (N, 3) RAS mm of the same voxels
    centre: np.ndarray = field(init=False)  # (3,) RAS mm centre of mass of ``world``

    def __post_init__(self):
        self.centre = self.world.mean(axis=0)


# ----------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------
def mass_centroids(mask: Image, labels=None) -> dict[int, np.ndarray]:
    """Centre of mass of each whole vertebra: VerSe value -> (3,) voxel index (i, j, k) on ``mask``'s grid.

    ``labels`` restricts the output to those VerSe values (absent ones are left out);
    default: every VerSe vertebra value present. Non-vertebra values are ignored.
    """
    crops = _label_crops(mask, fill_holes=False)
    return {value: crops[value].ijk.mean(axis=0) for value in _wanted_values(sorted(crops), labels, mask.source)}


def body_centroids(mask: Image, labels=None, ct: Image | None = None) -> dict[int, np.ndarray]:
    """Vertebral body centres (VerSe centroids): VerSe value -> (3,) voxel index (i, j, k) on ``mask``'s grid.

    See the module docstring for the method and for C1, C2, sacrum and coccyx. ``labels``
    restricts the output (all present vertebrae still steer the local axes). ``ct``, when
    given, must be on the mask's grid; it then mends labels with gaps or slots that open
    to the outside (which hole filling cannot close): unlabelled voxels enclosed by a
    ~3 mm closing of a label that have bone density (>= 100 HU) count as that vertebra.
    """
    if ct is not None:
        mask.require_same_grid(ct, what="CT")
    bodies = body_voxels(mask, labels, ct)
    return {value: ijk.mean(axis=0) for value, ijk in bodies.items()}


def body_masks(mask: Image, labels=None) -> Image:
    """A label map on ``mask``'s grid in which each vertebra keeps only its body part.

    Same VerSe values as the input; everything else (posterior elements, non-vertebra
    values) becomes 0. Holes of the input that were filled for the analysis are part of
    the returned body.
    """
    bodies = body_voxels(mask, labels, None)
    out = np.zeros(mask.shape, dtype=mask_dtype(bodies.keys()))
    for value, ijk in bodies.items():
        idx = np.round(ijk).astype(np.int64)
        out[idx[:, 0], idx[:, 1], idx[:, 2]] = value
    return mask.with_array(out)


# ----------------------------------------------------------------------------------
# per-label extraction
# ----------------------------------------------------------------------------------
def _wanted_values(present: list[int], labels, source) -> list[int]:
    """The requested VerSe values that are present (all present ones when ``labels`` is None)."""
    if labels is None:
        return present
    wanted = []
    for value in labels:
        value = int(value)
        if value not in VERSE_VALUES:
            raise SpineLabelInputError(source, f"asked for label {value}, which is not a VerSe vertebra value (1-28)")
        if value in present:
            wanted.append(value)
    return wanted


def _vertebra_only(mask: Image) -> np.ndarray:
    """The mask array with every non-vertebra value set to 0 (uint8, VerSe values 1-28)."""
    arr = mask.array
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise SpineLabelInputError(mask.source, f"is not a label map (non-integer {arr.dtype} values)")
        arr = arr.astype(np.int64)
    first, last = min(VERSE_VALUES), max(VERSE_VALUES)
    if len(VERSE_VALUES) == last - first + 1:  # one range (1-28): two comparisons beat isin
        keep = (arr >= first) & (arr <= last)
    else:
        keep = np.isin(arr, list(VERSE_VALUES))
    out = np.zeros_like(arr, dtype=np.uint8)  # same memory order: NIfTI arrays are Fortran-ordered
    np.copyto(out, arr, where=keep, casting="unsafe")
    return out


def _label_crops(mask: Image, fill_holes: bool, ct: Image | None = None) -> dict[int, _LabelCrop]:
    """Voxels of every present VerSe vertebra, each in its own bounding box (fast)."""
    verts = _vertebra_only(mask)
    boxes = ndimage.find_objects(verts)
    present = [v for v in range(1, len(boxes) + 1) if boxes[v - 1] is not None and v in VERSE_VALUES]
    crops = {}
    for value in present:
        box = boxes[value - 1]
        offset = np.array([s.start for s in box], dtype=np.int64)
        inside = verts[box] == value
        if ct is not None:
            inside = _repair_with_ct(inside, verts[box], ct.array[box], mask.spacing)
        if fill_holes:
            inside = ndimage.binary_fill_holes(inside)
        ijk = np.argwhere(inside).astype(np.float64) + offset
        at_border = any(s.start == 0 or s.stop == n for s, n in zip(boxes[value - 1], verts.shape))
        crops[value] = _LabelCrop(value, offset, at_border, inside, ijk, mask.index_to_world(ijk))
    return crops


def _repair_with_ct(inside: np.ndarray, labels_crop: np.ndarray, ct_crop: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Add unlabelled bone-density voxels that a ~3 mm closing of the label encloses.

    This mends gaps and slots in a label (missed cancellous bone, broken cortex) that
    open to the outside, which hole filling alone cannot close. The density test keeps
    soft tissue in the label's concavities (between the processes, the disc) out.
    """
    iterations = max(1, int(round(_REPAIR_RADIUS_MM / float(np.min(spacing)))))
    padded = np.pad(inside, iterations)  # so the closing is not clipped at the box edge
    closed = ndimage.binary_closing(padded, structure=ndimage.generate_binary_structure(3, 1), iterations=iterations)
    closed = ndimage.binary_fill_holes(closed)[tuple(slice(iterations, -iterations) for _ in range(3))]
    add = closed & ~inside & (labels_crop == 0) & (ct_crop >= _BONE_HU)
    return inside | add


# ----------------------------------------------------------------------------------
# the body cut
# ----------------------------------------------------------------------------------
def body_voxels(mask: Image, labels=None, ct: Image | None = None) -> dict[int, np.ndarray]:
    """VerSe value -> (M, 3) voxel indices (i, j, k) on ``mask``'s grid of its body part
    (the cut of :func:`body_centroids`, without a full-size output array)."""
    crops = _label_crops(mask, fill_holes=True, ct=ct)
    wanted = _wanted_values(sorted(crops), labels, mask.source)
    spacing_mm = float(mask.spacing.max())
    out = {}
    for value in wanted:
        crop = crops[value]
        if value == COCCYX:
            out[value] = crop.ijk
            continue
        axis = _local_axis(value, crops)
        if value == SACRUM:
            out[value] = _s1_body(crop, axis, spacing_mm)
            continue
        keep = _anterior_part(crop.world, axis, spacing_mm)
        out[value] = _largest_component(crop, keep)
    return out


def _s1_body(crop: _LabelCrop, axis: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Voxel indices (i, j, k) of the S1 body: the anterior, central part of the sacrum's cranial slab.

    The slab starts at the 99th height percentile (single stray voxels do not move it).
    Anterior of the canal the slab also holds the sacral alae, which the FOV or the
    segmentation may cut unevenly; a band of +-25 mm (half an adult S1 body width) about
    the canal's midline keeps the body only.
    """
    height = crop.world @ axis
    slab = height >= np.percentile(height, 99.0) - _S1_SLAB_MM
    if slab.sum() < 10:
        return crop.ijk
    cut = _cut(crop.world[slab], axis, spacing_mm)
    body = cut.body
    if cut.midline is not None:
        body &= np.abs(cut.lateral - cut.midline) <= _S1_HALF_WIDTH_MM
    keep = np.zeros(len(crop.ijk), bool)
    keep[slab] = body
    return _largest_component(crop, keep)


def _local_axis(value: int, crops: dict[int, _LabelCrop]) -> np.ndarray:
    """Unit RAS vector pointing cranially along the spine at vertebra ``value``."""
    centres = {v: c.centre for v, c in crops.items()}
    if value == SACRUM:  # the S1 body points towards the lowest mobile vertebra
        mobile = [v for v in sort_anatomical(centres) if v not in (SACRUM, COCCYX)]
        if mobile:
            direction = centres[mobile[-1]] - centres[SACRUM]
            if np.linalg.norm(direction) > 1e-6:
                return direction / np.linalg.norm(direction)
        return _SUPERIOR.copy()
    order = [v for v in sort_anatomical(centres) if v not in (SACRUM, COCCYX)]
    idx = order.index(value)
    cranial = _usable_neighbour(value, order[idx - 1] if idx > 0 else None, crops, centres)
    caudal = _usable_neighbour(value, order[idx + 1] if idx + 1 < len(order) else None, crops, centres)
    if cranial is None and caudal is None:
        # a lone vertebra cut by the field of view has a misleading shape: trust world S
        return _SUPERIOR.copy() if crops[value].at_border else _shape_axis(crops[value].world)
    if crops[value].at_border and (cranial is None or caudal is None):
        # our own centre is biased by the cut: borrow the intact neighbour's axis
        return _local_axis(cranial if cranial is not None else caudal, crops)
    top = centres[cranial] if cranial is not None else centres[value]
    bottom = centres[caudal] if caudal is not None else centres[value]
    direction = top - bottom
    return direction / np.linalg.norm(direction)


def _usable_neighbour(value: int, other: int | None, crops: dict[int, _LabelCrop], centres: dict) -> int | None:
    """``other`` if its centre can steer ``value``'s axis, else None.

    Its centre must be a fair one (not cut by the field of view, not a sliver of a
    vertebra) and be the centre of an adjacent vertebra (close, but not on top of ours).
    """
    if other is None or crops[other].at_border:
        return None
    if len(crops[other].ijk) < _MIN_NEIGHBOUR_VOLUME_FRACTION * len(crops[value].ijk):
        return None
    distance = np.linalg.norm(centres[other] - centres[value])
    if not 1e-3 < distance <= _MAX_NEIGHBOUR_DISTANCE_MM:
        return None
    return other


def _shape_axis(world: np.ndarray) -> np.ndarray:
    """Cranial axis of a lone vertebra: its axis of least extent if near world S, else S."""
    if len(world) >= 10:
        centred = world - world.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        axis = vectors[:, 0]  # smallest variance: vertebrae are flatter than wide or deep
        if axis @ _SUPERIOR < 0:
            axis = -axis
        if axis @ _SUPERIOR >= np.cos(np.deg2rad(45.0)):
            return axis
    return _SUPERIOR.copy()


def _plane_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lateral, anterior) unit vectors perpendicular to ``axis``; anterior ~ world A."""
    anterior = _ANTERIOR - (_ANTERIOR @ axis) * axis
    if np.linalg.norm(anterior) < 0.3:  # axis almost antero-posterior: take the sagittal normal
        anterior = np.cross(axis, _RIGHT)
    anterior = anterior / np.linalg.norm(anterior)
    lateral = np.cross(anterior, axis)
    return lateral, anterior


@dataclass
class _Cut:
    """The body cut of one vertebra, in plane coordinates perpendicular to its axis.

    ``lateral``/``anterior`` are the points' plane coordinates (mm) along the refined
    in-plane directions; ``wall`` is the anterior coordinate of the canal's anterior wall;
    ``midline`` the lateral coordinate of the canal centre (None without a canal).
    """

    lateral: np.ndarray
    anterior: np.ndarray
    wall: float
    midline: float | None

    @property
    def body(self) -> np.ndarray:
        """Boolean per point: anterior of the wall plus the margin."""
        return self.anterior > self.wall + _WALL_MARGIN_MM


def _cut(world: np.ndarray, axis: np.ndarray, spacing_mm: float) -> _Cut:
    """Find the canal and the body's posterior wall of points ``world`` (RAS mm rows)."""
    lateral, anterior = _plane_basis(axis)
    centre = world.mean(axis=0)
    uv = np.stack([(world - centre) @ lateral, (world - centre) @ anterior], axis=1)
    pixel = max(1.0, spacing_mm / 2.0)
    image, lo = _rasterise(uv, pixel, spacing_mm)
    canal = _canal_pixels(image, pixel)
    if canal is None:
        return _Cut(uv[:, 0], uv[:, 1], _wall_from_thickness(image, pixel, lo), None)
    canal_uv = (canal + 0.5) * pixel + lo  # pixel centres in plane mm
    canal_centre = canal_uv.mean(axis=0)
    # The body centre seen from the canal centre gives the mid-sagittal direction (both lie
    # on the symmetry plane) with a long lever arm; find the body first with world anterior.
    first_wall = float(np.max(canal_uv[:, 1])) + pixel / 2.0
    first_body = (uv[:, 1] > first_wall + _WALL_MARGIN_MM) & (np.abs(uv[:, 0] - canal_centre[0]) <= _BODY_HALF_WIDTH_MM)
    towards = uv[first_body].mean(axis=0) if np.any(first_body) else np.zeros(2)  # else the mass centre
    direction = _anterior_from_canal(towards - canal_centre)
    side = np.array([direction[1], -direction[0]])  # in-plane lateral, perpendicular to it
    wall = float(np.max(canal_uv @ direction)) + pixel / 2.0
    return _Cut(uv @ side, uv @ direction, wall, float(canal_centre @ side))


def _anterior_part(world: np.ndarray, axis: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Boolean per point (RAS mm rows of ``world``): True for the body, anterior of the canal
    and within _BODY_HALF_WIDTH_MM of its midline."""
    cut = _cut(world, axis, spacing_mm)
    if cut.midline is None:
        return cut.body
    return cut.body & (np.abs(cut.lateral - cut.midline) <= _BODY_HALF_WIDTH_MM)


def _rasterise(uv: np.ndarray, pixel: float, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy image of plane points ``uv`` (mm) and the plane mm of pixel (0, 0)'s corner.

    The image is closed so that gaps between projected voxel centres (up to one voxel
    spacing) do not break the arch; a border of empty pixels keeps the closing exact.
    """
    reach = int(np.ceil(spacing_mm / pixel))
    lo = uv.min(axis=0) - (reach + 2) * pixel
    idx = np.floor((uv - lo) / pixel).astype(np.int64)
    shape = idx.max(axis=0) + reach + 3
    image = np.zeros(tuple(shape), bool)
    image[idx[:, 0], idx[:, 1]] = True
    disk = _disk(reach)
    image = ndimage.binary_erosion(ndimage.binary_dilation(image, disk), disk, border_value=1)
    return image, lo


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius + 0.5


def _canal_pixels(image: np.ndarray, pixel: float) -> np.ndarray | None:
    """(K, 2) pixel indices of the largest enclosed hole (the canal), or None if too small."""
    holes = ndimage.binary_fill_holes(image) & ~image
    labelled, n = ndimage.label(holes)
    if n == 0:
        return None
    sizes = np.bincount(labelled.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    if sizes[best - 1] * pixel * pixel < _MIN_CANAL_AREA_MM2:
        return None
    return np.argwhere(labelled == best).astype(np.float64)


def _anterior_from_canal(canal_to_mass: np.ndarray) -> np.ndarray:
    """In-plane anterior unit vector (lateral, anterior components) from canal to mass centre.

    Falls back to the projected world anterior (0, 1) when the vector is too short to
    have a direction or deviates too far from it (a mis-detected canal).
    """
    length = np.linalg.norm(canal_to_mass)
    if length < 3.0:
        return np.array([0.0, 1.0])
    direction = canal_to_mass / length
    if direction[1] < np.cos(np.deg2rad(_MAX_ANTERIOR_DEVIATION_DEG)):
        return np.array([0.0, 1.0])
    return direction


def _wall_from_thickness(image: np.ndarray, pixel: float, lo: np.ndarray) -> float:
    """Anterior coordinate (plane mm) of the body's posterior wall, from the thickest part.

    The body is the largest disc of the projection: its centre is the pixel farthest from
    the border and the wall lies one such distance posterior of it.
    """
    distance = ndimage.distance_transform_edt(ndimage.binary_fill_holes(image)) * pixel
    peak = np.unravel_index(int(np.argmax(distance)), distance.shape)
    centre_anterior = (peak[1] + 0.5) * pixel + lo[1]
    return float(centre_anterior - distance[peak])


def _largest_component(crop: _LabelCrop, keep: np.ndarray) -> np.ndarray:
    """Voxel indices (i, j, k) of the largest 26-connected component of ``crop.ijk[keep]``."""
    if not np.any(keep):  # nothing anterior of the wall: keep the whole vertebra
        return crop.ijk
    local = (crop.ijk[keep] - crop.offset).astype(np.int64)
    part = np.zeros(crop.inside.shape, bool)
    part[local[:, 0], local[:, 1], local[:, 2]] = True
    labelled, n = ndimage.label(part, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        sizes = np.bincount(labelled.ravel())[1:]
        part = labelled == int(np.argmax(sizes)) + 1
    return np.argwhere(part).astype(np.float64) + crop.offset
