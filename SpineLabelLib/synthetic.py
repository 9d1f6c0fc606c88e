"""Seeded synthetic spine CT phantoms with exact VerSe ground truth.

Anatomical model
----------------
Everything is defined analytically in world millimetres (RAS) and only then sampled on the
requested grid, so every spacing, orientation (any of the 48 axis codes) and oblique
affine shows the same anatomy:

* **Spine centre curve.** The vertebrae C1..sacrum (with T13 and/or L6 when asked) are
  stacked along a curve by arc length: level-dependent body heights and disc
  thicknesses, a sagittal profile with cervical lordosis, thoracic kyphosis, lumbar
  lordosis and a sacral slope of about 40 degrees, and, for scoliosis, a lateral C-curve
  whose end tangents differ by the requested Cobb angle, with axial rotation of the
  vertebrae towards the convexity. Each vertebra is a rigid body in its own frame
  (u right, v anterior, w cranial) placed on the curve; the seed jitters sizes, disc
  heights and curvature a little.
* **Solids** are approximate signed distance functions (negative inside) combined by
  union/difference; each is evaluated only inside its bounding box. Partial volume is
  modelled by turning the distance into a voxel occupancy, so thin cortical shells still
  show on coarse grids.
* **Vertebra** = body (elliptic cylinder, flat posterior wall, waist, slightly concave
  endplates, cortical shell 0.8-1.3 mm around a trabecular core) + neural arch (ring
  of pedicles and laminae around the spinal canal) + spinous process, transverse
  processes and superior/inferior articular processes. C1 is a ring without body
  (anterior arch, lateral masses, posterior arch); C2 carries the dens; C3-C7 have
  transverse foramina and (C3-C6) bifid spinous processes. The sacrum is S1 body +
  a tapered, anteriorly concave sacral mass with alae, a sacral canal and foramina.
* **Around the spine**: discs between bodies (darker than bone), CSF and cord in the
  canal, ribs (capsule chains) on T1-T12 and T13, a skull base above C1, iliac wings
  beside the sacrum, lungs around the thoracic spine, muscle/soft tissue, a
  subcutaneous fat layer and air outside the body.
* **Anomalies**: T13 (28, with short ribs), L6 (25), missing 12th rib pair (T12 then
  has lumbar-like transverse processes), wedge fractures (anterior height loss given as
  a fraction, posterior almost intact, denser trabecular bone), scoliosis, osteoporosis
  (trabecular 40-100 HU, thin cortex), pedicle screws (3000 HU) with tulips, rods and
  radial streak artefacts, fields of view that cut a vertebra.

Ground truth: the mask holds the VerSe value of each whole vertebra (body + posterior
elements; ribs, skull, pelvis, screws heads and discs are 0), the sacrum is 26, and every
vertebra that reaches into the field of view is labelled, partial ones included.
Centroids are the analytic centres of mass of the vertebral BODY (C1: anterior arch +
lateral masses; sacrum: S1 body), as fractional voxel indices (i, j, k) on the phantom
grid, for each vertebra whose body centre lies inside the field of view.

Limits: shapes are smooth idealisations (no trabecular texture, no osteophytes, no
organs beyond lungs, no coccyx, no contrast agent, no beam hardening except the screw
streaks); the field of view is tight around the spine, so ribs and iliac wings are cut
laterally; noise is Gaussian, lightly correlated. It is a test object, not a patient.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from . import labels as L
from .errors import SpineLabelInputError
from .image import Image

# ----------------------------------------------------------------------------------
# Hounsfield units of the tissues
# ----------------------------------------------------------------------------------
HU_AIR = -1000.0
HU_FAT = -100.0
HU_SOFT = 40.0
HU_LUNG = -850.0
HU_CSF = 15.0
HU_CORD = 35.0
HU_DISC_ANNULUS = 100.0
HU_DISC_NUCLEUS = 80.0
HU_METAL = 3000.0
#: (cortical HU, trabecular HU by region, shell thickness mm): normal and osteoporotic bone.
_BONE_NORMAL = (1050.0, {"C": 290.0, "T": 240.0, "L": 210.0, "S": 200.0}, 1.3)
_BONE_OSTEO = (650.0, {"C": 95.0, "T": 75.0, "L": 65.0, "S": 60.0}, 0.8)
HU_RIB_CORTEX, HU_RIB_MARROW = 850.0, 230.0
#: Extra trabecular density of a compressed (fractured) body.
_FRACTURE_SCLEROSIS_HU = 80.0
#: CT value range stored in the int16 volume.
_HU_MIN, _HU_MAX = -1024, 3071
#: Beyond this many voxels make_phantom refuses (about 1.5 GB of working memory).
_MAX_VOXELS = 150_000_000
#: Minimum in-plane field of view (lateral, antero-posterior) in mm, before margins.
_MIN_FOV_LATERAL_MM, _MIN_FOV_AP_MM = 160.0, 140.0
_BIG = np.float32(1e4)  # "far outside" distance for empty buffer voxels


# ----------------------------------------------------------------------------------
# public types
# ----------------------------------------------------------------------------------
@dataclass
class PhantomSpec:
    """What to build. All fields have defaults; see :func:`make_phantom`.

    first, last: VerSe names of the first (cranial) and last (caudal) vertebra that must be
        fully inside the field of view, e.g. "C1" and "sacrum" for the whole spine. "T13"
        needs ``t13``, "L6" needs ``l6``. Neighbours reaching into the margins are drawn
        and labelled too.
    spacing: voxel size in mm along the array axes i, j, k.
    axcodes: nibabel axis codes of the grid (any of the 48, e.g. RAS, LPS, PIR, ASL, IPL).
    oblique_deg: extra rotation of the grid axes (about a fixed oblique world axis), giving
        an oblique affine; 0 keeps the grid aligned with the world axes.
    t13: a 13th rib-bearing thoracic vertebra (label 28) between T12 and L1.
    l6: a 6th lumbar vertebra (label 25) between L5 and the sacrum.
    missing_rib12: T12 carries no ribs (and has lumbar-like transverse processes).
    fractures: vertebra name -> anterior height loss fraction (0-0.8) of a wedge
        fracture (Genant: ~0.2-0.25 mild, 0.25-0.4 moderate, >0.4 severe).
    scoliosis_deg: Cobb angle of a right-convex C-curve spanning the field of view.
    osteoporosis: trabecular bone 40-100 HU and a thin, less dense cortex.
    screws: names of vertebrae that get bilateral pedicle screws (rods join them).
    noise_hu: standard deviation of the (lightly correlated) Gaussian noise in HU.
    fov_margin_mm: margin around the spine structures of first..last on every side.
    cut_cranial_mm / cut_caudal_mm: when > 0, the cranial (caudal) edge of the field of
        view lies this many mm inside the cranial-most (caudal-most) bone of ``first``
        (``last``) instead of ``fov_margin_mm`` outside it, so that vertebra is cut.
    seed: makes everything (anatomical jitter, noise, artefacts) reproducible.
    name: free label for suites and reports.
    """

    first: str = "T10"
    last: str = "sacrum"
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    axcodes: tuple[str, str, str] = ("R", "A", "S")
    oblique_deg: float = 0.0
    t13: bool = False
    l6: bool = False
    missing_rib12: bool = False
    fractures: dict[str, float] = field(default_factory=dict)
    scoliosis_deg: float = 0.0
    osteoporosis: bool = False
    screws: tuple[str, ...] = ()
    noise_hu: float = 20.0
    fov_margin_mm: float = 20.0
    cut_cranial_mm: float = 0.0
    cut_caudal_mm: float = 0.0
    seed: int = 0
    name: str = ""


@dataclass
class Phantom:
    """A synthetic CT with its ground truth, all on one grid.

    ct: int16 HU; mask: uint8 VerSe values, same affine as ``ct``.
    centroids_ijk: VerSe value -> (3,) fractional voxel index (i, j, k) on that grid of the
        vertebral BODY centre, for every vertebra whose body centre is inside the grid.
    ribs_ijk: rib-bearing VerSe value -> (2, 3) voxel indices (i, j, k) of the centres of
        its right and left rib heads, when both lie inside the grid.
    notes: human-readable list of what was built (anomalies, field of view).
    """

    ct: Image
    mask: Image
    centroids_ijk: dict[int, np.ndarray]
    spec: PhantomSpec
    ribs_ijk: dict[int, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def centroids_world(self) -> dict[int, np.ndarray]:
        """Body centres in RAS mm (value -> (3,))."""
        return {v: self.ct.index_to_world(ijk) for v, ijk in self.centroids_ijk.items()}


# ----------------------------------------------------------------------------------
# small geometry helpers
# ----------------------------------------------------------------------------------
def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _frame(origin, axes) -> np.ndarray:
    """4x4 local->world (or local->parent) map; ``axes`` columns are the local axes."""
    f = np.eye(4)
    f[:3, :3] = axes
    f[:3, 3] = origin
    return f


def _axes_from(e1) -> np.ndarray:
    """A right-handed orthonormal basis (columns) whose first axis is ``e1``."""
    e1 = _unit(e1)
    helper = np.array([0.0, 0.0, 1.0]) if abs(e1[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e2 = _unit(np.cross(helper, e1))
    e3 = np.cross(e1, e2)
    return np.column_stack([e1, e2, e3])


def _rotation(axis, deg) -> np.ndarray:
    """Rotation matrix by ``deg`` degrees about ``axis`` (right-hand rule)."""
    x, y, z = _unit(axis)
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _ellipse_sdf(u, v, a, b):
    """Approximate signed distance (mm) to the ellipse (u/a)^2 + (v/b)^2 = 1 (exact near it)."""
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    g = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2)
    # (q - 1) / |grad q| with |grad q| = g / q; at the centre q/g -> between a and b.
    ratio = np.where(g > 1e-9, q / np.maximum(g, 1e-9), np.minimum(a, b))
    return ((q - 1.0) * ratio).astype(np.float32, copy=False)


def _occupancy(d, width):
    """Fraction of a voxel of size ``width`` inside the surface at signed distance ``d``."""
    out = np.float32(0.5) - d * np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


# ----------------------------------------------------------------------------------
# grid and solids
# ----------------------------------------------------------------------------------
class _Grid:
    """The phantom grid: shape and voxel(i, j, k)->RAS affine."""

    def __init__(self, shape, affine):
        self.shape = tuple(int(n) for n in shape)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.inv = np.linalg.inv(self.affine)
        #: partial-volume width: the geometric mean voxel size
        self.width = float(np.prod(np.linalg.norm(self.affine[:3, :3], axis=0)) ** (1 / 3))

    def coords(self, index_to_x: np.ndarray, box) -> list[np.ndarray]:
        """Coordinates (3 arrays, broadcastable to the box shape) of the voxels of ``box``
        under the 4x4 map ``index_to_x`` from voxel index (i, j, k). Axes with a zero
        coefficient are not expanded, so aligned grids stay cheap."""
        ranges = []
        for ax, sl in enumerate(box):
            shp = [1, 1, 1]
            shp[ax] = sl.stop - sl.start
            ranges.append(np.arange(sl.start, sl.stop, dtype=np.float32).reshape(shp))
        out = []
        for r in range(3):
            acc = np.full((1, 1, 1), np.float32(index_to_x[r, 3]), dtype=np.float32)
            for c in range(3):
                coef = index_to_x[r, c]
                if abs(coef) > 1e-9:
                    acc = acc + np.float32(coef) * ranges[c]
            out.append(acc)
        return out

    def box_of_world_corners(self, corners_world: np.ndarray, pad: int = 1):
        """Index box (tuple of slices) covering world points, clipped to the grid; None if empty."""
        ijk = corners_world @ self.inv[:3, :3].T + self.inv[:3, 3]
        lo = np.floor(ijk.min(axis=0)).astype(int) - pad
        hi = np.ceil(ijk.max(axis=0)).astype(int) + pad + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _box_intersect(a, b):
    if a is None or b is None:
        return None
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.stop <= s.start for s in out) else out


def _box_union(boxes):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def _relative(inner, outer):
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


def _box_shape(box):
    return tuple(s.stop - s.start for s in box)


class _Shape:
    """A solid: approximately signed distance in mm (negative inside)."""

    def world_corners(self) -> np.ndarray:  # (8N, 3) points whose hull contains the solid
        raise NotImplementedError

    def index_box(self, grid: _Grid):
        return grid.box_of_world_corners(self.world_corners())

    def evaluate(self, grid: _Grid, box) -> np.ndarray:
        raise NotImplementedError


class _Leaf(_Shape):
    """A primitive in its own frame (4x4 local->world); subclasses define ``bounds`` and ``sdf``."""

    def __init__(self, frame):
        self.frame = np.asarray(frame, dtype=np.float64)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sdf(self, u, v, w) -> np.ndarray:
        raise NotImplementedError

    def world_corners(self):
        lo, hi = self.bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        return corners @ self.frame[:3, :3].T + self.frame[:3, 3]

    def evaluate(self, grid, box):
        u, v, w = grid.coords(np.linalg.inv(self.frame) @ grid.affine, box)
        d = self.sdf(u, v, w)
        return np.broadcast_to(d, _box_shape(box)).astype(np.float32, copy=False)


class _Union(_Shape):
    """Union of solids; each child is evaluated only inside its own box."""

    def __init__(self, children):
        self.children = list(children)

    def world_corners(self):
        return np.concatenate([c.world_corners() for c in self.children])

    def index_box(self, grid):
        return _box_union([c.index_box(grid) for c in self.children])

    def evaluate(self, grid, box):
        buf = np.full(_box_shape(box), _BIG, dtype=np.float32)
        for child in self.children:
            cb = _box_intersect(child.index_box(grid), box)
            if cb is None:
                continue
            view = buf[_relative(cb, box)]
            np.minimum(view, child.evaluate(grid, cb), out=view)
        return buf


class _Subtract(_Shape):
    """``base`` minus ``holes`` (each hole grown by ``grow`` mm)."""

    def __init__(self, base, holes, grow: float = 0.0):
        self.base, self.holes, self.grow = base, list(holes), grow

    def world_corners(self):
        return self.base.world_corners()

    def index_box(self, grid):
        return self.base.index_box(grid)

    def evaluate(self, grid, box):
        buf = np.array(self.base.evaluate(grid, box), dtype=np.float32)
        for hole in self.holes:
            hb = _box_intersect(hole.index_box(grid), box)
            if hb is None:
                continue
            view = buf[_relative(hb, box)]
            np.maximum(view, np.float32(self.grow) - hole.evaluate(grid, hb), out=view)
        return buf


# -- primitives ----------------------------------------------------------------------
class _RoundBox(_Leaf):
    """Box with half sizes ``half`` and edge radius ``r``, centred at the frame origin."""

    def __init__(self, frame, half, r=1.0):
        super().__init__(frame)
        self.half = np.asarray(half, dtype=np.float64)
        self.r = min(float(r), float(self.half.min()) * 0.95)

    def bounds(self):
        return -self.half, self.half

    def sdf(self, u, v, w):
        r = np.float32(self.r)
        qs = [np.abs(c) - np.float32(h - self.r) for c, h in zip((u, v, w), self.half)]
        outside = np.sqrt(sum(np.maximum(q, 0) ** 2 for q in qs))
        inside = np.minimum(np.maximum(np.maximum(qs[0], qs[1]), qs[2]), 0)
        return outside + inside - r


class _Capsule(_Leaf):
    """Segment from the frame origin along local +w of length ``length``, radius ``r``."""

    def __init__(self, p0, p1, r, parent=np.eye(4)):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        axes = _axes_from(p1 - p0)[:, [1, 2, 0]]  # local w along the segment
        super().__init__(parent @ _frame(p0, axes))
        self.length = float(np.linalg.norm(p1 - p0))
        self.r = float(r)

    def bounds(self):
        r = self.r
        return np.array([-r, -r, -r]), np.array([r, r, self.length + r])

    def sdf(self, u, v, w):
        h = np.clip(w, 0, np.float32(self.length))
        return np.sqrt(u * u + v * v + (w - h) ** 2) - np.float32(self.r)


class _EllipticCylinder(_Leaf):
    """(u/a)^2 + (v/b)^2 <= 1 with |w| <= hw, about the frame origin."""

    def __init__(self, frame, a, b, hw):
        super().__init__(frame)
        self.a, self.b, self.hw = float(a), float(b), float(hw)

    def bounds(self):
        return np.array([-self.a, -self.b, -self.hw]), np.array([self.a, self.b, self.hw])

    def sdf(self, u, v, w):
        return np.maximum(_ellipse_sdf(u, v, self.a, self.b), np.abs(w) - np.float32(self.hw))


class _Ring(_Leaf):
    """Neural arch: elliptic annulus around the canal (frame origin at the canal centre),
    kept posterior of ``v_cut`` (local v) and within |w| <= hw."""

    def __init__(self, frame, a_in, b_in, thick, hw, v_cut):
        super().__init__(frame)
        self.a_in, self.b_in, self.t, self.hw, self.v_cut = a_in, b_in, thick, hw, v_cut

    def bounds(self):
        a, b = self.a_in + self.t, self.b_in + self.t
        return np.array([-a, -b, -self.hw]), np.array([a, min(b, self.v_cut), self.hw])

    def sdf(self, u, v, w):
        outer = _ellipse_sdf(u, v, self.a_in + self.t, self.b_in + self.t)
        inner = _ellipse_sdf(u, v, self.a_in, self.b_in)
        d = np.maximum(outer, -inner)
        d = np.maximum(d, v - np.float32(self.v_cut))
        return np.maximum(d, np.abs(w) - np.float32(self.hw))


class _Body(_Leaf):
    """Vertebral body: elliptic cross-section (a lateral, b antero-posterior) with a flat
    posterior wall and a waist, concave endplates, optional anterior wedge (fracture)."""

    def __init__(self, frame, a, b, height, wedge=0.0, waist=0.06, concavity=0.8):
        super().__init__(frame)
        self.a, self.b, self.h, self.wedge = float(a), float(b), float(height), float(wedge)
        self.waist, self.conc = waist, concavity
        self.v_post = -0.85 * self.b

    def bounds(self):
        return np.array([-self.a, self.v_post, -self.h / 2]), np.array([self.a, self.b, self.h / 2])

    def half_height(self, v):
        """Half the body height at antero-posterior position v (wedge fractures lose height anteriorly)."""
        if self.wedge == 0:
            return np.float32(self.h / 2)
        g = 0.15 + 0.85 * np.clip((v - self.v_post) / (self.b - self.v_post), 0, 1)
        return np.float32(self.h / 2) * (1 - np.float32(self.wedge) * g)

    def top(self, u, v):
        rho2 = np.minimum((u / self.a) ** 2 + (v / self.b) ** 2, 1)
        return self.half_height(v) - np.float32(self.conc) * (1 - rho2)

    def bottom(self, u, v):
        rho2 = np.minimum((u / self.a) ** 2 + (v / self.b) ** 2, 1)
        return -self.half_height(v) + np.float32(self.conc) * (1 - rho2)

    def sdf(self, u, v, w):
        k = 1 - np.float32(self.waist) * (1 - np.minimum((2 * w / np.float32(self.h)) ** 2, 1))
        d = _ellipse_sdf(u / k, v / k, self.a, self.b) * k
        d = np.maximum(d, np.float32(self.v_post) - v)
        d = np.maximum(d, w - self.top(u, v))
        return np.maximum(d, self.bottom(u, v) - w)


class _Disc(_Leaf):
    """Intervertebral disc: between the inferior endplate of ``upper`` and the superior
    endplate of ``lower``, elliptic cross-section in the mid frame, slight bulge."""

    def __init__(self, frame, upper: _Body, lower: _Body, gap):
        super().__init__(frame)
        self.upper, self.lower = upper, lower
        self.a = (upper.a + lower.a) / 2 + 0.5
        self.b = (upper.b + lower.b) / 2 + 0.5
        self.hw = gap / 2 + 0.25 * max(upper.h, lower.h)
        self.to_upper = np.linalg.inv(upper.frame) @ self.frame
        self.to_lower = np.linalg.inv(lower.frame) @ self.frame

    def bounds(self):
        return np.array([-self.a, -0.85 * self.b, -self.hw]), np.array([self.a, self.b, self.hw])

    @staticmethod
    def _map(m, u, v, w):
        return [np.float32(m[r, 0]) * u + np.float32(m[r, 1]) * v + np.float32(m[r, 2]) * w + np.float32(m[r, 3])
                for r in range(3)]

    def sdf(self, u, v, w):
        d = np.maximum(_ellipse_sdf(u, v, self.a, self.b), np.float32(-0.85 * self.b) - v)
        uu, vu, wu = self._map(self.to_upper, u, v, w)
        d = np.maximum(d, wu - self.upper.bottom(uu, vu))
        ul, vl, wl = self._map(self.to_lower, u, v, w)
        return np.maximum(d, self.lower.top(ul, vl) - wl)


class _SacralMass(_Leaf):
    """Sacrum below/around S1: boxy section, half-width ``aw(w)`` (alae wide down to
    w_wide, then tapering), half-depth tapering, centre curving anteriorly (concave front)."""

    def __init__(self, frame, w_top, w_bot, w_wide, aw_top, aw_bot, bw_top, bw_bot, v_top, curve):
        super().__init__(frame)
        self.w_top, self.w_bot, self.w_wide = w_top, w_bot, w_wide
        self.aw_top, self.aw_bot, self.bw_top, self.bw_bot = aw_top, aw_bot, bw_top, bw_bot
        self.v_top, self.curve = v_top, curve

    def profile(self, w):
        """(half-width, half-depth, centre v) at height w."""
        t = np.clip((self.w_top - w) / (self.w_top - self.w_bot), 0, 1)
        tw = np.clip((self.w_wide - w) / (self.w_wide - self.w_bot), 0, 1)
        aw = np.float32(self.aw_top) + np.float32(self.aw_bot - self.aw_top) * tw
        bw = np.float32(self.bw_top) + np.float32(self.bw_bot - self.bw_top) * t
        vc = np.float32(self.v_top) + np.float32(self.curve) * (np.float32(self.w_top) - w) ** 2
        return aw, bw, vc

    def bounds(self):
        depth = self.curve * (self.w_top - self.w_bot) ** 2
        return (np.array([-self.aw_top, self.v_top - self.bw_top, self.w_bot]),
                np.array([self.aw_top, self.v_top + depth + self.bw_top, self.w_top]))

    def sdf(self, u, v, w):
        aw, bw, vc = self.profile(w)
        # superellipse of order 4 (boxy); distance scaled by the smaller half axis
        r = ((u / aw) ** 4 + ((v - vc) / bw) ** 4) ** 0.25
        d = (r - 1) * np.minimum(aw, bw)
        d = np.maximum(d, w - np.float32(self.w_top))
        return np.maximum(d, np.float32(self.w_bot) - w)


class _SacralCanal(_Leaf):
    """The canal inside the sacral mass (a hole), following its curve."""

    def __init__(self, mass: _SacralMass, a_top, b_top):
        super().__init__(mass.frame)
        self.mass, self.a_top, self.b_top = mass, a_top, b_top

    def bounds(self):
        lo, hi = self.mass.bounds()
        return lo, hi + np.array([0, 0, 8.0])

    def sdf(self, u, v, w):
        m = self.mass
        aw, bw, vc = m.profile(w)
        t = np.clip((m.w_top - w) / (m.w_top - m.w_bot), 0, 1)
        a = np.float32(self.a_top) * (1 - 0.55 * t)
        b = np.float32(self.b_top) * (1 - 0.5 * t)
        centre = vc - bw + b + np.float32(4.0)
        d = _ellipse_sdf(u, v - centre, a, b)
        return np.maximum(d, np.float32(m.w_bot + 12) - w)


class _IliacWing(_Leaf):
    """Curved bony plate: part of a vertical cylinder shell (centre (cu, cv), radius R,
    thickness t) between polar angles a0..a1 (0 = posterior, towards lateral), w0..w1."""

    def __init__(self, frame, side, cu, cv, radius, thick, a0, a1, w0, w1):
        super().__init__(frame)
        self.side, self.cu, self.cv, self.R, self.t = side, cu, cv, radius, thick
        self.a0, self.a1, self.w0, self.w1 = math.radians(a0), math.radians(a1), w0, w1

    def bounds(self):
        R = self.R + self.t
        us = [self.side * (self.cu + R * math.sin(a)) for a in np.linspace(self.a0, self.a1, 12)]
        vs = [self.cv - R * math.cos(a) for a in np.linspace(self.a0, self.a1, 12)]
        return (np.array([min(us) - self.t - 5, min(vs) - self.t - 5, self.w0]),
                np.array([max(us) + self.t + 5, max(vs) + self.t + 5, self.w1]))

    def sdf(self, u, v, w):
        du = self.side * u - np.float32(self.cu)
        dv = v - np.float32(self.cv)
        d = np.abs(np.sqrt(du * du + dv * dv) - np.float32(self.R)) - np.float32(self.t / 2)
        # angular limits: half-planes through the circle centre; the point at angle a is
        # R (sin a, -cos a), and (cos a, sin a) points towards increasing angle
        d = np.maximum(d, -(du * np.float32(math.cos(self.a0)) + dv * np.float32(math.sin(self.a0))))
        d = np.maximum(d, du * np.float32(math.cos(self.a1)) + dv * np.float32(math.sin(self.a1)))
        d = np.maximum(d, w - np.float32(self.w1))
        return np.maximum(d, np.float32(self.w0) - w)


class _EllipsoidShell(_Leaf):
    """Shell of thickness t of the ellipsoid with semi-axes (a, b, c) (skull)."""

    def __init__(self, frame, a, b, c, thick):
        super().__init__(frame)
        self.abc, self.t = np.array([a, b, c], float), thick

    def bounds(self):
        return -self.abc - self.t, self.abc + self.t

    def sdf(self, u, v, w):
        a, b, c = self.abc
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
        g = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2 + (w / c**2) ** 2)
        d = (q - 1) * np.where(g > 1e-9, q / np.maximum(g, 1e-9), min(a, b, c))
        return np.abs(d) - np.float32(self.t / 2)
