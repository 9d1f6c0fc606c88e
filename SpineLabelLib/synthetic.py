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


# ----------------------------------------------------------------------------------
# the level table (adult sizes in mm, before the seeded jitter)
# ----------------------------------------------------------------------------------
@dataclass
class _Level:
    """Sizes of one vertebra. Angles in degrees; lengths in mm."""

    name: str
    region: str  # "C", "T", "L" or "S"
    H: float  # body height (C1: lateral mass height)
    W: float  # body width (lateral)
    D: float  # body depth (antero-posterior)
    disc: float  # disc (or joint gap) below this vertebra
    cw: float  # canal width
    cd: float  # canal depth
    t: float  # neural arch thickness
    sp_len: float  # spinous process length from the lamina
    sp_angle: float  # spinous process downward angle from horizontal
    tp_len: float  # transverse process length
    tp_angle: float  # transverse process backward angle from lateral
    ribs: bool = False
    #: the thoracolumbar transitional vertebra (the last thoracic one, ribs or not):
    #: thoracic (coronal) superior, lumbar (sagittal) inferior articular processes
    transitional: bool = False
    value: int = 0
    frame: np.ndarray | None = None  # 4x4 local (u right, v anterior, w cranial) -> world
    s: float = 0.0  # arc length of the body centre along the spine curve

    def __post_init__(self):
        self.value = L.value_of(self.name)


# H, W, D, disc, cw, cd, t, sp_len, sp_angle, tp_len, tp_angle
_BASE = {
    "C1": (16, 0, 0, 1.5, 22, 12, 4.5, 0, 0, 0, 0),
    "C2": (17, 17, 15, 5, 24, 15, 4.5, 26, 20, 0, 0),
    "C3": (14, 17, 15, 5, 24, 14, 4, 18, 20, 0, 0),
    "C4": (14, 18, 15.5, 5, 24, 14, 4, 17, 20, 0, 0),
    "C5": (14, 19, 16, 5, 24, 14, 4, 18, 15, 0, 0),
    "C6": (14.5, 21, 16.5, 5, 24, 14, 4, 22, 15, 0, 0),
    "C7": (15, 24, 17, 5, 23, 14, 4.5, 30, 20, 0, 0),
}
_T_H = [16, 17.5, 18, 18.5, 19, 19.5, 20, 20.5, 21, 22, 23, 24]
_T_W = [27, 26, 26, 27, 28, 29, 31, 32, 34, 36, 38, 40]
_T_D = [17, 19, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31]
_T_DISC = [4, 4, 4, 4.5, 4.5, 5, 5, 5, 5.5, 6, 6.5, 7]
_T_CW = [21, 18, 17, 17, 17, 17, 17, 17, 17, 18, 20, 22]
_T_CD = [15, 15, 15, 15, 15, 15, 15, 15, 15.5, 16, 16, 17]
_T_SP = [38, 36, 34, 33, 32, 32, 31, 31, 30, 30, 30, 30]
_T_SPA = [35, 40, 45, 55, 60, 62, 62, 60, 50, 40, 30, 20]
_T_TP = [26, 25, 24, 23, 22, 21, 20, 19, 17, 14, 11, 8]
for _n in range(12):
    _BASE[f"T{_n + 1}"] = (_T_H[_n], _T_W[_n], _T_D[_n], _T_DISC[_n], _T_CW[_n], _T_CD[_n],
                          5.0 if _n < 10 else 5.5, _T_SP[_n], _T_SPA[_n], _T_TP[_n], 30 if _n < 10 else 20)
_BASE.update({
    "T13": (24.5, 41, 32.5, 8, 22, 17, 6, 31, 17, 11, 15),
    "L1": (25, 42, 33, 9, 22, 17, 7, 32, 15, 18, 10),
    "L2": (26, 44, 34, 10, 22, 16, 7, 33, 10, 22, 10),
    "L3": (27, 46, 35, 11, 23, 15, 7, 33, 5, 27, 10),
    "L4": (27, 48, 35, 11, 24, 15, 7, 30, 5, 24, 10),
    "L5": (26, 50, 35, 10, 25, 15, 7, 25, 10, 22, 10),
    "L6": (25, 50, 34, 9, 25, 15, 7, 24, 10, 24, 10),
    "sacrum": (28, 50, 34, 0, 24, 10, 7, 0, 0, 0, 0),
})
#: Sagittal tangent angle (deg; positive = going down runs anteriorly) at some body centres.
_THETA = {"C1": 20, "C4": 3, "C7": -15, "T1": -14, "T6": 4, "T12": 22, "L1": 20, "L3": 0, "L5": -22, "sacrum": -42}
#: Torso cross-section per region: lateral and AP semi-axes, centre anterior of the body
#: centre, subcutaneous fat thickness (mm).
_TORSO = {"C": (62, 72, 10, 6), "T1": (120, 95, 40, 8), "T": (150, 112, 38, 10), "L": (158, 125, 25, 18),
          "S": (165, 135, 15, 20)}
#: Rib cage lateral semi-axis per thoracic level (rib arc), T1..T13.
_RIB_A = [55, 75, 90, 100, 108, 113, 116, 118, 118, 117, 114, 108, 104]
#: Oblique grids rotate about this world axis.
_OBLIQUE_AXIS = (1.0, 0.3, 0.2)


def _sequence(t13: bool, l6: bool) -> list[str]:
    """VerSe names from head to feet that this phantom's spine has."""
    names = [f"C{n}" for n in range(1, 8)] + [f"T{n}" for n in range(1, 13)]
    names += ["T13"] if t13 else []
    names += [f"L{n}" for n in range(1, 6)] + (["L6"] if l6 else []) + ["sacrum"]
    return names


def _levels(spec: PhantomSpec, rng: np.random.Generator) -> list[_Level]:
    """Sizes of every vertebra, jittered by the seed (one patient size, small per-level noise)."""
    scale = rng.uniform(0.94, 1.06)
    levels = []
    for name in _sequence(spec.t13, spec.l6):
        H, W, D, disc, cw, cd, t, sp, spa, tp, tpa = _BASE[name]
        j = scale * rng.uniform(0.97, 1.03, size=3)
        region = "S" if name == "sacrum" else name[0]
        lev = _Level(name, region, H * j[0], W * j[1], D * j[2], disc * rng.uniform(0.88, 1.12),
                     cw * scale, cd * scale, t * scale, sp * scale, spa, tp * scale, tpa)
        lev.ribs = region == "T" and not (name == "T12" and spec.missing_rib12)
        lev.transitional = name == ("T13" if spec.t13 else "T12")
        if name == "T12" and spec.missing_rib12:  # a rib-less T12 looks lumbar
            lev.tp_len, lev.tp_angle = 15.0 * scale, 10.0
        levels.append(lev)
    return levels


def _names_index(names: list[str], name: str, what: str) -> int:
    try:
        canonical = L.label(name).name
    except KeyError:
        raise SpineLabelInputError(None, f"{what} {name!r} is not a VerSe vertebra name") from None
    if canonical not in names:
        hint = " (set t13=True)" if canonical == "T13" else " (set l6=True)" if canonical == "L6" else ""
        raise SpineLabelInputError(None, f"{what} {canonical} is not part of this phantom's spine{hint}")
    return names.index(canonical)


