"""VerSe-style preview snapshot (``*_seg-vert_snp.png``): three panels side by side.

1. **Sagittal projection**: a radiograph-like lateral view, the mean of a bone window
   (``PROJECTION_WINDOW_HU``) over a slab of ``2 * PROJECTION_HALF_WIDTH_MM`` centred on
   the spine's mid-sagittal plane (a slab rather than the whole body keeps ribs, arms and
   pelvis from hiding the spine), with a coloured dot (VerSe label colour) and the label
   name at every centroid.
2. **Mid-sagittal slice** through the spine with the mask overlaid in label colours.
3. **Coronal slice** through the spine (through the vertebral bodies) with the overlay.

Orientation of every panel, whatever the input grid: head (superior) at the top; the
sagittal panels show the patient's anterior on the LEFT (as in VerSe snapshots); the
coronal panel shows the patient's right on the LEFT (radiological convention).

How: the CT is first reoriented exactly (:func:`image.reorient`, no interpolation) to
RAS, then each panel is resampled (linear for CT, nearest for labels) onto a display grid
aligned with the WORLD axes with square pixels of ``px`` mm. So anisotropic spacing,
flipped/permuted axes (LPS, PIR, ...) and oblique affines all come out with the right
aspect ratio and orientation, and the same anatomy on differently stored grids renders
the same picture. The panels cover the world bounding box of the CT's voxel centres:
row 0 is at the highest superior coordinate, successive rows are ``px`` mm lower.

The spine position (the R-L of the sagittal planes, the A-P of the coronal plane) is
the median of the centroids; without centroids the median of the mask's vertebra voxels;
without either, the median of bone voxels (>= 300 HU); failing that, the volume centre.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import labels as lab
from ..fileio import atomic_output
from ..image import Image, reorient, resample_to_grid, window_hu
from .centroids_json import centroids_to_world

#: Window (HU) of the projection panel: clipped, scaled to 0..1, averaged over the slab.
PROJECTION_WINDOW_HU = (-200.0, 1200.0)
#: Half-width (mm) of the slab averaged into the projection, around the spine mid-plane.
PROJECTION_HALF_WIDTH_MM = 45.0
#: Bone window (HU) of the two slice panels.
SLICE_WINDOW_HU = (-500.0, 1300.0)
#: Opacity of the label colours on the slice panels.
OVERLAY_ALPHA = 0.45
#: Dark gap (pixels) between panels.
GAP_PX = 4
GAP_COLOR = (16, 16, 16)
#: The longest side of a panel is about this many pixels (before the minimum height rule).
MAX_PANEL_PX = 512
#: Panels are at least this tall so that label names stay readable on small volumes.
MIN_PANEL_HEIGHT_PX = 256
#: Hard cap on pixel count per panel side (very flat volumes).
HARD_MAX_PANEL_PX = 2048
#: Bone threshold (HU) used to find the spine when neither mask nor centroids are given.
BONE_HU = 300.0


@dataclass(frozen=True)
class _Frame:
    """The world-aligned display frame: RAS bounds of the CT's voxel centres and pixel size."""

    lo: np.ndarray  # (3,) RAS mm minimum over voxel centres
    hi: np.ndarray  # (3,) RAS mm maximum
    px: float  # square pixel size, mm

    def count(self, axis: int) -> int:
        """Number of pixels spanning world axis 0 (R-L), 1 (A-P) or 2 (S-I)."""
        return int(round((self.hi[axis] - self.lo[axis]) / self.px)) + 1


def render_snapshot(ct: Image, mask: Image | None = None, centroids_ijk: dict | None = None) -> np.ndarray:
    """Render the three-panel snapshot as an (H, W, 3) uint8 RGB array.

    ``mask`` (optional) must lie on ``ct``'s grid; ``centroids_ijk`` (optional) maps VerSe
    label values to voxel indices (i, j, k) on ``ct``'s grid (NaN entries and non-vertebra
    labels are skipped). See the module docstring for orientation and layout.
    """
    if mask is not None:
        ct.require_same_grid(mask, "mask")
    centroids_world = centroids_to_world(ct, centroids_ijk or {})
    # Exact reorientation first: the same anatomy stored as LPS, PIR, ... becomes the same
    # array, so interpolation below sees identical input and renders identical pixels.
    ct_ras = reorient(Image(ct.array.astype(np.float32, copy=False), ct.affine, ct.source))
    mask_ras = reorient(mask) if mask is not None else None
    frame = _display_frame(ct_ras)
    spine = _spine_position(ct_ras, mask_ras, centroids_world, frame)

    projection = _sagittal_projection(ct_ras, frame, spine[0])
    panel1 = _draw_centroids(_gray_rgb(projection), centroids_world, frame)
    sag_ct, sag_mask = _slice(ct_ras, mask_ras, frame, "sagittal", spine[0])
    cor_ct, cor_mask = _slice(ct_ras, mask_ras, frame, "coronal", spine[1])
    panel2 = _overlay(_gray_rgb(window_hu(sag_ct, *SLICE_WINDOW_HU)), sag_mask)
    panel3 = _overlay(_gray_rgb(window_hu(cor_ct, *SLICE_WINDOW_HU)), cor_mask)

    gap = np.empty((panel1.shape[0], GAP_PX, 3), dtype=np.uint8)
    gap[...] = GAP_COLOR
    return np.concatenate([panel1, gap, panel2, gap, panel3], axis=1)


