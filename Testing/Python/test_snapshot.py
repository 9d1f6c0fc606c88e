"""VerSe-style snapshot PNG (SpineLabelLib.verse.snapshot).

The synthetic phantom is defined in WORLD coordinates (RAS mm) and sampled on several
grids (RAS, LPS, PIR, oblique), so every grid holds the same anatomy: a body block with
two "vertebrae" (spheres) labelled L1 (superior, posterior) and L3 (inferior, anterior).
Expected pixel positions follow the documented layout: panels span the world bounding
box of the CT voxel centres, head at the top, anterior on the left of sagittal panels,
patient right on the left of the coronal panel, square pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from SpineLabelLib import labels as lab
from SpineLabelLib.errors import OutputExistsError, SpineLabelInputError
from SpineLabelLib.image import Image, apply_affine, load_image
from SpineLabelLib.verse import snapshot as S

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

L1, L3 = 20, 22
SPHERES = {  # label: (centre RAS mm, radius mm, HU)
    L1: (np.array([0.0, -5.0, 25.0]), 9.0, 1000.0),
    L3: (np.array([0.0, 5.0, -25.0]), 9.0, 500.0),
}


def _phantom(affine: np.ndarray, shape) -> tuple[Image, Image, dict]:
    """CT, mask and centroids (voxel i, j, k on this grid) of the world-space phantom."""
    ijk = np.indices(shape).reshape(3, -1).T
    ras = apply_affine(affine, ijk)
    ct = np.full(len(ras), -1000.0)
    ct[(np.abs(ras[:, 0]) < 35) & (np.abs(ras[:, 1]) < 35)] = 40.0
    mask = np.zeros(len(ras), dtype=np.uint8)
    for value, (centre, radius, hu) in SPHERES.items():
        inside = np.linalg.norm(ras - centre, axis=1) <= radius
        ct[inside] = hu
        mask[inside] = value
    ct_img = Image(ct.reshape(shape).astype(np.int16), affine, "phantom_ct.nii.gz")
    mask_img = Image(mask.reshape(shape), affine, "phantom_mask.nii.gz")
    inv = np.linalg.inv(affine)
    centroids_ijk = {v: apply_affine(inv, c) for v, (c, _, _) in SPHERES.items()}
    return ct_img, mask_img, centroids_ijk


def _affine(columns, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.array(columns, dtype=float).T
    a[:3, 3] = origin
    return a


# The same 80 x 80 x 100 mm box of voxel centres stored three ways.
RAS_GRID = (_affine([[1.6, 0, 0], [0, 1.25, 0], [0, 0, 2.0]], [-40, -40, -50]), (51, 65, 51))
LPS_GRID = (_affine([[-1.6, 0, 0], [0, -1.25, 0], [0, 0, 2.0]], [40, 40, -50]), (51, 65, 51))
PIR_GRID = (_affine([[0, -1.25, 0], [0, 0, -2.0], [1.6, 0, 0]], [-40, 40, 50]), (65, 51, 51))


def _oblique_grid():
    """Rotated 20 deg about R-L and 15 deg about S-I, anisotropic, centred on the phantom."""
    a, b = np.radians(20), np.radians(15)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    spacing = np.array([1.5, 1.5, 2.0])
    shape = (55, 55, 55)
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine, shape


def _layout(ct: Image, rgb: np.ndarray):
    """World bounds of voxel centres, pixel size and panel widths implied by the picture."""
    corners = np.array([[i, j, k] for i in (0, ct.shape[0] - 1) for j in (0, ct.shape[1] - 1) for k in (0, ct.shape[2] - 1)])
    world = ct.index_to_world(corners)
    lo, hi = world.min(axis=0), world.max(axis=0)
    px = (hi[2] - lo[2]) / (rgb.shape[0] - 1)
    w_sag = int(round((hi[1] - lo[1]) / px)) + 1
    w_cor = int(round((hi[0] - lo[0]) / px)) + 1
    return lo, hi, px, w_sag, w_cor


def _colour_centre(panel: np.ndarray, colour) -> np.ndarray:
    """(row, col) mean of the pixels exactly of ``colour``."""
    hits = np.argwhere(np.all(panel == np.array(colour, dtype=np.uint8), axis=2))
    assert len(hits) > 0, f"no pixel of colour {colour}"
    return hits.mean(axis=0)


@pytest.mark.parametrize("grid", [RAS_GRID, _oblique_grid()], ids=["RAS", "oblique"])
def test_layout_dots_and_overlay_positions(grid):
    ct, mask, c = _phantom(*grid)
    rgb = S.render_snapshot(ct, mask, c)
    lo, hi, px, w_sag, w_cor = _layout(ct, rgb)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[1] == 2 * w_sag + w_cor + 2 * S.GAP_PX  # three panels side by side
    assert rgb.shape[0] >= S.MIN_PANEL_HEIGHT_PX

    projection = rgb[:, :w_sag]
    sagittal = rgb[:, w_sag + S.GAP_PX : 2 * w_sag + S.GAP_PX]
    coronal = rgb[:, 2 * (w_sag + S.GAP_PX) :]
    for value, (centre, _, hu) in SPHERES.items():
        colour = lab.label(value).color
        # head up, anterior left: row from the top (superior), column from the anterior edge
        expected = np.array([(hi[2] - centre[2]) / px, (hi[1] - centre[1]) / px])
        assert np.allclose(_colour_centre(projection, colour), expected, atol=2.0)

        r, col = np.round(expected).astype(int)
        gray = np.round(np.clip((hu - S.SLICE_WINDOW_HU[0]) / np.ptp(S.SLICE_WINDOW_HU), 0, 1) * 255)
        blend = (1 - S.OVERLAY_ALPHA) * gray + S.OVERLAY_ALPHA * np.array(colour)
        assert np.allclose(sagittal[r, col], blend, atol=12), (value, sagittal[r, col], blend)
        # coronal slice at the median A-P of the centroids (y = 0): right on the left
        col_cor = int(round((hi[0] - centre[0]) / px))
        assert np.allclose(coronal[r, col_cor], blend, atol=12), (value, coronal[r, col_cor], blend)
    # L1 (superior) is drawn above L3
    assert _colour_centre(projection, lab.label(L1).color)[0] < _colour_centre(projection, lab.label(L3).color)[0]


def test_flipped_orientations_render_the_same_picture():
    pictures = [S.render_snapshot(*_phantom(*grid)) for grid in (RAS_GRID, LPS_GRID, PIR_GRID)]
    assert pictures[0].shape == pictures[1].shape == pictures[2].shape
    for other in pictures[1:]:
        diff = np.abs(pictures[0].astype(int) - other.astype(int))
        assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 2


def test_picture_is_not_mirror_symmetric():
    # Guards the orientation test above: a flipped picture WOULD differ from the original.
    rgb = S.render_snapshot(*_phantom(*RAS_GRID))
    assert np.abs(rgb.astype(int) - rgb[::-1].astype(int)).mean() > 5


def test_without_mask_and_centroids_panels_are_plain_gray():
    ct, _, _ = _phantom(*RAS_GRID)
    rgb = S.render_snapshot(ct)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    _, _, _, w_sag, w_cor = _layout(ct, rgb)
    assert rgb.shape[1] == 2 * w_sag + w_cor + 2 * S.GAP_PX
    assert rgb[..., 0].max() > 200  # the bone spheres are visible


def test_fast_and_resampled_projection_agree():
    ct, _, _ = _phantom(*RAS_GRID)
    from SpineLabelLib.image import reorient

    ct = reorient(Image(ct.array.astype(np.float32), ct.affine))
    frame = S._display_frame(ct)
    fast = S._aligned_slab_mean(ct, frame, -20.0, 20.0)
    general = S._resampled_slab_mean(ct, frame, -20.0, 20.0)
    assert fast.shape == general.shape
    assert np.abs(fast - general).mean() < 0.02


def test_save_is_atomic_and_does_not_overwrite(tmp_path):
    ct, mask, c = _phantom(*RAS_GRID)
    out = tmp_path / "sub-x_seg-vert_snp.png"
    assert S.save_snapshot(out, ct, mask, c) == out
    written = np.asarray(PILImage.open(out).convert("RGB"))
    assert np.array_equal(written, S.render_snapshot(ct, mask, c))
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        S.save_snapshot(out, ct)  # a different picture: must not replace the file
    assert out.read_bytes() == before
    S.save_snapshot(out, ct, overwrite=True)
    assert out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary leftovers


def test_mask_on_another_grid_is_rejected():
    ct, mask, _ = _phantom(*RAS_GRID)
    moved = Image(mask.array, mask.affine @ np.diag([1, 1, 1.1, 1]), "moved_mask.nii.gz")
    with pytest.raises(SpineLabelInputError, match="moved_mask"):
        S.render_snapshot(ct, moved)


def test_real_totalseg_example(tmp_path):
    from scipy import ndimage

    folder = DATA / "totalseg_example"
    ct = load_image(folder / "ct.nii.gz")
    ts = load_image(folder / "seg_totalseg_labels.nii.gz")
    mask = ts.with_array(lab.totalseg_to_verse(ts.array))
    values = [int(v) for v in np.unique(mask.array) if v]
    centres = ndimage.center_of_mass(mask.array > 0, mask.array, values)
    centroids_ijk = {v: np.asarray(c) for v, c in zip(values, centres)}
    out = S.save_snapshot(tmp_path / "totalseg_snp.png", ct, mask, centroids_ijk)
    rgb = np.asarray(PILImage.open(out).convert("RGB"))
    _, _, _, w_sag, w_cor = _layout(ct, rgb)
    assert rgb.shape[1] == 2 * w_sag + w_cor + 2 * S.GAP_PX
    # Head up: dot rows follow the anatomical order T11 ... L5, sacrum.
    projection = rgb[:, :w_sag]
    rows = [_colour_centre(projection, lab.label(v).color)[0] for v in lab.sort_anatomical(values)]
    assert rows == sorted(rows)
    # Overlay present on both slice panels.
    for panel in (rgb[:, w_sag + S.GAP_PX : 2 * w_sag + S.GAP_PX], rgb[:, 2 * (w_sag + S.GAP_PX) :]):
        assert np.mean((panel[..., 0] != panel[..., 1]) | (panel[..., 1] != panel[..., 2])) > 0.005