# ----------------------------------------------------------------------------------
# the spine curve
# ----------------------------------------------------------------------------------
def _place_levels(levels: list[_Level], spec: PhantomSpec, rng: np.random.Generator, first: int, last: int) -> None:
    """Stack the vertebrae along the curve and set each level's frame and arc position."""
    s = 0.0
    for lev in levels:
        lev.s = s + lev.H / 2
        s += lev.H + lev.disc
    names = [lev.name for lev in levels]
    anchors = [(levels[names.index(n)].s, th * rng.uniform(0.85, 1.15)) for n, th in _THETA.items() if n in names]
    a_s, a_th = np.array(anchors).T
    step = 0.25
    ss = np.arange(-40.0, levels[-1].s + 160.0, step)
    theta = np.radians(np.interp(ss, a_s, a_th))
    y = np.cumsum(np.sin(theta)) * step
    z = -np.cumsum(np.cos(theta)) * step
    x = np.zeros_like(ss)
    psi = np.zeros_like(ss)
    if spec.scoliosis_deg > 0:
        presacral = len(levels) - 2
        i0, i1 = max(first - 1, 0), min(last + 1, presacral)
        s0, s1 = levels[i0].s, levels[i1].s
        if s1 > s0:
            span = s1 - s0
            apex = span / math.pi * math.tan(math.radians(spec.scoliosis_deg) / 2)
            inside = (ss >= s0) & (ss <= s1)
            shape = np.where(inside, np.sin(np.pi * (ss - s0) / span), 0.0)
            x = apex * shape  # convex to the right
            psi = min(0.4 * spec.scoliosis_deg, 30.0) * shape  # bodies turn towards the convexity
    pts = np.column_stack([x, y, z])
    mid = (levels[first].s + levels[last].s) / 2
    centre = np.array([0.0, np.interp(mid, ss, y), np.interp(mid, ss, z)])
    for lev in levels:
        p = np.array([np.interp(lev.s, ss, pts[:, c]) for c in range(3)]) - centre
        above = np.array([np.interp(lev.s - 1.0, ss, pts[:, c]) for c in range(3)])
        below = np.array([np.interp(lev.s + 1.0, ss, pts[:, c]) for c in range(3)])
        w = _unit(above - below)
        v = _unit(np.array([0.0, 1.0, 0.0]) - w[1] * w)
        u = np.cross(v, w)
        rot = float(np.interp(lev.s, ss, psi))
        if rot:
            a = math.radians(rot)
            u, v = math.cos(a) * u - math.sin(a) * v, math.cos(a) * v + math.sin(a) * u
        lev.frame = _frame(p, np.column_stack([u, v, w]))


# ----------------------------------------------------------------------------------
# vertebrae, ribs, pelvis, skull
# ----------------------------------------------------------------------------------
def _at(parent: np.ndarray, origin, axes=None) -> np.ndarray:
    """Frame of a part: ``origin`` and ``axes`` given in the ``parent`` frame."""
    return parent @ _frame(origin, np.eye(3) if axes is None else np.asarray(axes, float))