def save_snapshot(
    path: str | os.PathLike,
    ct: Image,
    mask: Image | None = None,
    centroids_ijk: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Render (see :func:`render_snapshot`) and write a PNG atomically; never overwrites unless asked."""
    from PIL import Image as PILImage

    path = Path(path)
    rgb = render_snapshot(ct, mask, centroids_ijk)
    with atomic_output(path, overwrite) as tmp:
        PILImage.fromarray(rgb).save(tmp, format="PNG")
    return path


# ----------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------
def _display_frame(ct: Image) -> _Frame:
    """World bounds of the voxel centres and a square pixel size for the panels."""
    corners = np.array([[i, j, k] for i in (0, ct.shape[0] - 1) for j in (0, ct.shape[1] - 1) for k in (0, ct.shape[2] - 1)])
    world = ct.index_to_world(corners)
    lo, hi = world.min(axis=0), world.max(axis=0)
    extent = hi - lo
    # Native resolution, unless that makes panels larger than MAX_PANEL_PX...
    px = max(float(ct.spacing.min()), float(extent.max()) / (MAX_PANEL_PX - 1))
    # ...but never so coarse that a short volume gives an unreadably small picture.
    if extent[2] > 0 and extent[2] / px < MIN_PANEL_HEIGHT_PX - 1:
        px = extent[2] / (MIN_PANEL_HEIGHT_PX - 1)
    px = max(px, float(extent.max()) / (HARD_MAX_PANEL_PX - 1))
    return _Frame(lo, hi, px)


def _spine_position(ct: Image, mask: Image | None, centroids_world: dict, frame: _Frame) -> np.ndarray:
    """RAS mm point on the spine (see the module docstring for the fallbacks)."""
    if centroids_world:
        return np.median(np.stack(list(centroids_world.values())), axis=0)
    # Subsample: the median of every 2nd voxel along each axis is the same for display.
    if mask is not None:
        sub = mask.array[::2, ::2, ::2]
        vert = np.isin(sub, sorted(lab.VERSE_VALUES))
        if vert.any():
            return np.median(ct.index_to_world(np.argwhere(vert) * 2.0), axis=0)
    bone = ct.array[::2, ::2, ::2] >= BONE_HU
    if bone.any():
        return np.median(ct.index_to_world(np.argwhere(bone) * 2.0), axis=0)
    return (frame.lo + frame.hi) / 2


def _panel_grid(frame: _Frame, plane: str, depth_positions: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, affine) of a display grid indexed (row, column, depth).

    Rows run superior -> inferior, columns anterior -> posterior (sagittal) or patient
    right -> left (coronal); depth runs along R-L (sagittal) or A-P (coronal) through the
    given world positions (evenly spaced, at least one).
    """
    px = frame.px
    step = float(depth_positions[1] - depth_positions[0]) if len(depth_positions) > 1 else px
    affine = np.eye(4)
    affine[:3, 0] = [0.0, 0.0, -px]
    if plane == "sagittal":
        affine[:3, 1] = [0.0, -px, 0.0]
        affine[:3, 2] = [step, 0.0, 0.0]
        affine[:3, 3] = [depth_positions[0], frame.hi[1], frame.hi[2]]
        shape = (frame.count(2), frame.count(1), len(depth_positions))
    else:
        affine[:3, 1] = [-px, 0.0, 0.0]
        affine[:3, 2] = [0.0, step, 0.0]
        affine[:3, 3] = [frame.hi[0], depth_positions[0], frame.hi[2]]
        shape = (frame.count(2), frame.count(0), len(depth_positions))
    return shape, affine


def _world_to_pixel(frame: _Frame, ras: np.ndarray) -> tuple[float, float]:
    """(row, column) in the sagittal panels of a RAS mm point (anterior left, head up)."""
    return (frame.hi[2] - ras[2]) / frame.px, (frame.hi[1] - ras[1]) / frame.px


# ----------------------------------------------------------------------------------
# panels
# ----------------------------------------------------------------------------------
def _sagittal_projection(ct: Image, frame: _Frame, x_mid: float) -> np.ndarray:
    """Radiograph-like lateral view: mean of the windowed CT over a slab around ``x_mid``.

    ``ct`` is RAS-reoriented. Axis-aligned grids (the usual case) average native voxel
    columns and interpolate only the 2D result (several times faster on a 512x512 CT);
    oblique grids resample the slab onto world-aligned planes first.
    """
    x0 = max(frame.lo[0], x_mid - PROJECTION_HALF_WIDTH_MM)
    x1 = min(frame.hi[0], x_mid + PROJECTION_HALF_WIDTH_MM)
    if x1 < x0:  # spine position outside the volume: use the whole width
        x0, x1 = frame.lo[0], frame.hi[0]
    if np.allclose(ct.direction, np.eye(3), atol=1e-6):
        mean = _aligned_slab_mean(ct, frame, x0, x1)
    else:
        mean = _resampled_slab_mean(ct, frame, x0, x1)
    # Contrast stretch so that thin or dense bodies both use the full grey range.
    lo, hi = np.percentile(mean, [1.0, 99.5])
    return np.clip((mean - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(mean)


def _resampled_slab_mean(ct: Image, frame: _Frame, x0: float, x1: float) -> np.ndarray:
    """Slab mean for any grid: resample world-aligned sagittal planes, window, average."""
    step = max(frame.px, 2.0)  # the mean hardly changes with finer depth sampling
    depth = x0 + step * np.arange(int(np.floor((x1 - x0) / step)) + 1)
    shape, affine = _panel_grid(frame, "sagittal", depth)
    slab = resample_to_grid(ct, shape, affine, order=1).array
    return window_hu(slab, *PROJECTION_WINDOW_HU).mean(axis=2)


def _aligned_slab_mean(ct: Image, frame: _Frame, x0: float, x1: float) -> np.ndarray:
    """Slab mean for a CT whose (RAS-reoriented) axes are the world axes, on sagittal pixels."""
    from scipy import ndimage

    sx = ct.spacing[0]
    i0 = int(np.clip(np.ceil((x0 - ct.origin[0]) / sx - 1e-6), 0, ct.shape[0] - 1))
    i1 = int(np.clip(np.floor((x1 - ct.origin[0]) / sx + 1e-6), i0, ct.shape[0] - 1))
    plane = window_hu(ct.array[i0 : i1 + 1], *PROJECTION_WINDOW_HU).mean(axis=0)  # (j, k)
    rows = frame.hi[2] - frame.px * np.arange(frame.count(2))
    cols = frame.hi[1] - frame.px * np.arange(frame.count(1))
    j = (cols - ct.origin[1]) / ct.spacing[1]
    k = (rows - ct.origin[2]) / ct.spacing[2]
    jj, kk = np.meshgrid(j, k)  # (rows, cols)
    return ndimage.map_coordinates(plane, [jj, kk], order=1, mode="nearest")


def _slice(ct: Image, mask: Image | None, frame: _Frame, plane: str, position: float):
    """CT (HU) and mask (labels or None) on one display slice through ``position`` (RAS mm)."""
    shape, affine = _panel_grid(frame, plane, np.array([position]))
    ct_2d = resample_to_grid(ct, shape, affine, order=1).array[:, :, 0]
    mask_2d = None if mask is None else resample_to_grid(mask, shape, affine, order=0, fill=0).array[:, :, 0]
    return ct_2d, mask_2d


def _gray_rgb(values01: np.ndarray) -> np.ndarray:
    gray = np.round(np.clip(values01, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _label_colours() -> tuple[np.ndarray, np.ndarray]:
    """(256, 3) RGB table of the VerSe colours and a (256,) flag of values that have one."""
    table = np.zeros((256, 3), dtype=np.float32)
    has = np.zeros(256, dtype=bool)
    for label in lab.LABELS:
        table[label.value] = label.color
        has[label.value] = True
    return table, has


def _overlay(rgb: np.ndarray, mask_2d: np.ndarray | None) -> np.ndarray:
    """Alpha-blend the VerSe label colours of ``mask_2d`` over ``rgb`` (other values untouched)."""
    if mask_2d is None:
        return rgb
    table, has = _label_colours()
    values = np.asarray(mask_2d).astype(np.int64)
    valid = (values >= 0) & (values < 256)
    values = np.where(valid, values, 0)
    where = has[values] & valid
    out = rgb.astype(np.float32)
    out[where] = (1 - OVERLAY_ALPHA) * out[where] + OVERLAY_ALPHA * table[values[where]]
    return np.round(out).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _draw_centroids(rgb: np.ndarray, centroids_world: dict[int, np.ndarray], frame: _Frame) -> np.ndarray:
    """Draw a dot in the label colour and the label name (white, dark outline) per centroid."""
    if not centroids_world:
        return rgb
    from PIL import Image as PILImage, ImageDraw

    height, width = rgb.shape[:2]
    radius = max(3, int(round(height / 90)))
    font = _font(max(10, int(round(height / 40))))
    canvas = PILImage.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    next_free_y = -np.inf  # names are placed head to feet and never overlap
    for value in lab.sort_anatomical(centroids_world):
        row, col = _world_to_pixel(frame, centroids_world[value])
        colour = lab.label(value).color
        draw.ellipse([col - radius, row - radius, col + radius, row + radius], fill=colour)
        text = lab.name_of(value)
        box = draw.textbbox((0, 0), text, font=font, stroke_width=1)
        tw, th = box[2] - box[0], box[3] - box[1]
        # Names go on the anterior side (left), where soft tissue is dark; to the right
        # only if they would leave the picture.
        x = col - radius - 3 - tw
        if x < 0:
            x = col + radius + 3
        top = min(max(row - th / 2, 0, next_free_y), height - th)  # inside the picture
        next_free_y = top + th + 1
        y = top - box[1]
        draw.text((x, y), text, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(canvas)