def _along(direction, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Right-handed axes (columns) whose first axis is ``direction`` and third is close to ``up``."""
    e1 = _unit(direction)
    e3 = _unit(np.asarray(up, float) - np.dot(up, e1) * e1)
    return np.column_stack([e1, np.cross(e3, e1), e3])


@dataclass
class _Bone:
    cortical: float
    trabecular: float
    shell: float


@dataclass
class _Vertebra:
    level: _Level
    shape: _Shape  # the whole vertebra (labelled in the mask)
    body: _Shape  # the body group whose centre of mass is the VerSe centroid
    body_leaf: _Body | None  # endplates for the discs
    vc: float  # canal centre (local v)
    bone: _Bone
    fillings: list = field(default_factory=list)  # (shape, HU) painted before bone (canal content)
    ribs: list = field(default_factory=list)
    rib_heads: np.ndarray | None = None  # (2, 3) world, right then left
    screw_path: list = field(default_factory=list)  # per side: (entry, target) in local mm
    tp_tips: list = field(default_factory=list)  # per side: (tip point in local mm, half thickness)


def _canal_fill(lev: _Level, vc: float, reach: float) -> list:
    """CSF tube (with the cord above L2) through this vertebra's canal."""
    F = lev.frame
    hw = lev.H / 2 + reach / 2 + 1.0
    out = [(_EllipticCylinder(_at(F, (0, vc, 0)), lev.cw / 2, lev.cd / 2, hw), HU_CSF)]
    if lev.region in "CT" or lev.name == "L1":
        k = 0.36 if lev.region == "C" else 0.3
        out.append((_EllipticCylinder(_at(F, (0, vc + 0.5, 0)), lev.cw * k, lev.cd * 0.32, hw), HU_CORD))
    return out


def _facets(lev: _Level, vc: float, lo: float, hi: float, sap=True, iap=True) -> list:
    """Superior (cranial) and inferior (caudal) articular processes as small boxes.

    Lumbar facets are sagittal (superior process lateral of the inferior one of the
    vertebra above), thoracic/cervical ones coronal (superior process anterior). The
    transitional vertebra has thoracic superior and lumbar inferior processes."""
    F = lev.frame
    hs = 0.5 * (lev.H + lev.disc)

    def placement(lumbar: bool):  # (du, dv, half sizes u/v, u and v of the joint)
        if lumbar:
            return 6.5, 0.0, (2.8, 4.5), lev.cw / 2 + 0.7 * lev.t, vc - 0.2 * lev.cd
        return 0.0, 6.5, (4.5, 2.3), lev.cw / 2 + 0.5 * lev.t, vc

    parts = []
    for side in (1, -1):
        if sap:
            du, dv, half, uf, vf = placement(lev.region in "LS")
            parts.append(_RoundBox(_at(F, (side * (uf + du / 2), vf + dv / 2, hi - 2 + hs / 2)), (*half, hs / 2), 1.5))
        if iap:
            du, dv, half, uf, vf = placement(lev.region in "LS" or lev.transitional)
            parts.append(_RoundBox(_at(F, (side * (uf - du / 2), vf - dv / 2, lo + 2 - hs / 2)), (*half, hs / 2), 1.5))
    return parts


def _spinous(lev: _Level, v_lam: float, wr: float) -> list:
    F = lev.frame
    a = math.radians(lev.sp_angle)
    dirn = np.array([0.0, -math.cos(a), -math.sin(a)])
    start = np.array([0.0, v_lam, wr])
    sw, sh = {"C": (2.5, 3.5), "T": (3.0, 4.5), "L": (3.5, 8.0)}[lev.region]
    axes = np.column_stack([dirn, [1.0, 0, 0], np.cross(dirn, [1.0, 0, 0])])
    parts = [_RoundBox(_at(F, start + dirn * lev.sp_len / 2, axes), (lev.sp_len / 2 + lev.t / 2, sw, sh), 1.5)]
    if lev.name in ("C2", "C3", "C4", "C5", "C6"):  # bifid tips
        tip = start + dirn * lev.sp_len
        for side in (1, -1):
            p0 = tip - dirn * 5 + np.array([side * 1.5, 0, 0])
            p1 = tip + dirn * 2 + np.array([side * 4.5, 0, 0])
            parts.append(_Capsule(p0, p1, 2.3, F))
    return parts


def _cervical_tps(lev: _Level, vc: float) -> tuple[list, list]:
    """Cervical transverse processes with the transverse foramina (holes)."""
    F, a = lev.frame, lev.W / 2
    parts, holes = [], []
    for side in (1, -1):
        parts.append(_RoundBox(_at(F, (side * (a + 6.0), 0.35 * vc, 0)), (6.5, 4.2, 3.5), 1.5))
        holes.append(_EllipticCylinder(_at(F, (side * (a + 6.0), 0.35 * vc, 0)), 2.5, 2.5, 8.0))
    return parts, holes


def _tp_tips(lev: _Level, vc: float, wr: float) -> tuple[list, list]:
    """Thoracic/lumbar transverse processes; returns (parts, tip points in local mm)."""
    F = lev.frame
    b = math.radians(lev.tp_angle)
    ap, h = (5.0, 5.5) if lev.region == "T" and lev.ribs else (3.2, 5.0)
    parts, tips = [], []
    for side in (1, -1):
        start = np.array([side * (lev.cw / 2 + lev.t / 2), vc, wr])
        dirn = np.array([side * math.cos(b), -math.sin(b), 0.0])
        parts.append(_RoundBox(_at(F, start + dirn * lev.tp_len / 2, _along(dirn)), (lev.tp_len / 2 + lev.t / 2, ap, h), 2.0))
        tips.append((start + dirn * lev.tp_len, ap))
    return parts, tips


def _make_vertebra(lev: _Level, fracture: float, bone: _Bone, reach: float) -> _Vertebra:
    """Body and posterior elements of C2..L6 (see :func:`_make_c1` and :func:`_make_sacrum`)."""
    F, H, a, b = lev.frame, lev.H, lev.W / 2, lev.D / 2
    body = _Body(F, a, b, H, wedge=fracture)
    body_parts: list[_Shape] = [body]
    vc = body.v_post - lev.cd / 2 - 1.0
    lo, hi = (-0.38 * H, 0.38 * H) if lev.region == "C" else (-0.30 * H, 0.42 * H)
    wr, hw = (lo + hi) / 2, (hi - lo) / 2
    parts: list[_Shape] = [_Ring(_at(F, (0, vc, wr)), lev.cw / 2, lev.cd / 2, lev.t, hw, body.v_post + 1.5 - vc)]
    parts += _spinous(lev, vc - lev.cd / 2 - lev.t / 2, wr)
    holes: list[_Shape] = []
    tips = []
    if lev.region == "C":
        tp, holes = _cervical_tps(lev, vc)
        parts += tp
        if lev.name != "C2":  # uncinate processes on the upper lateral body edges
            body_parts += [_RoundBox(_at(F, (s * (a - 1.5), -1, H / 2 + 1)), (1.5, 4.5, 2.5), 1.0) for s in (1, -1)]
    else:
        tp, tips = _tp_tips(lev, vc, wr)
        parts += tp
    if lev.name == "C2":
        body_parts.append(_Capsule((0, 0.5, 0), (0, 1.5, H / 2 + 14 * lev.cw / 24), 5.0 * lev.cw / 24, F))  # dens
        parts += [_RoundBox(_at(F, (s * 13 * lev.cw / 24, 1, H / 2 - 2.5)), (5.5, 7, 3), 2.0) for s in (1, -1)]
        parts += _facets(lev, vc, lo, hi, sap=False)
    else:
        parts += _facets(lev, vc, lo, hi)
    body_union = _Union(body_parts)
    shape = _Subtract(_Union(body_parts + parts), holes)
    vert = _Vertebra(lev, shape, body_union, body, vc, bone, _canal_fill(lev, vc, reach))
    vert.screw_path = _screw_path(lev, vc, wr)
    vert.tp_tips = tips
    return vert


def _make_c1(lev: _Level, bone: _Bone, reach: float) -> _Vertebra:
    """Atlas: anterior arch, lateral masses, posterior arch with tubercle, long transverse
    processes with foramina; no body (its 'body group' is anterior arch + lateral masses)."""
    F, k = lev.frame, lev.cw / 22
    front = [_RoundBox(_at(F, (0, 12 * k, 0)), (9 * k, 3 * k, 5.5 * k), 2.5)]
    front += [_RoundBox(_at(F, (s * 17 * k, 3 * k, 0)), (6 * k, 9 * k, 8 * k), 3.0) for s in (1, -1)]
    back = [_Ring(_at(F, (0, -3 * k, 0)), 14 * k, 12 * k, 4.5 * k, 4 * k, 1 * k),
            _RoundBox(_at(F, (0, -19 * k, 0)), (4 * k, 2.5 * k, 4.5 * k), 1.5)]
    back += [_RoundBox(_at(F, (s * 29 * k, 3 * k, 0)), (7 * k, 4.5 * k, 4 * k), 2.0) for s in (1, -1)]
    holes = [_EllipticCylinder(_at(F, (s * 27 * k, 3 * k, 0)), 3 * k, 3 * k, 6 * k) for s in (1, -1)]
    shape = _Subtract(_Union(front + back), holes)
    vc = -8 * k
    return _Vertebra(lev, shape, _Union(front), None, vc, bone, _canal_fill(lev, vc, reach))


def _make_sacrum(lev: _Level, bone: _Bone) -> _Vertebra:
    """S1 body + sacral mass (alae, tapering, concave in front) + S1 superior articular
    processes, minus the sacral canal and four pairs of foramina."""
    F, H, a, b, k = lev.frame, lev.H, lev.W / 2, lev.D / 2, lev.cw / 24
    body = _Body(F, a, b, H)
    mass = _SacralMass(F, w_top=H / 2 - 3, w_bot=-(H / 2 + 72 * k), w_wide=-30 * k, aw_top=52 * k, aw_bot=11 * k,
                       bw_top=25 * k, bw_bot=6 * k, v_top=-7 * k, curve=0.005 / k)
    vc = body.v_post - lev.cd / 2 - 1.0
    parts: list[_Shape] = [body, mass] + _facets(lev, vc, -0.3 * H, 0.42 * H, iap=False)
    canal = _SacralCanal(mass, lev.cw / 2, lev.cd / 2)
    holes: list[_Shape] = [canal]
    through_v = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # local w along the body's v
    for n in range(4):
        w = -20 - 18 * n * k
        _, _, vmid = mass.profile(np.float32(w))
        for s in (1, -1):
            holes.append(_EllipticCylinder(_at(F, (s * (24 - 2.5 * n) * k, float(vmid), w), through_v),
                                           (4.5 - 0.5 * n) * k, (4.5 - 0.5 * n) * k, 40.0))
    vert = _Vertebra(lev, _Subtract(_Union(parts), holes), _Union([body]), body, vc, bone,
                     [(canal, HU_CSF)])
    vert.screw_path = _screw_path(lev, vc, 0.06 * H)
    return vert


def _screw_path(lev: _Level, vc: float, wr: float) -> list:
    """Pedicle screw trajectory per side (right, left): (entry, target) in local mm,
    converging medially from the lamina/transverse-process junction through the pedicle
    into the anterior half of the body."""
    out = []
    for side in (1, -1):
        entry = np.array([side * (lev.cw / 2 + lev.t / 2 + 1.5), vc - 0.6 * lev.cd - 0.5 * lev.t, wr])
        target = np.array([side * 0.2 * lev.W / 2, 0.45 * lev.D / 2, wr])
        out.append((entry, target))
    return out


def _make_ribs(vert: _Vertebra, scale: float) -> None:
    """Rib pair of a thoracic vertebra: head beside the body, neck to the transverse
    process tip, then an arc around the chest (capsule chain), descending anteriorly."""
    lev = vert.level
    F, H, a, b = lev.frame, lev.H, lev.W / 2, lev.D / 2
    n = 13 if lev.name == "T13" else int(lev.name[1:])
    r = (4.0 if n == 1 else 5.0) * scale
    A = _RIB_A[n - 1] * scale
    B = 0.72 * A
    w_head = H / 2 - 1 if 2 <= n <= 9 else H / 4
    slope = 0.35 if n <= 3 else 0.5
    phi_end = math.radians({11: 120, 12: 80, 13: 60}.get(n, 165))
    heads = []
    for side_i, side in enumerate((1, -1)):
        head = np.array([side * (0.84 * a + r + 1.5), -0.55 * b, w_head])
        if lev.tp_len >= 12 and vert.tp_tips:
            tip, ap = vert.tp_tips[side_i]
            tub = tip + np.array([0.0, ap + r + 1.0, -1.0])
        else:  # floating ribs: no costotransverse joint
            tub = np.array([side * (a + 16), -0.55 * b - 9, w_head - 2])
        phi0 = math.asin(float(np.clip((abs(tub[0]) + 18) / A, 0.1, 0.95)))
        cvy = (tub[1] - 6) + B * math.cos(phi0)
        pts = [head, tub]
        w = tub[2] - 3
        for phi in np.arange(phi0, phi_end + 1e-6, math.radians(12)):
            p = np.array([side * A * math.sin(phi), cvy - B * math.cos(phi), 0.0])
            w -= slope * float(np.linalg.norm(p[:2] - pts[-1][:2]))
            p[2] = w
            pts.append(p)
        vert.ribs += [_Capsule(p0, p1, r, F) for p0, p1 in zip(pts[:-1], pts[1:])]
        heads.append(F[:3, :3] @ head + F[:3, 3])
    vert.rib_heads = np.array(heads)


def _make_skull(c1: _Level) -> _Shape:
    """Skull base above the atlas: an ellipsoidal bone shell with the foramen magnum,
    and the occipital condyles resting on C1's lateral masses."""
    F, k = c1.frame, c1.cw / 22
    shell = _EllipsoidShell(_at(F, (0, 15 * k, 90 * k)), 70 * k, 88 * k, 75 * k, 6 * k)
    hole = _EllipticCylinder(_at(F, (0, -3 * k, 15 * k)), 16 * k, 18 * k, 20 * k)
    condyles = [_RoundBox(_at(F, (s * 17 * k, 3 * k, 12 * k)), (5 * k, 8 * k, 2.5 * k), 2.0) for s in (1, -1)]
    return _Union([_Subtract(shell, [hole]), *condyles])


def _make_pelvis(sacrum: _Vertebra, scale: float) -> list[_Shape]:
    """Iliac wings and the posterior ilium beside the sacrum (world-aligned frame at S1),
    carved 3 mm clear of the sacrum so the sacroiliac joints show as gaps."""
    P = _frame(sacrum.level.frame[:3, 3], np.eye(3))
    k = scale
    out = []
    for side in (1, -1):
        wing = _IliacWing(P, side, 60 * k, 60 * k, 65 * k, 8 * k, -3, 80, -90 * k, 45 * k)
        post = _RoundBox(_at(P, (side * 64 * k, -14 * k, -5 * k)), (7 * k, 12 * k, 22 * k), 6.0)
        out += [_Subtract(wing, [sacrum.shape], grow=3.0), _Subtract(post, [sacrum.shape], grow=3.0)]
    return out


def _mid_frame(f_up: np.ndarray, f_lo: np.ndarray, origin) -> np.ndarray:
    """Frame halfway between two vertebra frames (orthonormalised mean rotation)."""
    u, _, vt = np.linalg.svd(f_up[:3, :3] + f_lo[:3, :3])
    return _frame(origin, u @ vt)


def _make_disc(up: _Vertebra, lo: _Vertebra) -> _Disc:
    bu, bl = up.body_leaf, lo.body_leaf
    p_up = bu.frame[:3, :3] @ [0, 0, -bu.h / 2] + bu.frame[:3, 3]
    p_lo = bl.frame[:3, :3] @ [0, 0, bl.h / 2] + bl.frame[:3, 3]
    frame = _mid_frame(bu.frame, bl.frame, (p_up + p_lo) / 2)
    return _Disc(frame, bu, bl, float(np.linalg.norm(p_up - p_lo)))


# ----------------------------------------------------------------------------------
# the model: every solid of the phantom in world coordinates
# ----------------------------------------------------------------------------------
@dataclass
class _Model:
    verts: list[_Vertebra]
    first: int
    last: int
    scale: float
    discs: list[_Disc]
    bones: list[tuple[_Shape, _Bone]]  # unlabelled bone: skull, ribs, pelvis
    metal: list[_Shape]  # screws, tulips, rods
    streaks: list[tuple[np.ndarray, np.ndarray]]  # per screwed vertebra: shaft midpoints (2, 3), z range (2,)
    notes: list[str]


def _validate(spec: PhantomSpec) -> None:
    """Reject specs that cannot be built, with one clear sentence each."""
    import nibabel.orientations as nio

    sp = np.asarray(spec.spacing, dtype=float)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise SpineLabelInputError(None, f"spacing must be three positive numbers (mm), got {spec.spacing!r}")
    try:
        ornt = nio.axcodes2ornt(tuple(spec.axcodes))
        ok = len(spec.axcodes) == 3 and not np.any(np.isnan(ornt)) and len(set(ornt[:, 0])) == 3
    except Exception:
        ok = False
    if not ok:
        raise SpineLabelInputError(None, f"axcodes {spec.axcodes!r} are not three nibabel axis codes such as ('R','A','S')")
    for what, val, lo, hi in (("noise_hu", spec.noise_hu, 0, 1000), ("fov_margin_mm", spec.fov_margin_mm, 0, 500),
                              ("cut_cranial_mm", spec.cut_cranial_mm, 0, 500), ("cut_caudal_mm", spec.cut_caudal_mm, 0, 500),
                              ("scoliosis_deg", spec.scoliosis_deg, 0, 89.9), ("oblique_deg", abs(spec.oblique_deg), 0, 360)):
        if not (np.isfinite(val) and lo <= val <= hi):
            raise SpineLabelInputError(None, f"{what} must be between {lo} and {hi}, got {val!r}")
    names = _sequence(spec.t13, spec.l6)
    if spec.last.strip().lower() == "coccyx" or spec.first.strip().lower() == "coccyx":
        raise SpineLabelInputError(None, "the coccyx is not modelled; use 'sacrum' as the caudal end")
    if _names_index(names, spec.first, "first") > _names_index(names, spec.last, "last"):
        raise SpineLabelInputError(None, f"first ({spec.first}) lies caudal of last ({spec.last})")
    for name, loss in spec.fractures.items():
        i = _names_index(names, name, "fracture")
        if names[i] in ("C1", "sacrum") or not (0 < float(loss) <= 0.8):
            raise SpineLabelInputError(None, f"fracture {name}: needs a vertebra with a body (C2..L6) and a height "
                                             f"loss fraction in (0, 0.8], got {loss!r}")
    for name in spec.screws:
        if names[_names_index(names, name, "screw")] == "C1":
            raise SpineLabelInputError(None, "screws: C1 has no pedicles to hold a pedicle screw")


def _canonical_fractures(spec: PhantomSpec) -> dict[str, float]:
    return {L.label(k).name: float(v) for k, v in spec.fractures.items()}


def _build_model(spec: PhantomSpec) -> _Model:
    """All solids of the phantom, independent of the grid (world RAS mm)."""
    rng = np.random.default_rng([spec.seed, 1])  # anatomy stream; noise uses another one
    names = _sequence(spec.t13, spec.l6)
    first, last = _names_index(names, spec.first, "first"), _names_index(names, spec.last, "last")
    levels = _levels(spec, rng)
    scale = levels[0].cw / _BASE["C1"][4]
    _place_levels(levels, spec, rng, first, last)
    cort, trabs, shell = _BONE_OSTEO if spec.osteoporosis else _BONE_NORMAL
    fractures = _canonical_fractures(spec)
    verts: list[_Vertebra] = []
    for i, lev in enumerate(levels):
        trab = trabs[lev.region] + rng.normal(0.0, 10.0)
        if lev.name in fractures:
            trab += _FRACTURE_SCLEROSIS_HU
        bone = _Bone(cort, trab, shell)
        reach = max(lev.disc, levels[i - 1].disc if i else 0.0)
        if lev.name == "C1":
            vert = _make_c1(lev, bone, reach)
        elif lev.name == "sacrum":
            vert = _make_sacrum(lev, bone)
        else:
            vert = _make_vertebra(lev, fractures.get(lev.name, 0.0), bone, reach)
        if lev.ribs:
            _make_ribs(vert, scale)
        verts.append(vert)
    discs = [_make_disc(u, d) for u, d in zip(verts[:-1], verts[1:]) if u.body_leaf is not None and d.body_leaf is not None]
    osteo = 0.6 if spec.osteoporosis else 1.0
    rib_bone = _Bone(HU_RIB_CORTEX * osteo, HU_RIB_MARROW * osteo, 1.0)
    bones: list[tuple[_Shape, _Bone]] = [(_make_skull(levels[0]), _Bone(1000.0 * osteo, 350.0 * osteo, 1.8))]
    bones += [(rib, rib_bone) for v in verts for rib in v.ribs]
    bones += [(p, _Bone(900.0 * osteo, 250.0 * osteo, 1.2)) for p in _make_pelvis(verts[-1], scale)]
    metal, streaks = _make_screws(verts, spec.screws)
    notes = _notes(spec, levels, fractures)
    return _Model(verts, first, last, scale, discs, bones, metal, streaks, notes)


def _make_screws(verts: list[_Vertebra], names) -> tuple[list[_Shape], list]:
    """Pedicle screws (shaft in bone, tulip head outside) and rods joining the heads."""
    wanted = {L.label(n).name for n in names}
    radius = {"C": 1.7, "T": 2.4, "L": 3.2, "S": 3.5}
    metal, streaks, heads = [], [], []
    for vert in verts:
        lev = vert.level
        if lev.name not in wanted:
            continue
        F, r = lev.frame, radius[lev.region]
        mids, head_pts = [], []
        for entry, target in vert.screw_path:
            d = _unit(target - entry)
            metal.append(_Capsule(entry, target, r, F))
            metal.append(_Capsule(entry - d * 2, entry - d * 14, 1.8 * r, F))
            mids.append(F[:3, :3] @ ((entry + target) / 2) + F[:3, 3])
            head_pts.append(F[:3, :3] @ (entry - d * 8) + F[:3, 3])
        ends = np.array([F[:3, :3] @ p + F[:3, 3] for pair in vert.screw_path for p in pair])
        streaks.append((np.array(mids), np.array([ends[:, 2].min() - r, ends[:, 2].max() + r])))
        heads.append(head_pts)
    for upper, lower in zip(heads[:-1], heads[1:]):  # rods on both sides
        for side in range(2):
            metal.append(_Capsule(upper[side], lower[side], 2.8))
    return metal, streaks


def _notes(spec: PhantomSpec, levels: list[_Level], fractures: dict[str, float]) -> list[str]:
    notes = [f"spine {levels[0].name}..{levels[-1].name}, field of view {L.label(spec.first).name}..{L.label(spec.last).name}"]
    if spec.t13:
        notes.append("T13 (label 28): 13th rib-bearing thoracic vertebra between T12 and L1")
    if spec.l6:
        notes.append("L6 (label 25): 6th lumbar vertebra between L5 and the sacrum")
    if spec.missing_rib12:
        notes.append("no 12th rib pair: T12 carries no ribs")
    notes += [f"wedge fracture of {n}: anterior height loss {f:.0%}" for n, f in fractures.items()]
    if spec.scoliosis_deg:
        notes.append(f"right-convex scoliosis, Cobb angle {spec.scoliosis_deg:g} deg")
    if spec.osteoporosis:
        notes.append("osteoporosis: trabecular bone 40-100 HU")
    if spec.screws:
        notes.append("pedicle screws in " + ", ".join(L.label(n).name for n in spec.screws))
    if spec.cut_cranial_mm or spec.cut_caudal_mm:
        notes.append(f"field of view cuts {spec.cut_cranial_mm:g} mm off {L.label(spec.first).name} "
                     f"and {spec.cut_caudal_mm:g} mm off {L.label(spec.last).name}")
    return notes


# ----------------------------------------------------------------------------------
# field of view
# ----------------------------------------------------------------------------------
def _direction(spec: PhantomSpec) -> np.ndarray:
    """3x3 matrix whose columns are the RAS unit vectors of the grid axes i, j, k."""
    import nibabel.orientations as nio

    base = np.zeros((3, 3))
    for k, (axis, flip) in enumerate(nio.axcodes2ornt(tuple(spec.axcodes))):
        base[int(axis), k] = flip
    return _rotation(_OBLIQUE_AXIS, spec.oblique_deg) @ base if spec.oblique_deg else base


def _sample_grid(shape: _Shape, step: float) -> _Grid:
    """A world-aligned grid with ``step`` mm voxels covering the solid's bounding box."""
    corners = shape.world_corners()
    lo, hi = corners.min(axis=0) - step, corners.max(axis=0) + step
    n = np.ceil((hi - lo) / step).astype(int) + 1
    affine = np.eye(4)
    affine[:3, :3] *= step
    affine[:3, 3] = lo
    return _Grid(n, affine)


def _inside_points(shape: _Shape, step: float) -> np.ndarray:
    """World positions (N, 3) of the centres of a ``step`` mm world grid inside the solid."""
    grid = _sample_grid(shape, step)
    box = tuple(slice(0, n) for n in grid.shape)
    ijk = np.argwhere(shape.evaluate(grid, box) <= 0)
    return ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]


def _centre_of_mass(shape: _Shape, step: float = 0.75) -> np.ndarray:
    """World centre of mass of a solid (occupancy-weighted, so sub-step accurate)."""
    grid = _sample_grid(shape, step)
    box = tuple(slice(0, n) for n in grid.shape)
    weight = _occupancy(shape.evaluate(grid, box), step)
    ijk = np.array([np.sum(weight * idx) for idx in np.indices(grid.shape, sparse=True)]) / weight.sum()
    return ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]


def _fov_grid(spec: PhantomSpec, model: _Model) -> _Grid:
    """Grid of the requested orientation/spacing around vertebrae first..last plus margins."""
    R = _direction(spec)
    sp = np.asarray(spec.spacing, dtype=float)
    in_range = model.verts[model.first:model.last + 1]
    pts = [_inside_points(v.shape, 1.5) for v in in_range]
    q = np.concatenate(pts) @ R  # coordinates along the grid axes
    lo, hi = q.min(axis=0), q.max(axis=0)
    k_s = int(np.argmax(np.abs(R[2])))  # the grid axis closest to superior
    others = [k for k in range(3) if k != k_s]
    k_lat = max(others, key=lambda k: abs(R[0, k]))
    k_ap = others[0] if others[1] == k_lat else others[1]
    for k, minimum in ((k_lat, _MIN_FOV_LATERAL_MM), (k_ap, _MIN_FOV_AP_MM)):
        if hi[k] - lo[k] < minimum:
            c = (hi[k] + lo[k]) / 2
            lo[k], hi[k] = c - minimum / 2, c + minimum / 2
    lo, hi = lo - spec.fov_margin_mm, hi + spec.fov_margin_mm
    up = R[2, k_s] > 0  # index increases cranially along k_s
    q_first, q_last = pts[0] @ R[:, k_s], pts[-1] @ R[:, k_s]
    if spec.cut_cranial_mm > 0:
        edge = q_first.max() - spec.cut_cranial_mm if up else q_first.min() + spec.cut_cranial_mm
        hi[k_s], lo[k_s] = (edge, lo[k_s]) if up else (hi[k_s], edge)
    if spec.cut_caudal_mm > 0:
        edge = q_last.min() + spec.cut_caudal_mm if up else q_last.max() - spec.cut_caudal_mm
        lo[k_s], hi[k_s] = (edge, hi[k_s]) if up else (lo[k_s], edge)
    if hi[k_s] - lo[k_s] < 2 * sp[k_s]:
        raise SpineLabelInputError(None, "cut_cranial_mm/cut_caudal_mm leave no field of view")
    n = np.ceil((hi - lo) / sp - 1e-6).astype(int) + 1
    start = (lo + hi) / 2 - (n - 1) * sp / 2  # centred: mirrored axis codes give the same voxel centres
    if int(np.prod(n)) > _MAX_VOXELS:
        raise SpineLabelInputError(None, f"the phantom grid {tuple(int(x) for x in n)} has {np.prod(n) / 1e6:.0f} M voxels "
                                         f"(limit {_MAX_VOXELS / 1e6:.0f} M): use a coarser spacing or a shorter field of view")
    affine = np.eye(4)
    affine[:3, :3] = R * sp
    affine[:3, 3] = R @ start
    return _Grid(n, affine)


# ----------------------------------------------------------------------------------
# painting
# ----------------------------------------------------------------------------------
class _Tissue:
    """Soft-tissue layout as tables over world z (1 mm steps): torso ellipse (skin, fat
    layer), lungs (cavity ellipse, mediastinum, diaphragm), following the spine."""

    def __init__(self, model: _Model, z_lo: float, z_hi: float):
        rows = []
        last_y = 0.0
        for v in model.verts:
            lev = v.level
            x, y, z = lev.frame[:3, 3]
            key = "T1" if lev.name == "T1" else lev.region
            a, b, off, fat = (np.array(_TORSO[key]) * [model.scale, model.scale, model.scale, 1.0])
            if lev.region == "S":
                y = last_y  # the pelvis does not follow the sacrum's backward tilt
            last_y = y
            thoracic = lev.region == "T"
            n = (13 if lev.name == "T13" else int(lev.name[1:])) if thoracic else 0
            # ribs descend about three levels towards the front: the lung at level n must
            # stay inside the ribs of levels n-3..n, the narrowest of which is n-3
            lung_a = (_RIB_A[max(n - 4, 0)] - 12) * model.scale if thoracic else 0.0
            diaphragm = {10: 60.0, 11: 20.0, 12: -10.0, 13: -20.0}.get(n, 300.0)
            rows.append((z, x, y + off, a, b, fat, y + 48 * model.scale, lung_a, 0.68 * lung_a,
                         y + diaphragm, lev.W / 2 + 12))
        c1 = model.verts[0].level  # the head above the atlas: a wider, deeper section
        x, y, z = c1.frame[:3, 3]
        k = model.scale
        rows.append((z + 45 * k, x, y + 20 * k, 78 * k, 98 * k, 5.0, y, 0.0, 0.0, y + 300, 20.0))
        rows = np.array(sorted(rows))  # ascending z for np.interp
        self.z0 = math.floor(z_lo) - 2
        zs = np.arange(self.z0, math.ceil(z_hi) + 3, 1.0)
        cols = [np.interp(zs, rows[:, 0], rows[:, c]).astype(np.float32) for c in range(1, rows.shape[1])]
        (self.x_spine, self.y_torso, self.a, self.b, self.fat, self.y_lung, self.a_lung, self.b_lung,
         self.y_diaphragm, self.mediastinum) = cols
        self.n = len(zs)
        self.scale = model.scale

    def index(self, z):
        return np.clip(np.rint(z - self.z0), 0, self.n - 1).astype(np.intp)


def _paint_tissue(ct: np.ndarray, grid: _Grid, tissue: _Tissue) -> None:
    """Air, subcutaneous fat, muscle/soft tissue and lungs, slab by slab."""
    width = grid.width
    n0, n1, n2 = grid.shape
    per = max(1, int(4_000_000 // (n1 * n2)))
    for i0 in range(0, n0, per):
        box = (slice(i0, min(n0, i0 + per)), slice(0, n1), slice(0, n2))
        x, y, z = grid.coords(grid.affine, box)
        t = tissue.index(z)
        dy = y - tissue.y_torso[t]
        skin = _ellipse_sdf(x, dy, tissue.a[t], tissue.b[t])
        inner = _ellipse_sdf(x, dy, tissue.a[t] - tissue.fat[t], tissue.b[t] - tissue.fat[t])
        f_out, f_in = _occupancy(skin, width), _occupancy(inner, width)
        hu = HU_AIR + (HU_FAT - HU_AIR) * f_out + (HU_SOFT - HU_FAT) * f_in
        a_l = tissue.a_lung[t]
        if np.any(a_l > 5):
            dx = np.abs(x - tissue.x_spine[t])
            cavity = _ellipse_sdf(dx, y - tissue.y_lung[t], np.maximum(a_l, 1), np.maximum(tissue.b_lung[t], 1))
            cavity = np.where(a_l > 5, cavity, _BIG)
            # mediastinum: a band in front of the spine plus the heart, left-anterior
            half = tissue.mediastinum[t] + 0.25 * np.maximum(y - tissue.y_lung[t] + 28, 0)
            heart = _ellipse_sdf(x - tissue.x_spine[t] + 15 * np.float32(tissue.scale),
                                 y - tissue.y_lung[t] - 45 * np.float32(tissue.scale), 55 * tissue.scale, 42 * tissue.scale)
            # diaphragm: lungs lie behind a dome that is lower (more anterior room) laterally
            dome = (y - tissue.y_diaphragm[t]) - 0.5 * dx
            lung = np.maximum(np.maximum(np.maximum(cavity, half - dx), dome), -heart)
            f = _occupancy(lung, width)
            hu = hu + (HU_LUNG - hu) * f
        ct[box] = np.broadcast_to(hu, _box_shape(box))


def _paint_fill(ct: np.ndarray, grid: _Grid, shape: _Shape, hu: float) -> None:
    """Composite a homogeneous solid over the CT (partial volume at its surface)."""
    box = shape.index_box(grid)
    if box is None:
        return
    f = _occupancy(shape.evaluate(grid, box), grid.width)
    view = ct[box]
    view += (np.float32(hu) - view) * f


def _paint_bone(ct: np.ndarray, grid: _Grid, shape: _Shape, bone: _Bone, mask: np.ndarray | None = None,
                value: int = 0) -> None:
    """Composite a bone (cortical shell around a trabecular core); label it in ``mask``."""
    box = shape.index_box(grid)
    if box is None:
        return
    d = shape.evaluate(grid, box)
    f_out = _occupancy(d, grid.width)
    f_core = _occupancy(d + np.float32(bone.shell), grid.width)
    view = ct[box]
    view *= 1 - f_out
    view += np.float32(bone.cortical) * (f_out - f_core) + np.float32(bone.trabecular) * f_core
    if mask is not None:
        mask[box][d <= 0] = value


def _paint_disc(ct: np.ndarray, grid: _Grid, disc: _Disc) -> None:
    box = disc.index_box(grid)
    if box is None:
        return
    d = disc.evaluate(grid, box)
    f_out, f_core = _occupancy(d, grid.width), _occupancy(d + np.float32(4.0), grid.width)
    view = ct[box]
    view *= 1 - f_out
    view += np.float32(HU_DISC_ANNULUS) * (f_out - f_core) + np.float32(HU_DISC_NUCLEUS) * f_core


def _paint_streaks(ct: np.ndarray, grid: _Grid, streaks, rng: np.random.Generator) -> None:
    """Metal artefacts of each screw pair in the axial plane: radial bright/dark rays and a
    dark band between the two screws, fading with distance and outside the screws' slices."""
    for mids, (z0, z1) in streaks:
        centre = mids.mean(axis=0)
        reach = 70.0
        corners = np.array([[centre[0] + sx * reach, centre[1] + sy * reach, z]
                            for sx in (-1, 1) for sy in (-1, 1) for z in (z0 - 3, z1 + 3)])
        box = grid.box_of_world_corners(corners)
        if box is None:
            continue
        x, y, z = grid.coords(grid.affine, box)
        zw = np.clip(1.0 - np.maximum(np.maximum(z0 - z, z - z1), 0) / 3.0, 0, 1)
        dx, dy = x - np.float32(centre[0]), y - np.float32(centre[1])
        r = np.sqrt(dx * dx + dy * dy)
        rays = np.cos(np.float32(rng.integers(5, 9)) * np.arctan2(dy, dx) + np.float32(rng.uniform(0, np.pi))) ** 9
        art = 380.0 * rays * np.exp(-r / 35.0) * np.clip(r / 10.0 - 0.5, 0, 1)
        # dark band along the line joining the two screws
        p, q = mids[0][:2], mids[1][:2]
        e = (q - p) / max(np.linalg.norm(q - p), 1e-6)
        along = (x - p[0]) * e[0] + (y - p[1]) * e[1]
        across = np.abs(-(x - p[0]) * e[1] + (y - p[1]) * e[0])
        seg = (along > 0) & (along < np.linalg.norm(q - p))
        art = art - 250.0 * np.exp(-(across / 5.0) ** 2) * seg
        view = ct[box]
        metal = view > 2500
        view += np.where(metal, 0, art * zw).astype(np.float32)


def _add_noise(ct: np.ndarray, sigma_hu: float, rng: np.random.Generator) -> None:
    """Gaussian noise of standard deviation ``sigma_hu``, lightly correlated (3-tap blur per
    axis, rescaled) as reconstruction kernels make it; slab by slab to bound memory."""
    if sigma_hu <= 0:
        return
    gain = 1.0 / 0.375 ** 1.5  # a [1/4, 1/2, 1/4] blur keeps sqrt(0.375) of the std per axis
    n0 = ct.shape[0]
    per = max(1, int(4_000_000 // (ct.shape[1] * ct.shape[2])))
    for i0 in range(0, n0, per):
        i1 = min(n0, i0 + per)
        lo, hi = max(0, i0 - 1), min(n0, i1 + 1)
        white = rng.standard_normal((hi - lo,) + ct.shape[1:], dtype=np.float32)
        for ax in range(3):
            white = _blur3(white, ax)
        ct[i0:i1] += np.float32(sigma_hu * gain) * white[i0 - lo:i0 - lo + (i1 - i0)]


def _blur3(a: np.ndarray, axis: int) -> np.ndarray:
    """[1/4, 1/2, 1/4] blur along ``axis`` with edge replication."""
    if a.shape[axis] < 3:
        return a
    out = a * np.float32(0.5)
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    out[tuple(hi)] += np.float32(0.25) * a[tuple(lo)]
    out[tuple(lo)] += np.float32(0.25) * a[tuple(hi)]
    first = [slice(None)] * 3
    last = [slice(None)] * 3
    first[axis], last[axis] = slice(0, 1), slice(-1, None)
    out[tuple(first)] += np.float32(0.25) * a[tuple(first)]
    out[tuple(last)] += np.float32(0.25) * a[tuple(last)]
    return out


# ----------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------
def make_phantom(spec: PhantomSpec | None = None, **overrides) -> Phantom:
    """Build a synthetic spine CT with its VerSe ground truth.

    ``spec`` (default :class:`PhantomSpec()`) with any field replaced by ``overrides``, e.g.
    ``make_phantom(first="T9", t13=True, spacing=(1, 1, 1.5))``. The same spec gives the
    same phantom, bit for bit. Raises SpineLabelInputError for impossible specs.
    """
    spec = spec if spec is not None else PhantomSpec()
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(PhantomSpec)})
        if unknown:
            raise SpineLabelInputError(None, f"unknown PhantomSpec field(s): {', '.join(unknown)}")
        spec = dataclasses.replace(spec, **overrides)
    spec = dataclasses.replace(spec, spacing=tuple(float(s) for s in np.broadcast_to(spec.spacing, (3,))),
                               axcodes=tuple(str(c).upper() for c in spec.axcodes), screws=tuple(spec.screws),
                               fractures=dict(spec.fractures))
    _validate(spec)
    model = _build_model(spec)
    grid = _fov_grid(spec, model)
    rng = np.random.default_rng([spec.seed, 2])  # image stream: artefacts and noise

    corners = np.array([[i, j, k] for i in (0, grid.shape[0] - 1) for j in (0, grid.shape[1] - 1)
                        for k in (0, grid.shape[2] - 1)], dtype=float) @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    ct = np.empty(grid.shape, dtype=np.float32)
    mask = np.zeros(grid.shape, dtype=np.uint8)
    _paint_tissue(ct, grid, _Tissue(model, corners[:, 2].min(), corners[:, 2].max()))
    for vert in model.verts:  # canal contents first: the bone paints over their edges
        for shape, hu in vert.fillings:
            _paint_fill(ct, grid, shape, hu)
    for disc in model.discs:
        _paint_disc(ct, grid, disc)
    for shape, bone in model.bones:
        _paint_bone(ct, grid, shape, bone)
    for vert in model.verts:  # head to feet; the later one wins where facets touch
        _paint_bone(ct, grid, vert.shape, vert.bone, mask, vert.level.value)
    for shape in model.metal:
        _paint_fill(ct, grid, shape, HU_METAL)
    _paint_streaks(ct, grid, model.streaks, rng)
    _add_noise(ct, spec.noise_hu, rng)
    np.clip(ct, _HU_MIN, _HU_MAX, out=ct)
    ct_img = Image(np.rint(ct).astype(np.int16), grid.affine.copy(), f"phantom(seed={spec.seed})")
    del ct
    mask_img = Image(mask, grid.affine.copy(), f"phantom(seed={spec.seed}) mask")
    return Phantom(ct_img, mask_img, _centroids(model, grid), spec, _rib_heads(model, grid),
                   model.notes + [f"grid {grid.shape}, spacing {spec.spacing} mm, axcodes {''.join(ct_img.axcodes)}"])


def _inside_grid(grid: _Grid, ijk: np.ndarray) -> bool:
    return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.asarray(grid.shape) - 0.5))


def _centroids(model: _Model, grid: _Grid) -> dict[int, np.ndarray]:
    """Body centres (voxel i, j, k on ``grid``) of the vertebrae whose body centre is inside."""
    out = {}
    for vert in model.verts:
        if vert.body.index_box(grid) is None:
            continue
        ijk = grid.inv[:3, :3] @ _centre_of_mass(vert.body) + grid.inv[:3, 3]
        if _inside_grid(grid, ijk):
            out[vert.level.value] = ijk
    return out


def _rib_heads(model: _Model, grid: _Grid) -> dict[int, np.ndarray]:
    out = {}
    for vert in model.verts:
        if vert.rib_heads is None:
            continue
        ijk = vert.rib_heads @ grid.inv[:3, :3].T + grid.inv[:3, 3]
        if all(_inside_grid(grid, p) for p in ijk):
            out[vert.level.value] = ijk
    return out


def phantom_suite() -> list[PhantomSpec]:
    """A fixed list of >= 24 specs for benchmarks: fields of view from cervical only to the
    whole spine, spacings 0.5-3 mm (isotropic, thick-slice axial, sagittal), many
    orientations including oblique grids, and every anomaly at least once."""
    S = PhantomSpec
    return [
        S(name="default-T10-sacrum", seed=0),
        S(name="whole-spine-1mm", first="C1", last="sacrum", spacing=(1.0, 1.0, 1.0), seed=1),
        S(name="whole-spine-LPS-1.5mm", first="C1", last="sacrum", spacing=(1.5, 1.5, 1.5), axcodes=("L", "P", "S"), seed=2),
        S(name="cervical-0.5mm", first="C2", last="C5", spacing=(0.5, 0.5, 0.5), fov_margin_mm=10.0, seed=3),
        S(name="cervical-PIR-sagittal", first="C1", last="C7", spacing=(0.6, 0.6, 3.0), axcodes=("P", "I", "R"), seed=4),
        S(name="cervicothoracic-LAS", first="C5", last="T4", spacing=(0.8, 0.8, 2.0), axcodes=("L", "A", "S"), seed=5),
        S(name="chest-0.7x2.5-LAS", first="T1", last="L2", spacing=(0.7, 0.7, 2.5), axcodes=("L", "A", "S"), seed=6),
        S(name="thoracic-ASL", first="T3", last="T12", spacing=(1.25, 1.25, 1.25), axcodes=("A", "S", "L"), seed=7),
        S(name="lumbar-0.5mm", first="L2", last="L3", spacing=(0.5, 0.5, 0.5), fov_margin_mm=10.0, seed=8),
        S(name="lumbar-IPL", first="L1", last="sacrum", spacing=(2.0, 2.0, 2.0), axcodes=("I", "P", "L"), seed=9),
        S(name="abdomen-3mm", first="T11", last="sacrum", spacing=(3.0, 3.0, 3.0), seed=10),
        S(name="oblique-15", first="T12", last="L5", spacing=(1.0, 1.0, 1.0), oblique_deg=15.0, seed=11),
        S(name="oblique-30-PIR", first="T8", last="L2", spacing=(1.5, 1.5, 1.5), axcodes=("P", "I", "R"), oblique_deg=30.0, seed=12),
        S(name="t13", first="T9", last="sacrum", t13=True, spacing=(1.0, 1.0, 1.5), seed=13),
        S(name="l6", first="T12", last="sacrum", l6=True, spacing=(1.0, 1.0, 1.0), axcodes=("R", "P", "I"), seed=14),
        S(name="t13-l6", first="T10", last="sacrum", t13=True, l6=True, spacing=(1.5, 1.5, 1.5), seed=15),
        S(name="missing-rib12", first="T8", last="L3", missing_rib12=True, spacing=(1.0, 1.0, 1.0), seed=16),
        S(name="t13-missing-rib12", first="T9", last="L4", t13=True, missing_rib12=True, spacing=(1.0, 1.0, 2.0), seed=17),
        S(name="fracture-L1", first="T10", last="L4", fractures={"L1": 0.35}, spacing=(1.0, 1.0, 1.0), seed=18),
        S(name="fractures-osteoporosis", first="T6", last="L3", fractures={"T8": 0.25, "T12": 0.45, "L2": 0.2},
          osteoporosis=True, spacing=(1.0, 1.0, 1.0), axcodes=("L", "P", "S"), seed=19),
        S(name="scoliosis-25", first="T4", last="L4", scoliosis_deg=25.0, spacing=(1.5, 1.5, 1.5), seed=20),
        S(name="scoliosis-45-oblique", first="T2", last="L3", scoliosis_deg=45.0, spacing=(2.0, 2.0, 2.0), oblique_deg=10.0, seed=21),
        S(name="osteoporosis", first="T11", last="L5", osteoporosis=True, spacing=(0.8, 0.8, 0.8), seed=22),
        S(name="screws-L4-L5", first="L2", last="sacrum", screws=("L4", "L5"), spacing=(1.0, 1.0, 1.0), seed=23),
        S(name="screws-T11-L1-ASL", first="T9", last="L3", screws=("T11", "T12", "L1"), spacing=(1.0, 1.0, 1.0),
          axcodes=("A", "S", "L"), seed=24),
        S(name="cut-cranial", first="T11", last="L5", cut_cranial_mm=12.0, spacing=(1.0, 1.0, 1.0), seed=25),
        S(name="cut-caudal-LPS", first="T6", last="L2", cut_caudal_mm=15.0, spacing=(1.0, 1.0, 2.0), axcodes=("L", "P", "S"), seed=26),
        S(name="noise-free", first="L1", last="L5", noise_hu=0.0, spacing=(1.0, 1.0, 1.0), seed=27),
        S(name="noisy-low-dose", first="T10", last="sacrum", noise_hu=80.0, spacing=(1.0, 1.0, 3.0), seed=28),
        # anomalies with both anchors in view (the cervicothoracic transition above, the
        # sacrum or the lumbar end below): identifiable from the image, unlike the crops above
        # (a T13 spine seen from T9 down shows what a normal one seen from T8 shows)
        S(name="t13-C6-sacrum", first="C6", last="sacrum", t13=True, spacing=(2.0, 2.0, 2.0), seed=29),
        S(name="missing-rib12-C6-sacrum-LPS", first="C6", last="sacrum", missing_rib12=True, spacing=(2.0, 2.0, 2.5),
          axcodes=("L", "P", "S"), seed=30),
        S(name="t13-l6-C6-sacrum", first="C6", last="sacrum", t13=True, l6=True, spacing=(2.0, 2.0, 2.0), seed=31),
        S(name="t13-missing-rib12-C7-L5", first="C7", last="L5", t13=True, missing_rib12=True, spacing=(1.5, 1.5, 2.0),
          seed=32),
        S(name="l6-C6-sacrum-RPI", first="C6", last="sacrum", l6=True, spacing=(2.0, 2.0, 2.0), axcodes=("R", "P", "I"),
          seed=33),
        # the anomalies with both anchors in view again, each under a harder condition: thick
        # slices and noise, an oblique grid, sagittal slices, scoliosis, a fractured T13,
        # osteoporosis (a hollow sacrum), 3 mm voxels, a rotated grid
        S(name="t13-C7-L5-thick-noisy", first="C7", last="L5", t13=True, spacing=(0.8, 0.8, 3.0), noise_hu=60.0, seed=34),
        S(name="l6-C5-sacrum-oblique-20", first="C5", last="sacrum", l6=True, spacing=(1.5, 1.5, 1.5), oblique_deg=20.0,
          seed=35),
        S(name="missing-rib12-C7-L3-PIR-sagittal", first="C7", last="L3", missing_rib12=True, spacing=(0.8, 0.8, 3.0),
          axcodes=("P", "I", "R"), seed=36),
        S(name="t13-l6-C7-sacrum-scoliosis-ASL", first="C7", last="sacrum", t13=True, l6=True, scoliosis_deg=20.0,
          spacing=(2.0, 2.0, 2.0), axcodes=("A", "S", "L"), seed=37),
        S(name="t13-C6-L3-fracture-T13", first="C6", last="L3", t13=True, fractures={"T13": 0.35}, spacing=(1.5, 1.5, 1.5),
          seed=38),
        S(name="l6-C7-sacrum-osteoporosis-LPS", first="C7", last="sacrum", l6=True, osteoporosis=True,
          spacing=(1.0, 1.0, 2.5), axcodes=("L", "P", "S"), seed=39),
        S(name="missing-rib12-C6-L5-3mm", first="C6", last="L5", missing_rib12=True, spacing=(3.0, 3.0, 3.0), seed=40),
        S(name="t13-missing-rib12-C6-sacrum-IPL", first="C6", last="sacrum", t13=True, missing_rib12=True,
          spacing=(2.0, 2.0, 2.0), axcodes=("I", "P", "L"), seed=41),
        # an osteoporotic sacrum (marrow as dark as soft tissue) in a narrow field of view
        # (iliac wings cut): the canal is tracked deep into it and its fused discs show
        S(name="osteoporotic-sacrum-L1", first="L1", last="sacrum", osteoporosis=True, spacing=(1.0, 1.0, 1.0), seed=52),
        S(name="l6-osteoporotic-sacrum-T12", first="T12", last="sacrum", l6=True, osteoporosis=True,
          spacing=(1.0, 1.0, 2.0), seed=53),
    ]
